"""Tests of the synthetic KuaiRand-format generator: layout, formats, rates, truth, determinism.

The generated files stand in for the real logs in every demo and loader test, so these tests
pin the exact file format (headers, quoting, NaN patterns) and the calibration of the labels.
"""

from __future__ import annotations

import datetime as dt
import glob
import json
import os
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest

from pepnet_jax.evaluation import metrics
from pepnet_jax.data import kuairand_synth as ks

REAL_DIR = "/work/shared/data/kuairand"

# Hard-coded so that the tests do not depend on /work/shared (official README field order).
LOG_HEADER = ("user_id,video_id,date,hourmin,time_ms,is_click,is_like,is_follow,is_comment,"
              "is_forward,is_hate,long_view,play_time_ms,duration_ms,profile_stay_time,"
              "comment_stay_time,is_profile_enter,is_rand,tab")
USER_HEADER = ("user_id,user_active_degree,is_lowactive_period,is_live_streamer,"
               "is_video_author,follow_user_num,follow_user_num_range,fans_user_num,"
               "fans_user_num_range,friend_user_num,friend_user_num_range,register_days,"
               "register_days_range," + ",".join(f"onehot_feat{i}" for i in range(18)))
VIDEO_HEADER = ("video_id,author_id,video_type,upload_dt,upload_type,visible_status,"
                "video_duration,server_width,server_height,music_id,music_type,tag")
TRUTH_HEADER = "p_is_click,p_is_like,p_is_follow,p_is_comment,p_is_forward,p_is_hate,p_long_view"

ROWS, USERS, VIDEOS, AUTHORS, RANDOM_ROWS, SEED = 20_000, 2_000, 800, 300, 3_000, 7
STD_A = "log_standard_4_08_to_4_21_pure.csv"
STD_B = "log_standard_4_22_to_5_08_pure.csv"
RAND = "log_random_4_22_to_5_08_pure.csv"
LOGS = (STD_A, STD_B, RAND)


def _gen(path, seed=SEED):
    return ks.generate(str(path), ROWS, users=USERS, videos=VIDEOS, authors=AUTHORS, seed=seed,
                       random_rows=RANDOM_ROWS, progress=False)


@pytest.fixture(scope="module")
def out(tmp_path_factory):
    d = tmp_path_factory.mktemp("synth")
    summary = _gen(d)
    return d, summary


@pytest.fixture(scope="module")
def logs(out):
    d, _ = out
    return {n: pd.read_csv(d / n) for n in LOGS}


@pytest.fixture(scope="module")
def std(logs):
    return pd.concat([logs[STD_A], logs[STD_B]], ignore_index=True)


def _first_line(path):
    with open(path, "rb") as f:
        return f.readline().decode().rstrip("\n")


def _binom_tol(p, n, k=4.5):
    return k * np.sqrt(max(p, 1e-4) * (1 - p) / n) + 1e-3


# ------------------------------------------------------------------------------------ layout


def test_files_and_exact_headers(out):
    d, summary = out
    expected = {"user_features_pure.csv": USER_HEADER,
                "video_features_basic_pure.csv": VIDEO_HEADER,
                **{n: LOG_HEADER for n in LOGS}}
    for name, header in expected.items():
        assert _first_line(d / name) == header, name
    for n in LOGS:
        assert _first_line(d / "truth" / n) == TRUTH_HEADER
    # Readers globbing log_* must see the three logs only, never the truth copies.
    assert sorted(os.path.basename(p) for p in glob.glob(str(d / "log_*"))) == sorted(LOGS)
    meta = json.loads((d / "generator_meta.json").read_text())
    assert meta["rows"] == summary["rows"]
    assert meta["rows"][STD_A] + meta["rows"][STD_B] == ROWS
    assert meta["rows"][RAND] == RANDOM_ROWS
    # 14:17 split by days, so the daily volume is about equal.
    assert abs(meta["rows"][STD_A] - round(ROWS * 14 / 31)) <= 1
    for key in ("oracle_auc", "rates", "tab_rates", "intercepts", "args"):
        assert key in meta
    # Every argument that changes the data, and the generator version (prepare checks them).
    assert meta["args"] == {"rows": ROWS, "users": USERS, "videos": VIDEOS, "authors": AUTHORS,
                            "seed": SEED, "tabs": [0, 1, 2, 4], "random_rows": RANDOM_ROWS,
                            "version": "pure", "generator_version": ks.GENERATOR_VERSION}
    assert ks.GENERATOR_VERSION >= 2  # 1 had unobservable row noise in its truth


@pytest.mark.skipif(not os.path.isdir(REAL_DIR),
                    reason="real KuaiRand feature files (/work/shared) not available here")
def test_headers_match_real_files(out):
    d, _ = out
    for name in ("user_features_pure.csv", "video_features_basic_pure.csv"):
        assert _first_line(d / name) == _first_line(os.path.join(REAL_DIR, name))


# ------------------------------------------------------------------------------ user features


def _bucket_ref(x, edges_labels):
    for lo, label in reversed(edges_labels):
        if x >= lo:
            return label
    raise AssertionError(x)


FOLLOW_B = [(0, "0"), (1, "(0,10]"), (11, "(10,50]"), (51, "(50,100]"), (101, "(100,150]"),
            (151, "(150,250]"), (251, "(250,500]"), (501, "500+")]
FANS_B = [(0, "0"), (1, "[1,10)"), (10, "[10,100)"), (100, "[100,1k)"), (1000, "[1k,5k)"),
          (5000, "[5k,1w)"), (10000, "[1w,10w)"), (100000, "[10w,100w)"),
          (1000000, "[100w,1000w)")]
FRIEND_B = [(0, "0"), (1, "[1,5)"), (5, "[5,30)"), (30, "[30,60)"), (60, "[60,120)"),
            (120, "[120,250)"), (250, "250+")]
REG_B = [(0, "8-14"), (15, "15-30"), (31, "31-60"), (61, "61-90"), (91, "91-180"),
         (181, "181-365"), (366, "366-730"), (731, "730+")]


def test_user_features_format(out):
    d, _ = out
    raw = (d / "user_features_pure.csv").read_text()
    assert '"[10,100)"' in raw and '"(0,10]"' in raw  # comma buckets are quoted
    u = pd.read_csv(d / "user_features_pure.csv")
    assert list(u["user_id"]) == list(range(USERS))
    assert set(u["user_active_degree"]) <= set(ks.ACTIVE_DEGREE_COUNTS)
    assert (u["user_active_degree"] == "full_active").mean() == pytest.approx(17959 / 27285,
                                                                              abs=0.04)
    assert (u["is_lowactive_period"] == 0).all()
    assert set(u["is_live_streamer"]) == {1, -124}
    assert set(u["is_video_author"]) == {0, 1}
    for col, b in (("follow_user_num", FOLLOW_B), ("fans_user_num", FANS_B),
                   ("friend_user_num", FRIEND_B), ("register_days", REG_B)):
        expected = u[col].map(lambda x, b=b: _bucket_ref(x, b))
        assert (u[f"{col}_range"] == expected).all(), col
    assert u["register_days"].min() >= 14
    cards = (2, 7, 50, 1471, 15, 34, 3, 118, 454, 7, 5, 5, 2, 2, 2, 2, 2, 2)
    for i, card in enumerate(cards):
        v = u[f"onehot_feat{i}"].dropna()
        assert v.min() >= 0 and v.max() < card, i
    floaty = {4, 12, 13, 14, 15, 16, 17}
    for i in range(18):
        col = u[f"onehot_feat{i}"]
        assert (col.dtype == np.float64) == (i in floaty), i
        assert col.isna().any() == (i in floaty), i
    # onehot_feat12..17 are missing together; written as 1.0 / 0.0 like the real file.
    nan12 = u["onehot_feat12"].isna()
    for i in range(13, 18):
        assert (u[f"onehot_feat{i}"].isna() == nan12).all()
    assert 0.005 < nan12.mean() < 0.06
    assert ",1.0," in raw or ",0.0," in raw


def test_video_features_format(out):
    d, _ = out
    raw = (d / "video_features_basic_pure.csv").read_text()
    v = pd.read_csv(d / "video_features_basic_pure.csv")
    assert list(v["video_id"]) == list(range(VIDEOS))
    assert v["author_id"].nunique() == AUTHORS
    assert v["author_id"].max() <= 8839734 and v["author_id"].max() > 100_000
    assert v["author_id"].value_counts().max() >= 3  # several videos per author
    assert set(v["video_type"]) <= {"NORMAL", "AD", "UNKNOWN"}
    assert set(v["upload_type"]) <= set(ks.UPLOAD_TYPES)
    assert set(v["upload_dt"]) <= {"2022-04-09", "2022-04-10", "2022-04-11"}
    assert (v["visible_status"] == 0.0).all() and v["visible_status"].dtype == np.float64
    assert ",0.0," in raw
    dur = v["video_duration"]
    assert dur.dtype == np.float64 and 0.005 < dur.isna().mean() < 0.08
    assert dur.min() >= 5000 and dur.max() <= 1177720
    pictures = v["upload_type"].isin(["LongPicture", "PictureSet"])
    assert dur[pictures].isna().all()
    assert (v["music_type"].isna() == (v["music_id"] == 0)).all()
    assert v["music_type"].isna().any()
    assert 0 < v["tag"].isna().mean() < 0.04
    tags = v["tag"].dropna()
    multi = tags[tags.str.contains(",")]
    assert len(multi) > 0 and f'"{multi.iloc[0]}"' in raw  # quoted when it has a comma
    ids = {int(t) for s in tags for t in s.split(",")}
    assert ids <= set(ks.ALL_TAGS) and len(ks.ALL_TAGS) == 46


# -------------------------------------------------------------------------------- logs: tabs


def test_tabs_and_click_rates(std, logs):
    tabs = (0, 1, 2, 4)
    assert set(std["tab"]) == set(tabs)
    total = sum(ks.TAB_STATS[t][0] for t in tabs)
    for t in tabs:
        share = ks.TAB_STATS[t][0] / total
        assert (std["tab"] == t).mean() == pytest.approx(share, abs=0.015), t
        sub = std[std["tab"] == t]["is_click"]
        target = ks.TAB_STATS[t][1]
        assert abs(sub.mean() - target) < _binom_tol(target, len(sub)), t
    # Tab 0 clicks ~4x less than tab 4, as in the real logs.
    assert std[std.tab == 0].is_click.mean() < 0.5 * std[std.tab == 4].is_click.mean()
    r = logs[RAND]
    assert (r["is_rand"] == 1).all() and (std["is_rand"] == 0).all()
    assert set(r["tab"]) <= {1, 2} and (r["tab"] == 1).mean() > 0.98
    assert abs(r["is_click"].mean() - 0.177) < _binom_tol(0.177, len(r))


def test_other_tabs_and_version(tmp_path):
    s = ks.generate(str(tmp_path), 3000, users=300, videos=100, authors=40, tabs="1,4,9",
                    version="1k", seed=1, progress=False)
    assert set(os.path.basename(p) for p in glob.glob(str(tmp_path / "log_*"))) == {
        "log_standard_4_08_to_4_21_1k.csv", "log_standard_4_22_to_5_08_1k.csv"}
    df = pd.read_csv(tmp_path / "log_standard_4_22_to_5_08_1k.csv")
    assert set(df["tab"]) <= {1, 4, 9} and {1, 4} <= set(df["tab"])
    assert s["rows"]["log_standard_4_22_to_5_08_1k.csv"] == len(df)
    with pytest.raises(ValueError):
        ks.generate(str(tmp_path / "bad"), 100, tabs="0,15", progress=False)


# ------------------------------------------------------------------------------ logs: labels


def test_label_rates_near_targets(out, std):
    d, _ = out
    n = len(std)
    assert abs(std["is_click"].mean() - 0.384) < 0.03
    for lab, target in ks.TARGET_RATES.items():
        assert abs(std[lab].mean() - target) < _binom_tol(target, n), lab
    # The calibration itself is exact: mean truth probability equals the target.
    truth = pd.concat([pd.read_csv(d / "truth" / n_) for n_ in (STD_A, STD_B)])
    for lab in ks.TASKS:
        if lab == "is_click":
            continue
        assert truth[f"p_{lab}"].mean() == pytest.approx(ks.TARGET_RATES[lab], rel=0.02), lab


def test_labels_correlated_in_planted_direction(std, logs):
    df = pd.concat([std, logs[RAND]], ignore_index=True)
    c = df["is_click"] == 1
    lv = df["long_view"] == 1
    assert df.long_view[c].mean() > 3 * df.long_view[~c].mean()
    for lab in ("is_like", "is_follow", "is_comment", "is_forward"):
        assert df[lab][c & lv].mean() > 4 * df[lab][~c & ~lv].mean(), lab
    assert df.is_hate[c].mean() < df.is_hate[~c].mean()  # hate is anti-correlated with click
    follow = df["is_follow"] == 1
    assert df.is_profile_enter[follow].mean() > 5 * df.is_profile_enter[~follow].mean()


def test_times_and_durations_consistent(out, logs):
    d, _ = out
    videos = pd.read_csv(d / "video_features_basic_pure.csv")
    ranges = {STD_A: (20220408, 20220421), STD_B: (20220422, 20220508),
              RAND: (20220422, 20220508)}
    for name, df in logs.items():
        lo, hi = ranges[name]
        assert df["date"].between(lo, hi).all(), name
        assert df["date"].nunique() == (14 if name == STD_A else 17)
        bj = pd.to_datetime(df["time_ms"], unit="ms", utc=True) + pd.Timedelta(hours=8)
        assert (bj.dt.strftime("%Y%m%d").astype(int) == df["date"]).all()
        assert (bj.dt.hour * 100 == df["hourmin"]).all()
        key = df["user_id"].to_numpy() * 10**13 + df["time_ms"].to_numpy()
        assert (np.diff(key) >= 0).all(), "rows must be sorted by (user_id, time_ms)"
        # README rule: long_view <=> play >= min(duration, 18 s).
        thr = np.minimum(df["duration_ms"], 18000)
        assert ((df["play_time_ms"] >= thr) == (df["long_view"] == 1)).all()
        vd = videos.set_index("video_id")["video_duration"].reindex(df["video_id"]).to_numpy()
        known = ~np.isnan(vd)
        assert (df["duration_ms"].to_numpy()[known] == vd[known]).all()
        assert (df["duration_ms"] > 0).all()
        assert ((df["profile_stay_time"] > 0) == (df["is_profile_enter"] == 1)).all()
        assert (df.loc[df.is_comment == 1, "comment_stay_time"] > 0).all()
    # One row of the official README example: 1650485801301 ms -> 2022-04-21, hourmin 400.
    t = dt.datetime.fromtimestamp(1650485801301 / 1000, tz=dt.timezone(dt.timedelta(hours=8)))
    assert (t.strftime("%Y%m%d"), t.hour * 100) == ("20220421", 400)


# ------------------------------------------------------------------------------------- truth


def test_truth_files(out, logs):
    d, summary = out
    for name, df in logs.items():
        tr = pd.read_csv(d / "truth" / name)
        assert len(tr) == len(df)
        assert list(tr.columns) == TRUTH_HEADER.split(",")
        vals = tr.to_numpy()
        assert (vals > 0).all() and (vals < 1).all()
    tr = pd.read_csv(d / "truth" / STD_B)
    df = logs[STD_B]
    # The recorded ceiling is the truth's AUC on the second file's labels: recomputed here as
    # the Mann-Whitney U (scipy, independent of pepnet_jax.evaluation.metrics) of the written file, to
    # 1e-5 (the file rounds to 8 decimals, tying a few of the rare tasks' probabilities).
    from scipy.stats import mannwhitneyu
    for task in ks.TASKS:
        y, p = df[task].to_numpy().astype(bool), tr[f"p_{task}"].to_numpy()
        a = mannwhitneyu(p[y], p[~y]).statistic / (y.sum() * (~y).sum())
        assert a == pytest.approx(summary["oracle_auc"][task], abs=1e-5), task
        if task in ("is_click", "long_view", "is_like"):
            assert a > 0.7, task
    # Shuffling the truth against the labels destroys the AUC (it measures alignment).
    shuffled = np.random.default_rng(0).permutation(tr["p_is_click"].to_numpy())
    assert abs(metrics.auc(df["is_click"], shuffled) - 0.5) < 0.03


def _latent(d):
    return {p.stem: np.load(p) for p in (d / "truth" / "latent").glob("*.npy")}


def _recomputed_truth(d, meta, df, lat):
    """The probabilities of every task, recomputed from the saved tables and intercepts with
    this test's own code: the logit has no term outside the tables and the row's columns."""
    pos = {int(t): i for i, t in enumerate(lat["tabs"])}
    u, v = df["user_id"].to_numpy(), df["video_id"].to_numpy()
    di = np.array([pos[t] for t in df["tab"]])
    hour = df["hourmin"].to_numpy() // 100
    aff = lat["lam_aff"][di] * np.sum(lat["user_vec"][u] * lat["gates"][di] * lat["item_vec"][v],
                                      axis=1)
    s = (lat["user_part"][u, di] + lat["item_rest"][v, di]
         + lat["k_user"][u] * lat["item_prop"][v, di]
         + aff[:, None] * lat["w_aff"] * lat["m_user"][u] * lat["m_item"][v]
         + lat["w_hour"] * np.cos(2 * np.pi * (hour - 21) / 24.0)[:, None])
    col = {t: i for i, t in enumerate(ks.TASKS)}
    ic = meta["intercepts"]
    rand = bool(df["is_rand"].iloc[0])
    a_click = np.array([ic["rand_click" if rand else "click"][str(t)] for t in df["tab"]])
    sig = lambda x: 1.0 / (1.0 + np.exp(-x))  # noqa: E731
    pc = sig(a_click + s[:, col["is_click"]])
    zl = ic["long_view"] + s[:, col["long_view"]]
    pl1, pl0 = sig(zl + 2.5), sig(zl)
    out = {"is_click": pc, "long_view": pc * pl1 + (1 - pc) * pl0}
    chain = {"is_like": (1.0, 1.8), "is_follow": (1.0, 1.5), "is_comment": (1.0, 1.5),
             "is_forward": (0.8, 1.5), "is_hate": (-1.5, -1.0)}  # docs/generator.md
    for t, (kc, kl) in chain.items():
        z = ic[t] + s[:, col[t]]
        out[t] = sum(w * sig(z + c * kc + l * kl) for c, l, w in (
            (1, 1, pc * pl1), (1, 0, pc * (1 - pl1)), (0, 1, (1 - pc) * pl0),
            (0, 0, (1 - pc) * (1 - pl0))))
    return out, s


def test_truth_is_the_noise_free_probability_of_the_observed_row(out, logs):
    d, _ = out
    meta = json.loads((d / "generator_meta.json").read_text())
    lat = _latent(d)
    for name, df in logs.items():
        tr = pd.read_csv(d / "truth" / name)
        want, _ = _recomputed_truth(d, meta, df, lat)
        for t in ks.TASKS:
            # 8 written decimals: any row noise (v1 had std 0.5 on the logit) would show.
            assert np.abs(tr[f"p_{t}"].to_numpy() - want[t]).max() < 1e-7, (name, t)
    # The labels are drawn from the truth and nothing else: calibrated in every decile.
    df = pd.concat([logs[STD_A], logs[STD_B]], ignore_index=True)
    p = pd.concat([pd.read_csv(d / "truth" / n) for n in (STD_A, STD_B)])["p_is_click"]
    dec = pd.qcut(p.to_numpy(), 10, labels=False)
    for k in range(10):
        y, q = df["is_click"].to_numpy()[dec == k], p.to_numpy()[dec == k]
        assert abs(y.mean() - q.mean()) < _binom_tol(q.mean(), len(y)), k


def test_users_weigh_the_item_side_per_task(out, logs):
    """PPNet's target: per-user, per-task multipliers tied to the user's prior features."""
    d, _ = out
    lat = _latent(d)
    m, k = lat["m_user"], lat["k_user"]
    assert m.shape == k.shape == (USERS, len(ks.TASKS)) and lat["m_item"].shape[0] == VIDEOS
    for w in (m, k, lat["m_item"]):
        assert (w > 0).all() and (w < 2.5).all()  # PPNet's gate form: bounded, positive
    # Mean square 1 over users (over authors for m_item, saved per video), so on average the
    # weighted terms keep their variance and the label rates their calibration.
    np.testing.assert_allclose(np.mean(m ** 2, axis=0), 1.0)
    np.testing.assert_allclose(np.mean(k ** 2, axis=0), 1.0)
    np.testing.assert_allclose(np.mean(lat["m_item"] ** 2, axis=0), 1.0, atol=0.25)
    assert np.percentile(m, 90, axis=0).min() > 3 * np.percentile(m, 10, axis=0).max()
    # Task-specific: a user's click weight does not fix their comment weight.
    ci, mi = ks.TASKS.index("is_click"), ks.TASKS.index("is_comment")
    assert np.corrcoef(np.log(m[:, ci]), np.log(m[:, mi]))[0, 1] < 0.5
    # Tied to user_active_degree, in each task's own direction (click up, comment down).
    users = pd.read_csv(d / "user_features_pure.csv")
    full = (users["user_active_degree"] == "full_active").to_numpy()
    low = users["user_active_degree"].isin(["middle_active", "low_active", "2_14_day_new"])
    assert np.log(m[full, ci]).mean() > np.log(m[low.to_numpy(), ci]).mean() + 0.3
    assert np.log(m[full, mi]).mean() < np.log(m[low.to_numpy(), mi]).mean() - 0.3
    # They move the logits: without them (their means instead) click logits shift a lot.
    meta = json.loads((d / "generator_meta.json").read_text())
    _, s = _recomputed_truth(d, meta, logs[STD_B], lat)
    flat = dict(lat, m_user=np.broadcast_to(m.mean(0), m.shape),
                k_user=np.broadcast_to(k.mean(0), k.shape),
                m_item=np.broadcast_to(lat["m_item"].mean(0), lat["m_item"].shape))
    _, s0 = _recomputed_truth(d, meta, logs[STD_B], flat)
    assert np.sqrt(np.mean((s - s0) ** 2, axis=0)).min() > 0.3


# ------------------------------------------------------------------------------- determinism


def _all_bytes(d):
    files = sorted(glob.glob(str(d / "*.csv")) + glob.glob(str(d / "truth" / "*.csv"))
                   + glob.glob(str(d / "truth" / "latent" / "*.npy"))
                   + [str(d / "generator_meta.json")])
    return {os.path.relpath(f, d): open(f, "rb").read() for f in files}


def test_same_seed_same_bytes_other_seed_differs(out, tmp_path):
    d, _ = out
    _gen(tmp_path / "same")
    _gen(tmp_path / "other", seed=SEED + 1)
    ref, same, other = _all_bytes(d), _all_bytes(tmp_path / "same"), _all_bytes(tmp_path / "other")
    assert ref.keys() == same.keys() and len(ref) == 9 + 13
    for k in ref:
        assert ref[k] == same[k], k
        if "latent/w_" not in k and "latent/tabs" not in k and "lam_aff" not in k:
            assert ref[k] != other[k], k  # (constants and the tab list do not depend on it)


def test_cli(tmp_path):
    cmd = [sys.executable, "-m", "pepnet_jax.data.kuairand_synth", "--out", str(tmp_path),
           "--rows", "600", "--users", "60", "--videos", "40", "--authors", "15",
           "--seed", "3", "--tabs", "0,1", "--random-rows", "50"]
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    res = subprocess.run(cmd, cwd=root, capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stderr
    assert "[kuairand_synth]" in res.stdout  # progress lines
    meta = json.loads((tmp_path / "generator_meta.json").read_text())
    assert meta["args"]["tabs"] == [0, 1] and meta["args"]["seed"] == 3
    assert sum(meta["rows"].values()) == 650
    assert pd.read_csv(tmp_path / RAND)["tab"].eq(1).all()
