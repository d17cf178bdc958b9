"""``config.data`` -> ``ResolvedData``: the data settings worked out once, at a mode's entry.

Each mode (train, evaluate, predict, the oracle's comparison, a sweep's check of a finished
point) calls ``resolve`` on its config's data section and hands the result down; the layers
below (prepare, the pipeline, the readers, the trainer's out-of-vocabulary rows) read it and
never the config's data fields or the format registry again. Empty fields take the format's
defaults here and nowhere else, so two spellings of the same data (defaults left empty or
written out, ``domains`` or the old ``tabs``) resolve to the same spec, splits and cache
fields.

Only the description: nothing is read from disk and nothing generated (``prepare`` does that).
"""

from __future__ import annotations

import dataclasses
import os
from typing import Any, Mapping

from pepnet_jax import features
from pepnet_jax.data import formats


@dataclasses.dataclass(frozen=True)
class ResolvedData:
  """What a run's data is.

  Attributes:
    format: the ``DataFormat`` record ``config.data.format`` names.
    spec: the features, tasks, domains, GAUC group and gate groups (``DataSpec``).
    splits: {split: the format's description of it} (empty = the format's default).
    reader_config: ``config.data`` with every empty field filled and ``dir`` absolute: what
      the format's reader functions receive.
    dir: the data directory (``config.data.dir``, or ``<workdir>/data``).
    dir_given: whether ``config.data.dir`` named it.
    cache_dir: where the columnar cache lives (``config.data.cache_dir`` or
      ``<workdir>/cache``).
    generate: the generator's arguments when the run generates its data (KuaiRand format and
      ``config.data.generate.rows`` > 0; ``synth.generator_args``), else None.
    cache_fields: the settings the encoded columns depend on (part of the cache key).
  """
  format: formats.DataFormat
  spec: features.DataSpec
  splits: Mapping[str, Any]
  reader_config: Any
  dir: str
  dir_given: bool
  cache_dir: str
  generate: Mapping[str, Any] | None
  cache_fields: Mapping[str, Any]


def resolve(data_config: Any, workdir: str = '') -> ResolvedData:
  """Validates ``data_config`` (a ConfigDict or a config.json dict) and resolves it; a
  ValueError names the field at fault."""
  fmt = features.data_format(data_config)
  spec = features.spec_from_config(data_config, fmt)
  splits = features.resolve_splits(data_config, fmt)
  raw = data_config.to_dict() if hasattr(data_config, 'to_dict') else dict(data_config)
  get = raw.get
  directory = os.path.abspath(get('dir') or os.path.join(workdir, 'data'))
  reader_config = features.with_format_defaults(data_config, fmt, spec, splits)
  reader_config.dir = directory
  return ResolvedData(
      format=fmt, spec=spec, splits=splits, reader_config=reader_config, dir=directory,
      dir_given=bool(get('dir')),
      cache_dir=os.path.abspath(get('cache_dir') or os.path.join(workdir, 'cache')),
      generate=_generator_args(get('generate'), spec) if fmt.name == 'kuairand' else None,
      cache_fields=_cache_fields(raw, spec, splits))


def generated_tabs(domains) -> tuple[int, ...]:
  """Tabs a generated folder holds: the standard four plus any that the domains add.

  The reader drops rows of other tabs, so configs that only narrow the domains (e.g.
  experiments/narrow_settings.py) share one folder, the same data, with the rest. Not all 15
  tabs: predict mode rejects a tab outside config.data.domains, so a generated log could then
  not be predicted on with the default tabs.
  """
  from pepnet_jax.synth.stats import DEFAULT_TABS  # the generator's own default
  return tuple(sorted(set(DEFAULT_TABS) | {int(t) for t in domains}))


def _generator_args(gen: Mapping | None, spec: features.DataSpec) -> dict | None:
  """generator_meta.json["args"] of the folder the config asks for; None without rows."""
  if not gen or not int(gen.get('rows', 0) or 0):
    return None
  from pepnet_jax import synth  # the simulator pulls pandas: only when it is asked for
  value = lambda k: int(gen.get(k, 0) or 0)
  return synth.generator_args(
      value('rows'), users=value('users'), videos=value('videos'), authors=value('authors'),
      seed=value('seed'), tabs=generated_tabs(spec.domains), random_rows=value('random_rows'))


def _cache_fields(raw: Mapping, spec: features.DataSpec, splits: Mapping) -> dict:
  """The config fields the encoded columns depend on (not batch size, seed, cache_dir).

  Splits as resolved (empty = the format's), so a config that spells out the defaults and
  one that leaves them empty share a cache.
  """
  get = raw.get
  max_rows = int(get('max_rows', 0) or 0)
  return dict(spec=spec.to_dict(), splits={k: list(v) if not isinstance(v, str) else v
                                           for k, v in splits.items()},
              version=get('version', 'auto'), random_log_split=get('random_log_split', ''),
              max_rows=max_rows,
              **({'max_rows_seed': int(get('seed', 0) or 0)} if max_rows else {}))
