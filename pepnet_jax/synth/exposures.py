"""Exposures: which user sees which video, in which tab, when."""

from __future__ import annotations

import datetime as _dt

import numpy as np

from pepnet_jax.synth.stats import (
    BEIJING_UTC_OFFSET_MS, HOUR_WEIGHTS, N_POLICY_CANDIDATES, _categorical)
from pepnet_jax.synth.side import _normalize
from pepnet_jax.synth.world import _World


class _Rows:
    """Exposure skeleton of one log file plus its base logits (no intercepts)."""

    def __init__(self, **kw):
        self.__dict__.update(kw)


def _sample_rows(rng: np.random.Generator, world: _World, n: int, start: _dt.date, days: int,
                 tab_shares: dict[int, float], is_rand: bool) -> _Rows:
    tabs = np.asarray(list(tab_shares))
    counts = rng.multinomial(n, _normalize(list(tab_shares.values())))
    tab = np.repeat(tabs, counts).astype(np.int64)
    U, V = world.user_weight.shape[0], world.video_pop.size
    user = np.empty(n, dtype=np.int64)
    off = 0
    for t, c in zip(tabs, counts):
        w = _normalize(world.user_weight[:, t])
        user[off:off + c] = rng.choice(U, size=c, p=w)
        off += c
    if is_rand:  # random exposure: uniform over the candidate pool
        video = rng.integers(0, V, size=n)
    else:  # standard feed: the best of a few popularity-drawn candidates by a noisy policy score
        cand = rng.choice(V, size=(n, N_POLICY_CANDIDATES), p=world.video_pop)
        score = np.empty(cand.shape)
        for j in range(N_POLICY_CANDIDATES):
            score[:, j] = world.click_score(user, cand[:, j], tab) + rng.standard_normal(n)
        video = cand[np.arange(n), np.argmax(score, axis=1)]
    day = rng.integers(0, days, size=n)
    hour = _categorical(rng, HOUR_WEIGHTS, n)
    midnight = np.array([
        (_dt.datetime(s.year, s.month, s.day, tzinfo=_dt.timezone.utc)
         - _dt.datetime(1970, 1, 1, tzinfo=_dt.timezone.utc)).total_seconds() * 1000
        for s in (start + _dt.timedelta(days=k) for k in range(days))
    ], dtype=np.int64) - BEIJING_UTC_OFFSET_MS
    time_ms = midnight[day] + hour * 3_600_000 + rng.integers(0, 3_600_000, size=n)
    order = np.lexsort((time_ms, user))
    user, video, tab, day, hour, time_ms = (
        a[order] for a in (user, video, tab, day, hour, time_ms))
    date_int = np.array([int((start + _dt.timedelta(days=k)).strftime("%Y%m%d"))
                         for k in range(days)], dtype=np.int64)[day]
    # No row-level noise: the truth must be what a model can reach from the row's features.
    base = world.logits(user, video, tab, hour)
    # hourmin = Beijing hour x 100, minutes dropped (official README example: a time_ms at
    # 04:16 Beijing time has hourmin 400).
    return _Rows(n=n, user=user, video=video, tab=tab, date=date_int,
                 hourmin=(hour * 100).astype(np.int64), time_ms=time_ms, base=base,
                 is_rand=is_rand)
