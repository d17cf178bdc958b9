"""The samplers of a search and the trials they hand out: ``RandomSampler`` (built in, seeded,
its list kept in search.json) and ``OptunaSampler`` (Optuna's TPE over an RDB study).
``search`` arguments are ``search.Search`` objects (not imported: search.py imports this).
"""

from __future__ import annotations

import dataclasses
import json
import os
import random
import re
import socket
import warnings
from typing import Any, Mapping, Sequence

from pepnet_jax.sweeps import common
from pepnet_jax.sweeps.common import SEARCH_JSON
from pepnet_jax.sweeps.expand import with_seed

STUDY_DB = 'study.db'
INSTALL_HINT = 'pip install "pepnet-jax[search]"'


# ----------------------------------------------------------------- trials

@dataclasses.dataclass
class Trial:
  """One set of parameter values and its points (one per seed)."""
  number: int
  name: str
  params: dict
  points: list
  handle: Any = None  # the sampler's own trial object
  status: str = 'pending'  # pending, running, done, failed, no_metric, interrupted
  value: float | None = None
  values: list = dataclasses.field(default_factory=list)
  sources: list = dataclasses.field(default_factory=list)
  retry_of: int | None = None
  ran: bool = False  # whether this call ran any of its points

  @property
  def index(self) -> int:
    """Its place in the search: a retry keeps the place of the trial it retries."""
    m = re.fullmatch(r'trial=(\d+)', self.name)
    return int(m.group(1)) if m else self.number

  def record(self) -> dict:
    r = dict(number=self.number, name=self.name, params=common.jsonable(self.params),
             status=self.status, value=self.value, values=common.jsonable(self.values),
             metric_source=sorted(set(self.sources)), points=[p.name for p in self.points])
    if self.retry_of is not None:
      r['retry_of'] = self.retry_of
    return r


def trial_name(number: int) -> str:
  return f'trial={number:03d}'


def make_trial(number: int, name: str, params: Mapping, seeds: Sequence) -> Trial:
  return Trial(number, name, dict(params), [with_seed(name, params, s) for s in seeds])


class RandomSampler:
  """Seeded random search; the trial list lives in search.json."""
  name = 'random'

  def __init__(self, search: Any, sweep_dir: str, n_trials: int):
    self.search = search
    saved = common.read_json(os.path.join(sweep_dir, SEARCH_JSON))
    stored = []
    if isinstance(saved, dict) and isinstance(saved.get('trials'), list):
      if saved.get('sampler') != 'random':
        raise ValueError(f'{sweep_dir} holds a {saved.get("sampler")!r} search; '
                         'use a new --workdir for a random one')
      was = dict(space=saved.get('space'), sampler_seed=saved.get('sampler_seed'))
      now = dict(space=common.jsonable(search.space_json()), sampler_seed=search.sampler_seed)
      if was != now:
        raise ValueError(f'the search space or sampler seed changed since {SEARCH_JSON} in '
                         f'{sweep_dir} was written (was {was}, now {now}); use a new --workdir')
      dims = {d.field: d for d in search.dims}
      stored = [{f: dims[f].decode(v) for f, v in t['params'].items()}
                for t in sorted(saved['trials'], key=lambda t: t['number'])]
    params = stored + [self._sample(i) for i in range(len(stored), n_trials)]
    self.trials = [make_trial(i, trial_name(i), p, search.seeds) for i, p in enumerate(params)]
    self.queue = list(self.trials[:n_trials])

  def _sample(self, number: int) -> dict:
    rng = random.Random(f'pepnet-search:{self.search.sampler_seed}:{number}')
    return {d.field: d.sample(rng) for d in self.search.dims}

  def known(self) -> list[Trial]:
    return list(self.trials)

  def next(self) -> Trial | None:
    return self.queue.pop(0) if self.queue else None

  def tell(self, trial: Trial):
    pass  # the trial holds its own result

  def interrupted(self, trials: Sequence[Trial]):
    for t in trials:
      t.status = 'interrupted'

  def header(self) -> dict:
    return {}


def import_optuna():
  try:
    import optuna
  except ImportError as e:
    raise ImportError(f'the TPE sampler needs Optuna, an optional dependency: {INSTALL_HINT} '
                      '(or pip install optuna)') from e
  return optuna


def _alive(pid) -> bool:
  try:
    os.kill(int(pid), 0)
  except (TypeError, ValueError, ProcessLookupError):
    return False
  except PermissionError:
    return True
  return True


def hide_password(url: str) -> str:
  return re.sub(r'(//[^:/@]+):[^@/]*@', r'\1:***@', url)


class OptunaSampler:
  """TPE through an Optuna study in RDB storage (a SQLite file by default).

  Each trial carries user attributes: ``point`` (its directory name, which
  a retry keeps so that it resumes the same run), ``host`` and ``pid`` (who
  runs it: a rerun on that host fails the trials of a process that died),
  and once it ends ``outcome``, ``values`` and ``metric_source``. A failed
  trial cannot be reopened, so a rerun enqueues its parameters again as a
  new trial with ``retry_of`` set, which supersedes it.
  """
  name = 'tpe'

  def __init__(self, search: Any, sweep_dir: str, n_trials: int, storage: str | None = None,
               study_name: str | None = None, create: bool = True):
    optuna = self.optuna = import_optuna()
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    self.search, self.n_trials = search, n_trials
    self.storage = storage or f'sqlite:///{os.path.join(sweep_dir, STUDY_DB)}'
    self.study_name = study_name or os.path.basename(sweep_dir.rstrip('/')) or 'search'
    self.dims = {d.field: d for d in search.dims}
    self.host, self.pid = socket.gethostname(), os.getpid()
    self.study, self.retry = None, []
    if not create:  # dry run: read what is there, create nothing
      if storage or os.path.isfile(os.path.join(sweep_dir, STUDY_DB)):
        try:
          self.study = optuna.load_study(study_name=self.study_name, storage=self.storage)
        except KeyError:
          pass
      return
    os.makedirs(sweep_dir, exist_ok=True)  # for the default SQLite file
    self.study = optuna.create_study(storage=self.storage, study_name=self.study_name,
                                     direction=search.direction, load_if_exists=True)
    where = f'study {self.study_name!r} in {hide_password(self.storage)}'
    if self.study.direction.name.lower() != search.direction:
      raise ValueError(f'{where} is to {self.study.direction.name.lower()}, this search to '
                       f'{search.direction}; use another --study or --storage')
    spec = json.loads(json.dumps(common.jsonable(
        dict(space=search.space_json(), metric=search.metric))))
    saved = self.study.user_attrs.get('search')
    if saved is None:
      self.study.set_user_attr('search', spec)
    elif saved != spec:
      raise ValueError(f'{where} searched {saved}; this search is {spec}. '
                       'Use another --study or --storage')
    trials = self.study.get_trials(deepcopy=False)
    with warnings.catch_warnings():  # constant_liar is experimental in older Optuna
      warnings.simplefilter('ignore')
      # The trial count in the seed: a rerun draws new values, not the first run's again.
      self.study.sampler = optuna.samplers.TPESampler(
          seed=search.sampler_seed * 100_003 + len(trials), constant_liar=True)
    states = optuna.trial.TrialState
    for t in trials:  # left running by a process of this host that died
      if t.state == states.RUNNING and t.user_attrs.get('host') == self.host \
          and not _alive(t.user_attrs.get('pid')):
        self.study.tell(t.number, state=states.FAIL, skip_if_finished=True)
    trials = self.study.get_trials(deepcopy=False)
    superseded = {t.user_attrs.get('retry_of') for t in trials}
    self.retry = [t for t in trials if t.state == states.FAIL and 'point' in t.user_attrs
                  and t.number not in superseded
                  and t.user_attrs.get('outcome') not in ('no_metric', 'done')]
    self.distributions = {d.field: self._distribution(d) for d in search.dims}

  def _distribution(self, d: Any):
    dist = self.optuna.distributions
    if d.kind == 'choice':
      return dist.CategoricalDistribution(d.labels())
    if d.kind == 'int':
      return dist.IntDistribution(d.low, d.high)
    return dist.FloatDistribution(d.low, d.high, log=d.kind == 'log')

  def _trial(self, number: int, attrs: Mapping, params: Mapping) -> Trial:
    t = make_trial(number, attrs.get('point') or trial_name(number),
                   {f: self.dims[f].decode(v) for f, v in params.items()}, self.search.seeds)
    t.retry_of = attrs.get('retry_of')
    return t

  def known(self) -> list[Trial]:
    """The study's trials, the latest of each point only (retries supersede)."""
    if self.study is None:
      return []
    states = self.optuna.trial.TrialState
    trials = self.study.get_trials(deepcopy=False)
    superseded = {t.user_attrs.get('retry_of') for t in trials}
    out = []
    for fr in trials:
      if fr.number in superseded or not fr.params:
        continue
      t = self._trial(fr.number, fr.user_attrs, fr.params)
      outcome = fr.user_attrs.get('outcome')
      t.status = {states.COMPLETE: 'done', states.RUNNING: 'running',
                  states.WAITING: 'pending'}.get(fr.state, outcome or 'failed')
      t.value = fr.value if fr.state == states.COMPLETE else None
      t.values = list(fr.user_attrs.get('values') or [])
      t.sources = list(fr.user_attrs.get('metric_source') or [])
      out.append(t)
    return out

  def _count(self) -> int:
    """Distinct points in the study: a retry is not another trial."""
    return len({t.user_attrs.get('point', f'#{t.number}')
                for t in self.study.get_trials(deepcopy=False)})

  def next(self) -> Trial | None:
    if self.retry:
      old = self.retry.pop(0)
      self.study.enqueue_trial(old.params, user_attrs=dict(point=old.user_attrs['point'],
                                                           retry_of=old.number))
    elif self._count() >= self.n_trials:
      return None
    handle = self.study.ask(self.distributions)
    name = handle.user_attrs.get('point') or trial_name(handle.number)
    for k, v in dict(point=name, host=self.host, pid=self.pid).items():
      handle.set_user_attr(k, v)
    t = self._trial(handle.number, handle.user_attrs, handle.params)
    t.handle = handle
    return t

  def tell(self, trial: Trial):
    h = trial.handle
    h.set_user_attr('outcome', trial.status)
    h.set_user_attr('values', common.jsonable(trial.values))
    h.set_user_attr('metric_source', sorted(set(trial.sources)))
    if trial.status == 'done':
      self.study.tell(h, trial.value)
    else:
      self.study.tell(h, state=self.optuna.trial.TrialState.FAIL)

  def interrupted(self, trials: Sequence[Trial]):
    for t in trials:
      t.status = 'interrupted'
      self.tell(t)

  def header(self) -> dict:
    return dict(storage=hide_password(self.storage), study=self.study_name)


# ---------------------------------------------------------------- results
