"""Multi-host data shards: each host reads its own contiguous range of the training rows,
and one process emulating N shards builds exactly the global batches an N-host job feeds."""

from __future__ import annotations

import ml_collections
import numpy as np
import pytest

from pepnet_jax.training import cold_start, train
from pepnet_jax.data import pipeline
from pepnet_jax.features import OOV_ID


def _dataset(n=1000):
    spec = ml_collections.ConfigDict(dict(format='kuairand', tasks=('is_click',),
                                          domains=(0,), features=[dict(
                                              name='row', column='row', kind='dense')]))
    from pepnet_jax.features import spec_from_config
    s = spec_from_config(spec)
    cols = dict(sparse=np.zeros((n, 0), np.int32),
                dense=np.arange(n, dtype=np.float32)[:, None],
                labels=np.zeros((n, 1), np.int8), domain=np.zeros(n, np.int32),
                group=np.arange(n, dtype=np.int64))
    return pipeline.Dataset.from_columns(cols, s)


def _rows(batch):
    return batch['features']['row'].astype(int)


def test_each_shard_reads_only_its_range_and_the_global_batch_is_their_concatenation():
    ds = _dataset(1003)
    bounds = ds.shard_bounds(3)
    assert bounds == [0, 334, 668, 1003]
    assert ds.num_train_batches(30, 3) == 334 // 10
    whole = list(ds.train_batches(30, seed=5, epoch=2, shards=3))
    parts = [list(ds.train_batches(30, seed=5, epoch=2, shards=3, shard=k)) for k in range(3)]
    assert len(whole) == 33 and all(len(p) == 33 for p in parts)
    seen = [set() for _ in range(3)]
    for b, batch in enumerate(whole):
        rows = _rows(batch)
        np.testing.assert_array_equal(rows, np.concatenate([_rows(p[b]) for p in parts]))
        for k in range(3):
            mine = _rows(parts[k][b])
            assert ((mine >= bounds[k]) & (mine < bounds[k + 1])).all()
            assert not seen[k] & set(mine.tolist())  # no row twice in an epoch
            seen[k] |= set(mine.tolist())
    # deterministic, resumable from any batch, and another epoch is another order
    again = list(ds.train_batches(30, seed=5, epoch=2, shards=3, start_batch=7))
    np.testing.assert_array_equal(_rows(again[0]), _rows(whole[7]))
    other = next(ds.train_batches(30, seed=5, epoch=3, shards=3))
    assert not np.array_equal(_rows(other), _rows(whole[0]))
    # one shard is the unsharded order of before
    np.testing.assert_array_equal(_rows(next(ds.train_batches(30, seed=5, epoch=2))),
                                  np.sort(ds.epoch_permutation(5, 2)[:30]))
    with pytest.raises(ValueError, match='does not split into 4 equal shards'):
        ds.num_train_batches(30, 4)


def test_cold_rows_are_drawn_per_shard_the_same_on_a_host_and_in_emulation():
    feats = {'user_id': np.full(40, 7, np.int32), 'video_id': np.full(40, 9, np.int32)}
    ents, kinds = {'user': ['user_id'], 'video': ['video_id']}, {'user_id': 'categorical',
                                                                  'video_id': 'categorical'}
    whole = train.drop_cold_rows(feats, ents, kinds, 0.3, seed=1, step=4, shards=2,
                                 local_shard=None)
    host1 = train.drop_cold_rows({k: v[20:] for k, v in feats.items()}, ents, kinds, 0.3,
                                 seed=1, step=4, shards=2, local_shard=1)
    for k in feats:
        assert len(whole[k]) == 40 and len(host1[k]) == 20
        np.testing.assert_array_equal(whole[k][20:], host1[k])
    assert (whole['user_id'] == OOV_ID).any()
    # Each shard's rows take that shard's own draw.
    halves = [cold_start.drop_entities({k: v[a:a + 20] for k, v in feats.items()}, ents, kinds,
                                       0.3, seed=1, step=4, shard=s)
              for s, a in ((0, 0), (1, 20))]
    for k in feats:
        np.testing.assert_array_equal(whole[k], np.concatenate([h[k] for h in halves]))
    assert not np.array_equal(halves[0]['user_id'], halves[1]['user_id'])
    one = cold_start.drop_entities(feats, ents, kinds, 0.3, seed=1, step=4)
    assert np.array_equal(train.drop_cold_rows(feats, ents, kinds, 0.3, 1, 4, 1, None)['user_id'],
                          one['user_id'])


def test_shards_must_match_the_process_count_and_split_the_batch():
    from pepnet_jax import configs
    c = configs.base_config()
    assert train.data_shards(c) == 1
    c.data.shards = 4
    c.data.batch_size = 1024
    assert train.data_shards(c) == 4
    c.data.batch_size = 1023
    with pytest.raises(ValueError, match='does not split into 4 equal shards'):
        train.data_shards(c)


def test_a_multi_process_job_reads_one_shard_per_process_and_feeds_its_own_rows(monkeypatch):
    """Process 1 of 2 (jax's process count and index faked): one data shard per process,
    any other count refused with the whole message; a global batch is cut to this process's
    block of rows, a batch of its own shard ('local') is fed whole."""
    import re

    import jax
    from pepnet_jax import configs
    from pepnet_jax.training import steps
    monkeypatch.setattr(jax, 'process_count', lambda: 2)
    monkeypatch.setattr(jax, 'process_index', lambda: 1)
    c = configs.base_config()
    c.data.batch_size = 1024
    assert steps.data_shards(c) == 2  # 0: one per process
    c.data.shards = 2
    assert steps.data_shards(c) == 2
    c.data.shards = 4
    with pytest.raises(ValueError, match=re.escape(
            'config.data.shards=4: a job of 2 processes reads one data shard per process; '
            'set it to 0 (or the process count)')):
        steps.data_shards(c)
    batch = {'features': {'user_id': np.arange(8) + 10}, 'labels': np.arange(16).reshape(8, 2),
             'label_mask': np.ones((8, 2)), 'domain': np.arange(8) % 3,
             'weight': np.arange(8, dtype=np.float32), 'group': np.arange(8)}
    mine = steps.process_rows(batch)
    np.testing.assert_array_equal(mine['weight'], [4, 5, 6, 7])
    np.testing.assert_array_equal(mine['labels'], np.arange(8, 16).reshape(4, 2))
    np.testing.assert_array_equal(mine['features']['user_id'], [14, 15, 16, 17])
    monkeypatch.setattr(jax, 'process_index', lambda: 0)
    np.testing.assert_array_equal(steps.process_rows(batch)['weight'], [0, 1, 2, 3])
    monkeypatch.setattr(jax, 'process_index', lambda: 1)
    monkeypatch.setattr(steps.shard_lib, 'put_batch', lambda b, mesh: b)
    fed = steps.to_device(batch, None)
    assert sorted(fed) == sorted(steps.DEVICE_KEYS)
    np.testing.assert_array_equal(fed['domain'], [1, 2, 0, 1])
    np.testing.assert_array_equal(steps.to_device(batch, None, local=True)['weight'],
                                  np.arange(8))
