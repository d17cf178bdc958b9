r"""KuaiRand-27K-shaped scale benchmark: ingestion, training, evaluation and predict, each
phase in its own process, with its wall time, rows/s and peak RSS.

  python benchmarks/scale.py --rows 30000000            # 27K's 27,285 users, a stand-in video pool
  python benchmarks/scale.py --rows 1000000 --append    # add a row to the same table

Writes (and prints) ``docs/results/scale/scale.{json,md}``; ``--append`` adds to them.

Phases:
  generate  the generator writes the KuaiRand-27K layout (``_27k`` file names) with 27,285
            users and ``--videos`` videos (not timed as a target; skipped when the folder
            exists). 27K itself has 32M videos; the generator keeps ~1.7 KB of latent state
            per video for all 15 tabs, so ``--videos`` is a stand-in (default 2,000,000).
  ingest    the streaming build of the columnar cache from the CSVs (both passes), from an
            empty cache folder.
  batches   the host side of a step alone: building a shuffled batch of 1024 rows from the
            memory-mapped cache (what would starve the step if it were slower).
  train     ``--steps`` training steps (batch 1024, the full KuaiRand preset) after a warm-up
            step, batches built in the loop as the trainer does; saves the state.
  evaluate  the whole test split through the eval step, then the exact AUC / GAUC / logloss
            per task x tab (``metrics.evaluate``), timed apart.
  predict   ``run.py --mode=predict`` over the whole 04-22..05-08 log (valid + test days).
  metrics   exact AUC / GAUC / logloss per task x tab of ``--metric_rows`` synthetic
            predictions (7 tasks, 4 tabs, 27,285 users; default 10^8): what evaluating at
            27K's scale costs beyond the predictions themselves (run it alone: --phases metrics).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
OUT = os.path.join(REPO, 'docs', 'results', 'scale')


def _config(data_dir: str, steps: int):
  """The run's config: the full KuaiRand preset on the generated 27K-shaped folder."""
  from pepnet_jax import configs
  c = configs.base_config()
  c.data.dir = data_dir
  c.data.version = '27k'
  c.data.cache_dir = os.path.join(data_dir, '.cache')
  c.data.eval_batch_size = 8192
  configs.apply_recipe(c, 'converge')
  c.train.num_steps = steps
  c.train.patience = 0
  c.train.eval_every = 0
  c.train.log_every = 50
  c.train.checkpoint_every = 0
  c.mesh.num_devices = 1
  return c


def _peak_mb() -> int:
  return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss // 1024


def _rss_split() -> dict:
  """Resident memory now, split into anonymous (the process's own) and file-backed pages
  (memory-mapped cache columns: page cache the kernel can drop, not memory the run needs)."""
  out = {}
  with open('/proc/self/status') as f:
    for line in f:
      if line.startswith(('RssAnon:', 'RssFile:')):
        key, kb = line.split()[:2]
        out[key[3:-1].lower() + '_mb'] = int(kb) // 1024
  return out


class _OwnPeak:
  """The largest RssAnon seen (sampled every 50 ms in a thread): the process's own memory.
  ``ru_maxrss`` also counts the memory-mapped cache pages a phase has touched, page cache
  that the kernel drops under pressure, so on its own it overstates what a phase needs."""

  def __init__(self):
    import threading
    self.mb = 0
    threading.Thread(target=self._run, daemon=True).start()

  def _run(self):
    while True:
      self.mb = max(self.mb, _rss_split().get('anon_mb', 0))
      time.sleep(0.05)


def phase(name: str, a) -> dict:
  """Runs one phase in this process; returns its figures (peak RSS is this process's)."""
  t0 = time.time()
  if name == 'metrics':
    import numpy as np
    from pepnet_jax.evaluation import metrics
    rng = np.random.default_rng(0)
    n, tasks = a.metric_rows, 7
    preds = rng.random((n, tasks), dtype=np.float32)
    labels = np.empty((n, tasks), np.int8)
    for i in range(0, n, 10**7):  # in slices: the inputs, not their temporaries, set the peak
      part = slice(i, i + 10**7)
      labels[part] = rng.random(preds[part].shape, dtype=np.float32) < preds[part] * 0.3
    domains = rng.integers(0, 4, n, dtype=np.int32)
    groups = rng.integers(0, 27_285, n, dtype=np.int32)
    inputs_mb = (preds.nbytes + labels.nbytes + domains.nbytes + groups.nbytes) // 2**20
    before = _peak_mb()
    t1 = time.time()
    res = metrics.evaluate(preds, labels, None, domains, groups, [f't{i}' for i in range(tasks)],
                           ['0', '1', '2', '4'])
    return dict(rows=n, seconds=time.time() - t1, peak_mb=_peak_mb(), inputs_mb=inputs_mb,
                peak_before_mb=before, mean_auc=res['mean']['auc'])
  if name == 'generate':
    from pepnet_jax import synth as kuairand_synth
    kuairand_synth.generate(a.data, a.rows, users=27_285, videos=a.videos,
                            authors=max(a.videos // 4, 1), seed=0, version='27k',
                            progress=True)
    return dict(rows=a.rows, seconds=time.time() - t0, peak_mb=_peak_mb())
  config = _config(a.data, a.steps)
  if name == 'ingest':
    import shutil
    from pepnet_jax.data import pipeline
    shutil.rmtree(config.data.cache_dir, ignore_errors=True)
    ds, *_ = pipeline.load_datasets(config.data, a.workdir)
    rows = sum(d.num_rows for d in ds.values())
    return dict(rows=rows, seconds=time.time() - t0, peak_mb=_peak_mb())
  if name == 'batches':
    from pepnet_jax.training import train
    from pepnet_jax.data import pipeline
    ds, *_ = pipeline.load_datasets(config.data, a.workdir)
    it = train.train_batches(ds['train'], config, ds['train'].num_batches(1024, True), 0)
    next(it)
    t1, n = time.time(), 200
    for _ in range(n):
      next(it)
    dt = (time.time() - t1) / n
    return dict(rows=n * config.data.batch_size, seconds=dt * n, ms_per_batch=1e3 * dt,
                peak_mb=_peak_mb())
  if name in ('train', 'evaluate'):
    import jax
    import numpy as np
    from pepnet_jax.evaluation import metrics
    from pepnet_jax.training import train
    datasets, infos, spec, _, model = train.setup_run(config, a.workdir)
    first = next(datasets['train'].train_batches(1024, seed=0, epoch=0))
    steps = train.make_steps(model, config, a.steps)
    steps, state = train.jit_steps(steps, config, train.device_batch(first), jax.random.key(0))
    if name == 'train':
      batches = train.train_batches(datasets['train'], config, 10**9, 0)
      state, m = steps.train_step(state, train.to_device(next(batches), steps.mesh))
      float(m['loss'])  # compiled and warm
      t1 = time.time()
      for _ in range(a.steps):
        state, m = steps.train_step(state, train.to_device(next(batches), steps.mesh))
      float(m['loss'])
      dt = time.time() - t1
      import shutil
      from pepnet_jax.training import checkpoint  # for the evaluate and predict phases
      shutil.rmtree(os.path.join(a.workdir, 'checkpoints'), ignore_errors=True)  # a rerun's
      ckpt = checkpoint.Checkpointer(os.path.join(a.workdir, 'checkpoints'))
      ckpt.save(a.steps + 1, state, force=True)
      ckpt.close()
      return dict(rows=a.steps * 1024, seconds=dt, ms_per_step=1e3 * dt / a.steps,
                  peak_mb=_peak_mb())
    from pepnet_jax.training import checkpoint
    state, _ = checkpoint.restore_for_inference(a.workdir, state, None)
    test = datasets['test']
    t1 = time.time()
    arr = train.predict_arrays(steps, state.params, test, config.data.eval_batch_size)
    t2 = time.time()
    res = metrics.evaluate(arr['preds'], arr['labels'], arr['label_mask'], arr['domain'],
                           arr['group'], list(spec.tasks), [str(d) for d in spec.domains])
    t3 = time.time()
    return dict(rows=test.num_rows, seconds=t3 - t1, predict_seconds=t2 - t1,
                metric_seconds=t3 - t2, peak_mb=_peak_mb(),
                mean_auc=res['mean']['auc'])
  if name == 'predict':
    import glob
    from pepnet_jax.evaluation import predict
    log = sorted(glob.glob(os.path.join(a.data, 'log_standard_4_22_to_5_08_27k*.csv')))[0]
    out = predict.predict_file(config, a.workdir, log, os.path.join(a.workdir, 'pred.csv'))
    return dict(rows=out['rows'], seconds=time.time() - t0, peak_mb=_peak_mb())
  raise ValueError(name)


def run_phase(name: str, a) -> dict:
  cmd = [sys.executable, os.path.abspath(__file__), '--phase', name, '--rows', str(a.rows),
         '--videos', str(a.videos), '--steps', str(a.steps), '--data', a.data,
         '--metric_rows', str(a.metric_rows),
         '--workdir', a.workdir]
  env = dict(os.environ, JAX_PLATFORMS=os.environ.get('JAX_PLATFORMS', 'cpu'))
  print(f'== {name}', flush=True)
  proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, text=True)
  last = ''
  for line in proc.stdout:  # the phase's own progress lines pass through
    if line.strip():
      last = line
    if not line.startswith('{'):
      print('   ' + line, end='', flush=True)
  if proc.wait() != 0:
    raise SystemExit(f'phase {name} failed (exit {proc.returncode})')
  result = json.loads(last)
  print(json.dumps(result), flush=True)
  return result


def _mb(v) -> str:
  return '-' if v is None else f'{v:,}'


def _per_cpu(r: dict) -> str:
  """Rows per CPU-second of the whole phase process (imports and set-up included), i.e.
  throughput per core; '-' for rows measured before it was recorded, or for timed sections
  that are only a part of the process (batches, train, evaluate: see seconds)."""
  if 'cpu_seconds' not in r or r['phase'] not in ('generate', 'ingest', 'predict'):
    return '-'
  return f'{r["rows"] / r["cpu_seconds"]:,.0f}'


def main(argv=None):
  p = argparse.ArgumentParser(description=__doc__,
                              formatter_class=argparse.RawDescriptionHelpFormatter)
  p.add_argument('--rows', type=int, default=30_000_000, help='log rows (both standard logs)')
  p.add_argument('--videos', type=int, default=2_000_000, help='video pool (27K: 32M)')
  p.add_argument('--steps', type=int, default=300, help='training steps to time')
  p.add_argument('--metric_rows', type=int, default=100_000_000,
                 help='rows of the metrics phase')
  p.add_argument('--data', default=None, help='data folder (default data_cache/scale_<rows>)')
  p.add_argument('--workdir', default=None, help='run folder (default runs/scale_<rows>)')
  p.add_argument('--phases', default='generate,ingest,batches,train,evaluate,predict')
  p.add_argument('--append', action='store_true', help='add to the saved table')
  p.add_argument('--phase', default=None, help=argparse.SUPPRESS)
  a = p.parse_args(argv)
  a.data = os.path.abspath(a.data or os.path.join(REPO, 'data_cache', f'scale_{a.rows}'))
  a.workdir = os.path.abspath(a.workdir or os.path.join(REPO, 'runs', f'scale_{a.rows}'))
  if a.phase:  # the child: one phase, its figures as the last stdout line
    os.makedirs(a.workdir, exist_ok=True)
    own = _OwnPeak()
    result = phase(a.phase, a)
    result.update(_rss_split())
    use = resource.getrusage(resource.RUSAGE_SELF)
    result.update(own_peak_mb=max(own.mb, result.get('anon_mb', 0)),
                  cpu_seconds=use.ru_utime + use.ru_stime)
    print(json.dumps(result), flush=True)
    return
  rows = []
  for name in a.phases.split(','):
    if name == 'generate' and os.path.exists(os.path.join(a.data, 'generator_meta.json')):
      continue
    r = run_phase(name, a)
    rows.append(dict(log_rows=a.rows, videos=a.videos, phase=name, **r))
  os.makedirs(OUT, exist_ok=True)
  path = os.path.join(OUT, 'scale.json')
  table = json.load(open(path)) if a.append and os.path.exists(path) else []
  done = {(r['log_rows'], r['phase']) for r in rows}
  table = [r for r in table if (r['log_rows'], r['phase']) not in done] + rows
  with open(path, 'w') as f:
    json.dump(table, f, indent=1)
  lines = ['| log rows | videos | phase | rows | seconds | rows/s | rows per CPU-second | '
           'peak own memory (MB) | peak RSS with mapped cache pages (MB) | note |',
           '|---|---|---|---|---|---|---|---|---|---|']
  for r in table:
    note = (f'inputs {r["inputs_mb"]:,} MB' if 'inputs_mb' in r else
            f'{r["ms_per_batch"]:.1f} ms a batch' if 'ms_per_batch' in r else
            f'{r["ms_per_step"]:.0f} ms a step' if 'ms_per_step' in r else
            f'eval step {r["predict_seconds"]:.0f} s + metrics {r["metric_seconds"]:.1f} s'
            if 'metric_seconds' in r else '')
    lines.append(f'| {r["log_rows"]:,} | {r["videos"]:,} | {r["phase"]} | {r["rows"]:,} | '
                 f'{r["seconds"]:.1f} | {r["rows"] / max(r["seconds"], 1e-9):,.0f} | '
                 f'{_per_cpu(r)} | {_mb(r.get("own_peak_mb"))} | {r["peak_mb"]:,} | {note} |')
  with open(os.path.join(OUT, 'scale.md'), 'w') as f:
    f.write('\n'.join(lines) + '\n')
  print('\n'.join(lines))


if __name__ == '__main__':
  main()
