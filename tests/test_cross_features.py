"""Cross features (kind='cross'): the spec, one id per value combination, and the data pipeline."""

from __future__ import annotations

import dataclasses
import time

import ml_collections
import numpy as np
import pandas as pd
import pytest

from conftest import kuairand_config
from pepnet_jax.data import kuairand, pipeline
from pepnet_jax.data.kuairand import kuairand_features
from pepnet_jax.data.vocab import Vocab
from pepnet_jax.features import FeatureSpec, OOV_ID, spec_from_config


def _spec(*features: dict):
    return spec_from_config(ml_collections.ConfigDict(dict(
        format='kuairand', features=list(features), tasks=('is_click',), tabs=(0, 1))))


CROSS = dict(name='tab_x_video_id', kind='cross', column='tab,video_id')
TRAIN = pd.DataFrame({'tab': [0, 0, 1, 1, 0, 1, 0],
                      'video_id': [5, 6, 5, 5, np.nan, 7, 6]})


# ----------------------------------------------------------------------------------- spec

def test_spec_syntax_columns_and_reader_view():
    a = _spec(CROSS).feature('tab_x_video_id')
    b = _spec(dict(CROSS, column=[' tab', 'video_id'])).feature('tab_x_video_id')
    assert a == b and a.column == 'tab,video_id' and a.columns == ('tab', 'video_id')
    spec = _spec(dict(name='user_id', kind='categorical'), CROSS,
                 dict(name='u_x_v', kind='cross', column='user_id,video_id,tab', hash_buckets=64))
    assert spec.feature_columns == ('user_id', 'tab', 'video_id')
    # The readers get plain categoricals on every part; each feature keeps its index.
    view = spec.reader_spec()
    assert [(f.name, f.column, f.kind) for f in view.features] == [
        ('user_id', 'user_id', 'categorical'), ('tab_x_video_id', 'tab', 'categorical'),
        ('u_x_v', 'user_id', 'categorical'), ('tab_x_video_id', 'video_id', 'categorical'),
        ('u_x_v', 'video_id', 'categorical'), ('u_x_v', 'tab', 'categorical')]


def test_configs_without_crosses_keep_their_spec_and_cache_key():
    """No new FeatureSpec field: to_dict (the cache key, vocab.json) is what it was."""
    spec = spec_from_config(kuairand_config('/nowhere'))
    assert spec.reader_spec() is spec
    assert [fl.name for fl in dataclasses.fields(FeatureSpec)] == [
        'name', 'column', 'kind', 'max_len', 'sep', 'num_buckets', 'hash_buckets', 'min_count',
        'max_vocab', 'transform', 'shared']


@pytest.mark.parametrize('column, message', [
    (None, r'features\[0\].column must name the columns a cross combines'),
    ('tab', r'features\[0\].column=\'tab\': a cross needs two or more'),
    ('tab,,video_id', r'a cross needs two or more non-empty column names'),
    ('tab,tab', r'features\[0\].column=\'tab,tab\' names a column twice'),
    (['tab', 3], r'features\[0\].column must name the columns'),
])
def test_bad_cross_columns_are_named(column, message):
    cross = dict(name='c', kind='cross') if column is None else dict(name='c', kind='cross',
                                                                      column=column)
    with pytest.raises(ValueError, match=message):
        _spec(cross)


def test_data_crosses_add_named_crosses_to_the_preset():
    cfg = kuairand_config('/nowhere', features=[], groups={},
                          crosses=('tab,video_id', ['tab', 'author_id']))
    spec = spec_from_config(cfg)
    preset = spec_from_config(kuairand_config('/nowhere', features=[], groups={}))
    assert spec.features[:-2] == preset.features and spec.groups == preset.groups
    assert spec.features[-2:] == (
        FeatureSpec('tab_x_video_id', 'tab,video_id', 'cross'),
        FeatureSpec('tab_x_author_id', 'tab,author_id', 'cross'))
    with pytest.raises(ValueError, match=r"config.data.crosses\[1\]='tab': a cross needs"):
        spec_from_config(kuairand_config('/nowhere', crosses=('tab,video_id', 'tab')))
    with pytest.raises(ValueError, match=r"config.data.crosses\[1\] makes the feature "
                                         r"'tab_x_video_id', which duplicates "
                                         r"config.data.crosses\[0\]"):
        spec_from_config(kuairand_config('/nowhere', crosses=('tab,video_id', 'tab, video_id')))
    with pytest.raises(ValueError, match=r"crosses\[0\] makes the feature 'tab_x_video_id', "
                                         r"which duplicates config.data.features\[1\]"):
        spec_from_config(kuairand_config('/nowhere', crosses=('tab,video_id',),
                                         features=[dict(name='tab', kind='categorical'), CROSS]))
    with pytest.raises(ValueError, match=r'config.data.crosses must be a list'):
        spec_from_config(kuairand_config('/nowhere', crosses='tab,video_id'))


def test_cross_options_follow_the_categorical_rules():
    with pytest.raises(ValueError, match=r'features\[0\].max_len=2 only applies'):
        _spec(dict(CROSS, max_len=2))
    with pytest.raises(ValueError, match=r'features\[0\]: hash_buckets excludes'):
        _spec(dict(CROSS, hash_buckets=8, min_count=2))
    assert _spec(dict(CROSS, hash_buckets=8)).feature('tab_x_video_id').hash_buckets == 8


# ---------------------------------------------------------------------------------- vocab

def test_equal_pairs_share_an_id_and_different_pairs_do_not():
    v = Vocab.fit(TRAIN, _spec(CROSS))
    ids = v.encode_feature('tab_x_video_id', TRAIN)
    assert ids.dtype == np.int32
    # (0,5) (0,6) (1,5) (1,5) (0,nan) (1,7) (0,6): four pairs, sorted by (tab, video_id)
    np.testing.assert_array_equal(ids, [2, 3, 4, 4, OOV_ID, 5, 3])
    assert v.vocab_size('tab_x_video_id') == 2 + 4
    info = v.feature_infos()[0]
    assert (info.kind, info.vocab_size, info.max_len) == ('categorical', 6, 1)  # a plain id


def test_unseen_pair_and_any_missing_part_are_oov():
    v = Vocab.fit(TRAIN, _spec(CROSS))
    test = pd.DataFrame({'tab': [1, 0, 0, np.nan, 1, 3],
                         'video_id': [6, 7, 5, 5, np.nan, 5]})
    # (1,6) and (0,7): each part seen in train, the pair never was
    np.testing.assert_array_equal(v.encode_feature('tab_x_video_id', test),
                                  [OOV_ID, OOV_ID, 2, OOV_ID, OOV_ID, OOV_ID])


def test_ids_do_not_depend_on_the_frame_or_the_part_dtypes():
    """Chunks encode as the whole does, and '1' / 1.0 / 1 are the same part value."""
    v = Vocab.fit(TRAIN, _spec(CROSS))
    whole = v.encode_feature('tab_x_video_id', TRAIN)
    chunks = [v.encode_feature('tab_x_video_id', TRAIN.iloc[i:i + 3]) for i in range(0, 7, 3)]
    np.testing.assert_array_equal(np.concatenate(chunks), whole)
    as_text = pd.DataFrame({'tab': ['1', '0'], 'video_id': ['7', '5.0']})
    np.testing.assert_array_equal(v.encode_feature('tab_x_video_id', as_text), [5, 2])


def test_min_count_and_max_vocab_count_pairs():
    spec = _spec(dict(CROSS, name='m2', min_count=2), dict(CROSS, name='top1', max_vocab=1))
    v = Vocab.fit(TRAIN, spec)
    # (0,6) and (1,5) occur twice; of those max_vocab=1 keeps the smaller key on the tie
    np.testing.assert_array_equal(v.encode_feature('m2', TRAIN), [1, 2, 3, 3, 1, 1, 2])
    np.testing.assert_array_equal(v.encode_feature('top1', TRAIN), [1, 2, 1, 1, 1, 1, 2])
    assert v.entries['top1']['part_keys'][0].tolist() == [0]  # only values kept pairs use


def test_text_parts_and_three_way_crosses():
    spec = _spec(dict(name='c3', kind='cross', column='a,b,c'))
    train = pd.DataFrame({'a': ['x', 'y', 'x', 'x'], 'b': [1, 1, 2, 1], 'c': ['p', 'p', 'p', 'q']})
    v = Vocab.fit(train, spec)
    ids = v.encode_feature('c3', train)
    assert len(set(ids.tolist())) == 4 and ids.min() >= 2
    swapped = pd.DataFrame({'a': ['x', 'UNSEEN'], 'b': [1, 1], 'c': ['q', 'p']})
    np.testing.assert_array_equal(v.encode_feature('c3', swapped), [ids[3], OOV_ID])


def test_hashed_cross_is_deterministic_in_range_and_order_sensitive():
    spec = _spec(dict(CROSS, hash_buckets=1000), dict(CROSS, name='rev', column='video_id,tab',
                                                      hash_buckets=1000))
    v = Vocab.fit(TRAIN, spec)
    frame = pd.DataFrame({'tab': np.repeat([0, 1], 500), 'video_id': np.tile(np.arange(500), 2)})
    a = v.encode_feature('tab_x_video_id', frame)
    assert v.vocab_size('tab_x_video_id') == 1002 and a.min() >= 2 and a.max() <= 1001
    np.testing.assert_array_equal(a, v.encode_feature('tab_x_video_id', frame.astype(str)))
    assert len(set(a.tolist())) > 600  # 1000 pairs spread over the buckets
    assert (a != v.encode_feature('rev', frame)).mean() > 0.9  # (a, b) is not (b, a)
    assert v.encode_feature('tab_x_video_id', TRAIN)[4] == OOV_ID


def test_save_load_round_trip(tmp_path):
    spec = _spec(CROSS, dict(name='h', kind='cross', column='tab,video_id', hash_buckets=9),
                 dict(name='s', kind='categorical', column='video_id'))
    v = Vocab.fit(TRAIN, spec)
    v.save(tmp_path / 'vocab')
    w = Vocab.load(tmp_path / 'vocab')
    test = pd.DataFrame({'tab': [1, 0, 1, 0], 'video_id': [5, 6, 6, 99]})
    for f in spec.features:
        raw = test if f.kind == 'cross' else test[f.column]
        np.testing.assert_array_equal(v.encode_feature(f.name, raw),
                                      w.encode_feature(f.name, raw), err_msg=f.name)
    assert w.feature_infos() == v.feature_infos()


def test_a_million_rows_fit_and_encode_fast_and_one_to_one():
    rng = np.random.default_rng(0)
    n = 1_000_000
    frame = pd.DataFrame({'tab': rng.integers(0, 5, n), 'video_id': rng.integers(0, 2_000_000, n)})
    t0 = time.time()
    v = Vocab.fit(frame, _spec(CROSS))
    ids = v.encode_feature('tab_x_video_id', frame)
    assert time.time() - t0 < 10  # about 1 s: vectorised, no Python loop over rows
    pairs = pd.DataFrame({'t': frame.tab, 'v': frame.video_id, 'id': ids}).drop_duplicates()
    assert len(pairs) == pairs['id'].nunique() == v.vocab_size('tab_x_video_id') - 2
    assert ids.min() >= 2


# ------------------------------------------------------------------------------- pipeline

def test_load_datasets_reads_every_part_and_batches_carry_the_cross(kuairand_dir, tmp_path):
    """author_id and video_type come from the video file and are no feature of their own:
    the reader still fetches them, and the batch holds one int32 id per row."""
    feats = [f for f in kuairand_features() if f['name'] in ('user_id', 'video_id', 'tab')]
    feats += [dict(name='tab_x_author', kind='cross', column='tab,author_id'),
              dict(name='type_x_degree', kind='cross', column='video_type,user_active_degree')]
    cfg = kuairand_config(kuairand_dir, features=feats, groups={})  # {}: the preset's, trimmed
    ds, infos, spec, vocab = pipeline.load_datasets(cfg, tmp_path / 'w')
    assert {i.name: i.kind for i in infos}['tab_x_author'] == 'categorical'
    b = next(ds['train'].eval_batches(ds['train'].num_rows))
    frame = kuairand.read_splits(cfg, spec.reader_spec())['train']
    for name, (x, y) in (('tab_x_author', ('tab', 'author_id')),
                         ('type_x_degree', ('video_type', 'user_active_degree'))):
        ids = b['features'][name]
        assert ids.dtype == np.int32 and ids.shape == (len(frame),)
        missing = frame[x].isna().to_numpy() | frame[y].isna().to_numpy()
        assert (ids[missing] == OOV_ID).all()
        pairs = pd.DataFrame({'x': frame[x].astype(str).to_numpy()[~missing],
                              'y': frame[y].astype(str).to_numpy()[~missing],
                              'id': ids[~missing]}).drop_duplicates()
        assert len(pairs) == pairs['id'].nunique() > 1, name  # one id per pair
        assert ids.max() < vocab.vocab_size(name)
