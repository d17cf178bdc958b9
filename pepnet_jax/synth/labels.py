"""Labels: the chain click -> long view -> the other actions, with intercepts calibrated to
the target rates."""

from __future__ import annotations

from typing import Sequence

import numpy as np

from pepnet_jax.synth.stats import (
    CHAIN, LONG_VIEW_MS, MIN_RATE, TAB_STATS, TARGET_RATES, TASKS, VALID_PLAY_MS, _TI, _sigmoid)
from pepnet_jax.synth.world import _World
from pepnet_jax.synth.exposures import _Rows


def _lv_given_click(base: np.ndarray, a_lv: float) -> tuple[np.ndarray, np.ndarray]:
    """(P(long_view | click=1), P(long_view | click=0))."""
    zl = a_lv + base[:, _TI["long_view"]]
    return _sigmoid(zl + CHAIN["long_view"][0]), _sigmoid(zl)


def _task_marginal(task: str, a: float, base: np.ndarray, pc: np.ndarray, pl1: np.ndarray,
                   pl0: np.ndarray) -> np.ndarray:
    """P(task) marginalised over the click -> long_view chain (task after long_view)."""
    z = a + base[:, _TI[task]]
    kc, kl = CHAIN[task]
    return (pc * (pl1 * _sigmoid(z + kc + kl) + (1 - pl1) * _sigmoid(z + kc))
            + (1 - pc) * (pl0 * _sigmoid(z + kl) + (1 - pl0) * _sigmoid(z)))


def _chain_marginals(zc: np.ndarray, base: np.ndarray, alpha: dict[str, float]) -> dict:
    """P(task) for every task, marginalised over the click -> long_view chain."""
    pc = _sigmoid(zc)
    pl1, pl0 = _lv_given_click(base, alpha["long_view"])
    out = {"is_click": pc, "long_view": pc * pl1 + (1 - pc) * pl0}
    for t in ("is_like", "is_follow", "is_comment", "is_forward", "is_hate"):
        out[t] = _task_marginal(t, alpha[t], base, pc, pl1, pl0)
    return out


def _bisect(f, target: float, lo: float = -30.0, hi: float = 30.0, iters: int = 40) -> float:
    """Intercept ``a`` with mean probability ``f(a) == target`` (f increasing in a)."""
    for _ in range(iters):
        mid = 0.5 * (lo + hi)
        if f(mid) < target:
            lo = mid
        else:
            hi = mid
    return 0.5 * (lo + hi)


def _calibrate(std: Sequence[_Rows], rnd: Sequence[_Rows], click_target: dict[int, float],
               rand_click_target: dict[int, float], rng: np.random.Generator,
               max_rows: int = 200_000) -> dict:
    """Find all intercepts on (a subsample of) the pooled rows."""
    def pool(rows: Sequence[_Rows]):
        if not rows:
            return None, None
        base = np.concatenate([r.base for r in rows])
        tab = np.concatenate([r.tab for r in rows])
        if len(tab) > max_rows:
            keep = np.sort(rng.choice(len(tab), size=max_rows, replace=False))
            base, tab = base[keep], tab[keep]
        return base, tab

    base, tab = pool(std)
    clip = lambda p: float(np.clip(p, MIN_RATE, 1 - MIN_RATE))  # noqa: E731
    a_click = {}
    for t, target in click_target.items():
        zc = base[tab == t, 0]
        if zc.size == 0:
            a_click[t] = float(np.log(clip(target) / (1 - clip(target))))
            continue
        a_click[t] = _bisect(lambda a: _sigmoid(a + zc).mean(), clip(target))
    lut = np.zeros(len(TAB_STATS))
    for t, a in a_click.items():
        lut[t] = a
    zc_all = lut[tab] + base[:, 0]
    pc = _sigmoid(zc_all)

    def mean_lv(a):
        pl1, pl0 = _lv_given_click(base, a)
        return (pc * pl1 + (1 - pc) * pl0).mean()

    alpha = {"long_view": _bisect(mean_lv, TARGET_RATES["long_view"])}
    pl1, pl0 = _lv_given_click(base, alpha["long_view"])
    for task in ("is_like", "is_follow", "is_comment", "is_forward", "is_hate"):
        alpha[task] = _bisect(lambda a, t=task: _task_marginal(t, a, base, pc, pl1, pl0).mean(),
                              TARGET_RATES[task])
    a_rand = {}
    rbase, rtab = pool(rnd)
    for t, target in rand_click_target.items():
        zc = rbase[rtab == t, 0] if rbase is not None else np.empty(0)
        a_rand[t] = (_bisect(lambda a: _sigmoid(a + zc).mean(), clip(target)) if zc.size
                     else float(np.log(clip(target) / (1 - clip(target)))))
    return {"click": a_click, "rand_click": a_rand, **alpha}


def _draw_labels(rng: np.random.Generator, rows: _Rows, calib: dict, world: _World) -> None:
    """Draw the chain of labels and the consistent play/stay times; store the truth."""
    n, base = rows.n, rows.base
    a_click = calib["rand_click"] if rows.is_rand else calib["click"]
    lut = np.zeros(len(TAB_STATS))
    for t, a in a_click.items():
        lut[t] = a
    zc = lut[rows.tab] + base[:, 0]
    alpha = {k: calib[k] for k in CHAIN}
    truth = _chain_marginals(zc, base, alpha)
    rows.truth = np.column_stack([truth[t] for t in TASKS])

    lab = {}
    lab["is_click"] = (rng.random(n) < _sigmoid(zc)).astype(np.int64)
    c = lab["is_click"]
    zl = alpha["long_view"] + base[:, _TI["long_view"]] + CHAIN["long_view"][0] * c
    lab["long_view"] = (rng.random(n) < _sigmoid(zl)).astype(np.int64)
    lv = lab["long_view"]
    for t in ("is_like", "is_follow", "is_comment", "is_forward", "is_hate"):
        a, b = CHAIN[t]
        z = alpha[t] + base[:, _TI[t]] + a * c + b * lv
        lab[t] = (rng.random(n) < _sigmoid(z)).astype(np.int64)
    rows.labels = lab
    # The profile-enter logit; its intercept is calibrated later on the drawn labels.
    rows.z_profile = (0.5 * base[:, _TI["is_follow"]] + 1.0 * c + 0.8 * lv
                      + 2.5 * lab["is_follow"])

    # play_time_ms consistent with long_view (official README: play >= min(duration, 18 s)).
    D = world.duration_ms[rows.video].astype(np.float64)
    T = np.minimum(D, LONG_VIEW_MS)
    u1, u2, u3 = rng.random(n), rng.random(n), rng.random(n)
    replay = np.where(u3 < 0.15, 1.0 + 1.5 * u2, 1.0 + 0.05 * u2)
    frac = rng.beta(1.2, 1.5, n)
    long_play = np.where(D <= LONG_VIEW_MS, D * replay, T + frac * (1.05 * D - T))
    long_play = np.where((D > LONG_VIEW_MS) & (u3 < 0.05), D * (1 + u2), long_play)
    lo = np.minimum(VALID_PLAY_MS, 0.5 * T)
    click_short = lo + u1 * (T - 1 - lo)
    skip = np.where(u2 < 0.55, 0.0, u1 * np.minimum(T - 1, VALID_PLAY_MS))
    play = np.where(lv == 1, np.maximum(np.ceil(long_play), T),
                    np.where(c == 1, np.floor(click_short), np.floor(skip)))
    rows.play_time_ms = play.astype(np.int64)
    rows.duration_ms = D.astype(np.int64)
    # comment_stay_time: always after a comment, sometimes after a long view (browsing).
    browse = (lab["is_comment"] == 1) | ((lv == 1) & (rng.random(n) < 0.03))
    median = np.where(lab["is_comment"] == 1, 20000.0, 8000.0)
    rows.comment_stay_time = np.where(
        browse, np.rint(rng.lognormal(np.log(median), 0.8, n)), 0).astype(np.int64)


def _draw_profile(rng: np.random.Generator, rows: _Rows, a_profile: float) -> None:
    enter = (rng.random(rows.n) < _sigmoid(a_profile + rows.z_profile)).astype(np.int64)
    rows.labels["is_profile_enter"] = enter
    rows.profile_stay_time = np.where(
        enter == 1, np.rint(rng.lognormal(np.log(8000.0), 0.9, rows.n)) + 1, 0).astype(np.int64)
