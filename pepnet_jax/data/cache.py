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
``CacheWriter`` builds one chunk at a time (streaming ingestion): each column's .npy file is
appended to behind a fixed-size header that gets the final shape at the end, so memory never
holds more than a chunk.

A cache damaged later (a truncated copy, a full disk, stray writes) must not crash deep inside
numpy nor feed garbage to training: the manifest records every file's size and CRC32, and
load() checks them: sizes and .npy headers always, the CRC over every byte while the cache is
under FULL_CHECK_BYTES (~0.2 s per GB from the page cache), else over SAMPLE_WINDOWS windows
per file. A damaged cache is named in one line and removed, and load() reports a miss, so the
caller rebuilds it.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import struct
import time
import uuid
import zlib
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np

from pepnet_jax.data.errors import DataError, note
from pepnet_jax.data.vocab import Vocab

CACHE_VERSION = 1
MANIFEST = 'manifest.json'
FULL_CHECK_BYTES = 1 << 30
SAMPLE_WINDOWS, SAMPLE_BYTES = 64, 1 << 16


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


_HEADER_BYTES = 128  # magic, version, length and the dict, padded: room for any 2-D shape


def _npy_header(dtype: np.dtype, shape: tuple[int, ...]) -> bytes:
    """A .npy version 1.0 header of exactly _HEADER_BYTES bytes (np.load reads it as usual)."""
    body = "{'descr': %r, 'fortran_order': False, 'shape': %r, }" % (np.dtype(dtype).str,
                                                                     tuple(int(x) for x in shape))
    room = _HEADER_BYTES - 10
    if len(body) >= room:
        raise ValueError(f'shape {shape} does not fit a {_HEADER_BYTES}-byte .npy header')
    return b'\x93NUMPY\x01\x00' + struct.pack('<H', room) + (body.ljust(room - 1) + '\n').encode()


class CacheWriter:
    """Writes the cache for ``key`` chunk by chunk: ``append(split, columns)`` any number of
    times (a split's rows in order), then ``finish(vocab, manifest)``; ``abort()`` (or an
    exception inside ``with``) removes the partial folder. The result equals ``write`` of the
    concatenated columns, byte for byte."""

    def __init__(self, root: str | os.PathLike, key: str):
        self.root = Path(root)
        self.root.mkdir(parents=True, exist_ok=True)
        self.key = key
        self.final = self.root / key
        self.tmp = self.root / f'.tmp-{key}-{os.getpid()}-{uuid.uuid4().hex[:8]}'
        self.tmp.mkdir()
        self.files: dict[tuple[str, str], Any] = {}
        self.meta: dict[str, dict[str, tuple[np.dtype, tuple[int, ...]]]] = {}
        self.rows: dict[str, int] = {}
        self.t0 = time.time()

    def __enter__(self):
        return self

    def __exit__(self, kind, value, tb):
        if kind is not None:
            self.abort()

    def append(self, split: str, columns: Mapping[str, np.ndarray]) -> None:
        if split not in self.meta:
            if self.rows:
                # every split holds the same columns: the first split's set is the contract
                first = next(iter(self.meta.values()))
                if set(columns) != set(first):
                    raise ValueError(f'cache split {split!r}: columns {sorted(columns)} differ '
                                     f'from {sorted(first)}')
            (self.tmp / split).mkdir()
            self.meta[split], self.rows[split] = {}, 0
        n = None
        for name, arr in columns.items():
            arr = np.ascontiguousarray(arr)
            n = arr.shape[0] if n is None else n
            if arr.shape[0] != n:
                raise ValueError(f'cache split {split!r}: column {name!r} has {arr.shape[0]} '
                                 f'rows, others {n}')
            known = self.meta[split].get(name)
            if known is None:
                self.meta[split][name] = (arr.dtype, arr.shape[1:])
                f = open(self.tmp / split / _file_name(name), 'wb')
                f.write(_npy_header(arr.dtype, (0,) + arr.shape[1:]))
                self.files[split, name] = f
            elif known != (arr.dtype, arr.shape[1:]):
                raise ValueError(f'cache split {split!r}: column {name!r} changes from '
                                 f'{known} to {(arr.dtype, arr.shape[1:])}')
            if arr.size:  # a view of the bytes, no copy (memoryview refuses empty shapes)
                self.files[split, name].write(arr.reshape(-1).view(np.uint8).data)
        self.rows[split] += n or 0

    def finish(self, vocab: Vocab, manifest: Mapping[str, Any]) -> Path:
        try:
            layout = {}
            for (split, name), f in self.files.items():
                dtype, tail = self.meta[split][name]
                shape = (self.rows[split],) + tail
                f.seek(0)
                f.write(_npy_header(dtype, shape))
                f.close()
                layout.setdefault(split, {})[name] = dict(dtype=dtype.str, shape=list(shape))
            self.files = {}
            vocab.save(self.tmp / 'vocab')
            files = {}
            for path in sorted(self.tmp.rglob('*')):
                if path.is_file():
                    files[path.relative_to(self.tmp).as_posix()] = dict(
                        size=path.stat().st_size, crc32=_crc32(path),
                        sample_crc32=_crc32(path, True))
            doc = dict(manifest, key=self.key, cache_version=CACHE_VERSION, created=time.time(),
                       columns=layout, files=files, num_rows=dict(self.rows))
            (self.tmp / MANIFEST).write_text(json.dumps(doc, indent=1, sort_keys=True,
                                                        default=str))
            try:
                os.rename(self.tmp, self.final)
            except OSError:
                if not (self.final / MANIFEST).exists():
                    raise
                shutil.rmtree(self.tmp, ignore_errors=True)  # another process finished first
        except BaseException:
            self.abort()
            raise
        note('cache written to %s in %.1fs', self.final, time.time() - self.t0)
        return self.final

    def abort(self) -> None:
        for f in self.files.values():
            f.close()
        self.files = {}
        shutil.rmtree(self.tmp, ignore_errors=True)


def write(root: str | os.PathLike, key: str, splits: Mapping[str, Mapping[str, np.ndarray]],
          vocab: Vocab, manifest: Mapping[str, Any]) -> Path:
    """Write the cache for `key` atomically (whole splits at once); returns its folder."""
    with CacheWriter(root, key) as w:
        for split, columns in splits.items():
            w.append(split, columns)
        return w.finish(vocab, manifest)


def load(root: str | os.PathLike, key: str
         ) -> tuple[dict[str, dict[str, np.ndarray]], Vocab, dict[str, Any]] | None:
    """(columns per split as read-only memmaps, vocab, manifest), or None on a miss.

    A damaged cache is a miss too: one line names the bad file, and the folder is removed so
    that the rebuild can take its place.
    """
    folder = Path(root) / key
    path = folder / MANIFEST
    if not path.is_file():
        return None
    try:
        manifest = json.loads(path.read_text())
        if not isinstance(manifest, dict):
            raise ValueError('not a JSON object')
    except (ValueError, OSError) as e:
        return _damaged(folder, MANIFEST, f'unreadable: {e}')
    if manifest.get('cache_version') != CACHE_VERSION:
        return None
    try:
        bad = verify(folder, manifest)
        if bad:
            return _damaged(folder, *bad)
        splits = {}
        for split, columns in manifest['columns'].items():
            splits[split] = {name: np.load(folder / split / _file_name(name), mmap_mode='r',
                                           allow_pickle=False)
                             for name in columns}
        vocab = Vocab.load(folder / 'vocab')
    except (DataError, ValueError, KeyError, TypeError, OSError, EOFError) as e:
        return _damaged(folder, 'a cache file', f'{type(e).__name__}: {e}')
    return splits, vocab, manifest


def verify(folder: str | os.PathLike, manifest: Mapping[str, Any]) -> tuple[str, str] | None:
    """(file, what is wrong) for the first damaged file of a cache folder, or None if sound."""
    folder = Path(folder)
    for split, columns in manifest['columns'].items():
        for name, meta in columns.items():
            rel = f'{split}/{_file_name(name)}'
            bad = _check_npy(folder / rel, np.dtype(meta['dtype']), tuple(meta['shape']))
            if bad:
                return rel, bad
    files = manifest.get('files') or {}  # absent in caches written before checksums
    full = sum(int(m['size']) for m in files.values()) <= FULL_CHECK_BYTES
    for rel, meta in files.items():
        p = folder / rel
        if not p.is_file():
            return rel, 'missing'
        size = p.stat().st_size
        if size != meta['size']:
            return rel, f'{size:,} bytes, {meta["size"]:,} written'
        if _crc32(p, sample=not full) != meta['crc32' if full else 'sample_crc32']:
            return rel, 'checksum mismatch: its bytes changed after it was written'
    return None


def _check_npy(path: Path, dtype: np.dtype, shape: tuple[int, ...]) -> str | None:
    """The .npy header and the file size against what the manifest says was written."""
    if not path.is_file():
        return 'missing'
    try:
        with open(path, 'rb') as f:
            version = np.lib.format.read_magic(f)
            read_header = (np.lib.format.read_array_header_1_0 if version == (1, 0)
                           else np.lib.format.read_array_header_2_0)
            got_shape, fortran, got_dtype = read_header(f)
            offset = f.tell()
    except (ValueError, OSError, EOFError) as e:
        return f'not a readable .npy file ({e})'
    if got_dtype != dtype or tuple(got_shape) != shape or fortran:
        return f'holds {got_dtype} {tuple(got_shape)}, the manifest says {dtype} {shape}'
    size, want = path.stat().st_size, offset + int(np.prod(shape)) * dtype.itemsize
    if size != want:
        return f'{size:,} bytes where {want:,} are expected (truncated?)'
    return None


def _crc32(path: Path, sample: bool = False) -> int:
    """CRC32 of the file, or (sample=True, big files) of SAMPLE_WINDOWS evenly spread windows."""
    size = path.stat().st_size
    crc = 0
    with open(path, 'rb') as f:
        if not sample or size <= SAMPLE_WINDOWS * SAMPLE_BYTES:
            while block := f.read(1 << 24):
                crc = zlib.crc32(block, crc)
            return crc
        for offset in np.linspace(0, size - SAMPLE_BYTES, SAMPLE_WINDOWS).astype(np.int64):
            f.seek(int(offset))
            crc = zlib.crc32(f.read(SAMPLE_BYTES), crc)
    return crc


def _damaged(folder: Path, what: str, why: str) -> None:
    """Warn once, move the folder out of the key's way and remove it; a miss for the caller."""
    note('cache %s is damaged: %s: %s; rebuilding it from the CSVs', folder, what, why)
    trash = folder.parent / f'.damaged-{folder.name}-{os.getpid()}-{uuid.uuid4().hex[:8]}'
    try:
        os.rename(folder, trash)
    except OSError as e:
        raise DataError(f'cache {folder} is damaged ({what}: {why}) and cannot be moved away '
                        f'({e}); delete it and run again') from None
    shutil.rmtree(trash, ignore_errors=True)
    return None
