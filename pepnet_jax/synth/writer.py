"""Fast CSV writing: integer and fixed-point columns assembled as bytes with NumPy."""

from __future__ import annotations

from typing import Sequence

import numpy as np

from pepnet_jax.synth.stats import LOG_COLUMNS, TRUTH_COLUMNS
from pepnet_jax.synth.exposures import _Rows


def _int_csv_bytes(cols: Sequence[np.ndarray]) -> bytes:
    """CSV lines of non-negative int columns; same text as ``str(int)`` joined by commas."""
    n = len(cols[0])
    parts, masks = [], []
    for j, c in enumerate(cols):
        c = np.asarray(c, dtype=np.int64)
        if n and c.min() < 0:
            raise ValueError("negative values are not supported")
        w = len(str(int(c.max()))) if n else 1
        digits = np.empty((n, w), dtype=np.uint8)
        ndig = np.ones(n, dtype=np.int64)
        x = c.copy()
        for k in range(w - 1, -1, -1):
            digits[:, k] = 48 + x % 10
            x //= 10
        for k in range(1, w):
            ndig += c >= 10 ** k
        parts.append(digits)
        masks.append(np.arange(w)[None, :] >= (w - ndig)[:, None])
        sep = np.full((n, 1), 10 if j == len(cols) - 1 else 44, dtype=np.uint8)
        parts.append(sep)
        masks.append(np.ones((n, 1), dtype=bool))
    buf = np.concatenate(parts, axis=1)
    mask = np.concatenate(masks, axis=1)
    return buf[mask].tobytes()


def _prob_csv_bytes(p: np.ndarray, decimals: int = 8) -> bytes:
    """CSV lines of probabilities written as ``0.dddddddd`` (clipped into (0, 1))."""
    n, m = p.shape
    scale = 10 ** decimals
    k = np.clip(np.rint(p * scale), 1, scale - 1).astype(np.int64)
    width = 2 + decimals + 1
    buf = np.empty((n, m, width), dtype=np.uint8)
    buf[:, :, 0] = 48
    buf[:, :, 1] = 46
    for d in range(decimals - 1, -1, -1):
        buf[:, :, 2 + d] = 48 + k % 10
        k //= 10
    buf[:, :, -1] = 44
    buf[:, -1, -1] = 10
    return buf.tobytes()


def _write_log(path: str, rows: _Rows, chunk: int = 250_000) -> None:
    cols = {
        "user_id": rows.user, "video_id": rows.video, "date": rows.date,
        "hourmin": rows.hourmin, "time_ms": rows.time_ms, **rows.labels,
        "play_time_ms": rows.play_time_ms, "duration_ms": rows.duration_ms,
        "profile_stay_time": rows.profile_stay_time,
        "comment_stay_time": rows.comment_stay_time,
        "is_rand": np.full(rows.n, int(rows.is_rand), dtype=np.int64), "tab": rows.tab,
    }
    with open(path, "wb") as f:
        f.write((",".join(LOG_COLUMNS) + "\n").encode())
        for s in range(0, rows.n, chunk):
            f.write(_int_csv_bytes([cols[c][s:s + chunk] for c in LOG_COLUMNS]))


def _write_truth(path: str, rows: _Rows, chunk: int = 250_000) -> None:
    with open(path, "wb") as f:
        f.write((",".join(TRUTH_COLUMNS) + "\n").encode())
        for s in range(0, rows.n, chunk):
            f.write(_prob_csv_bytes(rows.truth[s:s + chunk]))
