"""Side features: the user and video tables, drawn from the real marginals."""

from __future__ import annotations

import numpy as np
import pandas as pd

from pepnet_jax.synth.stats import (
    ACTIVE_DEGREE_COUNTS, AD_RATE_GIVEN_UNKNOWN_UPLOAD, AUTHOR_ID_MAX, COUNT_CORR,
    COUNT_PERCENTILES, COUNT_QUANTILES, DEGREES, DURATION_PERCENTILES, LIVE_STREAMER_RATE,
    MUSIC_TYPE_COUNTS, ONEHOT12_17_NAN_RATE, ONEHOT12_17_RATE, ONEHOT4_NAN_RATE,
    ONEHOT7_SORTED_COUNTS, ONEHOT_COUNTS, ONEHOT_RANK_PROFILE, SERVER_DIMS_COUNTS,
    SERVER_DIMS_OTHER, TAG_COMBO_COUNTS, TAG_NAN_COUNT, UNKNOWN_VIDEO_TYPE_RATE,
    UPLOAD_DT_COUNTS, UPLOAD_TYPES, USER_COLUMNS, VIDEO_AUTHOR_RATE, _bucket, _categorical,
    _distinct_ints)


def make_users(rng: np.random.Generator, n_users: int) -> pd.DataFrame:
    """User table with the real columns, formats and marginal frequencies."""
    U = n_users
    deg = _categorical(rng, list(ACTIVE_DEGREE_COUNTS.values()), U)
    deg_names = np.asarray(DEGREES, dtype=object)[deg]
    live_p = np.array([LIVE_STREAMER_RATE[d] for d in DEGREES])[deg]
    author_p = np.array([VIDEO_AUTHOR_RATE[d] for d in DEGREES])[deg]
    df = {
        "user_id": np.arange(U, dtype=np.int64),
        "user_active_degree": deg_names,
        "is_lowactive_period": np.zeros(U, dtype=np.int64),
        "is_live_streamer": np.where(rng.random(U) < live_p, 1, -124).astype(np.int64),
        "is_video_author": (rng.random(U) < author_p).astype(np.int64),
    }
    # Gaussian copula: rank the correlated normals to uniforms, then invert the marginals.
    z = rng.standard_normal((U, 4)) @ np.linalg.cholesky(COUNT_CORR).T
    pct = (np.argsort(np.argsort(z, axis=0), axis=0) + rng.random((U, 4))) / U * 100.0
    for j, col in enumerate(COUNT_QUANTILES):
        logq = np.log1p(np.asarray(COUNT_QUANTILES[col], dtype=np.float64))
        vals = np.rint(np.expm1(np.interp(pct[:, j], COUNT_PERCENTILES, logq))).astype(np.int64)
        df[col] = vals
        df[f"{col}_range"] = _bucket(vals, col)
    for i in range(18):
        name = f"onehot_feat{i}"
        if i in ONEHOT_COUNTS:
            cats = np.asarray(list(ONEHOT_COUNTS[i]))
            vals = cats[_categorical(rng, list(ONEHOT_COUNTS[i].values()), U)]
        elif i == 7:
            perm = rng.permutation(len(ONEHOT7_SORTED_COUNTS))
            vals = perm[_categorical(rng, ONEHOT7_SORTED_COUNTS, U)]
        elif i in ONEHOT_RANK_PROFILE:
            card, prof = ONEHOT_RANK_PROFILE[i]
            ranks, counts = np.asarray(prof, dtype=np.float64).T
            w = np.exp(np.interp(np.log(np.arange(1, card + 1)), np.log(ranks), np.log(counts)))
            vals = rng.permutation(card)[_categorical(rng, w, U)]
        else:  # binary onehot_feat12..17
            vals = (rng.random(U) < ONEHOT12_17_RATE[i - 12]).astype(np.int64)
        df[name] = vals.astype(np.int64)
    f4 = df["onehot_feat4"].astype(np.float64)
    f4[rng.random(U) < ONEHOT4_NAN_RATE] = np.nan
    df["onehot_feat4"] = f4
    nan12 = rng.random(U) < ONEHOT12_17_NAN_RATE
    for i in range(12, 18):
        v = df[f"onehot_feat{i}"].astype(np.float64)
        v[nan12] = np.nan
        df[f"onehot_feat{i}"] = v
    return pd.DataFrame({c: df[c] for c in USER_COLUMNS})


def _tag_table() -> tuple[list[str], np.ndarray]:
    combos, counts = [], []
    for item in TAG_COMBO_COUNTS.split():
        tag, cnt = item.split(":")
        combos.append(tag)
        counts.append(int(cnt))
    return combos, np.asarray(counts, dtype=np.float64)


#: The 46 distinct tag ids, sorted; index len(ALL_TAGS) means "no tag".
ALL_TAGS = tuple(sorted({int(t) for c in _tag_table()[0] for t in c.split(",")}))


def make_videos(rng: np.random.Generator, n_videos: int, n_authors: int) -> pd.DataFrame:
    """Video table with the real columns, formats and marginal frequencies."""
    V, A = n_videos, n_authors
    names = list(UPLOAD_TYPES)
    ut = _categorical(rng, [UPLOAD_TYPES[n][0] for n in names], V)
    ut_names = np.asarray(names, dtype=object)[ut]
    vtype = np.full(V, "NORMAL", dtype=object)
    unk = ut_names == "UNKNOWN"
    vtype[unk & (rng.random(V) < AD_RATE_GIVEN_UNKNOWN_UPLOAD)] = "AD"
    vtype[(vtype == "NORMAL") & (rng.random(V) < UNKNOWN_VIDEO_TYPE_RATE)] = "UNKNOWN"
    dts = list(UPLOAD_DT_COUNTS)
    upload_dt = np.asarray(dts, dtype=object)[_categorical(rng, list(UPLOAD_DT_COUNTS.values()), V)]

    dur = np.full(V, np.nan)
    music_zero = np.zeros(V, dtype=bool)
    u_dur, u_nan, u_mus = rng.random(V) * 100.0, rng.random(V), rng.random(V)
    for k, name in enumerate(names):
        cnt, n_nan, n_mus0, q = UPLOAD_TYPES[name]
        m = ut == k
        music_zero[m] = u_mus[m] < n_mus0 / cnt
        if q is None:
            continue
        d = np.rint(np.exp(np.interp(u_dur[m], DURATION_PERCENTILES, np.log(q))))
        d[u_nan[m] < n_nan / cnt] = np.nan
        dur[m] = d

    dims = list(SERVER_DIMS_COUNTS)
    di = _categorical(rng, list(SERVER_DIMS_COUNTS.values()) + [SERVER_DIMS_OTHER], V)
    other = di == len(dims)
    wh = np.asarray(dims + [(0, 0)], dtype=np.float64)[di]
    n_other = int(other.sum())
    wh[other, 0] = 2 * rng.integers(135, 1201, size=n_other)
    wh[other, 1] = 2 * rng.integers(224, 1201, size=n_other)

    # Music: ~96% of videos have their own track, the rest reuse a few popular ones.
    music_id = np.where(rng.random(V) < 0.8, _distinct_ints(rng, 9_135_000_000, 9_170_300_000, V),
                        _distinct_ints(rng, 30_000, 9_135_000_000, V))
    reuse = rng.random(V) < 0.04
    pop = music_id[: max(1, V // 50)]
    music_id[reuse] = pop[rng.integers(0, pop.size, size=int(reuse.sum()))]
    music_zero |= vtype == "AD"
    music_id[music_zero] = 0
    mt = np.asarray(list(MUSIC_TYPE_COUNTS), dtype=np.float64)
    music_type = mt[_categorical(rng, list(MUSIC_TYPE_COUNTS.values()), V)]
    music_type[music_zero] = np.nan

    combos, counts = _tag_table()
    ti = _categorical(rng, np.append(counts, TAG_NAN_COUNT), V)
    tag = np.asarray(combos + [np.nan], dtype=object)[ti]

    # Authors: every author has at least one video; the rest follow a heavy-tailed
    # productivity (real Pure: 7,583 videos by 6,510 authors, one author with 26).
    author_ids = _distinct_ints(rng, 0, AUTHOR_ID_MAX + 1, A)
    extra = rng.choice(A, size=V - A, p=_normalize(rng.lognormal(0.0, 1.2, A)))
    author_of = rng.permutation(np.concatenate([np.arange(A), extra]))
    return pd.DataFrame({
        "video_id": np.arange(V, dtype=np.int64),
        "author_id": author_ids[author_of],
        "video_type": vtype,
        "upload_dt": upload_dt,
        "upload_type": ut_names,
        "visible_status": np.zeros(V),
        "video_duration": dur,
        "server_width": wh[:, 0],
        "server_height": wh[:, 1],
        "music_id": music_id.astype(np.int64),
        "music_type": music_type,
        "tag": tag,
    })


def _normalize(w: np.ndarray) -> np.ndarray:
    w = np.asarray(w, dtype=np.float64)
    return w / w.sum()


def _rms_normalize(m: np.ndarray) -> np.ndarray:
    """Columns scaled to a mean square of 1 (a multiplier then keeps a term's variance)."""
    return m / np.sqrt(np.mean(m ** 2, axis=0, keepdims=True))
