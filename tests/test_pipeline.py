"""Batches: format, determinism per (seed, epoch), exact resume, padded eval, predict encoding."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from conftest import kuairand_config, make_log
from pepnet_jax.data import kuairand, pipeline
from pepnet_jax.data.errors import DataError
from pepnet_jax.data.pipeline import Dataset, column_layout
from pepnet_jax.features import FeatureSpec, DataSpec


def _toy(n: int = 103) -> Dataset:
    """A dataset whose 'group' column is the row index, so coverage is checkable."""
    spec = DataSpec(format='kuairand', features=(FeatureSpec('a', 'a', 'categorical'),
                                                 FeatureSpec('t', 't', 'multi', max_len=2),
                                                 FeatureSpec('d', 'd', 'dense')),
                    tasks=('x', 'y'), domain_column='tab', domains=(0, 1), group_column='g')
    rows = np.arange(n)
    labels = np.stack([rows % 2, np.where(rows % 5 == 0, -1, 1)], 1).astype(np.int8)
    cols = {'sparse': np.stack([rows + 2, rows + 3, rows * 0], 1).astype(np.int32),
            'dense': (rows[:, None] / 10).astype(np.float32), 'labels': labels,
            'domain': (rows % 2).astype(np.int32), 'group': rows.astype(np.int64)}
    return Dataset.from_columns(cols, spec)


def test_layout_and_batch_format():
    ds = _toy()
    b = next(ds.train_batches(16, seed=0, epoch=0))
    assert set(b) == {'features', 'labels', 'label_mask', 'domain', 'group', 'weight'}
    f = b['features']
    assert f['a'].dtype == np.int32 and f['a'].shape == (16,)
    assert f['t'].dtype == np.int32 and f['t'].shape == (16, 2)
    assert f['d'].dtype == np.float32 and f['d'].shape == (16,)
    assert b['labels'].dtype == np.float32 and b['labels'].shape == (16, 2)
    assert b['group'].dtype == np.int64 and b['domain'].dtype == np.int32
    r = b['group']  # == row index
    np.testing.assert_array_equal(f['a'], r + 2)
    np.testing.assert_array_equal(f['t'][:, 0], r + 3)
    np.testing.assert_allclose(f['d'], r / 10, rtol=1e-6)
    np.testing.assert_array_equal(b['labels'][:, 0], r % 2)
    np.testing.assert_array_equal(b['label_mask'][:, 1], (r % 5 != 0))
    np.testing.assert_array_equal(b['labels'][:, 1], (r % 5 != 0))  # missing label -> 0
    assert (b['weight'] == 1).all()


def test_train_batches_are_deterministic_per_seed_and_epoch():
    ds = _toy()
    g = lambda s, e: np.concatenate([b['group'] for b in ds.train_batches(10, s, e)])
    a = g(0, 0)
    np.testing.assert_array_equal(a, g(0, 0))
    assert not np.array_equal(a, g(0, 1)) and not np.array_equal(a, g(1, 0))
    assert len(a) == 100 and len(np.unique(a)) == 100  # drop_remainder, no repeats
    assert ds.num_batches(10, True) == 10 and ds.num_batches(10, False) == 11


def test_start_batch_resumes_exactly():
    ds = _toy()
    full = [b['group'] for b in ds.train_batches(8, 3, 2)]
    resumed = [b['group'] for b in ds.train_batches(8, 3, 2, start_batch=5)]
    assert len(resumed) == len(full) - 5
    for x, y in zip(full[5:], resumed):
        np.testing.assert_array_equal(x, y)


def test_eval_batches_cover_every_row_once_with_zero_weight_padding():
    ds = _toy(103)
    batches = list(ds.eval_batches(25))
    assert len(batches) == 5 and all(b['weight'].shape == (25,) for b in batches)
    w = np.concatenate([b['weight'] for b in batches])
    g = np.concatenate([b['group'] for b in batches])
    np.testing.assert_array_equal(g[w == 1], np.arange(103))  # in order, each once
    assert w.sum() == 103 and (w[103:] == 0).all()
    last = batches[-1]
    assert (last['label_mask'][3:] == 0).all() and (last['features']['t'][3:] == 0).all()


def test_prefetch_gives_the_same_batches_and_stops_cleanly():
    ds = _toy()
    a = [b['group'] for b in ds.train_batches(8, 0, 0)]
    b = [x['group'] for x in ds.train_batches(8, 0, 0, prefetch=3)]
    assert len(a) == len(b)
    for x, y in zip(a, b):
        np.testing.assert_array_equal(x, y)
    it = ds.eval_batches(8, prefetch=2)
    next(it)
    it.close()  # an abandoned prefetcher must not hang


def test_load_datasets_end_to_end(kuairand_dir, tmp_path):
    cfg = kuairand_config(kuairand_dir)
    ds, infos, spec, vocab = pipeline.load_datasets(cfg, tmp_path / 'w')
    assert list(ds) == ['train', 'valid', 'test']
    assert [i.name for i in infos] == [f['name'] for f in cfg.features]
    raw = pd.read_csv(kuairand_dir / 'log_standard_4_08_to_4_21_pure.csv')
    raw = raw[raw.tab.isin([0, 1, 2, 4])]
    assert ds['train'].num_rows == len(raw)
    b = next(ds['train'].eval_batches(len(raw)))
    np.testing.assert_array_equal(b['group'], raw.user_id)
    np.testing.assert_array_equal(b['domain'], [(0, 1, 2, 4).index(t) for t in raw.tab])
    np.testing.assert_array_equal(b['labels'], raw[list(spec.tasks)].to_numpy(np.float32))
    for info in infos:  # every id is inside the embedding table the model will build
        x = b['features'][info.name]
        if info.kind == 'dense':
            assert x.dtype == np.float32
        else:
            assert x.min() >= 0 and x.max() < info.vocab_size, info
            assert x.shape == ((len(raw), info.max_len) if info.kind == 'multi' else (len(raw),))
    # only the 'tab' feature is a gate-only input
    assert [i.name for i in infos if not i.shared] == ['tab']


def test_predict_encoding_matches_the_training_encoding(kuairand_dir, tmp_path):
    cfg = kuairand_config(kuairand_dir)
    ds, infos, spec, _ = pipeline.load_datasets(cfg, tmp_path / 'w')
    raw = pd.read_csv(kuairand_dir / 'log_standard_4_22_to_5_08_pure.csv')
    valid = raw[raw.tab.isin([0, 1, 2, 4]) & raw.date.between(20220422, 20220428)]
    path = tmp_path / 'score_me.csv'
    valid.to_csv(path, index=False)
    frame, ids = kuairand.read_log_file(path, kuairand_dir, spec)
    vocab = pipeline.load_vocab(tmp_path / 'w')
    pred = Dataset.from_columns(pipeline.encode_frame(frame, spec, vocab), spec)
    a = next(ds['valid'].eval_batches(len(valid)))
    b = next(pred.eval_batches(len(valid)))
    for name in a['features']:
        np.testing.assert_array_equal(a['features'][name], b['features'][name], err_msg=name)
    np.testing.assert_array_equal(ids['video_id'], valid.video_id)
    assert (b['features']['video_id'][valid.video_id.to_numpy() == 9_000_001] == 1).all()


def test_encode_frame_rejects_an_unknown_domain(kuairand_dir, tmp_path):
    cfg = kuairand_config(kuairand_dir)
    _, _, spec, vocab = pipeline.load_datasets(cfg, tmp_path / 'w')
    frame = make_log(5, 20220501, 20220501, seed=1, tabs=(0,))
    frame.loc[3, 'tab'] = 6
    for c in ('user_active_degree', 'tag'):
        frame[c] = None
    for f in spec.features:
        if f.column not in frame:
            frame[f.column] = np.nan
    with pytest.raises(DataError, match=r"column 'tab', row 4: domain value 6 is not in "
                                        r"config.data.domains \[0, 1, 2, 4\]"):
        pipeline.encode_frame(frame, spec, vocab)


def test_column_layout_packs_sparse_and_dense():
    spec = DataSpec(format='kuairand', features=(FeatureSpec('a', 'a', 'categorical'),
                                                 FeatureSpec('d', 'd', 'dense'),
                                                 FeatureSpec('t', 't', 'multi', max_len=3),
                                                 FeatureSpec('b', 'b', 'bucket', num_buckets=4)),
                    tasks=('x',), domain_column='tab', domains=(0,), group_column='g')
    assert column_layout(spec) == {'a': ('sparse', 0, 1), 'd': ('dense', 0, 1),
                                   't': ('sparse', 1, 3), 'b': ('sparse', 4, 1)}


def test_closing_a_prefetcher_ends_its_producer_first():
    """The trainer's batches are made (and put on the device) in the prefetch thread: leaving
    the loop must end that thread before the process may exit."""
    closed = []

    def gen():
        try:
            yield from range(100)
        finally:
            closed.append(True)

    it = pipeline.prefetch_iter(gen(), 2)
    assert next(it) == 0
    it.close()
    assert closed == [True]


def test_closing_a_prefetcher_with_a_full_queue_does_not_wait_out_the_producers_poll(monkeypatch):
    """The consumer empties the queue on close, so a producer blocked on it returns at once
    (the training loop and the bench close one every run; a 0.1 s poll cost the bench's
    12-step host-fed figure 8 ms a step)."""
    import time
    monkeypatch.setattr(pipeline, 'PUT_POLL_SECONDS', 60.0)
    made = []

    def gen():
        for i in range(100):
            made.append(i)
            yield i

    it = pipeline.prefetch_iter(gen(), 2)
    assert next(it) == 0
    while len(made) < 4:  # 1 taken, 2 queued, the 4th waiting to be put
        time.sleep(0.01)
    t0 = time.perf_counter()
    it.close()
    assert time.perf_counter() - t0 < 30.0  # without the drain: the 60 s poll
    assert len(made) <= 6
