r"""Time to quality: wall time from the command to each validation, to the best model and
to the final report, for one or more runs on the same data, one after the other.

  python benchmarks/time_to_quality.py --run now                     # this checkout
  python benchmarks/time_to_quality.py --run start=rev:e37f8be --run now
  python benchmarks/time_to_quality.py --run b1024 --run 'b4096=args:--config.data.batch_size=4096'

Each ``--run NAME[=rev:REV][=args:ARGS]`` runs ``python run.py --config CONFIG --workdir
WORKDIRS/NAME --config.data.dir=DATA ARGS``: at revision REV (checked out into a temporary
worktree and run from there) or, without ``rev:``, in this checkout. Runs go one after the
other, never together, so that they share the machine fairly; a run whose report.json exists
is read back instead of run again (delete its folder to rerun it).
``--run NAME=cmd:COMMAND`` times another program instead (a peer implementation, e.g.
``benchmarks/peer_nextrec_quality.py``): COMMAND --workdir WORKDIRS/NAME, which must print
the same ``valid @ STEP: mean AUC X`` lines and write WORKDIRS/NAME/report.json.

Default data: the 1M-training-row quality data of experiments/quality.py (generated KuaiRand
logs at KuaiRand-Pure's sizes, 2,200,000 rows; made here when absent). Default config: the
README's ``experiments/kuairand.py``.

Saves OUT/time_to_quality.json (per run: the command, every validation's step, wall time and
mean AUC, the best one, the test mean AUC, the total wall time), OUT/time_to_quality.png
(validation mean AUC against wall time, one curve a run), each run's report, validation lines
and time-stamped log under OUT/runs/NAME (the checkpoints and caches stay in WORKDIRS,
default runs/time_to_quality), and prints a table.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import shlex
import shutil
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
QUALITY_ROWS = 2_200_000
VALID_LINE = re.compile(r'valid @ (\d+): mean AUC ([0-9.]+)')


def quality_data(rows: int) -> str:
  """The quality experiment's generated data folder (made when absent)."""
  sys.path.insert(0, ROOT)
  from pepnet_jax import configs
  from pepnet_jax.data import prepare
  c = configs.base_config()
  configs.use_generated_data(c, rows, users=27_285, videos=7_583, authors=6_510)
  d = os.path.join(ROOT, c.data.dir)
  c.data.dir = d
  try:  # the library's entry since data settings are resolved once (data/resolve.py)
    from pepnet_jax.data.resolve import resolve
  except ImportError:  # an older checkout
    prepare.ensure_generated(c, d)
  else:
    prepare.ensure_generated(resolve(c.data, d))
  return d


def parse_run(spec: str) -> dict:
  name, rev, args, cmd = spec, '', [], []
  if '=' in spec:
    name, rest = spec.split('=', 1)
    for part in re.split(r'=(?=(?:rev|args|cmd):)', rest):
      if part.startswith('rev:'):
        rev = part[4:]
      elif part.startswith('args:'):
        args = shlex.split(part[5:])
      elif part.startswith('cmd:'):
        cmd = shlex.split(part[4:])
      else:
        raise SystemExit(f'--run {spec!r}: after NAME= use rev:REV and/or args:ARGS, or cmd:CMD')
  if cmd and (rev or args):
    raise SystemExit(f'--run {spec!r}: cmd:CMD stands alone (no rev: or args:)')
  if not re.fullmatch(r'[\w.-]+', name):
    raise SystemExit(f'--run {spec!r}: NAME may hold letters, digits, ".", "_" and "-"')
  return {'name': name, 'rev': rev, 'args': args, 'cmd': cmd}


def checkout(rev: str, where: str) -> str:
  subprocess.run(['git', '-C', ROOT, 'worktree', 'add', '--detach', where, rev], check=True,
                 stdout=subprocess.DEVNULL)
  return where


def timed_run(cmd: list[str], cwd: str, env: dict, log_path: str) -> dict:
  """Runs ``cmd``, echoing and logging its output, and stamps each validation line."""
  t0 = time.time()
  valids = []
  with open(log_path, 'w') as log:
    proc = subprocess.Popen(cmd, cwd=cwd, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, bufsize=1)
    for line in proc.stdout:
      t = time.time() - t0
      log.write(f'[{t:8.1f}s] {line}')
      sys.stdout.write(line)
      m = VALID_LINE.search(line)
      if m:
        valids.append({'step': int(m.group(1)), 'seconds': round(t, 1),
                       'mean_auc': float(m.group(2))})
    rc = proc.wait()
  if rc:
    raise SystemExit(f'{" ".join(cmd)} exited with {rc}; its output is in {log_path}')
  return {'valids': valids, 'total_seconds': round(time.time() - t0, 1)}


def summarize(run: dict, report: dict) -> dict:
  valids = run['valids']
  best = max(valids, key=lambda v: v['mean_auc']) if valids else None
  return dict(run, best=best, test_mean_auc=report['mean']['auc'],
              test_mean_gauc=report['mean'].get('gauc'), report_step=report.get('step'))


def plot(runs: list[dict], path: str):
  from matplotlib.backends.backend_agg import FigureCanvasAgg
  from matplotlib.figure import Figure
  fig = Figure(figsize=(7, 4.2))
  FigureCanvasAgg(fig)
  ax = fig.add_subplot(1, 1, 1)
  for r in runs:
    if not r['valids']:
      continue
    xs = [v['seconds'] / 60 for v in r['valids']]
    ys = [v['mean_auc'] for v in r['valids']]
    line, = ax.plot(xs, ys, marker='o', label=f'{r["name"]} (test {r["test_mean_auc"]:.4f})')
    ax.axvline(r['total_seconds'] / 60, color=line.get_color(), ls=':', lw=1)
    if r['best']:
      ax.plot([r['best']['seconds'] / 60], [r['best']['mean_auc']], marker='*', ms=14,
              color=line.get_color())
  ax.set_xlabel('wall time from the command (minutes); dotted: report written')
  ax.set_ylabel('validation mean AUC')
  ax.set_title('Time to quality (star: best validation)')
  ax.grid(alpha=0.3)
  ax.legend(fontsize=8)
  fig.tight_layout()
  fig.savefig(path, dpi=120)


def table(runs: list[dict]) -> str:
  lines = ['| run | revision | best validation mean AUC | at step | time to best (min) | '
           'total (min) | test mean AUC |', '|---|---|---|---|---|---|---|']
  for r in runs:
    b = r['best'] or {}
    own = not r.get('command', 'run.py').startswith('run.py')
    lines.append(f'| {r["name"]} | {"its own command" if own else r["rev"] or "this checkout"} | '
                 f'{b.get("mean_auc", float("nan")):.4f} | {b.get("step", "-")} | '
                 f'{b.get("seconds", float("nan")) / 60:.1f} | {r["total_seconds"] / 60:.1f} | '
                 f'{r["test_mean_auc"]:.4f} |')
  return '\n'.join(lines)


def main(argv=None):
  p = argparse.ArgumentParser(description=__doc__,
                              formatter_class=argparse.RawDescriptionHelpFormatter)
  p.add_argument('--run', action='append', required=True,
                 help='NAME[=rev:REV][=args:ARGS] or NAME=cmd:COMMAND, repeatable; runs in '
                 'the order given')
  p.add_argument('--config', default='experiments/kuairand.py')
  p.add_argument('--data', default='', help='a KuaiRand-format data folder (default: the '
                 'quality data of experiments/quality.py, generated when absent)')
  p.add_argument('--rows', type=int, default=QUALITY_ROWS,
                 help='rows of the default generated data')
  p.add_argument('--out', default='docs/results/time_to_quality')
  p.add_argument('--workdirs', default='runs/time_to_quality',
                 help='where the runs train (checkpoints, caches); kept out of --out')
  a = p.parse_args(argv)
  runs = [parse_run(s) for s in a.run]
  if len({r['name'] for r in runs}) != len(runs):
    raise SystemExit('--run: each NAME once')
  data = os.path.abspath(a.data) if a.data else quality_data(a.rows)
  out = os.path.abspath(a.out)
  os.makedirs(os.path.join(out, 'runs'), exist_ok=True)
  results = []
  with tempfile.TemporaryDirectory() as tmp:
    for r in runs:
      wd = os.path.join(os.path.abspath(a.workdirs), r['name'])
      report_path = os.path.join(wd, 'report.json')
      record = os.path.join(wd, 'time_to_quality_run.json')
      if os.path.exists(report_path) and os.path.exists(record):
        print(f'== {r["name"]}: finished earlier, read from {wd}', flush=True)
        with open(record) as f:
          run = json.load(f)
      else:
        tree = checkout(r['rev'], os.path.join(tmp, r['name'])) if r['rev'] else ROOT
        sha = subprocess.run(['git', '-C', tree, 'rev-parse', '--short', 'HEAD'],
                             capture_output=True, text=True).stdout.strip()
        if r['cmd']:  # another program (a peer): it validates and reports as run.py does
          cmd = r['cmd'] + ['--workdir', wd]
        else:
          cmd = [sys.executable, 'run.py', '--config', a.config, '--workdir', wd,
                 f'--config.data.dir={data}'] + r['args']
        env = dict(os.environ, PYTHONPATH=tree + os.pathsep + os.environ.get('PYTHONPATH', ''))
        print(f'== {r["name"]} ({r["rev"] or "this checkout"}, {sha}): {" ".join(cmd)}',
              flush=True)
        os.makedirs(wd, exist_ok=True)
        run = timed_run(cmd, tree, env, os.path.join(wd, 'time_to_quality.log'))
        run.update(name=r['name'], rev=r['rev'], commit=sha,
                   command=' '.join(cmd if r['cmd'] else cmd[1:]))
        with open(record, 'w') as f:
          json.dump(run, f, indent=2)
      with open(report_path) as f:
        results.append(summarize(run, json.load(f)))
      keep = os.path.join(out, 'runs', r['name'])
      os.makedirs(keep, exist_ok=True)
      for name in ('report.json', 'metrics.jsonl', 'config.json', 'time_to_quality.log',
                   'time_to_quality_run.json'):
        if os.path.exists(os.path.join(wd, name)):
          shutil.copyfile(os.path.join(wd, name), os.path.join(keep, name))
  # The temporary checkouts are gone with their folder; drop git's records of them.
  subprocess.run(['git', '-C', ROOT, 'worktree', 'prune'], check=False)
  summary = {'data': data, 'config': a.config, 'machine': platform.processor() or
             platform.machine(), 'cpu_count': os.cpu_count(),
             'date': time.strftime('%Y-%m-%d'), 'runs': results}
  with open(os.path.join(out, 'time_to_quality.json'), 'w') as f:
    json.dump(summary, f, indent=2)
  plot(results, os.path.join(out, 'time_to_quality.png'))
  print('\n' + table(results))
  if len(results) > 1:
    base = results[0]
    for r in results[1:]:
      if base['best'] and r['best']:
        print(f'{r["name"]} vs {base["name"]}: total {r["total_seconds"] / base["total_seconds"]:.2f}x,'
              f' time to best {r["best"]["seconds"] / base["best"]["seconds"]:.2f}x, test mean AUC '
              f'{r["test_mean_auc"] - base["test_mean_auc"]:+.4f}')
  print(f'saved {out}/time_to_quality.json and .png')
  return summary


if __name__ == '__main__':
  main()
