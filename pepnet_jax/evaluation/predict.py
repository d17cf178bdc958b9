"""Predict mode: score one input file with a trained checkpoint.

The format's ``DataFormat.read_file_chunks`` (or, for a format without it,
``read_file``) reads the file (KuaiRand: a log, joined with the feature files
of ``config.data.dir`` as in training); raw ids map through the vocabulary
saved in ``<workdir>/vocab`` (unseen ids -> the out-of-vocabulary id). Writes
one row per input row, in input order: the format's key columns (KuaiRand
``user_id, video_id, time_ms, tab``; Ali-CCP ``row``), then ``p_<task>...``.

Chunk by chunk: memory holds one chunk of rows (and the format's side tables)
whatever the file's length; the output goes to a temporary file renamed into
place at the end, so an interrupted predict leaves no half-written output.
"""

from __future__ import annotations

import os
import time

import jax
import numpy as np
import pandas as pd

from pepnet_jax.training import checkpoint as ckpt_lib
from pepnet_jax import files
from pepnet_jax.training import train
from pepnet_jax.models import build_model


def read_chunks(data, workdir: str, input_path: str):
  """(data spec, vocab, iterator of (Dataset, raw key columns, unseen counts)) for one input
  file, chunk by chunk through the format's ``read_file_chunks`` (or whole, ``read_file``).
  ``data``: the run's resolved data settings (``train.resolve_data``)."""
  from pepnet_jax.data import pipeline
  from pepnet_jax.data.errors import DataError
  spec, fmt = data.spec, data.format
  vocab = pipeline.load_vocab(workdir)
  vocab.check_spec(spec)
  args = (input_path, data.dir, spec.reader_spec(), data.reader_config)
  parts = fmt.read_file_chunks(*args) if fmt.read_file_chunks else iter([fmt.read_file(*args)])

  def chunks():
    rows = 0
    for frame, raw in parts:
      bad = {k: len(v) for k, v in raw.items() if len(v) != len(frame)}
      if bad:
        raise ValueError(f'format {spec.format!r}: read_file returned {len(frame)} rows but '
                         f'key columns of other lengths {bad}')
      if not len(frame):
        continue  # nothing to score; a format may end on an empty chunk
      rows += len(frame)
      columns = pipeline.encode_frame(frame, spec, vocab)
      yield (pipeline.Dataset.from_columns(columns, spec), raw,
             unseen_ids(frame, columns, spec))
    if not rows:
      raise DataError(f'{input_path}: no rows to predict')
  return spec, vocab, chunks()


def read_input(config, workdir: str, input_path: str):
  """(Dataset, raw key columns, data spec, feature infos) for one whole input file, read
  chunk by chunk (``predict_file`` scores without holding it all); DataError when empty."""
  from pepnet_jax.data import pipeline
  spec, vocab, chunks = read_chunks(train.resolve_data(config, workdir), workdir, input_path)
  datasets, raws, unseen = [], [], UnseenCount()
  for ds, raw, counts in chunks:
    datasets.append(ds)
    raws.append(raw)
    unseen.add(ds.num_rows, *counts)
  print(unseen.summary(), flush=True)
  columns = {k: np.concatenate([d.columns[k] for d in datasets]) for k in datasets[0].columns}
  raw = {k: np.concatenate([r[k] for r in raws]) for k in raws[0]}
  return pipeline.Dataset.from_columns(columns, spec), raw, spec, vocab.feature_infos()


class UnseenCount:
  """unseen_ids summed over chunks."""

  def __init__(self):
    self.total = self.rows = 0
    self.per_feature: dict[str, int] = {}

  def add(self, total: int, rows: int, per_feature: dict[str, int]) -> None:
    self.total += total
    self.rows += rows
    for k, v in per_feature.items():
      self.per_feature[k] = self.per_feature.get(k, 0) + v

  def summary(self) -> str:
    return unseen_summary(self.rows, self.per_feature, self.total)


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
                 step: int | None = None) -> dict:
  """Scores ``input_path`` into ``output_path`` chunk by chunk; returns {'rows', 'step',
  'seconds'}."""
  t0 = time.time()
  workdir = os.path.abspath(workdir)
  spec, vocab, chunks = read_chunks(train.resolve_data(config, workdir), workdir, input_path)
  output_path = os.path.abspath(output_path)
  os.makedirs(os.path.dirname(output_path), exist_ok=True)
  steps = state = None
  rows, unseen = 0, UnseenCount()
  with files.atomic_write(output_path) as f:  # no half-written output on a failure
    for ds, raw, counts in chunks:
      if steps is None:  # the model, compiled and restored once, on the first chunk
        model = build_model(config.model, vocab.feature_infos(), spec)
        sample = next(ds.eval_batches(config.data.eval_batch_size))
        steps = train.make_steps(model, config, 1)
        steps, state = train.jit_steps(steps, config, train.device_batch(sample),
                                       jax.random.key(0))
        state, step = ckpt_lib.restore_for_inference(workdir, state, step)
      arr = train.predict_arrays(steps, state.params, ds, config.data.eval_batch_size)
      if len(arr['preds']) != ds.num_rows:
        raise RuntimeError(f'predicted {len(arr["preds"])} rows for {ds.num_rows} input rows')
      out = pd.DataFrame(raw)
      for t, task in enumerate(spec.tasks):
        out[f'p_{task}'] = arr['preds'][:, t]
      out.to_csv(f, index=False, header=rows == 0, float_format='%.6g')
      rows += ds.num_rows
      unseen.add(ds.num_rows, *counts)
      if time.time() - t0 > 10:
        print(f'  predicted {rows:,} rows ({time.time() - t0:.0f}s)', flush=True)
  print(unseen.summary(), flush=True)
  secs = time.time() - t0
  print(f'Wrote {rows:,} predictions (checkpoint step {step}) to {output_path} '
        f'in {secs:.1f}s', flush=True)
  return dict(rows=rows, step=step, seconds=secs)
