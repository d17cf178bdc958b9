"""files -> features -> batches: ``load_datasets`` and ``Dataset``.

``load_datasets`` reads the splits with the format's reader (its ``DataFormat`` record, see
formats.py), fits the vocab on train, encodes
every split into flat numpy columns and caches them (see cache.py); later runs only memory-map
the cache. ``Dataset`` serves batches by gathering rows from those columns, so an epoch never
loads more than one batch of rows at a time.

Batch (all numpy):
  features:   {name: int32 [B] | int32 [B, max_len] (multi, 0-padded) | float32 [B] (dense)}
  labels:     float32 [B, T]        label_mask: float32 [B, T] (0 = label missing)
  domain:     int32 [B] (index into config.data.domains)
  group:      int64 [B] (GAUC group key, see group_keys: e.g. the raw user id)
  weight:     float32 [B] (1 real row, 0 padding)
"""

from __future__ import annotations

import os
import queue
import threading
import time
from pathlib import Path
from typing import Any, Iterator, Mapping

import numpy as np
import pandas as pd

from pepnet_jax.data import cache, sidetables
from pepnet_jax.data.errors import DataError, domain_index, note, plain_value
from pepnet_jax.data.resolve import ResolvedData, resolve
from pepnet_jax.data.vocab import Vocab, VocabFitter
from pepnet_jax.features import DataSpec, FeatureInfo

LABEL_MISSING = -1
_MIX = np.uint64(0x100000001B3)  # FNV-1a's 64-bit prime: mixes the parts of a combined key


def column_layout(data_spec: DataSpec) -> dict[str, tuple[str, int, int]]:
    """Where each feature lives: name -> ('sparse', first column, width) or ('dense', col, 1).

    Sparse ids (categorical, bucket, multi) share one int32 [N, S] matrix and dense values one
    float32 [N, D] matrix: a shuffled batch then gathers whole rows (a cache line or two per
    row) instead of one scattered element per feature, which is what makes serving fast.
    """
    out, s, d = {}, 0, 0
    for f in data_spec.features:
        if f.kind == 'dense':
            out[f.name] = ('dense', d, 1)
            d += 1
        else:
            out[f.name] = ('sparse', s, f.max_len)
            s += f.max_len
    return out


def encode_frame(frame: pd.DataFrame, data_spec: DataSpec, vocab: Vocab,
                 encoded: Mapping[str, np.ndarray] | None = None) -> dict[str, np.ndarray]:
    """Raw frame -> columns: 'sparse' int32 [N, S] and 'dense' float32 [N, D] (see
    column_layout), 'labels' int8 [N, T] (-1 = missing), 'domain' int32 [N], 'group' int64 [N].

    Unseen feature values map to OOV; a task column absent from the frame gives missing labels
    (predict mode); a domain value outside data_spec.domains is a DataError. ``encoded``:
    features already encoded for these rows (side-table features), taken as they are.
    """
    encoded = encoded or {}
    vocab.check_spec(data_spec)
    n = len(frame)
    layout = column_layout(data_spec)
    n_sparse = sum(w for k, _, w in layout.values() if k == 'sparse')
    n_dense = sum(1 for k, _, _ in layout.values() if k == 'dense')
    sparse = np.empty((n, n_sparse), np.int32)
    dense = np.empty((n, n_dense), np.float32)
    for f in data_spec.features:
        kind, j, w = layout[f.name]
        if f.name in encoded:
            values = encoded[f.name]
        else:
            for c in f.columns:
                if c not in frame.columns:
                    raise DataError(f'feature {f.name!r}: column {c!r} is missing from the '
                                    'frame')
            raw = frame[list(f.columns)] if f.kind == 'cross' else frame[f.column]
            values = vocab.encode_feature(f.name, raw)
        if kind == 'dense':
            dense[:, j] = values
        else:
            sparse[:, j:j + w] = values.reshape(n, w)
    out: dict[str, np.ndarray] = {'sparse': sparse, 'dense': dense}
    labels = np.full((n, len(data_spec.tasks)), LABEL_MISSING, dtype=np.int8)
    for j, t in enumerate(data_spec.tasks):
        if t in frame.columns:
            v = frame[t].to_numpy(dtype=np.float64, na_value=np.nan)
            labels[:, j] = np.where(np.isnan(v), LABEL_MISSING, v).astype(np.int8)
    out['labels'] = labels
    if data_spec.domain_column not in frame.columns:
        raise DataError(f'the domain column {data_spec.domain_column!r} '
                        '(config.data.domain_column) is missing from the frame')
    dom = frame[data_spec.domain_column].to_numpy()
    index = domain_index(dom, data_spec.domains)
    if (index < 0).any():
        i = int(np.flatnonzero(index < 0)[0])
        raise DataError(f'column {data_spec.domain_column!r}, row {i + 1}: domain value '
                        f'{plain_value(dom[i])!r} is not in config.data.domains '
                        f'{list(data_spec.domains)}')
    out['domain'] = index.astype(np.int32)
    out['group'] = group_keys(frame, data_spec.group_columns)
    return out


def group_keys(frame: pd.DataFrame, columns: str | tuple[str, ...] | list[str]) -> np.ndarray:
    """int64 [N] GAUC group of each row: the combination of ``columns`` (config.data.group_column,
    'user_id' or 'user_id,tab').

    The one place groups are computed. One integer column is kept as it is (a user id stays
    the user id, so caches and results from before combinations existed do not change); a
    text column, or a combination of columns, becomes a stable 63-bit hash of the values
    (distinct groups collide with odds ~N^2 / 2^64).
    """
    columns = tuple(columns.split(',')) if isinstance(columns, str) else tuple(columns)
    missing = [c for c in columns if c not in frame.columns]
    if missing:
        raise DataError(f'config.data.group_column={",".join(columns)!r}: column(s) {missing} '
                        f'are missing from the frame (columns: {list(frame.columns)})')
    if len(columns) == 1:
        return _column_key(frame[columns[0]])
    acc = np.zeros(len(frame), np.uint64)
    for c in columns:  # order matters: 'a,b' and 'b,a' group alike but hash apart
        acc = (acc ^ pd.util.hash_array(_column_key(frame[c]))) * _MIX
    return (pd.util.hash_array(acc) >> np.uint64(1)).astype(np.int64)


def _column_key(g: pd.Series) -> np.ndarray:
    """int64 [N] key of one column: whole numbers as they are, anything else hashed as text."""
    if pd.api.types.is_integer_dtype(g.dtype):
        return g.to_numpy(np.int64)
    num = pd.to_numeric(g, errors='coerce').to_numpy(np.float64)
    if np.all(np.isfinite(num) & (num == np.round(num))):
        return num.astype(np.int64)
    h = pd.util.hash_array(g.astype(str).to_numpy(dtype=object), categorize=True)
    return (h >> np.uint64(1)).astype(np.int64)


class Dataset:
    """Encoded columns of one split (arrays or read-only memmaps) served as batches."""

    def __init__(self, columns: Mapping[str, np.ndarray], layout: Mapping[str, tuple[str, int, int]]):
        self.columns = {k: np.asarray(v) for k, v in columns.items()}  # memmap -> plain view
        self.layout = dict(layout)
        self.num_rows = int(self.columns['labels'].shape[0])
        self.num_tasks = int(self.columns['labels'].shape[1])
        for k, v in self.columns.items():
            if v.shape[0] != self.num_rows:
                raise ValueError(f'column {k!r} has {v.shape[0]} rows, labels {self.num_rows}')
        self._order = ('sparse', 'dense', 'labels', 'domain', 'group')

    @classmethod
    def from_columns(cls, columns: Mapping[str, np.ndarray], data_spec: DataSpec) -> 'Dataset':
        """Wrap encode_frame's output (or cached columns) for the spec they were encoded with."""
        return cls(columns, column_layout(data_spec))

    def __len__(self) -> int:
        return self.num_rows

    def num_batches(self, batch_size: int, drop_remainder: bool) -> int:
        if drop_remainder:
            return self.num_rows // batch_size
        return -(-self.num_rows // batch_size)

    # -- assembling one batch
    def _assemble(self, parts: Mapping[str, np.ndarray], n_real: int) -> dict[str, Any]:
        sparse_t = np.ascontiguousarray(parts['sparse'].T)  # one copy; rows become features
        dense_t = np.ascontiguousarray(parts['dense'].T)
        feats = {}
        for name, (kind, j, w) in self.layout.items():
            if kind == 'dense':
                feats[name] = dense_t[j]
            elif w == 1:
                feats[name] = sparse_t[j]
            else:
                feats[name] = np.ascontiguousarray(sparse_t[j:j + w].T)
        labels = parts['labels']
        mask = (labels >= 0).astype(np.float32)
        weight = np.ones(len(labels), np.float32)
        if n_real < len(labels):
            mask[n_real:] = 0
            weight[n_real:] = 0
        return {'features': feats, 'labels': (labels == 1).astype(np.float32),
                'label_mask': mask, 'domain': parts['domain'], 'group': parts['group'],
                'weight': weight}

    def _gather(self, idx: np.ndarray) -> dict[str, Any]:
        return self._assemble({k: np.take(self.columns[k], idx, axis=0) for k in self._order},
                              len(idx))

    def _slice(self, start: int, stop: int, batch_size: int) -> dict[str, Any]:
        n = stop - start
        parts = {}
        for k in self._order:
            col = self.columns[k]
            out = np.zeros((batch_size,) + col.shape[1:], col.dtype)
            out[:n] = col[start:stop]  # a copy: never hand out views of the memmap
            parts[k] = out
        return self._assemble(parts, n)

    # -- iteration
    def epoch_permutation(self, seed: int, epoch: int) -> np.ndarray:
        """The row order of one epoch: a pure function of (seed, epoch)."""
        return np.random.default_rng([int(seed), int(epoch)]).permutation(self.num_rows)

    def shard_bounds(self, shards: int) -> list[int]:
        """Row ranges of ``shards`` contiguous shards: shard k is rows [b[k], b[k + 1])."""
        return [k * self.num_rows // shards for k in range(shards + 1)]

    def num_train_batches(self, batch_size: int, shards: int = 1) -> int:
        """Full batches an epoch has; with shards, every shard gives batch_size // shards rows
        to each, so the smallest shard decides."""
        if shards == 1:
            return self.num_rows // batch_size
        if batch_size % shards:
            raise ValueError(f'config.data.batch_size={batch_size} does not split into '
                             f'{shards} equal shards (config.data.shards / processes)')
        return (self.num_rows // shards) // (batch_size // shards)

    def train_batches(self, batch_size: int, seed: int, epoch: int, start_batch: int = 0,
                      prefetch: int = 0, shards: int = 1,
                      shard: int | None = None) -> Iterator[dict[str, Any]]:
        """Shuffled full batches of one epoch (drop_remainder), from batch `start_batch` on.

        Same (seed, epoch) -> same batches, so a resumed run continues exactly. Rows inside a
        batch are sorted by index (better locality on the memmap; the set is unchanged).

        ``shards`` > 1 (multi-host): the rows are cut into that many contiguous ranges, and
        each batch is one sub-batch of batch_size // shards rows per range, each range
        shuffled on its own (seed, epoch, shard). ``shard=k`` yields range k's sub-batches
        alone, so a host reads only its own rows of the cache; ``shard=None`` the whole
        batches, sub-batches in shard order: what all hosts together feed, so one process with
        ``shards=N`` trains exactly as N hosts do.
        """
        if batch_size <= 0 or start_batch < 0:
            raise ValueError(f'batch_size={batch_size}, start_batch={start_batch}')
        if shards == 1:
            perm = self.epoch_permutation(seed, epoch)
            nb = self.num_batches(batch_size, True)
            gen = (self._gather(np.sort(perm[b * batch_size:(b + 1) * batch_size]))
                   for b in range(start_batch, nb))
        else:
            nb, sub = self.num_train_batches(batch_size, shards), batch_size // shards
            bounds = self.shard_bounds(shards)
            which = range(shards) if shard is None else [shard]
            perms = [bounds[k] + np.random.default_rng([int(seed), int(epoch), k, shards])
                     .permutation(bounds[k + 1] - bounds[k]) for k in which]
            gen = (self._gather(np.concatenate([np.sort(p[b * sub:(b + 1) * sub])
                                                for p in perms]))
                   for b in range(start_batch, nb))
        return prefetch_iter(gen, prefetch) if prefetch else gen

    def eval_batches(self, batch_size: int, prefetch: int = 0) -> Iterator[dict[str, Any]]:
        """Every row once, in order; the last batch is padded to batch_size with weight 0."""
        if batch_size <= 0:
            raise ValueError(f'batch_size={batch_size}')
        gen = (self._slice(s, min(s + batch_size, self.num_rows), batch_size)
               for s in range(0, self.num_rows, batch_size))
        return prefetch_iter(gen, prefetch) if prefetch else gen


PUT_POLL_SECONDS = 0.1  # how often a producer waiting on a full queue looks for a stop


def prefetch_iter(gen: Iterator[Any], depth: int) -> Iterator[Any]:
    """Run `gen` in a background thread, `depth` items ahead; stops when the consumer does.

    Closing the consumer (or leaving its loop) waits for the thread to end, so that no
    producer is left inside a device transfer while the interpreter shuts down (a thread
    killed there aborts the process).
    """
    q: queue.Queue = queue.Queue(maxsize=depth)
    stop = threading.Event()
    done = object()

    def put(item) -> bool:
        while not stop.is_set():
            try:
                q.put(item, timeout=PUT_POLL_SECONDS)
                return True
            except queue.Full:
                continue
        return False

    def work():
        try:
            for item in gen:
                if not put(item):
                    return
            put(done)
        except BaseException as e:  # surface producer errors in the consumer
            put(e)
        finally:
            close = getattr(gen, 'close', None)
            if close is not None:
                close()

    t = threading.Thread(target=work, daemon=True)
    t.start()
    try:
        while True:
            item = q.get()
            if item is done:
                return
            if isinstance(item, BaseException):
                raise item
            yield item
    finally:
        stop.set()
        while True:  # a producer blocked on a full queue returns at once, not after its timeout
            try:
                q.get_nowait()
            except queue.Empty:
                break
        t.join()


def load_datasets(data: Any, workdir: str | Path
                  ) -> tuple[dict[str, Dataset], tuple[FeatureInfo, ...], DataSpec, Vocab]:
    """Build (or load from cache) every split of ``data`` (a ``resolve.ResolvedData``; a data
    config is resolved first); save the vocab into <workdir>/vocab.

    A build streams when the format can (``DataFormat.read_chunks``): one pass over the
    training rows fits the vocabulary (``VocabFitter``), a second encodes every split chunk by
    chunk into the cache (``cache.CacheWriter``), so memory holds one chunk, the fitted
    statistics and the format's side tables, whatever the number of rows. A format without
    ``read_chunks`` is read whole (``read_splits``) and goes through the same two steps.
    """
    t0 = time.time()
    if not isinstance(data, ResolvedData):
        data = resolve(data, str(workdir))
    spec, reader = data.spec, data.format
    # Readers plan their columns from f.column; reader_spec() spells crosses out as their parts.
    # They get the config with the format's defaults filled in (empty = the format's).
    files = reader.input_files(data.reader_config, spec.reader_spec())
    cfg = dict(data.cache_fields)
    key = cache.cache_key(files, cfg)
    root = Path(data.cache_dir)
    hit = cache.load(root, key)
    if hit is None:
        note('data cache miss (%s): parsing %d file(s)', key, len(files))
        build_cache(reader, data.reader_config, spec, root, key,
                    dict(config=cfg, inputs=cache.fingerprint(files)), files)
        hit = cache.load(root, key)
        if hit is None:
            raise DataError(f'the cache just written to {root / key} does not load back (see the '
                            'line above); is the disk full?')
    else:
        note('data cache hit: %s', root / key)
    splits, vocab, _ = hit
    vocab.save(Path(workdir) / 'vocab')
    order = sorted(splits, key=lambda n: (('train', 'valid', 'test').index(n)
                                          if n in ('train', 'valid', 'test') else 3, n))
    datasets = {name: Dataset.from_columns(splits[name], spec) for name in order}
    note('datasets %s ready in %.1fs',
             {n: d.num_rows for n, d in datasets.items()}, time.time() - t0)
    return datasets, vocab.feature_infos(), spec, vocab


class IngestProgress:
    """One [data] line every ``every`` seconds while a pass reads its files: rows, MB/s and
    the ETA from the bytes left (file sizes are known up front)."""

    def __init__(self, what: str, total_bytes: int, every: float = 10.0, clock=time.time):
        self.what, self.total, self.every, self.clock = what, max(int(total_bytes), 1), every, clock
        self.t0 = self.last = clock()
        self.rows = 0
        self.done_bytes = 0  # bytes of the files finished before the current one

    def update(self, rows: int, file_bytes: int, force: bool = False) -> None:
        """``rows`` read so far in this pass, ``file_bytes`` into the current file."""
        self.rows = rows
        now = self.clock()
        if not force and now - self.last < self.every:
            return
        self.last = now
        done = min(self.done_bytes + file_bytes, self.total)
        rate = done / max(now - self.t0, 1e-9)
        eta = (self.total - done) / rate if rate > 0 else 0.0
        note('%s: %s rows, %.0f of %.0f MB (%.1f MB/s), ETA %ds', self.what, f'{rows:,}',
             done / 1e6, self.total / 1e6, rate / 1e6, eta)


class _SidePlan:
    """Which features come from which side table, and what must still be joined raw (cross
    parts and group columns that live in a table)."""

    def __init__(self, spec: DataSpec, tables):
        self.tables = list(tables)
        self.features: list[list] = []   # per table: its (non-cross) features
        self.raw: list[list[str]] = []   # per table: columns joined raw into the chunk
        taken = set()
        for t in self.tables:
            mine = [f for f in spec.features if f.kind != 'cross' and f.column in t.columns
                    and f.name not in taken]
            taken |= {f.name for f in mine}
            raw = {c for f in spec.features if f.kind == 'cross' for c in f.columns}
            raw |= set(spec.group_columns) | {spec.domain_column}
            self.features.append(mine)
            self.raw.append([c for c in t.columns if c in raw])
        self.side_names = taken

    def join_raw(self, chunk: pd.DataFrame) -> list[np.ndarray]:
        """Joins the raw columns in place; returns each table's row per chunk row (-1: none)."""
        rows = []
        for t, raw in zip(self.tables, self.raw):
            rows.append(t.rows(chunk))
            if raw:
                sidetables.join(chunk, t, raw)
        return rows


def build_cache(reader, read_config: Any, spec: DataSpec, root: Path, key: str,
                manifest: dict, files: list) -> None:
    """Fit the vocabulary on the training rows, then encode every split into the cache.

    With a streaming reader that has side tables, pass 1 fits the log columns' features on
    the training chunks and counts how often they name each table row, then fits the side
    features on the table rows weighted by those counts (what joined rows would count); pass
    2 encodes each table once and gathers its ids for every chunk row.
    """
    t0 = time.time()
    rspec = spec.reader_spec()
    plan = _SidePlan(spec, [])
    if reader.read_chunks is not None:
        total = sum(os.path.getsize(f) for f in files)
        shared: dict = {}  # the reader's, across both passes (e.g. side tables read once)
        if reader.side_tables is not None:
            plan = _SidePlan(spec, reader.side_tables(read_config, rspec, shared))
        join = not plan.tables
        # Parsed in a background thread, two chunks ahead: pandas' parser releases the GIL,
        # so reading the next chunk overlaps fitting or encoding this one.
        source = lambda only, progress: prefetch_iter(reader.read_chunks(
            read_config, rspec, only=only, progress=progress, shared=shared,
            **({} if join else {'join': False})), 2)
    else:
        frames = reader.read_splits(read_config, rspec)
        total = 0
        source = lambda only, progress: ((n, f) for n, f in frames.items()
                                         if only is None or n in only)
    fitter = VocabFitter(spec)
    log_features = [f for f in spec.features if f.name not in plan.side_names]
    counts = [np.zeros(len(t) + 1, np.int64) for t in plan.tables]  # last: unknown ids
    rows = 0
    progress = IngestProgress('pass 1 (vocabulary, train rows)', total)
    for split, chunk in source(('train',), progress):
        for c, r in zip(counts, plan.join_raw(chunk)):
            c += np.bincount(np.where(r < 0, len(c) - 1, r), minlength=len(c))
        fitter.update(chunk, features=log_features)
        rows += len(chunk)
    if rows == 0:
        raise DataError("split 'train' is empty: no rows to fit the vocabulary on")
    for t, feats, c in zip(plan.tables, plan.features, counts):
        if feats:
            fitter.update(t.frame, weights=c[:-1], features=feats)
    vocab = fitter.finish()
    t1 = time.time()
    note('pass 1: vocabulary fitted on %s training rows in %.1fs', f'{rows:,}', t1 - t0)
    # Each side feature encoded once per table row, and once for an unknown id (last row).
    table_ids = [{f.name: np.concatenate([vocab.encode_feature(f.name, t.frame[f.column]),
                                          vocab.encode_feature(f.name,
                                                               t.missing_row(f.column))])
                  for f in feats} for t, feats in zip(plan.tables, plan.features)]
    progress = IngestProgress('pass 2 (encode, every split)', total)
    counts_by_split: dict[str, int] = {}
    with cache.CacheWriter(root, key) as writer:
        for split, chunk in source(None, progress):
            encoded = {}
            for t, ids, r in zip(plan.tables, table_ids, plan.join_raw(chunk)):
                r = np.where(r < 0, len(t), r)
                encoded.update({name: table[r] for name, table in ids.items()})
            writer.append(split, encode_frame(chunk, spec, vocab, encoded))
            counts_by_split[split] = counts_by_split.get(split, 0) + len(chunk)
        note('pass 2: encoded %s in %.1fs',
             ', '.join(f'{n}={c:,}' for n, c in counts_by_split.items()), time.time() - t1)
        writer.finish(vocab, dict(manifest, build_seconds=time.time() - t0))


def load_vocab(workdir: str | Path) -> Vocab:
    """The vocab load_datasets saved into <workdir>/vocab (for predict mode)."""
    return Vocab.load(Path(workdir) / 'vocab')
