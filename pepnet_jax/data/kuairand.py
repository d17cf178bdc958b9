"""KuaiRand reader: the official Pure / 1K / 27K layouts -> one raw frame per split.

Everything KuaiRand-shaped lives here and in ``kuairand_files.py`` (names, layouts, columns,
split dates): file names and their date ranges, the log schema,
the join of ``user_features_*`` (on user_id) and ``video_features_basic_*`` (on video_id),
and the quirks of the real files:

* bucket strings with commas (``"[100,1k)"``) and comma-separated ``tag`` lists are quoted,
  so they go through pandas' CSV parser and are kept as text;
* ``-124`` is the dataset's missing code and ``UNKNOWN`` an unknown category: both become
  NaN here, so downstream code sees one notion of "missing" (-> OOV id 1);
* NaNs make int columns float: every non-key numeric feature column is read as float64;
* a video absent from the video file gets NaN features (-> OOV), never another video's;
* 27K logs come in ``_part1``/``_part2`` files, read in part order.

Rows keep their file order within a split. Only the needed columns are parsed (usecols with
explicit dtypes), in chunks, with progress lines for big files.

The module registers the 'kuairand' ``DataFormat`` (at the end): the defaults ``config.data``
falls back to (tasks, tabs 0, 1, 2, 4, the official split dates) and the preset features.
"""

from __future__ import annotations

import time
import zlib
from collections import Counter
from pathlib import Path
from typing import Any, Iterator, Sequence

import numpy as np
import pandas as pd

from pepnet_jax.data import formats, sidetables
from pepnet_jax.data.errors import (DataError, note, note_drops, check_binary, check_domains,
                                    count_values, domain_index, missing_file_error,
                                    read_csv_chunks, read_header, require_columns)
from pepnet_jax.features import DataSpec
from pepnet_jax.data.kuairand_files import (  # noqa: F401  (the public names re-exported)
    USER_KEY, VIDEO_KEY, YEAR, MISSING_CODE, UNKNOWN_STRINGS, KNOWN_TABS, DEFAULT_TABS, TASKS,
    DEFAULT_SPLITS, LOG_COLUMNS, LABEL_COLUMNS, RAW_PREDICT_COLUMNS, TEXT_COLUMNS,
    USER_FILE_COLUMNS, VIDEO_FILE_COLUMNS, FEATURE_FILE_COLUMNS, INT_COLUMNS,
    OFFICIAL_STANDARD, OFFICIAL_RANDOM, LogFile, Layout, _dtypes, find_layout, parse_splits,
    _calendar_dates, kuairand_features, kuairand_groups)

def _plan_columns(layout: Layout, spec: DataSpec, log_header: Sequence[str],
                  extra: Sequence[str] = (), log_path: Path | None = None
                  ) -> tuple[list[str], list[str], list[str]]:
    """Which needed columns come from the log (log_path), the user file and the video file."""
    needed: dict[str, str] = {}
    for i, f in enumerate(spec.features):
        needed.setdefault(f.column, f'config.data.features[{i}] ({f.name!r})')
    for c in spec.group_columns:
        needed.setdefault(c, 'config.data.group_column')
    log_needed = {USER_KEY: 'the user join', VIDEO_KEY: 'the video join',
                  spec.domain_column: 'the domain (config.data.domains)'}
    for c in extra:
        log_needed[c] = 'the split'
    user_header = read_header(layout.user_files[0]) if layout.user_files else []
    video_header = read_header(layout.video_files[0]) if layout.video_files else []
    log_cols, user_cols, video_cols = [], [], []
    for col, why in needed.items():
        if col in log_header:
            log_cols.append(col)
        elif col in user_header and col != USER_KEY:
            user_cols.append(col)
        elif col in video_header and col != VIDEO_KEY:
            video_cols.append(col)
        else:
            where = [p.name for p in (layout.user_files[:1] + layout.video_files[:1])]
            if not (layout.user_files and layout.video_files):
                raise missing_file_error(
                    f'column {col!r} (needed by {why}) is not in the log and a feature file is '
                    'missing', [f'user_features_{layout.version}.csv',
                                f'video_features_basic_{layout.version}.csv'], layout.directory)
            log = f' of {log_path}' if log_path else ''
            raise DataError(f'column {col!r} (needed by {why}) is in none of the log columns{log} '
                            f'{list(log_header)} nor in {where}')
    for col, why in log_needed.items():
        if col not in log_cols:
            log_cols.append(col)
    return log_cols, user_cols, video_cols


def _normalize_missing(frame: pd.DataFrame, cols: Sequence[str]) -> None:
    """-124 -> NaN in numeric columns; 'UNKNOWN' and '' -> NaN in text columns (in place)."""
    for c in cols:
        s = frame[c]
        if isinstance(s.dtype, pd.CategoricalDtype):
            drop = [x for x in s.cat.categories if str(x).strip() in UNKNOWN_STRINGS + ('',)]
            if drop:
                frame[c] = s.cat.remove_categories(drop)
        elif pd.api.types.is_string_dtype(s.dtype) or s.dtype == object:
            frame[c] = s.mask(s.isin(UNKNOWN_STRINGS) | (s.astype(str).str.strip() == ''))
        elif pd.api.types.is_float_dtype(s.dtype):
            frame[c] = s.mask(s == MISSING_CODE)


def _read_table(paths: Sequence[Path], key: str, cols: Sequence[str],
                keep_ids: np.ndarray | None) -> pd.DataFrame:
    """A feature table (key + cols), filtered to keep_ids, text columns as categories."""
    parts = []
    usecols = [key] + list(cols)
    for path in paths:
        require_columns(path, read_header(path), {c: 'the join' if c == key else 'the features'
                                                   for c in usecols})
        # key int64, known text columns str, known numeric float64 (NaN-safe); columns the
        # official schema does not list are inferred by pandas.
        dtypes = {c: ('int64' if c == key else str if c in TEXT_COLUMNS else 'float64')
                  for c in usecols if c == key or c in FEATURE_FILE_COLUMNS}
        for start, chunk in read_csv_chunks(path, usecols, dtypes, label='features '):
            chunk['_row'] = np.arange(start, start + len(chunk)) + 1
            if keep_ids is not None:
                chunk = chunk[np.isin(chunk[key].to_numpy(), keep_ids)]
            chunk['_file'] = path.name
            parts.append(chunk)
    table = pd.concat(parts, ignore_index=True) if parts else pd.DataFrame(columns=usecols)
    dup = table[key].duplicated()
    if dup.any():
        r = table[dup].iloc[0]
        raise DataError(f'{r["_file"]}: column {key!r}, row {r["_row"]}: duplicate id {r[key]}')
    for c in cols:
        if pd.api.types.is_string_dtype(table[c].dtype) or table[c].dtype == object:
            table[c] = table[c].astype('category')
    _normalize_missing(table, cols)
    return table


def _feature_log_cols(spec: DataSpec, log_cols: Sequence[str]) -> list[str]:
    keys = {USER_KEY, VIDEO_KEY, spec.domain_column}
    return [c for c in dict.fromkeys(f.column for f in spec.features) if c in log_cols and c not in keys]


def input_files(data_config: Any, spec: DataSpec) -> list[Path]:
    """Every file read_splits would read (for the cache key); raises on a missing one."""
    layout, plan, _ = _plan(data_config, spec)
    files = [lf.path for lf, _ in plan]
    return files + list(layout.user_files) + list(layout.video_files)


def _plan(data_config: Any, spec: DataSpec):
    layout = find_layout(data_config.get('dir'), data_config.get('version', 'auto') or 'auto')
    splits = parse_splits(data_config)
    random_split = data_config.get('random_log_split', '') or ''
    if random_split in splits:
        raise DataError(f'config.data.random_log_split={random_split!r} clashes with a '
                        'config.data.splits name')
    std = [lf for lf in layout.logs if lf.kind == 'standard']
    for lo, hi, tag in OFFICIAL_STANDARD:
        touched = [n for n, (a, b) in splits.items() if a <= hi and b >= lo]
        if touched and not any(lf.first_date <= hi and lf.last_date >= lo for lf in std):
            raise missing_file_error(
                f'splits {touched} need the {lo}..{hi} standard log',
                [f'log_standard_{tag}_{layout.version}.csv',
                 f'log_standard_{tag}_{layout.version}_part1.csv'], layout.directory)
    plan: list[tuple[LogFile, dict[str, tuple[int, int] | None]]] = []
    for lf in std:
        targets = {n: r for n, r in splits.items() if r[0] <= lf.last_date and r[1] >= lf.first_date}
        if targets:
            plan.append((lf, targets))
    if random_split:
        rnd = [lf for lf in layout.logs if lf.kind == 'random']
        if not rnd:
            raise missing_file_error(
                f'config.data.random_log_split={random_split!r} needs the random log',
                [f'log_random_{OFFICIAL_RANDOM}_{layout.version}.csv'], layout.directory)
        plan += [(lf, {random_split: None}) for lf in rnd]
    return layout, plan, splits


def read_splits(data_config: Any, spec: DataSpec) -> dict[str, pd.DataFrame]:
    """{split: raw frame} with log, user and video columns, rows in file order: read_chunks'
    chunks put together (see there)."""
    parts: dict[str, list[pd.DataFrame]] = {}
    for name, chunk in read_chunks(data_config, spec):
        parts.setdefault(name, []).append(chunk)
    return {n: pd.concat(p, ignore_index=True) for n, p in parts.items()}


def read_chunks(data_config: Any, spec: DataSpec, only: Sequence[str] | None = None,
                progress: Any = None, shared: dict | None = None, join: bool = True
                ) -> Iterator[tuple[str, pd.DataFrame]]:
    """(split, chunk) pairs: the rows of every split (or of the splits in ``only``), each
    split's in file order, joined with the user and video files. ``DataFormat.read_chunks``.

    Rows of tabs outside config.data.domains are dropped; a tab outside KuaiRand's 0..14 is a
    DataError. Standard-log rows whose date is no calendar date, or in no split's range, are
    left out too. Each kind of drop gets one counted [data] line (on a read of every split),
    so none goes unnoticed. ``max_rows`` keeps a random sample of that many rows of each
    split, seeded by ``config.data.seed`` and kept in file order: the logs are sorted by
    user, so their first rows would be a handful of users. Every file is still read to the
    end (a light first pass over the date and tab columns finds each split's sample).

    Memory: one chunk of rows (errors.CHUNK_ROWS) and the two feature tables (their needed
    columns, text as categories), whatever the length of the logs. ``shared``: a dict kept
    across the passes of one build, so the feature tables are read once. ``join=False``:
    the log columns alone; the caller joins the ``side_tables`` itself.
    """
    t0 = time.time()
    layout, plan, splits = _plan(data_config, spec)
    max_rows = int(data_config.get('max_rows', 0) or 0)
    seed = int(data_config.get('seed', 0) or 0)
    if not plan:
        lo, hi = splits['train']
        raise DataError(f"split 'train' is empty: dates {lo}..{hi} overlap no standard log in "
                        f'{layout.directory} ({[lf.path.name for lf in layout.logs]})')
    header = read_header(plan[0][0].path)
    log_cols, user_cols, video_cols = _plan_columns(layout, spec, header, ('date',),
                                                    plan[0][0].path)
    label_cols = list(spec.tasks)
    usecols = list(dict.fromkeys(log_cols + label_cols))
    feat_log_cols = _feature_log_cols(spec, log_cols)
    names = list(splits) + [n for _, t in plan for n in t if n not in splits]
    wanted = [n for n in names if only is None or n in only]
    for lf, _ in plan:
        require_columns(lf.path, read_header(lf.path),
                        {c: ('config.data.tasks' if c in label_cols else 'the features/splits')
                         for c in usecols})
    tables = _shared_tables(layout, user_cols, video_cols, shared) if join else []
    limit = (_sample_limits(plan, spec, seed, max_rows, wanted) if max_rows else {})
    tally = _Tally(wanted)
    done_bytes, rows_read = 0, 0
    for lf, all_targets in plan:
        targets = {n: r for n, r in all_targets.items() if n in tally.counts}
        size = lf.path.stat().st_size
        if not targets:
            done_bytes += size
            continue
        for n in targets:
            tally.sources[n].append(lf.path.name)
        # One uniform key per file row, from a stream seeded by (seed, file name): a row's key
        # depends on neither the chunking nor the other files read.
        key_rng = np.random.default_rng([seed, zlib.crc32(lf.path.name.encode())])
        position = [0]
        for start, chunk in read_csv_chunks(lf.path, usecols, _dtypes(usecols), label='log ',
                                            position=position):
            keys = key_rng.random(len(chunk)) if max_rows else None
            check_binary(lf.path, chunk, label_cols, start)
            for n, part in _split_chunk(chunk, start, lf, all_targets, targets, spec, tally,
                                        keys, limit, only is None):
                _normalize_missing(part, feat_log_cols)
                for table in tables:
                    sidetables.join(part, table)
                tally.counts[n] += len(part)
                yield n, part
            rows_read += len(chunk)
            if progress is not None:
                progress.done_bytes = done_bytes
                progress.update(rows_read, position[0])
        done_bytes += size
    if progress is not None:
        progress.done_bytes = done_bytes
        progress.update(rows_read, 0, force=True)
    if only is None:
        tally.note_drops(spec)
    tally.require_rows(splits, spec)
    note('kuairand %s: %s in %.1fs', layout.version,
         ', '.join(f'{n}={c:,}' for n, c in tally.counts.items()), time.time() - t0)


class _Tally:
    """What a read of the logs took and left out, per split: row counts, source files, rows
    dropped for their tab, rows in no split's dates, dates that are no calendar date."""

    def __init__(self, wanted):
        self.counts = dict.fromkeys(wanted, 0)
        self.sources: dict[str, list[str]] = {n: [] for n in wanted}
        self.tab_drops = {n: Counter() for n in wanted}
        self.outside = []  # (rows, first date, last date) of standard-log rows in no split
        self.bad_dates = Counter()  # standard-log dates that are no calendar date -> rows

    def note_drops(self, spec: DataSpec) -> None:
        """One counted [data] line per kind of drop (on a read of every split)."""
        for n in self.counts:
            note_drops(n, self.counts[n], spec.domain_column, self.tab_drops[n], spec.domains)
        why = []
        if self.outside:
            why.append(f'{sum(o[0] for o in self.outside):,} with dates in '
                       f'{min(o[1] for o in self.outside)}..{max(o[2] for o in self.outside)} '
                       'outside every config.data.splits range')
        if self.bad_dates:
            shown = ', '.join(str(d) for d in sorted(self.bad_dates)[:3]) + (
                ', ...' if len(self.bad_dates) > 3 else '')
            why.append(f'{sum(self.bad_dates.values()):,} whose date is no calendar date '
                       f'({shown})')
        if why:
            note('standard log rows in no split: %s', '; '.join(why))

    def require_rows(self, splits, spec: DataSpec) -> None:
        """A DataError naming the dates, tabs and files of the first empty split."""
        for n, count in self.counts.items():
            if count == 0:
                rng = splits.get(n)
                dates = f'dates {rng[0]}..{rng[1]}' if rng else 'the random log'
                raise DataError(f'split {n!r} is empty: no rows with {dates} and tab in '
                                f'{list(spec.domains)} (config.data.domains) in '
                                f'{self.sources[n] or "any file"}')


def _split_chunk(chunk, start: int, lf, all_targets, targets, spec: DataSpec, tally: _Tally,
                 keys, limit, full_read: bool):
    """(split, rows) of one chunk of one log file: the rows of each target split's dates and
    configured tabs (and, under max_rows, the split's sample); drops are tallied."""
    tab = chunk[spec.domain_column].to_numpy()
    if spec.domain_column == FORMAT.domain_column:
        check_domains(lf.path, tab, spec.domain_column, KNOWN_TABS, start,
                      'the KuaiRand tab range')
    keep = domain_index(tab, spec.domains) >= 0
    date = chunk['date'].to_numpy()
    real = _calendar_dates(date) if lf.kind == 'standard' else np.ones(len(date), bool)
    if not real.all() and full_read:
        tally.bad_dates.update(date[~real].tolist())
    anywhere = ~real  # rows some split takes; bad dates are counted on their own
    for n, rng in all_targets.items():
        rows = real if rng is None else real & (date >= rng[0]) & (date <= rng[1])
        anywhere |= rows
        if n not in targets:
            continue
        if (dropped := rows & ~keep).any():
            tally.tab_drops[n].update(count_values(tab[dropped]))
        taken = rows & keep
        if keys is not None:
            taken &= keys <= limit[n]
        if taken.any():
            yield n, chunk[taken].reset_index(drop=True)
    if not anywhere.all() and full_read:
        lost = date[~anywhere]
        tally.outside.append((len(lost), int(lost.min()), int(lost.max())))


def _sample_limits(plan, spec: DataSpec, seed: int, k: int, wanted) -> dict[str, float]:
    """The key at or below which a split's rows are in its max_rows sample: the k-th smallest
    key of the split's rows (the rows read_chunks would take), from a pass over the date and
    tab columns alone, holding at most 2k keys per split."""
    cols = ['date', spec.domain_column]
    best: dict[str, np.ndarray] = {n: np.zeros(0) for n in wanted}
    for lf, targets in plan:
        if not any(n in best for n in targets):
            continue
        key_rng = np.random.default_rng([seed, zlib.crc32(lf.path.name.encode())])
        for _, chunk in read_csv_chunks(lf.path, cols, _dtypes(cols), label='sample '):
            keys = key_rng.random(len(chunk))
            keep = domain_index(chunk[spec.domain_column].to_numpy(), spec.domains) >= 0
            date = chunk['date'].to_numpy()
            real = _calendar_dates(date) if lf.kind == 'standard' else np.ones(len(date), bool)
            for n, rng in targets.items():
                if n not in best:
                    continue
                rows = real & keep if rng is None else \
                    real & keep & (date >= rng[0]) & (date <= rng[1])
                merged = np.concatenate([best[n], keys[rows]])
                best[n] = np.partition(merged, k - 1)[:k] if len(merged) > k else merged
    return {n: (float(b.max()) if len(b) == k else np.inf) for n, b in best.items()}


def _feature_tables(layout: Layout, user_cols: Sequence[str], video_cols: Sequence[str]
                    ) -> list[sidetables.SideTable]:
    """The feature files the features need (their needed columns), read once."""
    out = []
    for cols, files, key, what in ((user_cols, layout.user_files, USER_KEY, 'user'),
                                   (video_cols, layout.video_files, VIDEO_KEY, 'video')):
        if not cols:
            continue
        if not files:
            stem = 'user_features' if what == 'user' else 'video_features_basic'
            raise missing_file_error(f'{what} features', [f'{stem}_{layout.version}.csv'],
                                     layout.directory)
        out.append(sidetables.SideTable(key, _read_table(files, key, cols, None), cols))
    return out


def _shared_tables(layout: Layout, user_cols, video_cols, shared: dict | None):
    key = ('feature_tables', tuple(user_cols), tuple(video_cols))
    if shared is not None and key in shared:
        return shared[key]
    tables = _feature_tables(layout, user_cols, video_cols)
    if shared is not None:
        shared[key] = tables
    return tables


def side_tables(data_config: Any, spec: DataSpec, shared: dict | None = None
                ) -> list[sidetables.SideTable]:
    """``DataFormat.side_tables``: the user and video tables that read_chunks(join=False)
    leaves out, with the columns the spec takes from each."""
    layout, plan, _ = _plan(data_config, spec)
    if not plan:
        return []
    header = read_header(plan[0][0].path)
    _, user_cols, video_cols = _plan_columns(layout, spec, header, ('date',), plan[0][0].path)
    return _shared_tables(layout, user_cols, video_cols, shared)


def read_log_file(path: str | Path, data_dir: str | Path, spec: DataSpec,
                  version: str = 'auto') -> tuple[pd.DataFrame, dict[str, np.ndarray]]:
    """Read ONE KuaiRand-format log (predict mode), joined with data_dir's feature files.

    All rows are kept, in order. Labels are read when present (else the tasks are missing).
    Returns (frame, raw) where raw holds the user_id, video_id, time_ms and tab columns.
    A tab not in config.data.domains is a DataError: the model has no domain for it.
    """
    frames, raws = [], []
    for frame, raw in read_log_file_chunks(path, data_dir, spec, version):
        frames.append(frame)
        raws.append(raw)
    return (pd.concat(frames, ignore_index=True),
            {c: np.concatenate([r[c] for r in raws]) for c in RAW_PREDICT_COLUMNS})


def read_log_file_chunks(path: str | Path, data_dir: str | Path, spec: DataSpec,
                         version: str = 'auto'
                         ) -> Iterator[tuple[pd.DataFrame, dict[str, np.ndarray]]]:
    """read_log_file in chunks of errors.CHUNK_ROWS rows, in order: predict mode on logs of
    any length with one chunk (and the feature tables) in memory."""
    path = Path(path)
    if not path.is_file():
        raise missing_file_error('log file for predict', [path.name], path.parent)
    layout = find_layout(data_dir, version)
    header = read_header(path)
    log_cols, user_cols, video_cols = _plan_columns(layout, spec, header, RAW_PREDICT_COLUMNS,
                                                    path)
    label_cols = [t for t in spec.tasks if t in header]
    usecols = list(dict.fromkeys(log_cols + label_cols))
    require_columns(path, header, {c: 'predict output' for c in RAW_PREDICT_COLUMNS})
    tables = _feature_tables(layout, user_cols, video_cols)
    feat_log_cols = _feature_log_cols(spec, log_cols)
    rows = 0
    for start, chunk in read_csv_chunks(path, usecols, _dtypes(usecols), label='predict '):
        check_binary(path, chunk, label_cols, start)
        check_domains(path, chunk[spec.domain_column].to_numpy(), spec.domain_column,
                      spec.domains, start, 'config.data.domains')
        _normalize_missing(chunk, feat_log_cols)
        raw = {c: chunk[c].to_numpy().copy() for c in RAW_PREDICT_COLUMNS}
        for table in tables:
            sidetables.join(chunk, table)
        rows += len(chunk)
        yield chunk, raw
    if rows == 0:
        raise DataError(f'{path}: no rows to predict')


def read_predict_file(path: str | Path, data_dir: str | Path, spec: DataSpec,
                      data_config: Any) -> tuple[pd.DataFrame, dict[str, np.ndarray]]:
    """``DataFormat.read_file``: read_log_file with config.data.version."""
    return read_log_file(path, data_dir, spec, data_config.get('version', 'auto') or 'auto')


def read_predict_chunks(path: str | Path, data_dir: str | Path, spec: DataSpec,
                        data_config: Any) -> Iterator[tuple[pd.DataFrame, dict[str, np.ndarray]]]:
    """``DataFormat.read_file_chunks``: read_log_file_chunks with config.data.version."""
    return read_log_file_chunks(path, data_dir, spec,
                                data_config.get('version', 'auto') or 'auto')


FORMAT = formats.register(formats.DataFormat(
    name='kuairand', read_splits=read_splits, input_files=input_files,
    read_file=read_predict_file, domain_column='tab', known_domains=KNOWN_TABS,
    group_column=USER_KEY, tasks=TASKS, domains=DEFAULT_TABS, splits=DEFAULT_SPLITS,
    features=kuairand_features, groups=kuairand_groups,
    entities={'user': USER_FILE_COLUMNS, 'video': VIDEO_FILE_COLUMNS},
    read_chunks=read_chunks, read_file_chunks=read_predict_chunks, side_tables=side_tables))
