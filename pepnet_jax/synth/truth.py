"""The truth: each row's probabilities given its features, from the saved latent tables
(the ceiling a model can reach)."""

from __future__ import annotations

import os
from typing import Mapping

import numpy as np

from pepnet_jax.synth.stats import TASKS, _TI
from pepnet_jax.synth.labels import _chain_marginals


def load_latent(out_dir: str) -> dict[str, np.ndarray]:
    """The tables ``truth/latent/*.npy`` of a generated folder (see latent_arrays)."""
    folder = os.path.join(out_dir, "truth", "latent")
    if not os.path.isdir(folder):
        raise FileNotFoundError(f"{folder}: no latent tables (only generator version 2 "
                                "folders have them)")
    return {name[:-4]: np.load(os.path.join(folder, name))
            for name in sorted(os.listdir(folder)) if name.endswith(".npy")}


def truth_from_latent(latent: Mapping[str, np.ndarray], intercepts: Mapping, user: np.ndarray,
                      video: np.ndarray, tab: np.ndarray, hourmin: np.ndarray,
                      is_rand: bool = False) -> dict[str, np.ndarray]:
    """The truth of every task for log rows, recomputed from the saved tables and the
    intercepts of generator_meta.json: what ``truth/`` holds, for tables that may have been
    edited (e.g. a structure knocked out to measure how much of the ceiling it carries)."""
    pos = {int(t): i for i, t in enumerate(latent["tabs"])}
    di = np.array([pos[int(t)] for t in tab])
    hour = np.asarray(hourmin) // 100
    aff = latent["lam_aff"][di] * np.einsum(
        "nk,nk->n", latent["user_vec"][user] * latent["gates"][di], latent["item_vec"][video])
    base = (latent["user_part"][user, di] + latent["item_rest"][video, di]
            + latent["k_user"][user] * latent["item_prop"][video, di]
            + aff[:, None] * latent["w_aff"] * latent["m_user"][user] * latent["m_item"][video]
            + latent["w_hour"] * np.cos(2 * np.pi * (hour - 21) / 24.0)[:, None])
    clicks = intercepts["rand_click" if is_rand else "click"]
    a_click = np.array([clicks[str(int(t))] for t in tab])
    alpha = {t: intercepts[t] for t in TASKS if t != "is_click"}
    return _chain_marginals(a_click + base[:, _TI["is_click"]], base, alpha)
