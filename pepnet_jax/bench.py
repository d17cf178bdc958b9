"""Throughput benchmark: training and inference examples/s on a fixed workload.

  python -m pepnet_jax.bench                       # small + large, paper structure
  python -m pepnet_jax.bench --workloads small,large,xl --updates sparse,dense \
      --task_gates split,separate --dtypes float32,bfloat16 --out bench.json

Workload (issue 2): batch 1024, embedding dim 16, 18 sparse features
(user_id 27,285; video_id 7,583 ('small'), 1,000,000 ('large') or 10,000,000
('xl'); author_id 5,000; tab 3 (domain); 8 user features of vocab 10; 6 video
features of vocab 50), 7 binary tasks, towers [256, 128, 64], gamma 2.
Batches are generated before timing; each figure is the median over
``--repeats`` timed runs of ``--steps`` steps after a warm-up compile and run.
Prints a table and saves JSON (and a PNG chart with ``--png``).
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import platform
import resource
import statistics
import time

import jax
import numpy as np

from pepnet_jax import configs, synthetic, train
from pepnet_jax.models import build_model

WORKLOADS = {'small': 7_583, 'large': 1_000_000, 'xl': 10_000_000}


def peak_memory_mb() -> dict:
  out = {'host_peak_rss_mb': resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}
  try:
    stats = jax.devices()[0].memory_stats() or {}
    if 'peak_bytes_in_use' in stats:
      out['device_peak_mb'] = stats['peak_bytes_in_use'] / 2**20
  except Exception:  # CPU devices have no memory stats
    pass
  return out


def step_flops(compiled) -> float | None:
  try:
    cost = compiled.cost_analysis()
    if isinstance(cost, (list, tuple)):
      cost = cost[0]
    return float(cost.get('flops', 0.0)) or None
  except Exception:
    return None


def bench_config(task_gates='split', update='sparse', dtype='float32', num_devices=1):
  c = configs.base_config()
  c.model.task_gates = task_gates
  c.model.dtype = dtype
  c.optim.sparse_group = 'embedding' if update == 'sparse' else ''
  c.mesh.num_devices = num_devices
  return c


def time_fn(fn, n_steps: int, repeats: int) -> list[float]:
  times = []
  for _ in range(repeats):
    t0 = time.perf_counter()
    fn(n_steps)
    times.append(time.perf_counter() - t0)
  return times


def run_one(workload: str, task_gates: str, update: str, dtype: str, num_devices: int,
            batch_size: int, steps: int, repeats: int, num_batches: int = 8) -> dict:
  infos, spec = synthetic.bench_features(video_vocab=WORKLOADS[workload])
  batches = synthetic.make_batches(infos, spec, num_batches, batch_size, seed=0)
  c = bench_config(task_gates, update, dtype, num_devices)
  model = build_model(c.model, infos, spec)
  steps_ = train.make_steps(model, c, total_steps=10**6)
  steps_, state = train.jit_steps(steps_, c, train.device_batch(batches[0]), jax.random.key(0))
  from pepnet_jax import sharding
  dev = [sharding.put_batch(train.device_batch(b), steps_.mesh) for b in batches]
  compiled = steps_.train_step.lower(state, dev[0]).compile()
  flops = step_flops(compiled)
  holder = {'state': state}

  def train_n(n):
    s = holder['state']
    for i in range(n):
      s, m = steps_.train_step(s, dev[i % len(dev)])
    jax.block_until_ready(m['loss'])
    holder['state'] = s

  def infer_n(n):
    p = holder['state'].params
    for i in range(n):
      out = steps_.eval_step(p, dev[i % len(dev)])
    jax.block_until_ready(out)

  train_n(3)  # warm-up
  infer_n(3)
  t_train = time_fn(train_n, steps, repeats)
  t_infer = time_fn(infer_n, steps, repeats)
  med_train = statistics.median(t_train) / steps
  med_infer = statistics.median(t_infer) / steps
  res = {
      'workload': workload, 'video_vocab': WORKLOADS[workload], 'task_gates': task_gates,
      'update': update, 'dtype': dtype, 'devices': num_devices, 'batch_size': batch_size,
      'train_examples_per_sec': batch_size / med_train,
      'infer_examples_per_sec': batch_size / med_infer,
      'train_step_ms': med_train * 1e3, 'infer_step_ms': med_infer * 1e3,
      'train_step_flops': flops,
      'train_gflops_per_sec': flops / med_train / 1e9 if flops else None,
      'params': int(sum(x.size for x in jax.tree.leaves(holder['state'].params))),
  }
  res.update(peak_memory_mb())
  return res


def matmul_peak_gflops(n: int = 2048, repeats: int = 5) -> float:
  """Measured float32 matrix-multiply rate of this machine (the roofline)."""
  a = jax.random.normal(jax.random.key(0), (n, n))
  f = jax.jit(lambda x: x @ x)
  f(a).block_until_ready()
  times = time_fn(lambda k: [f(a).block_until_ready() for _ in range(k)], 3, repeats)
  return 2 * n**3 * 3 / statistics.median(times) / 1e9


def format_rows(rows: list[dict]) -> str:
  head = (f'{"workload":8} {"gates":8} {"update":6} {"dtype":8} {"dev":>3} '
          f'{"train ex/s":>11} {"infer ex/s":>11} {"step ms":>8} {"GFLOP/s":>8}')
  lines = [head, '-' * len(head)]
  for r in rows:
    gf = f'{r["train_gflops_per_sec"]:.1f}' if r.get('train_gflops_per_sec') else '-'
    lines.append(f'{r["workload"]:8} {r["task_gates"]:8} {r["update"]:6} {r["dtype"]:8} '
                 f'{r["devices"]:>3} {r["train_examples_per_sec"]:>11,.0f} '
                 f'{r["infer_examples_per_sec"]:>11,.0f} {r["train_step_ms"]:>8.2f} {gf:>8}')
  return '\n'.join(lines)


def save_png(rows: list[dict], path: str):
  from matplotlib.backends.backend_agg import FigureCanvasAgg
  from matplotlib.figure import Figure
  fig = Figure(figsize=(max(6, 1.2 * len(rows)), 4))
  FigureCanvasAgg(fig)
  ax = fig.add_subplot(1, 1, 1)
  labels = [f'{r["workload"]}\n{r["task_gates"]}/{r["update"]}\n{r["dtype"]} x{r["devices"]}'
            for r in rows]
  x = np.arange(len(rows))
  ax.bar(x - 0.2, [r['train_examples_per_sec'] for r in rows], 0.4, label='train')
  ax.bar(x + 0.2, [r['infer_examples_per_sec'] for r in rows], 0.4, label='inference')
  ax.set_xticks(x, labels, fontsize=7)
  ax.set_ylabel('examples / s')
  ax.set_title(f'pepnet-jax throughput ({jax.default_backend()}, batch {rows[0]["batch_size"]})')
  ax.legend()
  fig.tight_layout()
  fig.savefig(path, dpi=120)


def main(argv=None):
  p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
  p.add_argument('--workloads', default='small,large')
  p.add_argument('--task_gates', default='split')
  p.add_argument('--updates', default='sparse')
  p.add_argument('--dtypes', default='float32')
  p.add_argument('--devices', default='1', help='comma list of device counts')
  p.add_argument('--batch_size', type=int, default=1024)
  p.add_argument('--steps', type=int, default=20)
  p.add_argument('--repeats', type=int, default=5)
  p.add_argument('--peak', action='store_true', help='also measure the float32 matmul peak')
  p.add_argument('--out', default='bench_results.json')
  p.add_argument('--png', default='', help='also draw a PNG chart here')
  p.add_argument('--append', action='store_true',
                 help='add to the results already in --out (e.g. a run with 8 devices)')
  a = p.parse_args(argv)
  rows = []
  combos = itertools.product(a.workloads.split(','), a.task_gates.split(','), a.updates.split(','),
                             a.dtypes.split(','), [int(d) for d in a.devices.split(',')])
  for wl, tg, up, dt, nd in combos:
    print(f'benchmarking {wl} gates={tg} update={up} dtype={dt} devices={nd} ...', flush=True)
    rows.append(run_one(wl, tg, up, dt, nd, a.batch_size, a.steps, a.repeats))
    print(format_rows(rows[-1:]).splitlines()[-1], flush=True)
  out = {'backend': jax.default_backend(), 'devices': [str(d) for d in jax.devices()],
         'cpu_count': os.cpu_count(), 'machine': platform.processor() or platform.machine(),
         'jax': jax.__version__, 'steps': a.steps, 'repeats': a.repeats, 'results': rows}
  if a.append and os.path.exists(a.out):
    with open(a.out) as f:
      old = json.load(f)
    out = dict(old, results=old['results'] + rows)
  if a.peak:
    out['matmul_peak_gflops'] = matmul_peak_gflops()
  rows = out['results']
  print('\n' + format_rows(rows))
  if out.get('matmul_peak_gflops'):
    peak = out['matmul_peak_gflops']
    print(f'float32 matmul peak: {peak:.1f} GFLOP/s; training steps reach ' + ', '.join(
        f'{r["workload"]}/{r["task_gates"]}/{r["update"]}/{r["dtype"]}/x{r["devices"]}: '
        f'{100 * r["train_gflops_per_sec"] / peak:.0f}%' for r in rows if r.get('train_gflops_per_sec')))
  with open(a.out, 'w') as f:
    json.dump(out, f, indent=2)
  print(f'saved {a.out}')
  if a.png:
    save_png(rows, a.png)
    print(f'saved {a.png}')
  return out


if __name__ == '__main__':
  main()
