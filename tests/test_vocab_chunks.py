"""A vocabulary fitted chunk by chunk equals one fitted at once (the streaming ingestion's
first pass), for every feature kind, and weighted rows count as repeated rows."""

from __future__ import annotations

import ml_collections
import numpy as np
import pandas as pd
import pytest

from pepnet_jax.data.vocab import Vocab, VocabFitter, _quantiles
from pepnet_jax.features import spec_from_config

FEATURES = [
    dict(name='uid', column='uid', kind='categorical', min_count=2),
    dict(name='text', column='text', kind='categorical', max_vocab=5),
    dict(name='tag', column='tag', kind='multi', max_len=3, sep=','),
    dict(name='dur', column='dur', kind='bucket', num_buckets=7),
    dict(name='follows', column='follows', kind='dense', transform='log1p'),
    dict(name='hashed', column='uid', kind='categorical', hash_buckets=50),
]
CROSS = dict(name='tab_x_uid', column='tab,uid', kind='cross', min_count=2)


def _spec():
    return spec_from_config(ml_collections.ConfigDict(dict(
        format='kuairand', features=FEATURES + [dict(name='tab', column='tab',
                                                     kind='categorical', shared=False), CROSS],
        tasks=('is_click',), domains=(0, 1, 2, 4))))


def _frame(n: int, seed: int) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    uid = rng.integers(0, 300, n).astype(np.float64)
    uid[rng.random(n) < 0.05] = np.nan
    text = rng.choice(np.array(['a', 'b', ' c', 'UNK', 'd', 'e', 'f', 'g'], dtype=object), n)
    text[rng.random(n) < 0.05] = None
    tags = rng.choice(np.array(['1', '2,3', '3,1,4', '5', '', '2,2,6,7'], dtype=object), n)
    dur = rng.choice(np.r_[np.arange(40) * 1000.0, np.nan], n)  # heavy ties
    follows = rng.choice(np.r_[rng.integers(0, 5000, 200), -3.0, np.nan], n)
    return pd.DataFrame({'uid': uid, 'text': text, 'tag': tags, 'dur': dur, 'follows': follows,
                         'tab': rng.choice([0, 1, 2, 4], n)})


def _assert_same(a: Vocab, b: Vocab):
    assert a.entries.keys() == b.entries.keys()
    for name in a.entries:
        ea, eb = a.entries[name], b.entries[name]
        assert ea.keys() == eb.keys(), name
        for k in ea:
            if isinstance(ea[k], np.ndarray):
                assert ea[k].dtype == eb[k].dtype, (name, k)
                np.testing.assert_array_equal(ea[k], eb[k], err_msg=name)
            elif k == 'part_keys':
                assert len(ea[k]) == len(eb[k])
                for x, y in zip(ea[k], eb[k]):
                    np.testing.assert_array_equal(x, y, err_msg=name)
            else:
                assert ea[k] == eb[k], (name, k, ea[k], eb[k])  # exact, floats included


@pytest.mark.parametrize('seed', [0, 1, 2])
def test_chunked_fit_equals_the_whole_fit(seed):
    spec, frame = _spec(), _frame(5000, seed)
    whole = Vocab.fit(frame, spec)
    rng = np.random.default_rng(seed + 10)
    cuts = np.sort(rng.choice(np.arange(1, len(frame)), 40, replace=False))
    fitter = VocabFitter(spec)
    for part in np.split(np.arange(len(frame)), cuts):
        fitter.update(frame.iloc[part].reset_index(drop=True))
    _assert_same(whole, fitter.finish())
    # and the encodings of new rows agree
    other = _frame(300, seed + 100)
    chunked = fitter.finish()
    for f in spec.features:
        raw = other[list(f.columns)] if f.kind == 'cross' else other[f.column]
        np.testing.assert_array_equal(whole.encode_feature(f.name, raw),
                                      chunked.encode_feature(f.name, raw), err_msg=f.name)


def test_one_row_chunks_and_all_missing_chunks():
    spec, frame = _spec(), _frame(400, 7)
    frame.loc[100:199, ['uid', 'text', 'dur', 'follows']] = np.nan  # a stretch of missing
    fitter = VocabFitter(spec)
    for i in range(len(frame)):
        fitter.update(frame.iloc[i:i + 1].reset_index(drop=True))
    _assert_same(Vocab.fit(frame, spec), fitter.finish())


def test_weighted_rows_count_as_repeated_rows():
    spec, frame = _spec(), _frame(500, 3)
    w = np.random.default_rng(0).integers(0, 4, len(frame))
    fitter = VocabFitter(spec)
    fitter.update(frame, weights=w)
    _assert_same(Vocab.fit(frame.loc[frame.index.repeat(w)].reset_index(drop=True), spec),
                 fitter.finish())


def test_quantiles_of_counted_values_are_numpys():
    rng = np.random.default_rng(0)
    for _ in range(50):
        values = np.unique(rng.normal(size=int(rng.integers(1, 30))).round(1))
        counts = rng.integers(1, 6, len(values))
        qs = np.linspace(0, 1, int(rng.integers(2, 25)) + 1)[1:-1]
        want = np.quantile(np.repeat(values, counts), qs)
        np.testing.assert_array_equal(_quantiles(values, counts, qs), want)


# ---- streaming ingestion: the whole cache --------------------------------------------------

def _cache_bytes(root):
    from pathlib import Path
    (folder,) = [p for p in Path(root).iterdir() if not p.name.startswith('.')]
    return {p.relative_to(folder).as_posix(): p.read_bytes()
            for p in sorted(folder.rglob('*')) if p.is_file() and p.name != 'manifest.json'}


@pytest.mark.parametrize('over', [{}, dict(max_rows=150, group_column='user_id,tab')])
def test_streaming_in_tiny_chunks_writes_the_same_cache_as_one_chunk(tmp_path, monkeypatch,
                                                                     over):
    """Chunks of 29 rows, and the field-count scanner's blocks of 61 bytes, cut through quoted
    fields of the feature files ('"[100,1k)"', '"12,37"'): every cached byte is the same."""
    from conftest import kuairand_config, write_kuairand_dir
    from pepnet_jax.data import errors, pipeline
    data = write_kuairand_dir(tmp_path / 'kuairand', n_train=400, n_test=300)
    cfg = lambda d: kuairand_config(data, cache_dir=str(tmp_path / d), crosses=('tab,video_id',),
                                    **over)
    pipeline.load_datasets(cfg('whole'), tmp_path / 'w1')
    monkeypatch.setattr(errors, 'CHUNK_ROWS', 29)
    monkeypatch.setattr(errors, 'SCAN_BLOCK', 61)
    pipeline.load_datasets(cfg('chunks'), tmp_path / 'w2')
    whole, chunks = _cache_bytes(tmp_path / 'whole'), _cache_bytes(tmp_path / 'chunks')
    assert whole.keys() == chunks.keys() and any(k.endswith('sparse.npy') for k in whole)
    for name in whole:
        assert whole[name] == chunks[name], name


def test_side_tables_fitted_once_per_entity_equal_joining_every_row(tmp_path, monkeypatch):
    """The streaming build fits the user / video features on the feature tables weighted by
    how often the training rows name each id, and gathers their ids once encoded; the cache
    is byte for byte the one of joining the tables into every row (read_splits)."""
    import dataclasses
    from conftest import kuairand_config, write_kuairand_dir
    from pepnet_jax.data import formats, pipeline
    data = write_kuairand_dir(tmp_path / 'kuairand', n_train=500, n_test=300)
    cfg = lambda d: kuairand_config(data, cache_dir=str(tmp_path / d),
                                    crosses=('tab,video_id', 'tab,author_id'),
                                    group_column='user_id,tab')
    pipeline.load_datasets(cfg('streamed'), tmp_path / 'w1')
    fmt = formats.get('kuairand')
    monkeypatch.setitem(formats._REGISTRY, 'kuairand',
                        dataclasses.replace(fmt, read_chunks=None, side_tables=None))
    pipeline.load_datasets(cfg('joined'), tmp_path / 'w2')
    a, b = _cache_bytes(tmp_path / 'streamed'), _cache_bytes(tmp_path / 'joined')
    assert a.keys() == b.keys()
    for name in a:
        assert a[name] == b[name], name


def test_key_index_direct_and_sorted_agree():
    from pepnet_jax.data.sidetables import KeyIndex
    rng = np.random.default_rng(0)
    for ids in (rng.permutation(500), rng.choice(10**9, 300, replace=False),
                np.array([5, -3, 7])):
        want = np.concatenate([ids[::3], [-1, 10**9 + 5, 499, 501]])
        got = KeyIndex(ids).rows(want)
        expect = np.array([int(np.flatnonzero(ids == w)[0]) if w in ids else -1 for w in want])
        np.testing.assert_array_equal(got, expect)
    assert KeyIndex(np.arange(100)).direct is not None
    assert KeyIndex(np.array([0, 10**9])).direct is None
