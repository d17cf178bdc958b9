"""DataError and the checked CSV primitives that raise it.

Every input problem should surface as one DataError naming the file, the column and the row,
instead of a pandas traceback from deep inside a chunk loop. The readers (kuairand, aliccp)
share these helpers so that the messages look the same for every format.
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Iterator, Mapping, Sequence

import numpy as np
import pandas as pd

CHUNK_ROWS = 1_000_000


def note(msg: str, *args) -> None:
    """A progress line on stdout, next to the CLI's other progress output."""
    print('[data] ' + (msg % args if args else msg), flush=True)


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
    except (pd.errors.EmptyDataError, UnicodeDecodeError) as e:
        raise DataError(f'{path}: cannot read a CSV header ({e})') from None


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
                     usecols: Sequence[str], cause: Exception) -> DataError:
    """Re-read one failed chunk as text and find the first cell that does not parse."""
    try:
        raw = pd.read_csv(path, header=None, names=read_header(path), usecols=list(usecols),
                          dtype=str, skiprows=start + 1, nrows=nrows, encoding='utf-8-sig')
    except (ValueError, pd.errors.ParserError) as e:  # malformed CSV: pandas names the line
        return DataError(f'{path}: malformed CSV after row {start}: {e}')
    best = None
    for col, dtype in dtypes.items():
        if col not in raw.columns or not _is_numeric_dtype(dtype):
            continue
        text = raw[col]
        num = pd.to_numeric(text, errors='coerce')
        bad = num.isna().to_numpy() & text.notna().to_numpy()
        if np.issubdtype(np.dtype(dtype), np.integer):
            vals = num.to_numpy(dtype=np.float64, na_value=np.nan)
            bad |= text.isna().to_numpy() | (np.isfinite(vals) & (vals != np.round(vals)))
        idx = np.flatnonzero(bad)
        if idx.size and (best is None or idx[0] < best[0]):
            best = (int(idx[0]), col, text.iloc[idx[0]], np.dtype(dtype).name)
    if best is None:
        return DataError(f'{path}: rows {start + 1}..{start + nrows} do not parse: {cause}')
    i, col, value, dname = best
    row = start + i + 1
    shown = 'an empty cell' if (value is None or (isinstance(value, float) and np.isnan(value))) \
        else repr(value)
    return DataError(f'{path}: column {col!r}, row {row} (line {row + 1}): cannot parse '
                     f'{shown} as {dname}')


def read_csv_chunks(path: Path, usecols: Sequence[str], dtypes: Mapping[str, object],
                    chunk_rows: int = CHUNK_ROWS, label: str = '') -> Iterator[tuple[int, pd.DataFrame]]:
    """Yield (first_row_index, chunk) with explicit dtypes; a parse error becomes a DataError.

    Rows are 0-based data rows (the header is not a row); messages print them 1-based.
    """
    path = Path(path)
    size = os.path.getsize(path)
    t0 = time.time()
    reader = pd.read_csv(path, usecols=list(usecols), dtype=dict(dtypes), chunksize=chunk_rows,
                         encoding='utf-8-sig', low_memory=False)
    start = 0
    with reader:
        while True:
            try:
                chunk = next(reader)
            except StopIteration:
                break
            except (ValueError, TypeError, OverflowError) as e:
                raise _locate_bad_cell(path, start, chunk_rows, dtypes, usecols, e) from None
            yield start, chunk
            start += len(chunk)
            if size > 50_000_000:
                note('%s%s: %s rows read (%.0fs)', label, path.name, f'{start:,}',
                         time.time() - t0)


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


def check_domains(path: Path, values: np.ndarray, column: str, allowed: Sequence[int],
                  first_row: int, what: str) -> None:
    """A domain value outside `allowed` is a DataError; `what` says where `allowed` comes from."""
    allowed_arr = np.asarray(sorted(int(x) for x in allowed))
    bad = ~np.isin(values, allowed_arr)
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        row = first_row + i + 1
        raise DataError(f'{path}: column {column!r}, row {row} (line {row + 1}): domain value '
                        f"{values[i]} is not in {what} {sorted(int(x) for x in allowed)}")
