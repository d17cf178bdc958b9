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

The ``kuairand`` workload is the step users run (``--workloads kuairand
--batch_sizes 1024,4096``): ``experiments/kuairand.py``'s model and ``converge``
recipe (the full 40-field KuaiRand preset, dropout, L2 on touched rows, OOV rows,
warm-up) on real batches of a generated KuaiRand-format log at KuaiRand-Pure's
user / video / author counts (``--kuairand_rows``, made once under the
checkout's ``data_cache/``, or ``--data_cache``). It reports the device step
alone and the step fed as the trainer feeds it (batch assembly, OOV rows and
the transfer included). It uses
only the library's public training functions, so ``PYTHONPATH=<older checkout>
python pepnet_jax/bench.py --workloads kuairand`` times an older revision's
step on the same data (benchmarks/bench_revisions.sh does both).
"""

from __future__ import annotations

import argparse
import ast
import importlib
import itertools
import json
import os
import platform
import resource
import statistics
import time

import jax
import numpy as np

from pepnet_jax import configs
from pepnet_jax.models import build_model


def _module(path: str, before: str):
  """The library module at ``path``, or at ``before`` where the imported package predates the
  layout change (cb13047) that moved it: benchmarks/bench_revisions.sh imports an older
  checkout under this file. Decided by the package's files, not by trying the import: an
  editable install's finder would answer for the new path from this checkout."""
  import pepnet_jax
  here = os.path.join(os.path.dirname(pepnet_jax.__file__), *path.split('.')[1:]) + '.py'
  return importlib.import_module(path if os.path.exists(here) else before)


synthetic = _module('pepnet_jax.data.synthetic', 'pepnet_jax.synthetic')
train = _module('pepnet_jax.training.train', 'pepnet_jax.train')

WORKLOADS = {'small': 7_583, 'large': 1_000_000, 'xl': 10_000_000}
# The kuairand workload's generated data: the checkout's data_cache/ (where the README's
# commands, run from the checkout, keep it), whatever the current directory.
DATA_CACHE = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                          'data_cache')


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


def apply_overrides(c, overrides=()):
  """Sets each ``PATH=VALUE`` of ``overrides`` (``--set``, e.g. model.epnet_hidden=0) on ``c``;
  VALUE is read as a Python literal where it parses as one (0, 1e-3, (256, 128)), else a string."""
  for item in overrides:
    path, sep, text = item.partition('=')
    if not sep or not path:
      raise ValueError(f'--set {item!r}: use PATH=VALUE, e.g. model.epnet_hidden=0')
    try:
      value = ast.literal_eval(text)
    except (ValueError, SyntaxError):
      value = text
    *parents, leaf = path.split('.')
    node = c
    for name in parents:
      node = node.get(name) if hasattr(node, 'get') else None
      if node is None:
        raise ValueError(f'--set {item!r}: the config has no {path!r}')
    if leaf not in node:
      raise ValueError(f'--set {item!r}: the config has no {path!r}')
    node[leaf] = value
  return c


def bench_config(task_gates='split', update='sparse', dtype='float32', num_devices=1,
                 overrides=()):
  c = configs.base_config()
  c.model.task_gates = task_gates
  c.model.dtype = dtype
  c.optim.sparse_group = 'embedding' if update == 'sparse' else ''
  c.mesh.num_devices = num_devices
  return apply_overrides(c, overrides)


def compiled_steps(model, c, batches):
  """(jitted steps, {'state': initial state}, the batches on the device, FLOPs of a step)."""
  steps_ = train.make_steps(model, c, total_steps=10**6)
  steps_, state = train.jit_steps(steps_, c, train.device_batch(batches[0]), jax.random.key(0))
  dev = [train.to_device(b, steps_.mesh) for b in batches]
  flops = step_flops(steps_.train_step.lower(state, dev[0]).compile())
  return steps_, {'state': state}, dev, flops


def device_loop(steps_, holder: dict, dev: list):
  """``n -> None``: n training steps on batches already on the device (``holder`` keeps
  the state between calls)."""
  def train_n(n):
    s = holder['state']
    for i in range(n):
      s, m = steps_.train_step(s, dev[i % len(dev)])
    jax.block_until_ready(m['loss'])
    holder['state'] = s
  return train_n


def _allocator() -> str:
  """How host memory is handed out in this process (hostmem.py; older revisions have none)."""
  import pepnet_jax
  if not os.path.exists(os.path.join(os.path.dirname(pepnet_jax.__file__), 'hostmem.py')):
    return 'as the C library has it (this revision predates hostmem)'
  from pepnet_jax import hostmem
  state = hostmem.keep_freed_memory()
  return 'freed blocks kept (hostmem)' if state == 'kept' else f'as the C library has it ({state})'


def kernel_share(before, after, n_steps: int) -> dict:
  """What the process asked of the kernel over ``n_steps`` steps, from two getrusage
  readings: page faults per step and the share of its CPU time spent in the kernel. A fresh
  buffer faulted in every step shows here (hostmem.py); ``PEPNET_JAX_MALLOC=system``
  brings glibc's behaviour back for a comparison."""
  user, system = after.ru_utime - before.ru_utime, after.ru_stime - before.ru_stime
  return {'page_faults_per_step': (after.ru_minflt - before.ru_minflt) / n_steps,
          'kernel_cpu_share': system / (user + system) if user + system else None}


def time_fn(fn, n_steps: int, repeats: int) -> list[float]:
  times = []
  for _ in range(repeats):
    t0 = time.perf_counter()
    fn(n_steps)
    times.append(time.perf_counter() - t0)
  return times


def run_one(workload: str, task_gates: str, update: str, dtype: str, num_devices: int,
            batch_size: int, steps: int, repeats: int, num_batches: int = 8,
            overrides=()) -> dict:
  infos, spec = synthetic.bench_features(video_vocab=WORKLOADS[workload])
  batches = synthetic.make_batches(infos, spec, num_batches, batch_size, seed=0)
  c = bench_config(task_gates, update, dtype, num_devices, overrides)
  model = build_model(c.model, infos, spec)
  steps_, holder, dev, flops = compiled_steps(model, c, batches)
  train_n = device_loop(steps_, holder, dev)

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


def kuairand_config(rows: int, batch_size: int, data_cache: str | None = None, overrides=()):
  """experiments/kuairand.py's training config on generated data of ``rows`` log rows
  at KuaiRand-Pure's sizes (the quality data's shape, fewer rows), kept under
  ``data_cache`` (default ``DATA_CACHE``)."""
  c = configs.base_config()
  configs.use_generated_data(c, rows, users=27_285, videos=7_583, authors=6_510)
  root = os.path.abspath(data_cache or DATA_CACHE)
  # The folder's name from use_generated_data, moved under ``root`` (older revisions' library
  # names it relative to the current directory, newer ones under their checkout).
  c.data.dir = os.path.join(root, os.path.basename(os.path.normpath(c.data.dir)))
  c.data.cache_dir = os.path.join(c.data.dir, '.cache')
  configs.apply_recipe(c, 'converge', max_epochs=20)
  c.data.features = []  # the format's full preset: 40 fields
  c.data.batch_size = batch_size
  return apply_overrides(c, overrides)


def kuairand_batches(ds, c, spec, infos):
  """The first epoch's training batches on the host as the trainer makes them one by one
  (steps 1, 2, ...: the OOV rows of ``config.train.oov_rate`` dropped), with only public
  training functions, so an older revision's library makes them the same way."""
  cold_start = _module('pepnet_jax.training.cold_start', 'pepnet_jax.cold_start')
  cold, kinds = cold_start.entity_features(spec), {f.name: f.kind for f in infos}
  for step, b in enumerate(ds.train_batches(c.data.batch_size, seed=c.data.seed, epoch=0), 1):
    b['features'] = train.drop_cold_rows(b['features'], cold, kinds, float(c.train.oov_rate),
                                         c.data.seed, step, 1, None)
    yield b


def run_kuairand(batch_size: int, steps: int, repeats: int, rows: int, workdir: str,
                 data_cache: str | None = None, overrides=()) -> dict:
  """The real training step (see the module docstring); every figure a median."""
  c = kuairand_config(rows, batch_size, data_cache, overrides)
  datasets, infos, spec, _, model = train.setup_run(c, workdir)
  ds = datasets['train']
  n_batches = min(steps, ds.num_train_batches(batch_size))
  if n_batches < 2:
    raise ValueError(f'--kuairand_rows={rows} gives {ds.num_rows} training rows: too few '
                     f'for batches of {batch_size}')
  t0 = time.perf_counter()
  host = list(itertools.islice(kuairand_batches(ds, c, spec, infos), n_batches))
  host_ms = (time.perf_counter() - t0) / n_batches * 1e3
  steps_, holder, dev, flops = compiled_steps(model, c, host)
  device_only = device_loop(steps_, holder, dev)

  def host_fed(n):
    """Steps fed as this revision's trainer feeds them: its ``device_batches`` (batches made
    and transferred in a background thread) where it has one, else one by one on the main
    thread (assembly, OOV rows, transfer); the finiteness flag read one step late."""
    s, pending = holder['state'], None
    threaded = getattr(train, 'device_batches', None)
    if threaded:
      gen = threaded(ds, c, steps_, ds.num_train_batches(batch_size), 0, spec, infos)
    else:
      gen = (train.to_device(b, steps_.mesh) for b in kuairand_batches(ds, c, spec, infos))
    try:
      for _ in range(n):
        s, m = steps_.train_step(s, next(gen))
        if pending is not None:
          bool(pending['finite'])
        pending = m
      jax.block_until_ready(m['loss'])
    finally:
      gen.close()
    holder['state'] = s

  device_only(3)
  host_fed(2)
  before = resource.getrusage(resource.RUSAGE_SELF)
  t_dev = statistics.median(time_fn(device_only, steps, repeats)) / steps
  kernel = kernel_share(before, resource.getrusage(resource.RUSAGE_SELF), steps * repeats)
  t_fed = statistics.median(time_fn(host_fed, min(steps, n_batches), repeats)) / min(steps, n_batches)
  res = {
      'workload': 'kuairand', 'video_vocab': 7_583, 'task_gates': c.model.task_gates,
      'update': 'sparse' if c.optim.sparse_group else 'dense', 'dtype': c.model.dtype,
      'devices': 1, 'batch_size': batch_size, 'recipe': c.train.recipe,
      'fields': len(infos), 'rows': rows,
      'train_examples_per_sec': batch_size / t_dev,
      'fed_train_examples_per_sec': batch_size / t_fed,
      'train_step_ms': t_dev * 1e3, 'fed_step_ms': t_fed * 1e3, 'host_batch_ms': host_ms,
      **kernel,
      'train_step_flops': flops,
      'train_gflops_per_sec': flops / t_dev / 1e9 if flops else None,
      'params': int(sum(x.size for x in jax.tree.leaves(holder['state'].params))),
  }
  params = holder['state'].params
  ev = [train.to_device(b, steps_.mesh) for b in host]

  def infer_n(n):
    for i in range(n):
      out = steps_.eval_step(params, ev[i % len(ev)])
    jax.block_until_ready(out)

  infer_n(2)
  t_inf = statistics.median(time_fn(infer_n, steps, repeats)) / steps
  res['infer_examples_per_sec'] = batch_size / t_inf
  res['infer_step_ms'] = t_inf * 1e3
  # A whole validation pass as the trainer runs it (batches from the cache, predictions
  # back to the host, AUC / GAUC / logloss per task x domain), and its prediction part.
  valid = datasets['valid']
  eb = int(c.data.eval_batch_size)
  train.predict_arrays(steps_, params, valid, eb)  # compiles the last, padded batch too
  t0 = time.perf_counter()
  train.predict_arrays(steps_, params, valid, eb)
  t_pred = time.perf_counter() - t0
  t0 = time.perf_counter()
  train.evaluate_dataset(steps_, params, valid, spec, eb)
  t_eval = time.perf_counter() - t0
  res.update(eval_rows=valid.num_rows, eval_batch_size=eb,
             predict_rows_per_sec=valid.num_rows / t_pred,
             evaluate_rows_per_sec=valid.num_rows / t_eval)
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
  head = (f'{"workload":8} {"gates":8} {"update":6} {"dtype":8} {"dev":>3} {"batch":>6} '
          f'{"train ex/s":>11} {"fed ex/s":>9} {"infer ex/s":>11} {"step ms":>8} {"GFLOP/s":>8}')
  lines = [head, '-' * len(head)]
  for r in rows:
    gf = f'{r["train_gflops_per_sec"]:.1f}' if r.get('train_gflops_per_sec') else '-'
    fed = f'{r["fed_train_examples_per_sec"]:,.0f}' if r.get('fed_train_examples_per_sec') else '-'
    lines.append(f'{r["workload"]:8} {r["task_gates"]:8} {r["update"]:6} {r["dtype"]:8} '
                 f'{r["devices"]:>3} {r["batch_size"]:>6} {r["train_examples_per_sec"]:>11,.0f} '
                 f'{fed:>9} '
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
  p.add_argument('--batch_sizes', default='',
                 help='comma list; overrides --batch_size (e.g. 1024,4096 for kuairand)')
  p.add_argument('--kuairand_rows', type=int, default=300_000,
                 help='log rows generated for the kuairand workload (at Pure\'s sizes)')
  p.add_argument('--workdir', default='',
                 help='kuairand workload: where its vocabulary and cache go (default: a '
                      'temporary folder)')
  p.add_argument('--data_cache', default='',
                 help='kuairand workload: where its generated data is kept (default: this '
                      'checkout\'s data_cache/)')
  p.add_argument('--steps', type=int, default=20)
  p.add_argument('--repeats', type=int, default=5)
  p.add_argument('--peak', action='store_true', help='also measure the float32 matmul peak')
  p.add_argument('--out', default='bench_results.json')
  p.add_argument('--png', default='', help='also draw a PNG chart here')
  p.add_argument('--append', action='store_true',
                 help='add to the results already in --out (e.g. a run with 8 devices)')
  p.add_argument('--set', action='append', default=[], metavar='PATH=VALUE',
                 help='a config override for every workload, repeatable (e.g. '
                      'model.epnet_hidden=0, the EPNet gate width before 2026-12-07)')
  a = p.parse_args(argv)
  try:
    apply_overrides(configs.base_config(), a.set)  # a bad path fails here, before any workload
  except ValueError as e:
    p.error(str(e))
  rows = []
  sizes = [int(b) for b in (a.batch_sizes or str(a.batch_size)).split(',')]
  workloads = a.workloads.split(',')
  unknown = [w for w in workloads if w not in WORKLOADS and w != 'kuairand']
  if unknown:
    p.error(f'--workloads: unknown {unknown}; use {", ".join(list(WORKLOADS) + ["kuairand"])}')
  combos = itertools.product([w for w in workloads if w != 'kuairand'], a.task_gates.split(','),
                             a.updates.split(','), a.dtypes.split(','),
                             [int(d) for d in a.devices.split(',')], sizes)
  for wl, tg, up, dt, nd, bs in combos:
    print(f'benchmarking {wl} gates={tg} update={up} dtype={dt} devices={nd} batch={bs} ...',
          flush=True)
    rows.append(run_one(wl, tg, up, dt, nd, bs, a.steps, a.repeats, overrides=a.set))
    print(format_rows(rows[-1:]).splitlines()[-1], flush=True)
  if 'kuairand' in workloads:
    import tempfile
    with tempfile.TemporaryDirectory() as tmp:
      for bs in sizes:
        print(f'benchmarking kuairand (converge recipe, real batches) batch={bs} ...', flush=True)
        rows.append(run_kuairand(bs, a.steps, a.repeats, a.kuairand_rows, a.workdir or tmp,
                                 a.data_cache or None, a.set))
        r = rows[-1]
        print(format_rows(rows[-1:]).splitlines()[-1], flush=True)
        print(f'  validation pass over {r["eval_rows"]:,} rows: {r["evaluate_rows_per_sec"]:,.0f} '
              f'rows/s with the metrics, {r["predict_rows_per_sec"]:,.0f} rows/s predicting '
              f'(batch {r["eval_batch_size"]}); host-fed training {r["fed_train_examples_per_sec"]:,.0f}'
              ' examples/s', flush=True)
        share = r['kernel_cpu_share']
        share = 'an unmeasured share' if share is None else f'{share:.0%}'
        print(f'  device-only steps: {r["page_faults_per_step"]:,.0f} page faults a step, '
              f'{share} of the CPU time in the kernel (allocator: {_allocator()})', flush=True)
  out = {'backend': jax.default_backend(), 'devices': [str(d) for d in jax.devices()],
         'cpu_count': os.cpu_count(), 'machine': platform.processor() or platform.machine(),
         'jax': jax.__version__, 'allocator': _allocator(), 'overrides': a.set, 'steps': a.steps,
         'repeats': a.repeats, 'results': rows}
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
