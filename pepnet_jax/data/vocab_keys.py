"""Key handling for vocabularies: the distinct values of a column and their key type (int,
float or string), exact lookups in sorted keys, hashing, and the frequency cut
(``min_count``, ``max_vocab``). Vectorised over distinct values (see ``vocab.py``)."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from pepnet_jax.features import FIRST_ID, OOV_ID


def _factorize(values: Any) -> tuple[np.ndarray, np.ndarray]:
    """codes (-1 = missing) and the distinct non-missing values as a numpy array."""
    codes, uniques = pd.factorize(values, use_na_sentinel=True)
    if isinstance(uniques, np.ndarray):
        return codes, uniques
    # Categorical / string extension arrays: numbers stay numbers, text becomes object
    dtype = getattr(uniques, 'categories', uniques).dtype
    if pd.api.types.is_numeric_dtype(dtype) and not pd.api.types.is_bool_dtype(dtype):
        uniques = np.asarray(uniques, dtype=np.float64)
    else:
        uniques = np.asarray(uniques, dtype=object)
    return codes, uniques


def _as_float(u: np.ndarray) -> np.ndarray:
    """Numbers (or numeric strings) as float64; anything unparsable becomes NaN."""
    if u.dtype.kind in 'biuf':
        return u.astype(np.float64)
    return pd.to_numeric(pd.Series(u, dtype=object), errors='coerce').to_numpy(np.float64)


def _str_keys(u: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Canonical string keys: integral numbers print without '.0', text is stripped."""
    if u.dtype.kind in 'biuf':
        f = u.astype(np.float64)
        valid = np.isfinite(f)
        out = np.empty(len(u), dtype=object)
        integral = valid & (f == np.round(f))
        out[integral] = [str(int(x)) for x in f[integral]]
        rest = valid & ~integral
        out[rest] = [repr(float(x)) for x in f[rest]]
        out[~valid] = ''
    else:
        out = np.array(['' if (x is None or (isinstance(x, float) and np.isnan(x))) else str(x).strip()
                        for x in u], dtype=object)
        valid = out != ''
    return out.astype(str) if len(out) else np.array([], dtype=str), valid


def _fit_keys(u: np.ndarray) -> tuple[str, np.ndarray, np.ndarray]:
    """(key_type, keys, valid) for fitting: int64 keys when every value is an integer."""
    if u.dtype.kind in 'biuf':
        f = u.astype(np.float64)
        valid = np.isfinite(f)
        if np.all(f[valid] == np.round(f[valid])) and np.all(np.abs(f[valid]) < 2 ** 62):
            return 'int', np.where(valid, f, 0).astype(np.int64) if u.dtype.kind == 'f' \
                else u.astype(np.int64), valid
    keys, valid = _str_keys(u)
    return 'str', keys, valid


def _coerce_keys(u: np.ndarray, key_type: str) -> tuple[np.ndarray, np.ndarray]:
    """Convert distinct values to the key type fitted on train; impossible ones are invalid."""
    if key_type == 'int':
        if u.dtype.kind in 'biu':
            return u.astype(np.int64), np.ones(len(u), bool)
        f = _as_float(u)
        valid = np.isfinite(f) & (f == np.round(f)) & (np.abs(f) < 2 ** 62)
        return np.where(valid, f, 0).astype(np.int64), valid
    return _str_keys(u)


def _find(vkeys: np.ndarray, keys: np.ndarray, valid: np.ndarray) -> np.ndarray:
    """Exact-match positions of keys in sorted vkeys (int64), -1 when absent or invalid."""
    out = np.full(len(keys), -1, dtype=np.int64)
    if len(vkeys) == 0 or len(keys) == 0:
        return out
    idx = np.searchsorted(vkeys, keys)
    safe = np.minimum(idx, len(vkeys) - 1)
    found = valid & (idx < len(vkeys)) & (vkeys[safe] == keys)
    out[found] = idx[found]
    return out


def _lookup(vkeys: np.ndarray, keys: np.ndarray, valid: np.ndarray) -> np.ndarray:
    """Exact-match lookup in sorted vkeys: ids 2.. when found, OOV otherwise."""
    pos = _find(vkeys, keys, valid)
    return np.where(pos >= 0, pos + FIRST_ID, OOV_ID).astype(np.int32)


def _hash64(keys: np.ndarray) -> np.ndarray:
    arr = keys.astype(object) if keys.dtype.kind == 'U' else keys
    return pd.util.hash_array(arr, categorize=False) if len(arr) else np.zeros(0, np.uint64)


def _hash(keys: np.ndarray, valid: np.ndarray, n: int) -> np.ndarray:
    h = _hash64(keys)
    return np.where(valid, (h % np.uint64(n)).astype(np.int64) + FIRST_ID, OOV_ID).astype(np.int32)


def _select(keys: np.ndarray, counts: np.ndarray, min_count: int, max_vocab: int) -> np.ndarray:
    """Sorted kept keys: count >= min_count, then the max_vocab most frequent (ties by key)."""
    if len(keys) == 0:
        return keys
    agg = pd.Series(counts).groupby(keys, sort=True).sum()
    out = _keep(agg.index.to_numpy(), agg.to_numpy(), min_count, max_vocab)
    return out.astype(str) if out.dtype == object else out.astype(np.int64)


def _keep(keys: np.ndarray, counts: np.ndarray, min_count: int, max_vocab: int) -> np.ndarray:
    """_select over distinct sorted keys."""
    keys, counts = keys[counts >= min_count], counts[counts >= min_count]
    if max_vocab and len(keys) > max_vocab:
        keys = keys[np.sort(np.lexsort((np.arange(len(keys)), -counts))[:max_vocab])]
    return keys


def _split_tokens(u: np.ndarray, sep: str) -> list[list[str]]:
    strs, valid = _str_keys(u)
    return [[t.strip() for t in s.split(sep) if t.strip()] if ok else []
            for s, ok in zip(strs, valid)]
