"""KuaiRand reader against the real Pure feature files and logs in the exact official format."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from conftest import (KUAIRAND_SHARED, LOG_COLUMNS, kuairand_config, make_log, require,
                      write_kuairand_dir)
from pepnet_jax.data import kuairand
from pepnet_jax.data.errors import DataError
from pepnet_jax.features import spec_from_config

pytestmark = pytest.mark.usefixtures('_shared')


@pytest.fixture
def _shared():
    require(KUAIRAND_SHARED / 'user_features_pure.csv')


def _rows(rows: list[dict], date: int = 20220410) -> pd.DataFrame:
    base = make_log(len(rows), date, date, seed=5)
    for i, r in enumerate(rows):
        for k, v in r.items():
            base.loc[i, k] = v
    return base[LOG_COLUMNS]


def _dir(tmp_path: Path, train: pd.DataFrame, test: pd.DataFrame | None = None,
         version: str = 'pure') -> Path:
    d = write_kuairand_dir(tmp_path / 'kr', version=version, n_train=5, n_test=5, real=True)
    train.to_csv(d / f'log_standard_4_08_to_4_21_{version}.csv', index=False)
    if test is not None:
        test.to_csv(d / f'log_standard_4_22_to_5_08_{version}.csv', index=False)
    return d


def _read(d: Path, **over):
    cfg = kuairand_config(d, **over)
    return kuairand.read_splits(cfg, spec_from_config(cfg))


def test_join_puts_known_user_and_video_features_on_their_rows(tmp_path):
    train = _rows([dict(user_id=0, video_id=5, tab=1), dict(user_id=1, video_id=7, tab=0),
                   dict(user_id=3120, video_id=70, tab=2), dict(user_id=4, video_id=9_000_001, tab=4),
                   dict(user_id=27194, video_id=4121, tab=1), dict(user_id=3, video_id=75, tab=1)])
    d = _dir(tmp_path, train, _rows([dict(tab=1)], date=20220423))
    f = _read(d, splits=dict(train=('20220408', '20220421'), test=('20220422', '20220508')))['train']
    assert f['user_id'].tolist() == [0, 1, 3120, 4, 27194, 3]  # file order kept
    # user 0: quoted bucket strings with commas survive intact
    assert f.loc[0, 'fans_user_num_range'] == '[100,1k)'
    assert f.loc[0, 'user_active_degree'] == 'full_active'
    assert f.loc[0, 'onehot_feat3'] == 949 and f.loc[0, 'is_live_streamer'] == 1
    assert f.loc[1, 'follow_user_num_range'] == '(250,500]'
    assert f.loc[4, 'register_days_range'] == '8-14'
    # -124 (missing code) and UNKNOWN become NaN; NaN in float-parsed onehot columns stays NaN
    assert np.isnan(f.loc[1, 'is_live_streamer'])
    assert pd.isna(f.loc[2, 'user_active_degree'])
    assert np.isnan(f.loc[3, 'onehot_feat4'])
    # video side: tag lists, NaN tag, UNKNOWN video_type, author
    assert f.loc[0, 'tag'] == '20,43' and f.loc[0, 'author_id'] == 8367059
    assert f.loc[2, 'tag'] == '12,54,60'
    assert pd.isna(f.loc[5, 'tag'])
    assert pd.isna(f.loc[4, 'video_type'])
    # a video absent from the video file gets missing features, not a neighbour's
    assert np.isnan(f.loc[3, 'author_id']) and pd.isna(f.loc[3, 'tag'])


def test_splits_select_dates_and_tabs_and_keep_order(kuairand_dir):
    frames = _read(kuairand_dir)
    assert list(frames) == ['train', 'valid', 'test']
    raw_train = pd.read_csv(kuairand_dir / 'log_standard_4_08_to_4_21_pure.csv')
    raw_test = pd.read_csv(kuairand_dir / 'log_standard_4_22_to_5_08_pure.csv')
    want = raw_train[raw_train.tab.isin([0, 1, 2, 4])]
    np.testing.assert_array_equal(frames['train'][['user_id', 'video_id']], want[['user_id', 'video_id']])
    v = raw_test[raw_test.tab.isin([0, 1, 2, 4]) & raw_test.date.between(20220422, 20220428)]
    np.testing.assert_array_equal(frames['valid'][['user_id', 'video_id']], v[['user_id', 'video_id']])
    t = frames['test']
    assert t['date'].min() >= 20220429 and set(t['tab']) <= {0, 1, 2, 4}
    assert len(v) + len(t) == raw_test.tab.isin([0, 1, 2, 4]).sum()


def test_max_rows_keeps_a_seeded_sample_of_each_split_in_file_order(kuairand_dir):
    cols = ['user_id', 'video_id', 'date', 'hourmin']
    full = _read(kuairand_dir)
    frames = _read(kuairand_dir, max_rows=7, seed=3)
    again = _read(kuairand_dir, max_rows=7, seed=3)
    for name in frames:
        assert len(frames[name]) == 7
        rows = iter(map(tuple, full[name][cols].to_numpy()))  # a subsequence: file order kept
        assert all(any(r == w for w in rows) for r in map(tuple, frames[name][cols].to_numpy()))
        np.testing.assert_array_equal(frames[name][cols], again[name][cols])
    assert any(not np.array_equal(frames[n]['video_id'], full[n]['video_id'][:7]) for n in frames)


def test_27k_part_files_are_read_in_part_order(tmp_path):
    d = write_kuairand_dir(tmp_path / 'k27', version='27k', n_train=90, n_test=60, parts=2)
    assert (d / 'log_standard_4_08_to_4_21_27k_part2.csv').exists()
    layout = kuairand.find_layout(d)
    assert layout.version == '27k'
    frames = _read(d, splits=dict(train=('20220408', '20220421')))
    raw = pd.concat([pd.read_csv(d / f'log_standard_4_08_to_4_21_27k_part{i}.csv') for i in (1, 2)])
    np.testing.assert_array_equal(frames['train']['video_id'], raw[raw.tab.isin([0, 1, 2, 4])].video_id)


def test_random_log_is_read_as_an_extra_split(tmp_path):
    d = write_kuairand_dir(tmp_path / 'k1', version='1k', n_random=50)
    frames = _read(d, random_log_split='test_random')
    raw = pd.read_csv(d / 'log_random_4_22_to_5_08_1k.csv')
    assert len(frames['test_random']) == raw.tab.isin([0, 1, 2, 4]).sum() > 0
    assert 'author_id' in frames['test_random']


def test_version_detection_errors(tmp_path):
    d = write_kuairand_dir(tmp_path / 'two', version='pure')
    (d / 'log_standard_4_08_to_4_21_1k.csv').write_text('x\n')
    with pytest.raises(DataError, match=r"several KuaiRand versions \['1k', 'pure'\]"):
        kuairand.find_layout(d)
    assert kuairand.find_layout(d, 'pure').version == 'pure'


def test_missing_file_lists_expected_and_present(kuairand_dir):
    os.remove(kuairand_dir / 'log_standard_4_22_to_5_08_pure.csv')
    with pytest.raises(DataError) as e:
        _read(kuairand_dir)
    msg = str(e.value)
    assert 'log_standard_4_22_to_5_08_pure.csv' in msg  # expected
    assert 'log_standard_4_08_to_4_21_pure.csv' in msg  # what is there
    assert "'valid'" in msg and "'test'" in msg


def test_missing_feature_file_is_named(kuairand_dir):
    os.remove(kuairand_dir / 'video_features_basic_pure.csv')
    with pytest.raises(DataError, match='video_features_basic_pure.csv'):
        _read(kuairand_dir)


def test_missing_column_names_file_and_column(kuairand_dir):
    p = kuairand_dir / 'log_standard_4_22_to_5_08_pure.csv'
    pd.read_csv(p).drop(columns=['is_hate']).to_csv(p, index=False)
    with pytest.raises(DataError, match=r"log_standard_4_22_to_5_08_pure.csv: column 'is_hate'"):
        _read(kuairand_dir)


def test_feature_column_nowhere_is_an_error(kuairand_dir):
    feats = [dict(name='user_id', column='user_id', kind='categorical'),
             dict(name='tab', column='tab', kind='categorical'),
             dict(name='bogus', column='no_such_column', kind='categorical')]
    with pytest.raises(DataError, match=r"'no_such_column' \(needed by config.data.features\[2\]"):
        _read(kuairand_dir, features=feats, groups=dict(domain=('tab',)))


def test_unparsable_value_names_file_column_row(kuairand_dir):
    p = kuairand_dir / 'log_standard_4_08_to_4_21_pure.csv'
    lines = p.read_text().splitlines()
    parts = lines[5].split(',')
    parts[LOG_COLUMNS.index('video_id')] = 'abc'
    lines[5] = ','.join(parts)
    p.write_text('\n'.join(lines) + '\n')
    with pytest.raises(DataError, match=r"4_21_pure.csv: column 'video_id', row 5 \(line 6\): "
                                        r"cannot parse 'abc' as int64"):
        _read(kuairand_dir)


def test_label_outside_01_names_file_column_row(kuairand_dir):
    p = kuairand_dir / 'log_standard_4_22_to_5_08_pure.csv'
    f = pd.read_csv(p)
    f.loc[41, 'is_like'] = 2
    f.to_csv(p, index=False)
    with pytest.raises(DataError, match=r"5_08_pure.csv: column 'is_like', row 42 \(line 43\): "
                                        r"label 2 is not 0 or 1"):
        _read(kuairand_dir)


def test_unknown_tab_value_names_file_column_row(kuairand_dir):
    p = kuairand_dir / 'log_standard_4_08_to_4_21_pure.csv'
    f = pd.read_csv(p)
    f.loc[9, 'tab'] = 15
    f.to_csv(p, index=False)
    with pytest.raises(DataError, match=r"4_21_pure.csv: column 'tab', row 10 \(line 11\): "
                                        r"domain value 15 is not in the KuaiRand tab range"):
        _read(kuairand_dir)


def test_empty_split_names_dates_and_tabs(kuairand_dir):
    with pytest.raises(DataError, match=r"split 'train' is empty: no rows with dates "
                                        r"20220408..20220421 and tab in \[3\] .*4_21_pure.csv"):
        _read(kuairand_dir, tabs=(3,))
    with pytest.raises(DataError, match=r"split 'valid' is empty: no rows with dates "
                                        r"20220601..20220602 and tab in \[0, 1, 2, 4\]"):
        _read(kuairand_dir, splits=dict(train=('20220408', '20220421'),
                                        valid=('20220601', '20220602')))


def test_read_log_file_keeps_all_rows_and_returns_raw_columns(kuairand_dir):
    cfg = kuairand_config(kuairand_dir)
    spec = spec_from_config(cfg)
    log = make_log(40, 20220501, 20220502, seed=9, tabs=(0, 4), extra_videos=(9_000_002,))
    log = log.drop(columns=['is_click', 'is_like'])  # labels are optional in predict mode
    log.loc[17, 'video_id'] = 5
    path = kuairand_dir.parent / 'to_score.csv'
    log.to_csv(path, index=False)
    frame, raw = kuairand.read_log_file(path, kuairand_dir, spec)
    assert len(frame) == 40
    for c in ('user_id', 'video_id', 'time_ms', 'tab'):
        np.testing.assert_array_equal(raw[c], log[c])
    assert frame.loc[17, 'tag'] == '20,43' and frame.loc[17, 'author_id'] == 8367059
    unknown = log.video_id.to_numpy() == 9_000_002
    assert unknown.any() and frame['author_id'][unknown].isna().all()
    assert 'is_click' not in frame.columns and 'is_follow' in frame.columns


def test_read_log_file_rejects_a_tab_outside_config(kuairand_dir):
    cfg = kuairand_config(kuairand_dir, tabs=(0, 1))
    path = kuairand_dir.parent / 'p.csv'
    log = make_log(20, 20220501, 20220501, seed=3, tabs=(0, 1))
    log.loc[12, 'tab'] = 4
    log.to_csv(path, index=False)
    with pytest.raises(DataError, match=r"p.csv: column 'tab', row 13 \(line 14\): domain value 4 "
                                        r"is not in config.data.domains \[0, 1\]"):
        kuairand.read_log_file(path, kuairand_dir, spec_from_config(cfg))
