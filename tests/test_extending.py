"""A user's own model and data format, each one file outside the library, end to end.

The test writes a package ``toyext`` into a temporary folder, as a user would next to their
clone: ``toyext/scene_csv.py`` (a format: one CSV per split, text user ids, scene names as
domains, two tasks) and ``toyext/esmm.py`` (an ESMM-style model: two tables per feature, a
parameter made in ``setup``, its own loss and probabilities), plus an experiment file. Nothing
in ``pepnet_jax`` is edited or monkeypatched: the config names both by import path, and
``run.py`` trains, evaluates and predicts through them (docs/extending.md).
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from conftest import REPO, cli_env

FORMAT = '''
"""Scene CSV: <dir>/<split>.csv with request_id, user_id (text), item_id, scene (text),
click, like. The domain is the scene name."""
from pathlib import Path

import pandas as pd

from pepnet_jax.data import formats

DTYPES = {'user_id': str, 'scene': str}


def _path(data_config, stem):
    return Path(data_config.get('dir')) / f'{stem}.csv'


def input_files(data_config, spec):
    return [_path(data_config, stem) for stem in dict(data_config.get('splits')).values()]


def read_splits(data_config, spec):
    out = {}
    for split, stem in dict(data_config.get('splits')).items():
        frame = pd.read_csv(_path(data_config, stem), dtype=DTYPES)
        out[split] = frame[frame['scene'].isin(spec.domains)].reset_index(drop=True)
    return out


def read_file(path, data_dir, spec, data_config):
    frame = pd.read_csv(path, dtype=DTYPES)
    return frame, {'request_id': frame['request_id'].to_numpy()}


formats.register(formats.DataFormat(
    name=__name__, read_splits=read_splits, input_files=input_files, read_file=read_file,
    domain_column='scene', group_column='user_id', tasks=('click', 'like'),
    domains=('home', 'search'), splits=dict(train='train', valid='valid', test='test'),
    features=lambda: [dict(name='user_id', kind='categorical'),
                      dict(name='item_id', kind='categorical'),
                      dict(name='scene', kind='categorical', shared=False)],
    groups=lambda: dict(domain=('scene',), user=('user_id',), item=('item_id',))))
'''

MODEL = '''
"""ESMM-style: pCTR and pCVR logits; 'like' is scored as pCTR * pCVR (click-through
conversion), so the model brings its own loss and probabilities."""
import flax.linen as nn
import jax
import jax.numpy as jnp

from pepnet_jax.models import layers, register


class ToyESMM(nn.Module):
    features: tuple
    num_domains: int
    embed_dim: int = 8

    def setup(self):
        # Two tables per feature: embed/<feature>/vec and embed/<feature>/bias.
        self.embed = layers.FeatureEmbeddings(self.features, {'vec': self.embed_dim, 'bias': 2},
                                              init_scale={'vec': 0.05, 'bias': 0.0})
        self.domain_bias = self.param('domain_bias', nn.initializers.zeros,
                                      (self.num_domains, 2))
        self.hidden = nn.Dense(16)
        self.out = nn.Dense(2)

    def lookup(self, inputs):
        return self.embed(inputs)

    def head(self, rows, inputs, domain):
        shared = [f.name for f in self.features if f.shared]
        x = jnp.concatenate([rows[n]['vec'] for n in shared], axis=-1)
        bias = sum(rows[n]['bias'] for n in rows)
        return self.out(nn.relu(self.hidden(x))) + bias + self.domain_bias[domain]

    def __call__(self, inputs, domain):
        return self.head(self.lookup(inputs), inputs, domain)

    def probabilities(self, outputs):
        p_ctr = jax.nn.sigmoid(outputs[:, 0])
        return jnp.stack([p_ctr, p_ctr * jax.nn.sigmoid(outputs[:, 1])], axis=-1)

    def loss(self, outputs, labels, label_mask, weight, task_weights):
        log_ctr = jax.nn.log_sigmoid(outputs[:, 0])
        log_ctcvr = log_ctr + jax.nn.log_sigmoid(outputs[:, 1])
        logs = jnp.stack([log_ctr, log_ctcvr], axis=-1)
        p = jnp.clip(jnp.exp(logs), 0.0, 1.0 - 1e-6)
        bce = -(labels * logs + (1.0 - labels) * jnp.log1p(-p))
        mask = label_mask * weight[:, None]
        per_task = jnp.sum(bce * mask, axis=0) / jnp.maximum(jnp.sum(mask, axis=0), 1.0)
        return jnp.sum(per_task * task_weights), per_task


@register(__name__)
def make(model_config, feature_infos, data_spec, common):
    return ToyESMM(features=tuple(common['features']), num_domains=common['num_domains'],
                   embed_dim=common['embed_dim'])
'''

EXPERIMENT = '''
"""The toy format and model, both named by import path: nothing in pepnet_jax lists them."""
from pepnet_jax import configs


def get_config(preset=''):
    c = configs.base_config()
    c.data.format = 'toyext.scene_csv'
    c.model.name = 'toyext.esmm'
    c.model.embed_dim = 8
    c.data.batch_size = 64
    c.data.eval_batch_size = 256
    c.optim.dense.lr = 1e-2
    c.train.num_steps = 120
    c.train.eval_every = 40
    c.train.log_every = 20
    c.train.checkpoint_every = 40
    c.train.oov_rate = 0.0
    c.mesh.num_devices = 1
    return c
'''


def _toy_logs(d: Path, seed: int = 0) -> Path:
    """Clicks depend on the user and the scene; likes happen only after clicks."""
    rng = np.random.default_rng(seed)
    d.mkdir(parents=True, exist_ok=True)
    taste = rng.normal(0, 1.5, 40)
    for split, n in (('train', 6000), ('valid', 1500), ('test', 1500)):
        user = rng.integers(0, 40, n)
        scene = rng.choice(['home', 'search', 'live'], n, p=[0.55, 0.35, 0.10])
        logit = taste[user] + np.where(scene == 'search', 1.0, -0.5)
        click = (rng.random(n) < 1 / (1 + np.exp(-logit))).astype(int)
        like = click * (rng.random(n) < 1 / (1 + np.exp(-(taste[user] - 1.0)))).astype(int)
        pd.DataFrame({'request_id': np.arange(n) + 10_000 * len(split), 'user_id':
                      [f'user-{u}' for u in user], 'item_id': rng.integers(0, 60, n),
                      'scene': scene, 'click': click, 'like': like}
                     ).to_csv(d / f'{split}.csv', index=False)
    return d


@pytest.fixture(scope='module')
def extension(tmp_path_factory):
    root = tmp_path_factory.mktemp('extending')
    pkg = root / 'toyext'
    pkg.mkdir()
    (pkg / '__init__.py').write_text('')
    (pkg / 'scene_csv.py').write_text(textwrap.dedent(FORMAT))
    (pkg / 'esmm.py').write_text(textwrap.dedent(MODEL))
    (root / 'toy_experiment.py').write_text(textwrap.dedent(EXPERIMENT))
    return root, _toy_logs(root / 'logs')


def _run(root: Path, *args) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(REPO / 'run.py'),
                           '--config', str(root / 'toy_experiment.py'), *args],
                          capture_output=True, text=True, env=cli_env(root), timeout=600,
                          cwd=root)


@pytest.fixture(scope='module')
def trained(extension):
    root, logs = extension
    workdir = root / 'run'
    out = _run(root, f'--workdir={workdir}', f'--config.data.dir={logs}')
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    return root, logs, workdir, out.stdout


def test_a_user_format_and_model_train_through_the_cli(trained):
    _, _, workdir, stdout = trained
    report = json.loads((workdir / 'report.json').read_text())
    assert list(report['domains']) == ['home', 'search']  # 'live' rows are filtered out
    assert list(report['overall']) == ['click', 'like']
    for task in ('click', 'like'):
        assert 0.6 < report['overall'][task]['auc'] <= 1.0, report['overall'][task]
    assert report['selected']['step'] in (40, 80, 120)  # the best validation step
    train_losses = [r['loss'] for r in map(json.loads, (workdir / 'metrics.jsonl').open())
                    if r['split'] == 'train']
    assert train_losses[-1] < train_losses[0]
    assert 'toyext.esmm' in stdout


def test_the_model_keeps_two_tables_per_feature_and_its_setup_parameter(trained):
    from pepnet_jax.training import checkpoint
    _, _, workdir, _ = trained
    params = checkpoint.load_state_arrays(str(workdir), 120)['params']
    for feature in ('user_id', 'item_id', 'scene'):
        assert set(params['embed'][feature]) == {'vec', 'bias'}
        assert np.asarray(params['embed'][feature]['bias']).shape[1] == 2
    assert np.abs(np.asarray(params['embed']['user_id']['bias'])).max() > 0  # row-sparse update
    assert np.asarray(params['domain_bias']).shape == (2, 2)
    assert np.abs(np.asarray(params['domain_bias'])).max() > 0  # trained by the dense group


def test_predict_scores_with_the_models_own_probabilities(trained):
    root, logs, workdir, _ = trained
    score = root / 'score.csv'
    pd.DataFrame({'request_id': [5, 6, 7, 8], 'user_id': ['user-1', 'user-2', 'new-user',
                                                           'user-3'],
                  'item_id': [1, 2, 3, 999], 'scene': ['home', 'search', 'search', 'home']}
                 ).to_csv(score, index=False)
    out_path = root / 'scores.csv'
    out = _run(root, f'--workdir={workdir}', f'--config.data.dir={logs}', '--mode=predict',
               f'--input={score}', f'--output={out_path}')
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    pred = pd.read_csv(out_path)
    assert list(pred.columns) == ['request_id', 'p_click', 'p_like']
    assert pred['request_id'].tolist() == [5, 6, 7, 8]
    assert 'Using the best validation step' in out.stdout  # the model the report scored
    assert (pred['p_like'] <= pred['p_click']).all()  # ESMM: pCTCVR = pCTR * pCVR
    assert '2 of 4 rows had an id not seen in training (user_id: 1, item_id: 1)' in out.stdout


def test_evaluate_mode_reproduces_the_validation_it_selected_by(trained):
    """--mode=evaluate --split=valid restores the best validation step and scores it as
    the training run's own validation of that step did (metrics.jsonl), per task and per
    domain: the same rows, model, probabilities (the model's own) and metrics."""
    root, logs, workdir, _ = trained
    out = _run(root, f'--workdir={workdir}', f'--config.data.dir={logs}', '--mode=evaluate',
               '--split=valid')
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    best = json.loads((workdir / 'report.json').read_text())['selected']['step']
    report = json.loads((workdir / f'report_valid_step{best}.json').read_text())
    assert list(report['domains']) == ['home', 'search']
    logged = [r for r in map(json.loads, (workdir / 'metrics.jsonl').open())
              if r['split'] == 'valid' and r['step'] == best]
    assert len(logged) == 1, best
    for task in ('click', 'like'):
        assert report['overall'][task]['auc'] == pytest.approx(logged[0][f'auc/{task}'],
                                                               abs=1e-6), task
        for dom in ('home', 'search'):
            assert report['domains'][dom][task]['auc'] == pytest.approx(
                logged[0][f'auc/{task}/domain_{dom}'], abs=1e-6), (task, dom)
    # ... and it is not a copy of the test report: another split, other rows.
    test = json.loads((workdir / 'report.json').read_text())
    assert report['overall']['click']['auc'] != test['overall']['click']['auc']
