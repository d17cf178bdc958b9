"""Ali-CCP reader (torch-rechub's preprocessed CSV layout): one file per split.

The second preset, here to keep the data layer honest: nothing in features/vocab/cache/
pipeline may assume KuaiRand. Each split is one CSV with the label columns (click, purchase),
22 label-encoded sparse fields, 8 dense ``D*`` weights and the domain column ``301``.

``config.data.splits`` maps split name -> file: a file name ('ali_ccp_train.csv') or a stem
('ali_ccp_train', which also finds 'ali_ccp_train_sample.csv'). Without it (or with KuaiRand
date ranges in it, as configs made before the format-neutral base config had) the default is
train/valid/test = ali_ccp_train/ali_ccp_val/ali_ccp_test.

The module registers the 'aliccp' ``DataFormat`` (at the end). Predict mode's key column is
the row number: Ali-CCP rows carry no user/item/time keys worth echoing.
"""

from __future__ import annotations

import time
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from pepnet_jax.data import formats
from pepnet_jax.data.errors import (DataError, note, note_drops, check_binary, check_domains,
                                    count_values, domain_index, missing_file_error,
                                    read_csv_chunks, read_header, require_columns)
from pepnet_jax.features import DataSpec

KNOWN_DOMAINS = (1, 2, 3)
TASKS = ('click', 'purchase')
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
        elif c == spec.domain_column or c in spec.group_columns:
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
    needed.setdefault(spec.domain_column, 'the domain (config.data.domains)')
    for c in spec.group_columns:
        needed.setdefault(c, 'config.data.group_column')
    require_columns(path, header, needed)
    cols = list(needed)
    parts, n = [], 0
    for start, chunk in read_csv_chunks(path, cols, _dtypes(spec, cols), label='aliccp '):
        check_binary(path, chunk, spec.tasks, start)
        dom = chunk[spec.domain_column].to_numpy()
        if spec.domain_column == FORMAT.domain_column:
            check_domains(path, dom, spec.domain_column, KNOWN_DOMAINS, start,
                          "Ali-CCP's known '301' values")
        if not keep_domains:
            keep = domain_index(dom, spec.domains) >= 0
            if dropped is not None and not keep.all():
                dropped.update(count_values(dom[~keep]))
            chunk = chunk[keep]
        if max_rows:
            chunk = chunk.iloc[:max_rows - n]
        parts.append(chunk)
        n += len(chunk)
        if max_rows and n >= max_rows:
            break
    return pd.concat(parts, ignore_index=True) if parts else pd.DataFrame(columns=cols)


def read_splits(data_config: Any, spec: DataSpec) -> dict[str, pd.DataFrame]:
    """{split: raw frame}; rows of domains outside config.data.domains are dropped (counted)."""
    t0 = time.time()
    max_rows = int(data_config.get('max_rows', 0) or 0)
    frames = {}
    for name, path in split_files(data_config).items():
        dropped = Counter()
        frame = _read(path, spec, max_rows, keep_domains=False, dropped=dropped)
        note_drops(name, len(frame), spec.domain_column, dropped, spec.domains)
        if len(frame) == 0:
            raise DataError(f'split {name!r} is empty: no rows of {path} have '
                            f'{spec.domain_column!r} in {list(spec.domains)} '
                            '(config.data.domains)')
        frames[name] = frame
    note('aliccp: %s in %.1fs', ', '.join(f'{n}={len(f):,}' for n, f in frames.items()),
             time.time() - t0)
    return frames


def read_file(path: str | Path, spec: DataSpec) -> pd.DataFrame:
    """One Ali-CCP CSV for predict mode: all rows, a domain outside config.data.domains errors."""
    path = Path(path)
    if not path.is_file():
        raise missing_file_error('Ali-CCP file for predict', [path.name], path.parent)
    frame = _read(path, spec, 0, keep_domains=True)
    check_domains(path, frame[spec.domain_column].to_numpy(), spec.domain_column, spec.domains,
                  0, 'config.data.domains')
    return frame


def read_predict_file(path: str | Path, data_dir: str | Path, spec: DataSpec,
                      data_config: Any) -> tuple[pd.DataFrame, dict[str, np.ndarray]]:
    """``DataFormat.read_file``: the file and its row numbers as the key column."""
    frame = read_file(path, spec)
    return frame, {'row': np.arange(len(frame))}


# --------------------------------------------------------------------------------------------
# Presets. Each returns plain dicts so they drop straight into ``config.data.features``.

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


FORMAT = formats.register(formats.DataFormat(
    name='aliccp', read_splits=read_splits, input_files=input_files,
    read_file=read_predict_file, domain_column='301', known_domains=KNOWN_DOMAINS,
    group_column='101', tasks=TASKS, domains=KNOWN_DOMAINS, splits=DEFAULT_SPLITS,
    features=aliccp_features, groups=aliccp_groups,
    # Field ids: 1xx (and the 14-day user fields) the user, 2xx the item.
    entities={'user': ('101', '121', '122', '124', '125', '126', '127', '128', '129',
                       '109_14', '110_14', '127_14', '150_14', 'D109_14', 'D110_14',
                       'D127_14', 'D150_14'),
              'item': ('205', '206', '207', '210', '216')}))
