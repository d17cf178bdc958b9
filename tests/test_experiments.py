"""Every experiment file, and every point of its sweep, still parses into a config whose data
spec, model and training settings validate (no data is read, nothing trains)."""

from __future__ import annotations

import glob
import os

import pytest

from conftest import REPO
from pepnet_jax import configs, features
from pepnet_jax.models import resolve
from pepnet_jax.sweeps import expand

FILES = sorted(glob.glob(str(REPO / 'experiments' / '*.py')))


def _check(c, where):
    spec = features.spec_from_config(c.data)
    assert spec.tasks and spec.domains, where
    configs.validate_train(c)
    resolve(c.model.name)  # the model is found


@pytest.mark.parametrize('path', FILES, ids=[os.path.basename(p) for p in FILES])
def test_experiment_and_its_sweep_points_parse(path):
    _check(expand.parse_config(path, []), path)
    decl = expand.load_declaration(path, 'get_sweep')
    if decl is not None:
        points = expand.expand_points(decl)
        for name, c in expand.validate(path, points).items():
            _check(c, f'{path} point {name}')
    assert len(FILES) >= 10
