"""Training the out-of-vocabulary rows, so unseen users and videos score sensibly.

Ids unseen in training map to the OOV row (id 1) at prediction time. If no
training row ever uses that row it keeps its random initial value, and a new
user's scores are arbitrary (a measured p_is_follow of 0.26 for unseen users
against 0.002 for known ones). Replacing a small random share of the ids in
each training batch by OOV teaches that row the average behaviour of a user
(or video) the model knows nothing about, as id dropout does in production
recommenders. The choice depends on (seed, step) only, so resumed runs see
the same batches.
"""

from __future__ import annotations

import numpy as np

from pepnet_jax.features import OOV_ID, PAD_ID

ID_KINDS = ('categorical', 'multi')


def id_features(infos) -> list[str]:
  """Features whose ids get dropped: shared categorical / multi-valued ones
  (the domain-side fields, shared=False, keep their values: a domain is never
  unseen)."""
  return [f.name for f in infos if f.kind in ID_KINDS and f.shared]


def drop_ids(features: dict, names, rate: float, seed: int, step: int) -> dict:
  """``features`` with about ``rate`` of the ids of ``names`` set to OOV
  (padding slots stay padding)."""
  if rate <= 0 or not names:
    return features
  rng = np.random.default_rng([int(seed), int(step), 0x00F])
  out = dict(features)
  for name in names:
    ids = np.asarray(features[name])
    drop = (rng.random(ids.shape) < rate) & (ids != PAD_ID)
    out[name] = np.where(drop, np.asarray(OOV_ID, ids.dtype), ids)
  return out
