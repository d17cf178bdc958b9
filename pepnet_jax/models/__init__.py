"""Model registry: ``build_model(config.model, feature_infos, data_spec)``."""

from __future__ import annotations

import dataclasses

from pepnet_jax.models import layers
from pepnet_jax.models.pepnet import PEPNet


def _pepnet(mc, infos, spec, common):
  g = spec.groups
  priors = tuple(g.get('user', ())) + tuple(g.get('item', ())) + tuple(g.get('author', ()))
  return PEPNet(
      domain_inputs=tuple(g.get('domain', ())), prior_inputs=priors,
      tower=tuple(mc.tower), epnet_hidden=mc.epnet_hidden, ppnet_hidden=mc.ppnet_hidden,
      gamma=mc.gamma, use_epnet=mc.use_epnet, use_ppnet=mc.use_ppnet,
      gate_stop_gradient=mc.gate_stop_gradient, task_gates=mc.task_gates,
      domain_towers=mc.domain_towers, activation=mc.activation, **common)


MODELS = {'pepnet': _pepnet}


def register(name):
  def deco(fn):
    MODELS[name] = fn
    return fn
  return deco


def build_model(model_config, feature_infos, data_spec):
  """The Linen module named by ``config.model.name``, sized for the data."""
  name = model_config.name
  if name not in MODELS:
    raise ValueError(f'config.model.name={name!r} is not one of {sorted(MODELS)}')
  if model_config.get('domain_in_input', False):
    # Domain-side fields (shared=False) join E as well: a baseline without EPNet
    # otherwise never sees which domain a row comes from.
    feature_infos = [dataclasses.replace(f, shared=True) for f in feature_infos]
  common = dict(features=tuple(feature_infos), num_tasks=len(data_spec.tasks),
                num_domains=len(data_spec.domains), embed_dim=model_config.embed_dim,
                dtype=layers.dtype_from_name(model_config.get('dtype', 'float32')),
                row_multiple=model_config.get('table_row_multiple', 1),
                dropout=float(model_config.get('dropout', 0.0)))
  return MODELS[name](model_config, feature_infos, data_spec, common)

from pepnet_jax.models import baselines  # noqa: E402,F401  (registers the baselines)
from pepnet_jax.models import linear  # noqa: E402,F401  (registers 'lr')
