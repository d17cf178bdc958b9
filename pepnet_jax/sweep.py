r"""Hyperparameter sweeps: expand a declaration into runs, run them, aggregate.

  python -m pepnet_jax.sweep --config experiments/X.py[:preset] --workdir SWEEP_DIR \
      [--parallel N] [--dry_run] [--only REGEX] [--retries K] [--no_aggregate] \
      [--config.field=value ...]        # applied to every point

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
the end ``pepnet_jax.aggregate`` writes the results table and plots.

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
"""

from __future__ import annotations

import argparse
import concurrent.futures
import dataclasses
import functools
import hashlib
import importlib.util
import inspect
import itertools
import json
import math
import os
import re
import shlex
import subprocess
import sys
import threading
import time
import warnings
from typing import Any, Callable, Mapping, Sequence

from pepnet_jax import configs

__all__ = ['Point', 'expand', 'expand_points', 'point_name', 'cli_value', 'cli_args',
           'command', 'load_sweep', 'parse_config', 'validate', 'default_runner', 'run_sweep',
           'main', 'SEED_FIELDS']

SEED_FIELDS = ('train.seed', 'data.seed')  # what ``seeds`` sets
_DECL_KEYS = ('product', 'zip', 'points', 'seeds', 'names')
_FIELD_RE = re.compile(r'^[A-Za-z_]\w*(\.[A-Za-z_]\w*)*$')
_UNSAFE = re.compile(r'[^A-Za-z0-9._=,+\-]')
_MAX_NAME = 150
REPORT = 'report.json'
LOG = 'log.txt'
SWEEP_JSON = 'sweep.json'
REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@dataclasses.dataclass
class Point:
  """One run of a sweep: its overrides (seed fields included) and names."""
  name: str
  config_name: str
  overrides: dict
  seed: int | None = None


# ------------------------------------------------------------------ values

def cli_value(v) -> str:
  """``v`` as config_flags parses it back: true/false, repr floats, '(1,2)'."""
  if isinstance(v, bool):
    return 'true' if v else 'false'
  if isinstance(v, (int, float)):
    return repr(v)
  if isinstance(v, str):
    return v
  if isinstance(v, (tuple, list)):
    inner = ','.join(repr(e) for e in v)
    return f'({inner},)' if len(v) == 1 else f'({inner})'
  return repr(v)


def cli_args(overrides: Mapping[str, Any]) -> list[str]:
  return [f'--config.{k}={cli_value(v)}' for k, v in overrides.items()]


def _name_value(v) -> str:
  if isinstance(v, bool):
    return 'true' if v else 'false'
  if isinstance(v, (tuple, list)):
    return '-'.join(_name_value(e) for e in v) if v else 'empty'
  if isinstance(v, float):
    return repr(v)
  return str(v)


def _safe(s: str) -> str:
  return _UNSAFE.sub('_', s)


def _finish_name(s: str) -> str:
  s = _safe(s) or 'base'
  if len(s) > _MAX_NAME:  # long names break some tools; keep them unique
    s = s[:_MAX_NAME - 9] + '~' + hashlib.sha1(s.encode()).hexdigest()[:8]
  return s


def _label(field: str, value, aliases: Mapping[str, str]) -> str:
  return f'{aliases.get(field, field)}={_name_value(value)}'


def point_name(overrides: Mapping[str, Any], names=None, seed: int | None = None) -> str:
  """The name of a point with ``overrides`` (seed fields excluded) and ``seed``."""
  over = {k: v for k, v in overrides.items() if k not in SEED_FIELDS}
  if callable(names):
    base = _finish_name(str(names(dict(over))))
  else:
    aliases = names or {}
    parts = [str(over['_name'])] if '_name' in over else []
    parts += [_label(k, v, aliases) for k, v in over.items() if k != '_name']
    base = _finish_name(','.join(parts))
  return base if seed is None else _finish_name(f'{base},seed={seed}')


# --------------------------------------------------------------- expansion

def _check_field(field, where: str):
  if not isinstance(field, str) or not _FIELD_RE.match(field):
    raise ValueError(f'sweep {where}: {field!r} is not a config field path like "model.gamma"')
  if field.startswith('config.'):
    raise ValueError(f'sweep {where}: write {field[len("config."):]!r}, without "config."')


def _choices(field: str, values, where: str) -> list:
  if isinstance(values, (str, bytes)) or not isinstance(values, Sequence):
    raise ValueError(f'sweep {where}[{field!r}] must be a list of values, got {values!r}')
  if not values:
    raise ValueError(f'sweep {where}[{field!r}] is empty: it would give no points')
  return list(values)


def _axes(sweep: Mapping[str, Any]) -> tuple[list, list]:
  """(seed choices, axes); an axis is a list of (label parts, overrides)."""
  unknown = set(sweep) - set(_DECL_KEYS)
  if unknown:
    raise ValueError(f'sweep: unknown keys {sorted(unknown)}; allowed: {list(_DECL_KEYS)}')
  names = sweep.get('names')
  if names is not None and not callable(names) and not isinstance(names, Mapping):
    raise ValueError('sweep names must be a {field: alias} dict or a callable')
  aliases = names if isinstance(names, Mapping) else {}
  owner: dict[str, str] = {}

  def claim(field, where):
    _check_field(field, where)
    if owner.get(field, where) != where:
      raise ValueError(f'sweep: field {field!r} is set by both {owner[field]} and {where}; '
                       'set each field in one place')
    owner[field] = where

  axes = []
  points = sweep.get('points') or []
  if points:
    if not isinstance(points, Sequence) or isinstance(points, (str, bytes)):
      raise ValueError('sweep points must be a list of {field: value} dicts')
    axis = []
    for i, p in enumerate(points):
      if not isinstance(p, Mapping):
        raise ValueError(f'sweep points[{i}] must be a dict of overrides, got {p!r}')
      over = {k: v for k, v in p.items() if k != '_name'}
      for k in over:
        claim(k, 'points')
      parts = [str(p['_name'])] if '_name' in p else [_label(k, v, aliases) for k, v in over.items()]
      axis.append((parts, over, p.get('_name')))
    axes.append(axis)
  for field, values in (sweep.get('product') or {}).items():
    claim(field, 'product')
    axes.append([([_label(field, v, aliases)], {field: v}, None)
                 for v in _choices(field, values, 'product')])
  zipped = sweep.get('zip') or {}
  if zipped:
    lists = {f: _choices(f, v, 'zip') for f, v in zipped.items()}
    first = next(iter(lists))
    for f, vals in lists.items():
      claim(f, 'zip')
      if len(vals) != len(lists[first]):
        raise ValueError(f'sweep zip: {f!r} has {len(vals)} values but {first!r} has '
                         f'{len(lists[first])}; zip lists must have equal lengths')
    axes.append([([_label(f, lists[f][i], aliases) for f in lists],
                  {f: lists[f][i] for f in lists}, None) for i in range(len(lists[first]))])
  seeds = sweep.get('seeds')
  if seeds is None or (isinstance(seeds, Sequence) and not seeds):
    seeds = [None]
  else:
    seeds = _choices('seeds', seeds, 'seeds')
    for f in SEED_FIELDS:
      claim(f, 'seeds')
    for s in seeds:
      if isinstance(s, bool) or not isinstance(s, int):
        raise ValueError(f'sweep seeds must be integers, got {s!r}')
  return seeds, axes


def expand_points(sweep: Mapping[str, Any]) -> list[Point]:
  """All points of a declaration, in run order, with their names (see module doc)."""
  seeds, axes = _axes(sweep)
  names = sweep.get('names')
  out, seen = [], {}
  for seed in seeds:
    for combo in itertools.product(*axes):
      over, parts, point_label = {}, [], None
      for p_parts, p_over, p_name in combo:
        over.update(p_over)
        parts += p_parts
        point_label = p_name if p_name is not None else point_label
      if callable(names):
        arg = dict(over, _name=point_label) if point_label is not None else dict(over)
        config_name = _finish_name(str(names(arg)))
      else:
        config_name = _finish_name(','.join(parts))
      if seed is not None:
        over.update({f: seed for f in SEED_FIELDS})
      name = config_name if seed is None else _finish_name(f'{config_name},seed={seed}')
      if name in seen:
        raise ValueError(f'sweep: two points are both named {name!r} ({seen[name]} and {over}); '
                         'make the values or their names distinct')
      seen[name] = over
      out.append(Point(name=name, config_name=config_name, overrides=over, seed=seed))
  return out


def expand(sweep: Mapping[str, Any]) -> list[dict]:
  """The override dicts of every point (seed fields included), in run order."""
  return [p.overrides for p in expand_points(sweep)]


# ----------------------------------------------------------- config files

def _split_config_arg(config: str) -> tuple[str, str]:
  path, _, preset = config.partition(':')
  return path, preset


def load_sweep(config: str) -> dict:
  """``get_sweep(preset)`` of ``experiments/X.py[:preset]``."""
  path, preset = _split_config_arg(config)
  if not os.path.isfile(path):
    raise FileNotFoundError(f'--config {config}: no file {path}')
  mod_name = '_pepnet_sweep_' + re.sub(r'\W', '_', os.path.abspath(path))
  spec = importlib.util.spec_from_file_location(mod_name, path)
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  get_sweep = getattr(module, 'get_sweep', None)
  if get_sweep is None:
    raise ValueError(f'{path} defines no get_sweep(preset=""): nothing to sweep')
  takes_arg = bool(inspect.signature(get_sweep).parameters)
  sweep = get_sweep(preset) if takes_arg else get_sweep()
  if not isinstance(sweep, Mapping):
    raise ValueError(f'{path}: get_sweep() must return a dict, got {type(sweep).__name__}')
  return dict(sweep)


def parse_config(config: str, args: Sequence[str]):
  """The ConfigDict ``run.py --config CONFIG ARGS`` would see, parsed in-process."""
  from absl import flags
  from ml_collections import config_flags
  argv = ['run.py', f'--config={config}', *args]
  fv = flags.FlagValues()
  config_flags.DEFINE_config_file('config', None, flag_values=fv, sys_argv=argv)
  with warnings.catch_warnings():  # config_flags' own use of the deprecated load_module()
    warnings.simplefilter('ignore', DeprecationWarning)
    fv(argv)
  return fv.config


def validate(config: str, points: Sequence[Point], extra: Sequence[str] = ()) -> dict:
  """Parse every point's command line as run.py would: fail before training starts.

  Returns {point name: the ConfigDict its run will see}.
  """
  errors, parsed = [], {}
  for p in points:
    try:
      parsed[p.name] = parse_config(config, [*extra, *cli_args(p.overrides)])
    except Exception as e:  # noqa: BLE001 - reported all together below
      errors.append(f'  {p.name}: {type(e).__name__}: {e}')
  if errors:
    raise ValueError('sweep: these points do not parse as run.py overrides:\n' + '\n'.join(errors))
  return parsed


def stale_points(parsed: Mapping[str, Any], sweep_dir: str) -> list[str]:
  """Points whose sub-workdir holds a run of another configuration (its
  config.json differs from what this sweep would run now: another preset or
  data size, an edited experiment file). Skipping or resuming those would mix
  configurations in one table. ``parsed`` is ``validate``'s {name: config}.
  Fields only one side has (a field added to the code since) do not count."""
  out = []
  for name, now in parsed.items():
    try:
      with open(os.path.join(sweep_dir, name, 'config.json')) as f:
        saved = json.load(f)
      changed = configs.changed_fields(saved, json.loads(now.to_json_best_effort()),
                                       one_sided=False)
    except (OSError, ValueError, AttributeError):
      continue
    if changed:
      shown = ', '.join(f'{k} (was {a!r}, now {b!r})' for k, (a, b) in list(changed.items())[:3])
      more = f' and {len(changed) - 3} more' if len(changed) > 3 else ''
      out.append(f'  {name}: {shown}{more}')
  return out


def command(config: str, workdir: str, overrides: Mapping[str, Any],
            extra: Sequence[str] = ()) -> list[str]:
  """The ``python run.py ...`` argv of one point; extra overrides come first."""
  return [sys.executable, os.path.join(REPO_ROOT, 'run.py'), '--config', config,
          '--workdir', workdir, *extra, *cli_args(overrides)]


# ----------------------------------------------------------------- running

Runner = Callable[[list, Point, str], int]  # (argv, point, log path) -> return code


def default_runner(cmd: list, point: Point, log_path: str, env: Mapping[str, str] | None = None) -> int:
  """Runs ``cmd`` as a subprocess, stdout and stderr appended to ``log_path``."""
  del point
  with open(log_path, 'a') as log:
    return subprocess.run(cmd, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                          env=None if env is None else dict(env)).returncode


def _parallel_env(parallel: int) -> dict | None:
  # JAX grabs 75% of an accelerator's memory per process by default, so N
  # concurrent runs on one GPU would run out of memory; share it instead.
  if parallel <= 1 or {'XLA_PYTHON_CLIENT_MEM_FRACTION', 'XLA_PYTHON_CLIENT_PREALLOCATE',
                       'XLA_PYTHON_CLIENT_ALLOCATOR'} & set(os.environ):
    return None
  return dict(os.environ, XLA_PYTHON_CLIENT_MEM_FRACTION=f'{0.9 / parallel:.3f}')


def _fmt_secs(s: float) -> str:
  s = int(round(s))
  h, rem = divmod(s, 3600)
  m, sec = divmod(rem, 60)
  return f'{h}h{m:02d}m{sec:02d}s' if h else (f'{m}m{sec:02d}s' if m else f'{sec}s')


def _jsonable(v):
  if isinstance(v, dict):
    return {str(k): _jsonable(x) for k, x in v.items()}
  if isinstance(v, (list, tuple)):
    return [_jsonable(x) for x in v]
  if isinstance(v, float) and not math.isfinite(v):
    return None
  if v is None or isinstance(v, (bool, int, float, str)):
    return v
  return repr(v)


def _write_json(path: str, obj):
  tmp = f'{path}.tmp{os.getpid()}.{threading.get_ident()}'
  with open(tmp, 'w') as f:
    json.dump(obj, f, indent=2)
    f.write('\n')
  os.replace(tmp, path)


def _parse_extra(args: Sequence[str]) -> list[str]:
  """``--config.a=b`` / ``--config.a b`` tokens as ``['--config.a=b', ...]``."""
  out, i = [], 0
  args = list(args)
  while i < len(args):
    tok = args[i]
    if not tok.startswith('--config.'):
      raise ValueError(f'unexpected argument {tok!r}: only --config.field=value overrides '
                       'are passed through to every point')
    if '=' in tok:
      out.append(tok)
    elif i + 1 < len(args) and not args[i + 1].startswith('--'):
      out.append(f'{tok}={args[i + 1]}')
      i += 1
    else:
      out.append(f'{tok}=true')  # bare boolean flag
    i += 1
  return out


def _extra_field(arg: str) -> str:
  return arg[len('--config.'):].split('=', 1)[0]


def run_sweep(config: str, sweep_dir: str, points: Sequence[Point] | None = None, *,
              sweep: Mapping[str, Any] | None = None, extra: Sequence[str] = (),
              parallel: int = 1, only: str | None = None, dry_run: bool = False,
              retries: int = 0, runner: Runner | None = None, aggregate: bool = True,
              check: bool = False, out=None) -> list[dict]:
  """Runs the points of a sweep not yet finished; returns their status records.

  ``points`` defaults to ``expand_points(sweep)`` and ``sweep`` to the
  config file's ``get_sweep``. ``runner(argv, point, log_path) -> returncode``
  replaces the subprocess (tests pass a fake). A point is finished when its
  ``report.json`` exists; anything else (never started, crashed, killed) is
  run again with the same command, which resumes from its checkpoint.
  ``check`` parses every point's overrides with config_flags first.
  """
  out = out or functools.partial(print, flush=True)
  if points is None:
    sweep = dict(sweep) if sweep is not None else load_sweep(config)
    points = expand_points(sweep)
  points = list(points)
  extra = _parse_extra(extra)
  swept = {k for p in points for k in p.overrides}
  clash = sorted({_extra_field(e) for e in extra} & swept)
  if clash:
    raise ValueError(f'--config.{clash[0]} is swept by this sweep; do not also set it for every point')
  if check:
    validate(config, points, extra)
  sweep_dir = os.path.abspath(sweep_dir)
  selected = [p for p in points if only is None or re.search(only, p.name)]
  if only is not None and not selected:
    raise ValueError(f'--only {only!r} matches none of the {len(points)} points')

  def finished(p):
    return os.path.isfile(os.path.join(sweep_dir, p.name, REPORT))

  if dry_run:
    for i, p in enumerate(selected, 1):
      state = 'done (skip)' if finished(p) else 'to run'
      cmd = command(config, os.path.join(sweep_dir, p.name), p.overrides, extra)
      out(f'[{i}/{len(selected)}] {p.name}: {state}\n    {shlex.join(cmd)}')
    return [dict(name=p.name, status='done' if finished(p) else 'pending') for p in selected]

  os.makedirs(sweep_dir, exist_ok=True)
  previous = {}
  try:
    with open(os.path.join(sweep_dir, SWEEP_JSON)) as f:
      previous = {r['name']: r for r in json.load(f).get('points', [])}
  except (OSError, ValueError, KeyError, TypeError, AttributeError):
    pass
  records = {}
  for p in points:
    rec = dict(name=p.name, config_name=p.config_name, overrides=_jsonable(p.overrides),
               seed=p.seed, status='done' if finished(p) else 'pending', returncode=None,
               elapsed_s=None, attempts=0)
    old = previous.get(p.name)
    if old:  # keep the history of earlier invocations
      rec['elapsed_s'] = old.get('elapsed_s')
      rec['attempts'] = old.get('attempts') or 0
      rec['returncode'] = old.get('returncode')
      if rec['status'] != 'done' and old.get('status') in ('failed', 'interrupted'):
        rec['status'] = old['status']
    records[p.name] = rec
  lock = threading.Lock()
  t_start = time.time()

  def save():
    _write_json(os.path.join(sweep_dir, SWEEP_JSON), dict(
        config=config, sweep_dir=sweep_dir, extra_overrides=list(extra),
        sweep=_jsonable({k: v for k, v in (sweep or {}).items() if k != 'names'}),
        updated=time.strftime('%Y-%m-%dT%H:%M:%S'),
        points=[records[p.name] for p in points]))

  with lock:
    save()
  if runner is None:
    runner = functools.partial(default_runner, env=_parallel_env(parallel))
  n = len(selected)
  counts = {'done': 0, 'failed': 0, 'skipped': 0}

  def run_one(i: int, p: Point):
    rec = records[p.name]
    tag = f'[{i}/{n}] {p.name}'
    if finished(p):
      with lock:
        rec['status'] = 'done'
        counts['skipped'] += 1
      out(f'{tag}: done already, skipped')
      return
    workdir = os.path.join(sweep_dir, p.name)
    os.makedirs(workdir, exist_ok=True)
    log_path = os.path.join(workdir, LOG)
    cmd = command(config, workdir, p.overrides, extra)
    t0 = time.time()
    rc = None
    for attempt in range(retries + 1):
      with lock:
        rec['status'] = 'running'
        rec['attempts'] = (rec.get('attempts') or 0) + 1
        save()
      resumed = os.path.isdir(os.path.join(workdir, 'checkpoints')) or attempt > 0
      out(f'{tag}: {"resuming" if resumed else "running"} (log: {log_path})')
      with open(log_path, 'a') as log:
        log.write(f'\n=== {time.strftime("%Y-%m-%d %H:%M:%S")} attempt {rec["attempts"]}: '
                  f'{shlex.join(cmd)}\n')
      try:
        rc = runner(cmd, p, log_path)
      except Exception as e:  # noqa: BLE001 - a runner error fails this point only
        with open(log_path, 'a') as log:
          log.write(f'runner error: {type(e).__name__}: {e}\n')
        rc = -1
      if finished(p):
        break
    elapsed = time.time() - t0
    status = 'done' if finished(p) else 'failed'
    with lock:
      rec.update(status=status, returncode=rc, elapsed_s=round(elapsed, 1))
      counts[status] += 1
      left = n - sum(counts.values())
      save()
    note = '' if status == 'done' else f' (exit code {rc}; see {log_path})'
    out(f'{tag}: {status} in {_fmt_secs(elapsed)}{note}; total {_fmt_secs(time.time() - t_start)}, '
        f'{counts["done"] + counts["skipped"]} done, {counts["failed"]} failed, {left} left')

  todo = [(i, p) for i, p in enumerate(selected, 1)]
  try:
    if parallel <= 1:
      for i, p in todo:
        run_one(i, p)
    else:
      with concurrent.futures.ThreadPoolExecutor(parallel) as pool:
        futures = [pool.submit(run_one, i, p) for i, p in todo]
        try:
          for f in concurrent.futures.as_completed(futures):
            f.result()
        except BaseException:
          for f in futures:
            f.cancel()
          raise
  except KeyboardInterrupt:
    with lock:
      for rec in records.values():
        if rec['status'] == 'running':
          rec['status'] = 'interrupted'
      save()
    out('Interrupted: rerun the same command to resume.')
    raise
  out(f'Sweep finished in {_fmt_secs(time.time() - t_start)}: {counts["done"]} ran, '
      f'{counts["skipped"]} were done already, {counts["failed"]} failed. '
      f'Status: {os.path.join(sweep_dir, SWEEP_JSON)}')
  if aggregate and any(finished(p) for p in points):
    try:
      from pepnet_jax import aggregate as aggregate_lib
      paths = aggregate_lib.aggregate(sweep_dir)
      out('Results: ' + ', '.join(paths.values()))
    except Exception as e:  # noqa: BLE001 - the runs themselves are safe on disk
      out(f'Aggregation failed ({type(e).__name__}: {e}); '
          f'rerun: python -m pepnet_jax.aggregate {sweep_dir}')
  return [records[p.name] for p in selected]


# --------------------------------------------------------------------- CLI

def main(argv: Sequence[str] | None = None, runner: Runner | None = None) -> int:
  ap = argparse.ArgumentParser(
      prog='python -m pepnet_jax.sweep', allow_abbrev=False,
      description='Run every point of an experiment\'s get_sweep() (see module docstring).')
  ap.add_argument('--config', required=True, help='experiments/X.py[:preset]')
  ap.add_argument('--workdir', required=True, help='sweep directory; one sub-directory per point')
  ap.add_argument('--parallel', type=int, default=1, help='points run at once')
  ap.add_argument('--dry_run', action='store_true', help='print the points and commands only')
  ap.add_argument('--only', default=None, help='run only points whose name matches this regex')
  ap.add_argument('--retries', type=int, default=0, help='reruns of a point that fails')
  ap.add_argument('--no_aggregate', action='store_true', help='skip results table and plots')
  ap.add_argument('--no_check', action='store_true',
                  help='skip parsing every point\'s overrides (and comparing them with '
                       'the runs already in --workdir) before running')
  args, rest = ap.parse_known_args(argv)
  path, preset = _split_config_arg(args.config)
  config = os.path.abspath(path) + (f':{preset}' if preset else '')
  try:
    sweep = load_sweep(config)
    points = expand_points(sweep)
    extra = _parse_extra(rest)
    if not args.dry_run and not args.no_check:
      stale = stale_points(validate(config, points, extra), os.path.abspath(args.workdir))
      if stale:
        raise ValueError(
            f'{len(stale)} point directories under {args.workdir} hold runs of another '
            'configuration (field: saved value vs this sweep\'s):\n' + '\n'.join(stale) +
            '\nDelete those directories to rerun them, or use a new --workdir.')
  except (ValueError, FileNotFoundError) as e:
    print(f'error: {e}', file=sys.stderr)
    return 2
  print(f'{len(points)} points from {args.config} -> {os.path.abspath(args.workdir)}', flush=True)
  try:
    records = run_sweep(config, args.workdir, points, sweep=sweep, extra=extra,
                        parallel=args.parallel, only=args.only, dry_run=args.dry_run,
                        retries=args.retries, runner=runner, aggregate=not args.no_aggregate)
  except ValueError as e:
    print(f'error: {e}', file=sys.stderr)
    return 2
  except KeyboardInterrupt:
    return 130
  return 1 if any(r['status'] == 'failed' for r in records) else 0


if __name__ == '__main__':
  sys.exit(main())
