"""Search: trials drawn from a space instead of a grid, each trial an
ordinary point (or one point per seed) run by ``pepnet_jax.sweeps.run``.

Two samplers. ``random`` is built in and seeded: trial i's values depend on
the sampler seed and i only, and the list is kept in SWEEP_DIR/search.json,
so a rerun gets the same trials and a larger ``--trials`` extends the list.
``tpe`` is Optuna's TPE (an optional dependency, imported only here) with the
study in an RDB storage, SQLite in SWEEP_DIR/study.db by default; another
``--storage`` URL lets several processes or machines share one study.
Either way a rerun reads finished trials back instead of running them again,
and reruns failed or interrupted ones (they resume from their checkpoints).

This module: the search space, reading a trial's metric, and the loop (``run_search``);
the samplers and their trials are ``samplers.py``.
"""

from __future__ import annotations

import concurrent.futures
import dataclasses
import functools
import json
import math
import os
import random
import shlex
import statistics
import time
from typing import Any, Mapping, Sequence

from pepnet_jax.sweeps import common
from pepnet_jax.sweeps.common import METRICS, REPORT, SEARCH_JSON, SEED_FIELDS, cli_args
from pepnet_jax.sweeps.expand import (check_field, check_seeds, load_declaration,
                                      split_config_arg, validate)
from pepnet_jax.sweeps.samplers import (  # noqa: F401  (re-exported)
    INSTALL_HINT, STUDY_DB, OptunaSampler, RandomSampler, Trial, make_trial, trial_name)
from pepnet_jax.sweeps.run import (PointRunner, Runner, Status, aggregate_results, check_extra,
                                   check_points, command, fmt_secs, make_runner, parse_extra)

KINDS = ('float', 'log', 'int', 'choice')
SEARCH_KEYS = ('space', 'trials', 'metric', 'direction', 'seeds', 'sampler', 'sampler_seed')
SAMPLERS = ('random', 'tpe')


# ------------------------------------------------------------ declaration

@dataclasses.dataclass(frozen=True)
class Dim:
  """One searched field: ('float'|'log'|'int', low, high) or ('choice', [...])."""
  field: str
  kind: str
  low: Any = None
  high: Any = None
  choices: tuple = ()

  def spec(self) -> list:
    if self.kind == 'choice':
      return ['choice', common.jsonable(list(self.choices))]
    return [self.kind, self.low, self.high]

  def sample(self, rng: random.Random):
    if self.kind == 'float':
      return rng.uniform(self.low, self.high)
    if self.kind == 'log':
      return math.exp(rng.uniform(math.log(self.low), math.log(self.high)))
    if self.kind == 'int':
      return rng.randint(self.low, self.high)
    return self.choices[rng.randrange(len(self.choices))]

  def probe(self, i: int):
    """A value for checking the field parses: ends of ranges, every choice."""
    if self.kind == 'choice':
      return self.choices[i % len(self.choices)]
    return self.low if i % 2 == 0 else self.high

  def labels(self) -> list:
    """Choices as Optuna stores them: None/bool/int/float/str as they are,
    others (tuples such as towers) as their JSON text."""
    return [c if c is None or isinstance(c, (bool, int, float, str))
            else json.dumps(common.jsonable(c)) for c in self.choices]

  def decode(self, stored):
    """The value of a stored parameter (an Optuna label or a search.json value)."""
    if self.kind != 'choice':
      return stored
    for c, lab in zip(self.choices, self.labels()):
      if stored == lab or common.jsonable(c) == stored:
        return c
    raise ValueError(f'search: {self.field}={stored!r} is not one of the choices {self.spec()[1]}')


def _dim(field: str, spec) -> Dim:
  check_field(field, 'space')
  if field in SEED_FIELDS:
    raise ValueError(f'search space: {field!r} is set by seeds; list seeds under "seeds"')
  if not isinstance(spec, (tuple, list)) or not spec or spec[0] not in KINDS:
    raise ValueError(f'search space[{field!r}] must be (kind, ...) with kind one of {KINDS}, '
                     f'e.g. ("log", 1e-5, 1e-2) or ("choice", [a, b]); got {spec!r}')
  kind = spec[0]
  if kind == 'choice':
    if len(spec) != 2 or isinstance(spec[1], (str, bytes)) or not isinstance(spec[1], Sequence) \
        or not spec[1]:
      raise ValueError(f'search space[{field!r}] must be ("choice", [v1, v2, ...]), got {spec!r}')
    dim = Dim(field, kind, choices=tuple(spec[1]))
    if len(set(map(repr, dim.labels()))) != len(dim.choices):
      raise ValueError(f'search space[{field!r}]: the choices must be distinct')
    return dim
  if len(spec) != 3:
    raise ValueError(f'search space[{field!r}] must be ({kind!r}, low, high), got {spec!r}')
  low, high = spec[1], spec[2]
  numeric = all(isinstance(x, (int, float)) and not isinstance(x, bool) for x in (low, high))
  if not numeric or not low < high:
    raise ValueError(f'search space[{field!r}]: need numbers low < high, got {spec!r}')
  if kind == 'int' and not all(isinstance(x, int) for x in (low, high)):
    raise ValueError(f'search space[{field!r}]: "int" bounds must be integers, got {spec!r}')
  if kind == 'log' and low <= 0:
    raise ValueError(f'search space[{field!r}]: "log" needs low > 0, got {spec!r}')
  if kind in ('float', 'log'):
    low, high = float(low), float(high)
  return Dim(field, kind, low, high)


@dataclasses.dataclass
class Search:
  """A parsed ``get_search()`` declaration."""
  dims: list
  trials: int = 20
  metric: str = 'mean_auc'
  direction: str = 'maximize'
  seeds: list = dataclasses.field(default_factory=lambda: [None])
  sampler: str = 'random'
  sampler_seed: int = 0

  def space_json(self) -> dict:
    return {d.field: d.spec() for d in self.dims}

  @property
  def fields(self) -> list[str]:
    return [d.field for d in self.dims] + (list(SEED_FIELDS) if self.seeds != [None] else [])


def parse_search(decl: Mapping[str, Any]) -> Search:
  """A declaration: ``{'space': {field: spec}, 'trials': N, 'metric': ..., 'direction':
  'maximize'|'minimize', 'seeds': [...], 'sampler': 'random'|'tpe', 'sampler_seed': s}``,
  or just the space (every key a dotted field path)."""
  decl = dict(decl)
  if 'space' not in decl and decl and all('.' in str(k) for k in decl):
    decl = {'space': decl}
  unknown = set(decl) - set(SEARCH_KEYS)
  if unknown:
    raise ValueError(f'search: unknown keys {sorted(unknown)}; allowed: {list(SEARCH_KEYS)}')
  space = decl.get('space')
  if not isinstance(space, Mapping) or not space:
    raise ValueError('search: "space" must be a non-empty {field: (kind, ...)} dict')
  metric = decl.get('metric', 'mean_auc')
  if not isinstance(metric, str) or not metric:
    raise ValueError(f'search metric must be a metric name such as "mean_auc", got {metric!r}')
  from pepnet_jax.training import selection  # the trainer's rule: registered metrics say their way
  direction = decl.get('direction') or ('minimize' if selection.mode_of(metric) == 'min'
                                        else 'maximize')
  if direction not in ('maximize', 'minimize'):
    raise ValueError(f'search direction must be "maximize" or "minimize", got {direction!r}')
  trials = decl.get('trials', 20)
  if isinstance(trials, bool) or not isinstance(trials, int) or trials < 1:
    raise ValueError(f'search trials must be a positive integer, got {trials!r}')
  sampler = decl.get('sampler', 'random')
  if sampler not in SAMPLERS:
    raise ValueError(f'search sampler must be one of {SAMPLERS}, got {sampler!r}')
  seed = decl.get('sampler_seed', 0)
  if isinstance(seed, bool) or not isinstance(seed, int):
    raise ValueError(f'search sampler_seed must be an integer, got {seed!r}')
  return Search(dims=[_dim(f, s) for f, s in space.items()], trials=trials, metric=metric,
                direction=direction, seeds=check_seeds(decl.get('seeds')), sampler=sampler,
                sampler_seed=seed)


def load_search(config: str) -> Search:
  """``get_search(preset)`` of ``experiments/X.py[:preset]``, parsed."""
  decl = load_declaration(config, 'get_search')
  if decl is None:
    raise ValueError(f'{split_config_arg(config)[0]} defines no get_search(preset=""): '
                     'nothing to search')
  return parse_search(decl)


# ----------------------------------------------------------------- metric

def read_metric(workdir: str, metric: str = 'mean_auc',
                direction: str = 'maximize') -> tuple[float | None, str]:
  """(value, where it came from) of one finished run's validation ``metric``.

  In order of preference: report.json's ``best_valid`` (the best validation
  step's results), the best over metrics.jsonl's ``split: valid`` lines, and
  last report.json itself, which holds the ``train.report_split`` split; the
  source says which, so that a caller can warn when it is not validation.
  """
  report = common.read_json(os.path.join(workdir, REPORT))
  report = report if isinstance(report, dict) else {}
  best = report.get('best_valid')
  if isinstance(best, Mapping):
    v = common.num(best[metric]) if metric in best else \
        common.report_metrics(best).get(metric, math.nan)
    if math.isfinite(v):
      return v, 'report.json best_valid'
  found = []
  try:
    with open(os.path.join(workdir, METRICS)) as f:
      for line in f:
        try:
          rec = json.loads(line)
        except ValueError:
          continue  # a line cut short by a kill
        if isinstance(rec, dict) and rec.get('split') == 'valid':
          v = common.num(rec.get(metric))
          if math.isfinite(v):
            found.append((v, rec.get('step')))
  except OSError:
    pass
  if found:
    v, step = (max if direction == 'maximize' else min)(found, key=lambda x: x[0])
    return v, f'metrics.jsonl valid step {step}'
  v = common.report_metrics(report).get(metric, math.nan) if report else math.nan
  if math.isfinite(v):
    return v, f'report.json {report.get("split", "report")} split'
  return None, 'missing'


def not_validation(source: str) -> bool:
  """Whether ``read_metric`` fell back to a report of another split than valid."""
  return source.startswith('report.json ') and source.endswith(' split') \
      and source != 'report.json valid split'


def score(trial: Trial, sweep_dir: str, search: Search) -> Trial:
  """Reads the trial's metric from its finished points (mean over seeds)."""
  trial.values, trial.sources = [], []
  if not all(common.finished(sweep_dir, p.name) for p in trial.points):
    trial.status, trial.value = 'failed', None
    return trial
  for p in trial.points:
    v, src = read_metric(os.path.join(sweep_dir, p.name), search.metric, search.direction)
    trial.values.append(v)
    trial.sources.append(src)
  if any(v is None for v in trial.values):
    trial.status, trial.value = 'no_metric', None
  else:
    trial.status, trial.value = 'done', float(statistics.fmean(trial.values))
  return trial


def best_trial(trials: Sequence[Trial], direction: str) -> Trial | None:
  done = [t for t in trials if t.status == 'done' and t.value is not None]
  if not done:
    return None
  return (max if direction == 'maximize' else min)(done, key=lambda t: t.value)


def write_results(sweep_dir: str, header: Mapping, trials: Sequence[Trial],
                  search: Search) -> dict:
  """SWEEP_DIR/search.json: the search, its best trial and every trial. A rerun that
  changes nothing leaves the file as it was (its ``updated`` time included), so a kept
  copy of a finished search does not change with every resume."""
  best = best_trial(trials, search.direction)
  obj = common.jsonable(dict(header, updated=time.strftime('%Y-%m-%dT%H:%M:%S'),
                             best=best.record() if best else None,
                             trials=[t.record() for t in sorted(trials, key=lambda t: (t.index, t.number))]))
  path = os.path.join(sweep_dir, SEARCH_JSON)
  old = common.read_json(path)
  same = lambda d: {k: v for k, v in d.items() if k != 'updated'}
  if isinstance(old, dict) and same(old) == same(obj):
    return old
  common.write_json(path, obj)
  return obj


def _fmt(v) -> str:
  return '-' if v is None else f'{v:.4f}'


def _check_validation_reported(config: str, search: Search, extra: Sequence[str], out):
  """Parses the ends of every range (and every choice) now, so that a typo
  fails before the first trial trains; warns when runs never evaluate on
  validation data, since the metric would then come from the report split."""
  width = max([2] + [len(d.choices) for d in search.dims])
  probes = [make_trial(-1, f'probe{i}', {d.field: d.probe(i) for d in search.dims},
                       search.seeds[:1]).points[0] for i in range(width)]
  cfg = next(iter(validate(config, probes, extra).values()))
  tc = cfg.get('train', {})
  split = tc.get('report_split', 'test')
  if (not tc.get('eval_every') and not tc.get('patience') and not tc.get('valid_at_end')
      and split != 'valid'):
    out('warning: runs evaluate on validation data only with train.eval_every > 0, '
        'train.patience > 0, train.valid_at_end or train.report_split="valid"; as '
        f'configured, {search.metric} will come from the {split} split.')


def run_search(config: str, sweep_dir: str, search: Search, *, trials: int | None = None,
               sampler: str | None = None, storage: str | None = None,
               study: str | None = None, extra: Sequence[str] = (), parallel: int = 1,
               retries: int = 0, runner: Runner | None = None, aggregate: bool = True,
               check: bool = True, dry_run: bool = False, compile_cache: bool = True,
               out=None) -> dict:
  """Runs the search's trials not yet finished; returns search.json's content
  (plus ``failed_now``, the trials that failed in this call).

  ``trials`` and ``sampler`` override the declaration's; ``storage`` and
  ``study`` (TPE only) name the Optuna storage URL and study (default: SQLite
  in SWEEP_DIR/study.db, the directory's name). ``runner`` as in
  ``run_sweep``. Up to ``parallel`` trials run at once, each trial's seeds
  one after another. ``check`` parses overrides first and refuses trial
  directories that hold runs of another configuration.
  """
  out = out or functools.partial(print, flush=True)
  extra = parse_extra(extra)
  check_extra(extra, search.fields)
  sweep_dir = os.path.abspath(sweep_dir)
  n_trials = trials or search.trials
  sampler = sampler or search.sampler
  if sampler not in SAMPLERS:
    raise ValueError(f'--sampler must be one of {SAMPLERS}, got {sampler!r}')
  if sampler == 'random' and (storage or study):
    raise ValueError('--storage and --study apply to --sampler tpe only')
  if check:
    _check_validation_reported(config, search, extra, out)
  if sampler == 'random':
    chooser = RandomSampler(search, sweep_dir, n_trials)
  else:
    chooser = OptunaSampler(search, sweep_dir, n_trials, storage, study, create=not dry_run)
  header = dict(config=config, sweep_dir=sweep_dir, extra_overrides=list(extra),
                sampler=sampler, sampler_seed=search.sampler_seed, **chooser.header(),
                metric=search.metric, direction=search.direction, seeds=search.seeds,
                trials_wanted=n_trials, space=search.space_json())
  known = {t.number: t for t in chooser.known()}
  if dry_run:
    return _dry_run(config, sweep_dir, header, known, extra, out)
  if check:  # every known trial at once, as a grid checks all its points
    check_points(config, [p for t in known.values() for p in t.points
                          if os.path.isdir(os.path.join(sweep_dir, p.name))],
                 extra, sweep_dir, what='trial')
  os.makedirs(sweep_dir, exist_ok=True)
  status = Status(sweep_dir, dict(
      config=config, sweep_dir=sweep_dir, extra_overrides=list(extra),
      search={k: v for k, v in header.items()
              if k not in ('config', 'sweep_dir', 'extra_overrides')}))
  for t in known.values():
    status.add(t.points)
  status.save()
  prunner = PointRunner(config, status, extra, retries,
                        runner or make_runner(sweep_dir, parallel, compile_cache), out)
  run = _TrialLoop(search, sweep_dir, header, known, chooser, prunner, n_trials, out)
  try:
    run.loop(parallel, lambda t: check and _check_new_trial(config, t, extra, sweep_dir,
                                                             chooser))
  except KeyboardInterrupt:
    status.interrupted()
    chooser.interrupted(list(run.in_flight.values()))
    run.save()
    out('Interrupted: rerun the same command to continue the search.')
    raise
  status.save()
  result = run.save()
  run.announce()
  if aggregate and any(common.finished(sweep_dir, p.name) for t in known.values()
                       for p in t.points):
    aggregate_results(sweep_dir, out)
  result['failed_now'] = run.counts['failed']
  return result


def _dry_run(config, sweep_dir, header, known, extra, out) -> dict:
  """Prints each known trial's points and commands; runs nothing."""
  sampler = header['sampler']
  where = f'; study {header["study"]} in {header["storage"]}' if sampler == 'tpe' else ''
  out(f'{sampler} search over {len(header["space"])} fields, {header["trials_wanted"]} trials '
      f'wanted, {len(known)} in the {"list" if sampler == "random" else "study"}{where}')
  for t in known.values():
    for p in t.points:
      state = 'done (skip)' if common.finished(sweep_dir, p.name) else 'to run'
      cmd = command(config, os.path.join(sweep_dir, p.name), p.overrides, extra)
      out(f'{p.name}: {state}\n    {shlex.join(cmd)}')
  return dict(header, trials=[t.record() for t in known.values()], failed_now=0)


def _check_new_trial(config, t, extra, sweep_dir, chooser) -> None:
  """A new TPE trial meeting an old directory (e.g. study.db deleted) must hold a run of
  this configuration; otherwise the trial is failed and the error raised."""
  if t.handle is None or not any(os.path.isdir(os.path.join(sweep_dir, p.name))
                                 for p in t.points):
    return
  try:
    check_points(config, t.points, extra, sweep_dir, what='trial')
  except ValueError:
    t.status = 'failed'
    chooser.tell(t)
    raise


class _TrialLoop:
  """Asks the sampler for trials, runs up to ``parallel`` at once, scores and records each."""

  def __init__(self, search, sweep_dir, header, known, chooser, prunner, n_trials, out):
    self.search, self.sweep_dir, self.header = search, sweep_dir, header
    self.known, self.chooser, self.prunner = known, chooser, prunner
    self.n_trials, self.out = n_trials, out
    self.t_start = time.time()
    self.counts = {'ran': 0, 'failed': 0}
    self.warned = False
    self.in_flight: dict = {}

  def current(self) -> list[Trial]:  # a retry replaces the trial it retries
    superseded = {t.retry_of for t in self.known.values()}
    return [t for t in self.known.values() if t.number not in superseded]

  def save(self):
    return write_results(self.sweep_dir, self.header, self.current(), self.search)

  def run_trial(self, t: Trial) -> Trial:
    for p in t.points:
      label = f'[trial {t.index + 1}/{self.n_trials}] {p.name}'
      t.ran |= self.prunner.run(p, label)[0] != 'skipped'
    return score(t, self.sweep_dir, self.search)

  def finish(self, t: Trial) -> None:
    search = self.search
    self.chooser.tell(t)
    self.known[t.number] = t
    if t.ran:  # a trial only scored again is saved with the rest at the end
      self.save()
    self.counts['ran'] += t.ran
    self.counts['failed'] += t.status != 'done'
    odd = [s for s in t.sources if not_validation(s)]
    if odd and not self.warned:
      self.warned = True
      self.out(f'warning: {t.name}: no validation {search.metric} found (no best_valid in '
               f'report.json, no valid lines in metrics.jsonl); using {odd[0]}, which is not '
               'a validation result.')
    best = best_trial(self.current(), search.direction)
    self.out(f'[trial {t.index + 1}/{self.n_trials}] {t.name}: {t.status}, {search.metric} '
             f'{_fmt(t.value)}; best {_fmt(best.value) if best else "-"}'
             f'{f" ({best.name})" if best else ""}; '
             f'total {fmt_secs(time.time() - self.t_start)}')

  def loop(self, parallel: int, check_new) -> None:
    with concurrent.futures.ThreadPoolExecutor(max(parallel, 1)) as pool:
      while True:
        while len(self.in_flight) < max(parallel, 1):
          t = self.chooser.next()
          if t is None:
            break
          self.known[t.number] = t
          check_new(t)
          self.prunner.status.add(t.points)
          t.status = 'running'
          self.in_flight[pool.submit(self.run_trial, t)] = t
        if not self.in_flight:
          break
        done, _ = concurrent.futures.wait(self.in_flight, return_when='FIRST_COMPLETED')
        for f in done:
          self.in_flight.pop(f)
          self.finish(f.result())

  def announce(self) -> None:
    search, out = self.search, self.out
    best = best_trial(self.current(), search.direction)
    out(f'Search finished in {fmt_secs(time.time() - self.t_start)}: {self.counts["ran"]} '
        f'trials ran now, {self.counts["failed"]} failed; {len(self.current())} trials in '
        f'all. Trials: {os.path.join(self.sweep_dir, SEARCH_JSON)}')
    if best is None:
      out('No trial has a result yet.')
    else:
      seeds = f', mean over {len(best.values)} seeds' if len(best.values) > 1 else ''
      out(f'Best trial: {best.name}: {search.metric} {best.value:.6g} ({search.direction}'
          f'{seeds}; from {", ".join(sorted(set(best.sources))) or "the study"})\n'
          f'  overrides: {shlex.join(cli_args(best.params))}')
