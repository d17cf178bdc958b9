"""Run logs: JSON lines, TensorBoard events (tensorboardX) and a console line."""

from __future__ import annotations

import json
import math
import os
import sys
import time
from typing import Callable, Mapping

from pepnet_jax import files


def _clean(v):
  if hasattr(v, 'item'):
    v = v.item()
  if isinstance(v, float) and not math.isfinite(v):
    return None
  return v


class MetricWriter:
  """Appends ``{"step":..., "split":..., ...}`` to ``metrics.jsonl`` and TensorBoard."""

  def __init__(self, workdir: str, enabled: bool = True, tensorboard: bool = True):
    self.enabled = enabled
    self.path = os.path.join(workdir, 'metrics.jsonl')
    self.tb = None
    if enabled and tensorboard:
      from tensorboardX import SummaryWriter  # imported lazily: start-up time
      self.tb = SummaryWriter(os.path.join(workdir, 'tensorboard'))

  def drop_where(self, predicate: Callable[[dict], bool]):
    """Removes the records for which ``predicate`` holds (rewrites the file
    atomically), e.g. the lines a killed run wrote after its last checkpoint,
    which the resumed run writes again."""
    if not self.enabled or not os.path.exists(self.path):
      return
    with open(self.path) as f:
      lines = f.readlines()
    kept = []
    for line in lines:
      try:
        record = json.loads(line)
      except ValueError:
        continue  # a line cut short by a kill
      if not predicate(record):
        kept.append(line if line.endswith('\n') else line + '\n')
    if len(kept) == len(lines):
      return
    with files.atomic_write(self.path) as f:
      f.writelines(kept)

  def drop_after(self, step: int):
    """Drops the records of steps after ``step`` (the checkpoint resumed from)."""
    self.drop_where(lambda r: int(r.get('step', 0)) > step)

  def write(self, step: int, split: str, scalars: Mapping[str, float]):
    if not self.enabled:
      return
    record = {'step': int(step), 'split': split, 'time': round(time.time(), 3)}
    record.update({k: _clean(v) for k, v in scalars.items()})
    with open(self.path, 'a') as f:
      f.write(json.dumps(record) + '\n')
    if self.tb is not None:
      for k, v in scalars.items():
        v = _clean(v)
        if isinstance(v, (int, float)):
          self.tb.add_scalar(f'{split}/{k}', v, int(step))

  def close(self):
    if self.tb is not None:
      self.tb.flush()
      self.tb.close()


class Throughput:
  """Training examples per second between reports, with pauses (validation,
  checkpoint waits) left out of the clock: counting a pause's time but not
  resetting its examples, or the reverse, prints a wrong rate."""

  def __init__(self, clock=time.time):
    self.clock = clock
    self.t0 = clock()
    self.examples = 0
    self.paused = 0.0

  def add(self, n: int):
    self.examples += n

  def pause(self, seconds: float):
    self.paused += seconds

  def rate(self) -> float:
    """Examples/s since the last ``rate()`` call, then starts a new window."""
    now = self.clock()
    r = self.examples / max(now - self.t0 - self.paused, 1e-9)
    self.t0, self.examples, self.paused = now, 0, 0.0
    return r


class Progress:
  """The run's report: ``report(step, split, scalars)`` appends the scalars to the
  logs (``MetricWriter``) and prints the console line. What the line shows is
  chosen here alone: for 'train' the step, loss, examples/s and ETA (and skipped
  steps, if any); for an evaluation split its mean AUC, GAUC and logloss."""

  def __init__(self, total_steps: int, start_step: int, writer: MetricWriter | None = None,
               stream=None, clock=time.time):
    self.total = total_steps
    self.start_step = start_step
    self.writer = writer
    self.clock = clock
    self.t0 = clock()
    self.stream = stream or sys.stdout

  def line(self, step: int, split: str, scalars: Mapping[str, float], note: str = '') -> str:
    if split == 'train':
      done = step - self.start_step
      eta = (self.clock() - self.t0) / max(done, 1) * (self.total - step)
      text = (f'step {step:>7d}/{self.total} | loss {scalars["loss"]:.4f} | '
              f'{scalars.get("examples_per_sec", 0.0):,.0f} ex/s | ETA {format_seconds(eta)}')
      if scalars.get('skipped_steps'):
        text += f' | {scalars["skipped_steps"]} skipped'
    else:
      text = (f'  {split} @ {step}: mean AUC {scalars["mean_auc"]:.4f}  '
              f'GAUC {scalars["mean_gauc"]:.4f}  logloss {scalars["mean_logloss"]:.4f}')
    return text + (f'  {note}' if note else '')

  def report(self, step: int, split: str, scalars: Mapping[str, float], note: str = '',
             show: bool = True):
    if self.writer is not None:
      self.writer.write(step, split, scalars)
    if show:
      print(self.line(step, split, scalars, note), file=self.stream, flush=True)


def format_seconds(s: float) -> str:
  s = int(max(s, 0))
  return f'{s // 3600:d}:{s % 3600 // 60:02d}:{s % 60:02d}'
