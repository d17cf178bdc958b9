"""Feature spec: which raw columns become which model inputs.

The data layer is driven by this spec (built from ``config.data``), not by code, so a new
feature or a new dataset is a config change. Everything format-specific that the spec needs
(default domain column, known domain values, default feature lists) sits in ``FORMATS`` and
the two preset helpers at the end; readers do the file-level work.

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

KINDS = ('categorical', 'multi', 'bucket', 'dense', 'cross')
TRANSFORMS = ('none', 'log1p')
PAD_ID = 0
OOV_ID = 1
FIRST_ID = 2

# Per format: the domain column, the domain values the dataset can contain (a row outside
# them is a data error, not a filtered row) and the default GAUC group column.
FORMATS: dict[str, dict[str, Any]] = {
    'kuairand': dict(domain_column='tab', known_domains=tuple(range(15)), group_column='user_id'),
    'aliccp': dict(domain_column='301', known_domains=(1, 2, 3), group_column='101'),
}

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

    ``domains`` are the raw domain values (KuaiRand ``tab``); their order defines the
    ``domain`` index in batches. ``groups`` maps gate groups (domain/user/item/author) to
    feature names.
    """
    format: str
    features: tuple[FeatureSpec, ...]
    tasks: tuple[str, ...]
    domain_column: str
    domains: tuple[int, ...]
    group_column: str
    groups: Mapping[str, tuple[str, ...]] = dataclasses.field(default_factory=dict, hash=False)

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
                   domains=tuple(int(x) for x in d['domains']), group_column=d['group_column'],
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


def spec_from_config(data_config: Any) -> DataSpec:
    """Validate ``config.data`` and build the DataSpec; ValueError names the bad field.

    Empty ``features`` means the format's preset (``kuairand_features()`` ...); empty
    ``groups`` means the preset groups restricted to the configured features.
    """
    fmt = _get(data_config, 'format')
    if fmt not in FORMATS:
        raise ValueError(f'config.data.format={fmt!r} is not one of {tuple(FORMATS)}')
    defaults = FORMATS[fmt]

    raw_features = _get(data_config, 'features')
    preset = not raw_features  # [] / None = the format's preset features and groups
    if preset:
        raw_features = PRESETS[fmt][0]()
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

    tasks = _get(data_config, 'tasks')
    if isinstance(tasks, str) or not tasks:
        raise ValueError(f'config.data.tasks must be a non-empty list of label columns, got {tasks!r}')
    tasks = tuple(tasks)
    for i, t in enumerate(tasks):
        if not isinstance(t, str) or not t:
            raise ValueError(f'config.data.tasks[{i}]={t!r} must be a column name')
        if tasks.index(t) != i:
            raise ValueError(f'config.data.tasks[{i}]={t!r} is listed twice')

    domain_column = _get(data_config, 'domain_column', None) or defaults['domain_column']
    domains = _get(data_config, 'tabs')
    if domains is None or isinstance(domains, (str, bytes)) or len(tuple(domains)) == 0:
        raise ValueError(f'config.data.tabs must be a non-empty list of {domain_column!r} values, '
                         f'got {domains!r}')
    domains = tuple(domains)
    known = defaults['known_domains']
    for i, v in enumerate(domains):
        if not _is_int(v):
            raise ValueError(f'config.data.tabs[{i}]={v!r} must be an int')
        if v not in known:
            raise ValueError(f'config.data.tabs[{i}]={v} is not a {fmt} {domain_column!r} value; '
                             f'known values: {list(known)}')
        if domains.index(v) != i:
            raise ValueError(f'config.data.tabs[{i}]={v} is listed twice')

    group_column = _get(data_config, 'group_column', None) or defaults['group_column']
    if not isinstance(group_column, str):
        raise ValueError(f'config.data.group_column={group_column!r} must be a column name')

    raw_groups = _get(data_config, 'groups', None) or {}
    if not raw_groups:  # the preset groups, minus features this config does not have
        raw_groups = {g: tuple(m for m in members if m in seen)
                      for g, members in PRESETS[fmt][1]().items()}
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

    return DataSpec(format=fmt, features=features, tasks=tasks, domain_column=domain_column,
                    domains=domains, group_column=group_column, groups=groups)


# --------------------------------------------------------------------------------------------
# Presets. Each returns plain dicts so they drop straight into ``config.data.features``.


def kuairand_features() -> list[dict[str, Any]]:
    """Default KuaiRand features (columns of the log, user and video feature files).

    * user_id, video_id, author_id: the identity embeddings; also the PPNet priors.
    * tab: the domain id (shared=False: it only feeds the EPNet domain gate).
    * user_active_degree, is_live_streamer (-124 = missing -> OOV), is_video_author: profile.
    * follow/fans/friend_user_num_range, register_days_range: the official bucket strings
      (quoted, with commas) as categories; the raw counts as log1p-standardized dense inputs.
    * onehot_feat0..17: the 18 encrypted user categoricals (4 and 12-17 have NaN -> OOV).
    * video_type, upload_type, music_type: video categoricals; music_id with min_count=2 so
      one-off tracks share the OOV row.
    * tag: comma-separated category list, mean-pooled (<= 3 tags in the Pure file).
    * duration: the log's duration_ms (always present, unlike video_duration) in 20 quantile
      buckets; hourmin in 24 quantile buckets as the time-of-day context.
    """
    cat = lambda name, column=None, **kw: dict(name=name, column=column or name,
                                               kind='categorical', **kw)
    feats = [
        cat('user_id'), cat('video_id'), cat('author_id'), cat('tab', shared=False),
        cat('user_active_degree'), cat('is_live_streamer'), cat('is_video_author'),
        cat('follow_user_num_range'), cat('fans_user_num_range'), cat('friend_user_num_range'),
        cat('register_days_range'),
    ]
    feats += [cat(f'onehot_feat{i}') for i in range(18)]
    feats += [
        cat('video_type'), cat('upload_type'), cat('music_type'), cat('music_id', min_count=2),
        dict(name='tag', column='tag', kind='multi', max_len=3, sep=','),
        dict(name='duration', column='duration_ms', kind='bucket', num_buckets=20),
        dict(name='hourmin', column='hourmin', kind='bucket', num_buckets=24),
    ]
    feats += [dict(name=c, column=c, kind='dense', transform='log1p')
              for c in ('follow_user_num', 'fans_user_num', 'friend_user_num', 'register_days')]
    return feats


def kuairand_groups() -> dict[str, tuple[str, ...]]:
    """Gate inputs: the domain side for EPNet and the user/item/author priors for PPNet."""
    return dict(domain=('tab',),
                user=('user_id', 'user_active_degree', 'is_live_streamer', 'is_video_author',
                      'fans_user_num_range', 'register_days_range'),
                item=('video_id', 'video_type', 'upload_type', 'tag', 'duration'),
                author=('author_id',))


# Ali-CCP field id -> feature name. 0 in these fields already means "rare or missing"
# (upstream preprocessing); it is kept as an ordinary id.
_ALICCP_SPARSE = {
    '101': 'user_id', '121': 'user_profile_category', '122': 'user_profile_group',
    '124': 'user_gender', '125': 'user_age', '126': 'user_consumption_1',
    '127': 'user_consumption_2', '128': 'user_occupation', '129': 'user_geo_level',
    '205': 'item_id', '206': 'item_category', '207': 'item_shop', '210': 'item_intention',
    '216': 'item_brand', '508': 'cross_category', '509': 'cross_shop', '702': 'cross_brand',
    '853': 'cross_intention', '109_14': 'user_category_14d', '110_14': 'user_shop_14d',
    '127_14': 'user_brand_14d', '150_14': 'user_intention_14d',
}
_ALICCP_DENSE = ('D109_14', 'D110_14', 'D127_14', 'D150_14', 'D508', 'D509', 'D702', 'D853')


def aliccp_features() -> list[dict[str, Any]]:
    """Default Ali-CCP features: the 22 sparse fields, domain 301 (gate only), 8 D weights.

    The D columns are already min-max scaled upstream; they are standardized again here.
    """
    feats = [dict(name=name, column=col, kind='categorical') for col, name in _ALICCP_SPARSE.items()]
    feats.append(dict(name='domain', column='301', kind='categorical', shared=False))
    feats += [dict(name=f'w_{c[1:]}', column=c, kind='dense') for c in _ALICCP_DENSE]
    return feats


def aliccp_groups() -> dict[str, tuple[str, ...]]:
    """Gate inputs for Ali-CCP: shop and brand play the role of the author."""
    return dict(domain=('domain',),
                user=('user_id', 'user_profile_category', 'user_gender', 'user_age'),
                item=('item_id', 'item_category'),
                author=('item_shop', 'item_brand'))


PRESETS = {'kuairand': (kuairand_features, kuairand_groups),
           'aliccp': (aliccp_features, aliccp_groups)}
