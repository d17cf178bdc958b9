"""A declaration (``get_sweep``) -> named points, and the experiment files
that hold declarations; see ``pepnet_jax.sweeps.cli`` for the rules."""

from __future__ import annotations

import importlib.util
import inspect
import itertools
import os
import re
import warnings
from typing import Any, Mapping, Sequence

from pepnet_jax.sweeps.common import SEED_FIELDS, Point, cli_args, finish_name, label

DECL_KEYS = ('product', 'zip', 'points', 'seeds', 'names')
_FIELD_RE = re.compile(r'^[A-Za-z_]\w*(\.[A-Za-z_]\w*)*$')


def check_field(field, where: str):
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


def check_seeds(seeds) -> list:
  """The seed axis: ``[None]`` (no seed overrides) or a list of ints."""
  if seeds is None or (isinstance(seeds, Sequence) and not seeds):
    return [None]
  seeds = _choices('seeds', seeds, 'seeds')
  for s in seeds:
    if isinstance(s, bool) or not isinstance(s, int):
      raise ValueError(f'sweep seeds must be integers, got {s!r}')
  return seeds


def _axes(sweep: Mapping[str, Any]) -> tuple[list, list]:
  """(seed choices, axes); an axis is a list of (label parts, overrides)."""
  unknown = set(sweep) - set(DECL_KEYS)
  if unknown:
    raise ValueError(f'sweep: unknown keys {sorted(unknown)}; allowed: {list(DECL_KEYS)}')
  names = sweep.get('names')
  if names is not None and not callable(names) and not isinstance(names, Mapping):
    raise ValueError('sweep names must be a {field: alias} dict or a callable')
  aliases = names if isinstance(names, Mapping) else {}
  owner: dict[str, str] = {}

  def claim(field, where):
    check_field(field, where)
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
      parts = [str(p['_name'])] if '_name' in p else [label(k, v, aliases) for k, v in over.items()]
      axis.append((parts, over, p.get('_name')))
    axes.append(axis)
  for field, values in (sweep.get('product') or {}).items():
    claim(field, 'product')
    axes.append([([label(field, v, aliases)], {field: v}, None)
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
    axes.append([([label(f, lists[f][i], aliases) for f in lists],
                  {f: lists[f][i] for f in lists}, None) for i in range(len(lists[first]))])
  seeds = check_seeds(sweep.get('seeds'))
  if seeds != [None]:
    for f in SEED_FIELDS:
      claim(f, 'seeds')
  return seeds, axes


def with_seed(config_name: str, over: Mapping[str, Any], seed: int | None) -> Point:
  """The point of configuration ``config_name`` run with ``seed``."""
  over = dict(over)
  if seed is None:
    return Point(name=config_name, config_name=config_name, overrides=over)
  over.update({f: seed for f in SEED_FIELDS})
  return Point(name=finish_name(f'{config_name},seed={seed}'), config_name=config_name,
               overrides=over, seed=seed)


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
        config_name = finish_name(str(names(arg)))
      else:
        config_name = finish_name(','.join(parts))
      p = with_seed(config_name, over, seed)
      if p.name in seen:
        raise ValueError(f'sweep: two points are both named {p.name!r} ({seen[p.name]} and '
                         f'{p.overrides}); make the values or their names distinct')
      seen[p.name] = p.overrides
      out.append(p)
  return out


def expand(sweep: Mapping[str, Any]) -> list[dict]:
  """The override dicts of every point (seed fields included), in run order."""
  return [p.overrides for p in expand_points(sweep)]


# ----------------------------------------------------------- config files

def split_config_arg(config: str) -> tuple[str, str]:
  path, _, preset = config.partition(':')
  return path, preset


def load_declaration(config: str, fn: str, kind: str = 'sweep'):
  """``fn(preset)`` of ``experiments/X.py[:preset]`` (a dict), or None when
  the file does not define ``fn``."""
  path, preset = split_config_arg(config)
  if not os.path.isfile(path):
    raise FileNotFoundError(f'--config {config}: no file {path}')
  mod_name = '_pepnet_sweep_' + re.sub(r'\W', '_', os.path.abspath(path))
  spec = importlib.util.spec_from_file_location(mod_name, path)
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  get = getattr(module, fn, None)
  if get is None:
    return None
  decl = get(preset) if inspect.signature(get).parameters else get()
  if not isinstance(decl, Mapping):
    raise ValueError(f'{path}: {fn}() must return a dict, got {type(decl).__name__}')
  return dict(decl)


def load_sweep(config: str) -> dict:
  """``get_sweep(preset)`` of ``experiments/X.py[:preset]``."""
  sweep = load_declaration(config, 'get_sweep')
  if sweep is None:
    path = split_config_arg(config)[0]
    hint = (' (it defines get_search: run with --search)'
            if load_declaration(config, 'get_search') is not None else '')
    raise ValueError(f'{path} defines no get_sweep(preset=""): nothing to sweep{hint}')
  return sweep


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
