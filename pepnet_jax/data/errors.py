"""DataError and the checked CSV primitives that raise it.

Every input problem should surface as one DataError naming the file, the column and the row,
instead of a pandas traceback from deep inside a chunk loop. The readers (kuairand, aliccp)
share these helpers so that the messages look the same for every format.
"""

from __future__ import annotations

import bisect
import os
import threading
import time
from pathlib import Path
from typing import Iterator, Mapping, Sequence

import numpy as np
import pandas as pd

CHUNK_ROWS = 250_000  # rows per chunk: ~300 MB peak for the full KuaiRand preset, and faster than 1M
SCAN_BLOCK = 1 << 20
MAX_RECORD_BYTES = 1 << 26


def note(msg: str, *args) -> None:
    """A progress line on stdout, next to the CLI's other progress output."""
    print('[data] ' + (msg % args if args else msg), flush=True)


def note_drops(split: str, kept: int, column: str, dropped: Mapping, allowed: Sequence) -> None:
    """One line for a split whose rows the domain filter dropped: how many, and by value."""
    dropped = {plain_value(v): int(c) for v, c in _sorted_items(dropped) if c}
    if dropped:
        note('%s: kept %s rows; dropped %s with %s not in config.data.domains %s (%s)', split,
             f'{kept:,}', f'{sum(dropped.values()):,}', column, list(allowed),
             ', '.join(f'{column} {v}: {c:,}' for v, c in dropped.items()))


class DataError(ValueError):
    """A problem with the input data or with how the config refers to it."""


def missing_file_error(what: str, expected: Sequence[str], directory: Path) -> DataError:
    """Name what was looked for and list what the folder actually holds."""
    directory = Path(directory)
    if not directory.is_dir():
        return DataError(f'{what}: folder {directory} does not exist (expected {list(expected)})')
    present = sorted(p.name for p in directory.iterdir())
    shown = present[:40] + ([f'... {len(present) - 40} more'] if len(present) > 40 else [])
    return DataError(f'{what}: none of {list(expected)} found in {directory}; it holds {shown}')


def read_header(path: Path) -> list[str]:
    try:
        return list(pd.read_csv(path, nrows=0, encoding='utf-8-sig').columns)
    except FileNotFoundError:
        raise missing_file_error('missing file', [Path(path).name], Path(path).parent) from None
    except pd.errors.EmptyDataError as e:
        raise DataError(f'{path}: cannot read a CSV header (line 1: {e})') from None
    except (UnicodeDecodeError, pd.errors.ParserError) as e:
        _scan_all(path)  # pandas decodes a whole buffer: the bad bytes may be lines further on
        raise DataError(f'{path}: cannot read a CSV header ({e})') from None


def _scan_all(path: Path) -> None:
    """Raise the LineScanner's DataError (which names the line) for a file pandas rejected."""
    scan = LineScanner(path)
    try:
        scan.ensure(None)
    finally:
        scan.close()


class LineScanner:
    """Checks the raw records of a CSV file, block by block, ahead of pandas.

    pandas' C parser with ``usecols`` accepts a row with an extra field (every later field
    shifts into the next column) and pads a short row with NaN, both silently. This counts the
    fields of every record with numpy (~0.1 s per 100 MB), checks UTF-8 and closing quotes,
    and remembers where rows and physical lines part ways (blank lines, quoted newlines), so
    messages can give the line an editor shows. Quoting follows RFC 4180: a quoted field is
    quoted as a whole, and commas or newlines inside it do not split anything.

    background=True checks in a thread while pandas parses (numpy and pandas' tokenizer both
    release the GIL), which hides most of the cost; ensure() then waits for the thread.
    """

    def __init__(self, path: Path, block: int | None = None, background: bool = False):
        self.path = Path(path)
        self.block = block or SCAN_BLOCK
        self.fields: int | None = None  # the header's field count
        self.rows = 0                   # data rows checked (pandas' numbering: no blank lines)
        self.done = False
        self._file = open(self.path, 'rb')
        self._carry = b''
        self._lines = 0                 # physical lines before the carry
        self._records = 0               # records (blank ones too) before the carry
        # From row _jumps[0][k] on, a row's line is row + 2 + _jumps[1][k] and its record
        # (what pandas' skiprows counts: a quoted newline does not end one) row + 1 + _jumps[2][k].
        self._jumps: tuple[list[int], list[int], list[int]] = ([0], [0], [0])
        self._error: BaseException | None = None
        self._stop = False
        self._cond = threading.Condition()
        self._thread = None
        if background:
            self._thread = threading.Thread(target=self._scan_ahead, daemon=True,
                                            name=f'scan {self.path.name}')
            self._thread.start()

    def close(self) -> None:
        self._stop = True
        if self._thread is not None:
            self._thread.join()
        self._file.close()
        self.done = True

    def ensure(self, rows: int | None) -> None:
        """Check records until `rows` data rows are checked (None: to the end of the file)."""
        if self._thread is None:
            while not self.done and (rows is None or self.rows < rows):
                self._step()
            return
        with self._cond:
            while not (self._error or self.done or self._stop or
                       (rows is not None and self.rows >= rows)):
                self._cond.wait()
        # a problem further on than `rows` waits until those lines are asked for, as it would
        # without the thread: where a read stops (max_rows) must not depend on timing
        if self._error is not None and (rows is None or self.rows < rows):
            raise self._error

    def _scan_ahead(self) -> None:
        try:
            while not (self.done or self._stop):
                self._step()
                with self._cond:
                    self._cond.notify_all()
        except BaseException as e:  # handed to the reader's thread by ensure()
            self._error = e
        with self._cond:
            self._cond.notify_all()

    def _step(self) -> None:
        data = self._file.read(self.block)
        buf = self._carry + data if self._carry else data
        if len(buf) > MAX_RECORD_BYTES + self.block:
            raise DataError(f'{self.path}: line {self._lines + 1}: a record runs on for over '
                            f'{MAX_RECORD_BYTES >> 20} MB: a quote (") that is never closed?')
        self._carry = buf[self._check(buf, final=not data):]
        if not data:
            self.done = True

    def line_of_row(self, row: int) -> int:
        """The 1-based physical line of 0-based data row `row`."""
        self.ensure(row + 1)
        k = bisect.bisect_right(self._jumps[0], row) - 1
        return row + 2 + self._jumps[1][k]

    def records_before(self, row: int) -> int:
        """How many records (header and blank lines included) precede data row `row`."""
        self.ensure(row + 1)
        k = bisect.bisect_right(self._jumps[0], row) - 1
        return row + 1 + self._jumps[2][k]

    def _check(self, buf: bytes, final: bool) -> int:
        """Check the complete records of buf; returns where the unchecked rest begins."""
        b = np.frombuffer(buf, np.uint8)
        raw_nl = np.flatnonzero(b == 10)
        quotes = np.flatnonzero(b == 34) if b'"' in buf else None
        ends = raw_nl if quotes is None else raw_nl[np.searchsorted(quotes, raw_nl) % 2 == 0]
        cut = int(ends[-1]) + 1 if len(ends) else 0
        if final and cut < len(buf):
            ends, cut = np.append(ends, len(buf)), len(buf)
        if cut == 0:
            return 0
        region = buf[:cut] if cut < len(buf) else buf
        if not region.isascii():
            try:
                region.decode('utf-8')
            except UnicodeDecodeError as e:
                line = self._lines + region.count(b'\n', 0, e.start) + 1
                bad = region[e.start:e.start + 4]
                raise DataError(f'{self.path}: line {line}: bytes {bad!r} are not valid UTF-8 '
                                f'({e.reason}); save the file as UTF-8') from None
        starts = np.concatenate([[0], ends[:-1] + 1])
        if quotes is None:  # the common case, one pass: every newline ends a record
            lines = self._lines + np.arange(1, len(ends) + 1)
            counts = np.add.reduceat(b[:cut] == 44, starts, dtype=np.int64) + 1
        else:
            lines = self._lines + np.searchsorted(raw_nl, starts) + 1
            if final and len(quotes) % 2:
                raise DataError(f'{self.path}: line {lines[-1]}: a quoted field is never closed '
                                '(the file ends inside quotes: a cut-off file or a stray ")')
            commas = np.flatnonzero(b[:cut] == 44)
            commas = commas[np.searchsorted(quotes, commas) % 2 == 0]
            counts = np.diff(np.searchsorted(commas, ends), prepend=0) + 1
        first = 0
        blank = []
        if self.fields is None:  # the header: the first record with text
            while first < len(ends) and not buf[starts[first]:ends[first]].strip():
                blank.append(first)
                first += 1
            if first == len(ends):
                return self._advance(raw_nl, cut, lines, [], first)
            self.fields = int(counts[first])
            first += 1
        for i in first + np.flatnonzero(counts[first:] != self.fields):
            if not buf[starts[i]:ends[i]].strip():
                blank.append(int(i))  # pandas skips blank lines
                continue
            row = self.rows + int(i) - first - sum(1 for j in blank if j >= first)
            n = int(counts[i])
            why = ('an extra field (an unquoted comma?) would shift every later column'
                   if n > self.fields else 'fields are missing (a cut-off line?)')
            raise DataError(f'{self.path}: row {row + 1} (line {lines[i]}): {n} fields where the '
                            f'header has {self.fields}; {why}')
        return self._advance(raw_nl, cut, lines, blank, first)

    def _advance(self, raw_nl: np.ndarray, cut: int, lines: np.ndarray, blank: list[int],
                 first: int) -> int:
        """Count the checked rows and note where rows and physical lines part ways."""
        is_row = np.ones(len(lines), bool)
        is_row[:first] = False
        is_row[[j for j in blank if j >= first]] = False
        n_rows = int(is_row.sum())
        if n_rows:
            rows = self.rows + np.arange(n_rows)
            extra_lines = lines[is_row] - (rows + 2)
            extra_records = self._records + np.flatnonzero(is_row) - (rows + 1)
            step = np.flatnonzero((np.diff(extra_lines, prepend=self._jumps[1][-1]) != 0) |
                                  (np.diff(extra_records, prepend=self._jumps[2][-1]) != 0))
            for jump, values in zip(self._jumps, (rows, extra_lines, extra_records)):
                jump += values[step].tolist()
        self.rows += n_rows
        self._records += len(lines)
        self._lines += int(np.searchsorted(raw_nl, cut))
        return cut


def require_columns(path: Path, header: Sequence[str], needed: Mapping[str, str]) -> None:
    """needed maps column -> why it is needed (e.g. 'config.data.features[3]')."""
    for col, why in needed.items():
        if col not in header:
            raise DataError(f'{path}: column {col!r} (needed by {why}) is missing; '
                            f'columns present: {list(header)}')


def _is_numeric_dtype(dtype) -> bool:
    return dtype not in (str, object, 'str', 'object', 'category') and \
        np.issubdtype(np.dtype(dtype), np.number)


def _locate_bad_cell(path: Path, start: int, nrows: int, dtypes: Mapping[str, object],
                     usecols: Sequence[str], cause: Exception, scan: LineScanner) -> DataError:
    """Re-read one failed chunk as text and find the first cell that does not parse."""
    try:
        raw = pd.read_csv(path, header=None, names=read_header(path), usecols=list(usecols),
                          dtype=str, skiprows=scan.records_before(start), nrows=nrows,
                          encoding='utf-8-sig')
    except (ValueError, pd.errors.ParserError) as e:  # malformed CSV: pandas names the line
        return DataError(f'{path}: malformed CSV after row {start} (line '
                         f'{scan.line_of_row(start)}): {e}')
    best = None
    for col, dtype in dtypes.items():
        if col not in raw.columns or not _is_numeric_dtype(dtype):
            continue
        text = raw[col]
        num = pd.to_numeric(text, errors='coerce')
        bad = num.isna().to_numpy() & text.notna().to_numpy()
        if np.issubdtype(np.dtype(dtype), np.integer):
            vals = num.to_numpy(dtype=np.float64, na_value=np.nan)
            with np.errstate(invalid='ignore'):
                bad |= text.isna().to_numpy() | (np.isfinite(vals) & (
                    (vals != np.round(vals)) | (np.abs(vals) >= 2.0 ** 63)))
        idx = np.flatnonzero(bad)
        if idx.size and (best is None or idx[0] < best[0]):
            best = (int(idx[0]), col, text.iloc[idx[0]], np.dtype(dtype).name)
    if best is None:
        return DataError(f'{path}: rows {start + 1}..{start + nrows} (from line '
                         f'{scan.line_of_row(start)}) do not parse: {cause}')
    i, col, value, dname = best
    row = start + i + 1
    shown = 'an empty cell' if (value is None or (isinstance(value, float) and np.isnan(value))) \
        else repr(value)
    return DataError(f'{path}: column {col!r}, row {row} (line {scan.line_of_row(row - 1)}): '
                     f'cannot parse {shown} as {dname}')


def read_csv_chunks(path: Path, usecols: Sequence[str], dtypes: Mapping[str, object],
                    chunk_rows: int | None = None, label: str = '',
                    position: list | None = None) -> Iterator[tuple[int, pd.DataFrame]]:
    """Yield (first_row_index, chunk) with explicit dtypes; a parse error becomes a DataError.

    Rows are 0-based data rows (the header is not a row); messages print them 1-based. A
    LineScanner checks every row's field count before its chunk is yielded: with usecols,
    pandas itself would let a row with an extra or a missing field through, shifted.
    ``chunk_rows`` defaults to CHUNK_ROWS (read when called, so a test can shrink it);
    ``position``, a one-element list, gets the bytes pandas has read so far after each chunk
    (for progress lines).
    """
    path = Path(path)
    chunk_rows = chunk_rows or CHUNK_ROWS
    size = os.path.getsize(path)
    t0 = time.time()
    handle = open(path, 'rb')
    try:
        reader = pd.read_csv(handle, usecols=list(usecols), dtype=dict(dtypes),
                             chunksize=chunk_rows, encoding='utf-8-sig', low_memory=False)
    except pd.errors.EmptyDataError:
        handle.close()
        raise DataError(f'{path}: the file is empty (no header line)') from None
    except (ValueError, UnicodeDecodeError) as e:  # usecols not in the header, bad bytes
        reader = None
        cause = e
    except BaseException:
        handle.close()
        raise
    scan = LineScanner(path, background=reader is not None)
    start = 0
    try:
        if reader is None:
            scan.ensure(None if isinstance(cause, UnicodeDecodeError) else 1)
            raise DataError(f'{path}: cannot read the header (line 1) with columns '
                            f'{list(usecols)}: {cause}')
        with reader:
            while True:
                try:
                    chunk = next(reader)
                except StopIteration:
                    break
                except (ValueError, TypeError, OverflowError) as e:
                    scan.ensure(start + chunk_rows)  # a field-count problem explains most
                    if isinstance(e, (UnicodeDecodeError, pd.errors.ParserError)):
                        scan.ensure(None)  # pandas reads ahead of its chunk
                    raise _locate_bad_cell(path, start, chunk_rows, dtypes, usecols, e,
                                           scan) from None
                scan.ensure(start + len(chunk))
                if position is not None:
                    position[0] = handle.tell()
                yield start, chunk
                start += len(chunk)
                if size > 50_000_000 and position is None:
                    note('%s%s: %s rows read (%.0fs)', label, path.name, f'{start:,}',
                         time.time() - t0)
            scan.ensure(None)  # a last line pandas dropped (e.g. a cut-off quote)
    finally:
        scan.close()
        handle.close()


def check_binary(path: Path, frame: pd.DataFrame, columns: Sequence[str], first_row: int) -> None:
    """Labels must be 0, 1 or missing (NaN); anything else names file, column and row."""
    for col in columns:
        if col not in frame.columns:
            continue
        v = frame[col].to_numpy(dtype=np.float64, na_value=np.nan)
        bad = ~(np.isnan(v) | (v == 0) | (v == 1))
        if bad.any():
            i = int(np.flatnonzero(bad)[0])
            row = first_row + i + 1
            raise DataError(f'{path}: column {col!r}, row {row} (line {row + 1}): label '
                            f'{v[i]:g} is not 0 or 1')


def check_domains(path: Path, values: np.ndarray, column: str, allowed: Sequence,
                  first_row: int, what: str) -> None:
    """A domain value outside `allowed` is a DataError; `what` says where `allowed` comes from."""
    bad = domain_index(values, allowed) < 0
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        row = first_row + i + 1
        raise DataError(f'{path}: column {column!r}, row {row} (line {row + 1}): domain value '
                        f"{values[i]} is not in {what} {_sorted(allowed)}")


def domain_index(values: np.ndarray, domains: Sequence) -> np.ndarray:
    """int64 [N]: the position of each raw domain value in ``domains``, -1 where it is none.

    Int domains and an int column compare as numbers; anything else compares as text, so
    string domains ('home', 'search') work, and so does an int column against domains given
    as strings. Whole floats (an int column that NaNs made float) count as ints.
    """
    values = np.asarray(values)
    domains = list(domains)
    if not domains:
        return np.full(len(values), -1, np.int64)
    ints = all(isinstance(d, (int, np.integer)) and not isinstance(d, bool) for d in domains)
    if ints and values.dtype.kind in 'iu':
        arr = np.asarray(domains, np.int64)
        order = np.argsort(arr, kind='stable')
        pos = np.minimum(np.searchsorted(arr[order], values), len(arr) - 1)
        return np.where(arr[order][pos] == values, order[pos], -1).astype(np.int64)
    text = pd.Series(values)
    if text.dtype.kind == 'f':
        whole = text.isna() | (np.isfinite(text) & (text == text.round()))
        if whole.all():
            text = text.astype('Int64')  # 1.0 -> '1', NaN -> '<NA>' (in no domain)
    index = pd.Index([str(d) for d in domains])
    return index.get_indexer(text.astype(str)).astype(np.int64)


def count_values(values: np.ndarray) -> dict:
    """{value: rows} of a column's values, for the drop lines (bincount for small ints)."""
    values = np.asarray(values)
    if values.dtype.kind in 'iu' and (len(values) == 0 or 0 <= values.min() <= values.max()
                                      < 1 << 16):
        counts = np.bincount(values)
        return {v: int(c) for v, c in enumerate(counts.tolist()) if c}
    return {plain_value(v): int(c) for v, c in pd.Series(values).value_counts().items()}


def plain_value(v):
    """A numpy scalar as the Python value, so messages print 6, not np.int64(6)."""
    return v.item() if isinstance(v, np.generic) else v


def _sorted(values) -> list:
    """Sorted for a message: numbers as numbers, anything mixed as text."""
    values = [plain_value(v) for v in values]
    try:
        return sorted(values)
    except TypeError:
        return sorted(values, key=str)


def _sorted_items(d: Mapping) -> list:
    try:
        return sorted(d.items())
    except TypeError:
        return sorted(d.items(), key=lambda kv: str(kv[0]))
