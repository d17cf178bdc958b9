"""Training: the trainer and everything a training run needs.

  train              ``train_and_evaluate(config, workdir)``: the trainer's phases (set up,
                     restore, train with validation and model selection, report)
  steps              the jitted train / eval steps and the train state
  optim              optimizer groups (regex -> AdaGrad / Adam / ...), schedules
  sparse             row-sparse AdaGrad on the embedding rows a batch touches
  sharding           devices and meshes
  checkpoint         orbax checkpoints: save, keep-N, resume, best; checkpoint_errors
                     says what a damaged or mismatched one means
  selection          model selection and early stopping on a validation metric
  cold_start         training the out-of-vocabulary rows
  interrupts, runlock  signals (save and stop), one run per workdir
  writers            metric logs (JSON lines, TensorBoard events) and progress lines
"""
