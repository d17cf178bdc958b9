"""Evaluation: from a trained model's predictions to the figures users judge it by.

  evaluate   predictions over a split and their metrics (``evaluate_dataset``)
  metrics    AUC, GAUC (grouped by user) and logloss per task x domain
  report     the report's tables, JSON and plots
  gates      what PEPNet's gates do, summarised per domain and task
  predict    predict mode: scoring a file with a checkpoint
  oracle     the generator's ceiling: the AUC of the true probabilities
"""
