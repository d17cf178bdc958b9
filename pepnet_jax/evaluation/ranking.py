"""The ranking kernel behind AUC and GAUC: one int64 key per row, one sort, one pass.

Each row becomes ``(group << s) | (score_code << 1) | label``; after ``np.sort`` one pass
over the sorted keys yields, per group, the positives, negatives and the Mann-Whitney
numerator with ties counted 0.5. The group is nothing (AUC), the domain, the user (GAUC) or
(domain, user), so no Python loop runs over groups. ``metrics`` is the public face.
"""

from __future__ import annotations

import numpy as np

_NAN = float("nan")
_KEY_BITS = 62  # keep packed keys positive in int64


# --------------------------------------------------------------------------
# Packing and the single sorted-pass kernel
# --------------------------------------------------------------------------

def _bits(max_value: int) -> int:
    return int(max_value).bit_length()


def score_codes(scores: np.ndarray) -> tuple[np.ndarray, int]:
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


def block_starts(sorted_keys: np.ndarray) -> np.ndarray:
    """Start indices of runs of equal values in a sorted array."""
    change = np.empty(sorted_keys.shape[0], dtype=bool)
    change[:1] = True
    np.not_equal(sorted_keys[1:], sorted_keys[:-1], out=change[1:])
    return np.flatnonzero(change)


def pair_counts(v: np.ndarray, shift: int | None):
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
        gstart = block_starts(gk)
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
            bs = block_starts(blk[rows])
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


def auc_from_counts(p, q, num2) -> np.ndarray:
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
    a = auc_from_counts(p[ok], q[ok], num2[ok])
    bucket = (np.zeros(imp.shape[0], np.int64) if bucket_shift is None
              else gcode[ok] >> bucket_shift)
    den = np.bincount(bucket, weights=imp, minlength=n_buckets)
    numer = np.bincount(bucket, weights=imp * a, minlength=n_buckets)
    with np.errstate(invalid="ignore", divide="ignore"):
        res = numer / den
    res[den <= 0] = np.nan
    return res


def group_index(groups) -> tuple[np.ndarray, int]:
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


def ranking(y, s, gi, n_groups, d=None, n_dom=1):
    """AUC and GAUC overall and, if ``d`` is given, per domain (4 int64 sorts).

    Memory: the packed keys and one sorted key array at a time (each key is built and
    sorted in place), about 16 bytes a row beyond the inputs, plus pair_counts' own."""
    bits_g = _bits(max(n_groups - 1, 0))
    bits_d = _bits(max(n_dom - 1, 0)) if d is not None else 0
    codes, bits_c = score_codes(s)  # a fresh array: shifted in place below
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
        return pair_counts(key, shift)

    _, p, q, num2 = counts()
    auc_all = float(auc_from_counts(p, q, num2)[0]) if p.shape[0] else _NAN
    gauc_all = float(_gauc_by_bucket(*counts(gi, sh), None, 1)[0])
    out = {"auc": auc_all, "gauc": gauc_all}
    if d is None:
        return out, None

    d = d.astype(np.int64, copy=False)
    dom_auc = np.full(n_dom, np.nan)
    gcode, p, q, num2 = counts(d, sh)
    dom_auc[gcode] = auc_from_counts(p, q, num2)
    dg = d << bits_g
    dg |= gi
    dom_gauc = _gauc_by_bucket(*counts(dg, sh), bits_g, n_dom)
    return out, {"auc": dom_auc, "gauc": dom_gauc}
