"""Re-check mutmut survivors against whole test files of the default run.

mutmut runs a mutant against the tests it saw call the mutated function; for JAX code it saw
too few (a jitted function runs its Python only in the first test that traces it; conftest
now clears JAX's caches in mutmut's stats run, which fixes most of it). This applies each
named mutant's diff (``mutmut show``) to a scratch worktree of HEAD and runs the test files
RULES names for its function with -x: killed (a test failed), survived, error, apply_failed.

  python benchmarks/mutmut_recheck.py NAMES_FILE docs/results/mutmut/models_recheck.json

Run from the checkout after ``mutmut run`` (it needs ``mutants/``); resumable (names already
in the JSON are skipped).
"""
import json
import os
import re
import subprocess
import sys
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SCRATCH = os.path.join(os.environ.get('TMPDIR', '/tmp'), 'pepnet_mutmut_recheck')
PATHS = {'steps': 'pepnet_jax/training/steps.py'}  # mutmut 2's flat names; 3's are dotted


RULES = [
  (r'contract\.x_(check_tables|rows_at)', ['tests/test_defects.py', '-k', 'table']),
  (r'contract\.', ['tests/test_schedules.py', 'tests/test_train_step.py']),
  (r'layers\.x_(_scale|symmetric_uniform|table_kinds)',
   ['tests/test_model.py', 'tests/test_reference_forward.py', '-k', 'padded or matches_reference']),
  (r'layers\.x_(activation_fn|dtype_from_name)', ['tests/test_defects.py', '-k', 'dtype_and']),
  (r'layers\.x_batched_lecun_normal', ['tests/test_model.py', '-k', 'lecun']),
  (r'layers\.x_(dropout|_mix32|dropout_mask)', ['tests/test_recipe.py', '-k', 'dropout']),
  (r'layers\.', ['tests/test_reference_forward.py', 'tests/test_model.py']),
  (r'pepnet\.', ['tests/test_reference_forward.py', 'tests/test_model.py', 'tests/test_gradients.py']),
  (r'registry\.x_build_model', ['tests/test_defects.py', 'tests/test_model.py',
                                'tests/test_baselines.py']),
  (r'registry\.', ['tests/test_model.py']),
  (r'steps\.x_make_steps', ['tests/test_train_step.py', 'tests/test_reliability.py',
                           'tests/test_multidevice.py', 'tests/test_recipe.py']),
  (r'steps\.x__guarded', ['tests/test_reliability.py', 'tests/test_train_step.py',
                         'tests/test_recipe.py']),
  (r'steps\.x__(init_fn|loss_fn)', ['tests/test_train_step.py', 'tests/test_recipe.py',
                                   'tests/test_schedules.py', 'tests/test_reliability.py']),
  (r'steps\.x_jit_steps', ['tests/test_train_step.py', 'tests/test_multidevice.py',
                           'tests/test_recipe.py']),
  (r'steps\.', ['tests/test_data_shards.py', 'tests/test_recipe.py', 'tests/test_train_step.py',
               'tests/test_schedules.py', 'tests/test_reliability.py',
               'tests/test_selection.py']),
  (r'baselines\.', ['tests/test_baselines.py', 'tests/test_reference_forward.py']),
  (r'linear\.', ['tests/test_reference_forward.py', 'tests/test_linear.py']),
  (r'wide_deep\.', ['tests/test_model.py', 'tests/test_reference_forward.py']),
]


def select(name):
  for pat, args in RULES:
    if re.search(pat, name):
      return args
  raise KeyError(name)


def module_of(name):
  m = re.match(r'pepnet_jax\.(.+)\.x[_ǁ]', name)
  return m.group(1)


def function_of(name):
  tail = name.split('.')[-1]
  tail = re.sub(r'__mutmut_\d+$', '', tail)
  if tail.startswith('xǁ'):
    _, cls, meth = tail.split('ǁ')
    return cls, meth
  return None, tail[2:]


def hunk(name):
  out = subprocess.run(['mutmut', 'show', name], capture_output=True, text=True, cwd=REPO).stdout
  lines = out.splitlines()
  body = []
  started = False
  for l in lines:
    if l.startswith('@@'):
      started = True
      continue
    if started and l[:1] in (' ', '-', '+'):
      body.append(l)
  return body


def apply(name, src):
  body = hunk(name)
  lines = src.split('\n')
  cls, func = function_of(name)
  start = 0
  if cls:
    start = next(i for i, l in enumerate(lines) if re.match(rf'\s*class {cls}\b', l))
  start = next(i for i in range(start, len(lines))
               if re.match(rf'\s*def {func}\b', lines[i]))
  minus_lines = [l[1:].strip() for l in body if l[0] == '-']
  plus_lines = [l[1:].strip() for l in body if l[0] == '+']
  # locate consecutive minus block in the file (stripped), after the def
  for i in range(start, len(lines)):
    if all(i + j < len(lines) and lines[i + j].strip() == m for j, m in enumerate(minus_lines)):
      indent = re.match(r'\s*', lines[i]).group(0)
      new = [indent + p if j == 0 else indent + '    ' + p for j, p in enumerate(plus_lines)]
      return '\n'.join(lines[:i] + new + lines[i + len(minus_lines):])
  raise ValueError('not found')


def main():
  names = [n.strip() for n in open(sys.argv[1]) if n.strip()]
  out_path = sys.argv[2]
  results = json.load(open(out_path)) if os.path.exists(out_path) else {}
  if not os.path.exists(SCRATCH):
    subprocess.run(['git', 'worktree', 'add', '-f', '--detach', SCRATCH, 'HEAD'], cwd=REPO,
                   check=True, capture_output=True)
  for name in names:
    if name in results:
      continue
    mod = module_of(name)
    rel = PATHS.get(mod, 'pepnet_jax/' + mod.replace('.', '/') + '.py')
    path = os.path.join(SCRATCH, rel)
    subprocess.run(['git', 'checkout', '-q', '--', rel], cwd=SCRATCH)
    orig = open(path).read()
    try:
      mutated = apply(name, orig)
    except Exception as e:  # noqa: BLE001
      results[name] = {'status': 'apply_failed', 'why': str(e)}
      json.dump(results, open(out_path, 'w'), indent=1)
      continue
    open(path, 'w').write(mutated)
    files = select(name)
    t0 = time.time()
    env = dict(os.environ, JAX_PLATFORMS='cpu')
    r = subprocess.run([sys.executable, '-m', 'pytest', '-x', '-q', '-n', '0', *files], cwd=SCRATCH, capture_output=True, text=True, env=env)
    status = {0: 'survived', 1: 'killed'}.get(r.returncode, 'error')
    failed = re.findall(r'FAILED (\S+)', r.stdout)
    results[name] = {'status': status, 'seconds': round(time.time() - t0, 1),
                     'failed': failed[:3], 'rc': r.returncode}
    if r.returncode not in (0, 1):
      results[name]['tail'] = r.stdout[-800:] + r.stderr[-800:]
    open(path, 'w').write(orig)
    json.dump(results, open(out_path, 'w'), indent=1)
    print(name, status, results[name]['seconds'], flush=True)


if __name__ == '__main__':
  main()
