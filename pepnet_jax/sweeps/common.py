"""What sweeps and aggregation share: point names, values on command lines,
the sweep directory's files and reports.

Both ``pepnet_jax.sweeps.cli`` and ``pepnet_jax.sweeps.aggregate`` import this module and
it imports neither, which keeps the two free of an import cycle.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import os
import re
from typing import Any, Mapping

from pepnet_jax import files

SEED_FIELDS = ('train.seed', 'data.seed')  # what ``seeds`` sets
REPORT = 'report.json'
METRICS = 'metrics.jsonl'
LOG = 'log.txt'
SWEEP_JSON = 'sweep.json'
SEARCH_JSON = 'search.json'
REPO_ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
_UNSAFE = re.compile(r'[^A-Za-z0-9._=,+\-]')
_MAX_NAME = 150


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


# ------------------------------------------------------------------- names

def name_value(v) -> str:
  if isinstance(v, bool):
    return 'true' if v else 'false'
  if isinstance(v, (tuple, list)):
    return '-'.join(name_value(e) for e in v) if v else 'empty'
  if isinstance(v, float):
    return repr(v)
  return str(v)


def safe(s: str) -> str:
  """``s`` with characters that trouble shells and file systems as ``_``."""
  return _UNSAFE.sub('_', s)


def finish_name(s: str) -> str:
  s = safe(s) or 'base'
  if s in ('.', '..'):  # a point's folder would be the sweep folder itself, or its parent
    s = s.replace('.', '_')
  if len(s) > _MAX_NAME:  # long names break some tools; keep them unique
    s = s[:_MAX_NAME - 9] + '~' + hashlib.sha1(s.encode()).hexdigest()[:8]
  return s


def label(field: str, value, aliases: Mapping[str, str]) -> str:
  return f'{aliases.get(field, field)}={name_value(value)}'


def point_name(overrides: Mapping[str, Any], names=None, seed: int | None = None) -> str:
  """The name of a point with ``overrides`` (seed fields excluded) and ``seed``."""
  over = {k: v for k, v in overrides.items() if k not in SEED_FIELDS}
  if callable(names):
    base = finish_name(str(names(dict(over))))
  else:
    aliases = names or {}
    parts = [str(over['_name'])] if '_name' in over else []
    parts += [label(k, v, aliases) for k, v in over.items() if k != '_name']
    base = finish_name(','.join(parts))
  return base if seed is None else finish_name(f'{base},seed={seed}')


# ------------------------------------------------------------------- files

def jsonable(v):
  """``v`` as JSON can hold it: tuples as lists, NaN/inf as null, others repr'd."""
  if isinstance(v, dict):
    return {str(k): jsonable(x) for k, x in v.items()}
  if isinstance(v, (list, tuple)):
    return [jsonable(x) for x in v]
  if isinstance(v, float) and not math.isfinite(v):
    return None
  if v is None or isinstance(v, (bool, int, float, str)):
    return v
  return repr(v)


def write_json(path: str, obj):
  """Atomic: a reader (or a kill) never sees half a status file."""
  with files.atomic_write(path) as f:
    json.dump(obj, f, indent=2)
    f.write('\n')


def read_json(path: str):
  """The file's JSON, or None when it is missing or unreadable."""
  try:
    with open(path) as f:
      return json.load(f)
  except (OSError, ValueError):
    return None


def read_status(sweep_dir: str) -> dict:
  """``SWEEP_DIR/sweep.json`` ({} when absent or damaged)."""
  meta = read_json(os.path.join(sweep_dir, SWEEP_JSON))
  return meta if isinstance(meta, dict) else {}


def status_points(sweep_dir: str) -> dict[str, dict]:
  """{point name: its record} from sweep.json, in sweep order."""
  pts = read_status(sweep_dir).get('points')
  if not isinstance(pts, list):
    return {}
  return {p['name']: p for p in pts if isinstance(p, dict) and isinstance(p.get('name'), str)}


def finished(sweep_dir: str, name: str) -> bool:
  """A run is finished when it wrote its report (the trainer's last act)."""
  return os.path.isfile(os.path.join(sweep_dir, name, REPORT))


def num(v) -> float:
  try:
    return math.nan if v is None else float(v)
  except (TypeError, ValueError):
    return math.nan


def report_metrics(report: Mapping) -> dict[str, float]:
  """Flat metrics of a results dict (report.json or its parts), named as in
  metrics.jsonl: mean_*, auc/<task>, gauc/<task>/domain_<d>, ..."""
  means = report.get('mean') or {}
  out = {f'mean_{m}': num(means.get(m)) for m in dict.fromkeys(('auc', 'gauc', 'logloss', *means))}
  overall = report.get('overall') or {}
  domains = report.get('domains') or {}
  tasks = list(dict.fromkeys([*overall, *(t for d in domains.values() for t in (d or {}))]))
  for m in ('auc', 'gauc'):
    for t in tasks:
      out[f'{m}/{t}'] = num((overall.get(t) or {}).get(m))
      for d, per_task in domains.items():
        out[f'{m}/{t}/domain_{d}'] = num(((per_task or {}).get(t) or {}).get(m))
  if 'num_params' in report:  # the model's size (report.json since it recorded it)
    out['num_params'] = num(report['num_params'])
  return out
