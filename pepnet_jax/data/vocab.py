"""Vocabularies, bucket boundaries and dense statistics, fitted on the training split only.

Fitting on train alone is what makes evaluation honest: an id first seen in valid/test maps
to OOV (1), exactly as it would for a model in production. Ids: 0 padding, 1 OOV, 2.. real
(see pepnet_jax.features). Missing values (NaN, empty, and whatever a reader normalised to
NaN, e.g. KuaiRand's -124 / UNKNOWN) also map to 1: the model learns one "unknown" row, and
a missing value never takes a real id.

Everything is vectorised over the *distinct* values of a column: ``pd.factorize`` reduces N
rows to U uniques, the uniques are looked up in sorted keys with ``np.searchsorted`` (an
exact-match check afterwards, so an unseen key never aliases its neighbour), and the ids are
scattered back with one take. Million-row columns encode in well under a second. The key
helpers are ``vocab_keys.py``.

A cross (several columns, one id per combination of their values) keys each row by its parts'
positions in per-part dictionaries (the sorted keys of each part's train values), combined
mixed-radix into one int64: exact, ordered like the tuple of part keys, and then selected and
looked up exactly as a categorical's keys are, so it stays vectorised at millions of rows.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import os
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from pepnet_jax import files
from pepnet_jax.features import FIRST_ID, OOV_ID, PAD_ID, DataSpec, FeatureInfo, FeatureSpec
from pepnet_jax.data.errors import DataError
from pepnet_jax.data.vocab_keys import (
    _factorize, _as_float, _fit_keys, _coerce_keys, _find, _lookup, _hash64, _hash,
    _select, _keep, _split_tokens)

VOCAB_JSON = 'vocab.json'
VOCAB_KEYS = 'vocab_keys.npz'
_TOKEN = '~token'  # the save's digest, in both files; '~' is never in a feature name
FORMAT_VERSION = 1


# ---------------------------------------------------------------------------- the vocab


@dataclasses.dataclass
class Vocab:
    """Fitted state per feature name. ``entries[name]`` holds plain JSON-able metadata plus,
    for looked-up features, the sorted ``keys`` array."""
    spec: DataSpec
    entries: dict[str, dict[str, Any]]

    # -- fitting
    @classmethod
    def fit(cls, frame: pd.DataFrame, spec: DataSpec) -> 'Vocab':
        """Fit on one whole training frame: ``VocabFitter`` fed with a single chunk."""
        fitter = VocabFitter(spec)
        fitter.update(frame)
        return fitter.finish()

    # -- encoding
    def encode_feature(self, name: str, values: Any) -> np.ndarray:
        """int32 [N] / int32 [N, max_len] / float32 [N]; never raises on unseen values.

        ``values`` is the feature's column; for a cross, a frame holding its part columns.
        """
        f = self.spec.feature(name)
        return _encode_feature(f, self.entries[name], values)

    def vocab_size(self, name: str) -> int:
        f, e = self.spec.feature(name), self.entries[name]
        if f.kind == 'dense':
            return 0
        if f.kind == 'bucket':
            return FIRST_ID + len(e['boundaries']) + 1
        if e['hash_buckets']:
            return FIRST_ID + e['hash_buckets']
        return FIRST_ID + len(e['keys'])

    def feature_infos(self) -> tuple[FeatureInfo, ...]:
        """Per feature what a model needs; a cross is a plain categorical to the model."""
        kind = lambda f: 'categorical' if f.kind == 'cross' else f.kind
        return tuple(FeatureInfo(name=f.name, kind=kind(f), vocab_size=self.vocab_size(f.name),
                                 max_len=f.max_len, shared=f.shared) for f in self.spec.features)

    def check_spec(self, spec: DataSpec) -> None:
        """A saved vocab only fits a spec with the same features (names, columns, options)."""
        if spec.features != self.spec.features:
            mine = [dataclasses.asdict(f) for f in self.spec.features]
            theirs = [dataclasses.asdict(f) for f in spec.features]
            diff = [(a, b) for a, b in zip(mine, theirs) if a != b][:1] or \
                [(len(mine), len(theirs))]
            raise DataError('the vocabulary was fitted for a different config.data.features '
                            f'(first difference: {diff[0]})')

    # -- persistence
    def save(self, directory: str | os.PathLike) -> Path:
        """vocab.json (spec + metadata, readable) and vocab_keys.npz (key arrays).

        Not atomic as a pair: each file is replaced atomically, vocab.json last, and both
        hold a digest of the whole save, so ``load`` never mixes two saves; a save killed
        between the two leaves a DataError (until the next save), not new keys read with old
        metadata.
        A cross's part dictionaries are stored as '<name>:<part>' (':' is never in a name).
        """
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        meta, arrays = {}, {}
        for name, e in self.entries.items():
            meta[name] = {k: v for k, v in e.items() if k not in ('keys', 'part_keys')}
            if 'keys' in e:
                arrays[name] = e['keys']
            for i, part in enumerate(e.get('part_keys', ())):
                arrays[f'{name}:{i}'] = part
        doc = dict(format_version=FORMAT_VERSION, spec=self.spec.to_dict(), features=meta)
        h = hashlib.sha1(json.dumps(doc, sort_keys=True).encode())  # same vocab, same bytes
        for name in sorted(arrays):
            a = np.ascontiguousarray(arrays[name])
            h.update(f'{name}{a.dtype}{a.shape}'.encode())
            h.update(a.tobytes())
        doc['token'] = h.hexdigest()
        arrays[_TOKEN] = np.array(doc['token'])
        with files.atomic_write(directory / VOCAB_KEYS, 'wb') as f:
            np.savez(f, **arrays)
        with files.atomic_write(directory / VOCAB_JSON) as f:
            f.write(json.dumps(doc, indent=1))
        return directory

    @classmethod
    def load(cls, directory: str | os.PathLike) -> 'Vocab':
        directory = Path(directory)
        path = directory / VOCAB_JSON
        if not path.exists():
            raise DataError(f'no vocabulary at {path} (expected {VOCAB_JSON} and {VOCAB_KEYS}, '
                            'written by load_datasets into <workdir>/vocab)')
        doc = json.loads(path.read_text())
        if doc.get('format_version') != FORMAT_VERSION:
            raise DataError(f'{path}: format_version {doc.get("format_version")} != {FORMAT_VERSION}')
        spec = DataSpec.from_dict(doc['spec'])
        entries = {name: dict(m) for name, m in doc['features'].items()}
        with np.load(directory / VOCAB_KEYS, allow_pickle=False) as z:
            token = str(z[_TOKEN]) if _TOKEN in z.files else None
            if token != doc.get('token'):  # both None: saved before tokens
                raise DataError(f'{directory}: {VOCAB_KEYS} and {VOCAB_JSON} are from different '
                                'saves (an interrupted save?); rerun training to save them again')
            for name in z.files:
                if name == _TOKEN:
                    continue
                if ':' in name:
                    base, i = name.rsplit(':', 1)
                    entries[base].setdefault('part_keys', {})[int(i)] = z[name]
                else:
                    entries[name]['keys'] = z[name]
        for e in entries.values():
            if 'part_keys' in e:
                e['part_keys'] = [e['part_keys'][i] for i in range(len(e['part_keys']))]
        return cls(spec, entries)


# ---------------------------------------------------------------------------- fitting in chunks


class _Counts:
    """An exact value -> count table, merged from chunks: the sufficient statistic of every
    fit, so a vocabulary fitted chunk by chunk equals one fitted at once, whatever the chunks.

    Chunks' tables wait in a list and are merged (one groupby) once they outgrow the merged
    table, so the total cost stays O(N log N) and the memory O(distinct values).
    """

    def __init__(self):
        self.merged: pd.Series | None = None
        self.pending: list[pd.Series] = []
        self.pending_rows = 0

    def add(self, values: np.ndarray | pd.Index | pd.MultiIndex, counts: np.ndarray) -> None:
        if len(counts) == 0:
            return
        self.pending.append(pd.Series(np.asarray(counts, np.int64), index=values))
        self.pending_rows += len(counts)
        if self.pending_rows > max(2 * (0 if self.merged is None else len(self.merged)), 1 << 20):
            self._merge()

    def _merge(self) -> None:
        parts = ([] if self.merged is None else [self.merged]) + self.pending
        if parts:
            both = pd.concat(parts)
            # sort=False: a column's values may mix types (text and numbers); every fit
            # below orders what it needs itself, so the table's order does not matter.
            self.merged = both.groupby(level=list(range(both.index.nlevels)),
                                       sort=False).sum()
        self.pending, self.pending_rows = [], 0

    def result(self) -> pd.Series:
        """The merged table: distinct values (in no particular order) -> int64 counts."""
        self._merge()
        return self.merged if self.merged is not None else pd.Series([], dtype=np.int64)


class VocabFitter:
    """Fits a Vocab from training rows fed in any number of chunks (``update``), with memory
    that grows with the distinct values, not with the rows. ``finish`` gives exactly what one
    chunk holding every row would: each feature's fit is a function of value counts alone
    (categorical and multi: counts of the raw values; bucket and dense: counts of the finite
    values, from which the quantiles and the mean / std are computed exactly as over the
    expanded rows; cross: counts of the value combinations).

    ``update(frame, weights)`` may weight rows (an entity table's rows by how often the
    training rows show each entity); the default weight is 1.
    """

    def __init__(self, spec: DataSpec):
        self.spec = spec
        self.counts = {f.name: _Counts() for f in spec.features}
        self.rows = 0

    def update(self, frame: pd.DataFrame, weights: np.ndarray | None = None,
               features=None) -> None:
        """Counts ``frame``'s rows (each ``weights`` times) for ``features`` (default all)."""
        features = self.spec.features if features is None else features
        for f in features:
            for c in f.columns:
                if c not in frame.columns:
                    raise DataError(f'feature {f.name!r}: column {c!r} is not in the training '
                                    f'frame (columns: {list(frame.columns)})')
        w = None if weights is None else np.asarray(weights, np.int64)
        for f in features:
            acc = self.counts[f.name]
            if f.kind == 'cross':
                parts = frame[list(f.columns)]
                keep = parts.notna().all(axis=1).to_numpy()  # a missing part never counts
                sub = parts[keep]
                if len(sub):
                    g = (sub.assign(_w=1 if w is None else w[keep])
                         .groupby(list(f.columns), sort=False, observed=True)['_w'].sum())
                    acc.add(g.index, g.to_numpy())
                continue
            col = frame[f.column]
            if f.kind in ('dense', 'bucket'):
                v = _dense_values(f, col) if f.kind == 'dense' else _as_float(np.asarray(col))
                fin = np.isfinite(v)
                uniq, inverse = np.unique(v[fin], return_inverse=True)
                counts = np.bincount(inverse, weights=None if w is None else w[fin],
                                     minlength=len(uniq))
                acc.add(uniq, counts.astype(np.int64))
                continue
            codes, uniq = _factorize(col)
            ok = codes >= 0
            counts = np.bincount(codes[ok], weights=None if w is None else w[ok],
                                 minlength=len(uniq))
            acc.add(uniq, counts.astype(np.int64))
        if features is self.spec.features or weights is None:
            self.rows += len(frame) if w is None else int(w.sum())

    def finish(self) -> 'Vocab':
        if self.rows == 0:
            raise DataError('cannot fit vocabularies: the training split has no rows')
        entries = {}
        for f in self.spec.features:
            table = self.counts[f.name].result()
            entries[f.name] = (_fit_cross(f, table) if f.kind == 'cross'
                               else _fit_from_counts(f, table))
        return Vocab(self.spec, entries)


def _quantiles(values: np.ndarray, counts: np.ndarray, qs: np.ndarray) -> np.ndarray:
    """np.quantile(np.repeat(values, counts), qs) (method 'linear'), without the repeat:
    the same virtual indexes and the same interpolation as numpy's, so the same floats."""
    n = int(counts.sum())
    ends = np.cumsum(counts)  # rank r holds values[searchsorted(ends, r, side='right')]
    virtual = qs * (n - 1)
    below = np.floor(virtual)
    t = virtual - below
    at = lambda r: values[np.searchsorted(ends, np.clip(r, 0, n - 1).astype(np.int64),
                                          side='right')]
    a, b = at(below), at(below + 1)
    diff = b - a
    out = a + diff * t
    return np.where(t >= 0.5, b - diff * (1 - t), out)


def _fit_from_counts(f: FeatureSpec, table: pd.Series) -> dict[str, Any]:
    values = np.asarray(table.index)
    counts = table.to_numpy(np.int64)
    if f.kind in ('dense', 'bucket'):
        order = np.argsort(values.astype(np.float64), kind='stable')
        values, counts = values[order].astype(np.float64), counts[order]
    if f.kind == 'dense':
        if not counts.sum():
            return dict(mean=0.0, std=1.0)
        n = int(counts.sum())
        mean = math.fsum((values * counts).tolist()) / n
        var = math.fsum((np.square(values - mean) * counts).tolist()) / n
        std = math.sqrt(var)
        return dict(mean=float(mean), std=std if std > 1e-12 else 1.0)
    if f.kind == 'bucket':
        if not counts.sum():
            return dict(boundaries=[])
        qs = _quantiles(values, counts,
                        np.linspace(0, 1, f.num_buckets + 1)[1:-1])
        return dict(boundaries=[float(x) for x in np.unique(qs)])
    uniq = values if values.dtype != object else np.asarray(values, dtype=object)
    if f.kind == 'multi':
        toks = _split_tokens(uniq, f.sep)
        flat = np.array([t for ts in toks for t in ts], dtype=str)
        flat_counts = np.repeat(counts, [len(ts) for ts in toks])
        if f.hash_buckets:
            return dict(key_type='str', hash_buckets=f.hash_buckets)
        return dict(key_type='str', hash_buckets=0,
                    keys=_select(flat, flat_counts, f.min_count, f.max_vocab).astype(str))
    key_type, keys, valid = _fit_keys(uniq)
    if f.hash_buckets:
        return dict(key_type=key_type, hash_buckets=f.hash_buckets)
    return dict(key_type=key_type, hash_buckets=0,
                keys=_select(keys[valid], counts[valid], f.min_count, f.max_vocab))


def _dense_values(f: FeatureSpec, col: Any) -> np.ndarray:
    v = _as_float(np.asarray(col))
    if f.transform == 'log1p':
        with np.errstate(invalid='ignore'):
            v = np.log1p(np.maximum(v, 0.0))
    return v


def _ids_for_uniques(e: dict[str, Any], keys: np.ndarray, valid: np.ndarray) -> np.ndarray:
    if e['hash_buckets']:
        return _hash(keys, valid, e['hash_buckets'])
    return _lookup(e['keys'], keys, valid)


def _encode_feature(f: FeatureSpec, e: dict[str, Any], col: Any) -> np.ndarray:
    if f.kind == 'cross':
        return _encode_cross(f, e, col)
    if f.kind == 'dense':
        v = (_dense_values(f, col) - e['mean']) / e['std']
        return np.where(np.isfinite(v), v, 0.0).astype(np.float32)
    if f.kind == 'bucket':
        v = _as_float(np.asarray(col))
        b = np.asarray(e['boundaries'], dtype=np.float64)
        ids = np.searchsorted(b, v, side='right').astype(np.int32) + FIRST_ID
        return np.where(np.isfinite(v), ids, OOV_ID).astype(np.int32)
    codes, uniq = _factorize(col)
    if f.kind == 'categorical':
        keys, valid = _coerce_keys(uniq, e['key_type'])
        ids_u = np.append(_ids_for_uniques(e, keys, valid), np.int32(OOV_ID))
        return ids_u[codes]  # code -1 picks the appended OOV
    # multi: one [U + 1, max_len] table of token ids, the last row for missing lists
    toks = _split_tokens(uniq, f.sep)
    lens = np.array([min(len(t), f.max_len) for t in toks], dtype=np.int64)
    flat = np.array([t for ts in toks for t in ts[:f.max_len]], dtype=str)
    ids_flat = _ids_for_uniques(e, flat, np.ones(len(flat), bool))
    table = np.full((len(uniq) + 1, f.max_len), PAD_ID, dtype=np.int32)
    rows = np.repeat(np.arange(len(uniq)), lens)
    cols = np.arange(len(flat)) - np.repeat(np.cumsum(lens) - lens, lens)
    table[rows, cols] = ids_flat
    table[np.flatnonzero(lens == 0), 0] = OOV_ID  # empty list -> one OOV, so mean pooling never sees 0 ids
    table[-1, 0] = OOV_ID
    return table[codes]


# ---------------------------------------------------------------------------- crosses

_MIX = np.uint64(0x9E3779B97F4A7C15)  # odd: h * _MIX + part keeps the order of the parts


def _strides(f: FeatureSpec, sizes: list[int]) -> list[int]:
    """Mixed-radix strides over the part dictionaries, the first part most significant."""
    strides, total = [], 1
    for n in reversed(sizes):
        strides.append(total)
        total *= max(n, 1)
    if total > 2 ** 63 - 1:
        raise DataError(f'feature {f.name!r}: the cross of {list(f.columns)} has too many '
                        f'value combinations ({" x ".join(map(str, sizes))}) for exact int64 '
                        'keys; set hash_buckets in its config.data.features entry')
    return strides[::-1]


def _part_ranks(col: Any, key_type: str, part_keys: np.ndarray) -> np.ndarray:
    """Per row: the value's position in the part dictionary, -1 if missing or not in it."""
    codes, uniq = _factorize(col)
    keys, valid = _coerce_keys(uniq, key_type)
    return np.append(_find(part_keys, keys, valid), -1)[codes]


def _combine(ranks: list[np.ndarray], strides: list[int]) -> tuple[np.ndarray, np.ndarray]:
    """(int64 key, ok) per row; ok is False when any part has no position."""
    key = np.zeros(len(ranks[0]), np.int64)
    ok = np.ones(len(ranks[0]), bool)
    for r, s in zip(ranks, strides):
        ok &= r >= 0
        key += np.maximum(r, 0) * np.int64(s)
    return key, ok


def _dictionary(keys: np.ndarray, valid: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Sorted distinct valid keys, and each key's position in them (-1 if invalid).

    One argsort; np.unique's hash path is several times slower on a million int64 keys.
    """
    idx = np.flatnonzero(valid)
    order = idx[np.argsort(keys[idx], kind='stable')]
    k = keys[order]
    new = np.ones(len(k), bool)
    new[1:] = k[1:] != k[:-1]
    pos = np.full(len(keys), -1, np.int64)
    pos[order] = np.cumsum(new) - 1
    return k[new], pos


def _fit_cross(f: FeatureSpec, table: pd.Series) -> dict[str, Any]:
    """From the counts of the value combinations (rows with a missing part left out)."""
    index = table.index
    combos = counts = None
    key_types, dicts, ranks = [], [], []
    for i in range(len(f.columns)):
        col = index.get_level_values(i) if isinstance(index, pd.MultiIndex) else index
        codes, uniq = _factorize(col)
        key_type, keys, valid = _fit_keys(uniq)
        key_types.append(key_type)
        if not f.hash_buckets:
            d, pos = _dictionary(keys, valid)
            dicts.append(d)
            ranks.append(np.append(pos, -1)[codes])
    if f.hash_buckets:  # nothing to fit but how each part is keyed
        return dict(key_types=key_types, hash_buckets=f.hash_buckets)
    counts = table.to_numpy(np.int64)
    strides = _strides(f, [len(d) for d in dicts])
    key, ok = _combine(ranks, strides)
    seen, pos = _dictionary(key, ok)
    combos = np.bincount(pos[ok], weights=counts[ok], minlength=len(seen)).astype(np.int64)
    kept = _keep(seen, combos, f.min_count, f.max_vocab)
    # Keep only the part values some kept combination uses, and re-key over those.
    parts = [(kept // np.int64(s)) % max(len(d), 1) for s, d in zip(strides, dicts)]
    used = [_dictionary(p, np.ones(len(p), bool))[0] for p in parts]
    strides = _strides(f, [len(u) for u in used])
    keys, _ = _combine([np.searchsorted(u, p) for u, p in zip(used, parts)], strides)
    return dict(key_types=key_types, hash_buckets=0, keys=keys,
                part_keys=[d[u] for d, u in zip(dicts, used)])


def _encode_cross(f: FeatureSpec, e: dict[str, Any], frame: Any) -> np.ndarray:
    if e['hash_buckets']:
        h, ok = None, None
        for c, key_type in zip(f.columns, e['key_types']):
            codes, uniq = _factorize(frame[c])
            keys, valid = _coerce_keys(uniq, key_type)
            part_ok = np.append(valid, False)[codes]
            part_h = np.append(_hash64(keys), np.uint64(0))[codes]
            h = part_h if h is None else h * _MIX + part_h
            ok = part_ok if ok is None else ok & part_ok
        h = pd.util.hash_array(h, categorize=False)
        ids = (h % np.uint64(e['hash_buckets'])).astype(np.int64) + FIRST_ID
        return np.where(ok, ids, OOV_ID).astype(np.int32)
    ranks = [_part_ranks(frame[c], t, d)
             for c, t, d in zip(f.columns, e['key_types'], e['part_keys'])]
    key, ok = _combine(ranks, _strides(f, [len(d) for d in e['part_keys']]))
    return _lookup(e['keys'], key, ok)
