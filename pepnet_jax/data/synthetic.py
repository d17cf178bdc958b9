"""In-memory synthetic workloads: the benchmark's feature layout and batches.

Used by the benchmark and the unit tests, where no files are involved. The
labels depend on the ids through a fixed random logit, so a model can learn
them (a train step must lower the loss on such a batch).
"""

from __future__ import annotations

import dataclasses

import numpy as np


@dataclasses.dataclass(frozen=True)
class Info:
  """Same fields as ``features.FeatureInfo``: what the model needs of a feature."""
  name: str
  kind: str
  vocab_size: int
  max_len: int = 1
  shared: bool = True


@dataclasses.dataclass(frozen=True)
class Spec:
  """The slice of ``features.DataSpec`` that models read."""
  tasks: tuple
  domains: tuple
  groups: dict


def bench_features(video_vocab: int = 7583, user_vocab: int = 27285, author_vocab: int = 5000,
                   num_domains: int = 3):
  """The benchmark workload: 18 sparse features (issue 2).

  user_id, video_id, author_id, tab (domain), 8 user categorical features of
  vocab 10 and 6 video categorical features of vocab 50.
  """
  infos = [Info('user_id', 'categorical', user_vocab), Info('video_id', 'categorical', video_vocab),
           Info('author_id', 'categorical', author_vocab),
           Info('tab', 'categorical', num_domains)]
  infos += [Info(f'user_cat{i}', 'categorical', 10) for i in range(8)]
  infos += [Info(f'video_cat{i}', 'categorical', 50) for i in range(6)]
  spec = Spec(tasks=tuple(f'task{i}' for i in range(7)), domains=tuple(range(num_domains)),
              groups={'domain': ('tab',), 'user': ('user_id',), 'item': ('video_id',),
                      'author': ('author_id',)})
  return tuple(infos), spec


def make_batches(infos, spec, num_batches: int, batch_size: int, seed: int = 0,
                 zipf: float = 1.1):
  """Random batches in the pipeline's batch format, ids Zipf-distributed.

  Repeated ids inside a batch (as in real logs) exercise the row-sparse
  update's duplicate handling.
  """
  rng = np.random.default_rng(seed)
  t = len(spec.tasks)
  weights = {f.name: rng.normal(size=(f.vocab_size, t)).astype(np.float32) * 0.7
             for f in infos if f.kind != 'dense'}
  out = []
  for _ in range(num_batches):
    feats = {}
    logit = np.zeros((batch_size, t), np.float32) - 1.0
    domain = rng.integers(0, len(spec.domains), batch_size).astype(np.int32)
    for f in infos:
      if f.name == 'tab':
        ids = domain.copy()
      elif f.kind == 'dense':
        feats[f.name] = rng.normal(size=batch_size).astype(np.float32)
        continue
      else:
        ids = (rng.zipf(zipf, batch_size * f.max_len) - 1) % f.vocab_size
        ids = ids.reshape((batch_size, f.max_len) if f.kind == 'multi' else (batch_size,))
      feats[f.name] = ids.astype(np.int32)
      first = ids[:, 0] if ids.ndim == 2 else ids
      logit += weights[f.name][first]
    labels = (rng.random((batch_size, t)) < 1 / (1 + np.exp(-logit))).astype(np.float32)
    out.append({'features': feats, 'labels': labels,
                'label_mask': np.ones((batch_size, t), np.float32), 'domain': domain,
                'group': feats.get('user_id', np.zeros(batch_size, np.int32)).astype(np.int64),
                'weight': np.ones(batch_size, np.float32)})
  return out
