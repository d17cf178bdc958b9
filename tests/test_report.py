"""Report table, JSON and PNG built from real evaluate() output."""

import json
import math
import sys

import numpy as np
import pytest

from pepnet_jax.evaluation.metrics import evaluate
from pepnet_jax.evaluation.report import format_table, save_report, to_jsonable

TASKS = ["click", "like", "long_view"]
DOMAINS = ["home", "search", "video_tab"]


@pytest.fixture(scope="module")
def results():
    rng = np.random.default_rng(0)
    n = 3000
    z = rng.normal(size=(n, len(TASKS)))
    labels = (rng.random(z.shape) < 1 / (1 + np.exp(-(z - 1)))).astype(np.float32)
    preds = (1 / (1 + np.exp(-(z - 1 + rng.normal(size=z.shape))))).astype(np.float32)
    mask = rng.random(z.shape) < 0.9
    domains = rng.integers(0, len(DOMAINS), n)
    mask[domains == 2, 2] = False  # long_view never observed on video_tab -> nan cells
    return evaluate(preds, labels, mask, domains, rng.integers(0, 200, n), TASKS, DOMAINS)


def _rows(table):
    return [line.split() for line in table.splitlines()]


def test_table_has_every_row_with_right_numbers(results):
    table = format_table(results)
    rows = _rows(table)
    assert rows[0] == ["domain", "task", "auc", "gauc", "logloss", "positives", "impressions"]
    by_key = {(r[0], r[1]): r[2:] for r in rows if len(r) == 7}
    for dom, per_task in [("all", results["overall"])] + list(results["domains"].items()):
        for task in TASKS:
            m = per_task[task]
            cells = by_key[(dom, task)]
            for cell, k in zip(cells, ["auc", "gauc", "logloss"]):
                assert cell == ("-" if math.isnan(m[k]) else f"{m[k]:.4f}"), (dom, task, k)
            assert cells[3:] == [str(m["positives"]), str(m["impressions"])]
    # 'all' rows come before any domain, domains in results order.
    order = [r[0] for r in rows[2:] if len(r) == 7]
    assert order == ["all"] * 3 + [d for d in DOMAINS for _ in TASKS]
    assert by_key[("video_tab", "long_view")][:3] == ["-", "-", "-"]
    assert rows[-1] == ["mean", "over", "tasks", "(all):",
                        "AUC", f"{results['mean']['auc']:.4f}",
                        "GAUC", f"{results['mean']['gauc']:.4f}",
                        "logloss", f"{results['mean']['logloss']:.4f}"]


def test_table_columns_are_aligned(results):
    lines = [l for l in format_table(results).splitlines()[:-1] if l.strip()]
    # Right-aligned numeric columns: every data line ends at the header's width.
    assert len({len(l) for l in lines}) == 1


def test_table_custom_metrics_and_json_input(results):
    back = json.loads(json.dumps(to_jsonable(results)))
    table = format_table(back, metrics=("auc", "pos_rate"))
    assert table.splitlines()[0].split() == ["domain", "task", "auc", "pos_rate"]
    assert table == format_table(results, metrics=("auc", "pos_rate"))


def test_to_jsonable_converts_numpy_and_nan():
    obj = {"a": np.float32(0.5), "b": np.int64(3), "c": np.array([1.0, np.nan, np.inf]),
           "d": (np.bool_(True), float("-inf")), 4: [np.float64(np.nan)]}
    out = to_jsonable(obj)
    assert out == {"a": 0.5, "b": 3, "c": [1.0, None, None], "d": [True, None], "4": [None]}
    assert type(out["a"]) is float and type(out["b"]) is int and type(out["d"][0]) is bool
    json.dumps(out, allow_nan=False)  # strict JSON must accept it


def test_save_report_writes_json_and_png(results, tmp_path):
    paths = save_report(results, tmp_path / "sub", name="eval", title="Test report")
    assert paths == {"json": str(tmp_path / "sub" / "eval.json"),
                     "png": str(tmp_path / "sub" / "eval.png")}
    with open(paths["json"]) as f:
        text = f.read()
    assert "NaN" not in text
    loaded = json.loads(text)
    assert loaded == to_jsonable(results)
    assert loaded["domains"]["video_tab"]["long_view"]["auc"] is None
    assert loaded["overall"]["click"]["auc"] == pytest.approx(results["overall"]["click"]["auc"])
    with open(paths["png"], "rb") as f:
        png = f.read()
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 10_000


def test_report_keeps_matplotlib_global_state_alone(tmp_path):
    """Importing must not load matplotlib, and save_report must not go through
    pyplot (which would switch a notebook's backend)."""
    import os
    import subprocess
    code = (
        "import sys, numpy as np, pepnet_jax.evaluation.report as r\n"
        "print('matplotlib' in sys.modules)\n"
        "res = {'overall': {'t': {'auc': 0.7, 'gauc': np.nan, 'logloss': 0.4,"
        " 'pos_rate': 0.1, 'mean_pred': 0.12}}, 'domains': {}, 'mean': {}}\n"
        f"r.save_report(res, {str(tmp_path)!r})\n"
        "print('matplotlib.pyplot' in sys.modules)\n")
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True, cwd=root).stdout.split()
    assert out == ["False", "False"]
    assert (tmp_path / "report.png").read_bytes()[:4] == b"\x89PNG"
