r"""Where a KuaiRand training step's time goes: a JAX profiler trace of the real step,
each XLA operation charged to a part of the model by its source op name.

  python benchmarks/profile_step.py --batch_size 2048 --out docs/results/profile/now.json
  PYTHONPATH=<older checkout> python benchmarks/profile_step.py ...   # an older revision
  python benchmarks/profile_step.py --table before.json after.json     # side by side

The step is experiments/kuairand.py's (the full 40-field preset, the 'converge' recipe:
dropout, L2 on touched rows, OOV rows, warm-up) on real batches of generated KuaiRand logs at
KuaiRand-Pure's sizes (``--rows``, made once under data_cache/). Only the library's public
training functions are used, so an older revision can be profiled the same way.

Prints a table: milliseconds of operation time per step in each part, summed over the
threads that ran them (on 2 cores the sum exceeds the wall time), and the wall time of a
step. ``--eval`` profiles the evaluation step instead. Saves JSON with both.
"""

from __future__ import annotations

import argparse
import collections
import glob
import gzip
import importlib.util
import itertools
import json
import os
import re
import tempfile
import time

import jax

from pepnet_jax.training import train

# (part, test on the operation's name and its source op name), first match wins.
PARTS = (
    ('dropout random numbers', lambda n, op: any(s in op for s in ('bernoulli', '_uniform',
                                                                    'threefry', 'random_bits'))),
    ('row-sparse update: unique ids (sort)', lambda n, op: 'unique' in op or 'sort' in n),
    ('row-sparse update: scatters', lambda n, op: 'scatter' in n or 'scatter' in op),
    ('embedding gathers', lambda n, op: 'lookup' in op or 'gather' in n),
    ('EPNet gate matmuls', lambda n, op: 'epnet_gate' in op and _dot(n, op)),
    ('EPNet gate elementwise', lambda n, op: 'epnet_gate' in op),
    ('PPNet gate matmuls', lambda n, op: 'ppnet_gates' in op and _dot(n, op)),
    ('PPNet gate elementwise', lambda n, op: 'ppnet_gates' in op),
    ('tower matmuls', lambda n, op: 'towers' in op and _dot(n, op)),
    ('tower elementwise', lambda n, op: 'towers' in op),
    ('gate x activation products, dropout masks', lambda n, op: '.head)/' in op and (
        op.endswith('/mul') or 'select_n' in op)),
    ('loss', lambda n, op: 'loss' in op or 'log_sigmoid' in op or 'softplus' in op),
    ('rest of the model (pooling, concatenations)', lambda n, op: '.head' in op),
    ('dense optimizer (Adam) and norms', lambda n, op: True),
)


def _dot(name: str, op: str) -> bool:
  return 'dot_general' in op or name.startswith(('dot', 'ynn_fusion', 'onednn', 'custom-call'))


def part_of(name: str, op: str) -> str:
  return next(p for p, test in PARTS if test(name, op))


def _this_checkouts_bench():
  """This checkout's pepnet_jax/bench.py, loaded by path: its KuaiRand workload (config and
  batches) is written against public training functions only, so it also serves an older
  revision's library on PYTHONPATH, whose own bench module may not have it."""
  path = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                      'pepnet_jax', 'bench.py')
  spec = importlib.util.spec_from_file_location('bench_of_this_checkout', path)
  mod = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(mod)
  return mod


def op_names(hlo_text: str) -> dict:
  """HLO instruction name -> the JAX op name it came from (its metadata)."""
  out = {}
  for line in hlo_text.splitlines():
    m = re.match(r'\s*(?:ROOT )?%?([\w.\-]+) = .*?metadata=\{op_name="([^"]*)"', line)
    if m and m.group(1) not in out:
      out[m.group(1)] = m.group(2)
  return out


def profile(fn, args_list, n: int, trace_dir: str) -> tuple[dict, float, float | None]:
  """(instruction -> total microseconds over n calls, wall seconds per call, device-busy
  seconds per call or None where no accelerator stream is traced)."""
  out = None
  for a in args_list[:3]:
    out = fn(*a)
  jax.block_until_ready(out)
  t0 = time.perf_counter()
  for i in range(n):
    out = fn(*args_list[i % len(args_list)])
  jax.block_until_ready(out)
  wall = (time.perf_counter() - t0) / n
  jax.profiler.start_trace(trace_dir)
  for i in range(n):
    out = fn(*args_list[i % len(args_list)])
  jax.block_until_ready(out)
  jax.profiler.stop_trace()
  path = sorted(glob.glob(os.path.join(trace_dir, '**', '*.trace.json.gz'), recursive=True))[-1]
  with gzip.open(path) as f:
    events = json.load(f)['traceEvents']
  # Accelerator kernels run on processes named '/device:GPU:0' (or TPU); their events name
  # the HLO instruction in args.hlo_op. On CPU the thunks are named by the instruction.
  device_pids = {e['pid'] for e in events if e.get('ph') == 'M' and e.get('name') == 'process_name'
                 and '/device:' in str(e.get('args', {}).get('name', ''))
                 and 'CPU' not in str(e.get('args', {}).get('name', ''))}
  total, busy = collections.Counter(), 0.0
  for e in events:
    if e.get('ph') == 'X':
      total[e.get('args', {}).get('hlo_op') or e['name']] += e.get('dur', 0)
      if e.get('pid') in device_pids:
        busy += e.get('dur', 0)
  return total, wall, (busy / n / 1e6 if device_pids else None)


def side_by_side(paths: list[str]) -> str:
  """A markdown table of saved profiles, one column each (ms of operations a step)."""
  runs = []
  for path in paths:
    with open(path) as f:
      runs.append(json.load(f))
  parts = sorted({p for r in runs for p in r['parts_ms']}, key=lambda p: -runs[0]['parts_ms'].get(p, 0))
  head = ' | '.join(os.path.splitext(os.path.basename(p))[0] for p in paths)
  lines = [f'| part (ms of operations a step) | {head} |', '|---' * (len(paths) + 1) + '|']
  for part in parts:
    lines.append(f'| {part} | ' + ' | '.join(f'{r["parts_ms"].get(part, 0.0):.1f}' for r in runs)
                 + ' |')
  lines.append('| all operations | ' + ' | '.join(f'{r["op_ms"]:.1f}' for r in runs) + ' |')
  lines.append('| wall time a step | ' + ' | '.join(f'{r["wall_ms"]:.1f}' for r in runs) + ' |')
  lines.append('| examples/s | ' + ' | '.join(f'{r["examples_per_sec"]:,.0f}' for r in runs) + ' |')
  return '\n'.join(lines)


def main(argv=None):
  p = argparse.ArgumentParser(description=__doc__,
                              formatter_class=argparse.RawDescriptionHelpFormatter)
  p.add_argument('--table', nargs='+', metavar='JSON',
                 help='print saved profiles side by side instead of profiling')
  p.add_argument('--batch_size', type=int, default=2048)
  p.add_argument('--rows', type=int, default=300_000)
  p.add_argument('--steps', type=int, default=10)
  p.add_argument('--eval', action='store_true', help='profile the evaluation step')
  p.add_argument('--out', default='')
  a = p.parse_args(argv)
  if a.table:
    print(side_by_side(a.table))
    return None
  bench = _this_checkouts_bench()
  c = bench.kuairand_config(a.rows, a.batch_size)
  with tempfile.TemporaryDirectory() as tmp:
    datasets, infos, spec, _, model = train.setup_run(c, os.path.join(tmp, 'work'))
    ds = datasets['train']
    host = list(itertools.islice(bench.kuairand_batches(ds, c, spec, infos),
                                 min(a.steps, ds.num_train_batches(a.batch_size))))
    steps = train.make_steps(model, c, 10**6)
    steps, state = train.jit_steps(steps, c, train.device_batch(host[0]), jax.random.key(0))
    dev = [train.to_device(b, steps.mesh) for b in host]
    if a.eval:
      fn, args = steps.eval_step, [(state.params, d) for d in dev]
    else:
      holder = {'state': state}

      def fn(batch):
        holder['state'], m = steps.train_step(holder['state'], batch)
        return m['loss']
      args = [(d,) for d in dev]
    compiled = (steps.eval_step.lower(state.params, dev[0]) if a.eval else
                steps.train_step.lower(state, dev[0])).compile()
    names = op_names(compiled.as_text())
    total, wall, busy = profile(fn, args, a.steps, os.path.join(tmp, 'trace'))
  parts, top = collections.Counter(), []
  for name, us in total.most_common():
    if name in names:
      parts[part_of(name, names[name])] += us / a.steps / 1e3
      if len(top) < 15:
        top.append({'instruction': name, 'op': names[name], 'ms': us / a.steps / 1e3})
  op_ms = sum(parts.values())
  what = 'evaluation' if a.eval else 'training'
  print(f'{what} step, batch {a.batch_size} [{jax.default_backend()}]: {wall * 1e3:.1f} ms wall '
        f'({a.batch_size / wall:,.0f} examples/s, batches already on the device), '
        f'{op_ms:.1f} ms of operations'
        + (f', device busy {busy * 1e3:.1f} ms ({100 * busy / wall:.0f}% of the wall time)'
           if busy is not None else ''))
  print('| part | ms of operations a step | share |\n|---|---|---|')
  for part, ms in sorted(parts.items(), key=lambda kv: -kv[1]):
    print(f'| {part} | {ms:.1f} | {100 * ms / op_ms:.0f}% |')
  print('top operations:')
  for t in top[:10]:
    print(f'  {t["ms"]:7.2f} ms  {t["instruction"]:28} {t["op"][-90:]}')
  result = {'what': what, 'batch_size': a.batch_size, 'wall_ms': wall * 1e3,
            'examples_per_sec': a.batch_size / wall, 'op_ms': op_ms,
            'device_busy_ms': None if busy is None else busy * 1e3,
            'parts_ms': dict(parts), 'top_operations': top, 'backend': jax.default_backend(),
            'devices': [str(d) for d in jax.devices()], 'cpu_count': os.cpu_count()}
  if a.out:
    os.makedirs(os.path.dirname(os.path.abspath(a.out)), exist_ok=True)
    with open(a.out, 'w') as f:
      json.dump(result, f, indent=2)
    print(f'saved {a.out}')
  return result


if __name__ == '__main__':
  main()
