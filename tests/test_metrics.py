"""Fast metrics must agree with slow, obviously-correct reference versions."""

import math
import warnings

import numpy as np
import pytest

from pepnet_jax.evaluation import metrics as M
from pepnet_jax.evaluation import ranking as R  # the packed-key kernel behind M


# ---------------------------------------------------------------- references

def ref_auc(labels, scores, weights=None):
    """Pairwise count over all (positive, negative) pairs, ties count 0.5."""
    labels = np.asarray(labels, dtype=float)
    scores = np.asarray(scores, dtype=float)
    w = np.ones_like(scores) if weights is None else np.asarray(weights, dtype=float)
    num = den = 0.0
    for i in range(len(labels)):
        if labels[i] <= 0.5 or w[i] == 0:
            continue
        for j in range(len(labels)):
            if labels[j] > 0.5 or w[j] == 0:
                continue
            pair = w[i] * w[j]
            den += pair
            if scores[i] > scores[j]:
                num += pair
            elif scores[i] == scores[j]:
                num += 0.5 * pair
    return num / den if den > 0 else float("nan")


def ref_gauc(labels, scores, groups):
    labels, scores, groups = map(np.asarray, (labels, scores, groups))
    num = den = 0.0
    for g in sorted(set(groups.tolist())):
        sel = groups == g
        a = ref_auc(labels[sel], scores[sel])
        if not math.isnan(a):
            num += sel.sum() * a
            den += sel.sum()
    return num / den if den > 0 else float("nan")


def ref_logloss(labels, scores, eps=1e-7):
    total = 0.0
    for y, s in zip(labels, scores):
        p = min(max(float(s), eps), 1 - eps)
        total += -(y * math.log(p) + (1 - y) * math.log(1 - p))
    return total / len(labels) if len(labels) else float("nan")


def same(a, b, tol=1e-9):
    if math.isnan(a) or math.isnan(b):
        return math.isnan(a) and math.isnan(b)
    return abs(a - b) <= tol


def tied_data(rng, n, n_groups=12, decimals=1, pos_rate=0.3):
    labels = (rng.random(n) < pos_rate).astype(np.float32)
    scores = np.round(rng.random(n), decimals)  # many ties
    groups = rng.integers(0, n_groups, n) * 7 + 100  # sparse, non-zero ids
    return labels, scores, groups


# ----------------------------------------------------------------------- auc

@pytest.mark.parametrize("seed", range(6))
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_auc_matches_pairwise_reference_with_ties(seed, dtype):
    rng = np.random.default_rng(seed)
    labels, scores, _ = tied_data(rng, 150 + 40 * seed)
    scores = scores.astype(dtype)
    assert same(M.auc(labels, scores), ref_auc(labels, scores))


@pytest.mark.parametrize("seed", range(4))
def test_weighted_auc_matches_reference(seed):
    rng = np.random.default_rng(100 + seed)
    labels, scores, _ = tied_data(rng, 120)
    weights = rng.integers(0, 4, 120).astype(float) * rng.random(120)  # ~25% zero
    assert same(M.auc(labels, scores, weights), ref_auc(labels, scores, weights))


@pytest.mark.parametrize("seed", range(4))
def test_auc_and_gauc_with_sparse_ties(seed):
    """Mostly distinct scores with a few ties (the usual model output) take a
    different tie-counting path than heavily rounded scores."""
    rng = np.random.default_rng(300 + seed)
    n = 300
    labels = (rng.random(n) < 0.4).astype(float)
    scores = rng.random(n).astype(np.float32)
    src, dst = rng.integers(0, n, 12), rng.integers(0, n, 12)
    scores[dst] = scores[src]
    groups = rng.integers(0, 5, n)
    # Make sure some ties are within groups and mix classes.
    groups[dst] = groups[src]
    labels[dst[:6]] = 1 - labels[src[:6]]
    assert same(M.auc(labels, scores), ref_auc(labels, scores))
    assert same(M.gauc(labels, scores, groups), ref_gauc(labels, scores, groups))


def test_integer_weights_equal_row_repetition():
    rng = np.random.default_rng(3)
    labels, scores, _ = tied_data(rng, 60)
    reps = rng.integers(1, 4, 60)
    expanded = M.auc(np.repeat(labels, reps), np.repeat(scores, reps))
    assert same(M.auc(labels, scores, reps), expanded)


def test_zero_weight_rows_are_ignored():
    labels = np.array([1, 0, 1, 0])
    scores = np.array([0.9, 0.1, 0.0, 1.0])
    # Rows 2 and 3 would reverse the ranking if they counted.
    assert M.auc(labels, scores, [1, 1, 0, 0]) == 1.0
    # Weight zero on every negative leaves one class: nan.
    assert math.isnan(M.auc(labels, scores, [1, 0, 1, 0]))


def test_auc_edge_cases():
    assert M.auc([0, 0, 1, 1], [0.1, 0.2, 0.3, 0.4]) == 1.0
    assert M.auc([1, 1, 0, 0], [0.1, 0.2, 0.3, 0.4]) == 0.0
    assert M.auc([0, 1, 0, 1], [0.5, 0.5, 0.5, 0.5]) == 0.5
    assert math.isnan(M.auc([1, 1, 1], [0.1, 0.2, 0.3]))
    assert math.isnan(M.auc([0, 0], [0.1, 0.2]))
    assert math.isnan(M.auc([], []))
    assert math.isnan(M.auc([], [], weights=[]))


def test_auc_signed_and_extreme_scores():
    """Negative scores, -0.0 vs 0.0 and logits must rank like their values."""
    scores = np.array([-3.0, -0.0, 0.0, 2.5, -1e30, 1e30, -1e-30], dtype=np.float32)
    labels = np.array([0, 1, 0, 1, 0, 1, 0])
    assert same(M.auc(labels, scores), ref_auc(labels, scores))
    assert M.auc([0, 1], np.array([0.0, -0.0])) == 0.5


def test_auc_float64_not_representable_in_float32():
    """Distinct float64 scores that collapse in float32 must not tie."""
    scores = np.array([0.5, 0.5 + 1e-12, 0.5 + 2e-12, 0.5 + 3e-12])
    assert M.auc([0, 0, 1, 1], scores) == 1.0
    assert M.auc([1, 1, 0, 0], scores) == 0.0


def test_auc_length_mismatch_raises():
    with pytest.raises(ValueError):
        M.auc([0, 1], [0.1])
    with pytest.raises(ValueError, match=r"^weights must be non-negative$"):
        M.auc([0, 1], [0.1, 0.2], weights=[-1, 1])


# ---------------------------------------------------------------------- gauc

@pytest.mark.parametrize("seed", range(6))
def test_gauc_matches_loop_reference(seed):
    rng = np.random.default_rng(200 + seed)
    labels, scores, groups = tied_data(rng, 300, n_groups=25, pos_rate=0.2)
    # Force some single-class groups, which must be skipped.
    labels[groups == groups[0]] = 0
    labels[groups == groups[1]] = 1
    assert same(M.gauc(labels, scores, groups), ref_gauc(labels, scores, groups))


def test_gauc_weights_groups_by_impressions():
    # Group A: 2 rows, AUC 1. Group B: 4 rows, AUC 0. Group C single-class.
    labels = [0, 1, 1, 1, 0, 0, 1, 1]
    scores = [0.1, 0.9, 0.1, 0.2, 0.8, 0.9, 0.5, 0.5]
    groups = ["a", "a", "b", "b", "b", "b", "c", "c"]
    assert same(M.gauc(labels, scores, groups), (2 * 1.0 + 4 * 0.0) / 6)


def test_gauc_edge_cases():
    assert math.isnan(M.gauc([1, 0], [0.1, 0.2], [1, 2]))  # every group single-class
    assert math.isnan(M.gauc([], [], []))
    # Rank inside a group only: a global reversal across groups does not matter.
    assert M.gauc([0, 1, 0, 1], [0.8, 0.9, 0.1, 0.2], [5, 5, 6, 6]) == 1.0


def test_dense_rank_fallback_when_keys_do_not_fit(monkeypatch):
    """Float32 score codes are replaced by dense ranks when group bits leave no
    room in the int64 key; results must not change."""
    rng = np.random.default_rng(12)
    labels, scores, groups = tied_data(rng, 200, n_groups=20, decimals=2)
    scores = scores.astype(np.float32)
    expected = (ref_auc(labels, scores), ref_gauc(labels, scores, groups))
    monkeypatch.setattr(R, "_KEY_BITS", 37)  # 32 score bits + 5 group bits + 1 label bit > 37
    out = M.task_metrics(labels, scores, groups)
    assert same(out["auc"], expected[0]) and same(out["gauc"], expected[1])
    monkeypatch.setattr(R, "_KEY_BITS", 8)  # even dense ranks cannot fit
    with pytest.raises(ValueError, match=r"^too many groups/distinct scores to pack into int64 keys$"):
        M.task_metrics(labels, scores, groups)


def test_gauc_huge_sparse_ids():
    """Ids far apart (hashes) take the sort path and give the same answer."""
    rng = np.random.default_rng(9)
    labels, scores, groups = tied_data(rng, 200, n_groups=10)
    hashed = groups.astype(np.int64) * 10**15 + 12345
    assert same(M.gauc(labels, scores, hashed), ref_gauc(labels, scores, groups))


# ------------------------------------------------------------------- logloss

def test_logloss_matches_reference_and_clips():
    rng = np.random.default_rng(5)
    labels = (rng.random(100) < 0.4).astype(float)
    scores = rng.random(100)
    scores[:3] = [0.0, 1.0, 1.0]
    labels[:3] = [1, 0, 1]
    assert same(M.logloss(labels, scores), ref_logloss(labels, scores))
    assert np.isfinite(M.logloss(labels, scores))
    assert same(M.logloss([1.0], [0.0]), -math.log(1e-7))
    assert same(M.logloss([1, 0], [0.5, 0.5]), math.log(2))
    assert math.isnan(M.logloss([], []))


def test_logloss_soft_labels():
    labels = [0.3, 0.7]
    scores = [0.2, 0.6]
    assert same(M.logloss(labels, scores), ref_logloss(labels, scores))


# -------------------------------------------------------------- task_metrics

def test_task_metrics_values_and_mask():
    rng = np.random.default_rng(11)
    labels, scores, groups = tied_data(rng, 250, n_groups=20)
    labels = labels.astype(np.float64)
    mask = rng.random(250) < 0.7
    labels[~mask & (rng.random(250) < 0.5)] = np.nan  # missing labels are masked
    out = M.task_metrics(labels, scores, groups, mask)
    y, s, g = labels[mask], scores[mask], groups[mask]
    assert set(out) == {"auc", "gauc", "logloss", "positives", "impressions",
                        "pos_rate", "mean_pred"}
    assert same(out["auc"], ref_auc(y, s))
    assert same(out["gauc"], ref_gauc(y, s, g))
    assert same(out["logloss"], ref_logloss(y, s))
    assert out["positives"] == int((y > 0.5).sum()) and isinstance(out["positives"], int)
    assert out["impressions"] == int(mask.sum()) and isinstance(out["impressions"], int)
    assert same(out["pos_rate"], float((y > 0.5).mean()))
    assert same(out["mean_pred"], float(s.mean()))


def test_task_metrics_nan_label_without_mask_is_dropped():
    out = M.task_metrics([1, 0, np.nan], [0.9, 0.1, 0.5], [1, 1, 1])
    assert out["impressions"] == 2 and out["auc"] == 1.0


def test_task_metrics_empty():
    out = M.task_metrics([1, 0], [0.9, 0.1], [1, 1], mask=[0, 0])
    assert out["impressions"] == 0 and out["positives"] == 0
    for k in ("auc", "gauc", "logloss", "pos_rate", "mean_pred"):
        assert math.isnan(out[k])


# ------------------------------------------------------------------ evaluate

def _eval_data(seed=21, n=400, n_tasks=3, n_dom=3):
    rng = np.random.default_rng(seed)
    preds = np.round(rng.random((n, n_tasks)), 2).astype(np.float32)
    labels = (rng.random((n, n_tasks)) < 0.3).astype(np.float32)
    mask = rng.random((n, n_tasks)) < 0.8
    domains = rng.integers(0, n_dom, n)
    groups = rng.integers(0, 30, n)
    return preds, labels, mask, domains, groups


def test_evaluate_structure_and_domain_slices():
    preds, labels, mask, domains, groups = _eval_data()
    tasks, doms = ["click", "like", "share"], ["home", 7, "search"]
    res = M.evaluate(preds, labels, mask, domains, groups, tasks, doms)
    assert set(res) == {"overall", "domains", "mean"}
    assert set(res["overall"]) == set(tasks)
    assert set(res["domains"]) == {"home", "7", "search"}
    for t, task in enumerate(tasks):
        ref = M.task_metrics(labels[:, t], preds[:, t], groups, mask[:, t])
        for k, v in ref.items():
            assert same(res["overall"][task][k], v, 1e-12), (task, k)
        for d, dn in enumerate(doms):
            sel = domains == d
            ref = M.task_metrics(labels[sel, t], preds[sel, t], groups[sel], mask[sel, t])
            got = res["domains"][str(dn)][task]
            for k, v in ref.items():
                assert same(got[k], v, 1e-12), (task, dn, k)
            # And independently against the slow references.
            m = sel & mask[:, t]
            assert same(got["auc"], ref_auc(labels[m, t], preds[m, t]))
            assert same(got["gauc"], ref_gauc(labels[m, t], preds[m, t], groups[m]))
    for k in ("auc", "gauc", "logloss"):
        assert same(res["mean"][k], float(np.mean([res["overall"][t][k] for t in tasks])))


def test_evaluate_excludes_masked_rows():
    preds, labels, mask, domains, groups = _eval_data(seed=3, n_tasks=1)
    res = M.evaluate(preds, labels, mask, domains, groups, ["t"], ["a", "b", "c"])
    # Corrupt every masked-out row: results must not change.
    preds2, labels2 = preds.copy(), labels.copy()
    preds2[~mask] = 1 - preds2[~mask]
    labels2[~mask] = np.nan
    res2 = M.evaluate(preds2, labels2, mask, domains, groups, ["t"], ["a", "b", "c"])
    for a, b in [(res["overall"]["t"], res2["overall"]["t"])] + [
            (res["domains"][d]["t"], res2["domains"][d]["t"]) for d in "abc"]:
        assert all(same(a[k], b[k], 0.0) for k in a)
    assert res["overall"]["t"]["impressions"] == int(mask.sum())
    full = M.evaluate(preds, labels, None, domains, groups, ["t"], ["a", "b", "c"])
    assert full["overall"]["t"]["impressions"] == len(preds)
    assert not same(full["overall"]["t"]["auc"], res["overall"]["t"]["auc"])


def test_evaluate_mean_ignores_nan_tasks_and_empty_domain():
    preds, labels, mask, domains, groups = _eval_data(seed=4, n_tasks=2, n_dom=2)
    labels[:, 1] = 0  # task 1 single-class -> nan AUC/GAUC
    res = M.evaluate(preds, labels, mask, domains, groups, ["a", "b"], ["x", "y", "empty"])
    assert math.isnan(res["overall"]["b"]["auc"])
    assert same(res["mean"]["auc"], res["overall"]["a"]["auc"])
    assert same(res["mean"]["logloss"],
                (res["overall"]["a"]["logloss"] + res["overall"]["b"]["logloss"]) / 2)
    empty = res["domains"]["empty"]["a"]
    assert empty["impressions"] == 0 and math.isnan(empty["auc"]) and math.isnan(empty["logloss"])


def test_evaluate_empty_and_fully_masked():
    res = M.evaluate(np.zeros((0, 2)), np.zeros((0, 2)), np.zeros((0, 2)), [], [],
                     ["a", "b"], ["x"])
    assert res["overall"]["a"]["impressions"] == 0 and math.isnan(res["overall"]["a"]["auc"])
    assert math.isnan(res["mean"]["auc"]) and math.isnan(res["mean"]["logloss"])
    preds, labels, mask, domains, groups = _eval_data(n_tasks=2)
    mask[:, 0] = False
    res = M.evaluate(preds, labels, mask, domains, groups, ["a", "b"], ["x", "y", "z"])
    assert res["overall"]["a"]["impressions"] == 0 and math.isnan(res["overall"]["a"]["gauc"])
    assert same(res["mean"]["auc"], res["overall"]["b"]["auc"])


def test_unsigned_huge_group_ids():
    labels = [0, 1, 0, 1]
    scores = [0.1, 0.9, 0.8, 0.2]
    groups = np.array([2**64 - 1, 2**64 - 1, 2**64 - 2, 2**64 - 2], dtype=np.uint64)
    assert M.gauc(labels, scores, groups) == 0.5


def test_evaluate_rejects_bad_domain_index():
    preds, labels, mask, domains, groups = _eval_data(n_dom=3)
    with pytest.raises(ValueError):
        M.evaluate(preds, labels, mask, domains, groups, ["a", "b", "c"], ["x", "y"])


# ------------------------------------------------------- non-finite, 1 group

@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_evaluate_nonfinite_predictions_raise_naming_task(bad):
    preds, labels, mask, domains, groups = _eval_data(seed=5, n_tasks=2)
    rows = np.flatnonzero(mask[:, 1])[:3]
    preds[rows, 1] = bad
    with pytest.raises(ValueError, match=r"task 'like' hold 3 non-finite"):
        M.evaluate(preds, labels, mask, domains, groups, ["click", "like"], ["x", "y", "z"])


def test_evaluate_ignores_nonfinite_predictions_on_rows_that_do_not_count():
    preds, labels, mask, domains, groups = _eval_data(seed=6, n_tasks=1)
    ref = M.evaluate(preds, labels, mask, domains, groups, ["t"], ["x", "y", "z"])
    preds[~mask[:, 0], 0] = np.nan
    res = M.evaluate(preds, labels, mask, domains, groups, ["t"], ["x", "y", "z"])
    assert all(same(res["overall"]["t"][k], v, 0.0) for k, v in ref["overall"]["t"].items())


def test_per_task_functions_reject_nonfinite_scores():
    labels = np.array([0, 1, 0, 1, 1], dtype=np.float32)
    scores = np.array([0.1, 0.9, np.nan, 0.4, 0.7])
    groups = np.array([1, 1, 2, 2, 2])
    for call in (lambda: M.auc(labels, scores), lambda: M.auc(labels, scores, np.ones(5)),
                 lambda: M.gauc(labels, scores, groups), lambda: M.logloss(labels, scores)):
        with pytest.raises(ValueError, match="1 non-finite"):
            call()
    with pytest.raises(ValueError, match="task 'click' hold 1 non-finite"):
        M.task_metrics(labels, scores, groups, task="click")
    with pytest.raises(ValueError, match="task 'click'"):
        M.logloss(labels, np.where(np.isnan(scores), np.inf, scores), task="click")
    # Rows that do not count are not looked at: zero weight, masked out.
    w = np.array([1, 1, 0, 1, 1.0])
    assert same(M.auc(labels, scores, w), ref_auc(labels, np.nan_to_num(scores), w))
    mask = ~np.isnan(scores)
    assert M.task_metrics(labels, scores, groups, mask)["impressions"] == 4


def test_per_domain_gauc_when_one_user_spans_domains():
    """One user in every domain: the group code is the domain itself (shift 0),
    which once pooled all domains into domain 0."""
    labels = np.array([0, 1, 0, 1, 0, 1, 0, 1], dtype=np.float32)
    preds = np.array([[0.1], [0.9], [0.2], [0.8],   # domain 0: perfect ranking
                      [0.9], [0.1], [0.7], [0.3]])  # domain 1: inverted
    domains = np.array([0, 0, 0, 0, 1, 1, 1, 1])
    groups = np.full(8, 42)
    res = M.evaluate(preds, labels[:, None], None, domains, groups, ["t"], ["a", "b"])
    assert res["domains"]["a"]["t"]["gauc"] == 1.0
    assert res["domains"]["b"]["t"]["gauc"] == 0.0
    assert same(res["overall"]["t"]["gauc"], ref_auc(labels, preds[:, 0]))  # one user
    for d, dn in enumerate("ab"):
        sel = domains == d
        ref = ref_gauc(labels[sel], preds[sel, 0], groups[sel])
        assert same(res["domains"][dn]["t"]["gauc"], ref)
        assert same(res["domains"][dn]["t"]["auc"], ref)


# ------------------------------------------------------------------- sklearn

def test_against_sklearn_if_available():
    sk = pytest.importorskip("sklearn.metrics")
    rng = np.random.default_rng(8)
    labels, scores, _ = tied_data(rng, 2000, decimals=2)
    w = rng.random(2000)
    assert same(M.auc(labels, scores), sk.roc_auc_score(labels, scores))
    assert same(M.auc(labels, scores, w), sk.roc_auc_score(labels, scores, sample_weight=w))
    assert same(M.logloss(labels, scores), sk.log_loss(labels, np.clip(scores, 1e-7, 1 - 1e-7)))


# ---- extra metrics: the registry --------------------------------------------------------


def _ap_reference(y, s):
    """Average precision by definition: over distinct thresholds t (descending), the recall
    gained at t times the precision of the rows scored >= t."""
    y, s = np.asarray(y) > 0.5, np.asarray(s, float)
    total, prev_recall = 0.0, 0.0
    for t in sorted(set(s.tolist()), reverse=True):
        chosen = s >= t
        recall = y[chosen].sum() / y.sum()
        total += (recall - prev_recall) * y[chosen].mean()
        prev_recall = recall
    return total


def test_average_precision_matches_its_definition_with_ties():
    rng = np.random.default_rng(5)
    for _ in range(20):
        n = int(rng.integers(5, 60))
        y = (rng.random(n) < 0.3).astype(float)
        y[0] = 1.0
        s = rng.integers(0, 6, n) / 5.0  # many ties
        assert M.average_precision(y, s) == pytest.approx(_ap_reference(y, s), abs=1e-12)
    assert M.average_precision([1, 0, 1, 0], [0.9, 0.8, 0.7, 0.1]) == pytest.approx(
        (1 + 2 / 3) / 2)
    assert np.isnan(M.average_precision([0, 0], [0.1, 0.2]))


def test_a_registered_metric_lands_in_every_cell_and_the_mean(monkeypatch):
    monkeypatch.setattr(M, '_METRICS', dict(M._METRICS))
    M.register_metric('top_rate', lambda y, s: float(np.mean(y[np.argsort(-s)[:2]])))
    rng = np.random.default_rng(1)
    n = 200
    preds, labels = rng.random((n, 2)), (rng.random((n, 2)) < 0.4).astype(float)
    domains, groups = rng.integers(0, 2, n), rng.integers(0, 20, n)
    extra = M.resolve_metrics(('top_rate', 'pr_auc'))
    r = M.evaluate(preds, labels, None, domains, groups, ['a', 'b'], [0, 1], extra=extra)
    for t, task in enumerate(['a', 'b']):
        assert r['overall'][task]['pr_auc'] == pytest.approx(
            M.average_precision(labels[:, t], preds[:, t]))
        d1 = domains == 1
        top = np.argsort(-preds[d1, t])[:2]
        assert r['domains']['1'][task]['top_rate'] == pytest.approx(labels[d1, t][top].mean())
    assert r['mean']['pr_auc'] == pytest.approx(np.mean([r['overall'][t]['pr_auc']
                                                         for t in 'ab']))
    with pytest.raises(ValueError, match=r"config.train.metrics\[0\]='nope' is not a registered"):
        M.resolve_metrics(('nope',))
    with pytest.raises(ValueError, match='taken by a built-in'):
        M.register_metric('auc', lambda y, s: 0.0)


def test_metric_by_module_path_and_its_direction_for_selection(monkeypatch, tmp_path):
    from pepnet_jax.training import selection
    monkeypatch.setattr(M, '_METRICS', dict(M._METRICS))
    (tmp_path / 'my_metrics_xyz.py').write_text(
        'from pepnet_jax.evaluation.metrics import register_metric\n'
        'register_metric("brier", lambda y, s: float(((y - s) ** 2).mean()), '
        'higher_is_better=False)\n')
    monkeypatch.syspath_prepend(str(tmp_path))
    (m,) = M.resolve_metrics('my_metrics_xyz:brier')
    assert m.name == 'brier' and not m.higher_is_better
    assert selection.mode_of('mean_brier') == 'min' and selection.mode_of('brier/is_click') == 'min'
    assert selection.mode_of('mean_pr_auc') == 'max' and selection.mode_of('mean_logloss') == 'min'


def test_int8_labels_with_minus_one_missing_equal_float_labels_with_nan():
    """The trainer hands the cache's int8 labels (-1 = missing) straight to evaluate."""
    rng = np.random.default_rng(3)
    n = 500
    preds = rng.random((n, 2)).astype(np.float32)
    lab = (rng.random((n, 2)) < 0.3).astype(np.int8)
    lab[rng.random((n, 2)) < 0.1] = -1
    flt = np.where(lab < 0, np.nan, lab).astype(np.float32)
    dom, grp = rng.integers(0, 3, n), rng.integers(0, 40, n)
    a = M.evaluate(preds, lab, None, dom, grp, ['x', 'y'], [0, 1, 2])
    b = M.evaluate(preds, flt, None, dom, grp, ['x', 'y'], [0, 1, 2])
    assert a == b
    assert a['overall']['x']['impressions'] == int((lab[:, 0] >= 0).sum())


# ------------------------------------------- edge cases found by mutation testing


def ref_auc_np(labels, scores, weights=None):
    """ref_auc vectorised (all positive x negative pairs at once, float64), for a few
    thousand rows."""
    y = np.asarray(labels, dtype=float) > 0.5
    s = np.asarray(scores, dtype=float)
    w = np.ones(s.shape[0]) if weights is None else np.asarray(weights, dtype=float)
    sp, sn = s[y][:, None], s[~y][None, :]
    pair = w[y][:, None] * w[~y][None, :]
    den = pair.sum()
    return float((pair * ((sp > sn) + 0.5 * (sp == sn))).sum() / den) if den > 0 else math.nan


def test_label_exactly_half_counts_as_negative_for_ranking_metrics():
    """Ranking metrics call a label positive when > 0.5, so 0.5 is a negative."""
    labels = np.array([0.5, 1.0, 0.0, 1.0, 0.5, 0.0])
    scores = np.array([0.9, 0.8, 0.1, 0.3, 0.2, 0.7], dtype=np.float32)
    groups = np.array([1, 1, 1, 2, 2, 2])
    # Positives: rows 1 (0.8) and 3 (0.3); negatives: 0.9, 0.1, 0.2, 0.7.
    # 0.8 beats 0.1, 0.2, 0.7 (3 of 4); 0.3 beats 0.1, 0.2 (2 of 4) -> 5/8.
    assert M.auc(labels, scores) == 5 / 8
    assert M.auc(labels, scores, np.ones(6)) == 5 / 8
    # Group 1: pos 0.8 vs neg 0.9, 0.1 -> 1/2; group 2: pos 0.3 vs neg 0.2, 0.7 -> 1/2.
    assert M.gauc(labels, scores, groups) == 0.5
    out = M.task_metrics(labels, scores, groups)
    assert out["positives"] == 2 and out["auc"] == 5 / 8 and out["gauc"] == 0.5
    assert same(out["pos_rate"], 2 / 6)


def test_undefined_metrics_are_nan_without_runtime_warnings():
    """Single-class or empty input is an expected case (a rare task, an empty domain):
    nan, and no numpy RuntimeWarning (0/0, mean of an empty slice) on the way."""
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert math.isnan(M.auc([1, 1], [0.1, 0.2]))
        assert math.isnan(M.auc([0, 0], [0.1, 0.2]))
        assert math.isnan(M.auc([1, 1], [0.1, 0.2], weights=[1, 2]))
        assert math.isnan(M.auc([0, 0], [0.1, 0.2], weights=[1, 2]))
        assert math.isnan(M.auc([1, 0], [0.1, 0.2], weights=[1, 0]))
        assert math.isnan(M.gauc([1, 0], [0.1, 0.2], [1, 2]))  # every user single-class
        assert math.isnan(M.gauc([], [], []))
        assert math.isnan(M.logloss([], []))
        out = M.task_metrics([1, 0], [0.9, 0.1], [1, 1], mask=[0, 0])
        assert out["impressions"] == 0 and math.isnan(out["gauc"])
        res = M.evaluate(np.array([[0.9], [0.1], [0.4]]), np.array([[1.0], [0.0], [1.0]]),
                         None, [0, 0, 1], [7, 7, 8], ["t"], ["x", "y", "empty"])
        assert res["domains"]["x"]["t"]["gauc"] == 1.0
        for dn in ("y", "empty"):  # y: one single-class user; empty: no rows
            assert math.isnan(res["domains"][dn]["t"]["auc"])
            assert math.isnan(res["domains"][dn]["t"]["gauc"])


def test_nonfinite_error_names_the_task_in_every_function():
    labels = np.array([0, 1, 0, 1], dtype=np.float32)
    scores = np.array([0.1, np.inf, 0.3, 0.4])
    for call in (lambda: M.auc(labels, scores, task="click"),
                 lambda: M.auc(labels, scores, np.ones(4), task="click"),
                 lambda: M.gauc(labels, scores, [1, 1, 2, 2], task="click")):
        with pytest.raises(ValueError, match=r"^predictions for task 'click' hold 1 non-finite"):
            call()


def test_length_mismatch_is_reported_for_every_argument():
    """Each array is length-checked, including ones numpy would broadcast (length 1)."""
    y, s, g, m = np.array([0, 1, 0.0]), np.array([0.2, 0.9, 0.4]), np.array([1, 1, 2]), [1, 1, 1]
    calls = [
        lambda short: M.auc(*short(y, s)),
        lambda short: M.auc(y, s, short(np.ones(3))[0]),
        lambda short: M.gauc(*short(y, s, g)),
        lambda short: M.gauc(y, *short(s, g)),
        lambda short: M.gauc(y, s, *short(g)),
        lambda short: M.logloss(*short(y, s)),
        lambda short: M.logloss(y, *short(s)),
        lambda short: M.task_metrics(*short(y, s, g)),
        lambda short: M.task_metrics(y, *short(s, g)),
        lambda short: M.task_metrics(y, s, *short(g)),
        lambda short: M.task_metrics(*short(y, s, g), m),
        lambda short: M.task_metrics(y, *short(s, g), m),
        lambda short: M.task_metrics(y, s, *short(g), m),
        lambda short: M.task_metrics(y, s, g, *short(m)),
    ]
    for first_only in (lambda *a: (a[0][:1],) + a[1:],   # length 1 would broadcast
                       lambda *a: (a[0][:2],) + a[1:]):
        for call in calls:
            with pytest.raises(ValueError, match="length mismatch"):
                call(first_only)
    with pytest.raises(ValueError, match="length mismatch"):
        M.auc(y, s, np.ones(4))


def test_column_vector_inputs_are_flattened():
    """[N, 1] columns (labels, scores, user ids, mask, weights) mean the same as [N]."""
    rng = np.random.default_rng(31)
    labels, scores, groups = tied_data(rng, 80, n_groups=6)
    mask = rng.random(80) < 0.8
    w = rng.random(80)
    col = lambda a: np.asarray(a)[:, None]
    assert same(M.gauc(col(labels), col(scores), col(groups)), ref_gauc(labels, scores, groups))
    out = M.task_metrics(col(labels), col(scores), col(groups), col(mask))
    assert out["impressions"] == int(mask.sum())
    assert same(out["gauc"], ref_gauc(labels[mask], scores[mask], groups[mask]))
    assert same(M.auc(col(labels), col(scores), col(w)), ref_auc(labels, scores, w))


def test_nan_label_on_a_masked_in_row_is_dropped():
    """The mask does not override the NaN check: a missing label never counts."""
    out = M.task_metrics([1, 0, np.nan, 0], [0.9, 0.1, 0.5, 0.95], [1, 1, 1, 1],
                         mask=[1, 1, 1, 0])
    assert out["impressions"] == 2 and out["positives"] == 1 and out["auc"] == 1.0
    assert same(out["logloss"], -(math.log(0.9) + math.log(0.9)) / 2)
    assert same(out["mean_pred"], 0.5)


def test_float32_weights_are_accumulated_in_float64():
    """Sample weights often arrive as float32; sums over many rows must not be float32."""
    rng = np.random.default_rng(41)
    n = 3000
    labels = (rng.random(n) < 0.3).astype(np.float32)
    scores = rng.random(n).astype(np.float32)
    w = (rng.random(n) * 3).astype(np.float32)
    assert abs(M.auc(labels, scores, w) - ref_auc_np(labels, scores, w)) < 1e-11


def test_gauc_float_group_ids_are_not_truncated():
    """Non-integer ids are grouped by exact value (0.25 and 0.75 are different users)."""
    labels = [0, 1, 0, 1, 0, 1]
    scores = [0.1, 0.9, 0.95, 0.97, 0.8, 0.2]
    groups = [0.25, 0.25, 0.75, 0.75, 1.5, 1.5]  # AUC 1, 1, 0 (2 rows each)
    # Pooling 0.25 with 0.75 would give that user AUC 3/4 and GAUC 1/2.
    assert same(M.gauc(labels, scores, groups), 2 / 3)
    assert same(M.gauc(labels, scores, groups), ref_gauc(labels, scores, groups))


def test_gauc_signed_hashed_ids_spanning_int64():
    """Signed 64-bit hashed ids (far apart around zero) take the sort path."""
    rng = np.random.default_rng(10)
    labels, scores, groups = tied_data(rng, 120, n_groups=6)
    hashed = (groups.astype(np.int64) - 130) * 10**15  # about -4e16 .. +1e16
    assert hashed.min() < 0 < hashed.max()
    assert same(M.gauc(labels, scores, hashed), ref_gauc(labels, scores, groups))


def test_gauc_single_row_and_empty_integer_ids():
    assert math.isnan(M.gauc([1], [0.5], [7]))
    out = M.task_metrics([1], [0.5], [7])
    assert out["impressions"] == 1 and out["positives"] == 1 and math.isnan(out["auc"])
    empty_ids = np.zeros(0, dtype=np.int64)
    assert math.isnan(M.gauc([], [], empty_ids))
    assert M.task_metrics([], [], empty_ids)["impressions"] == 0


@pytest.mark.parametrize("n_users", [3, 5, 6])  # just above a power of two
def test_per_domain_gauc_with_user_count_just_above_power_of_two(n_users):
    """Per-domain GAUC packs (domain, user) into one code; the user field must be wide
    enough for every user index, or users of different domains would merge."""
    rng = np.random.default_rng(50 + n_users)
    n = 160
    domains = rng.integers(0, 2, n)
    groups = rng.integers(0, n_users, n) * 11 + 3
    labels = (rng.random(n) < 0.5).astype(np.float32)
    preds = np.round(rng.random(n), 2)
    res = M.evaluate(preds, labels, None, domains, groups, ["t"], ["a", "b"])
    for d, dn in enumerate("ab"):
        sel = domains == d
        got = res["domains"][dn]["t"]
        assert same(got["gauc"], ref_gauc(labels[sel], preds[sel], groups[sel]))
        assert same(got["auc"], ref_auc(labels[sel], preds[sel]))
    assert same(res["overall"]["t"]["gauc"], ref_gauc(labels, preds, groups))


def test_gauc_and_domain_metrics_with_negative_scores():
    """Logits (negative and positive scores) rank like their values in every grouping."""
    rng = np.random.default_rng(60)
    n = 200
    logits = (rng.normal(size=n) * 3).astype(np.float32)
    labels = (rng.random(n) < 0.4).astype(np.float32)
    groups = rng.integers(0, 8, n)
    domains = rng.integers(0, 2, n)
    assert same(M.gauc(labels, logits, groups), ref_gauc(labels, logits, groups))
    out = M.task_metrics(labels, logits, groups)
    assert same(out["auc"], ref_auc(labels, logits))
    res = M.evaluate(logits, labels, None, domains, groups, ["t"], ["a", "b"])
    for d, dn in enumerate("ab"):
        sel = domains == d
        assert same(res["domains"][dn]["t"]["gauc"],
                    ref_gauc(labels[sel], logits[sel], groups[sel]))
        assert same(res["domains"][dn]["t"]["auc"], ref_auc(labels[sel], logits[sel]))


def test_smallest_negative_subnormal_ranks_below_zero():
    tiny = np.float32(-1e-45)  # the negative float32 closest to zero
    assert tiny < 0
    assert M.auc([0, 1], np.array([tiny, 0.0], dtype=np.float32)) == 1.0
    assert M.auc([1, 0], np.array([tiny, 0.0], dtype=np.float32)) == 0.0
    assert M.gauc([0, 1, 0, 1], np.array([tiny, 0.0, 0.0, 1.0], dtype=np.float32),
                  [1, 1, 2, 2]) == 1.0


def test_longdouble_scores_take_dense_ranks_including_empty():
    """Scores that are not float16/32/64 go through dense ranks; empty input is nan."""
    rng = np.random.default_rng(70)
    labels, scores, groups = tied_data(rng, 90, n_groups=7)
    ld = scores.astype(np.longdouble)
    assert same(M.auc(labels, ld), ref_auc(labels, scores))
    assert same(M.gauc(labels, ld, groups), ref_gauc(labels, scores, groups))
    empty = np.zeros(0, dtype=np.longdouble)
    assert math.isnan(M.auc([], empty))
    assert math.isnan(M.gauc([], empty, []))
    out = M.task_metrics([], empty, [])
    assert out["impressions"] == 0 and math.isnan(out["auc"]) and math.isnan(out["gauc"])


@pytest.mark.parametrize("n_users,n_dom", [(5, 3), (4, 3), (4, 1)])  # 4 users: a power of two
def test_packed_keys_stay_within_key_bits(monkeypatch, n_users, n_dom):
    """Packed keys (domain, user, score code, label) must fit in _KEY_BITS bits (62: positive
    int64). Lowering _KEY_BITS reaches at test size what 2**29 users reach in production:
    float32 codes (32 bits) are replaced by dense ranks when they do not fit, results do
    not change, and only when even dense ranks do not fit is there an error."""
    rng = np.random.default_rng(80)
    n = 150
    domains = np.r_[np.arange(n_dom), rng.integers(0, n_dom, n - n_dom)]
    groups = np.r_[np.arange(n_users), rng.integers(0, n_users, n - n_users)]
    labels = (rng.random((n, 3)) < 0.4).astype(np.float32)
    preds = np.empty((n, 3), dtype=np.float32)
    preds[:, 0] = (rng.integers(0, 8, n) + 1) / 10  # 8 distinct scores: dense ranks need 3 bits
    preds[:, 1] = 0.5  # one distinct score: dense ranks need 0 bits
    preds[:, 2] = 0.3
    mask = np.ones((n, 3), dtype=bool)
    mask[:, 2] = False  # an empty task
    keys = []
    real = R.pair_counts

    def spy(v, shift):
        keys.append(v)
        return real(v, shift)

    monkeypatch.setattr(R, "pair_counts", spy)  # the kernel's calls
    monkeypatch.setattr(M, "pair_counts", spy)  # and the public functions' own

    def run(key_bits, tasks):
        monkeypatch.setattr(R, "_KEY_BITS", key_bits)
        keys.clear()
        cols = [["t", "const", "empty"].index(t) for t in tasks]
        res = M.evaluate(preds[:, cols], labels[:, cols], mask[:, cols], domains, groups,
                         tasks, list("abc")[:n_dom])
        assert keys and all(k.size == 0 or (k.min() >= 0 and k.max() < 1 << key_bits)
                            for k in keys), key_bits
        return res

    label_bits = 1
    user_bits, dom_bits = (n_users - 1).bit_length(), (n_dom - 1).bit_length()
    fixed = label_bits + user_bits + dom_bits
    for key_bits in (fixed + 32, fixed + 31, fixed + 3):  # fits, 1 short, dense ranks exactly
        res = run(key_bits, ["t", "const", "empty"])
        y, s = labels[:, 0], preds[:, 0]
        assert same(res["overall"]["t"]["auc"], ref_auc(y, s))
        assert same(res["overall"]["t"]["gauc"], ref_gauc(y, s, groups))
        for d, dn in enumerate("abc"[:n_dom]):
            sel = domains == d
            assert same(res["domains"][dn]["t"]["auc"], ref_auc(y[sel], s[sel]))
            assert same(res["domains"][dn]["t"]["gauc"], ref_gauc(y[sel], s[sel], groups[sel]))
        assert same(res["overall"]["const"]["auc"], 0.5)
        assert res["overall"]["empty"]["impressions"] == 0
        assert math.isnan(res["overall"]["empty"]["auc"])
    # No score bits left: a constant or empty task still fits, 8 distinct scores do not.
    res = run(fixed, ["const", "empty"])
    assert same(res["overall"]["const"]["gauc"], 0.5)
    with pytest.raises(ValueError, match=r"^too many groups/distinct scores to pack"):
        run(fixed + 2, ["t"])


def test_dense_ranks_fill_the_key_exactly_without_domains_or_users(monkeypatch):
    """gauc/task_metrics have no domain field and a single user needs no user bits: with
    8 distinct scores (3 bits) and the label bit, 4 key bits are enough."""
    rng = np.random.default_rng(81)
    n = 100
    scores = ((rng.integers(0, 8, n) + 1) / 10).astype(np.float32)
    labels = (rng.random(n) < 0.4).astype(np.float32)
    one_user = np.full(n, 9)
    monkeypatch.setattr(R, "_KEY_BITS", 4)
    assert same(M.gauc(labels, scores, one_user), ref_auc(labels, scores))
    out = M.task_metrics(labels, scores, one_user)
    assert same(out["auc"], ref_auc(labels, scores)) and same(out["gauc"], out["auc"])
    monkeypatch.setattr(R, "_KEY_BITS", 3)
    with pytest.raises(ValueError, match=r"^too many groups/distinct scores to pack"):
        M.gauc(labels, scores, one_user)
