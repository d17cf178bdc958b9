"""Files written whole or not at all: the one home for write-to-a-temporary-then-rename.

Folders built whole (a cached dataset in ``data/cache.py``, a checkpoint step in orbax) are
renamed into place by their own code: one ``os.rename`` of a folder, the same idea.
"""

from __future__ import annotations

import contextlib
import os
import threading
from typing import IO, Iterator


@contextlib.contextmanager
def atomic_write(path: str | os.PathLike, mode: str = 'w', **open_kwargs) -> Iterator[IO]:
  """Yields a file opened on a temporary name beside ``path``; a clean exit renames it over
  ``path`` (one ``os.replace``: atomic within a file system), an exception removes it.

  A reader or a kill sees the old file or the new one, never half of one. Several files
  written this way are each atomic, not atomic together: a multi-file save needs its own
  check (``Vocab`` stores a digest in both files).
  """
  path = os.fspath(path)
  tmp = f'{path}.tmp-{os.getpid()}-{threading.get_ident()}'  # unique per process and thread
  try:
    with open(tmp, mode, **open_kwargs) as f:
      yield f
    os.replace(tmp, path)
  finally:
    if os.path.exists(tmp):
      os.remove(tmp)
