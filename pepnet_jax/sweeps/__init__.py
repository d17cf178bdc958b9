"""Sweep internals, split by job; ``pepnet_jax.sweeps.cli`` is the command line and
public face (its docstring documents declarations, names and the CLI).

  common   what the sweep and ``pepnet_jax.sweeps.aggregate`` both read and write:
           point names, command-line values, the sweep directory's files.
           It imports neither of them, so the two never import each other.
  expand   a declaration (``get_sweep``) -> named points; loading and
           parsing experiment files.
  run      running points as ``run.py`` subprocesses: skip / resume, retries,
           parallelism, the status file, the stale-point check.
  search   random or TPE search over a space (``get_search``); every trial
           is an ordinary point run by ``run``.
"""
