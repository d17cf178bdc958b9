"""Time to quality of NextRec's PyTorch PEPNet, trained on the rows pepnet-jax trains on.

Run it with the python of the peer virtualenv (benchmarks/README.md); it reads the columnar
cache a pepnet-jax run wrote (plain .npy files and manifest.json, so no JAX is needed) and
trains on exactly those encoded rows:

  /tmp/peer_venv/bin/python benchmarks/peer_nextrec_quality.py \
      --cache runs/time_to_quality/now/cache --workdir runs/time_to_quality/peer

or, timed beside pepnet-jax runs on the same machine (the cache must exist first):

  python benchmarks/time_to_quality.py --run start=rev:e37f8be --run now \
      --run 'peer=cmd:/tmp/peer_venv/bin/python benchmarks/peer_nextrec_quality.py
             --cache runs/time_to_quality/now/cache'

The model is built as ``peer_nextrec.py`` builds it, with NextRec's own defaults: its gate
widths (EPNet gate hidden 128; one PPNet gate per task and tower layer), embeddings of
width 16 with ``padding_idx`` 0 (pepnet-jax's id for a missing value), the mean of a
multi-valued field's embeddings, the dense fields as they are, pepnet-jax's towers
[256, 128, 64] and no dropout. The training step is NextRec's ``fit`` step
(``peer_nextrec.make_train_step(model, 'nextrec')``: one Adam, lr 1e-3, over every
parameter, tables included, and gradient clipping at norm 1). Domain feature: the tab;
user prior: user_id; item prior: video_id and author_id.

Each epoch (batches of 1024 in a seeded shuffle) ends with a validation over the whole
validation split; the line ``valid @ STEP: mean AUC X`` is what time_to_quality.py stamps.
Training stops after ``--patience`` validations without improvement (or ``--epochs``), and
the test split is scored with the best epoch's parameters. Writes WORKDIR/report.json
({'mean': {'auc', 'logloss'}, 'tasks': {...}, 'step', 'epochs'}).
"""

from __future__ import annotations

import argparse
import copy
import glob
import json
import os
import sys
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import peer_nextrec  # noqa: E402  (sets NextRec's log folder before nextrec is imported)
import torch  # noqa: E402
from nextrec.basic.features import DenseFeature, SequenceFeature, SparseFeature  # noqa: E402
from nextrec.models.multitask.pepnet import PEPNet  # noqa: E402
from sklearn.metrics import roc_auc_score  # noqa: E402


def find_cache(path: str) -> str:
  """The cache folder (the one holding manifest.json) at or one level under ``path``."""
  if os.path.exists(os.path.join(path, 'manifest.json')):
    return path
  found = sorted(glob.glob(os.path.join(path, '*', 'manifest.json')))
  if len(found) != 1:
    raise SystemExit(f'--cache {path}: expected one pepnet-jax cache (a folder with '
                     f'manifest.json) there or one level below, found {len(found)}')
  return os.path.dirname(found[0])


def load(cache: str) -> tuple[list[dict], list[str], dict]:
  """The spec's features, the task names and {split: {column: array}} (memory-mapped)."""
  with open(os.path.join(cache, 'manifest.json')) as f:
    manifest = json.load(f)
  spec = manifest['config']['spec']
  splits = {s: {c: np.load(os.path.join(cache, s, f'{c}.npy'), mmap_mode='r') for c in cols}
            for s, cols in manifest['columns'].items()}
  return spec['features'], list(spec['tasks']), splits


def build(features: list[dict], tasks: list[str], splits: dict) -> tuple[PEPNet, dict]:
  """NextRec's PEPNet over the cache's fields; returns it and {name: (kind, column, width)}."""
  layout, s, d = {}, 0, 0
  sparse, seq, dense = [], [], []
  vmax = np.max([np.max(cols['sparse'], axis=0) for cols in splits.values()], axis=0)
  for f in features:
    if f['kind'] == 'dense':
      layout[f['name']] = ('dense', d, 1)
      dense.append(DenseFeature(f['name'], input_dim=1))
      d += 1
      continue
    w = int(f['max_len'])
    vocab = int(vmax[s:s + w].max()) + 1
    layout[f['name']] = ('sparse', s, w)
    if w == 1:
      sparse.append(SparseFeature(f['name'], vocab_size=vocab, embedding_dim=16, padding_idx=0))
    else:
      seq.append(SequenceFeature(f['name'], vocab_size=vocab, max_len=w, embedding_dim=16,
                                 combiner='mean', padding_idx=0))
    s += w
  model = PEPNet(
      dense_features=dense, sparse_features=sparse, sequence_features=seq,
      target=tasks, task=['binary'] * len(tasks),
      mlp_params={'hidden_dims': [256, 128, 64], 'activation': 'relu', 'dropout': 0.0,
                  'norm_type': 'none'},
      domain_features=['tab'], user_features=['user_id'],
      item_features=['video_id', 'author_id'], device='cpu', session_id='peer_quality')
  return model, layout


def batch(cols: dict, idx, layout: dict) -> tuple[dict, torch.Tensor]:
  sp = np.asarray(cols['sparse'][idx], np.int64)
  de = np.asarray(cols['dense'][idx], np.float32)
  x = {}
  for name, (kind, j, w) in layout.items():
    if kind == 'dense':
      x[name] = torch.from_numpy(de[:, j].copy())
    else:
      x[name] = torch.from_numpy(sp[:, j].copy() if w == 1 else sp[:, j:j + w].copy())
  y = torch.from_numpy((np.asarray(cols['labels'][idx]) == 1).astype(np.float32))
  return x, y


def predict(model, cols: dict, layout: dict, batch_size: int = 8192) -> np.ndarray:
  model.eval()
  n = cols['labels'].shape[0]
  out = []
  with torch.inference_mode():
    for a in range(0, n, batch_size):
      x, _ = batch(cols, slice(a, min(a + batch_size, n)), layout)
      out.append(model.call_model(x).float().numpy())
  model.train()
  return np.concatenate(out)


def scores(pred: np.ndarray, labels: np.ndarray, tasks: list[str]) -> dict:
  """AUC and logloss per task over the whole split, and their means (as pepnet-jax's report)."""
  per = {}
  for t, name in enumerate(tasks):
    keep = labels[:, t] >= 0
    y, p = (labels[keep, t] == 1).astype(np.float64), np.clip(pred[keep, t], 1e-7, 1 - 1e-7)
    per[name] = {'auc': float(roc_auc_score(y, p)),
                 'logloss': float(-np.mean(y * np.log(p) + (1 - y) * np.log(1 - p)))}
  mean = {k: float(np.mean([v[k] for v in per.values()])) for k in ('auc', 'logloss')}
  return {'mean': mean, 'tasks': per}


def main(argv=None):
  p = argparse.ArgumentParser(description=__doc__,
                              formatter_class=argparse.RawDescriptionHelpFormatter)
  p.add_argument('--cache', required=True, help='a pepnet-jax cache folder (or its parent)')
  p.add_argument('--workdir', required=True)
  p.add_argument('--epochs', type=int, default=6)
  p.add_argument('--patience', type=int, default=1)
  p.add_argument('--batch_size', type=int, default=1024)
  p.add_argument('--threads', type=int, default=2)
  p.add_argument('--seed', type=int, default=0)
  a = p.parse_args(argv)
  t0 = time.time()
  torch.set_num_threads(a.threads)
  torch.manual_seed(a.seed)
  cache = find_cache(a.cache)
  features, tasks, splits = load(cache)
  model, layout = build(features, tasks, splits)
  step = peer_nextrec.make_train_step(model, 'nextrec')
  model.train()
  train, n = splits['train'], splits['train']['labels'].shape[0]
  steps_per_epoch = n // a.batch_size
  print(f'nextrec PEPNet: {sum(q.numel() for q in model.parameters()):,} parameters; '
        f'{n:,} training rows, {steps_per_epoch} steps/epoch, batch {a.batch_size}; '
        f'cache {cache}', flush=True)
  best, best_state, since, history = None, None, 0, []
  for epoch in range(a.epochs):
    perm = np.random.default_rng([a.seed, epoch]).permutation(n)
    te = time.time()
    for b in range(steps_per_epoch):
      loss = step(batch(train, np.sort(perm[b * a.batch_size:(b + 1) * a.batch_size]), layout))
      if (b + 1) % 200 == 0:
        print(f'step {epoch * steps_per_epoch + b + 1:>8} | loss {float(loss.detach()):.4f} | '
              f'{(b + 1) * a.batch_size / (time.time() - te):,.0f} ex/s', flush=True)
    gstep = (epoch + 1) * steps_per_epoch
    v = scores(predict(model, splits['valid'], layout), np.asarray(splits['valid']['labels']),
               tasks)['mean']['auc']
    better = best is None or v > best[1]
    history.append({'step': gstep, 'mean_auc': v, 'seconds': round(time.time() - t0, 1)})
    print(f'  valid @ {gstep}: mean AUC {v:.4f}' + ('  (best)' if better else ''), flush=True)
    if better:
      best, best_state, since = (gstep, v), copy.deepcopy(model.state_dict()), 0
    else:
      since += 1
      if since >= a.patience:
        print(f'stopping: {since} validation(s) without improvement', flush=True)
        break
  model.load_state_dict(best_state)
  report = scores(predict(model, splits['test'], layout), np.asarray(splits['test']['labels']),
                  tasks)
  report.update(step=best[0], validations=history, model='nextrec PEPNet (its defaults)',
                nextrec=peer_nextrec.nextrec.__version__, torch=torch.__version__,
                threads=torch.get_num_threads(), cache=cache)
  os.makedirs(a.workdir, exist_ok=True)
  with open(os.path.join(a.workdir, 'report.json'), 'w') as f:
    json.dump(report, f, indent=2)
  print(f'test (step {best[0]}, best on validation): mean AUC {report["mean"]["auc"]:.4f} '
        f'logloss {report["mean"]["logloss"]:.4f}; {time.time() - t0:.0f} s in all', flush=True)


if __name__ == '__main__':
  main()
