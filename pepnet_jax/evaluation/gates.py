"""What PEPNet's gates learned: EPNet per domain x field, PPNet per task x layer.

  python -m pepnet_jax.gates --config experiments/demo.py --workdir DIR [--split test] [--rows 50000]

Restores the run's latest checkpoint, runs the model over (the first
``--rows`` rows of) a split with the gates' values collected, and writes
``gates.json`` and ``gates.png`` in the workdir:

* EPNet: the mean gate value per domain and per shared feature field (the
  gate has one value per embedding unit; a field's value is the mean over its
  units). Values above 1 amplify a field in that domain, below 1 damp it.
* PPNet: mean and standard deviation of each layer's task gates, per task.
"""

from __future__ import annotations

import json
import os

import jax
import numpy as np

from pepnet_jax import cli
from pepnet_jax.training import train


def collect(steps, params, dataset, num_domains: int, num_tasks: int,
            batch_size: int, max_rows: int) -> dict:
  model = steps.model
  shared = [f.name for f in model.features if f.shared]  # as built (domain_in_input)
  dim = model.embed_dim

  @jax.jit
  def gates_of(params, batch):
    _, inter = model.apply({'params': params}, batch['features'], batch['domain'],
                           mutable=['intermediates'])
    return {k: v[0] for k, v in inter['intermediates'].items()}  # sow keeps tuples

  ep_sum = np.zeros((num_domains, len(shared)))
  ep_n = np.zeros(num_domains)
  pp: dict[int, list] = {}
  seen = 0
  for batch in dataset.eval_batches(batch_size):
    w = np.asarray(batch['weight']) > 0
    g = jax.device_get(gates_of(params, train.device_batch(batch)))
    dom = np.asarray(batch['domain'])[w]
    if 'epnet_gate_value' in g:
      per_field = g['epnet_gate_value'][w].reshape(-1, len(shared), dim).mean(-1)
      np.add.at(ep_sum, dom, per_field)
      ep_n += np.bincount(dom, minlength=num_domains)
    for k, v in g.items():
      if k.startswith('ppnet_gate_value_'):
        layer = int(k.rsplit('_', 1)[1])
        pp.setdefault(layer, []).append(np.asarray(v)[:, w].reshape(num_tasks, -1))
    seen += int(w.sum())
    if seen >= max_rows:
      break
  out = {'rows': seen, 'fields': shared}
  if ep_n.sum():
    out['epnet_mean'] = (ep_sum / np.maximum(ep_n, 1)[:, None]).tolist()
  if pp:
    out['ppnet'] = {str(l): {'mean': np.concatenate(v, 1).mean(1).tolist(),
                             'std': np.concatenate(v, 1).std(1).tolist()}
                    for l, v in sorted(pp.items())}
  return out


def draw(out: dict, domains, tasks, path: str):
  from matplotlib.backends.backend_agg import FigureCanvasAgg
  from matplotlib.figure import Figure
  panels = int('epnet_mean' in out) + int('ppnet' in out)
  if not panels:
    return
  fig = Figure(figsize=(max(8, 0.35 * len(out['fields'])) + 6, 4.5))
  FigureCanvasAgg(fig)
  i = 1
  if 'epnet_mean' in out:
    ax = fig.add_subplot(1, panels, i)
    i += 1
    m = np.asarray(out['epnet_mean'])
    im = ax.imshow(m, cmap='RdBu_r', vmin=min(m.min(), 2 - m.max()), vmax=max(m.max(), 2 - m.min()),
                   aspect='auto')
    ax.set_yticks(range(len(domains)), [f'tab {d}' for d in domains])
    ax.set_xticks(range(len(out['fields'])), out['fields'], rotation=90, fontsize=7)
    ax.set_title('EPNet gate: mean per domain x field (1 = unchanged)')
    fig.colorbar(im, ax=ax, fraction=0.03)
  if 'ppnet' in out:
    ax = fig.add_subplot(1, panels, i)
    layers = sorted(out['ppnet'], key=int)
    m = np.asarray([out['ppnet'][l]['mean'] for l in layers]).T
    im = ax.imshow(m, cmap='RdBu_r', vmin=min(m.min(), 2 - m.max()), vmax=max(m.max(), 2 - m.min()),
                   aspect='auto')
    for (r, c), v in np.ndenumerate(m):
      ax.text(c, r, f'{v:.2f}', ha='center', va='center', fontsize=8)
    ax.set_yticks(range(len(tasks)), tasks)
    ax.set_xticks(range(len(layers)), [f'layer {l}' for l in layers])
    ax.set_title('PPNet task gates: mean per task x layer')
    fig.colorbar(im, ax=ax, fraction=0.05)
  fig.suptitle(f'Gate values over {out["rows"]:,} rows')
  fig.tight_layout()
  fig.savefig(path, dpi=110)


def main(argv=None):
  from absl import flags
  from ml_collections import config_flags
  cfg_flag = config_flags.DEFINE_config_file('config', None, 'experiment config[:preset]')
  w = flags.DEFINE_string('workdir', None, 'the run directory')
  sp = flags.DEFINE_string('split', 'test', 'split to run over')
  rows = flags.DEFINE_integer('rows', 50_000, 'rows to collect gates on')
  flags.FLAGS(argv or __import__('sys').argv)
  config, workdir = cfg_flag.value, w.value
  datasets, data_spec, _, steps, state, step = cli.restored_steps(config, workdir, None)
  out = collect(steps, state.params, datasets[sp.value], len(data_spec.domains),
                len(data_spec.tasks), config.data.eval_batch_size, rows.value)
  out.update(step=step, split=sp.value, domains=list(data_spec.domains),
             tasks=list(data_spec.tasks))
  with open(os.path.join(workdir, 'gates.json'), 'w') as f:
    json.dump(out, f, indent=1)
  draw(out, data_spec.domains, data_spec.tasks, os.path.join(workdir, 'gates.png'))
  if 'epnet_mean' in out:
    m = np.asarray(out['epnet_mean'])
    for d, row in zip(data_spec.domains, m):
      top = np.argsort(-row)[:3]
      print(f'tab {d}: most amplified fields ' +
            ', '.join(f'{out["fields"][j]} {row[j]:.2f}' for j in top))
  for l, v in sorted(out.get('ppnet', {}).items(), key=lambda kv: int(kv[0])):
    print(f'PPNet layer {l}: ' + ', '.join(f'{t} {m:.2f}±{s:.2f}'
                                          for t, m, s in zip(data_spec.tasks, v['mean'], v['std'])))
  print(f'saved {workdir}/gates.json and gates.png')


if __name__ == '__main__':
  main()
