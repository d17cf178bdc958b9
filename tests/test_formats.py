"""Data formats as one self-registering file each: the registry, a toy format with string
domains found by name, the data.tabs alias, GAUC group combinations and predict dispatch."""

from __future__ import annotations

import dataclasses
import json
import subprocess
import sys
import textwrap
from pathlib import Path

import ml_collections
import numpy as np
import pandas as pd
import pytest

import pepnet_jax.data
from conftest import REPO, cli_env, kuairand_config, make_log, write_kuairand_dir
from pepnet_jax import configs
from pepnet_jax.data import aliccp, formats, kuairand, pipeline
from pepnet_jax.data.errors import DataError, domain_index
from pepnet_jax.features import DataSpec, resolve_domains, spec_from_config
from pepnet_jax.sweeps.expand import parse_config

# A whole format in one file: one CSV per split, text user ids, scene names as domains.
TOY = '''
"""Toy format: <dir>/<split>.csv with request_id, user, item, scene, click."""
from pathlib import Path

import pandas as pd

from pepnet_jax.data import formats

SPLITS = ('train', 'test')
DTYPES = {{'user': str, 'scene': str}}


def input_files(data_config, spec):
    return [Path(data_config.get('dir')) / f'{{s}}.csv' for s in SPLITS]


def read_splits(data_config, spec):
    out = {{}}
    for s, path in zip(SPLITS, input_files(data_config, spec)):
        f = pd.read_csv(path, dtype=DTYPES)
        out[s] = f[f['scene'].isin(spec.domains)].reset_index(drop=True)
    return out


def read_file(path, data_dir, spec, data_config):
    f = pd.read_csv(path, dtype=DTYPES)
    return f, {{'request_id': f['request_id'].to_numpy()}}


formats.register(formats.DataFormat(
    name={name!r}, read_splits=read_splits, input_files=input_files, read_file=read_file,
    domain_column='scene', group_column='user', tasks=('click',), domains=('home', 'search'),
    features=lambda: [dict(name='user', kind='categorical'),
                      dict(name='item', kind='categorical'),
                      dict(name='scene', kind='categorical', shared=False)],
    groups=lambda: dict(domain=('scene',), user=('user',), item=('item',))))
'''


@pytest.fixture
def registry(monkeypatch, tmp_path):
    """A private copy of the registry, pepnet_jax.data extended with tmp_path/ext (so a module
    written there is pepnet_jax.data.<name>) and tmp_path/lib on sys.path; modules the test
    imports from there are forgotten afterwards."""
    monkeypatch.setattr(formats, '_REGISTRY', dict(formats._REGISTRY))
    (tmp_path / 'ext').mkdir()
    (tmp_path / 'lib').mkdir()
    monkeypatch.setattr(pepnet_jax.data, '__path__',
                        [*pepnet_jax.data.__path__, str(tmp_path / 'ext')])
    monkeypatch.syspath_prepend(str(tmp_path / 'lib'))
    before = set(sys.modules)
    yield tmp_path
    for m in set(sys.modules) - before:
        if m.startswith(('pepnet_jax.data.toy', 'toypkg')):
            del sys.modules[m]


def _toy_data(d: Path, seed: int = 0) -> Path:
    rng = np.random.default_rng(seed)
    d.mkdir(parents=True, exist_ok=True)
    for split, n in (('train', 80), ('test', 30)):
        pd.DataFrame({'request_id': np.arange(n) + 1000,
                      'user': [f'u{i}' for i in rng.integers(0, 9, n)],
                      'item': rng.integers(0, 20, n),
                      'scene': rng.choice(['home', 'search', 'video'], n),
                      'click': rng.integers(0, 2, n)}).to_csv(d / f'{split}.csv', index=False)
    return d


# ------------------------------------------------------------------------------ registry

def test_builtin_formats_register_from_their_own_modules():
    assert formats.get('kuairand') is kuairand.FORMAT and formats.get('aliccp') is aliccp.FORMAT
    assert {'kuairand', 'aliccp'} <= set(formats.names())
    assert kuairand.FORMAT.domains == (0, 1, 2, 4) and kuairand.FORMAT.group_column == 'user_id'
    assert aliccp.FORMAT.known_domains == (1, 2, 3)


def test_register_same_record_is_a_no_op_another_is_an_error(registry):
    fmt = formats.get('kuairand')
    assert formats.register(fmt) is fmt
    assert formats.register(dataclasses.replace(fmt)) == fmt  # equal record: a re-import
    other = dataclasses.replace(fmt, tasks=('is_click',))
    with pytest.raises(ValueError, match=r"data format 'kuairand' is already registered"):
        formats.register(other)
    assert formats.register(other, replace=True) is other and formats.get('kuairand') is other


def test_record_validation_names_the_field():
    fmt = formats.get('kuairand')
    with pytest.raises(ValueError, match=r"DataFormat\(name='kuairand'\): default domains \[20\] "
                                         r'are not in known_domains'):
        dataclasses.replace(fmt, domains=(0, 20))
    with pytest.raises(ValueError, match=r"DataFormat\(name='a b'\): the name must be"):
        dataclasses.replace(fmt, name='a b')
    with pytest.raises(TypeError, match=r'read_file must be callable'):
        dataclasses.replace(fmt, read_file=None)


def test_unknown_format_names_the_field_and_lists_the_registry(registry):
    with pytest.raises(ValueError, match=r"config.data.format='nope' is not a registered data "
                                         r"format; registered: \[.*'aliccp'.*'kuairand'.*\]"):
        formats.get('nope')
    with pytest.raises(ValueError, match=r"config.data.format='no_pkg_xyz.fmt' is not a "
                                         'registered'):
        formats.get('no_pkg_xyz.fmt')


def test_a_format_file_in_pepnet_jax_data_is_found_by_its_name(registry):
    (registry / 'ext' / 'toy_scene.py').write_text(TOY.format(name='toy_scene'))
    fmt = formats.get('toy_scene')  # no edit anywhere else: the module registers itself
    assert fmt.name == 'toy_scene' and fmt.domains == ('home', 'search')
    assert sys.modules['pepnet_jax.data.toy_scene'].read_file is fmt.read_file
    assert 'toy_scene' in formats.names()


def test_a_format_outside_the_package_is_named_by_its_import_path(registry):
    pkg = registry / 'lib' / 'toypkg'
    pkg.mkdir()
    (pkg / '__init__.py').write_text('')
    (pkg / 'scene_csv.py').write_text(TOY.format(name='toypkg.scene_csv'))
    (pkg / 'short.py').write_text(TOY.format(name='short_name'))
    assert formats.get('toypkg.scene_csv').name == 'toypkg.scene_csv'
    with pytest.raises(ValueError, match=r"imported the module toypkg.short; it registered "
                                         r"\['short_name'\], but .* under that full name"):
        formats.get('toypkg.short')


def test_a_module_in_the_package_that_registers_no_such_format(registry):
    with pytest.raises(ValueError, match=r"config.data.format='pipeline': imported the module "
                                         r"pepnet_jax.data.pipeline; it registered no format"):
        formats.get('pipeline')


def test_a_format_module_that_fails_to_import_shows_its_own_error(registry):
    (registry / 'ext' / 'toy_broken.py').write_text('import not_a_dependency_xyz\n')
    with pytest.raises(ModuleNotFoundError, match='not_a_dependency_xyz'):
        formats.get('toy_broken')


# ----------------------------------------------------------- a toy format, end to end

def _toy_config(d: Path, name: str = 'toy_scene', **over) -> ml_collections.ConfigDict:
    return ml_collections.ConfigDict(dict(dict(format=name, dir=str(d), cache_dir='',
                                               batch_size=8, eval_batch_size=16), **over))


def test_string_domains_encode_and_group_through_the_pipeline(registry):
    (registry / 'ext' / 'toy_scene.py').write_text(TOY.format(name='toy_scene'))
    d = _toy_data(registry / 'toy')
    ds, infos, spec, _ = pipeline.load_datasets(_toy_config(d), registry / 'w')
    assert spec.domains == ('home', 'search') and spec.tasks == ('click',)
    raw = pd.read_csv(d / 'train.csv', dtype={'user': str})
    raw = raw[raw['scene'] != 'video']
    b = next(ds['train'].eval_batches(200))
    n = len(raw)
    np.testing.assert_array_equal(b['domain'][:n], [('home', 'search').index(s)
                                                    for s in raw['scene']])
    # text user ids: one stable key per user
    groups = b['group'][:n]
    assert len(set(groups)) == raw['user'].nunique()
    assert all(len(set(groups[(raw['user'] == u).to_numpy()])) == 1 for u in raw['user'])


def test_unknown_string_domain_names_column_row_and_field(registry):
    (registry / 'ext' / 'toy_scene.py').write_text(TOY.format(name='toy_scene'))
    d = _toy_data(registry / 'toy')
    _, _, spec, vocab = pipeline.load_datasets(_toy_config(d), registry / 'w')
    frame = pd.read_csv(d / 'test.csv', dtype={'user': str, 'scene': str})
    first = int(np.flatnonzero(frame['scene'] == 'video')[0])
    with pytest.raises(DataError, match=rf"column 'scene', row {first + 1}: domain value 'video' "
                                        r"is not in config.data.domains \['home', 'search'\]"):
        pipeline.encode_frame(frame, spec, vocab)


def test_predict_reads_through_the_format_record(registry):
    from pepnet_jax.evaluation import predict
    (registry / 'ext' / 'toy_scene.py').write_text(TOY.format(name='toy_scene'))
    d = _toy_data(registry / 'toy')
    cfg = ml_collections.ConfigDict(dict(data=_toy_config(d)))
    pipeline.load_datasets(cfg.data, registry / 'w')
    score = registry / 'score.csv'
    pd.DataFrame({'request_id': [7, 8, 9], 'user': ['u1', 'zz', 'u2'], 'item': [1, 2, 3],
                  'scene': ['search', 'home', 'search']}).to_csv(score, index=False)
    ds, raw, spec, _ = predict.read_input(cfg, str(registry / 'w'), str(score))
    assert list(raw) == ['request_id'] and list(raw['request_id']) == [7, 8, 9]
    np.testing.assert_array_equal(ds.columns['domain'], [1, 0, 1])
    assert (ds.columns['labels'] == pipeline.LABEL_MISSING).all()  # no click column


def test_predict_dispatch_uses_the_record_for_every_format(monkeypatch, kuairand_dir, tmp_path):
    """predict once sent every non-KuaiRand format to the Ali-CCP reader."""
    from pepnet_jax.evaluation import predict
    cfg = ml_collections.ConfigDict(dict(data=kuairand_config(kuairand_dir)))
    pipeline.load_datasets(cfg.data, tmp_path / 'w')
    calls = []
    fmt = formats.get('kuairand')

    def spy(*a):
        calls.append(a)
        return fmt.read_file_chunks(*a)
    monkeypatch.setitem(formats._REGISTRY, 'kuairand',
                        dataclasses.replace(fmt, read_file_chunks=spy))
    log = tmp_path / 'score_me.csv'
    make_log(20, 20220501, 20220502, seed=4, tabs=(0, 4)).to_csv(log, index=False)
    _, raw, _, _ = predict.read_input(cfg, str(tmp_path / 'w'), str(log))
    assert len(calls) == 1 and calls[0][0] == str(log) and calls[0][3].domains == (0, 1, 2, 4)
    assert list(raw) == list(kuairand.RAW_PREDICT_COLUMNS)


# ------------------------------------------------------------------------- domain values

def test_domain_index_for_ints_strings_and_whole_floats():
    np.testing.assert_array_equal(domain_index(np.array([4, 0, 6]), (0, 1, 2, 4)), [3, 0, -1])
    np.testing.assert_array_equal(domain_index(np.array(['b', 'a', 'c'], object), ('a', 'b')),
                                  [1, 0, -1])
    # an int column against domains given as text, a float column NaNs made float
    np.testing.assert_array_equal(domain_index(np.array([2, 1]), ('1', '2')), [1, 0])
    np.testing.assert_array_equal(domain_index(np.array([2.0, np.nan, 1.0]), (1, 2)), [1, -1, 0])


# ------------------------------------------------------------------------------- groups

def test_group_keys_single_columns_keep_their_values_combinations_hash():
    f = pd.DataFrame({'user_id': np.array([5, 7, 5, 7, 5]), 'tab': [0, 0, 1, 0, 0],
                      'name': ['a', 'b', 'a', 'b', 'a']})
    np.testing.assert_array_equal(pipeline.group_keys(f, 'user_id'), [5, 7, 5, 7, 5])
    np.testing.assert_array_equal(pipeline.group_keys(f.astype({'user_id': float}), 'user_id'),
                                  [5, 7, 5, 7, 5])
    text = pipeline.group_keys(f, 'name')  # as before combinations: a 63-bit hash of the text
    h = pd.util.hash_array(f['name'].to_numpy(object), categorize=True)
    np.testing.assert_array_equal(text, (h >> np.uint64(1)).astype(np.int64))
    k = pipeline.group_keys(f, 'user_id,tab')
    assert k.dtype == np.int64 and (k >= 0).all()
    assert k[0] == k[4] != k[2] and k[1] == k[3] and len(set(k.tolist())) == 3
    np.testing.assert_array_equal(k, pipeline.group_keys(f.copy(), ('user_id', 'tab')))
    # int or text user ids give the same partition
    by_name = pipeline.group_keys(f, 'name,tab')
    assert [len(set(by_name[k == v])) for v in set(k.tolist())] == [1, 1, 1]
    with pytest.raises(DataError, match=r"config.data.group_column='user_id,nope': column\(s\) "
                                        r"\['nope'\] are missing"):
        pipeline.group_keys(f, 'user_id,nope')


def test_user_x_tab_groups_through_the_kuairand_reader(kuairand_dir, tmp_path):
    cfg = kuairand_config(kuairand_dir, group_column='user_id,tab')
    ds, _, spec, _ = pipeline.load_datasets(cfg, tmp_path / 'w')
    assert spec.group_columns == ('user_id', 'tab')
    frame = kuairand.read_splits(cfg, spec_from_config(cfg))['train']
    groups = ds['train'].columns['group']
    assert len(np.unique(groups)) == len(frame.groupby(['user_id', 'tab']))
    bad = kuairand_config(kuairand_dir, group_column='user_id,nope')
    with pytest.raises(DataError, match=r"column 'nope' \(needed by config.data.group_column\)"):
        pipeline.load_datasets(bad, tmp_path / 'w2')


# -------------------------------------------------------------- configs: old and new

def _old_base_config_json() -> dict:
    """A config.json as base_config() wrote it before data.domains existed: KuaiRand's
    values spelled out, the domains under data.tabs, no data.domain_column."""
    tree = json.loads(configs.base_config().to_json_best_effort())
    data = tree['data']
    for k in ('domains', 'domain_column'):
        data.pop(k)
    data.update(tabs=[0, 1, 2, 4], tasks=list(kuairand.TASKS), group_column='user_id',
                splits={k: list(v) for k, v in kuairand.DEFAULT_SPLITS.items()})
    return tree


def test_an_old_config_json_means_the_same_run():
    old = _old_base_config_json()
    new = json.loads(configs.base_config().to_json_best_effort())
    old_data = ml_collections.ConfigDict(old['data'])
    spec = spec_from_config(old_data)
    assert spec == spec_from_config(configs.base_config().data)
    # the cache key does not change (nor, so, the caches of existing runs)
    from pepnet_jax.data.resolve import resolve
    assert resolve(old_data).cache_fields == resolve(configs.base_config().data).cache_fields
    # resume and sweep staleness checks see no change either
    assert configs.changed_fields(old, new) == {}
    narrowed = json.loads(json.dumps(new))
    narrowed['data']['domains'] = [1]
    assert configs.changed_fields(old, narrowed) == {'data.domains': ([0, 1, 2, 4], [1])}


def test_base_config_fields_take_command_line_values_of_either_type(tmp_path):
    cfg = str(REPO / 'experiments' / 'kuairand.py')
    c = parse_config(cfg, ['--config.data.domains=home,search',
                           '--config.data.domain_column=scene', '--config.data.tasks=is_click',
                           '--config.data.group_column=user_id,tab'])
    assert resolve_domains(c.data) == ('home', 'search') and c.data.domain_column == 'scene'
    assert tuple(c.data.tasks) == ('is_click',) and c.data.group_column == 'user_id,tab'
    assert resolve_domains(parse_config(cfg, ['--config.data.domains=1,2']).data) == (1, 2)
    old = parse_config(cfg, ['--config.data.tabs=(1,)'])  # an old command line
    assert spec_from_config(old.data).domains == (1,)
    both = parse_config(cfg, ['--config.data.tabs=(1,)', '--config.data.domains=(2,)'])
    with pytest.raises(ValueError, match=r'config.data.domains=\[2\] and config.data.tabs=\[1\] '
                                         'disagree'):
        spec_from_config(both.data)
    split = parse_config(cfg, ["--config.data.splits.valid=('20220422', '20220425')"])
    assert tuple(split.data.splits.valid) == ('20220422', '20220425')
    # an experiment file may assign lists of either type to the empty tuple fields
    c = configs.base_config()
    c.data.domains = ['home', 'search']
    c.data.domains = [1, 2]
    c.data.tasks = ['is_click']
    assert tuple(c.data.domains) == (1, 2)


def test_experiment_points_that_narrow_the_domains(tmp_path):
    cfg = str(REPO / 'experiments' / 'narrow_settings.py')
    c = parse_config(cfg, ['--config.data.domains=(1,)', "--config.data.tasks=('is_click',)"])
    spec = spec_from_config(c.data)
    assert spec.domains == (1,) and spec.tasks == ('is_click',)
    from pepnet_jax.data.resolve import resolve
    assert resolve(c.data).generate['tabs'] == [0, 1, 2, 4]
    c.data.domains = (0, 1, 2, 3, 4)
    assert resolve(c.data).generate['tabs'] == [0, 1, 2, 3, 4]


def test_spec_json_round_trip_keeps_string_and_int_domains():
    spec = spec_from_config(kuairand_config(Path('/nowhere')))
    assert DataSpec.from_dict(json.loads(json.dumps(spec.to_dict()))) == spec
    s = dataclasses.replace(spec, domains=('home', 'search'))
    assert DataSpec.from_dict(json.loads(json.dumps(s.to_dict()))).domains == ('home', 'search')


@pytest.mark.slow  # two CLI training runs in subprocesses (~30 s); a compatibility path for old workdirs
def test_a_run_saved_with_the_old_field_names_resumes_and_evaluates(tmp_path):
    """A workdir whose config.json was written before data.domains existed (data.tabs, the
    KuaiRand values spelled out, no domain_column), trained by an old command line, resumes
    under today's config and evaluates."""
    data = write_kuairand_dir(tmp_path / 'kuairand', n_train=600, n_test=300)
    workdir = tmp_path / 'run'
    common = ['--config', str(REPO / 'experiments' / 'kuairand.py'),
              f'--config.data.dir={data}', f'--workdir={workdir}',
              '--config.model.tower=(8,)',
              '--config.model.ppnet_hidden=8', '--config.data.batch_size=64',
              '--config.train.patience=0', '--config.train.checkpoint_every=4',
              '--config.train.log_every=4', '--config.mesh.num_devices=1']

    def run(*extra):
        out = subprocess.run([sys.executable, str(REPO / 'run.py'), *common, *extra],
                             capture_output=True, text=True, env=cli_env(), timeout=600)
        assert out.returncode == 0, out.stdout[-2000:] + out.stderr[-2000:]
        return out.stdout
    run('--config.data.tabs=(0,1,2,4)', '--config.train.num_steps=4')  # the old spelling
    path = workdir / 'config.json'
    tree = json.loads(path.read_text())
    data_json = tree['data']
    for k in ('domains', 'domain_column'):
        data_json.pop(k)
    data_json.update(tabs=[0, 1, 2, 4], tasks=list(kuairand.TASKS), group_column='user_id')
    path.write_text(json.dumps(tree))
    out = run('--config.train.num_steps=8')  # today's spelling: empty = the format's default
    assert 'Resumed from checkpoint at step 4' in out
    out = run('--mode=evaluate', '--config.train.num_steps=8')
    assert 'checkpoint step 8' in out
