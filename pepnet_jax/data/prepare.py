"""Where the data comes from: a downloaded directory, or one generated on first run."""

from __future__ import annotations

import contextlib
import fcntl
import glob
import os

import ml_collections


def data_dir(config, workdir: str) -> str:
  """``config.data.dir``, or ``<workdir>/data`` when it is empty."""
  return os.path.abspath(config.data.dir or os.path.join(workdir, 'data'))


def ensure_generated(config, workdir: str) -> str:
  """Generates a KuaiRand-format dataset when ``config.data.generate.rows`` > 0
  and the directory has no logs yet; returns the data directory."""
  d = data_dir(config, workdir)
  gen = config.data.generate
  if not config.data.dir and not gen.rows:
    raise ValueError(
        'config.data.dir is empty and config.data.generate.rows is 0: pass '
        '--config.data.dir=/path/to/KuaiRand-Pure/data (see README, "Train on KuaiRand") '
        'or set --config.data.generate.rows=N to generate a KuaiRand-format dataset')
  if config.data.format == 'kuairand' and gen.rows and not glob.glob(os.path.join(d, 'log_standard_*.csv')):
    from pepnet_jax.data import kuairand_synth
    print(f'Generating a KuaiRand-format dataset ({gen.rows:,} log rows) in {d}', flush=True)
    kuairand_synth.generate(d, rows=int(gen.rows), users=int(gen.users), videos=int(gen.videos),
                            authors=int(gen.authors), seed=int(gen.seed),
                            tabs=tuple(config.data.tabs), random_rows=int(gen.random_rows))
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
  # cache (a downloaded data directory may be read-only).
  shared = (data_dir(config, workdir) if config.data.generate.rows
            else config.data.cache_dir or os.path.join(workdir, 'cache'))
  with directory_lock(shared):
    data = resolved_data_config(config, workdir)
    return pipeline.load_datasets(data, workdir)
