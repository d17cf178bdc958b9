"""Evaluation metrics for multi-task, multi-domain CTR-style models (numpy only).

AUC, GAUC (grouped by user) and logloss are what the paper and users compare,
so they are computed exactly (ties count 0.5) over the whole evaluation set
rather than estimated batch-wise.

Speed comes from packing everything a ranking metric needs into one int64
per row and sorting those values (``np.sort`` on int64 is several times faster
than ``argsort`` plus gathers); the kernel is ``ranking.py``.

Labels are 0/1: for ranking metrics and counts a label is positive when it is
> 0.5; logloss uses the label value itself (binary cross-entropy).

More metrics: ``register_metric(name, fn)`` with ``fn(labels, scores) -> float``
(numpy [n] each, the rows that count for one task, overall or in one domain),
then ``config.train.metrics=(name,)``, or ``('my_pkg.my_metrics:name',)``, which
imports ``my_pkg.my_metrics`` first (a module that registers ``name``). Each
extra metric lands beside auc/gauc/logloss in every task x domain cell, in the
mean, in metrics.jsonl and TensorBoard, and can be ``config.train.select_metric``
(``mean_<name>``). ``pr_auc`` (average precision) is built in.
"""

from __future__ import annotations

import dataclasses
import importlib
import math
from typing import Any, Callable, Sequence

import numpy as np

from pepnet_jax.evaluation.ranking import (auc_from_counts, block_starts, group_index,
                                           pair_counts, ranking, score_codes)

__all__ = ["auc", "gauc", "logloss", "task_metrics", "evaluate", "register_metric",
           "resolve_metrics", "average_precision"]

_NAN = float("nan")


# --------------------------------------------------------------------------
# Public metrics
# --------------------------------------------------------------------------

def _as_scores(x) -> np.ndarray:
    x = np.asarray(x).reshape(-1)
    if not np.issubdtype(x.dtype, np.floating):
        x = x.astype(np.float64)
    return x


def _as_labels(x) -> np.ndarray:
    return np.asarray(x, dtype=np.float64).reshape(-1)


def _check_finite(s: np.ndarray, task=None):
    """Non-finite scores would rank as extremes (AUC) or vanish from means
    (logloss), so a diverged model would still report plausible numbers."""
    n_bad = s.shape[0] - int(np.count_nonzero(np.isfinite(s)))
    if n_bad:
        what = f"predictions for task {task!r}" if task is not None else "scores"
        raise ValueError(f"{what} hold {n_bad} non-finite value(s) (NaN/inf) among "
                         f"{s.shape[0]} counted rows; the model output is broken "
                         "(diverged training?), so no metric is computed")


def _check_len(*arrays):
    sizes = [a.shape[0] for a in arrays]
    if len(set(sizes)) > 1:
        raise ValueError(f"length mismatch: {sizes}")


def auc(labels, scores, weights=None, *, task=None) -> float:
    """ROC AUC (Mann-Whitney, ties count 0.5); nan unless both classes present.

    With ``weights`` each row counts with its sample weight; zero-weight rows
    have no effect, including on the "both classes present" check.  Raises
    ValueError (naming ``task`` if given) on NaN/inf scores of counted rows.
    """
    y = _as_labels(labels)
    s = _as_scores(scores)
    _check_len(y, s)
    if weights is None:
        _check_finite(s, task)
        codes, _ = score_codes(s)
        _, p, q, num2 = pair_counts(np.sort((codes << 1) | (y > 0.5)), None)
        return float(auc_from_counts(p, q, num2)[0]) if p.shape[0] else _NAN
    w = np.asarray(weights, dtype=np.float64).reshape(-1)
    _check_len(y, w)
    if (w < 0).any():
        raise ValueError("weights must be non-negative")
    _check_finite(s[w > 0], task)
    if y.shape[0] == 0:
        return _NAN
    order = np.argsort(s, kind="stable")
    s_sorted, w_sorted = s[order], w[order]
    starts = block_starts(s_sorted)
    pos_b = np.add.reduceat(np.where(y[order] > 0.5, w_sorted, 0.0), starts)
    neg_b = np.add.reduceat(w_sorted, starts) - pos_b
    n_pos, n_neg = pos_b.sum(), neg_b.sum()
    if not (n_pos > 0 and n_neg > 0):
        return _NAN
    below = np.cumsum(neg_b) - neg_b
    return float(np.dot(pos_b, below + 0.5 * neg_b) / (n_pos * n_neg))


def gauc(labels, scores, groups, *, task=None) -> float:
    """Impression-weighted mean of per-group AUC over groups with both classes.

    Users with only clicks or only non-clicks carry no ranking signal, so
    they are skipped; nan if no group qualifies.  NaN/inf scores raise.
    """
    y = _as_labels(labels)
    s = _as_scores(scores)
    gi, n_groups = group_index(groups)
    _check_len(y, s, gi)
    _check_finite(s, task)
    return ranking(y, s, gi, n_groups)[0]["gauc"]


def _row_loss(y: np.ndarray, s: np.ndarray, eps: float) -> np.ndarray:
    """Per-row BCE; hard 0/1 labels take one log per row instead of two."""
    p = np.clip(s.astype(np.float64), eps, 1.0 - eps)
    pos = y == 1.0
    if np.all(pos | (y == 0.0)):
        return -np.log(np.where(pos, p, 1.0 - p))
    return -(y * np.log(p) + (1.0 - y) * np.log1p(-p))


def logloss(labels, scores, eps: float = 1e-7, *, task=None) -> float:
    """Mean binary cross-entropy with scores clipped to [eps, 1 - eps]; nan if
    empty.  NaN/inf scores raise (clipping would hide inf)."""
    y = _as_labels(labels)
    s = _as_scores(scores)
    _check_len(y, s)
    _check_finite(s, task)
    return float(_row_loss(y, s, eps).mean()) if y.shape[0] else _NAN


def _valid_rows(y: np.ndarray, mask) -> np.ndarray:
    valid = np.isfinite(y)
    if mask is not None:
        m = np.asarray(mask).reshape(-1)
        _check_len(y, m)
        valid &= m.astype(bool)
    return valid


def _pack(auc_v, gauc_v, loss_sum, positives, impressions, pred_sum) -> dict:
    n = int(impressions)
    return {
        "auc": float(auc_v),
        "gauc": float(gauc_v),
        "logloss": float(loss_sum) / n if n else _NAN,
        "positives": int(positives),
        "impressions": n,
        "pos_rate": int(positives) / n if n else _NAN,
        "mean_pred": float(pred_sum) / n if n else _NAN,
    }


def task_metrics(labels, scores, groups, mask=None, *, task=None) -> dict:
    """All metrics of one task on the rows where ``mask`` is set.

    Rows with a NaN label are dropped too, since a missing label must never
    count as a negative.  NaN/inf scores on the remaining rows raise a
    ValueError naming ``task``.
    """
    y = _as_labels(labels)
    s = _as_scores(scores)
    gi, n_groups = group_index(groups)
    _check_len(y, s, gi)
    valid = _valid_rows(y, mask)
    y, s, gi = y[valid], s[valid], gi[valid]
    _check_finite(s, task)
    rk, _ = ranking(y, s, gi, n_groups)
    return _pack(rk["auc"], rk["gauc"], _row_loss(y, s, 1e-7).sum(),
                 np.count_nonzero(y > 0.5), y.shape[0], s.astype(np.float64).sum())


def _nanmean(values: Sequence[float]) -> float:
    vals = [v for v in values if v is not None and not math.isnan(v)]
    return float(np.mean(vals)) if vals else _NAN


# --------------------------------------------------------------------------
# Extra metrics: a registry that metric modules fill themselves
# --------------------------------------------------------------------------

@dataclasses.dataclass(frozen=True)
class Metric:
    name: str
    fn: Callable[[np.ndarray, np.ndarray], float]
    higher_is_better: bool = True


_METRICS: dict[str, Metric] = {}
STANDARD = ("auc", "gauc", "logloss")


def register_metric(name: str, fn: Callable[[np.ndarray, np.ndarray], float],
                    higher_is_better: bool = True) -> Metric:
    """Registers ``fn(labels, scores) -> float`` under ``name`` (see the module docstring).
    ``higher_is_better`` tells model selection which way is better."""
    if not isinstance(name, str) or not name.isidentifier():
        raise ValueError(f"metric name {name!r} must be an identifier (it becomes mean_<name>)")
    if name in STANDARD or name in ("positives", "impressions", "pos_rate", "mean_pred"):
        raise ValueError(f"metric name {name!r} is taken by a built-in result field")
    _METRICS[name] = Metric(name, fn, bool(higher_is_better))
    return _METRICS[name]


def resolve_metrics(names) -> tuple[Metric, ...]:
    """The registered metrics ``config.train.metrics`` names ('name' or 'module:name')."""
    if isinstance(names, str):  # --config.train.metrics=pr_auc,my_pkg.m:ndcg
        names = [n.strip() for n in names.split(",") if n.strip()]
    out = []
    for i, entry in enumerate(tuple(names or ())):
        module, _, name = str(entry).rpartition(":")
        if module:
            importlib.import_module(module)
        if name not in _METRICS:
            raise ValueError(
                f"config.train.metrics[{i}]={entry!r} is not a registered metric (registered: "
                f"{sorted(_METRICS)}); a module registers one with "
                "pepnet_jax.evaluation.metrics.register_metric(name, fn), named here as 'module:name'")
        out.append(_METRICS[name])
    return tuple(out)


def higher_is_better(name: str) -> bool | None:
    """For model selection: a registered metric's direction, None when not registered."""
    m = _METRICS.get(name)
    return None if m is None else m.higher_is_better


def average_precision(labels, scores) -> float:
    """Area under the precision-recall curve as a step sum, sum_k (R_k - R_k-1) P_k over the
    distinct score thresholds (tied scores enter together); nan without positives. For rare
    tasks it moves with the top of the ranking, which AUC hardly sees."""
    y = _as_labels(labels) > 0.5
    s = _as_scores(scores).astype(np.float64)
    n_pos = int(np.count_nonzero(y))
    if not n_pos:
        return _NAN
    order = np.argsort(-s, kind="stable")
    s, y = s[order], y[order]
    last = np.r_[np.flatnonzero(np.diff(s)), s.shape[0] - 1]  # last row of each threshold
    tp = np.cumsum(y)[last]
    precision = tp / (last + 1)
    recall_step = np.diff(np.r_[0, tp]) / n_pos
    return float(np.sum(recall_step * precision))


register_metric("pr_auc", average_precision)


def evaluate(preds, labels, mask, domains, groups, task_names,
             domain_names, extra: Sequence[Metric] = ()) -> dict[str, Any]:
    """Per-task metrics overall and per domain, plus the mean over tasks.

    preds, labels, mask: [N, T] (mask None = all rows count; labels float
    with NaN, or int with -1, where missing); domains: [N] index into
    domain_names; groups: [N] user ids.  Memory beyond the inputs: one task's
    rows at a time, about 50 bytes a row while its keys are sorted.  A row counts for a task
    when its mask is set and its label is finite.  Per-domain numbers equal
    task_metrics on the domain's slice.  A NaN/inf prediction on a counted
    row raises a ValueError naming the task (predictions of rows that do not
    count are not looked at).  ``extra``: registered metrics (resolve_metrics)
    computed per task overall and per domain, beside the standard ones.
    """
    preds = np.asarray(preds)
    if not np.issubdtype(preds.dtype, np.floating):
        preds = preds.astype(np.float64)
    labels = np.asarray(labels)  # float (NaN = missing) or int (-1 = missing): per task below
    n_tasks, n_dom = len(task_names), len(domain_names)
    if preds.ndim == 1 and n_tasks == 1:
        preds, labels = preds[:, None], labels[:, None]
    if preds.ndim != 2 or preds.shape != labels.shape or preds.shape[1] != n_tasks:
        raise ValueError(f"preds {preds.shape} / labels {labels.shape} must be [N, {n_tasks}]")
    n = preds.shape[0]
    mask = None if mask is None else np.asarray(mask).reshape(n, n_tasks).astype(bool)
    domains = np.asarray(domains).reshape(-1)
    if not np.issubdtype(domains.dtype, np.integer):
        domains = domains.astype(np.int64)
    gi_all, n_groups = group_index(groups)
    _check_len(preds, domains, gi_all)
    if n and (domains.min() < 0 or domains.max() >= n_dom):
        raise ValueError(f"domain index outside [0, {n_dom})")

    overall: dict[str, dict] = {}
    per_domain: dict[str, dict] = {str(dn): {} for dn in domain_names}
    for t, task in enumerate(task_names):
        y = labels[:, t]
        y = (np.where(y < 0, np.nan, y) if np.issubdtype(y.dtype, np.integer)
             else y).astype(np.float64)
        valid = _valid_rows(y, None if mask is None else mask[:, t])
        if valid.all():  # the usual case: views, no copies of 10^8 rows
            s, gi, d = preds[:, t], gi_all, domains
        else:
            y, s, gi, d = y[valid], preds[:, t][valid], gi_all[valid], domains[valid]
        del valid
        _check_finite(s, task)
        rk, dom_rk = ranking(y, s, gi, n_groups, d, n_dom)
        loss = _row_loss(y, s, 1e-7)
        pos = y > 0.5
        overall[task] = _pack(rk["auc"], rk["gauc"], loss.sum(), np.count_nonzero(pos),
                              y.shape[0], s.sum(dtype=np.float64))
        imp = np.bincount(d, minlength=n_dom)
        npos = np.bincount(d[pos], minlength=n_dom)
        loss_d = np.bincount(d, weights=loss, minlength=n_dom)
        del loss
        pred_d = np.bincount(d, weights=s, minlength=n_dom)
        for k, dn in enumerate(domain_names):
            per_domain[str(dn)][task] = _pack(dom_rk["auc"][k], dom_rk["gauc"][k], loss_d[k],
                                              npos[k], imp[k], pred_d[k])
        for m in extra:
            overall[task][m.name] = float(m.fn(y, s))
            for k, dn in enumerate(domain_names):
                in_d = d == k
                per_domain[str(dn)][task][m.name] = (float(m.fn(y[in_d], s[in_d]))
                                                      if in_d.any() else _NAN)

    names = STANDARD + tuple(m.name for m in extra)
    mean = {m: _nanmean([overall[t][m] for t in task_names]) for m in names}
    return {"overall": overall, "domains": per_domain, "mean": mean}
