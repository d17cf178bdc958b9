"""Running points: one ``run.py`` subprocess each, skip / resume, retries,
parallelism, the status file (sweep.json) and the stale-point check.

Grids (``run_sweep``) and searches (``pepnet_jax.sweeps.search``) both run
their points through ``PointRunner`` and record them in ``Status``.
"""

from __future__ import annotations

import concurrent.futures
import functools
import json
import os
import re
import shlex
import subprocess
import sys
import threading
import time
from typing import Any, Callable, Mapping, Sequence

from pepnet_jax.sweeps import aggregate as aggregate_lib
from pepnet_jax import configs
from pepnet_jax.sweeps import common
from pepnet_jax.sweeps.common import LOG, SWEEP_JSON, Point, cli_args
from pepnet_jax.sweeps.expand import expand_points, load_sweep, validate

Runner = Callable[[list, Point, str], int]  # (argv, point, log path) -> return code
JAX_CACHE = '.jax_cache'  # SWEEP_DIR/.jax_cache: compiled programs shared by the points


def command(config: str, workdir: str, overrides: Mapping[str, Any],
            extra: Sequence[str] = ()) -> list[str]:
  """The ``python run.py ...`` argv of one point; extra overrides come first."""
  return [sys.executable, os.path.join(common.REPO_ROOT, 'run.py'), '--config', config,
          '--workdir', workdir, *extra, *cli_args(overrides)]


def changed_points(parsed: Mapping[str, Any], sweep_dir: str) -> dict[str, dict]:
  """{point name: {field: (saved, now)}} for the points whose sub-workdir holds a run of
  another configuration (its config.json differs from what this sweep would run now:
  another preset or data size, an edited experiment file). ``parsed`` is ``validate``'s
  {name: config}. Fields only one side has (a field added to the code since) do not count."""
  out = {}
  for name, now in parsed.items():
    try:
      with open(os.path.join(sweep_dir, name, 'config.json')) as f:
        saved = json.load(f)
      changed = configs.changed_fields(saved, json.loads(now.to_json_best_effort()),
                                       one_sided=False)
    except (OSError, ValueError, AttributeError):
      continue
    if changed:
      out[name] = dict(changed)
  return out


def stale_points(parsed: Mapping[str, Any], sweep_dir: str) -> list[str]:
  """One line per point that changed_points finds: skipping or resuming those would mix
  configurations in one table."""
  out = []
  for name, changed in changed_points(parsed, sweep_dir).items():
    shown = ', '.join(f'{k} (was {a!r}, now {b!r})' for k, (a, b) in list(changed.items())[:3])
    more = f' and {len(changed) - 3} more' if len(changed) > 3 else ''
    out.append(f'  {name}: {shown}{more}')
  return out


def check_points(config: str, points: Sequence[Point], extra: Sequence[str], sweep_dir: str,
                 what: str = 'point') -> dict:
  """``validate`` plus ``stale_points`` as one ValueError; returns the parsed configs."""
  parsed = validate(config, points, extra)
  stale = stale_points(parsed, os.path.abspath(sweep_dir))
  if stale:
    raise ValueError(
        f'{len(stale)} {what} directories under {sweep_dir} hold runs of another '
        'configuration (field: saved value vs this sweep\'s):\n' + '\n'.join(stale) +
        '\nDelete those directories to rerun them, or use a new --workdir.')
  return parsed


# ------------------------------------------------------------ subprocesses

def default_runner(cmd: list, point: Point, log_path: str, env: Mapping[str, str] | None = None) -> int:
  """Runs ``cmd`` as a subprocess, stdout and stderr appended to ``log_path``."""
  del point
  with open(log_path, 'a') as log:
    return subprocess.run(cmd, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                          env=None if env is None else dict(env)).returncode


def point_env(sweep_dir: str, parallel: int = 1, compile_cache: bool = True,
              environ: Mapping[str, str] | None = None) -> dict | None:
  """The environment of every point's subprocess (None: inherit unchanged).

  ``compile_cache``: JAX's persistent compilation cache in SWEEP_DIR/.jax_cache
  (unless JAX_COMPILATION_CACHE_DIR is set already), with no minimum compile
  time or size, so that points after the first load most compiled programs
  (init, train and eval steps of equal shapes) instead of compiling them again.
  ``parallel`` > 1: JAX grabs 75% of an accelerator's memory per process by
  default, so N concurrent runs on one GPU would run out of memory; each
  gets 0.9 / N instead, unless the user set an XLA allocator variable.
  """
  environ = dict(os.environ if environ is None else environ)
  extra = {}
  if compile_cache:
    if 'JAX_COMPILATION_CACHE_DIR' not in environ:
      extra['JAX_COMPILATION_CACHE_DIR'] = os.path.join(os.path.abspath(sweep_dir), JAX_CACHE)
    for name in ('JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS',
                 'JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES'):
      if name not in environ:
        extra[name] = '0'
  if parallel > 1 and not {'XLA_PYTHON_CLIENT_MEM_FRACTION', 'XLA_PYTHON_CLIENT_PREALLOCATE',
                           'XLA_PYTHON_CLIENT_ALLOCATOR'} & set(environ):
    extra['XLA_PYTHON_CLIENT_MEM_FRACTION'] = f'{0.9 / parallel:.3f}'
  return dict(environ, **extra) if extra else None


def fmt_secs(s: float) -> str:
  s = int(round(s))
  h, rem = divmod(s, 3600)
  m, sec = divmod(rem, 60)
  return f'{h}h{m:02d}m{sec:02d}s' if h else (f'{m}m{sec:02d}s' if m else f'{sec}s')


def parse_extra(args: Sequence[str]) -> list[str]:
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


def check_extra(extra: Sequence[str], swept) -> None:
  """A field both swept and set for every point: which wins would be arbitrary."""
  clash = sorted({e[len('--config.'):].split('=', 1)[0] for e in extra} & set(swept))
  if clash:
    raise ValueError(f'--config.{clash[0]} is swept by this sweep; '
                     'do not also set it for every point')


# ------------------------------------------------------------ status file

class Status:
  """SWEEP_DIR/sweep.json: every point's overrides and status, with the
  attempts and times of earlier invocations carried over. Thread-safe."""

  def __init__(self, sweep_dir: str, header: Mapping[str, Any]):
    self.sweep_dir, self.header = sweep_dir, dict(header)
    self.previous = common.status_points(sweep_dir)
    self.records: dict[str, dict] = {}
    self.lock = threading.RLock()

  def add(self, points: Sequence[Point]):
    with self.lock:
      for p in points:
        if p.name in self.records:
          continue
        rec = dict(name=p.name, config_name=p.config_name, overrides=common.jsonable(p.overrides),
                   seed=p.seed, status='done' if self.finished(p) else 'pending',
                   returncode=None, elapsed_s=None, attempts=0)
        old = self.previous.get(p.name)
        if old:  # keep the history of earlier invocations
          rec['elapsed_s'] = old.get('elapsed_s')
          rec['attempts'] = old.get('attempts') or 0
          rec['returncode'] = old.get('returncode')
          if rec['status'] != 'done' and old.get('status') in ('failed', 'interrupted'):
            rec['status'] = old['status']
        self.records[p.name] = rec

  def finished(self, p: Point) -> bool:
    return common.finished(self.sweep_dir, p.name)

  def update(self, name: str, save: bool = True, **fields):
    with self.lock:
      self.records[name].update(fields)
      if save:
        self.save()

  def save(self):
    with self.lock:
      common.write_json(os.path.join(self.sweep_dir, SWEEP_JSON), dict(
          self.header, updated=time.strftime('%Y-%m-%dT%H:%M:%S'),
          points=list(self.records.values())))

  def interrupted(self):
    """Marks the running points: a rerun resumes them."""
    with self.lock:
      for rec in self.records.values():
        if rec['status'] == 'running':
          rec['status'] = 'interrupted'
      self.save()


class PointRunner:
  """Runs one point to its report: skips it when finished, otherwise runs
  (a rerun resumes from the point's checkpoint) up to ``retries`` + 1 times."""

  def __init__(self, config: str, status: Status, extra: Sequence[str] = (), retries: int = 0,
               runner: Runner | None = None, out=print):
    self.config, self.status, self.extra = config, status, list(extra)
    self.retries, self.runner, self.out = retries, runner, out
    self.sweep_dir = status.sweep_dir

  def run(self, p: Point, tag: str) -> tuple[str, int | None, float]:
    """(status 'done' / 'failed' / 'skipped', return code, seconds)."""
    if self.status.finished(p):
      self.status.update(p.name, save=False, status='done')
      self.out(f'{tag}: done already, skipped')
      return 'skipped', None, 0.0
    workdir = os.path.join(self.sweep_dir, p.name)
    os.makedirs(workdir, exist_ok=True)
    log_path = os.path.join(workdir, LOG)
    cmd = command(self.config, workdir, p.overrides, self.extra)
    t0 = time.time()
    rc = None
    rec = self.status.records[p.name]
    for attempt in range(self.retries + 1):
      self.status.update(p.name, status='running', attempts=(rec.get('attempts') or 0) + 1)
      resumed = os.path.isdir(os.path.join(workdir, 'checkpoints')) or attempt > 0
      self.out(f'{tag}: {"resuming" if resumed else "running"} (log: {log_path})')
      with open(log_path, 'a') as log:
        log.write(f'\n=== {time.strftime("%Y-%m-%d %H:%M:%S")} attempt {rec["attempts"]}: '
                  f'{shlex.join(cmd)}\n')
      try:
        rc = self.runner(cmd, p, log_path)
      except Exception as e:  # noqa: BLE001 - a runner error fails this point only
        with open(log_path, 'a') as log:
          log.write(f'runner error: {type(e).__name__}: {e}\n')
        rc = -1
      if self.status.finished(p):
        break
    elapsed = time.time() - t0
    state = 'done' if self.status.finished(p) else 'failed'
    self.status.update(p.name, status=state, returncode=rc, elapsed_s=round(elapsed, 1))
    return state, rc, elapsed


def make_runner(sweep_dir: str, parallel: int, compile_cache: bool) -> Runner:
  return functools.partial(default_runner, env=point_env(sweep_dir, parallel, compile_cache))


def aggregate_results(sweep_dir: str, out) -> None:
  """Results table and plots; a failure there leaves the runs on disk intact."""
  try:
    paths = aggregate_lib.aggregate(sweep_dir)
    out('Results: ' + ', '.join(paths.values()))
  except Exception as e:  # noqa: BLE001 - the runs themselves are safe on disk
    out(f'Aggregation failed ({type(e).__name__}: {e}); '
        f'rerun: python -m pepnet_jax.aggregate {sweep_dir}')


# ------------------------------------------------------------------ grids

def _dry_run(config: str, sweep_dir: str, selected, extra, out) -> list[dict]:
  """Prints each selected point's state and command; runs nothing."""
  for i, p in enumerate(selected, 1):
    done = common.finished(sweep_dir, p.name)
    cmd = command(config, os.path.join(sweep_dir, p.name), p.overrides, extra)
    out(f'[{i}/{len(selected)}] {p.name}: {"done (skip)" if done else "to run"}\n'
        f'    {shlex.join(cmd)}')
  return [dict(name=p.name, status='done' if common.finished(sweep_dir, p.name) else 'pending')
          for p in selected]


def _run_all(run_one, todo, parallel: int) -> None:
  """``run_one(i, point)`` for each of ``todo``, ``parallel`` at a time; an error (or Ctrl-C)
  cancels the points not yet started."""
  if parallel <= 1:
    for i, p in todo:
      run_one(i, p)
    return
  with concurrent.futures.ThreadPoolExecutor(parallel) as pool:
    futures = [pool.submit(run_one, i, p) for i, p in todo]
    try:
      for f in concurrent.futures.as_completed(futures):
        f.result()
    except BaseException:
      for f in futures:
        f.cancel()
      raise


def run_sweep(config: str, sweep_dir: str, points: Sequence[Point] | None = None, *,
              sweep: Mapping[str, Any] | None = None, extra: Sequence[str] = (),
              parallel: int = 1, only: str | None = None, dry_run: bool = False,
              retries: int = 0, runner: Runner | None = None, aggregate: bool = True,
              check: bool = False, compile_cache: bool = True, out=None) -> list[dict]:
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
  extra = parse_extra(extra)
  check_extra(extra, {k for p in points for k in p.overrides})
  if check:
    validate(config, points, extra)
  sweep_dir = os.path.abspath(sweep_dir)
  selected = [p for p in points if only is None or re.search(only, p.name)]
  if only is not None and not selected:
    raise ValueError(f'--only {only!r} matches none of the {len(points)} points')

  if dry_run:
    return _dry_run(config, sweep_dir, selected, extra, out)

  os.makedirs(sweep_dir, exist_ok=True)
  status = Status(sweep_dir, dict(
      config=config, sweep_dir=sweep_dir, extra_overrides=list(extra),
      sweep=common.jsonable({k: v for k, v in (sweep or {}).items() if k != 'names'})))
  status.add(points)
  status.save()
  prunner = PointRunner(config, status, extra, retries,
                        runner or make_runner(sweep_dir, parallel, compile_cache), out)
  n = len(selected)
  counts = {'done': 0, 'failed': 0, 'skipped': 0}
  t_start = time.time()

  def run_one(i: int, p: Point):
    state, rc, elapsed = prunner.run(p, f'[{i}/{n}] {p.name}')
    with status.lock:
      counts[state] += 1
      left = n - sum(counts.values())
    if state == 'skipped':
      return
    log = os.path.join(sweep_dir, p.name, LOG)
    note = '' if state == 'done' else f' (exit code {rc}; see {log})'
    out(f'[{i}/{n}] {p.name}: {state} in {fmt_secs(elapsed)}{note}; total '
        f'{fmt_secs(time.time() - t_start)}, {counts["done"] + counts["skipped"]} done, '
        f'{counts["failed"]} failed, {left} left')

  try:
    _run_all(run_one, list(enumerate(selected, 1)), parallel)
  except KeyboardInterrupt:
    status.interrupted()
    out('Interrupted: rerun the same command to resume.')
    raise
  status.save()
  out(f'Sweep finished in {fmt_secs(time.time() - t_start)}: {counts["done"]} ran, '
      f'{counts["skipped"]} were done already, {counts["failed"]} failed. '
      f'Status: {os.path.join(sweep_dir, SWEEP_JSON)}')
  if aggregate and any(common.finished(sweep_dir, p.name) for p in points):
    aggregate_results(sweep_dir, out)
  return [status.records[p.name] for p in selected]
