r"""Follow ``config`` through the code: which functions receive it, in which modules, how often.

Runs ``train.train_and_evaluate`` (training mode, the trainer's entry) on a tiny generated
dataset under ``sys.setprofile`` and records every call of a ``pepnet_jax`` function that
receives the config or a part of it (an ``ml_collections`` ConfigDict argument: the config,
``config.data``, ``config.model``, a copy of one) from another module -- a *stop* (calls
inside a module are its own business). Prints and saves:

* stops, and the modules they are in;
* returns: a stop in a module the walk had already left for another one;
* climbs: a stop in a module earlier in the data flow (files -> features -> batches ->
  model -> training -> metrics -> reports) than the previous stop's, the orchestrating
  entry modules (``cli``, ``train``, ``configs``) left out;
* the data settings: how many times the format registry is asked (``formats.get``) and the
  data description is worked out (``spec_from_config``, the format's defaults merged:
  ``with_format_defaults``, ``resolve_tasks`` / ``resolve_domains`` / ``resolve_splits``), and
  the functions that are handed a data section (``config.data`` or a copy of it) itself.

  python benchmarks/config_walk.py --out docs/results/config_walk/after.json

Run at two revisions (``git worktree``) to compare; the counts depend on the code only,
not on the machine.
"""

from __future__ import annotations

import argparse
import collections
import json
import os
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

# Data flow order of the modules (by the last part of the dotted name's folder or file).
LAYERS = [
    ('files', ('data.kuairand', 'data.kuairand_files', 'data.aliccp', 'data.formats',
               'data.prepare', 'data.resolve', 'synth')),
    ('features', ('features', 'data.features')),
    ('batches', ('data.pipeline', 'data.cache', 'data.vocab', 'data.vocab_keys',
                 'data.sidetables', 'data.errors')),
    ('model', ('models',)),
    ('training', ('steps', 'optim', 'sparse', 'sharding', 'checkpoint', 'checkpoint_errors',
                  'selection', 'cold_start', 'interrupts', 'runlock', 'training')),
    ('metrics', ('metrics', 'evaluation')),
    ('reports', ('report', 'gates', 'writers', 'files', 'reports')),
]
ENTRY = ('cli', 'train', 'configs', 'training.trainer', 'training.train')
RESOLUTION = ('formats.get', 'spec_from_config', 'with_format_defaults', 'resolve_tasks',
              'resolve_domains', 'resolve_splits')


def short(module: str) -> str:
  return module[len('pepnet_jax.'):] if module.startswith('pepnet_jax.') else module


def layer(module: str) -> int | None:
  m = short(module)
  if m in ENTRY:
    return None
  for i, (_, prefixes) in enumerate(LAYERS):
    if any(m == p or m.startswith(p + '.') or m.endswith('.' + p) for p in prefixes):
      return i
  return None


def trace(fn):
  """Runs fn() under a profiler; returns the stops [(module, function, data section?)] and
  the calls of the resolution functions."""
  import ml_collections
  stops, resolution = [], collections.Counter()

  def is_config(v):
    return isinstance(v, (ml_collections.ConfigDict, ml_collections.FrozenConfigDict))

  def hook(frame, event, _arg):
    if event != 'call':
      return
    module = frame.f_globals.get('__name__', '')
    if not module.startswith('pepnet_jax'):
      return
    code = frame.f_code
    name = code.co_name
    qual = f'{short(module).split(".")[-1]}.{name}'
    if qual in RESOLUTION or name in RESOLUTION:
      resolution[qual if qual in RESOLUTION else name] += 1
    n = code.co_argcount + code.co_kwonlyargcount
    args = [frame.f_locals.get(a) for a in code.co_varnames[:n]]
    configs_in = [a for a in args if is_config(a)]
    caller = frame.f_back.f_globals.get('__name__', '') if frame.f_back else ''
    if configs_in and caller != module:  # entering the module, not a call inside it
      data = any('format' in a for a in configs_in)  # a data section itself
      stops.append((short(module), name, data))

  sys.setprofile(hook)
  try:
    fn()
  finally:
    sys.setprofile(None)
  return stops, resolution


def summarize(stops, resolution) -> dict:
  modules = [m for m, _, _ in stops]
  runs = [m for i, m in enumerate(modules) if i == 0 or m != modules[i - 1]]
  seen, returns = set(), 0
  for m in runs:
    returns += m in seen
    seen.add(m)
  climbs, last = 0, None
  for m in modules:
    lay = layer(m)
    if lay is None:
      continue
    climbs += last is not None and lay < last
    last = lay
  per_module = collections.Counter(modules)
  data_readers = sorted({f'{m}.{f}' for m, f, d in stops if d})
  return dict(stops=len(stops), modules=len(per_module), returns=returns, climbs=climbs,
              walk=[f'{m}.{f}' for m, f, _ in stops],
              per_module=dict(per_module.most_common()),
              resolution=dict(resolution), data_section_functions=data_readers)


def main(argv=None):
  ap = argparse.ArgumentParser(description=__doc__.split('\n')[0])
  ap.add_argument('--out', default='', help='JSON file for the counts')
  args = ap.parse_args(argv)
  os.environ.setdefault('JAX_PLATFORMS', 'cpu')
  from pepnet_jax import configs
  from pepnet_jax.training import train
  sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                                  'experiments'))
  import demo
  c = demo.get_config('quick')
  with tempfile.TemporaryDirectory() as tmp:
    configs.use_generated_data(c, rows=4000, users=200, videos=150, authors=50)
    c.data.dir = os.path.join(tmp, 'data')
    c.data.cache_dir = os.path.join(tmp, 'cache')
    c.data.batch_size = 256
    c.train.num_steps = 4
    c.train.num_epochs = 0
    c.train.log_every = 2
    c.train.checkpoint_every = 4
    c.train.eval_every = 4
    stops, resolution = trace(lambda: train.train_and_evaluate(c, os.path.join(tmp, 'work')))
  result = summarize(stops, resolution)
  import subprocess
  result['revision'] = subprocess.run(['git', 'describe', '--always', '--dirty'],
                                      capture_output=True, text=True,
                                      cwd=os.path.dirname(os.path.abspath(__file__))).stdout.strip()
  print(f"config walk from train.train_and_evaluate: {result['stops']} stops in "
        f"{result['modules']} modules, {result['returns']} returns to a module already left, "
        f"{result['climbs']} climbs up the data flow")
  print('per module:', result['per_module'])
  print('walk:', ' > '.join(result['walk']))
  print('data settings worked out:', result['resolution'])
  print('functions handed a data section:', ', '.join(result['data_section_functions']))
  if args.out:
    os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
    with open(args.out, 'w') as f:
      json.dump(result, f, indent=1)
  return result


if __name__ == '__main__':
  main()
