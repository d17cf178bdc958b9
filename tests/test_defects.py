"""Small reported defects, one group per defect; each test failed before its fix."""

from __future__ import annotations

import ast
import dataclasses
import os
import re

import ml_collections
import numpy as np
import pandas as pd
import pytest

from conftest import REPO, import_cycles, import_graph, kuairand_config

# ------------------------------------------------------------------ 1. the data lock


def test_load_locks_the_cache_not_a_data_dir_it_never_generates(tmp_path, monkeypatch):
  """generate.rows > 0 with a format that never generates put .pepnet_lock in the user's data."""
  from pepnet_jax import configs
  from pepnet_jax.data import pipeline, prepare
  from pepnet_jax.data.resolve import resolve
  data, work = tmp_path / 'their_data', tmp_path / 'w'
  data.mkdir()
  c = configs.base_config()
  c.data.format, c.data.dir = 'aliccp', str(data)
  c.data.generate.rows = 1000  # the demo's setting, left on
  held = []
  monkeypatch.setattr(pipeline, 'load_datasets',
                      lambda d, w: held.extend(os.listdir(work / 'cache')) or 'loaded')
  assert prepare.load(resolve(c.data, str(work)), str(work)) == 'loaded'
  assert list(data.iterdir()) == []
  assert held == ['.pepnet_lock']


# ------------------------------------------------------------------ 2. the model contract


def test_model_missing_a_common_argument_names_the_model_and_the_contract(monkeypatch):
  """A model without num_domains failed with a bare TypeError from its constructor. Now a
  ValueError naming the model, its factory, the argument and the contract, word by word;
  any other TypeError is the factory's own and passes on."""
  import flax.linen as nn

  from pepnet_jax import models
  from pepnet_jax.models import registry
  monkeypatch.setattr(registry, 'MODELS', dict(registry.MODELS))

  class NoDomains(nn.Module):
    features: tuple
    num_tasks: int
    embed_dim: int
    dtype: object
    row_multiple: int
    dropout: float

  @models.register('defects_no_domains')
  def make(mc, infos, spec, common):
    return NoDomains(**common)

  @models.register('defects_own_type_error')
  def own_type_error(mc, infos, spec, common):
    return NoDomains(colour='red', **common)

  spec = ml_collections.ConfigDict(dict(tasks=('a',), domains=(0, 1)))
  mc = ml_collections.ConfigDict(dict(name='defects_no_domains', embed_dim=4))
  with pytest.raises(ValueError) as e:
    models.build_model(mc, [], spec)
  assert str(e.value) == (
      f"config.model.name='defects_no_domains' ({__name__}.{make.__qualname__}) does not "
      "accept the common argument 'num_domains': every model must accept features, "
      'num_tasks, num_domains, embed_dim, dtype, row_multiple, dropout (see '
      'pepnet_jax/models/contract.py, docs/extending.md)')
  assert isinstance(e.value.__cause__, TypeError)
  mc.name = 'defects_own_type_error'
  with pytest.raises(TypeError, match="unexpected keyword argument 'colour'"):
    models.build_model(mc, [], spec)


# ------------------------------------------------------------------ 3. table names


def test_table_name_with_a_slash_is_shown_as_given_beside_the_allowed_form():
  """A table 'user_id/short' was shown as embed/user_id/short: the allowed form itself."""
  from pepnet_jax.models import contract
  params = {'embed': {'user_id/short': np.zeros((4, 2))}}
  with pytest.raises(ValueError) as e:
    contract.check_tables(params, {'user_id': None})
  msg = str(e.value)
  assert "'user_id/short'" in msg and 'embed/<feature>/<table>' in msg
  assert 'embed/user_id/short' not in msg
  # a slash in a table's own name is as ambiguous to the optimizer's regexes
  with pytest.raises(ValueError, match="'deep/x'"):
    contract.check_tables({'embed': {'user_id': {'deep/x': np.zeros((4, 2))}}},
                          {'user_id': None})
  contract.check_tables({'embed': {'user_id': {'deep': np.zeros((4, 2))}}}, {'user_id': None})


# ------------------------------------------------------------------ 4. docs: checkpoint saves


def test_extending_doc_names_where_the_save_frequency_is_decided():
  """docs/extending.md sent readers to Checkpointer, which never reads checkpoint_every."""
  doc = (REPO / 'docs' / 'extending.md').read_text()
  rows = [r for r in doc.splitlines() if r.startswith('|') and 'checkpoint_every' in r]
  assert len(rows) == 1, rows
  module, func = re.search(r'\| `([\w.]+)\.(\w+)` \|$', rows[0]).groups()
  source = (REPO / 'pepnet_jax' / f'{module.replace(".", "/")}.py').read_text()
  (node,) = [n for n in ast.walk(ast.parse(source))
             if isinstance(n, ast.FunctionDef) and n.name == func]
  assert 'checkpoint_every' in ast.get_source_segment(source, node)


# ------------------------------------------------------------------ 5. README: sweep --dry_run


def test_readme_sweeps_section_documents_dry_run(capsys):
  """README's sweep section did not mention the sweep runner's --dry_run."""
  from pepnet_jax.sweeps import cli as sweep
  readme = (REPO / 'README.md').read_text()
  section = readme.split('## Sweeps and results tables', 1)[1].split('\n## ', 1)[0]
  assert '`--dry_run`' in section
  with pytest.raises(SystemExit):
    sweep.main(['--help'])
  assert '--dry_run' in capsys.readouterr().out


# ------------------------------------------------------------------ 6. sweep point names


@pytest.mark.parametrize('name', ['.', '..'])
def test_point_name_is_never_the_folder_itself_or_its_parent(name):
  """finish_name let '.' and '..' through, so a point ran in the sweep folder or its parent."""
  from pepnet_jax.sweeps import common
  assert common.finish_name(name) not in ('.', '..')
  assert common.point_name({'model.gamma': 1}, names=lambda over: name) not in ('.', '..')
  assert common.finish_name('a..b') == 'a..b'


# ------------------------------------------------------------------ 7. predict: empty input


@pytest.mark.parametrize('chunks', [(), 'one empty chunk'])
def test_empty_predict_input_is_a_data_error_naming_the_file(kuairand_dir, tmp_path, monkeypatch,
                                                             chunks):
  """read_input raised IndexError when the format read no rows from the input."""
  from pepnet_jax.evaluation import predict
  from pepnet_jax.data import formats, pipeline
  from pepnet_jax.data.errors import DataError
  cfg = kuairand_config(kuairand_dir)
  work = tmp_path / 'w'
  pipeline.load_datasets(cfg, work)
  fmt = formats.get('kuairand')
  some = tmp_path / 'some.csv'
  log = pd.read_csv(kuairand_dir / 'log_standard_4_08_to_4_21_pure.csv')
  log[log.tab.isin([0, 1, 2, 4])].head(5).to_csv(some, index=False)

  def read_nothing(path, data_dir, spec, data_config):
    if chunks:  # a format that yields a zero-row chunk instead of none
      frame, raw = fmt.read_file(some, data_dir, spec, data_config)
      yield frame.iloc[:0], {k: v[:0] for k, v in raw.items()}

  monkeypatch.setitem(formats._REGISTRY, 'kuairand',
                      dataclasses.replace(fmt, read_file_chunks=read_nothing))
  path = tmp_path / 'empty.csv'
  path.write_text('')
  config = ml_collections.ConfigDict(dict(data=cfg))
  with pytest.raises(DataError, match=re.escape(str(path))):
    predict.read_input(config, str(work), str(path))


# ------------------------------------------------------------------ 8. data_cache location


def test_bench_data_cache_is_configured_not_the_current_directory(tmp_path, monkeypatch):
  """The bench's generated data went to data_cache/ under whatever directory it ran in."""
  from pepnet_jax import bench
  monkeypatch.chdir(tmp_path)
  c = bench.kuairand_config(1000, 64)
  assert os.path.isabs(c.data.dir) and os.path.dirname(c.data.dir) == bench.DATA_CACHE
  assert not c.data.dir.startswith(str(tmp_path))
  mine = str(tmp_path / 'mine')
  c = bench.kuairand_config(1000, 64, data_cache=mine)
  assert os.path.dirname(c.data.dir) == mine and c.data.cache_dir.startswith(c.data.dir + os.sep)


def test_generated_data_of_experiments_is_not_under_the_current_directory(tmp_path, monkeypatch):
  """configs.use_generated_data (every generated-data experiment) wrote data_cache/ under the
  current directory; it is the checkout's data_cache/, or $PEPNET_DATA_CACHE."""
  from pepnet_jax import configs
  monkeypatch.delenv('PEPNET_DATA_CACHE', raising=False)
  monkeypatch.chdir(tmp_path)
  c = configs.use_generated_data(configs.base_config(), 1000)
  assert os.path.dirname(c.data.dir) == str(REPO / 'data_cache')
  assert c.data.cache_dir == os.path.join(c.data.dir, '.cache')
  monkeypatch.setenv('PEPNET_DATA_CACHE', 'elsewhere')
  c = configs.use_generated_data(configs.base_config(), 1000)
  assert os.path.dirname(c.data.dir) == str(tmp_path / 'elsewhere')


# ------------------------------------------------------------------ 9. one AUC


def test_generator_ceiling_uses_the_project_auc(tmp_path, monkeypatch):
  """kuairand_synth had its own AUC beside metrics.auc."""
  from pepnet_jax.evaluation import metrics
  from pepnet_jax.data import kuairand_synth as ks
  assert not hasattr(ks, 'auc')
  monkeypatch.setattr(metrics, 'auc', lambda y, s: 0.625)
  s = ks.generate(str(tmp_path), 2000, users=60, videos=50, authors=10, tabs=(0, 1),
                  progress=False)
  assert set(s['oracle_auc'].values()) == {0.625}


# ------------------------------------------------------------------ 10. Vocab.save


def _vocab(values):
  from pepnet_jax.data.vocab import Vocab
  from pepnet_jax.features import spec_from_config
  spec = spec_from_config(ml_collections.ConfigDict(dict(
      format='kuairand', features=[dict(name='vid', column='vid', kind='categorical')],
      tasks=('is_click',), tabs=(0, 1))))
  return Vocab.fit(pd.DataFrame({'vid': values}), spec)


def test_vocab_save_interrupted_between_files_is_never_read_as_a_mix(tmp_path, monkeypatch):
  """A save stopped between its two renames left new keys beside old metadata, read silently."""
  from pepnet_jax.data import vocab as vocab_lib
  from pepnet_jax.data.errors import DataError
  d = tmp_path / 'vocab'
  _vocab([10, 30]).save(d)
  assert vocab_lib.Vocab.load(d).vocab_size('vid') == 4
  real = os.replace

  def replace(src, dst):
    if str(dst).endswith(vocab_lib.VOCAB_JSON):
      raise KeyboardInterrupt  # killed after the keys, before the metadata
    real(src, dst)

  monkeypatch.setattr(vocab_lib.os, 'replace', replace)
  with pytest.raises(KeyboardInterrupt):
    _vocab([1, 2, 3, 4, 5]).save(d)
  monkeypatch.setattr(vocab_lib.os, 'replace', real)
  with pytest.raises(DataError, match='interrupted'):
    vocab_lib.Vocab.load(d)
  _vocab([1, 2, 3, 4, 5]).save(d)  # the next save heals it
  assert vocab_lib.Vocab.load(d).vocab_size('vid') == 7
  assert sorted(p.name for p in d.iterdir()) == [vocab_lib.VOCAB_JSON, vocab_lib.VOCAB_KEYS]


def test_atomic_write_replaces_whole_or_leaves_the_old_file(tmp_path):
  """The one write-then-rename helper (#23): a clean exit replaces the file, an error keeps
  the old content, and no temporary file is left either way."""
  from pepnet_jax import files
  path = tmp_path / 'status.json'
  path.write_text('old')
  with pytest.raises(RuntimeError):
    with files.atomic_write(path) as f:
      f.write('half of the new')
      raise RuntimeError('killed')
  assert path.read_text() == 'old'
  with files.atomic_write(path) as f:
    f.write('new')
  assert path.read_text() == 'new'
  with files.atomic_write(tmp_path / 'a.npz', 'wb') as f:
    np.savez(f, x=np.arange(3))
  np.testing.assert_array_equal(np.load(tmp_path / 'a.npz')['x'], np.arange(3))
  assert sorted(p.name for p in tmp_path.iterdir()) == ['a.npz', 'status.json']


def test_the_package_has_no_import_circle():
  """#23: models/__init__ and the model files imported each other (register lived in the
  package), and data/formats.py imported features for type names; imports inside functions
  and under TYPE_CHECKING count."""
  graph = import_graph(function_level=True)
  assert 'pepnet_jax.models.registry' in graph and len(graph) > 30
  cycles = import_cycles(graph)
  assert not cycles, cycles


def test_table_errors_name_the_table_its_shape_and_the_batch_features():
  """check_tables and rows_at, the contract's two table checks, word by word."""
  from pepnet_jax.models import contract
  with pytest.raises(ValueError) as e:
    contract.check_tables({'embed': {'item': np.zeros((4, 2))}}, {'user_id': None, 'tab': None})
  assert str(e.value) == ("model table 'embed/item': tables live at embed/<feature> or "
                          "embed/<feature>/<table>, but 'item' is not a feature of the batch "
                          "(['tab', 'user_id'])")
  with pytest.raises(ValueError) as e:
    contract.check_tables({'embed': {'user_id': {'deep': np.zeros((4, 2, 3))}}},
                          {'user_id': None})
  assert str(e.value) == ("model table 'embed/user_id/deep' has shape (4, 2, 3); a table must "
                          "be 2-D [rows, width]")
  contract.check_tables({'towers': {'kernel': np.zeros((2, 2, 2))}}, {})  # no tables: fine
  rows = {'user_id': {'deep': 'R'}}
  assert contract.rows_at(rows, ('embed', 'user_id', 'deep')) == 'R'
  for path in (('embed', 'user_id', 'wide'), ('embed', 'video_id')):
    with pytest.raises(ValueError) as e:
      contract.rows_at(rows, path)
    assert str(e.value) == (f"lookup() returned no rows for table {'/'.join(path)!r}; it must "
                            'return rows for every table it owns (see models/contract.py)')
  with pytest.raises(ValueError, match="'embed/user_id/deep/x'"):
    contract.rows_at(rows, ('embed', 'user_id', 'deep', 'x'))  # rows, not a dict, at 'deep'


def test_dtype_and_activation_names_are_checked_with_the_choices_listed():
  import jax.numpy as jnp

  from pepnet_jax.models import layers
  assert layers.dtype_from_name('float16') == jnp.float16
  assert layers.dtype_from_name('bfloat16') == jnp.bfloat16
  with pytest.raises(ValueError) as e:
    layers.dtype_from_name('int8')
  assert str(e.value) == ("config.model.dtype='int8' is not one of "
                          "['bfloat16', 'float16', 'float32']")
  with pytest.raises(ValueError) as e:
    layers.activation_fn('swish2')
  assert str(e.value).startswith("config.model.activation='swish2' is not one of ['")
  assert "'relu'" in str(e.value) and "'gelu'" in str(e.value)
