"""The model registry: ``register`` (a decorator every model file applies to its factory),
``resolve`` (a name to its factory, importing the module that registers it) and
``build_model(config.model, feature_infos, data_spec)``.

A factory is ``fn(model_config, feature_infos, data_spec, common) -> Module``;
``common`` holds the arguments every model takes (features, num_tasks,
num_domains, embed_dim, dtype, row_multiple, dropout). What a model must provide:
``models/contract.py``. Model files import this module, never the package, so the
package's ``__init__`` can import them without a cycle.
"""

from __future__ import annotations

import dataclasses
import importlib
import os
import pkgutil
import re

from pepnet_jax.models import layers

PACKAGE = 'pepnet_jax.models'

MODELS: dict = {}  # name -> factory, filled by each model file's @register


def register(name: str):
  """Decorator: registers a model factory under ``name`` (see module docstring).

  Registering another factory under a taken name is an error; re-running the
  same definition (a reloaded module, a notebook cell) replaces it.
  """
  def deco(fn):
    old = MODELS.get(name)
    if old is not None and old is not fn and old.__qualname__ != fn.__qualname__:
      raise ValueError(f'model name {name!r} is already registered by '
                       f'{old.__module__}.{old.__qualname__}')
    MODELS[name] = fn
    return fn
  return deco


def _bundled_modules() -> list[str]:
  return sorted(m.name for m in pkgutil.iter_modules([os.path.dirname(__file__)])
                if not m.name.startswith('_'))


def resolve(name: str):
  """The factory registered as ``name``, importing the module that registers it
  (``pepnet_jax.models.<name>``, or the dotted module path ``name``)."""
  if name in MODELS:
    return MODELS[name]
  candidates = [f'{PACKAGE}.{name}'] if name.isidentifier() else []
  if '.' in name:
    candidates.append(name)
  for module in candidates:
    try:
      importlib.import_module(module)
    except ModuleNotFoundError as e:
      if e.name is None or not module.startswith(e.name):
        raise  # the module exists but one of its own imports is missing
      continue
    if name in MODELS:
      return MODELS[name]
    raise ValueError(f'config.model.name={name!r}: module {module} was imported but registers '
                     f'no model of that name (it needs @register({name!r}))')
  raise ValueError(
      f'config.model.name={name!r} is not a registered model ({", ".join(sorted(MODELS))}), '
      f'a module of pepnet_jax.models ({", ".join(_bundled_modules())}) or an importable '
      'dotted module path that registers it; see docs/extending.md')


def build_model(model_config, feature_infos, data_spec):
  """The Linen module named by ``config.model.name``, sized for the data."""
  factory = resolve(model_config.name)
  if model_config.get('domain_in_input', False):
    # Domain-side fields (shared=False) join E as well: a baseline without EPNet
    # otherwise never sees which domain a row comes from.
    feature_infos = [dataclasses.replace(f, shared=True) for f in feature_infos]
  common = dict(features=tuple(feature_infos), num_tasks=len(data_spec.tasks),
                num_domains=len(data_spec.domains), embed_dim=model_config.embed_dim,
                dtype=layers.dtype_from_name(model_config.get('dtype', 'float32')),
                row_multiple=model_config.get('table_row_multiple', 1),
                dropout=float(model_config.get('dropout', 0.0)))
  try:
    return factory(model_config, feature_infos, data_spec, common)
  except TypeError as e:
    # A module missing one of the common fields: name the model and the contract rather
    # than show the dataclass constructor's TypeError.
    m = re.search(r"unexpected keyword argument '(\w+)'", str(e))
    if not m or m.group(1) not in common:
      raise
    raise ValueError(
        f'config.model.name={model_config.name!r} ({factory.__module__}.{factory.__qualname__}) '
        f'does not accept the common argument {m.group(1)!r}: every model must accept '
        f'{", ".join(common)} (see pepnet_jax/models/contract.py, docs/extending.md)') from e
