"""Ali-CCP samples through the same data layer: proof that nothing is KuaiRand-shaped."""

from __future__ import annotations

import shutil

import numpy as np
import pandas as pd
import pytest

from conftest import ALICCP_SHARED, aliccp_config, require
from pepnet_jax.data import aliccp, pipeline
from pepnet_jax.data.errors import DataError
from pepnet_jax.features import spec_from_config


_cfg = aliccp_config


@pytest.fixture
def sample_dir(tmp_path):
    """A writable copy of the three shared sample files."""
    src = require(ALICCP_SHARED)
    d = tmp_path / 'aliccp'
    shutil.copytree(src, d)
    for p in d.iterdir():
        p.chmod(0o644)
    return d


def test_reads_the_shared_samples():
    d = require(ALICCP_SHARED)
    cfg = _cfg(d)
    frames = aliccp.read_splits(cfg, spec_from_config(cfg))
    assert {n: len(f) for n, f in frames.items()} == {'train': 100, 'valid': 50, 'test': 50}
    raw = pd.read_csv(d / 'ali_ccp_train_sample.csv')
    np.testing.assert_array_equal(frames['train']['205'], raw['205'])
    assert frames['train']['click'].sum() == 7 and frames['train']['purchase'].sum() == 1


def test_load_datasets_on_a_multi_domain_copy(sample_dir, tmp_path):
    p = sample_dir / 'ali_ccp_train_sample.csv'
    f = pd.read_csv(p)
    f.loc[10:19, '301'] = 3  # like Scenario-Wise-Rec's edited copy: several domains
    f.loc[20:24, '301'] = 2
    f.to_csv(p, index=False)
    ds, infos, spec, vocab = pipeline.load_datasets(_cfg(sample_dir), tmp_path / 'w')
    b = next(ds['train'].eval_batches(100))
    np.testing.assert_array_equal(b['domain'], [(1, 2, 3).index(x) for x in f['301']])
    np.testing.assert_array_equal(b['labels'], f[['click', 'purchase']].to_numpy(np.float32))
    assert (b['group'] == 1).all()
    assert spec.domain_column == '301' and {i.name for i in infos if not i.shared} == {'domain'}
    dense = b['features']['w_508']
    assert dense.dtype == np.float32 and abs(dense.mean()) < 1e-5  # standardized on train
    # an item only in valid maps to OOV, an item seen in train keeps its id
    valid = next(ds['valid'].eval_batches(50))['features']['item_id']
    vraw = pd.read_csv(sample_dir / 'ali_ccp_val_sample.csv')['205'].to_numpy()
    seen = np.isin(vraw, f['205'])
    assert (valid[~seen] == 1).all() and (valid[seen] >= 2).all()


def test_domain_filter_and_empty_split(sample_dir):
    cfg = _cfg(sample_dir, tabs=(2,))
    with pytest.raises(DataError, match=r"split 'train' is empty: no rows of .*ali_ccp_train_sample.csv "
                                        r"have '301' in \[2\]"):
        aliccp.read_splits(cfg, spec_from_config(cfg))


def test_errors_name_file_column_row(sample_dir):
    cfg = _cfg(sample_dir)
    spec = spec_from_config(cfg)
    p = sample_dir / 'ali_ccp_val_sample.csv'
    f = pd.read_csv(p)
    f.loc[6, 'purchase'] = 3
    f.to_csv(p, index=False)
    with pytest.raises(DataError, match=r"val_sample.csv: column 'purchase', row 7 \(line 8\): "
                                        r"label 3 is not 0 or 1"):
        aliccp.read_splits(cfg, spec)
    f.loc[6, 'purchase'] = 0
    f.loc[2, '301'] = 9
    f.to_csv(p, index=False)
    with pytest.raises(DataError, match=r"column '301', row 3 \(line 4\): domain value 9"):
        aliccp.read_splits(cfg, spec)
    f.drop(columns=['D853']).to_csv(p, index=False)
    with pytest.raises(DataError, match=r"val_sample.csv: column 'D853' \(needed by "
                                        r"config.data.features\[30\]"):
        aliccp.read_splits(cfg, spec)
    p.unlink()
    with pytest.raises(DataError, match=r"ali_ccp_val.csv.*ali_ccp_train_sample.csv"):
        aliccp.read_splits(cfg, spec)
