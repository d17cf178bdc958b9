"""The public entry: ``generate(out_dir, rows, ...)`` writes a KuaiRand-Pure-format folder;
``python -m pepnet_jax.synth`` is its command line."""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from typing import Iterable, Sequence

import numpy as np

from pepnet_jax.evaluation import metrics
from pepnet_jax.files import atomic_write
from pepnet_jax.synth.stats import (
    DEFAULT_TABS, GENERATOR_VERSION, LABELS, N_REAL_USERS, N_REAL_VIDEOS, PERIODS,
    RANDOM_TAB_STATS, TAB_STATS, TARGET_RATES, TASKS, _log, _sigmoid)
from pepnet_jax.synth.side import make_users, make_videos
from pepnet_jax.synth.world import _World
from pepnet_jax.synth.exposures import _sample_rows
from pepnet_jax.synth.labels import _bisect, _calibrate, _draw_labels, _draw_profile
from pepnet_jax.synth.writer import _write_log, _write_truth


def _parse_tabs(tabs: Iterable[int] | str) -> tuple[int, ...]:
    if isinstance(tabs, str):
        tabs = [int(t) for t in tabs.split(",") if t.strip()]
    out = tuple(sorted(set(int(t) for t in tabs)))
    if not out or any(t not in TAB_STATS for t in out):
        raise ValueError(f"tabs must be a non-empty subset of 0..14, got {tabs!r}")
    return out


def log_file_name(kind: str, period: str, version: str = "pure") -> str:
    """Official file name, e.g. ``log_standard_4_22_to_5_08_pure.csv``."""
    return f"log_{kind}_{period}_{version}.csv"


def generator_args(rows: int, *, users: int = 5000, videos: int = 2000, authors: int = 600,
                   seed: int = 0, tabs: Iterable[int] | str = DEFAULT_TABS,
                   random_rows: int = 0, version: str = "pure") -> dict:
    """Every argument that changes the data, as stored in ``generator_meta.json["args"]``
    (prepare.ensure_generated compares a folder's meta with this before reusing it)."""
    return {"rows": int(rows), "users": int(users), "videos": int(videos),
            "authors": int(authors), "seed": int(seed), "tabs": list(_parse_tabs(tabs)),
            "random_rows": int(random_rows), "version": version,
            "generator_version": GENERATOR_VERSION}


def generate(out_dir: str, rows: int, *, users: int = 5000, videos: int = 2000,
             authors: int = 600, seed: int = 0, tabs: Iterable[int] | str = DEFAULT_TABS,
             random_rows: int = 0, version: str = "pure", progress: bool = True) -> dict:
    """Write a KuaiRand-format dataset to ``out_dir`` and return its summary.

    ``rows`` is the total of the two standard logs, split 14:17 by their day counts. The
    summary (also written to ``generator_meta.json``, last, so a folder with logs but no meta
    is an interrupted or older generation) has the arguments (``generator_args``), the file
    paths, row counts, the realized per-file / per-tab label rates, the calibrated intercepts
    and the ceiling AUC (truth probabilities vs drawn labels) of each task on the
    4_22_to_5_08 file.
    """
    t_start = time.time()
    tabs = _parse_tabs(tabs)
    if rows < 2 or users < 1 or videos < 1 or not 1 <= authors <= videos or random_rows < 0:
        raise ValueError("need rows >= 2, users >= 1, 1 <= authors <= videos, random_rows >= 0")
    if not version.isalnum():
        raise ValueError(f"version must be alphanumeric, got {version!r}")
    meta_path = os.path.join(out_dir, "generator_meta.json")
    if os.path.exists(meta_path):  # rewritten at the end; gone meanwhile, so an interrupted
        os.remove(meta_path)       # run never leaves new logs beside an old meta
    os.makedirs(os.path.join(out_dir, "truth"), exist_ok=True)
    ss = np.random.SeedSequence(seed)
    r_users, r_videos, r_world, r_calib, *r_files = (np.random.default_rng(s)
                                                     for s in ss.spawn(7))
    users_df, videos_df, paths = _write_side_features(
        out_dir, version, r_users, r_videos, users, videos, authors, progress)
    world = _World(r_world, users_df, videos_df)
    paths["truth/latent"] = _save_latent(world, tabs, out_dir)
    _log(progress, f"latent world ready ({time.time() - t_start:.1f}s since start)")
    files = _sample_files(world, tabs, rows, random_rows, r_files, progress)
    calib = _draw_all_labels(files, tabs, r_calib, world, progress)
    written = _write_files(files, out_dir, version, paths, progress)
    summary = {
        "out_dir": os.path.abspath(out_dir),
        "args": generator_args(rows, users=users, videos=videos, authors=authors, seed=seed,
                               tabs=tabs, random_rows=random_rows, version=version),
        "files": paths,
        "rows": written["rows"],
        "target_click_rate": {str(t): TAB_STATS[t][1] for t in tabs},
        "target_rates": dict(TARGET_RATES),
        "rates": written["rates"],
        "tab_rates": {k: {str(t): v for t, v in d.items()}
                      for k, d in written["tab_rates"].items()},
        "oracle_auc": written["oracle"],
        "intercepts": {k: ({str(t): a for t, a in v.items()} if isinstance(v, dict) else v)
                       for k, v in calib.items()},
        "seconds": round(time.time() - t_start, 2),
    }
    _write_meta(summary, out_dir, meta_path, paths)
    _log(progress, f"done in {summary['seconds']}s; ceiling AUC "
                   + ", ".join(f"{t}={a:.3f}" for t, a in written["oracle"].items()))
    return summary


def _write_side_features(out_dir, version, r_users, r_videos, users, videos, authors,
                         progress):
    """The user and video feature files; returns their frames and paths."""
    users_df = make_users(r_users, users)
    videos_df = make_videos(r_videos, videos, authors)
    paths = {
        "user_features": os.path.join(out_dir, f"user_features_{version}.csv"),
        "video_features_basic": os.path.join(out_dir, f"video_features_basic_{version}.csv"),
    }
    users_df.to_csv(paths["user_features"], index=False, lineterminator="\n")
    videos_df.to_csv(paths["video_features_basic"], index=False, lineterminator="\n")
    _log(progress, f"wrote {users} users, {videos} videos ({authors} authors)")
    return users_df, videos_df, paths


def _save_latent(world, tabs, out_dir: str) -> str:
    """``truth/latent/*.npy``: the tables the truth is computed from."""
    latent_dir = os.path.join(out_dir, "truth", "latent")
    os.makedirs(latent_dir, exist_ok=True)
    for key, arr in world.latent_arrays(tabs).items():
        np.save(os.path.join(latent_dir, f"{key}.npy"), arr)
    return latent_dir


def _random_log_rates(tabs):
    """(tab shares, click rates) of the random log: the real ones where a requested tab occurs
    in it, else the standard shares with the real random/standard click ratio."""
    shares = {t: float(RANDOM_TAB_STATS[t][0]) for t in tabs if t in RANDOM_TAB_STATS}
    click = {t: RANDOM_TAB_STATS[t][1] for t in shares}
    if not shares:
        shares = {t: float(TAB_STATS[t][0]) for t in tabs}
        click = {t: TAB_STATS[t][1] * 0.17616 / 0.37872 for t in tabs}
    return shares, click


def _sample_files(world, tabs, rows: int, random_rows: int, r_files, progress):
    """The exposures of each log file: [(kind, period, rows, rng)], the two standard logs
    split 14:17 by their day counts, then the random log if asked for."""
    std_shares = {t: float(TAB_STATS[t][0]) for t in tabs}
    rand_shares, _ = _random_log_rates(tabs)
    n_a = int(round(rows * 14 / 31))
    plan = [("standard", "4_08_to_4_21", n_a, std_shares, False),
            ("standard", "4_22_to_5_08", rows - n_a, std_shares, False)]
    if random_rows:
        plan.append(("random", "4_22_to_5_08", random_rows, rand_shares, True))
    files = []
    for (kind, period, n, shares, is_rand), rng in zip(plan, r_files):
        start, days = PERIODS[period]
        t0 = time.time()
        rws = _sample_rows(rng, world, n, start, days, shares, is_rand)
        files.append((kind, period, rws, rng))
        _log(progress, f"sampled {n:,} rows for log_{kind}_{period} ({time.time() - t0:.1f}s)")
    return files


def _draw_all_labels(files, tabs, r_calib, world, progress) -> dict:
    """Calibrates the intercepts to the target rates, then draws every file's labels;
    returns the intercepts."""
    std_rows = [f[2] for f in files if not f[2].is_rand]
    rnd_rows = [f[2] for f in files if f[2].is_rand]
    t0 = time.time()
    calib = _calibrate(std_rows, rnd_rows, {t: TAB_STATS[t][1] for t in tabs},
                       _random_log_rates(tabs)[1], r_calib)
    _log(progress, f"intercepts calibrated ({time.time() - t0:.1f}s)")
    t0 = time.time()
    for _, _, rws, rng in files:
        _draw_labels(rng, rws, calib, world)
    zp = np.concatenate([r.z_profile for r in std_rows])
    calib["is_profile_enter"] = _bisect(lambda a: _sigmoid(a + zp).mean(),
                                        TARGET_RATES["is_profile_enter"])
    for _, _, rws, rng in files:
        _draw_profile(rng, rws, calib["is_profile_enter"])
    _log(progress, f"labels drawn ({time.time() - t0:.1f}s)")
    return calib


def _write_files(files, out_dir: str, version: str, paths: dict, progress) -> dict:
    """Each log and its truth file (paths added to ``paths``); returns the row counts, the
    realized rates per file and per tab, and the ceiling AUC on the 4_22_to_5_08 file."""
    out = {"rows": {}, "rates": {}, "tab_rates": {}, "oracle": {}}
    for kind, period, rws, _ in files:
        name = log_file_name(kind, period, version)
        t0 = time.time()
        paths[name] = os.path.join(out_dir, name)
        _write_log(paths[name], rws)
        _write_truth(os.path.join(out_dir, "truth", name), rws)
        paths[f"truth/{name}"] = os.path.join(out_dir, "truth", name)
        out["rows"][name] = rws.n
        out["rates"][name] = {t: float(rws.labels[t].mean()) for t in LABELS}
        out["tab_rates"][name] = {
            int(t): {"share": float((rws.tab == t).mean()),
                     **{lab: float(rws.labels[lab][rws.tab == t].mean()) for lab in LABELS}}
            for t in np.unique(rws.tab)
        }
        if kind == "standard" and period == "4_22_to_5_08":
            out["oracle"] = {t: metrics.auc(rws.labels[t], rws.truth[:, i])
                             for i, t in enumerate(TASKS)}
        _log(progress, f"wrote {name} ({rws.n:,} rows, {time.time() - t0:.1f}s)")
    return out


def _write_meta(summary: dict, out_dir: str, meta_path: str, paths: dict) -> None:
    """``generator_meta.json``, last and atomically: a folder without it is unfinished."""
    meta = {k: v for k, v in summary.items() if k not in ("out_dir", "files", "seconds")}
    meta["files"] = {k: os.path.relpath(v, out_dir) for k, v in paths.items()}
    paths["generator_meta"] = meta_path
    with atomic_write(meta_path) as f:
        json.dump(meta, f, indent=1, sort_keys=True)
        f.write("\n")


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(
        prog="python -m pepnet_jax.synth",
        description="Write a synthetic dataset in the KuaiRand file format, with true "
                    "label probabilities under truth/.")
    ap.add_argument("--out", required=True, help="output directory")
    ap.add_argument("--rows", type=int, required=True,
                    help="rows over the two standard logs (split 14:17 by days)")
    ap.add_argument("--users", type=int, default=5000, help=f"real: {N_REAL_USERS}")
    ap.add_argument("--videos", type=int, default=2000, help=f"real: {N_REAL_VIDEOS}")
    ap.add_argument("--authors", type=int, default=600, help="real Pure pool: 6510")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--tabs", default="0,1,2,4", help="comma-separated tabs in 0..14")
    ap.add_argument("--random-rows", type=int, default=0,
                    help="rows of log_random_4_22_to_5_08 (0: not written)")
    ap.add_argument("--version", default="pure", help="file-name suffix (pure, 1k, 27k)")
    ap.add_argument("--quiet", action="store_true", help="no progress lines")
    a = ap.parse_args(argv)
    s = generate(a.out, a.rows, users=a.users, videos=a.videos, authors=a.authors,
                 seed=a.seed, tabs=a.tabs, random_rows=a.random_rows, version=a.version,
                 progress=not a.quiet)
    if not a.quiet:
        for name, r in s["rates"].items():
            print(f"{name}: " + ", ".join(f"{t}={v:.4f}" for t, v in r.items()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
