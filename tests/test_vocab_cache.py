"""Vocabularies (train-only fit, OOV, no aliasing, save/load) and the columnar cache."""

from __future__ import annotations

import os

import ml_collections
import numpy as np
import pandas as pd
import pytest

from conftest import KUAIRAND_SHARED, ReadCounter, kuairand_config, require
from pepnet_jax.data import cache, pipeline
from pepnet_jax.data.vocab import Vocab
from pepnet_jax.features import DataSpec, spec_from_config


def _spec(*features: dict) -> DataSpec:
    return spec_from_config(ml_collections.ConfigDict(dict(
        format='kuairand', features=list(features), tasks=('is_click',), tabs=(0, 1))))


def test_train_only_fit_maps_test_only_ids_to_oov_and_keeps_train_ids():
    spec = _spec(dict(name='vid', column='vid', kind='categorical'))
    train = pd.DataFrame({'vid': [10, 30, 30, 50, 70]})
    v = Vocab.fit(train, spec)
    assert v.vocab_size('vid') == 2 + 4
    ids_train = v.encode_feature('vid', train['vid'])
    np.testing.assert_array_equal(ids_train, [2, 3, 3, 4, 5])  # sorted keys -> 2..
    # 40 sits between 30 and 50, 5 below, 99 above every key: none may alias a real id
    test = pd.Series([30, 40, 5, 99, 70, np.nan])
    np.testing.assert_array_equal(v.encode_feature('vid', test), [3, 1, 1, 1, 5, 1])


def test_string_keys_min_count_max_vocab_and_missing():
    spec = _spec(dict(name='s', column='s', kind='categorical', min_count=2),
                 dict(name='m', column='s', kind='categorical', max_vocab=2))
    train = pd.DataFrame({'s': ['a', 'b', 'b', 'c', 'c', 'c', None, 'd']})
    v = Vocab.fit(train, spec)
    np.testing.assert_array_equal(v.encode_feature('s', train['s']), [1, 2, 2, 3, 3, 3, 1, 1])
    # max_vocab keeps the two most frequent (c: 3, b: 2)
    np.testing.assert_array_equal(v.encode_feature('m', pd.Series(['c', 'b', 'a', 'zz'])), [3, 2, 1, 1])


def test_key_type_is_coerced_at_encode_time():
    """A column that parses as text in one file and as numbers in another maps the same."""
    spec = _spec(dict(name='x', column='x', kind='categorical'))
    v = Vocab.fit(pd.DataFrame({'x': [3.0, 7.0, np.nan]}), spec)
    assert v.entries['x']['key_type'] == 'int'
    np.testing.assert_array_equal(v.encode_feature('x', pd.Series(['7', '3', 'abc', '3.5'])),
                                  [3, 2, 1, 1])
    v2 = Vocab.fit(pd.DataFrame({'x': ['12', '7', 'x']}), spec)
    np.testing.assert_array_equal(v2.encode_feature('x', pd.Series([7, 12.0, 8])), [3, 2, 1])


def test_hash_buckets_are_deterministic_and_in_range():
    spec = _spec(dict(name='h', column='h', kind='categorical', hash_buckets=50))
    v = Vocab.fit(pd.DataFrame({'h': np.arange(1000)}), spec)
    a = v.encode_feature('h', pd.Series(np.arange(5000)))
    assert v.vocab_size('h') == 52 and a.min() >= 2 and a.max() <= 51
    np.testing.assert_array_equal(a, v.encode_feature('h', pd.Series(np.arange(5000))))
    assert len(np.unique(a)) > 40  # spread over the buckets
    assert v.encode_feature('h', pd.Series([np.nan]))[0] == 1


def test_multi_pads_truncates_and_never_leaves_an_empty_list():
    spec = _spec(dict(name='tag', column='tag', kind='multi', max_len=2, sep=','))
    train = pd.DataFrame({'tag': ['20,43', '7', '20', None, '43,7,9']})
    v = Vocab.fit(train, spec)
    keys = list(v.entries['tag']['keys'])
    assert keys == sorted(['20', '43', '7', '9'])
    out = v.encode_feature('tag', pd.Series(['20,43', '7', None, '43,7,9', '99,20', ' 7 , 20 ']))
    i = {k: 2 + keys.index(k) for k in keys}
    np.testing.assert_array_equal(out, [[i['20'], i['43']], [i['7'], 0], [1, 0],
                                        [i['43'], i['7']], [1, i['20']], [i['7'], i['20']]])
    assert out.dtype == np.int32 and (out[:, 0] != 0).all()


def test_bucket_and_dense_statistics_come_from_train():
    spec = _spec(dict(name='b', column='x', kind='bucket', num_buckets=4),
                 dict(name='d', column='x', kind='dense', transform='log1p'))
    x = np.arange(1, 101, dtype=float)
    v = Vocab.fit(pd.DataFrame({'x': x}), spec)
    b = v.encode_feature('b', pd.Series(x))
    assert v.vocab_size('b') == 2 + 4
    np.testing.assert_array_equal(np.bincount(b), [0, 0, 25, 25, 25, 25])
    np.testing.assert_array_equal(v.encode_feature('b', pd.Series([-5, 1e9, np.nan])), [2, 5, 1])
    d = v.encode_feature('d', pd.Series(x))
    assert d.dtype == np.float32 and abs(d.mean()) < 1e-5 and abs(d.std() - 1) < 1e-4
    test = v.encode_feature('d', pd.Series([np.nan, 1e6]))
    assert test[0] == 0.0 and test[1] > 3  # missing -> train mean; a big value stays big


def test_save_load_round_trip_encodes_identically(tmp_path):
    spec = _spec(dict(name='s', column='s', kind='categorical'),
                 dict(name='t', column='t', kind='multi', max_len=3),
                 dict(name='b', column='n', kind='bucket', num_buckets=3),
                 dict(name='d', column='n', kind='dense'))
    f = pd.DataFrame({'s': ['x', 'y', '[100,1k)'], 't': ['1,2', '3', None], 'n': [1.0, 5.0, 9.0]})
    v = Vocab.fit(f, spec)
    v.save(tmp_path / 'vocab')
    w = Vocab.load(tmp_path / 'vocab')
    g = pd.DataFrame({'s': ['[100,1k)', 'q'], 't': ['3,1', '8'], 'n': [4.0, np.nan]})
    for feat in spec.features:
        np.testing.assert_array_equal(v.encode_feature(feat.name, g[feat.column]),
                                      w.encode_feature(feat.name, g[feat.column]))
    assert w.feature_infos() == v.feature_infos()
    other = _spec(dict(name='s', column='s', kind='categorical', min_count=5))
    with pytest.raises(ValueError, match='different config.data.features'):
        w.check_spec(other)


def test_million_rows_encode_one_to_one():
    """A million rows with large raw ids: every distinct raw id gets its own id."""
    spec = _spec(dict(name='u', column='u', kind='categorical'),
                 dict(name='s', column='s', kind='categorical'))
    rng = np.random.default_rng(0)
    f = pd.DataFrame({'u': rng.integers(0, 30_000_000, 1_000_000),
                      's': pd.Categorical(rng.choice(['a', 'b', '[1,10)'], 1_000_000))})
    v = Vocab.fit(f, spec)
    u = v.encode_feature('u', f['u'])
    s = v.encode_feature('s', f['s'])
    assert u.min() >= 2 and s.min() >= 2
    pairs = pd.DataFrame({'raw': f['u'].to_numpy(), 'id': u}).drop_duplicates()
    assert len(pairs) == f['u'].nunique() == pairs['id'].nunique()


# ------------------------------------------------------------------------------------- cache


def test_real_missing_codes_map_to_oov(kuairand_dir, tmp_path):
    require(KUAIRAND_SHARED / 'user_features_pure.csv')
    ds, infos, spec, vocab = pipeline.load_datasets(kuairand_config(kuairand_dir), tmp_path / 'w')
    frame = pd.DataFrame({'is_live_streamer': [1.0, np.nan], 'user_active_degree': ['full_active', None]})
    assert vocab.encode_feature('is_live_streamer', frame['is_live_streamer']).tolist() == [2, 1]
    assert vocab.encode_feature('user_active_degree', frame['user_active_degree'])[1] == 1


_Counter = ReadCounter


def test_cache_hit_skips_csv_and_rebuilds_on_spec_or_file_change(kuairand_dir, tmp_path, monkeypatch):
    counter = _Counter(monkeypatch)
    cfg = kuairand_config(kuairand_dir)
    work = tmp_path / 'w'
    ds1, infos1, _, _ = pipeline.load_datasets(cfg, work)
    assert counter.calls == 1
    b1 = next(ds1['train'].train_batches(32, 0, 0))
    ds2, infos2, _, _ = pipeline.load_datasets(cfg, work)
    assert counter.calls == 1  # hit: no CSV parsing
    assert infos1 == infos2
    b2 = next(ds2['train'].train_batches(32, 0, 0))
    for k in b1['features']:
        np.testing.assert_array_equal(b1['features'][k], b2['features'][k])
    assert isinstance(cache.load(work / 'cache', os.listdir(work / 'cache')[0])[0]['train']['sparse'],
                      np.memmap)
    # changed spec -> new key -> rebuild
    cfg2 = kuairand_config(kuairand_dir, features=cfg.features[:-1])
    pipeline.load_datasets(cfg2, work)
    assert counter.calls == 2
    # changed input file -> new key -> rebuild
    p = kuairand_dir / 'log_standard_4_08_to_4_21_pure.csv'
    st = p.stat()
    os.utime(p, ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))
    pipeline.load_datasets(cfg, work)
    assert counter.calls == 3
    assert len([d for d in os.listdir(work / 'cache') if not d.startswith('.')]) == 3


def test_interrupted_build_leaves_no_half_cache(kuairand_dir, tmp_path, monkeypatch):
    cfg = kuairand_config(kuairand_dir, cache_dir=str(tmp_path / 'c'))
    real_append, n = cache.CacheWriter.append, [0]

    def failing_append(self, *a, **k):
        n[0] += 1
        if n[0] == 2:  # a chunk or two already written
            raise KeyboardInterrupt('simulated interrupt')
        return real_append(self, *a, **k)
    monkeypatch.setattr(cache.CacheWriter, 'append', failing_append)
    with pytest.raises(KeyboardInterrupt):
        pipeline.load_datasets(cfg, tmp_path / 'w')
    assert os.listdir(tmp_path / 'c') == []
    monkeypatch.setattr(cache.CacheWriter, 'append', real_append)
    ds, *_ = pipeline.load_datasets(cfg, tmp_path / 'w')
    assert ds['train'].num_rows > 0 and len(os.listdir(tmp_path / 'c')) == 1


def test_vocab_is_saved_into_workdir_for_predict(kuairand_dir, tmp_path):
    _, infos, spec, vocab = pipeline.load_datasets(kuairand_config(kuairand_dir), tmp_path / 'w')
    loaded = pipeline.load_vocab(tmp_path / 'w')
    assert loaded.feature_infos() == infos
    loaded.check_spec(spec)
    assert (tmp_path / 'w' / 'vocab' / 'vocab.json').is_file()


def test_cache_writer_takes_empty_chunks_and_zero_width_columns(tmp_path):
    """An empty chunk (a split whose rows all fell on another date) and a column of width 0
    (a feature group with no members) are written as numpy would save them."""
    spec = _spec(dict(name='vid', column='vid', kind='categorical'))
    vocab = Vocab.fit(pd.DataFrame({'vid': [1, 2]}), spec)
    chunks = [dict(a=np.zeros((0, 3), np.int32), b=np.zeros((0, 0), np.float32)),
              dict(a=np.arange(6, dtype=np.int32).reshape(2, 3), b=np.zeros((2, 0), np.float32)),
              dict(a=np.zeros((0, 3), np.int32), b=np.zeros((0, 0), np.float32))]
    with cache.CacheWriter(tmp_path, 'k') as w:
        for c in chunks:
            w.append('train', c)
        w.append('test', chunks[0])
        w.finish(vocab, {})
    splits, _, _ = cache.load(tmp_path, 'k')
    np.testing.assert_array_equal(splits['train']['a'], np.arange(6).reshape(2, 3))
    assert splits['train']['b'].shape == (2, 0) and splits['test']['a'].shape == (0, 3)
