"""Where the data comes from: a downloaded directory, or one generated on first run."""

from __future__ import annotations

import contextlib
import fcntl
import glob
import json
import os

import ml_collections

from pepnet_jax.data.errors import DataError


def data_dir(config, workdir: str) -> str:
  """``config.data.dir``, or ``<workdir>/data`` when it is empty."""
  return os.path.abspath(config.data.dir or os.path.join(workdir, 'data'))


def generated_tabs(config) -> tuple[int, ...]:
  """Tabs a generated folder holds: the standard four plus any that config.data.domains (or
  its old name, tabs) adds.

  The reader drops rows of other tabs, so configs that only narrow the domains (e.g.
  experiments/narrow_settings.py) share one folder, the same data, with the rest. Not all 15
  tabs: predict mode rejects a tab outside config.data.domains, so a generated log could then
  not be predicted on with the default tabs.
  """
  from pepnet_jax import features
  from pepnet_jax import synth
  domains = features.resolve_domains(config.data)
  return tuple(sorted(set(synth.DEFAULT_TABS) | {int(t) for t in domains}))


def expected_generator_args(config) -> dict:
  """generator_meta.json["args"] of the folder this config asks for."""
  from pepnet_jax import synth
  gen = config.data.generate
  return synth.generator_args(
      int(gen.rows), users=int(gen.users), videos=int(gen.videos), authors=int(gen.authors),
      seed=int(gen.seed), tabs=generated_tabs(config), random_rows=int(gen.random_rows))


# Where each generator argument comes from, for the error message.
_ARG_SOURCE = {'rows': 'config.data.generate.rows', 'users': 'config.data.generate.users',
               'videos': 'config.data.generate.videos', 'authors': 'config.data.generate.authors',
               'seed': 'config.data.generate.seed',
               'random_rows': 'config.data.generate.random_rows',
               'tabs': 'config.data.domains; a run generates 0, 1, 2, 4 and any it adds',
               'version': 'file-name suffix', 'generator_version': 'the generator code'}


def check_generated_folder(directory: str, want: dict) -> None:
  """DataError unless ``directory``'s generator_meta.json records exactly ``want``.

  Generated folders are reused by name, and a name need not say everything that shaped the
  data (configs.use_generated_data names rows, users, videos and seed), so two configs could
  otherwise read each other's data without a word.
  """
  fix = (f'Point config.data.dir at another folder, or delete {directory} so that it is '
         'generated again')
  meta_path = os.path.join(directory, 'generator_meta.json')
  try:
    with open(meta_path) as f:
      have = json.load(f).get('args', {})
  except FileNotFoundError:
    raise DataError(
        f'{directory} holds KuaiRand logs but no generator_meta.json, so it cannot be checked '
        f'against config.data.generate (rows={want["rows"]:,}): it was made by an older '
        'generator, by a generation that was interrupted, or it is a downloaded dataset. '
        f'{fix}; or, to read it as it is, set config.data.generate.rows=0') from None
  except (ValueError, AttributeError) as e:
    raise DataError(f'{meta_path} is not a generator meta file ({e}). {fix}') from None
  show = lambda v: 'missing (older generator: 1)' if v is None else repr(v)
  diff = [f'{k}: folder {show(have.get(k))}, config {want[k]!r} ({_ARG_SOURCE.get(k, k)})'
          for k in want if have.get(k) != want[k]]
  if diff:
    raise DataError(f'{directory} was generated with other arguments than this config asks '
                    f'for; {"; ".join(diff)}. {fix}')


def generates(config) -> bool:
  """Whether the run generates (or checks a generated) data folder: only the KuaiRand format
  has a generator, and only config.data.generate.rows > 0 asks for it."""
  return config.data.format == 'kuairand' and bool(config.data.generate.rows)


def ensure_generated(config, workdir: str) -> str:
  """Generates a KuaiRand-format dataset when ``config.data.generate.rows`` > 0
  and the directory has no logs yet; an existing generated folder must have been
  generated with this config's arguments (DataError otherwise). Returns the data
  directory. Real data (generate.rows == 0) is never checked."""
  d = data_dir(config, workdir)
  gen = config.data.generate
  if not config.data.dir and not gen.rows:
    raise ValueError(
        'config.data.dir is empty and config.data.generate.rows is 0: pass '
        '--config.data.dir=/path/to/KuaiRand-Pure/data (see README, "Train on KuaiRand") '
        'or set --config.data.generate.rows=N to generate a KuaiRand-format dataset')
  if generates(config):
    want = expected_generator_args(config)
    if (glob.glob(os.path.join(d, 'log_standard_*.csv'))
        or os.path.exists(os.path.join(d, 'generator_meta.json'))):
      check_generated_folder(d, want)
    else:
      from pepnet_jax import synth
      print(f'Generating a KuaiRand-format dataset ({gen.rows:,} log rows, tabs '
            f'{want["tabs"]}) in {d}', flush=True)
      synth.generate(d, rows=want['rows'], users=want['users'], videos=want['videos'],
                     authors=want['authors'], seed=want['seed'], tabs=want['tabs'],
                     random_rows=want['random_rows'])
  return d


def resolved_data_config(config, workdir: str) -> ml_collections.ConfigDict:
  """``config.data`` with ``dir`` filled in (generating the data if asked)."""
  d = ensure_generated(config, workdir)
  data = ml_collections.ConfigDict(config.data.to_dict())
  data.dir = d
  return data


@contextlib.contextmanager
def directory_lock(directory: str):
  """An exclusive lock on ``directory`` (sweep points running in parallel share
  one data directory: only one of them generates and caches it)."""
  os.makedirs(directory, exist_ok=True)
  with open(os.path.join(directory, '.pepnet_lock'), 'w') as f:
    fcntl.flock(f, fcntl.LOCK_EX)
    try:
      yield
    finally:
      fcntl.flock(f, fcntl.LOCK_UN)


def load(config, workdir: str):
  """(datasets, feature_infos, data_spec, vocab) for a run."""
  from pepnet_jax.data import pipeline
  # Lock what parallel runs share: the generated data directory, or else the
  # cache (a downloaded data directory may be read-only). generate.rows alone is not
  # enough: with another format it is ignored and the data directory is the user's.
  shared = (data_dir(config, workdir) if generates(config)
            else config.data.cache_dir or os.path.join(workdir, 'cache'))
  with directory_lock(shared):
    data = resolved_data_config(config, workdir)
    return pipeline.load_datasets(data, workdir)
