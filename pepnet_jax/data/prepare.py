"""Where the data comes from: a downloaded directory, or one generated on first run."""

from __future__ import annotations

import contextlib
import fcntl
import glob
import json
import os

from pepnet_jax.data.errors import DataError
from pepnet_jax.data.resolve import ResolvedData


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


def ensure_generated(data: ResolvedData) -> str:
  """Generates a KuaiRand-format dataset into ``data.dir`` when the run generates its data
  (``data.generate``) and the directory has no logs yet; an existing generated folder must
  have been generated with the same arguments (DataError otherwise). Returns the data
  directory. Real data (no ``generate``) is never checked."""
  d = data.dir
  if not data.dir_given and data.generate is None:
    raise ValueError(
        'config.data.dir is empty and nothing is generated (config.data.generate.rows is 0, '
        'or the format has no generator): pass '
        '--config.data.dir=/path/to/KuaiRand-Pure/data (see README, "Train on KuaiRand") '
        'or set --config.data.generate.rows=N to generate a KuaiRand-format dataset')
  want = data.generate
  if want is not None:
    if (glob.glob(os.path.join(d, 'log_standard_*.csv'))
        or os.path.exists(os.path.join(d, 'generator_meta.json'))):
      check_generated_folder(d, dict(want))
    else:
      from pepnet_jax import synth
      print(f'Generating a KuaiRand-format dataset ({want["rows"]:,} log rows, tabs '
            f'{want["tabs"]}) in {d}', flush=True)
      synth.generate(d, rows=want['rows'], users=want['users'], videos=want['videos'],
                     authors=want['authors'], seed=want['seed'], tabs=want['tabs'],
                     random_rows=want['random_rows'])
  return d


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


def load(data: ResolvedData, workdir: str):
  """(datasets, feature_infos, data_spec, vocab) for a run."""
  from pepnet_jax.data import pipeline
  # Lock what parallel runs share: the generated data directory, or else the
  # cache (a downloaded data directory may be read-only). generate.rows alone is not
  # enough: with another format it is ignored and the data directory is the user's.
  with directory_lock(data.dir if data.generate is not None else data.cache_dir):
    ensure_generated(data)
    return pipeline.load_datasets(data, workdir)
