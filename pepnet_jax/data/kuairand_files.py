"""The KuaiRand folder: file names and their date ranges (Pure / 1K / 27K, ``_part``
files), the log and feature-file columns and dtypes, the split dates, and the preset
features and gate groups over those columns. No reading of rows here: ``kuairand.py`` reads
the files this finds."""

from __future__ import annotations

import dataclasses
import datetime as _dt
import re
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from pepnet_jax.data.errors import DataError, missing_file_error


YEAR = 2022
MISSING_CODE = -124
UNKNOWN_STRINGS = ('UNKNOWN',)
KNOWN_TABS = tuple(range(15))
DEFAULT_TABS = (0, 1, 2, 4)  # the four large tabs: the domains unless config.data.domains says
TASKS = ('is_click', 'is_like', 'is_follow', 'is_comment', 'is_forward', 'is_hate', 'long_view')
# The official split of the standard logs' days (inclusive): two weeks, one week, 10 days.
DEFAULT_SPLITS = {'train': ('20220408', '20220421'), 'valid': ('20220422', '20220428'),
                  'test': ('20220429', '20220508')}
USER_KEY, VIDEO_KEY = 'user_id', 'video_id'
LOG_COLUMNS = ('user_id', 'video_id', 'date', 'hourmin', 'time_ms', 'is_click', 'is_like',
               'is_follow', 'is_comment', 'is_forward', 'is_hate', 'long_view', 'play_time_ms',
               'duration_ms', 'profile_stay_time', 'comment_stay_time', 'is_profile_enter',
               'is_rand', 'tab')
LABEL_COLUMNS = ('is_click', 'is_like', 'is_follow', 'is_comment', 'is_forward', 'is_hate',
                 'long_view', 'is_profile_enter', 'is_rand')
RAW_PREDICT_COLUMNS = ('user_id', 'video_id', 'time_ms', 'tab')
# Text columns of the feature files; every other non-key column is read as float64 (NaNs).
TEXT_COLUMNS = ('user_active_degree', 'follow_user_num_range', 'fans_user_num_range',
                'friend_user_num_range', 'register_days_range', 'video_type', 'upload_dt',
                'upload_type', 'tag')
USER_FILE_COLUMNS = (
    ('user_id', 'user_active_degree', 'is_lowactive_period', 'is_live_streamer',
     'is_video_author', 'follow_user_num', 'follow_user_num_range', 'fans_user_num',
     'fans_user_num_range', 'friend_user_num', 'friend_user_num_range', 'register_days',
     'register_days_range') + tuple(f'onehot_feat{i}' for i in range(18)))
VIDEO_FILE_COLUMNS = ('video_id', 'author_id', 'video_type', 'upload_dt', 'upload_type',
                      'visible_status', 'video_duration', 'server_width', 'server_height',
                      'music_id', 'music_type', 'tag')
FEATURE_FILE_COLUMNS = frozenset(USER_FILE_COLUMNS + VIDEO_FILE_COLUMNS)
INT_COLUMNS = ('user_id', 'video_id', 'date', 'hourmin', 'time_ms', 'tab')
# The official standard-log date ranges: a split touching one needs that file.
OFFICIAL_STANDARD = ((20220408, 20220421, '4_08_to_4_21'), (20220422, 20220508, '4_22_to_5_08'))
OFFICIAL_RANDOM = '4_22_to_5_08'

_LOG_RE = re.compile(r'^log_(standard|random)_(\d{1,2})_(\d{1,2})_to_(\d{1,2})_(\d{1,2})_'
                     r'([A-Za-z0-9]+?)(?:_part(\d+))?\.csv$')
_FEAT_RE = re.compile(r'^(user_features|video_features_basic)_([A-Za-z0-9]+?)(?:_part(\d+))?\.csv$')


@dataclasses.dataclass(frozen=True)
class LogFile:
    path: Path
    kind: str  # 'standard' | 'random'
    first_date: int
    last_date: int
    part: int


@dataclasses.dataclass(frozen=True)
class Layout:
    """The files of one KuaiRand version in one folder."""
    directory: Path
    version: str
    logs: tuple[LogFile, ...]
    user_files: tuple[Path, ...]
    video_files: tuple[Path, ...]


def _dtype(col: str) -> Any:
    if col in INT_COLUMNS:
        return 'int64'
    if col in LABEL_COLUMNS:
        return 'float32'
    if col in TEXT_COLUMNS:
        return str
    if col in LOG_COLUMNS:
        return 'float64'
    return None  # unknown column: let pandas infer


def _dtypes(cols: Sequence[str]) -> dict[str, Any]:
    return {c: d for c in cols if (d := _dtype(c)) is not None}


def find_layout(data_dir: str | Path, version: str = 'auto') -> Layout:
    """Detect (or check) the version from the file names and list its files."""
    directory = Path(data_dir)
    if not directory.is_dir():
        raise DataError(f'config.data.dir={str(directory)!r} is not a folder')
    logs: dict[str, list[LogFile]] = {}
    feats: dict[str, dict[str, list[tuple[int, Path]]]] = {}
    for p in sorted(directory.iterdir()):
        if m := _LOG_RE.match(p.name):
            kind, m1, d1, m2, d2, ver, part = m.groups()
            lf = LogFile(p, kind, YEAR * 10000 + int(m1) * 100 + int(d1),
                         YEAR * 10000 + int(m2) * 100 + int(d2), int(part or 0))
            logs.setdefault(ver.lower(), []).append(lf)
        elif m := _FEAT_RE.match(p.name):
            role, ver, part = m.groups()
            feats.setdefault(ver.lower(), {}).setdefault(role, []).append((int(part or 0), p))
    found = sorted(set(logs) | set(feats))
    if version == 'auto':
        if not found:
            raise missing_file_error(
                'KuaiRand files', ['log_standard_4_08_to_4_21_<pure|1k|27k>[_partN].csv',
                                   'user_features_<version>.csv',
                                   'video_features_basic_<version>.csv'], directory)
        if len(found) > 1:
            raise DataError(f'{directory} holds several KuaiRand versions {found}; set '
                            'config.data.version to one of them')
        version = found[0]
    version = version.lower()
    if version not in found:
        raise missing_file_error(f'KuaiRand version {version!r}',
                                 [f'log_standard_4_08_to_4_21_{version}.csv',
                                  f'user_features_{version}.csv'], directory)
    vlogs = sorted(logs.get(version, []), key=lambda f: (f.kind, f.first_date, f.part))
    roles = feats.get(version, {})
    user = tuple(p for _, p in sorted(roles.get('user_features', [])))
    video = tuple(p for _, p in sorted(roles.get('video_features_basic', [])))
    return Layout(directory, version, tuple(vlogs), user, video)


def parse_splits(data_config: Any) -> dict[str, tuple[int, int]]:
    """config.data.splits -> {name: (first YYYYMMDD, last YYYYMMDD)}, inclusive, validated.

    Empty means DEFAULT_SPLITS. Ranges must be real dates, first <= last, and disjoint: the
    reader routes a row to every split whose range holds its date, so an overlap would copy
    rows into two splits.
    """
    raw = data_config.get('splits', None)
    raw = raw.to_dict() if hasattr(raw, 'to_dict') else dict(raw or {})
    raw = raw or dict(DEFAULT_SPLITS)
    if 'train' not in raw:
        raise DataError(f'config.data.splits must contain "train" (the vocab is fitted on it), got '
                        f'{list(raw)}')
    out = {}
    for name, rng in raw.items():
        where = f'config.data.splits.{name}={rng!r}'
        if isinstance(rng, (str, bytes)) or not hasattr(rng, '__len__') or len(rng) != 2:
            raise DataError(f"{where} must be (first, last) dates as 'YYYYMMDD' strings")
        lo, hi = (_parse_date(x, where) for x in rng)
        if lo > hi:
            raise DataError(f'{where}: the first date {lo} is after the last date {hi}')
        out[name] = (lo, hi)
    names = sorted(out, key=_split_rank)
    for i, a in enumerate(names):
        for b in names[i + 1:]:
            (alo, ahi), (blo, bhi) = out[a], out[b]
            if alo <= bhi and blo <= ahi:
                raise DataError(f'config.data.splits: {a!r} ({alo}..{ahi}) and {b!r} '
                                f'({blo}..{bhi}) overlap on {max(alo, blo)}..{min(ahi, bhi)}; '
                                'those rows would be copied into both splits. Make the date '
                                'ranges disjoint')
    return {n: out[n] for n in names}


def _parse_date(value: Any, where: str) -> int:
    text = str(value).strip()
    try:
        if not re.fullmatch(r'\d{8}', text):
            raise ValueError
        _dt.date(int(text[:4]), int(text[4:6]), int(text[6:]))
    except ValueError:
        raise DataError(f"{where}: {value!r} is not a date as 'YYYYMMDD' (e.g. '20220408')") \
            from None
    return int(text)


def _calendar_dates(date: np.ndarray) -> np.ndarray:
    """Which YYYYMMDD ints are calendar dates, via a table over the chunk's span (~1 ms/1M)."""
    if len(date) == 0:
        return np.ones(0, bool)
    lo, hi = int(date.min()), int(date.max())
    if hi - lo <= 1_000_000:  # a century: the table stays small
        return _is_date(np.arange(lo, hi + 1))[date - lo]
    uniq, inverse = np.unique(date, return_inverse=True)
    return _is_date(uniq)[inverse]


def _is_date(d: np.ndarray) -> np.ndarray:
    y, m, day = d // 10000, d // 100 % 100, d % 100
    leap = (y % 4 == 0) & ((y % 100 != 0) | (y % 400 == 0))
    last = np.array([0, 31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31])[np.clip(m, 0, 12)]
    return (y >= 1) & (m >= 1) & (m <= 12) & (day >= 1) & (day <= last + (leap & (m == 2)))


def _split_rank(name: str) -> tuple[int, str]:
    """train, valid, test first (ConfigDict sorts keys alphabetically), then the rest."""
    return ({'train': 0, 'valid': 1, 'test': 2}.get(name, 3), name)


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
