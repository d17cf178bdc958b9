"""What ``run.py`` dispatches to: train, evaluate and predict modes."""

from __future__ import annotations

import os
import sys
import traceback

import jax

from pepnet_jax.training import checkpoint as ckpt_lib
from pepnet_jax.training import train


def maybe_initialize_distributed(config):
  """``jax.distributed.initialize`` when ``config.distributed.enabled``."""
  dc = config.get('distributed')
  if dc is None or not dc.enabled:
    return
  # CPU processes need a collectives backend for cross-process reductions.
  jax.config.update('jax_cpu_collectives_implementation', dc.get('cpu_collectives', 'gloo'))
  kwargs = {}
  if dc.coordinator_address:
    kwargs = dict(coordinator_address=dc.coordinator_address,
                  num_processes=int(dc.num_processes), process_id=int(dc.process_id))
  jax.distributed.initialize(**kwargs)


def restored_steps(config, workdir: str, step: int | None):
  """Data, model and jitted steps with the parameters of a saved checkpoint (the entry of
  evaluate mode and of the gate summaries: the data settings are resolved here)."""
  data = train.resolve_data(config, workdir)
  datasets, infos, data_spec, vocab, model = train.setup_run(config, workdir, data)
  any_split = next(iter(datasets.values()))
  sample = next(any_split.eval_batches(config.data.batch_size))
  steps = train.make_steps(model, config, 1)
  steps, state = train.jit_steps(steps, config, train.device_batch(sample), jax.random.key(0))
  state, step = ckpt_lib.restore_for_inference(workdir, state, step)
  return datasets, data_spec, vocab, steps, state, step


def evaluate(config, workdir: str, step: int | None = None, split: str | None = None) -> dict:
  from pepnet_jax.evaluation import report as report_lib
  datasets, data_spec, _, steps, state, step = restored_steps(config, workdir, step)
  split = split or config.train.get('report_split', 'test')
  if split not in datasets:
    raise ValueError(f'--split={split!r}: this config has splits {sorted(datasets)}')
  results = train.evaluate_dataset(steps, state.params, datasets[split], data_spec,
                                   config.data.eval_batch_size, config.train.get('metrics', ()))
  results['split'], results['step'] = split, step
  print(f'Evaluation on the {split} split ({datasets[split].num_rows:,} rows), checkpoint step {step}:')
  print(report_lib.format_table(results))
  paths = report_lib.save_report(results, workdir, name=f'report_{split}_step{step}',
                                 title=f'{config.model.name} - {split} split, step {step}')
  print(f'Report: {paths["json"]} and {paths["png"]}')
  return results


def run(config, workdir: str, mode: str, input_path=None, output_path=None, step=None,
        split=None):
  maybe_initialize_distributed(config)
  if mode == 'train':
    return train.train_and_evaluate(config, workdir)
  if mode == 'evaluate':
    return evaluate(config, workdir, step, split)
  if mode == 'predict':
    if not input_path or not output_path:
      raise SystemExit('--mode=predict needs --input LOG.csv and --output OUT.csv')
    from pepnet_jax.evaluation import predict
    return predict.predict_file(config, workdir, input_path, output_path, step)
  raise ValueError(f'--mode={mode!r}')


def user_errors() -> tuple[type, ...]:
  """Exceptions that describe the input or the config, not a bug: shown as
  their message alone."""
  from pepnet_jax.training import runlock
  from pepnet_jax.data.errors import DataError
  return (DataError, ValueError, FileNotFoundError, NotADirectoryError, PermissionError,
          runlock.RunLockedError, ckpt_lib.CheckpointError)


def main(config, workdir: str, mode: str, verbose: bool = False, **kwargs) -> int:
  """``run`` for the command line: returns the exit code; a data or config
  error prints one line (its traceback goes to ``<workdir>/error.log``)."""
  from pepnet_jax.training import interrupts
  try:
    run(config, workdir, mode, **kwargs)
    return 0
  except interrupts.TrainingStopped as e:
    print(f'\n{e}', file=sys.stderr, flush=True)
    return e.exit_code
  except KeyboardInterrupt:
    print('\nInterrupted before training started; nothing to save.', file=sys.stderr, flush=True)
    return 130
  except user_errors() as e:
    if verbose:
      raise
    log = _write_traceback(workdir)
    print(f'error: {type(e).__name__}: {e}', file=sys.stderr)
    print(f'(traceback in {log}; --verbose shows it here)' if log else
          '(--verbose shows the traceback)', file=sys.stderr, flush=True)
    return 1


def _write_traceback(workdir: str) -> str | None:
  try:
    os.makedirs(workdir, exist_ok=True)
    path = os.path.join(os.path.abspath(workdir), 'error.log')
    with open(path, 'w') as f:
      f.write(traceback.format_exc())
    return path
  except OSError:
    return None
