"""Throughput of NextRec's PyTorch PEPNet on the pepnet-jax benchmark workload.

Run it with the python of a separate virtualenv that has torch and nextrec
(see benchmarks/README.md); pepnet-jax itself never imports torch:

  /tmp/peer_venv/bin/python benchmarks/peer_nextrec.py --out peer_results.json

Workload (as ``pepnet_jax/bench.py``): batch 1024, embedding dim 16, 18
sparse features (user_id 27,285; video_id 7,583 'small' / 1,000,000 'large';
author_id 5,000; tab 3 = the domain; 8 user features of vocab 10; 6 video
features of vocab 50), 7 binary tasks, towers [256, 128, 64], gamma 2 (NextRec
fixes its gates' scale at 2, and 1 for the gate before the logit layer).

Model configurations (``--configs``):
  default  NextRec's own gate defaults: EPNet gate hidden 128; one PPNet gate
           per task and per tower layer, hidden width = its output width.
  matched  gate hidden widths set as in pepnet-jax's base config: EPNet gate
           hidden = embedding width (288), PPNet gate hidden 64. NextRec still
           builds one gate per task per layer (pepnet-jax 'split' has one per
           layer, its output split over the tasks).

Training step variants (``--optims``):
  nextrec  what NextRec's ``fit`` runs per batch: ``compile(optimizer='adam')``
           (one Adam, lr 1e-3, over every parameter, embedding tables included,
           dense gradients) and clip_grad_norm_(1.0) over all parameters.
  paper    the paper's recipe as pepnet-jax trains it: Adagrad (lr 0.05,
           initial accumulator 0.1) on the tables with row-sparse gradients
           (nn.Embedding.sparse = True) + Adam on the rest, no clipping.

Timing: batches generated before timing; torch.set_num_threads(--threads);
warm-up steps, then the median of --repeats runs of --steps steps.
Training = forward + loss + backward + optimizer step; inference = forward
(with NextRec's sigmoid head) under torch.inference_mode() in eval mode.
FLOPs: Linear layers' 2*in*out per example (forward), split into gate units
and towers, plus torch's FlopCounterMode count of a forward and of a
forward+backward.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import tempfile
import time

import numpy as np

os.environ.setdefault('NEXTREC_LOG_DIR', os.path.join(tempfile.gettempdir(), 'nextrec_logs'))

import torch  # noqa: E402
import torch.nn as nn  # noqa: E402

import nextrec  # noqa: E402
from nextrec.basic.features import SparseFeature  # noqa: E402
from nextrec.basic.layers import GateMLP  # noqa: E402
from nextrec.models.multitask.pepnet import PEPNet  # noqa: E402

WORKLOADS = {'small': 7_583, 'large': 1_000_000}
NUM_TASKS = 7
EMBED_DIM = 16
TOWER = [256, 128, 64]
CONFIGS = {
    'default': dict(feature_gate_hidden=128, gate_hidden=None),
    'matched': dict(feature_gate_hidden=18 * EMBED_DIM, gate_hidden=64),
}


def feature_vocabs(video_vocab: int) -> list[tuple[str, int]]:
  out = [('user_id', 27_285), ('video_id', video_vocab), ('author_id', 5_000), ('tab', 3)]
  out += [(f'user_cat{i}', 10) for i in range(8)]
  out += [(f'video_cat{i}', 50) for i in range(6)]
  return out


def make_batches(vocabs, num_batches: int, batch_size: int, seed: int = 0, zipf: float = 1.1):
  """Random batches: Zipf-distributed ids (repeats within a batch), uniform domain."""
  rng = np.random.default_rng(seed)
  out = []
  for _ in range(num_batches):
    x = {}
    for name, vocab in vocabs:
      if name == 'tab':
        ids = rng.integers(0, vocab, batch_size)
      else:
        ids = (rng.zipf(zipf, batch_size) - 1) % vocab
      x[name] = torch.from_numpy(ids.astype(np.int64))
    y = torch.from_numpy((rng.random((batch_size, NUM_TASKS)) < 0.3).astype(np.float32))
    out.append((x, y))
  return out


def build(video_vocab: int, config: str) -> PEPNet:
  cfg = CONFIGS[config]
  feats = [SparseFeature(name, vocab_size=v, embedding_dim=EMBED_DIM, padding_idx=None)
           for name, v in feature_vocabs(video_vocab)]
  model = PEPNet(
      sparse_features=feats,
      target=[f'task{i}' for i in range(NUM_TASKS)],
      task=['binary'] * NUM_TASKS,
      mlp_params={'hidden_dims': list(TOWER), 'activation': 'relu', 'dropout': 0.0,
                  'norm_type': 'none'},
      feature_gate_mlp_params={'hidden_dim': cfg['feature_gate_hidden'], 'activation': 'relu',
                               'dropout': 0.0, 'use_bn': False},
      gate_mlp_params={'hidden_dim': cfg['gate_hidden'], 'activation': 'relu', 'dropout': 0.0,
                       'use_bn': False},
      domain_features=['tab'],
      user_features=['user_id'],
      item_features=['video_id', 'author_id'],  # NextRec has no separate author prior slot
      device='cpu',
      session_id='peer_bench',
  )
  return model


def linear_flops(model: nn.Module) -> dict:
  """Forward FLOPs per example of every nn.Linear (2*in*out), gates vs the rest."""
  gate_ids = set()
  n_gates = {'epnet': 0, 'ppnet': 0}
  for name, m in model.named_modules():
    if isinstance(m, GateMLP):
      n_gates['epnet' if name.startswith('epnet') else 'ppnet'] += 1
      gate_ids.update(id(x) for x in m.modules() if isinstance(x, nn.Linear))
  total = gate = 0
  gate_shapes = []
  for name, m in model.named_modules():
    if isinstance(m, nn.Linear):
      f = 2 * m.in_features * m.out_features
      total += f
      if id(m) in gate_ids:
        gate += f
        gate_shapes.append((name, m.in_features, m.out_features))
  return {'forward_linear_flops_per_example': total, 'gate_flops_per_example': gate,
          'gate_flop_share': gate / total, 'gate_units': n_gates['epnet'] + n_gates['ppnet'],
          'epnet_gate_units': n_gates['epnet'], 'ppnet_gate_units': n_gates['ppnet'],
          'gate_linear_shapes': sorted({('epnet' if n.startswith('epnet') else 'ppnet', i, o)
                                        for n, i, o in gate_shapes})}


def counted_flops(model, batch, train_step) -> dict:
  try:
    from torch.utils.flop_counter import FlopCounterMode
  except ImportError:
    return {}
  x, _ = batch
  bs = next(iter(x.values())).shape[0]
  model.eval()
  with torch.inference_mode(), FlopCounterMode(display=False) as fc:
    model.call_model(x)
  fwd = fc.get_total_flops()
  model.train()
  with FlopCounterMode(display=False) as fc:
    train_step(batch)
  return {'counted_forward_flops_per_example': fwd / bs,
          'counted_train_flops_per_example': fc.get_total_flops() / bs}


def make_train_step(model, optim: str):
  model.compile(optimizer='adam', optimizer_params={'lr': 1e-3}, loss='bce')
  if optim == 'nextrec':
    # The body of NextRec's BaseTrainer.train_epoch, minus its data loader and metrics.
    def step(batch):
      x, y = batch
      y_pred = model.training_adapter.forward(model, x)
      loss = model.compute_loss(y_pred, y) + model.add_reg_loss()
      model.optimizer_fn.zero_grad()
      loss.backward()
      if model.max_gradient_norm is not None:
        nn.utils.clip_grad_norm_(model.parameters(), model.max_gradient_norm)
      model.optimizer_fn.step()
      return loss
    return step
  if optim != 'paper':
    raise ValueError(f'unknown --optims entry {optim!r}')
  tables = list(model.embedding.embed_dict.values())
  for emb in tables:
    emb.sparse = True
  table_params = {id(e.weight) for e in tables}
  sparse_opt = torch.optim.Adagrad([e.weight for e in tables], lr=0.05,
                                   initial_accumulator_value=0.1, eps=1e-7)
  dense_opt = torch.optim.Adam([p for p in model.parameters() if id(p) not in table_params],
                               lr=1e-3)

  def step(batch):
    x, y = batch
    y_pred = model.training_adapter.forward(model, x)
    loss = model.compute_loss(y_pred, y)
    sparse_opt.zero_grad()
    dense_opt.zero_grad()
    loss.backward()
    sparse_opt.step()
    dense_opt.step()
    return loss
  return step


def timed(fn, steps: int, repeats: int) -> list[float]:
  out = []
  for _ in range(repeats):
    t0 = time.perf_counter()
    fn(steps)
    out.append(time.perf_counter() - t0)
  return out


def run_one(workload, config, optims, batch_size, steps, repeats, warmup, do_infer=True):
  torch.manual_seed(0)
  batches = make_batches(feature_vocabs(WORKLOADS[workload]), 8, batch_size)
  res = {'workload': workload, 'video_vocab': WORKLOADS[workload], 'config': config,
         'batch_size': batch_size, 'runs': []}
  for optim in optims:
    model = build(WORKLOADS[workload], config)
    step = make_train_step(model, optim)
    if not res.get('params'):
      res['params'] = sum(p.numel() for p in model.parameters())
      res['dense_params'] = sum(p.numel() for n, p in model.named_parameters()
                                if not n.startswith('embedding.'))
      res.update(linear_flops(model))
      res.update(counted_flops(model, batches[0], step))
    model.train()

    def train_n(n):
      for i in range(n):
        loss = step(batches[i % len(batches)])
      float(loss.detach())

    train_n(warmup)
    t = timed(train_n, steps, repeats)
    row = {'optim': optim, 'loadavg': loadavg(), 'train_step_ms': statistics.median(t) / steps * 1e3,
           'train_examples_per_sec': batch_size * steps / statistics.median(t),
           'train_times_s': t}
    if do_infer and optim == optims[0]:
      model.eval()

      def infer_n(n):
        with torch.inference_mode():
          for i in range(n):
            out = model.call_model(batches[i % len(batches)][0])
        float(out[0, 0])

      infer_n(warmup)
      ti = timed(infer_n, steps, repeats)
      res['infer_step_ms'] = statistics.median(ti) / steps * 1e3
      res['infer_examples_per_sec'] = batch_size * steps / statistics.median(ti)
      res['infer_times_s'] = ti
      res['infer_loadavg'] = loadavg()
    res['runs'].append(row)
    print(f'  {workload:6} {config:8} {optim:8} train {row["train_examples_per_sec"]:>9,.0f} ex/s'
          + (f'  infer {res["infer_examples_per_sec"]:>9,.0f} ex/s'
             if optim == optims[0] and 'infer_examples_per_sec' in res else ''), flush=True)
    del model, step
  return res


def matmul_gflops(n: int = 2048, repeats: int = 5, inner: int = 3) -> float:
  a = torch.randn(n, n)
  b = torch.randn(n, n)
  torch.mm(a, b)
  t = timed(lambda k: [torch.mm(a, b) for _ in range(k)], inner, repeats)
  return 2 * n**3 * inner / statistics.median(t) / 1e9


def loadavg():
  try:
    return list(os.getloadavg())
  except OSError:
    return None


def format_table(rows, optims) -> str:
  head = (f'{"workload":8} {"config":8} {"gates":>5} {"fwd MFLOP/ex":>12} {"gate %":>6} '
          + ' '.join(f'{"train " + o:>14}' for o in optims) + f' {"infer ex/s":>11}')
  lines = [head, '-' * len(head)]
  for r in rows:
    by = {x['optim']: x for x in r['runs']}
    cells = ' '.join(f'{by[o]["train_examples_per_sec"]:>14,.0f}' if o in by else f'{"-":>14}'
                     for o in optims)
    inf = r.get('infer_examples_per_sec')
    lines.append(f'{r["workload"]:8} {r["config"]:8} {r["gate_units"]:>5} '
                 f'{r["forward_linear_flops_per_example"] / 1e6:>12.2f} '
                 f'{100 * r["gate_flop_share"]:>5.1f}% {cells} '
                 + (f'{inf:>11,.0f}' if inf else f'{"-":>11}'))
  return '\n'.join(lines)


def main(argv=None):
  p = argparse.ArgumentParser(description=__doc__,
                              formatter_class=argparse.RawDescriptionHelpFormatter)
  p.add_argument('--workloads', default='small,large')
  p.add_argument('--configs', default='default,matched')
  p.add_argument('--optims', default='nextrec,paper')
  p.add_argument('--batch_size', type=int, default=1024)
  p.add_argument('--steps', type=int, default=20)
  p.add_argument('--repeats', type=int, default=5)
  p.add_argument('--warmup', type=int, default=3)
  p.add_argument('--threads', type=int, default=2)
  p.add_argument('--no_matmul', action='store_true')
  p.add_argument('--out', default='peer_results.json')
  a = p.parse_args(argv)
  torch.set_num_threads(a.threads)
  optims = a.optims.split(',')
  out = {'peer': f'nextrec {nextrec.__version__} PEPNet', 'torch': torch.__version__,
         'threads': torch.get_num_threads(), 'cpu_count': os.cpu_count(),
         'machine': platform.processor() or platform.machine(),
         'cpu_capability': getattr(torch.backends.cpu, 'get_cpu_capability', lambda: None)(),
         'steps': a.steps, 'repeats': a.repeats, 'warmup': a.warmup,
         'loadavg_start': loadavg(), 'results': []}
  print(f'nextrec {nextrec.__version__}, torch {torch.__version__}, threads '
        f'{torch.get_num_threads()}, load {out["loadavg_start"]}', flush=True)
  if not a.no_matmul:
    out['torch_matmul_gflops'] = matmul_gflops()
    print(f'torch float32 matmul 2048x2048: {out["torch_matmul_gflops"]:.1f} GFLOP/s', flush=True)
  for wl in a.workloads.split(','):
    for cfg in a.configs.split(','):
      out['results'].append(run_one(wl, cfg, optims, a.batch_size, a.steps, a.repeats, a.warmup))
  out['loadavg_end'] = loadavg()
  print('\n' + format_table(out['results'], optims))
  if 'torch_matmul_gflops' in out:
    print(f'torch float32 matmul 2048x2048: {out["torch_matmul_gflops"]:.1f} GFLOP/s')
  print(f'load average start {out["loadavg_start"]} end {out["loadavg_end"]}')
  with open(a.out, 'w') as f:
    json.dump(out, f, indent=2)
  print(f'saved {a.out}')
  return out


if __name__ == '__main__':
  main()
