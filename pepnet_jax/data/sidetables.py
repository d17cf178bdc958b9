"""Side tables: per-entity feature files (KuaiRand's users and videos) joined to log rows.

A log row names its user and video; their features sit in tables of one row per entity. A
reader can join them into every chunk (``join``), which is what whole-frame reads do. The
streaming build does better (``pipeline.build_cache``): it counts how often the training rows
name each entity, fits the side features' vocabularies on the table rows weighted by those
counts (the same counts a join would give), encodes each table once, and gathers the ids row
by row. Joining and encoding tens of columns for every log row was most of the build's time.
"""

from __future__ import annotations

import dataclasses
from typing import Sequence

import numpy as np
import pandas as pd


class KeyIndex:
    """A table's ids, indexed once, for looking rows up chunk after chunk: a direct array
    when the ids are small non-negative integers (KuaiRand's are 0..N-1), else the sorted
    ids and a binary search."""

    def __init__(self, ids: np.ndarray):
        self.direct = None
        if len(ids) and ids.min() >= 0 and ids.max() < 4 * len(ids) + 1024:
            self.direct = np.full(int(ids.max()) + 1, -1, np.int64)
            self.direct[ids] = np.arange(len(ids))
            return
        self.order = np.argsort(ids, kind='stable')
        self.sorted_ids = ids[self.order]

    def rows(self, want: np.ndarray) -> np.ndarray:
        """Table row of each wanted id, -1 where the table has none."""
        if self.direct is not None:
            inside = (want >= 0) & (want < len(self.direct))
            return np.where(inside, self.direct[np.where(inside, want, 0)], -1)
        n = len(self.sorted_ids)
        if not n:
            return np.full(len(want), -1, np.int64)
        pos = np.searchsorted(self.sorted_ids, want)
        safe = np.minimum(pos, n - 1)
        found = (pos < n) & (self.sorted_ids[safe] == want)
        return np.where(found, self.order[safe], -1)


@dataclasses.dataclass
class SideTable:
    """``frame`` holds ``key`` (int ids) and ``columns``; a log row joins on its ``key``."""
    key: str
    frame: pd.DataFrame
    columns: tuple[str, ...]
    index: KeyIndex = dataclasses.field(init=False, repr=False)

    def __post_init__(self):
        self.columns = tuple(self.columns)
        self.index = KeyIndex(self.frame[self.key].to_numpy(np.int64))

    def __len__(self) -> int:
        return len(self.frame)

    def rows(self, frame: pd.DataFrame) -> np.ndarray:
        """The table row of each row of ``frame``, -1 where its id is not in the table."""
        return self.index.rows(frame[self.key].to_numpy(np.int64))

    def missing_row(self, column: str) -> pd.Series:
        """One missing value of ``column``'s dtype: what a join gives an unknown id."""
        s = self.frame[column].iloc[:1].copy()
        if len(s) == 0:
            s = pd.Series([np.nan], dtype=self.frame[column].dtype)
        s.iloc[0] = np.nan
        return s.reset_index(drop=True)


def join(frame: pd.DataFrame, table: SideTable, columns: Sequence[str] | None = None) -> None:
    """Left join of ``columns`` (default all) by exact id lookup, in place; unknown ids get
    missing values (NaN, -> OOV). Keeps the frame's order."""
    rows = table.rows(frame)
    missing = rows < 0
    safe_rows = np.where(missing, 0, rows)
    for c in (table.columns if columns is None else columns):
        s = table.frame[c]
        if isinstance(s.dtype, pd.CategoricalDtype):  # take codes, keep the categories
            codes = s.cat.codes.to_numpy()[safe_rows] if len(s) else np.zeros(len(rows), np.int8)
            codes[missing] = -1
            frame[c] = pd.Categorical.from_codes(codes, dtype=s.dtype)
        elif pd.api.types.is_float_dtype(s.dtype):
            v = s.to_numpy()[safe_rows] if len(s) else np.zeros(len(rows), s.dtype)
            v[missing] = np.nan
            frame[c] = v
        else:  # anything else (inferred ints, text): pandas' generic take with NA fill
            frame[c] = pd.Series(s.array.take(rows, allow_fill=True), index=frame.index)
