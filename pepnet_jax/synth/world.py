"""The latent world: per-user, per-video and per-author tables of the label model."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Sequence

import numpy as np
import pandas as pd

from pepnet_jax.synth.stats import (
    DEFAULT_DUR_CLICK, DEGREES, DEGREE_ACTIVITY, DEGREE_EFFECT, DEGREE_SCALE, DUR_CLICK,
    K_FROM_M, LATENT_DIM, N_REAL_USERS, P_FEAT, P_OWN, Q_FEAT, Q_OWN, RHO_K, RHO_SCALE_AUTHOR,
    RHO_SHARED, R_OWN, SCALE_AUTHOR, SCALE_DEG, SIG_AUTHOR, SIG_K_OWN, SIG_SCALE,
    SIG_SCALE_AUTHOR_ID, SIG_SCALE_OWN, SIG_USER, SIG_VIDEO, STYLE_ANGLE, TAB_LAMBDA, TAB_STATS,
    TASKS, W_AD, W_AFF, W_AUTHOR_USER, W_DEG, W_DUR, W_F1, W_FOLLOWS, W_HOUR, W_TAG, _sigmoid)
from pepnet_jax.synth.side import ALL_TAGS, _normalize, _rms_normalize


def _effects(rng: np.random.Generator, n: int, rho) -> np.ndarray:
    """n x T task effects: a part common to the entity's tasks (weight ``rho``) and its own."""
    shared = rng.standard_normal((n, len(TASKS)))
    own = rng.standard_normal((n, len(TASKS)))
    return rho * shared[:, :1] + np.sqrt(1 - rho ** 2) * own


def _side_codes(users: pd.DataFrame, videos: pd.DataFrame) -> SimpleNamespace:
    """The sizes and the side-feature codes the world is built from (no random draws)."""
    D = len(TAB_STATS)
    tabs = tuple(range(D))
    first_tag = videos["tag"].map(lambda s: s.split(",")[0] if isinstance(s, str) else -1)
    tag_pos = {t: i for i, t in enumerate(ALL_TAGS)}
    author_codes, author_of = np.unique(videos["author_id"].to_numpy(), return_inverse=True)
    follows = np.log1p(users["follow_user_num"].to_numpy(dtype=np.float64))
    return SimpleNamespace(
        U=len(users), V=len(videos), A=author_codes.size, K=LATENT_DIM, T=len(TASKS), D=D,
        tabs=tabs, author_of=author_of,
        deg=pd.Categorical(users["user_active_degree"], categories=DEGREES).codes,
        f1=users["onehot_feat1"].to_numpy(), f2=users["onehot_feat2"].to_numpy(),
        tag1=np.array([tag_pos.get(int(t), len(ALL_TAGS)) for t in first_tag]),
        lam=np.array([TAB_LAMBDA[t] for t in tabs]),  # D x 3
        follows=(follows - 4.9) / 1.8,
        is_author=users["is_video_author"].to_numpy(dtype=np.float64),
        is_ad=(videos["video_type"] == "AD").to_numpy(dtype=np.float64))


class _World:
    """Latent parameters, precomputed as per-(entity, tab, task) base-logit tables.

    Built for all 15 tabs whatever tabs are generated, so a tab's parameters do not depend on
    which other tabs share the file.
    """

    def __init__(self, rng: np.random.Generator, users: pd.DataFrame, videos: pd.DataFrame):
        # The phases draw from ``rng`` in this order; reordering them changes every dataset.
        c = _side_codes(users, videos)
        self.author_of = c.author_of
        self._factors(rng, c)
        BU, BA, BV, f1_eff, tag_eff = self._propensities(rng, c)
        self._task_weights(rng, c)
        self._user_part(c, BU, f1_eff)
        self._item_parts(rng, c, videos, BA, BV, tag_eff)
        self._exposure(rng, c)

    def _factors(self, rng, c) -> None:
        """Latent factors; user factors lean on onehot_feat2 and video factors on the first
        tag, so side features carry part of the affinity (cold-start signal)."""
        K, D = c.K, c.D
        P = (P_FEAT * rng.standard_normal((50, K))[c.f2]
             + P_OWN * rng.standard_normal((c.U, K)))
        Q = (Q_FEAT * rng.standard_normal((len(ALL_TAGS) + 1, K))[c.tag1]
             + Q_OWN * rng.standard_normal((c.V, K)))
        R = R_OWN * rng.standard_normal((c.A, K))
        self.item_vec = Q + R[c.author_of]
        gates = np.full((D, K), 0.25)
        gates[:, :2] = 1.0
        for i in range(D):
            gates[i, 2 + rng.choice(K - 2, size=3, replace=False)] = 1.4
        self.gates = gates / np.sqrt(1.25 * np.mean(gates ** 2, axis=1, keepdims=True) * K)
        self.user_vec = P

    def _propensities(self, rng, c):
        """Per-user, per-author and per-video task propensities, and the per-tab effect tables
        of onehot_feat1 and the first tag."""
        BU = SIG_USER * _effects(rng, c.U, RHO_SHARED)
        BA = SIG_AUTHOR * _effects(rng, c.A, RHO_SHARED)
        BV = SIG_VIDEO * _effects(rng, c.V, RHO_SHARED)
        self.lam_aff = c.lam[:, 2]
        f1_eff = 0.5 * rng.normal(0, 0.35, (1, 7)) + 0.85 * rng.normal(0, 0.35, (c.D, 7))
        tag_eff = 0.5 * rng.normal(0, 0.4, (1, len(ALL_TAGS) + 1)) \
            + 0.85 * rng.normal(0, 0.4, (c.D, len(ALL_TAGS) + 1))
        return BU, BA, BV, f1_eff, tag_eff

    def _task_weights(self, rng, c) -> None:
        """PPNet structure: per-user, per-task weights of the affinity (m_user) and of the
        item-side propensity (k_user), tied to user_active_degree, is_video_author and the
        user id, and per-author weights of the affinity (m_item, via author_id). Each is
        scaled to a mean square of 1 per task, so the terms keep their average variance."""
        styles = rng.standard_normal((c.U, 2))
        loadings = np.stack([np.cos(STYLE_ANGLE), np.sin(STYLE_ANGLE)])  # 2 x T
        g_user = (SCALE_DEG * np.array([DEGREE_SCALE[d] for d in DEGREES])[c.deg][:, None]
                  + SCALE_AUTHOR * (c.is_author[:, None] - 0.8)
                  + SIG_SCALE * (styles @ loadings)
                  + SIG_SCALE_OWN * rng.standard_normal((c.U, c.T)))
        self.m_user = _rms_normalize(2 * _sigmoid(g_user))
        self.k_user = _rms_normalize(2 * _sigmoid(K_FROM_M * g_user
                                                  + SIG_K_OWN * _effects(rng, c.U, RHO_K)))
        self.m_item = _rms_normalize(
            2 * _sigmoid(SIG_SCALE_AUTHOR_ID * _effects(rng, c.A, RHO_SCALE_AUTHOR)))[c.author_of]

    def _user_part(self, c, BU, f1_eff) -> None:
        """The user side of every base logit: U x D x T."""
        deg_eff = np.array([DEGREE_EFFECT[d] for d in DEGREES])[c.deg]
        up = c.lam[None, :, 0, None] * BU[:, None, :]
        up = up + (W_DEG * deg_eff[:, None])[:, None, :]
        up = up + W_F1[None, None, :] * f1_eff.T[c.f1][:, :, None]
        up = up + (W_FOLLOWS * c.follows[:, None]
                   + W_AUTHOR_USER * c.is_author[:, None])[:, None, :]
        self.user_part = up

    def _item_parts(self, rng, c, videos, BA, BV, tag_eff) -> None:
        """The item side: the propensity (weighted per user by k_user) and the rest, V x D x T;
        picture posts, which have no duration, get one drawn."""
        dur = videos["video_duration"].to_numpy(dtype=np.float64)
        fill = np.rint(rng.uniform(8000, 60000, c.V))
        self.duration_ms = np.where(np.isnan(dur), fill, dur).astype(np.int64)
        zdur = (np.log(self.duration_ms) - np.log(60000.0)) / 1.0
        dur_w = np.tile(W_DUR, (c.D, 1))
        dur_w[:, 0] = [DUR_CLICK.get(t, DEFAULT_DUR_CLICK) for t in c.tabs]
        self.item_prop = c.lam[None, :, 1, None] * (BA[c.author_of] + BV)[:, None, :]
        ip = W_TAG[None, None, :] * tag_eff.T[c.tag1][:, :, None]
        ip = ip + dur_w[None, :, :] * zdur[:, None, None]
        ip = ip + (W_AD * c.is_ad[:, None])[:, None, :]
        self.item_rest = ip

    def _exposure(self, rng, c) -> None:
        """Exposure volume: activity x per-tab participation (27K stats: active users per
        tab); video popularity (lognormal, Gini ~0.5 like the 27K standard logs), ads shown
        less."""
        act = np.array([DEGREE_ACTIVITY[d] for d in DEGREES])[c.deg] * rng.lognormal(0, 0.8, c.U)
        part = np.empty((c.U, c.D))
        for i, t in enumerate(c.tabs):
            ratio = TAB_STATS[t][2] / N_REAL_USERS
            on = rng.random(c.U) < ratio
            if not on.any():
                on[rng.integers(c.U)] = True
            part[:, i] = on * rng.lognormal(0, 0.7, c.U)
        self.user_weight = act[:, None] * part
        self.video_pop = _normalize(rng.lognormal(0, 1.0, c.V)
                                    * np.where(c.is_ad > 0, 0.3, 1.0))

    def affinity(self, u: np.ndarray, v: np.ndarray, d: np.ndarray) -> np.ndarray:
        return np.einsum("nk,nk->n", self.user_vec[u] * self.gates[d], self.item_vec[v])

    def click_score(self, u: np.ndarray, v: np.ndarray, d: np.ndarray) -> np.ndarray:
        """The item-dependent part of the click logit (what the feed policy ranks by)."""
        return (self.lam_aff[d] * self.m_user[u, 0] * self.m_item[v, 0] * self.affinity(u, v, d)
                + self.k_user[u, 0] * self.item_prop[v, d, 0])

    def logits(self, u: np.ndarray, v: np.ndarray, d: np.ndarray,
               hour: np.ndarray) -> np.ndarray:
        """Base logits (n x tasks, no intercepts): a function of what a model can observe."""
        s = self.user_part[u, d] + self.item_rest[v, d]
        s += self.k_user[u] * self.item_prop[v, d]
        aff = (self.lam_aff[d] * self.affinity(u, v, d))[:, None]
        s += aff * W_AFF * self.m_user[u] * self.m_item[v]
        s += W_HOUR[None, :] * np.cos(2 * np.pi * (hour - 21) / 24.0)[:, None]
        return s

    def latent_arrays(self, tabs: Sequence[int]) -> dict[str, np.ndarray]:
        """The tables the truth is computed from, for the generated tabs (saved under
        truth/latent/ so a test or an analysis can recompute every probability)."""
        t = np.asarray(tabs)
        return {"tabs": t, "user_part": self.user_part[:, t], "item_rest": self.item_rest[:, t],
                "item_prop": self.item_prop[:, t], "k_user": self.k_user,
                "m_user": self.m_user, "m_item": self.m_item, "user_vec": self.user_vec,
                "item_vec": self.item_vec, "gates": self.gates[t], "lam_aff": self.lam_aff[t],
                "w_aff": W_AFF, "w_hour": W_HOUR}
