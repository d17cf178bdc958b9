"""Generated data folders are reused only by configs that would generate the same data, and
config.data.max_rows samples rows at random instead of taking the first (user-sorted) rows."""

from __future__ import annotations

import json

import numpy as np
import pytest

from conftest import kuairand_config
from pepnet_jax import configs
from pepnet_jax.data import kuairand, kuairand_synth, prepare
from pepnet_jax.data.errors import DataError
from pepnet_jax.data.resolve import resolve
from pepnet_jax.features import spec_from_config

GEN = dict(rows=3000, users=200, videos=120, authors=40, seed=0, random_rows=0)


def _config(folder, **over):
    c = configs.base_config()
    c.data.dir = str(folder)
    c.data.generate = dict(GEN, **{k: v for k, v in over.items() if k in GEN})
    if 'tabs' in over:
        c.data.tabs = over['tabs']
    return c


def _ensure(c, workdir):
    """What a run does at its entry (resolve) and then before reading (ensure_generated)."""
    return prepare.ensure_generated(resolve(c.data, workdir))


@pytest.fixture(scope='module')
def folder(tmp_path_factory):
    d = tmp_path_factory.mktemp('gen') / 'synth'
    _ensure(_config(d), str(d.parent))
    return d


def _meta(d):
    return json.loads((d / 'generator_meta.json').read_text())


def test_first_use_generates_and_records_every_argument(folder):
    args = _meta(folder)['args']
    assert args == {**GEN, 'tabs': [0, 1, 2, 4], 'version': 'pure',
                    'generator_version': kuairand_synth.GENERATOR_VERSION}
    assert (folder / 'log_standard_4_22_to_5_08_pure.csv').exists()


def test_same_config_and_narrower_tabs_reuse_the_folder(folder):
    before = (folder / 'log_standard_4_22_to_5_08_pure.csv').read_bytes()
    assert _ensure(_config(folder), '/nowhere') == str(folder)
    # experiments/narrow_settings.py: tabs=(1,) reads tab 1 of the same data, no error
    _ensure(_config(folder, tabs=(1,)), '/nowhere')
    assert (folder / 'log_standard_4_22_to_5_08_pure.csv').read_bytes() == before


def test_a_config_that_generates_other_data_is_a_clear_error(folder):
    with pytest.raises(DataError) as e:
        _ensure(_config(folder, users=300, authors=50), '/nowhere')
    msg = str(e.value)
    assert str(folder) in msg
    assert 'users: folder 200, config 300' in msg and 'authors: folder 40, config 50' in msg
    assert 'rows:' not in msg and 'seed:' not in msg  # only the fields that differ
    assert 'another folder' in msg and 'delete' in msg
    with pytest.raises(DataError, match=r'tabs: folder \[0, 1, 2, 4\], config \[0, 1, 2, 3, 4\]'):
        _ensure(_config(folder, tabs=(0, 1, 2, 3, 4)), '/nowhere')
    with pytest.raises(DataError, match='random_rows'):
        _ensure(_config(folder, random_rows=100), '/nowhere')


def test_older_or_unrecorded_folders_are_named_not_reused(tmp_path):
    d = tmp_path / 'old'
    _ensure(_config(d), str(tmp_path))
    meta = _meta(d)
    del meta['args']['generator_version']  # as version 1 wrote it
    (d / 'generator_meta.json').write_text(json.dumps(meta))
    with pytest.raises(DataError, match='generator_version: folder missing'):
        _ensure(_config(d), str(tmp_path))
    (d / 'generator_meta.json').unlink()  # older still, or an interrupted generation
    with pytest.raises(DataError, match='no generator_meta.json') as e:
        _ensure(_config(d), str(tmp_path))
    assert str(d) in str(e.value) and 'generate.rows=0' in str(e.value)
    # Real data (generate.rows == 0) is read as it is, never checked.
    real = _config(d)
    real.data.generate.rows = 0
    assert _ensure(real, str(tmp_path)) == str(d)


# ----------------------------------------------------------------------------- max_rows


def _read(d, **over):
    cfg = kuairand_config(d, **over)
    return kuairand.read_splits(cfg, spec_from_config(cfg))


def _keys(frame):
    """(user, date, hour, video) as one int: near-unique, file order up to the video."""
    f = {c: frame[c].to_numpy().astype(np.int64)
         for c in ('user_id', 'date', 'hourmin', 'video_id')}
    return ((f['user_id'] * 10**8 + f['date']) * 10**4 + f['hourmin']) * 10**4 + f['video_id']


def test_max_rows_is_a_seeded_sample_across_users(folder, monkeypatch):
    full = _read(folder)
    a = _read(folder, max_rows=150, seed=1)
    for name, f in a.items():
        assert len(f) == 150 < len(full[name])
        k = _keys(f)
        assert (np.diff(k // 10**4) >= 0).all()  # file order kept (logs: sorted by user, time)
        assert np.isin(k, _keys(full[name])).all()
        # The first 150 rows would hold ~15 users at the low end of the ids; a sample spans them.
        assert f['user_id'].nunique() > 60, name
        assert f['user_id'].max() - f['user_id'].min() > 0.8 * GEN['users'], name
    b = _read(folder, max_rows=150, seed=1)
    c = _read(folder, max_rows=150, seed=2)
    assert all((_keys(a[n]) == _keys(b[n])).all() for n in a)  # deterministic for a seed
    assert not (_keys(a['train']) == _keys(c['train'])).all()  # another seed, another sample
    # The same sample whatever the chunk size (the reader keeps the smallest keys as it goes).
    chunks = kuairand.read_csv_chunks
    monkeypatch.setattr(kuairand, 'read_csv_chunks',
                        lambda *args, **kw: chunks(*args, **dict(kw, chunk_rows=97)))
    small = _read(folder, max_rows=150, seed=1)
    assert all((_keys(a[n]) == _keys(small[n])).all() for n in a)
