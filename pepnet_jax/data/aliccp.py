"""Ali-CCP reader (torch-rechub's preprocessed CSV layout): one file per split.

The second preset, here to keep the data layer honest: nothing in features/vocab/cache/
pipeline may assume KuaiRand. Each split is one CSV with the label columns (click, purchase),
22 label-encoded sparse fields, 8 dense ``D*`` weights and the domain column ``301``.

``config.data.splits`` maps split name -> file: a file name ('ali_ccp_train.csv') or a stem
('ali_ccp_train', which also finds 'ali_ccp_train_sample.csv'). Without it (or with KuaiRand
date ranges in it) the default is train/valid/test = ali_ccp_train/ali_ccp_val/ali_ccp_test.
"""

from __future__ import annotations

import time
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from pepnet_jax.data.errors import (DataError, note, note_drops, check_binary, check_domains,
                                    missing_file_error, read_csv_chunks, read_header,
                                    require_columns)
from pepnet_jax.features import FORMATS, DataSpec, aliccp_features, aliccp_groups  # noqa: F401

KNOWN_DOMAINS = FORMATS['aliccp']['known_domains']
DEFAULT_SPLITS = {'train': 'ali_ccp_train', 'valid': 'ali_ccp_val', 'test': 'ali_ccp_test'}


def split_files(data_config: Any) -> dict[str, Path]:
    """{split: path}; a missing file lists the candidates and the folder's contents."""
    directory = Path(data_config.get('dir'))
    raw = data_config.get('splits', None)
    raw = raw.to_dict() if hasattr(raw, 'to_dict') else dict(raw or {})
    if not raw or not all(isinstance(v, str) for v in raw.values()):
        raw = dict(DEFAULT_SPLITS)
    if 'train' not in raw:
        raise DataError(f'config.data.splits must contain "train", got {list(raw)}')
    out = {}
    for name, value in raw.items():
        cands = [value] if value.endswith('.csv') else [f'{value}.csv', f'{value}_sample.csv']
        hit = next((directory / c for c in cands if (directory / c).is_file()), None)
        if hit is None:
            raise missing_file_error(f'Ali-CCP split {name!r} (config.data.splits.{name})',
                                     cands, directory)
        out[name] = hit
    rank = lambda n: ({'train': 0, 'valid': 1, 'test': 2}.get(n, 3), n)
    return {n: out[n] for n in sorted(out, key=rank)}


def input_files(data_config: Any, spec: DataSpec) -> list[Path]:
    return list(split_files(data_config).values())


def _dtypes(spec: DataSpec, cols: list[str]) -> dict[str, Any]:
    """Labels float32 (NaN = missing), domain/group int64, features float64 (NaN -> OOV)."""
    out = {}
    for c in cols:
        if c in spec.tasks:
            out[c] = 'float32'
        elif c in (spec.domain_column, spec.group_column):
            out[c] = 'int64'
        else:
            out[c] = 'float64'
    return out


def _read(path: Path, spec: DataSpec, max_rows: int, keep_domains: bool,
          dropped: Counter | None = None) -> pd.DataFrame:
    """The needed columns of one file; `dropped` counts the rows the domain filter drops."""
    header = read_header(path)
    needed = {}
    for i, f in enumerate(spec.features):
        needed.setdefault(f.column, f'config.data.features[{i}] ({f.name!r})')
    for t in spec.tasks:
        needed.setdefault(t, 'config.data.tasks')
    needed.setdefault(spec.domain_column, 'the domain (config.data.tabs)')
    needed.setdefault(spec.group_column, 'config.data.group_column')
    require_columns(path, header, needed)
    cols = list(needed)
    parts, n = [], 0
    for start, chunk in read_csv_chunks(path, cols, _dtypes(spec, cols), label='aliccp '):
        check_binary(path, chunk, spec.tasks, start)
        dom = chunk[spec.domain_column].to_numpy()
        check_domains(path, dom, spec.domain_column, KNOWN_DOMAINS, start,
                      "Ali-CCP's known '301' values")
        if not keep_domains:
            keep = np.isin(dom, np.asarray(spec.domains))
            if dropped is not None and not keep.all():
                dropped.update(dict(enumerate(np.bincount(dom[~keep]).tolist())))
            chunk = chunk[keep]
        if max_rows:
            chunk = chunk.iloc[:max_rows - n]
        parts.append(chunk)
        n += len(chunk)
        if max_rows and n >= max_rows:
            break
    return pd.concat(parts, ignore_index=True) if parts else pd.DataFrame(columns=cols)


def read_splits(data_config: Any, spec: DataSpec) -> dict[str, pd.DataFrame]:
    """{split: raw frame}; rows of domains outside config.data.tabs are dropped (and counted)."""
    t0 = time.time()
    max_rows = int(data_config.get('max_rows', 0) or 0)
    frames = {}
    for name, path in split_files(data_config).items():
        dropped = Counter()
        frame = _read(path, spec, max_rows, keep_domains=False, dropped=dropped)
        note_drops(name, len(frame), spec.domain_column, dropped, spec.domains)
        if len(frame) == 0:
            raise DataError(f'split {name!r} is empty: no rows of {path} have '
                            f'{spec.domain_column!r} in {list(spec.domains)} (config.data.tabs)')
        frames[name] = frame
    note('aliccp: %s in %.1fs', ', '.join(f'{n}={len(f):,}' for n, f in frames.items()),
             time.time() - t0)
    return frames


def read_file(path: str | Path, spec: DataSpec) -> pd.DataFrame:
    """One Ali-CCP CSV for predict mode: all rows, a domain outside config.data.tabs errors."""
    path = Path(path)
    if not path.is_file():
        raise missing_file_error('Ali-CCP file for predict', [path.name], path.parent)
    frame = _read(path, spec, 0, keep_domains=True)
    check_domains(path, frame[spec.domain_column].to_numpy(), spec.domain_column, spec.domains,
                  0, 'config.data.tabs')
    return frame
