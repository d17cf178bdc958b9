"""Feature spec: which raw columns become which model inputs.

The data layer is driven by this spec (built from ``config.data``), not by code, so a new
feature is a config change. Nothing here is format-specific: the defaults of a format (domain
column, known domain values, tasks, preset features) come from its ``DataFormat`` record
(``pepnet_jax/data/formats.py``), which the format's own module registers; readers do the
file-level work.

Id conventions shared by every sparse kind (categorical, multi, bucket, cross):
  * 0 = padding (only ever produced for the unused slots of a ``multi`` list),
  * 1 = out-of-vocabulary: unseen in train, rarer than ``min_count``, beyond ``max_vocab``,
    or a missing value (NaN, empty, KuaiRand's -124 / ``UNKNOWN``),
  * 2.. = real ids.
So ``FeatureInfo.vocab_size`` always counts the two reserved ids.

A ``cross`` feature is one id per combination of the raw values of several columns, named in
``column`` with commas (``dict(name='tab_x_video_id', kind='cross', column='tab,video_id')``).
``config.data.crosses=('tab,video_id',)`` adds the same (named ``tab_x_video_id``) to whatever
``features`` holds. A cross is fitted like a categorical (min_count, max_vocab, hash_buckets);
a combination unseen in train, or with any part missing, is OOV. Models see it as an ordinary
categorical: it is how a linear model learns what a pair means beyond the sum of its parts.
"""

from __future__ import annotations

import dataclasses
import re
from typing import Any, Mapping

from pepnet_jax.data import formats  # imports nothing of ours: no cycle with the readers

KINDS = ('categorical', 'multi', 'bucket', 'dense', 'cross')
TRANSFORMS = ('none', 'log1p')
PAD_ID = 0
OOV_ID = 1
FIRST_ID = 2

_NAME_RE = re.compile(r'^[A-Za-z0-9_.\-]+$')
_FEATURE_KEYS = ('name', 'column', 'kind', 'max_len', 'sep', 'num_buckets', 'hash_buckets',
                 'min_count', 'max_vocab', 'transform', 'shared')


@dataclasses.dataclass(frozen=True)
class FeatureSpec:
    """One model input. ``column`` is the raw column it is computed from (a cross: the
    comma-separated columns it combines, see ``columns``)."""
    name: str
    column: str
    kind: str
    max_len: int = 1
    sep: str = ','
    num_buckets: int = 0
    hash_buckets: int = 0
    min_count: int = 1
    max_vocab: int = 0
    transform: str = 'none'
    shared: bool = True

    @property
    def columns(self) -> tuple[str, ...]:
        """The raw columns this feature reads: the parts of a cross, else just ``column``."""
        return tuple(self.column.split(',')) if self.kind == 'cross' else (self.column,)


@dataclasses.dataclass(frozen=True)
class DataSpec:
    """The validated ``config.data`` subset the data layer and the model agree on.

    ``domains`` are the raw values of ``domain_column`` (KuaiRand ``tab`` ints, or strings
    such as scene names); their order defines the ``domain`` index in batches.
    ``group_column`` is the GAUC group: one column, or columns joined by commas (see
    ``group_columns``). ``groups`` maps gate groups (domain/user/item/author) to feature names.
    """
    format: str
    features: tuple[FeatureSpec, ...]
    tasks: tuple[str, ...]
    domain_column: str
    domains: tuple[Any, ...]
    group_column: str
    groups: Mapping[str, tuple[str, ...]] = dataclasses.field(default_factory=dict, hash=False)

    @property
    def group_columns(self) -> tuple[str, ...]:
        """The raw columns whose combination is a GAUC group ('user_id,tab': user x domain)."""
        return tuple(self.group_column.split(','))

    def feature(self, name: str) -> FeatureSpec:
        for f in self.features:
            if f.name == name:
                return f
        raise KeyError(name)

    @property
    def feature_columns(self) -> tuple[str, ...]:
        """Raw columns the features read, unique, in spec order."""
        return tuple(dict.fromkeys(c for f in self.features for c in f.columns))

    def reader_spec(self) -> 'DataSpec':
        """This spec as the file readers see it: each cross becomes plain categoricals on its
        part columns, so a reader, which plans what to read from ``f.column``, fetches every
        part (and normalises its missing values) without knowing crosses exist.

        Features keep their index (a cross's first part takes its place, its other parts come
        last under the cross's name), so a reader's error still names the feature at fault.
        Returns ``self`` when there is no cross.
        """
        crosses = [f for f in self.features if f.kind == 'cross']
        if not crosses:
            return self
        part = lambda f, c: FeatureSpec(name=f.name, column=c, kind='categorical',
                                        shared=f.shared)
        feats = [part(f, f.columns[0]) if f.kind == 'cross' else f for f in self.features]
        feats += [part(f, c) for f in crosses for c in f.columns[1:]]
        return dataclasses.replace(self, features=tuple(feats))

    def to_dict(self) -> dict[str, Any]:
        """JSON-able form; used for the cache key and saved next to the vocab."""
        return dict(format=self.format,
                    features=[dataclasses.asdict(f) for f in self.features],
                    tasks=list(self.tasks), domain_column=self.domain_column,
                    domains=list(self.domains), group_column=self.group_column,
                    groups={k: list(v) for k, v in self.groups.items()})

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> 'DataSpec':
        return cls(format=d['format'],
                   features=tuple(FeatureSpec(**f) for f in d['features']),
                   tasks=tuple(d['tasks']), domain_column=d['domain_column'],
                   domains=tuple(d['domains']), group_column=d['group_column'],
                   groups={k: tuple(v) for k, v in d['groups'].items()})


@dataclasses.dataclass(frozen=True)
class FeatureInfo:
    """What the model needs per feature. vocab_size includes ids 0 and 1; 0 for dense."""
    name: str
    kind: str
    vocab_size: int
    max_len: int
    shared: bool


def _get(cfg: Any, key: str, default: Any = None) -> Any:
    """``cfg[key]`` of a ConfigDict, a config.json dict or an object with attributes."""
    if isinstance(cfg, Mapping):
        return cfg.get(key, default)
    return cfg.get(key, default) if hasattr(cfg, 'get') else getattr(cfg, key, default)


def _as_dict(x: Any) -> dict:
    if hasattr(x, 'to_dict'):
        return x.to_dict()
    return dict(x)


def _is_int(x: Any) -> bool:
    return isinstance(x, int) and not isinstance(x, bool)


def _feature_from_config(i: int, raw: Any) -> FeatureSpec:
    where = f'config.data.features[{i}]'
    try:
        d = _as_dict(raw)
    except (TypeError, ValueError):
        raise ValueError(f'{where} must be a dict with name/column/kind, got {raw!r}') from None
    unknown = sorted(set(d) - set(_FEATURE_KEYS))
    if unknown:
        raise ValueError(f'{where} has unknown option(s) {unknown}; allowed: {list(_FEATURE_KEYS)}')
    for key in ('name', 'kind'):
        if not isinstance(d.get(key), str) or not d.get(key):
            raise ValueError(f'{where}.{key} is required (a non-empty string), got {d.get(key)!r}')
    name = d['name']
    if not _NAME_RE.match(name):
        raise ValueError(f'{where}.name={name!r} may only use letters, digits, "_", "." and "-"')
    kind = d['kind']
    if kind not in KINDS:
        raise ValueError(f'{where}.kind={kind!r} is not one of {KINDS}')
    if kind == 'cross':
        d['column'] = _cross_columns(f'{where}.column', d.get('column'))
    d.setdefault('column', name)
    if not isinstance(d['column'], str) or not d['column']:
        raise ValueError(f'{where}.column must be a non-empty string, got {d["column"]!r}')
    for key in ('max_len', 'num_buckets', 'hash_buckets', 'min_count', 'max_vocab'):
        if key in d and not _is_int(d[key]):
            raise ValueError(f'{where}.{key}={d[key]!r} must be an int')
    spec = FeatureSpec(**d)
    if spec.max_len < 1:
        raise ValueError(f'{where}.max_len={spec.max_len} must be >= 1')
    if kind != 'multi' and spec.max_len != 1:
        raise ValueError(f'{where}.max_len={spec.max_len} only applies to kind="multi"')
    if kind == 'multi' and (not isinstance(spec.sep, str) or not spec.sep):
        raise ValueError(f'{where}.sep={spec.sep!r} must be a non-empty string')
    if kind == 'bucket' and spec.num_buckets < 2:
        raise ValueError(f'{where}.num_buckets={spec.num_buckets} must be >= 2 for kind="bucket"')
    if kind != 'bucket' and spec.num_buckets:
        raise ValueError(f'{where}.num_buckets only applies to kind="bucket"')
    if spec.hash_buckets < 0 or spec.min_count < 1 or spec.max_vocab < 0:
        raise ValueError(f'{where}: need hash_buckets >= 0, min_count >= 1, max_vocab >= 0; got '
                         f'{spec.hash_buckets}, {spec.min_count}, {spec.max_vocab}')
    if spec.hash_buckets and kind not in ('categorical', 'multi', 'cross'):
        raise ValueError(f'{where}.hash_buckets only applies to categorical/multi/cross features')
    if spec.hash_buckets and (spec.max_vocab or spec.min_count != 1):
        raise ValueError(f'{where}: hash_buckets excludes max_vocab/min_count (no vocabulary)')
    if spec.transform not in TRANSFORMS:
        raise ValueError(f'{where}.transform={spec.transform!r} is not one of {TRANSFORMS}')
    if spec.transform != 'none' and kind != 'dense':
        raise ValueError(f'{where}.transform only applies to kind="dense"')
    if not isinstance(spec.shared, bool):
        raise ValueError(f'{where}.shared={spec.shared!r} must be True or False')
    return spec


def _cross_columns(field: str, raw: Any) -> str:
    """A cross's columns: 'a,b' or ['a', 'b'], stored as 'a,b' (the spec stays flat)."""
    if isinstance(raw, str):
        parts = [p.strip() for p in raw.split(',')]
    elif isinstance(raw, (list, tuple)) and all(isinstance(p, str) for p in raw):
        parts = [p.strip() for p in raw]
    else:
        raise ValueError(f'{field} must name the columns a cross combines, as '
                         f'"tab,video_id" or ["tab", "video_id"]; got {raw!r}')
    if len(parts) < 2 or not all(parts) or any(',' in p for p in parts):
        raise ValueError(f'{field}={raw!r}: a cross needs two or more non-empty column '
                         'names, e.g. "tab,video_id"')
    if len(set(parts)) != len(parts):
        raise ValueError(f'{field}={raw!r} names a column twice')
    return ','.join(parts)


def _crosses_from_config(raw: Any) -> tuple[FeatureSpec, ...]:
    """``config.data.crosses``: column lists that become crosses named 'a_x_b', with the
    categorical defaults, added to whatever ``features`` holds (the preset included), so a
    cross is one command-line flag away; options need a full entry in ``features``."""
    if not raw:
        return ()
    if isinstance(raw, (str, Mapping)):
        raise ValueError(f'config.data.crosses must be a list of column lists such as '
                         f'("tab,video_id", "tab,author_id"), got {raw!r}')
    out = []
    for j, c in enumerate(raw):
        column = _cross_columns(f'config.data.crosses[{j}]', c)
        name = '_x_'.join(column.split(','))
        if not _NAME_RE.match(name):
            raise ValueError(f'config.data.crosses[{j}]={c!r} gives the feature name {name!r}; '
                             'declare it in config.data.features with a name of letters, '
                             'digits, "_", "." and "-"')
        out.append(FeatureSpec(name=name, column=column, kind='cross'))
    return tuple(out)


def _values(field: str, raw: Any) -> tuple:
    """A config list as a tuple. A string, or a string element, splits at its commas:
    ``--config.data.domains=home,search`` reaches the config as the one string 'home,search'."""
    if raw is None:
        return ()
    if isinstance(raw, str):
        raw = (raw,)
    elif isinstance(raw, Mapping) or not hasattr(raw, '__iter__'):
        raise ValueError(f'{field} must be a list, got {raw!r}')
    out = []
    for v in raw:
        out += [p.strip() for p in v.split(',')] if isinstance(v, str) and ',' in v else [v]
    return tuple(out)


def data_format(data_config: Any) -> 'formats.DataFormat':
    """The ``DataFormat`` record ``config.data.format`` names (ValueError naming the field)."""
    return formats.get(_get(data_config, 'format'))


def resolve_tasks(data_config: Any, fmt: 'formats.DataFormat | None' = None) -> tuple:
    """``config.data.tasks`` (label columns), or the format's default when empty; validated."""
    fmt = fmt or data_format(data_config)
    tasks = _values('config.data.tasks', _get(data_config, 'tasks', None)) or fmt.tasks
    if not tasks:
        raise ValueError(f'config.data.tasks is empty and the {fmt.name!r} format has no '
                         'default: list the label columns')
    for i, t in enumerate(tasks):
        if not isinstance(t, str) or not t:
            raise ValueError(f'config.data.tasks[{i}]={t!r} must be a column name')
        if tasks.index(t) != i:
            raise ValueError(f'config.data.tasks[{i}]={t!r} is listed twice')
    return tasks


def resolve_domains(data_config: Any, fmt: 'formats.DataFormat | None' = None) -> tuple:
    """The domains a config keeps, validated: ``config.data.domains``, else its deprecated
    alias ``config.data.tabs`` (older experiment files and config.json files), else the
    format's default. Both set and different is an error: which one was meant is unknowable.

    Every reader of the domains goes through here (the spec, prepare's generated tabs, the
    oracle), so old and new configs mean the same runs.
    """
    fmt = fmt or data_format(data_config)
    domains = _values('config.data.domains', _get(data_config, 'domains', None))
    tabs = _values('config.data.tabs', _get(data_config, 'tabs', None))
    if domains and tabs and domains != tabs:
        raise ValueError(f'config.data.domains={list(domains)} and config.data.tabs={list(tabs)} '
                         'disagree; tabs is the old name of domains: set only '
                         'config.data.domains')
    field = 'config.data.tabs' if tabs and not domains else 'config.data.domains'
    column = _get(data_config, 'domain_column', None) or fmt.domain_column
    values = domains or tabs or fmt.domains
    if not values:
        raise ValueError(f'config.data.domains is empty and the {fmt.name!r} format has no '
                         f'default: list the {column!r} values to keep')
    # A format's known values are those of its own domain column, not of one the config picks.
    known = fmt.known_domains if column == fmt.domain_column else None
    seen = set()
    for i, v in enumerate(values):
        if not (_is_int(v) or (isinstance(v, str) and v)):
            raise ValueError(f'{field}[{i}]={v!r} must be an int or a non-empty string '
                             f'(a {column!r} value)')
        if known is not None and v not in known:
            raise ValueError(f'{field}[{i}]={v!r} is not a {fmt.name} {column!r} value; known '
                             f'values: {list(known)}')
        if str(v) in seen:  # 1 and '1' would match the same rows (pipeline.encode_frame)
            raise ValueError(f'{field}[{i}]={v!r} is listed twice')
        seen.add(str(v))
    return values


def resolve_splits(data_config: Any, fmt: 'formats.DataFormat | None' = None) -> dict:
    """``config.data.splits``, or the format's default when it is empty ({} when the format
    has none: its reader ignores splits)."""
    raw = _get(data_config, 'splits', None)
    if raw:
        return _as_dict(raw)
    fmt = fmt or data_format(data_config)
    return dict(fmt.splits or {})


def with_format_defaults(data_config: Any, fmt: 'formats.DataFormat | None' = None,
                         spec: 'DataSpec | None' = None, splits: dict | None = None) -> Any:
    """A copy of ``config.data`` whose empty fields hold the format's defaults (splits, tasks,
    domains, domain_column, group_column): what the format's reader functions get, so that a
    reader reads ``data_config['splits']`` and never needs to know that empty means default.
    ``spec`` and ``splits``, when the caller has resolved them already (``data.resolve``),
    are used as they are."""
    import ml_collections
    fmt = fmt or data_format(data_config)
    if isinstance(data_config, ml_collections.ConfigDict):
        out = data_config.copy_and_resolve_references()
        out.unlock()
    else:
        out = ml_collections.ConfigDict(dict(data_config))
    filled = dict(splits=resolve_splits(data_config, fmt) if splits is None else splits,
                  tasks=spec.tasks if spec else resolve_tasks(data_config, fmt),
                  domains=spec.domains if spec else resolve_domains(data_config, fmt),
                  domain_column=_get(data_config, 'domain_column', None) or fmt.domain_column,
                  group_column=_get(data_config, 'group_column', None) or fmt.group_column)
    for k, v in filled.items():
        if k in out:
            del out[k]  # a ConfigDict field keeps its first type; the default may differ
        out[k] = v
    out.tabs = ()
    return out


def _group_column(raw: Any) -> str:
    """'user_id' or 'user_id,tab' (or a list of names), stored as 'a,b': the spec stays flat."""
    parts = _values('config.data.group_column', raw) if raw else ()
    if not parts or not all(isinstance(p, str) and p for p in parts):
        raise ValueError(f'config.data.group_column={raw!r} must name a column, or columns '
                         "joined by commas (e.g. 'user_id,tab')")
    if len(set(parts)) != len(parts):
        raise ValueError(f'config.data.group_column={raw!r} names a column twice')
    return ','.join(parts)


def spec_from_config(data_config: Any, fmt: 'formats.DataFormat | None' = None) -> DataSpec:
    """Validate ``config.data`` and build the DataSpec; ValueError names the bad field.

    Empty fields take the format's defaults (its ``DataFormat`` record): ``features`` the
    preset, ``groups`` the preset groups restricted to the configured features, and
    ``tasks``, ``domains`` (or the deprecated ``tabs``), ``domain_column``, ``group_column``.
    A run calls it through ``data.resolve.resolve``, once.
    """
    fmt = fmt or data_format(data_config)

    raw_features = _get(data_config, 'features')
    preset = not raw_features  # [] / None = the format's preset features and groups
    if preset:
        raw_features = fmt.features()
    elif isinstance(raw_features, (str, Mapping)):
        raise ValueError(f'config.data.features must be a list of feature dicts, got {raw_features!r}')
    features = tuple(_feature_from_config(i, f) for i, f in enumerate(raw_features))
    n_listed = len(features)
    features += _crosses_from_config(_get(data_config, 'crosses', None))
    seen: dict[str, int] = {}
    for i, f in enumerate(features):
        if f.name in seen:
            at = lambda k: (f'config.data.features[{k}]' if k < n_listed
                            else f'config.data.crosses[{k - n_listed}]')
            if i < n_listed:
                raise ValueError(f'{at(i)}.name={f.name!r} duplicates {at(seen[f.name])}')
            raise ValueError(f'{at(i)} makes the feature {f.name!r}, which duplicates '
                             f'{at(seen[f.name])}')
        seen[f.name] = i

    tasks = resolve_tasks(data_config, fmt)
    domain_column = _get(data_config, 'domain_column', None) or fmt.domain_column
    if not isinstance(domain_column, str):
        raise ValueError(f'config.data.domain_column={domain_column!r} must be a column name')
    domains = resolve_domains(data_config, fmt)
    group_column = _group_column(_get(data_config, 'group_column', None) or fmt.group_column)

    raw_groups = _get(data_config, 'groups', None) or {}
    if not raw_groups:  # the preset groups, minus features this config does not have
        raw_groups = {g: tuple(m for m in members if m in seen)
                      for g, members in fmt.groups().items()}
        raw_groups = {g: m for g, m in raw_groups.items() if m}
    groups: dict[str, tuple[str, ...]] = {}
    for gname, members in _as_dict(raw_groups).items():
        if isinstance(members, str):
            members = (members,)
        members = tuple(members)
        if not members:
            raise ValueError(f'config.data.groups.{gname} is empty')
        for m in members:
            if m not in seen:
                raise ValueError(f'config.data.groups.{gname} names unknown feature {m!r}; '
                                 f'features: {list(seen)}')
        groups[gname] = members

    return DataSpec(format=fmt.name, features=features, tasks=tasks, domain_column=domain_column,
                    domains=domains, group_column=group_column, groups=groups)
