r"""Hyperparameter sweeps: expand a declaration into runs, run them, aggregate.

  python -m pepnet_jax.sweep --config experiments/X.py[:preset] --workdir SWEEP_DIR \
      [--parallel N] [--dry_run] [--only REGEX] [--retries K] [--no_aggregate] \
      [--no_check] [--no_compile_cache] \
      [--config.field=value ...]        # applied to every point
  python -m pepnet_jax.sweep --config experiments/X.py[:preset] --workdir SWEEP_DIR \
      --search [--trials N] [--sampler random|tpe] [--storage URL] [--study NAME] \
      [--parallel N] [--retries K] [...]   # a search (see Search below)

Every point runs as its own ``python run.py --config ... --workdir
SWEEP_DIR/<name> --config.a=b ...`` subprocess, so one crashing point cannot
take the sweep down, and its output goes to ``SWEEP_DIR/<name>/log.txt``.
Because a training run resumes from its latest checkpoint and writes
``report.json`` only when it finishes, rerunning the same sweep command skips
finished points and resumes interrupted ones; nothing else is needed. A point
directory whose config.json differs from what the point would run now (another
preset, an edited experiment file) stops the sweep with the fields that differ
instead of being skipped (``stale_points``).
``SWEEP_DIR/sweep.json`` holds the expanded points and their status, and at
the end ``pepnet_jax.sweeps.aggregate`` writes the results table and plots.

Declaration
-----------
An experiment file may define ``get_sweep(preset='')`` next to ``get_config``
and return a dict with any of these keys:

  product  {field: [v1, v2, ...], ...}  cartesian product over the fields; the
           first field varies slowest.
  zip      {field: [...], ...}          lists of equal length stepped through
           in lock-step: one axis whose i-th choice sets every field's i-th value.
  points   [{field: value, ...}, ...]   explicit override dicts (e.g. named
           ablations): one axis. ``{}`` is the unmodified config. A point may
           carry ``'_name': 'no_epnet'``, which replaces its fields in the name.
  seeds    [s, ...]                     every configuration runs once per seed,
           with ``train.seed = data.seed = s``.
  names    {field: alias} to shorten fields in names (``{'model.gamma': 'gamma'}``),
           or a callable(overrides without seeds, plus '_name' if any) -> str.

The points are ``seeds x points x product x zip``: a missing axis counts as a
single empty override, so ``{}`` is one run of the base config. Seeds vary
slowest so that an interrupted sweep already holds one run of every
configuration; then points, then the product fields in order, then zip. A
field may be set by one axis only (a clash is a ValueError naming it), since
otherwise which value wins would depend on merge order.

Names
-----
A point's name lists its overrides in that order, ``field=value`` joined by
commas, seed last: ``model.gamma=1.5,seed=0``; with no overrides it is
``base``. Values: bools ``true``/``false``, floats ``repr`` (``0.001``,
``1e-05``), tuples joined by ``-`` (``model.tower=128-64``); characters other
than ``A-Za-z0-9._=,+-`` become ``_`` and names over 150 characters are cut
and suffixed with a hash. Names only depend on the declaration, so they are
stable across reruns; duplicates are a ValueError. ``config_name`` is the name
without the seed: the row label the aggregation groups seeds under.

Compiling
---------
Every point gets JAX's persistent compilation cache in SWEEP_DIR/.jax_cache
(``JAX_COMPILATION_CACHE_DIR``, unless set already, with no minimum compile
time or size), so points after the first load the compiled init, train and
eval steps of equal shapes instead of compiling them again. A value baked
into the program (a learning rate, a width) makes a new program, compiled
once per value. ``--no_compile_cache`` turns it off.

Search
------
``--search`` runs an experiment file's ``get_search(preset='')`` instead:

  space    {field: spec}: ('float', lo, hi), ('log', lo, hi) (log-uniform,
           lo > 0), ('int', lo, hi) (both ends included), ('choice', [v, ...]).
  trials   how many trials (default 20; ``--trials`` overrides).
  metric   the validation metric to optimise, named as in metrics.jsonl
           (default ``mean_auc``; also ``mean_gauc``, ``auc/<task>``, ...).
  direction  'maximize' (default) or 'minimize' (default for a logloss).
  seeds    every trial runs once per seed; its value is the mean over seeds.
  sampler  'random' (default; built in) or 'tpe' (Optuna: ``pip install
           "pepnet-jax[search]"``); ``--sampler`` overrides.
  sampler_seed  seeds the sampler (default 0).

A bare {field: spec} dict is the space alone. Trial i is an ordinary point
named ``trial=00i`` (``trial=00i,seed=s`` with seeds) in SWEEP_DIR, run,
skipped and resumed like a grid's. Its value is read from the run's
report.json ``best_valid`` if there, else the best ``split: valid`` line of
metrics.jsonl, else report.json itself (with a warning: that is the
``train.report_split`` split). The random sampler's trials are kept in
SWEEP_DIR/search.json, so a rerun runs the same ones; the TPE study lives in
``--storage`` (default ``sqlite:///SWEEP_DIR/study.db``, study name the
directory's; any SQLAlchemy database URL lets processes on several machines
share one study). Rerunning the command continues the search: finished
trials are read back, failed or interrupted ones run again (resuming), new
ones are drawn up to ``--trials``. At the end it prints the best trial and
writes SWEEP_DIR/search.json (every trial's params, value, status), and the
aggregate tables get the trials' values.
"""

from __future__ import annotations

import argparse
import os
import sys
from typing import Sequence

# The parts, re-exported: ``from pepnet_jax import sweep; sweep.expand_points(...)``.
from pepnet_jax.sweeps.common import (LOG, REPO_ROOT, REPORT, SEARCH_JSON, SEED_FIELDS,  # noqa
                                      SWEEP_JSON, Point, cli_args, cli_value, point_name)
from pepnet_jax.sweeps.expand import (DECL_KEYS, expand, expand_points, load_sweep,  # noqa
                                      parse_config, split_config_arg, validate)
from pepnet_jax.sweeps.run import (Runner, check_points, command, default_runner,  # noqa
                                   parse_extra, point_env, run_sweep, stale_points)
from pepnet_jax.sweeps.search import load_search, read_metric, run_search  # noqa

__all__ = ['Point', 'expand', 'expand_points', 'point_name', 'cli_value', 'cli_args',
           'command', 'load_sweep', 'parse_config', 'validate', 'default_runner', 'run_sweep',
           'stale_points', 'point_env', 'load_search', 'read_metric', 'run_search', 'main',
           'SEED_FIELDS']

_SEARCH_ONLY = ('trials', 'sampler', 'storage', 'study')


def main(argv: Sequence[str] | None = None, runner: Runner | None = None) -> int:
  ap = argparse.ArgumentParser(
      prog='python -m pepnet_jax.sweep', allow_abbrev=False,
      description='Run every point of an experiment\'s get_sweep(), or with --search the '
                  'trials of its get_search() (see module docstring).')
  ap.add_argument('--config', required=True, help='experiments/X.py[:preset]')
  ap.add_argument('--workdir', required=True, help='sweep directory; one sub-directory per point')
  ap.add_argument('--parallel', type=int, default=1, help='points (search: trials) run at once')
  ap.add_argument('--dry_run', action='store_true', help='print the points and commands only')
  ap.add_argument('--only', default=None, help='run only points whose name matches this regex')
  ap.add_argument('--retries', type=int, default=0, help='reruns of a point that fails')
  ap.add_argument('--no_aggregate', action='store_true', help='skip results table and plots')
  ap.add_argument('--no_check', action='store_true',
                  help='skip parsing every point\'s overrides (and comparing them with '
                       'the runs already in --workdir) before running')
  ap.add_argument('--no_compile_cache', action='store_true',
                  help='do not share a JAX compilation cache (WORKDIR/.jax_cache) between points')
  search = ap.add_argument_group('search (with --search)')
  search.add_argument('--search', action='store_true', help='run get_search() trials')
  search.add_argument('--trials', type=int, default=None,
                      help='trials in all (default: the file\'s)')
  search.add_argument('--sampler', choices=('random', 'tpe'), default=None,
                      help='random (built in) or tpe (Optuna); default: the file\'s, else random')
  search.add_argument('--storage', default=None,
                      help='tpe: Optuna storage URL (default sqlite:///WORKDIR/study.db)')
  search.add_argument('--study', default=None, help='tpe: study name (default: WORKDIR\'s name)')
  args, rest = ap.parse_known_args(argv)
  path, preset = split_config_arg(args.config)
  config = os.path.abspath(path) + (f':{preset}' if preset else '')
  if args.search:
    return _main_search(args, config, rest, runner)
  given = [f'--{k}' for k in _SEARCH_ONLY if getattr(args, k) is not None]
  if given:
    print(f'error: {", ".join(given)} apply to --search only', file=sys.stderr)
    return 2
  try:
    sweep = load_sweep(config)
    points = expand_points(sweep)
    extra = parse_extra(rest)
    if not args.dry_run and not args.no_check:
      check_points(config, points, extra, args.workdir)
  except (ValueError, FileNotFoundError) as e:
    print(f'error: {e}', file=sys.stderr)
    return 2
  print(f'{len(points)} points from {args.config} -> {os.path.abspath(args.workdir)}', flush=True)
  try:
    records = run_sweep(config, args.workdir, points, sweep=sweep, extra=extra,
                        parallel=args.parallel, only=args.only, dry_run=args.dry_run,
                        retries=args.retries, runner=runner, aggregate=not args.no_aggregate,
                        compile_cache=not args.no_compile_cache)
  except ValueError as e:
    print(f'error: {e}', file=sys.stderr)
    return 2
  except KeyboardInterrupt:
    return 130
  return 1 if any(r['status'] == 'failed' for r in records) else 0


def _main_search(args, config: str, rest: Sequence[str], runner: Runner | None) -> int:
  try:
    if args.only is not None:
      raise ValueError('--only selects grid points; a search has no fixed list to select from')
    if args.trials is not None and args.trials < 1:
      raise ValueError(f'--trials must be at least 1, got {args.trials}')
    search = load_search(config)
    print(f'{args.sampler or search.sampler} search from {args.config}: '
          f'{args.trials or search.trials} trials of {search.metric} ({search.direction}) '
          f'-> {os.path.abspath(args.workdir)}', flush=True)
    result = run_search(config, args.workdir, search, trials=args.trials, sampler=args.sampler,
                        storage=args.storage, study=args.study, extra=rest,
                        parallel=args.parallel, retries=args.retries, runner=runner,
                        aggregate=not args.no_aggregate, check=not args.no_check,
                        dry_run=args.dry_run, compile_cache=not args.no_compile_cache)
  except (ValueError, FileNotFoundError, ImportError) as e:
    print(f'error: {e}', file=sys.stderr)
    return 2
  except KeyboardInterrupt:
    return 130
  if args.dry_run:
    return 0
  return 1 if result['failed_now'] or result['best'] is None else 0


if __name__ == '__main__':
  sys.exit(main())
