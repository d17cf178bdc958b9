"""Columnar cache: one .npy per column per split + the fitted vocab + a manifest.

The columns are pipeline.encode_frame's: 'sparse' (all id features, int32 [N, S]), 'dense',
'labels', 'domain', 'group' -- row-major blocks so that a shuffled batch is one gather each.

Parsing multi-GB CSVs takes minutes; loading memory-mapped .npy files takes milliseconds. The
cache folder name is a hash of everything the encoded columns depend on: the input files'
paths, sizes and mtimes, the feature spec and the split/tab/task config, and CACHE_VERSION
(bump it when the encoding changes). A changed spec or a touched file gives a new key, so a
stale cache is never read; old folders are left for the user to delete.

Builds go to a temporary sibling folder renamed into place at the end (atomic on POSIX), so
an interrupted build leaves no half cache, and two concurrent builds just race to the rename.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import time
import uuid
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np

from pepnet_jax.data.errors import note
from pepnet_jax.data.vocab import Vocab

CACHE_VERSION = 1
MANIFEST = 'manifest.json'


def fingerprint(files: Sequence[str | os.PathLike]) -> list[dict[str, Any]]:
    out = []
    for f in files:
        st = os.stat(f)
        out.append(dict(path=str(Path(f).resolve()), size=st.st_size, mtime_ns=st.st_mtime_ns))
    return out


def cache_key(files: Sequence[str | os.PathLike], config: Mapping[str, Any]) -> str:
    """Hash of (input file fingerprints, encoding-relevant config, CACHE_VERSION)."""
    doc = dict(version=CACHE_VERSION, files=fingerprint(files), config=config)
    blob = json.dumps(doc, sort_keys=True, default=str).encode()
    return hashlib.sha256(blob).hexdigest()[:20]


def _file_name(column: str) -> str:
    return f'{column}.npy'


def write(root: str | os.PathLike, key: str, splits: Mapping[str, Mapping[str, np.ndarray]],
          vocab: Vocab, manifest: Mapping[str, Any]) -> Path:
    """Write the cache for `key` atomically; returns its folder."""
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    final = root / key
    tmp = root / f'.tmp-{key}-{os.getpid()}-{uuid.uuid4().hex[:8]}'
    t0 = time.time()
    try:
        tmp.mkdir()
        layout = {}
        for split, columns in splits.items():
            (tmp / split).mkdir()
            layout[split] = {}
            for name, arr in columns.items():
                arr = np.ascontiguousarray(arr)
                np.save(tmp / split / _file_name(name), arr, allow_pickle=False)
                layout[split][name] = dict(dtype=arr.dtype.str, shape=list(arr.shape))
        vocab.save(tmp / 'vocab')
        doc = dict(manifest, key=key, cache_version=CACHE_VERSION, created=time.time(),
                   columns=layout, num_rows={s: int(next(iter(c.values())).shape[0])
                                             for s, c in splits.items()})
        (tmp / MANIFEST).write_text(json.dumps(doc, indent=1, sort_keys=True, default=str))
        try:
            os.rename(tmp, final)
        except OSError:
            if not (final / MANIFEST).exists():
                raise
            shutil.rmtree(tmp, ignore_errors=True)  # another process finished first
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    note('cache written to %s in %.1fs', final, time.time() - t0)
    return final


def load(root: str | os.PathLike, key: str
         ) -> tuple[dict[str, dict[str, np.ndarray]], Vocab, dict[str, Any]] | None:
    """(columns per split as read-only memmaps, vocab, manifest), or None on a miss."""
    folder = Path(root) / key
    path = folder / MANIFEST
    if not path.is_file():
        return None
    manifest = json.loads(path.read_text())
    if manifest.get('cache_version') != CACHE_VERSION:
        return None
    splits = {}
    for split, columns in manifest['columns'].items():
        splits[split] = {name: np.load(folder / split / _file_name(name), mmap_mode='r',
                                       allow_pickle=False)
                         for name in columns}
    return splits, Vocab.load(folder / 'vocab'), manifest
