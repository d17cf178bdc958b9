"""Evaluation metrics for multi-task, multi-domain CTR-style models (numpy only).

AUC, GAUC (grouped by user) and logloss are what the paper and users compare,
so they are computed exactly (ties count 0.5) over the whole evaluation set
rather than estimated batch-wise.

Speed comes from packing everything a ranking metric needs into one int64
per row, ``(group << s) | (score_code << 1) | label``, and sorting those
values (``np.sort`` on int64 is several times faster than ``argsort`` plus
gathers).  One pass over the sorted values then yields, per group, the
positives, negatives and the Mann-Whitney numerator, with ties counted 0.5.
The "group" is nothing (AUC), the domain (per-domain AUC), the user (GAUC)
or (domain, user) (per-domain GAUC), so there is no Python loop over groups.

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

__all__ = ["auc", "gauc", "logloss", "task_metrics", "evaluate", "register_metric",
           "resolve_metrics", "average_precision"]

_NAN = float("nan")
_KEY_BITS = 62  # keep packed keys positive in int64


# --------------------------------------------------------------------------
# Packing and the single sorted-pass kernel
# --------------------------------------------------------------------------

def _bits(max_value: int) -> int:
    return int(max_value).bit_length()


def _score_codes(scores: np.ndarray) -> tuple[np.ndarray, int]:
    """Order-preserving non-negative int64 codes for scores, and their bit width.

    float16/float32 (and float64 that is exactly float32, the usual model
    output) map through their IEEE bits in O(n), no sort; anything else gets
    a dense rank.  Equal scores get equal codes, so ties stay ties.
    """
    s = np.asarray(scores).reshape(-1)
    f32 = None
    if s.dtype in (np.float16, np.float32):
        f32 = s.astype(np.float32)
    elif s.dtype == np.float64:
        cand = s.astype(np.float32)
        if np.array_equal(cand, s, equal_nan=True):
            f32 = cand
    if f32 is not None:
        f32 = f32 + np.float32(0.0)  # -0.0 -> +0.0 so they tie
        code = f32.view(np.uint32).astype(np.int64)
        del f32
        neg = code >= 1 << 31  # in place: 10^8 scores must not cost four int64 copies
        np.subtract((1 << 32) - 1, code, out=code, where=neg)
        np.add(code, 1 << 31, out=code, where=~neg)
        return code, 32
    if s.shape[0] == 0:
        return np.zeros(0, dtype=np.int64), 0
    inv = np.unique(s.astype(np.float64), return_inverse=True)[1].reshape(-1)
    return inv.astype(np.int64), _bits(inv.max())


def _shrink(codes: np.ndarray, bits: int, budget: int) -> tuple[np.ndarray, int]:
    """Replace codes by dense ranks when they do not fit in ``budget`` bits."""
    if bits <= budget:
        return codes, bits
    inv = np.unique(codes, return_inverse=True)[1].reshape(-1).astype(np.int64)
    bits = _bits(inv.max()) if inv.shape[0] else 0
    if bits > budget:
        raise ValueError("too many groups/distinct scores to pack into int64 keys")
    return inv, bits


def _block_starts(sorted_keys: np.ndarray) -> np.ndarray:
    """Start indices of runs of equal values in a sorted array."""
    change = np.empty(sorted_keys.shape[0], dtype=bool)
    change[:1] = True
    np.not_equal(sorted_keys[1:], sorted_keys[:-1], out=change[1:])
    return np.flatnonzero(change)


def _pair_counts(v: np.ndarray, shift: int | None):
    """Per-group (code, positives, negatives, 2 x Mann-Whitney numerator).

    ``v`` is sorted and packed as ``(group << shift) | (score << 1) | label``;
    ``shift=None`` means a single group.  Because the label is the lowest
    bit, tied negatives sort before tied positives, so the k-th positive (at
    sorted index i) has exactly ``i - k`` negatives at or below its score.
    Summing that per group gives the pairs with pos >= neg (S_ge); tied pairs
    T are counted only on the rows that have a tie.  2 x numerator =
    2 S_ge - T (ties count 0.5), all in exact integers.
    """
    n = v.shape[0]
    if n == 0:
        e = np.zeros(0, dtype=np.int64)
        return e, e, e, e
    pidx = np.flatnonzero(v & 1)
    n_pos = pidx.shape[0]
    if shift is None:
        gstart = np.zeros(1, dtype=np.int64)
        gcode = np.zeros(1, dtype=np.int64)
    else:
        gk = v >> shift
        gstart = _block_starts(gk)
        gcode = gk[gstart]
    gend = np.append(gstart[1:], n)
    kp = np.searchsorted(pidx, gstart)  # positives before each group
    kp_end = np.append(kp[1:], n_pos)
    p = kp_end - kp
    q = (gend - gstart) - p
    ca = np.zeros(n_pos + 1, dtype=np.int64)
    np.cumsum(pidx - np.arange(n_pos), out=ca[1:])
    # Subtract the negatives of earlier groups (gstart - kp of them) per positive.
    s_ge = ca[kp_end] - ca[kp] - p * (gstart - kp)

    ties = np.zeros(gstart.shape[0], dtype=np.int64)
    blk = v >> 1
    same = blk[1:] == blk[:-1]  # row i ties with row i + 1
    eq = np.flatnonzero(same)
    if eq.shape[0]:
        if eq.shape[0] > n // 4:  # tie-heavy: scan everything, no gathers
            rows = None
            bs = np.flatnonzero(np.concatenate(([True], ~same)))
            lab = v & 1
        else:  # few ties: look only at rows inside a tie block
            mark = np.zeros(n, dtype=bool)
            mark[eq] = True
            mark[eq + 1] = True
            rows = np.flatnonzero(mark)
            bs = _block_starts(blk[rows])
            lab = v[rows] & 1
        be = np.append(bs[1:], lab.shape[0])
        cl = np.zeros(lab.shape[0] + 1, dtype=np.int64)
        np.cumsum(lab, out=cl[1:])
        pos_b = cl[be] - cl[bs]
        tie = pos_b * ((be - bs) - pos_b)
        if shift is None:
            ties[0] = tie.sum()
        else:
            hit = tie > 0
            first_row = bs[hit] if rows is None else rows[bs[hit]]
            gi = np.searchsorted(gstart, first_row, side="right") - 1
            # float64 sums are exact below 2**53 tied pairs per group.
            ties = np.rint(np.bincount(gi, weights=tie[hit],
                                       minlength=gstart.shape[0])).astype(np.int64)
    return gcode, p, q, 2 * s_ge - ties


def _auc_from_counts(p, q, num2) -> np.ndarray:
    """AUC per group; nan where a group lacks one class."""
    p = np.asarray(p, dtype=np.float64)
    q = np.asarray(q, dtype=np.float64)
    with np.errstate(invalid="ignore", divide="ignore"):
        out = np.asarray(num2, dtype=np.float64) / (2.0 * p * q)
    out[(p <= 0) | (q <= 0)] = np.nan
    return out


def _gauc_by_bucket(gcode, p, q, num2, bucket_shift, n_buckets):
    """Impression-weighted mean AUC of groups, aggregated per bucket.

    Bucket of a group is ``gcode >> bucket_shift`` (the domain for per-domain
    GAUC); ``bucket_shift=None`` puts every group in bucket 0 (overall).  A
    shift of 0 is a real shift: with a single user the group code is the
    domain itself.  Single-class groups are skipped.
    """
    ok = (p > 0) & (q > 0)
    imp = (p + q)[ok].astype(np.float64)
    a = _auc_from_counts(p[ok], q[ok], num2[ok])
    bucket = (np.zeros(imp.shape[0], np.int64) if bucket_shift is None
              else gcode[ok] >> bucket_shift)
    den = np.bincount(bucket, weights=imp, minlength=n_buckets)
    numer = np.bincount(bucket, weights=imp * a, minlength=n_buckets)
    with np.errstate(invalid="ignore", divide="ignore"):
        res = numer / den
    res[den <= 0] = np.nan
    return res


def _group_index(groups) -> tuple[np.ndarray, int]:
    """Dense 0..G-1 index of group ids (sorted id order), and G.

    Compact integer ids (the usual user-id vocabulary) skip the sort.
    """
    groups = np.asarray(groups).reshape(-1)
    n = groups.shape[0]
    if n == 0:
        return np.zeros(0, dtype=np.int64), 0
    if np.issubdtype(groups.dtype, np.integer):
        lo, hi = int(groups.min()), int(groups.max())
        if hi - lo <= 4 * n + 1024:
            off = (groups - groups.min()).astype(np.int64)  # in native dtype: no overflow
            present = np.zeros(hi - lo + 1, dtype=bool)
            present[off] = True
            remap = np.cumsum(present, dtype=np.int64) - 1
            return remap[off], int(remap[-1]) + 1
    uniq, inv = np.unique(groups, return_inverse=True)
    return inv.reshape(-1).astype(np.int64), int(uniq.shape[0])


def _ranking(y, s, gi, n_groups, d=None, n_dom=1):
    """AUC and GAUC overall and, if ``d`` is given, per domain (4 int64 sorts).

    Memory: the packed keys and one sorted key array at a time (each key is built and
    sorted in place), about 16 bytes a row beyond the inputs, plus _pair_counts' own."""
    bits_g = _bits(max(n_groups - 1, 0))
    bits_d = _bits(max(n_dom - 1, 0)) if d is not None else 0
    codes, bits_c = _score_codes(s)  # a fresh array: shifted in place below
    base, bits_c = _shrink(codes, bits_c, _KEY_BITS - 1 - bits_g - bits_d)
    del codes
    sh = bits_c + 1
    base <<= 1
    base |= y > 0.5

    def counts(high=None, shift=None):
        if high is None:
            key = base.copy()
        else:
            key = np.left_shift(high, sh, dtype=np.int64)
            key |= base
        key.sort()
        return _pair_counts(key, shift)

    _, p, q, num2 = counts()
    auc_all = float(_auc_from_counts(p, q, num2)[0]) if p.shape[0] else _NAN
    gauc_all = float(_gauc_by_bucket(*counts(gi, sh), None, 1)[0])
    out = {"auc": auc_all, "gauc": gauc_all}
    if d is None:
        return out, None

    d = d.astype(np.int64, copy=False)
    dom_auc = np.full(n_dom, np.nan)
    gcode, p, q, num2 = counts(d, sh)
    dom_auc[gcode] = _auc_from_counts(p, q, num2)
    dg = d << bits_g
    dg |= gi
    dom_gauc = _gauc_by_bucket(*counts(dg, sh), bits_g, n_dom)
    return out, {"auc": dom_auc, "gauc": dom_gauc}


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
        codes, _ = _score_codes(s)
        _, p, q, num2 = _pair_counts(np.sort((codes << 1) | (y > 0.5)), None)
        return float(_auc_from_counts(p, q, num2)[0]) if p.shape[0] else _NAN
    w = np.asarray(weights, dtype=np.float64).reshape(-1)
    _check_len(y, w)
    if (w < 0).any():
        raise ValueError("weights must be non-negative")
    _check_finite(s[w > 0], task)
    if y.shape[0] == 0:
        return _NAN
    order = np.argsort(s, kind="stable")
    s_sorted, w_sorted = s[order], w[order]
    starts = _block_starts(s_sorted)
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
    gi, n_groups = _group_index(groups)
    _check_len(y, s, gi)
    _check_finite(s, task)
    return _ranking(y, s, gi, n_groups)[0]["gauc"]


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
    gi, n_groups = _group_index(groups)
    _check_len(y, s, gi)
    valid = _valid_rows(y, mask)
    y, s, gi = y[valid], s[valid], gi[valid]
    _check_finite(s, task)
    rk, _ = _ranking(y, s, gi, n_groups)
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
                "pepnet_jax.metrics.register_metric(name, fn), named here as 'module:name'")
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
    gi_all, n_groups = _group_index(groups)
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
        rk, dom_rk = _ranking(y, s, gi, n_groups, d, n_dom)
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
