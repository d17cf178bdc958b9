"""Reported data faults: shifted CSV rows, overlapping splits, silent drops, damaged caches,
unseen ids in predict mode. Each test failed before its fix."""

from __future__ import annotations

import os
import re
import shutil
from pathlib import Path

import ml_collections
import numpy as np
import pandas as pd
import pytest

from conftest import ReadCounter, aliccp_config, kuairand_config, make_log
from pepnet_jax.evaluation import predict
from pepnet_jax.data import aliccp, cache, errors, kuairand, pipeline
from pepnet_jax.data.aliccp import aliccp_features
from pepnet_jax.data.errors import DataError
from pepnet_jax.data.vocab import Vocab
from pepnet_jax.features import DataSpec, FeatureSpec, spec_from_config

TRAIN_LOG = 'log_standard_4_08_to_4_21_pure.csv'
TEST_LOG = 'log_standard_4_22_to_5_08_pure.csv'


def _read(d: Path, **over):
    cfg = kuairand_config(d, **over)
    return kuairand.read_splits(cfg, spec_from_config(cfg))


def _edit_line(path: Path, line: int, edit) -> str:
    """Apply edit(fields) -> fields to 1-based physical `line`; returns the new text."""
    lines = path.read_text().splitlines()
    lines[line - 1] = ','.join(edit(lines[line - 1].split(',')))
    path.write_text('\n'.join(lines) + '\n')
    return lines[line - 1]


def _own_copy(path: Path) -> Path:
    """Replace a symlink to read-only shared data by a writable copy."""
    if not path.is_symlink():
        return path  # the generator's stand-in: already ours
    target = path.resolve()
    path.unlink()
    shutil.copyfile(target, path)
    return path


# ------------------------------------------------------------------ 1. extra / missing fields


def test_extra_field_in_a_log_row_names_file_and_line_instead_of_shifting_tab(kuairand_dir):
    p = kuairand_dir / TRAIN_LOG
    # the reported case: one more field before 'tab' moved is_rand (0) into tab
    _edit_line(p, 8, lambda f: f[:-1] + ['0', '4'])
    with pytest.raises(DataError, match=rf'{TRAIN_LOG}: row 7 \(line 8\): 20 fields where the '
                                        r'header has 19; an extra field'):
        _read(kuairand_dir)


def test_short_row_in_a_feature_file_names_file_and_line(kuairand_dir):
    p = _own_copy(kuairand_dir / 'user_features_pure.csv')
    _edit_line(p, 40, lambda f: f[:-1])  # pandas would fill the last column with NaN
    with pytest.raises(DataError, match=r'user_features_pure.csv: row 39 \(line 40\): 30 fields '
                                        r'where the header has 31; fields are missing'):
        _read(kuairand_dir)


def test_quoted_commas_in_feature_files_are_not_extra_fields(kuairand_dir):
    p = _own_copy(kuairand_dir / 'video_features_basic_pure.csv')
    text = p.read_text()
    assert '"' in text  # tag lists like "20,43" are quoted
    frames = _read(kuairand_dir)
    assert frames['train']['tag'].notna().any()
    # an unquoted tag list, on the other hand, is one field too many
    lines = text.splitlines()
    i = next(i for i, s in enumerate(lines) if s.endswith('"') and ',' in s.split('"')[-2])
    lines[i] = lines[i].replace('"', '')
    p.write_text('\n'.join(lines) + '\n')
    with pytest.raises(DataError,
                       match=rf'video_features_basic_pure.csv: row {i} \(line {i + 1}\)'):
        _read(kuairand_dir)


def test_predict_input_with_a_short_row_names_file_and_line(kuairand_dir):
    cfg = kuairand_config(kuairand_dir)
    path = kuairand_dir.parent / 'score_me.csv'
    make_log(30, 20220501, 20220502, seed=4, tabs=(0, 4)).to_csv(path, index=False)
    _edit_line(path, 12, lambda f: f[:5] + f[6:])  # a middle field lost: later ones shift left
    with pytest.raises(DataError, match=r'score_me.csv: row 11 \(line 12\): 18 fields'):
        kuairand.read_log_file(path, kuairand_dir, spec_from_config(cfg))


@pytest.mark.parametrize('block', [5, 1 << 20])
def test_lines_count_blank_lines_and_quoted_newlines(tmp_path, monkeypatch, block):
    monkeypatch.setattr(errors, 'SCAN_BLOCK', block)
    p = tmp_path / 'b.csv'
    head = 'a,b,c\n1,"x,\ny",3\n\n4,z,6\n   \n'  # lines 1..6 hold rows 1 and 2
    read = lambda: list(errors.read_csv_chunks(p, ['a', 'b', 'c'],
                                               {'a': 'int64', 'b': str, 'c': 'int64'}))
    p.write_text(head + '7,w,oops\n')
    with pytest.raises(DataError, match=r"b.csv: column 'c', row 3 \(line 7\): cannot parse "
                                        r"'oops' as int64"):
        read()
    p.write_text(head + '7,w\n')
    with pytest.raises(DataError, match=r'b.csv: row 3 \(line 7\): 2 fields where the header '
                                        r'has 3'):
        read()
    p.write_text(head + '7,"w,8\n')
    with pytest.raises(DataError, match=r'b.csv: line 7: a quoted field is never closed'):
        read()
    p.write_text(head + '7,w,8')
    (_, frame), = read()
    assert frame['b'].tolist() == ['x,\ny', 'z', 'w'] and frame['c'].tolist() == [3, 6, 8]


_aliccp_cfg = aliccp_config


def _aliccp_file(path: Path, n: int, seed: int, domains=(1, 2, 3)) -> pd.DataFrame:
    """An Ali-CCP-layout CSV: labels, the 22 sparse fields, 8 D weights and '301'."""
    rng = np.random.default_rng(seed)
    cols = {'click': rng.integers(0, 2, n), 'purchase': np.zeros(n, int)}
    for f in aliccp_features():
        if f['column'] == '301':
            cols['301'] = rng.choice(np.asarray(domains), n)
        elif f['kind'] == 'dense':
            cols[f['column']] = rng.random(n).round(4)
        else:
            cols[f['column']] = rng.integers(0, 50, n)
    frame = pd.DataFrame(cols)
    frame.to_csv(path, index=False)
    return frame


def test_aliccp_extra_field_names_file_and_line_for_training_and_predict(tmp_path):
    d = tmp_path / 'ali'
    d.mkdir()
    for i, stem in enumerate(('ali_ccp_train', 'ali_ccp_val', 'ali_ccp_test')):
        _aliccp_file(d / f'{stem}.csv', 40, seed=i)
    cfg = _aliccp_cfg(d)
    spec = spec_from_config(cfg)
    assert len(aliccp.read_splits(cfg, spec)['valid']) == 40
    _edit_line(d / 'ali_ccp_val.csv', 5, lambda f: f[:3] + ['7'] + f[3:])
    with pytest.raises(DataError, match=r'ali_ccp_val.csv: row 4 \(line 5\): 34 fields where '
                                        r'the header has 33'):
        aliccp.read_splits(cfg, spec)
    with pytest.raises(DataError, match=r'ali_ccp_val.csv: row 4 \(line 5\)'):
        aliccp.read_file(d / 'ali_ccp_val.csv', spec)


# ------------------------------------------------------------------ 3. split date ranges


@pytest.mark.parametrize('splits, message', [
    (dict(train=('20220408', '20220421'), valid=('20220420', '20220428')),
     r"config.data.splits: 'train' \(20220408..20220421\) and 'valid' \(20220420..20220428\) "
     r'overlap on 20220420..20220421'),
    (dict(train=('20220408', '20220421'), test=('20220401', '20220508')),
     r"config.data.splits: 'train' \(20220408..20220421\) and 'test' \(20220401..20220508\) "
     r'overlap on 20220408..20220421'),
    (dict(train=('20220408', '20220421'), valid=('20220428', '20220422')),
     r'config.data.splits.valid=.*the first date 20220428 is after the last date 20220422'),
    (dict(train=('20220408', '20220431')),
     r"config.data.splits.train=.*'20220431' is not a date as 'YYYYMMDD'"),
    (dict(train=('2022-04-08', '20220421')),
     r"config.data.splits.train=.*'2022-04-08' is not a date"),
])
def test_bad_split_ranges_are_data_errors(kuairand_dir, splits, message):
    with pytest.raises(DataError, match=message):
        kuairand.parse_splits(kuairand_config(kuairand_dir, splits=splits))


def test_touching_split_ranges_are_fine(kuairand_dir):
    got = kuairand.parse_splits(kuairand_config(kuairand_dir, splits=dict(
        test=('20220429', '20220508'), train=('20220408', '20220421'),
        valid=('20220422', '20220428'))))
    assert got == {'train': (20220408, 20220421), 'valid': (20220422, 20220428),
                   'test': (20220429, 20220508)}


# ------------------------------------------------------------------ 4. dropped rows are counted


def _data_lines(out: str) -> list[str]:
    return [s for s in out.splitlines() if s.startswith('[data]')]


def test_dropped_rows_are_counted_once_per_split_and_reason(kuairand_dir, capsys):
    p = kuairand_dir / TEST_LOG
    log = pd.read_csv(p)
    log.loc[3, 'date'] = 20220431  # no calendar date, though inside valid's numbers
    log.to_csv(p, index=False)
    train = pd.read_csv(kuairand_dir / TRAIN_LOG)
    frames = _read(kuairand_dir, splits=dict(train=('20220408', '20220421'),
                                             valid=('20220422', '20220428')))
    lines = _data_lines(capsys.readouterr().out)
    kept = train[train.tab.isin([0, 1, 2, 4])]
    assert len(frames['train']) == len(kept)
    n6 = int((train.tab == 6).sum())
    assert f'[data] train: kept {len(kept):,} rows; dropped {n6:,} with tab not in ' \
           f'config.data.domains [0, 1, 2, 4] (tab 6: {n6:,})' in lines
    in_valid = log.date.between(20220422, 20220428) & (log.index != 3)
    v6 = int((in_valid & (log.tab == 6)).sum())
    assert f'[data] valid: kept {len(frames["valid"]):,} rows; dropped {v6:,} with tab not in ' \
           f'config.data.domains [0, 1, 2, 4] (tab 6: {v6:,})' in lines
    assert len(frames['valid']) == int((in_valid & log.tab.isin([0, 1, 2, 4])).sum())
    assert 20220431 not in set(frames['valid']['date'])
    late = log.date.between(20220429, 20220508) & (log.index != 3)
    lo, hi = log.date[late].min(), log.date[late].max()
    assert f'[data] standard log rows in no split: {int(late.sum()):,} with dates in {lo}..{hi} ' \
           f'outside every config.data.splits range; 1 whose date is no calendar date ' \
           f'(20220431)' in lines
    assert sum('dropped' in s for s in lines) == 2  # one line per split, not per chunk


def test_nothing_dropped_prints_no_drop_line(kuairand_dir, capsys):
    _read(kuairand_dir, tabs=(0, 1, 2, 4, 6))
    lines = _data_lines(capsys.readouterr().out)
    assert not any('dropped' in s or 'no split' in s for s in lines), lines


def test_aliccp_domain_drops_are_counted(tmp_path, capsys):
    d = tmp_path / 'ali'
    d.mkdir()
    train = _aliccp_file(d / 'ali_ccp_train.csv', 60, seed=1)
    for i, stem in enumerate(('ali_ccp_val', 'ali_ccp_test')):
        _aliccp_file(d / f'{stem}.csv', 20, seed=5 + i, domains=(1,))
    cfg = _aliccp_cfg(d, tabs=(1,))
    aliccp.read_splits(cfg, spec_from_config(cfg))
    lines = _data_lines(capsys.readouterr().out)
    c = train['301'].value_counts()
    assert f'[data] train: kept {c[1]} rows; dropped {c[2] + c[3]} with 301 not in ' \
           f'config.data.domains [1] (301 2: {c[2]}, 301 3: {c[3]})' in lines
    assert sum('dropped' in s for s in lines) == 1


# ------------------------------------------------------------------ 5. damaged cache


_Counter = ReadCounter


def _arrays(datasets) -> dict[str, dict[str, np.ndarray]]:
    return {n: {k: np.array(v) for k, v in d.columns.items()} for n, d in datasets.items()}


def _cache_folder(work: Path) -> Path:
    (name,) = [d for d in os.listdir(work / 'cache') if not d.startswith('.')]
    return work / 'cache' / name


def _truncate(path: Path) -> None:
    os.truncate(path, path.stat().st_size - 100)


def _overwrite_middle(path: Path) -> None:
    size = path.stat().st_size
    with open(path, 'r+b') as f:
        f.seek(size // 2)
        f.write(bytes(64))
        f.seek(size // 2 + 100)
        f.write(b'\xff' * 64)


def _garbage_header(path: Path) -> None:
    data = bytearray(path.read_bytes())
    data[:16] = b'not an npy file!'
    path.write_bytes(bytes(data))


@pytest.mark.parametrize('damage, target', [
    (_truncate, 'train/sparse.npy'),
    (_overwrite_middle, 'train/sparse.npy'),
    (_overwrite_middle, 'valid/dense.npy'),
    (_garbage_header, 'test/labels.npy'),
    (_overwrite_middle, 'vocab/vocab_keys.npz'),
    (lambda p: p.write_text('{"columns": '), 'manifest.json'),
    (os.remove, 'valid/group.npy'),
])
def test_damaged_cache_is_named_and_rebuilt(kuairand_dir, tmp_path, monkeypatch, capsys,
                                            damage, target):
    counter = _Counter(monkeypatch)
    cfg = kuairand_config(kuairand_dir)
    work = tmp_path / 'w'
    first = _arrays(pipeline.load_datasets(cfg, work)[0])
    folder = _cache_folder(work)
    damage(folder / target)
    capsys.readouterr()
    datasets, *_ = pipeline.load_datasets(cfg, work)
    out = capsys.readouterr().out
    assert counter.calls == 2  # parsed the CSVs again
    warned = [s for s in out.splitlines() if 'is damaged' in s]
    assert len(warned) == 1 and str(folder) in warned[0] and f'damaged: {target}:' in warned[0]
    again = _arrays(datasets)
    assert again.keys() == first.keys()
    for split in first:
        for k in first[split]:
            np.testing.assert_array_equal(again[split][k], first[split][k])
    assert _cache_folder(work) == folder  # rebuilt in place; the damaged one is gone
    pipeline.load_datasets(cfg, work)
    assert counter.calls == 2 and 'is damaged' not in capsys.readouterr().out


def test_sound_cache_verifies_and_sampled_check_catches_a_changed_window(kuairand_dir, tmp_path,
                                                                         monkeypatch):
    cfg = kuairand_config(kuairand_dir)
    pipeline.load_datasets(cfg, tmp_path / 'w')
    folder = _cache_folder(tmp_path / 'w')
    manifest = cache.json.loads((folder / cache.MANIFEST).read_text())
    assert cache.verify(folder, manifest) is None
    assert set(manifest['files']) >= {'train/sparse.npy', 'vocab/vocab.json'}
    # a big cache checks sampled windows only: the first window (the .npy header) is one
    monkeypatch.setattr(cache, 'FULL_CHECK_BYTES', 0)
    monkeypatch.setattr(cache, 'SAMPLE_WINDOWS', 4)
    monkeypatch.setattr(cache, 'SAMPLE_BYTES', 64)
    path = folder / 'train' / 'sparse.npy'
    big = {**manifest, 'files': {'train/sparse.npy': dict(
        size=path.stat().st_size, crc32=0, sample_crc32=cache._crc32(path, sample=True))}}
    assert cache.verify(folder, big) is None
    data = bytearray(path.read_bytes())
    data[-1] ^= 0xFF  # the last window
    path.write_bytes(bytes(data))
    assert cache.verify(folder, big) == ('train/sparse.npy', 'checksum mismatch: its bytes '
                                         'changed after it was written')


# ------------------------------------------------------------------ 6. unseen ids in predict


def _predict_spec() -> DataSpec:
    return DataSpec(format='kuairand', features=(
        FeatureSpec('user_id', 'user_id', 'categorical'),
        FeatureSpec('video_id', 'video_id', 'categorical'),
        FeatureSpec('author_id', 'author_id', 'categorical'),
        FeatureSpec('tag', 'tag', 'multi', max_len=2, sep=','),
        FeatureSpec('secs', 'secs', 'dense')),
        tasks=('is_click',), domain_column='tab', domains=(0, 1), group_column='user_id')


def test_unseen_ids_counts_present_values_that_map_to_oov_not_missing_ones():
    spec = _predict_spec()
    train = pd.DataFrame({'user_id': [1, 2, 3], 'video_id': [10, 20, 30],
                          'author_id': [7.0, 8.0, np.nan], 'tag': ['a', 'b', 'a,b'],
                          'secs': [1.0, 2.0, 3.0], 'tab': [0, 1, 0], 'is_click': [0, 1, 0]})
    vocab = Vocab.fit(train, spec)
    frame = pd.DataFrame({
        'user_id': [1, 9, 9, 2, 3, 8],            # rows 1, 2, 5 unseen
        'video_id': [10, 20, 99, 30, 30, 10],     # row 2 unseen
        'author_id': [7.0, np.nan, 8.0, 5.0, np.nan, 7.0],  # row 3 unseen; NaN is missing
        'tag': ['zz', 'a', None, 'a', 'b', 'a'],  # multi: not counted
        'secs': [np.nan, 1.0, 2.0, 3.0, 4.0, 5.0], 'tab': [0, 1, 0, 1, 0, 1]})
    columns = pipeline.encode_frame(frame, spec, vocab)
    rows, per = predict.unseen_ids(frame, columns, spec)
    assert per == {'user_id': 3, 'video_id': 1, 'author_id': 1}
    assert rows == 4  # rows 1, 2, 3, 5
    assert predict.unseen_summary(rows, per, len(frame)) == (
        'predict: 4 of 6 rows had an id not seen in training (user_id: 3, video_id: 1, '
        'author_id: 1); they score with the out-of-vocabulary rows')
    seen = frame.iloc[[0]].reset_index(drop=True)
    assert predict.unseen_ids(seen, pipeline.encode_frame(seen, spec, vocab), spec) == (0, {})
    assert predict.unseen_summary(0, {}, 1234) == \
        'predict: every id in the 1,234 input rows was seen in training'


def test_read_input_prints_the_unseen_id_count(kuairand_dir, tmp_path, capsys):
    cfg = kuairand_config(kuairand_dir)
    work = tmp_path / 'w'
    pipeline.load_datasets(cfg, work)
    log = pd.read_csv(kuairand_dir / TRAIN_LOG)
    log = log[log.tab.isin([0, 1, 2, 4])].head(50).reset_index(drop=True)  # seen users
    log.loc[:9, 'user_id'] = 123_456_789  # a user training never saw
    path = tmp_path / 'score.csv'
    log.to_csv(path, index=False)
    capsys.readouterr()
    config = ml_collections.ConfigDict(dict(data=cfg))
    ds, raw, spec, _ = predict.read_input(config, str(work), str(path))
    out = capsys.readouterr().out
    m = re.search(r'predict: (\d+) of 50 rows had an id not seen in training '
                  r'\(user_id: 10[,)]', out)
    assert m and int(m.group(1)) >= 10, out
    assert ds.num_rows == 50
