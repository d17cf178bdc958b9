"""Predict mode: score one input file with a trained checkpoint.

The format's ``DataFormat.read_file`` reads the file (KuaiRand: a log, joined
with the feature files of ``config.data.dir`` as in training); raw ids map
through the vocabulary saved in ``<workdir>/vocab`` (unseen ids -> the
out-of-vocabulary id). Writes one row per input row, in input order: the
format's key columns (KuaiRand ``user_id, video_id, time_ms, tab``; Ali-CCP
``row``), then ``p_<task>...``.
"""

from __future__ import annotations

import os
import time

import jax
import numpy as np
import pandas as pd

from pepnet_jax import checkpoint as ckpt_lib
from pepnet_jax import train
from pepnet_jax.models import build_model


def read_input(config, workdir: str, input_path: str):
  """(Dataset, raw key columns, data spec, feature infos) for one input file,
  read by the format's ``DataFormat.read_file``."""
  from pepnet_jax import features
  from pepnet_jax.data import formats, pipeline, prepare
  spec = features.spec_from_config(config.data)
  vocab = pipeline.load_vocab(workdir)
  vocab.check_spec(spec)
  data_dir = prepare.data_dir(config, workdir)
  frame, raw = formats.get(spec.format).read_file(input_path, data_dir, spec.reader_spec(),
                                                  features.with_format_defaults(config.data))
  bad = {k: len(v) for k, v in raw.items() if len(v) != len(frame)}
  if bad:
    raise ValueError(f'format {spec.format!r}: read_file returned {len(frame)} rows but key '
                     f'columns of other lengths {bad}')
  columns = pipeline.encode_frame(frame, spec, vocab)
  print(unseen_summary(*unseen_ids(frame, columns, spec), len(frame)), flush=True)
  ds = pipeline.Dataset.from_columns(columns, spec)
  return ds, raw, spec, vocab.feature_infos()


def unseen_ids(frame: pd.DataFrame, columns, spec) -> tuple[int, dict[str, int]]:
  """(rows with any unseen id, {feature: rows}) over the categorical features.

  An id the training split never had (or had fewer than the feature's min_count times)
  encodes to OOV, so the model scores it with one shared row: worth knowing when many input
  rows do. A missing raw value (NaN, or the -124 / UNKNOWN a reader turned into NaN) encodes
  to OOV by design and is not counted.
  """
  from pepnet_jax import features
  from pepnet_jax.data import pipeline
  layout = pipeline.column_layout(spec)
  any_unseen = np.zeros(len(frame), bool)
  per_feature = {}
  for f in spec.features:
    if f.kind != 'categorical':
      continue
    _, j, _ = layout[f.name]
    unseen = (np.asarray(columns['sparse'][:, j]) == features.OOV_ID) & \
        frame[f.column].notna().to_numpy()
    if unseen.any():
      per_feature[f.name] = int(unseen.sum())
      any_unseen |= unseen
  return int(any_unseen.sum()), per_feature


def unseen_summary(rows: int, per_feature: dict[str, int], total: int) -> str:
  if not rows:
    return f'predict: every id in the {total:,} input rows was seen in training'
  detail = ', '.join(f'{k}: {v:,}' for k, v in per_feature.items())
  return (f'predict: {rows:,} of {total:,} rows had an id not seen in training ({detail}); '
          'they score with the out-of-vocabulary rows')


def predict_file(config, workdir: str, input_path: str, output_path: str,
                 step: int | None = None) -> pd.DataFrame:
  t0 = time.time()
  workdir = os.path.abspath(workdir)
  ds, raw, spec, infos = read_input(config, workdir, input_path)
  model = build_model(config.model, infos, spec)
  sample = next(ds.eval_batches(config.data.eval_batch_size))
  steps = train.make_steps(model, config, 1)
  steps, state = train.jit_steps(steps, config, train.device_batch(sample), jax.random.key(0))
  state, step = ckpt_lib.restore_for_inference(workdir, state, step)
  arr = train.predict_arrays(steps, state.params, ds, config.data.eval_batch_size, progress=True)
  if len(arr['preds']) != ds.num_rows:
    raise RuntimeError(f'predicted {len(arr["preds"])} rows for {ds.num_rows} input rows')
  out = pd.DataFrame(raw)
  for t, task in enumerate(spec.tasks):
    out[f'p_{task}'] = arr['preds'][:, t]
  os.makedirs(os.path.dirname(os.path.abspath(output_path)), exist_ok=True)
  out.to_csv(output_path, index=False, float_format='%.6g')
  print(f'Wrote {len(out):,} predictions (checkpoint step {step}) to {output_path} '
        f'in {time.time() - t0:.1f}s', flush=True)
  return out
