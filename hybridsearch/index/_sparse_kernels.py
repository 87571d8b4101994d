"""numba kernels of :mod:`hybridsearch.index.sparse` (the optional ``fast`` extra).

Importing this module needs numba; :mod:`hybridsearch.index.sparse` falls back to exact numpy code when the
import fails. Every kernel takes one segment as the tuple built by ``_Segment.kernel_args()``::

    (r_terms, r_ptr, r_lo, r_w, r_pptr, r_psb, r_poff,
     f_terms, f_ptr, f_loc, f_w, f_chunk, f_bmax, f_scale, row_ids)

and works on local document ids ``0..n_docs-1``; ``row_base``/``row_ids`` turn them into row ids. Segments
of at most 65,536 documents store no ``(superblock, offset)`` pairs (``r_pptr``, ``r_psb``, ``r_poff`` empty).

Search, per query and segment (exact when ``alpha == 1``), one 65,536-document partition at a time so that
the work arrays stay in the L2 cache:

1. *Sparse terms* (short posting lists) are scored term at a time into the accumulator ``acc``; ``touched``
   lists the documents they reach.
2. *Dense terms* (long lists: frequent tokens) are never traversed. Each has a quantised maximum per block of
   ``2**block_shift`` documents (``f_bmax``); their sum over the query's dense terms, weighted by integer
   query weights rounded up (``uint16`` arithmetic, vectorised), bounds the dense part of every document of a
   block.
3. A document is a candidate when its sparse partial score plus its block's bound reaches the top-k
   threshold. Candidates are buffered and evaluated by looking up their dense-term weights (256-document
   chunk offsets, then a binary search); an evaluation stops as soon as the remaining terms' block bounds
   cannot reach the threshold. The threshold is shared through the top-k heap across segments.
4. Evaluation order: during the sweep, one round per partition evaluates the best ``k`` bounds among that
   partition's candidates, so the threshold rises early. The rest is drained after the sweep (or when the
   buffer fills): entries below the threshold are dropped, a counting sort into 2,048 buckets of bound orders
   the others in O(n), and the best ``_BEST_FIRST`` are evaluated bucket by bucket; then the threshold is
   close to final and the remaining entries go in buffer (mostly document) order, which walks each dense list
   forwards. Evaluation stops at the
   first bucket below the threshold. Sorting the whole buffer per round instead (a heap selection of the best
   ``k + 32`` bounds, repeated) cost O(n) per round and made the slowest queries of long-query workloads
   several times slower than the median.
5. ``max_evaluations`` (``counts[1]``) caps the evaluations of a query in a segment; exact search passes a
   budget it never reaches. Once the budget is spent and the heap is full, nothing more can enter the top-k,
   so the query leaves the segment at once instead of buffering candidates it may not evaluate.
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit

_CHUNK_SHIFT = 8  # dense-term postings store the document id's low 8 bits; chunk offsets give the rest
_SB_SHIFT = 16  # sparse-term postings store the low 16 bits; (superblock, offset) pairs give the rest
_BEST_FIRST = 256  # candidates evaluated best bound first before the rest go in document order
_MAX_INT_TERMS = 32  # dense terms bounded per block (more are bounded by their global maximum)


# ----------------------------------------------------------------------------- small helpers
@njit(cache=True, nogil=True)
def _find_sorted(a, lo, hi, x):
    """Position of ``x`` in the sorted slice ``a[lo:hi]``, or -1."""
    end = hi
    while lo < hi:
        mid = (lo + hi) >> 1
        if a[mid] < x:
            lo = mid + 1
        else:
            hi = mid
    if lo < end and a[lo] == x:
        return lo
    return -1


@njit(cache=True, nogil=True)
def _f_weight(fi, d, f_ptr, f_loc, f_w, f_chunk, f_bmax, block_shift):
    """Weight of dense term ``fi`` in local document ``d`` (0 when absent)."""
    if f_bmax[fi, d >> block_shift] == 0:
        return np.float32(0.0)
    c = d >> _CHUNK_SHIFT
    base = f_ptr[fi]
    lo = base + np.int64(f_chunk[fi, c])
    hi = base + np.int64(f_chunk[fi, c + 1])
    if lo >= hi:
        return np.float32(0.0)
    # interpolation: a dense term's postings spread evenly over the chunk, so the guess is within a few
    # entries (one cache line) of the answer; a linear walk from it is bounded by the chunk (256 entries)
    x = np.uint8(d & 255)
    p = lo + ((np.int64(x) * (hi - lo)) >> _CHUNK_SHIFT)
    if f_loc[p] < x:
        p += 1
        while p < hi and f_loc[p] < x:
            p += 1
    else:
        while p > lo and f_loc[p - 1] >= x:
            p -= 1
    if p < hi and f_loc[p] == x:
        return f_w[p]
    return np.float32(0.0)


@njit(cache=True, nogil=True)
def _r_weight(ri, d, r_ptr, r_lo, r_w, r_pptr, r_psb, r_poff):
    """Weight of sparse term ``ri`` in local document ``d`` (0 when absent)."""
    if r_pptr.shape[0] == 0:  # one superblock: no pairs stored
        q = _find_sorted(r_lo, r_ptr[ri], r_ptr[ri + 1], d)
        return r_w[q] if q >= 0 else np.float32(0.0)
    p0 = r_pptr[ri]
    p1 = r_pptr[ri + 1]
    p = _find_sorted(r_psb, p0, p1, d >> _SB_SHIFT)
    if p < 0:
        return np.float32(0.0)
    base = r_ptr[ri]
    lo = base + r_poff[p]
    hi = base + r_poff[p + 1] if p + 1 < p1 else r_ptr[ri + 1]
    q = _find_sorted(r_lo, lo, hi, d & 0xFFFF)
    if q < 0:
        return np.float32(0.0)
    return r_w[q]


@njit(cache=True, nogil=True)
def _worse(s1, r1, s2, r2):
    """Ranking order: higher score first, then lower row id."""
    return s1 < s2 or (s1 == s2 and r1 > r2)


@njit(cache=True, nogil=True)
def _heap_push(hs, hr, n, k, s, r):
    """Offer (score, row) to a top-k min-heap whose root is the worst kept hit; returns the new size."""
    if n < k:
        i = n
        hs[i] = s
        hr[i] = r
        while i > 0:
            p = (i - 1) >> 1
            if _worse(hs[i], hr[i], hs[p], hr[p]):
                hs[i], hs[p] = hs[p], hs[i]
                hr[i], hr[p] = hr[p], hr[i]
                i = p
            else:
                break
        return n + 1
    if not _worse(hs[0], hr[0], s, r):
        return n
    hs[0] = s
    hr[0] = r
    i = 0
    while True:
        left = 2 * i + 1
        if left >= n:
            break
        c = left
        if left + 1 < n and _worse(hs[left + 1], hr[left + 1], hs[left], hr[left]):
            c = left + 1
        if _worse(hs[c], hr[c], hs[i], hr[i]):
            hs[i], hs[c] = hs[c], hs[i]
            hr[i], hr[c] = hr[c], hr[i]
            i = c
        else:
            break
    return n


@njit(cache=True, nogil=True)
def _sel_push(ub, ids, n, m, u, x):
    """Offer (bound, id) to a size-``m`` min-heap on bound (selection of the best bounds)."""
    if n < m:
        i = n
        ub[i] = u
        ids[i] = x
        while i > 0:
            p = (i - 1) >> 1
            if ub[i] < ub[p]:
                ub[i], ub[p] = ub[p], ub[i]
                ids[i], ids[p] = ids[p], ids[i]
                i = p
            else:
                break
        return n + 1
    if u <= ub[0]:
        return n
    ub[0] = u
    ids[0] = x
    i = 0
    while True:
        left = 2 * i + 1
        if left >= n:
            break
        c = left
        if left + 1 < n and ub[left + 1] < ub[left]:
            c = left + 1
        if ub[c] < ub[i]:
            ub[i], ub[c] = ub[c], ub[i]
            ids[i], ids[c] = ids[c], ids[i]
            i = c
        else:
            break
    return n


@njit(cache=True, nogil=True)
def _row_of(d, row_base, row_ids):
    if row_ids.shape[0] == 0:
        return row_base + d
    return row_ids[d]


@njit(cache=True, nogil=True)
def _is_allowed(row, allowed, use_allowed):
    if not use_allowed:
        return True
    return row < allowed.shape[0] and allowed[row]


@njit(cache=True, nogil=True)
def _prune_level(hs, n, k, margin, alpha):
    """Bounds below this cannot enter the top-k (``-inf`` while the heap is not full)."""
    if n < k:
        return -np.inf
    t = np.float64(hs[0])
    return (t - abs(t) * margin) / alpha


# ----------------------------------------------------------------------------- search
@njit(cache=True, nogil=True)
def _eval_dense(s, d, lvl, nf, f_idx, f_q, f_c, rem, f_ptr, f_loc, f_w, f_chunk, f_bmax, block_shift):
    """``s`` plus the dense terms' contributions to local document ``d``, or ``-inf`` once it cannot reach ``lvl``.

    Terms come in decreasing order of their bound; ``rem[j]`` is set to the bound of terms ``j..nf-1`` on the
    document's block, so a document stops being evaluated as soon as ``s + rem[j] < lvl``.
    """
    blk = d >> block_shift
    acc_b = np.float32(0.0)
    for j in range(nf - 1, -1, -1):
        acc_b += f_c[j] * np.float32(f_bmax[f_idx[j], blk])
        rem[j] = acc_b
    for j in range(nf):
        if s + rem[j] < lvl:
            return -np.inf
        if f_bmax[f_idx[j], blk] != 0:
            s += np.float64(f_q[j]) * np.float64(
                _f_weight(f_idx[j], d, f_ptr, f_loc, f_w, f_chunk, f_bmax, block_shift)
            )
    return s


@njit(cache=True, nogil=True)
def _round(
    buf_ub,
    buf_d,
    buf_s,
    first,
    nbuf,
    m,
    sel_ub,
    sel_id,
    hs,
    hr,
    hn,
    k,
    margin,
    alpha,
    row_base,
    row_ids,
    nf,
    f_idx,
    f_q,
    f_c,
    rem,
    f_ptr,
    f_loc,
    f_w,
    f_chunk,
    f_bmax,
    block_shift,
    counts,
):
    """Evaluate the ``m`` best bounds among the entries ``first..nbuf-1`` (one partition's candidates), which
    raises the threshold during the sweep, then drop those entries that were evaluated or fell below it;
    returns (nbuf, hn). Older entries are left to the final drain, so a round costs O(its partition)."""
    lvl = _prune_level(hs, hn, k, margin, alpha)
    ns = 0
    for i in range(first, nbuf):
        ns = _sel_push(sel_ub, sel_id, ns, m, buf_ub[i], i)
    order = np.argsort(-sel_ub[:ns])
    for o in order:
        i = sel_id[o]
        if buf_ub[i] >= lvl and counts[0] < counts[1]:
            d = buf_d[i]
            s = _eval_dense(buf_s[i], d, lvl, nf, f_idx, f_q, f_c, rem, f_ptr, f_loc, f_w, f_chunk, f_bmax, block_shift)
            counts[0] += 1
            if s > 0.0:
                hn = _heap_push(hs, hr, hn, k, np.float32(s), _row_of(d, row_base, row_ids))
                lvl = _prune_level(hs, hn, k, margin, alpha)
            buf_ub[i] = -np.inf  # evaluated
    kept = first
    for i in range(first, nbuf):
        if buf_ub[i] >= lvl and buf_ub[i] != -np.inf:
            buf_ub[kept] = buf_ub[i]
            buf_d[kept] = buf_d[i]
            buf_s[kept] = buf_s[i]
            kept += 1
    return kept, hn


@njit(cache=True, nogil=True)
def _drain_bucketed(
    buf_ub,
    buf_d,
    buf_s,
    nbuf,
    target,
    hs,
    hr,
    hn,
    k,
    margin,
    alpha,
    row_base,
    row_ids,
    nf,
    f_idx,
    f_q,
    f_c,
    rem,
    f_ptr,
    f_loc,
    f_w,
    f_chunk,
    f_bmax,
    block_shift,
    counts,
):
    """Evaluate buffered candidates best bound first until at most ``target`` remain; returns (nbuf, hn).

    One pass drops every entry below the threshold, a counting sort into 2,048 buckets of bound orders the rest
    (O(n), bucket by bucket from the highest), and evaluation stops at the first bucket whose upper edge falls
    below the threshold, which rises as hits are found. ``target = 0`` empties the buffer.
    """
    lvl = _prune_level(hs, hn, k, margin, alpha)
    hi = -np.inf
    lo = np.inf
    m = 0
    for i in range(nbuf):
        u = buf_ub[i]
        if u >= lvl:
            buf_ub[m] = u
            buf_d[m] = buf_d[i]
            buf_s[m] = buf_s[i]
            m += 1
            if u > hi:
                hi = u
            if u < lo:
                lo = u
    nbuf = m
    if nbuf <= target:
        return nbuf, hn
    nb = 2048
    width = (np.float64(hi) - np.float64(lo)) / nb
    if not width > 0.0:
        width = 1.0
    start = np.zeros(nb + 1, np.int64)
    bkt = np.empty(nbuf, np.int32)
    top = np.full(nb, -np.inf, np.float32)  # the largest bound in each bucket
    for i in range(nbuf):
        b = int((np.float64(hi) - np.float64(buf_ub[i])) / width)
        b = min(max(b, 0), nb - 1)
        bkt[i] = b
        start[b + 1] += 1
        if buf_ub[i] > top[b]:
            top[b] = buf_ub[i]
    for b in range(nb):
        start[b + 1] += start[b]
    order = np.empty(nbuf, np.int64)
    fill = start[:nb].copy()
    for i in range(nbuf):
        b = bkt[i]
        order[fill[b]] = i
        fill[b] += 1
    done_to = nbuf
    n_best = counts[0] + _BEST_FIRST
    for b in range(nb):
        if target == 0 and counts[0] >= n_best:
            # the threshold is near its final value: evaluate the rest in buffer (mostly document) order,
            # which walks every dense list forwards instead of jumping around it
            for i in range(nbuf):
                if buf_ub[i] < lvl:
                    continue
                if counts[0] >= counts[1]:
                    break
                d = buf_d[i]
                s = _eval_dense(
                    buf_s[i], d, lvl, nf, f_idx, f_q, f_c, rem, f_ptr, f_loc, f_w, f_chunk, f_bmax, block_shift
                )
                counts[0] += 1
                if s > 0.0:
                    hn = _heap_push(hs, hr, hn, k, np.float32(s), _row_of(d, row_base, row_ids))
                    lvl = _prune_level(hs, hn, k, margin, alpha)
            return 0, hn
        if nbuf - start[b] <= target or counts[0] >= counts[1]:
            done_to = start[b]
            break
        if start[b + 1] > start[b] and top[b] < lvl:
            # bucket numbers grow as bounds fall (a monotone map), so every later bucket is below it too
            done_to = nbuf
            break
        for o in range(start[b], start[b + 1]):
            i = order[o]
            if buf_ub[i] < lvl:
                buf_ub[i] = -np.inf
                continue
            d = buf_d[i]
            s = _eval_dense(buf_s[i], d, lvl, nf, f_idx, f_q, f_c, rem, f_ptr, f_loc, f_w, f_chunk, f_bmax, block_shift)
            counts[0] += 1
            if s > 0.0:
                hn = _heap_push(hs, hr, hn, k, np.float32(s), _row_of(d, row_base, row_ids))
                lvl = _prune_level(hs, hn, k, margin, alpha)
            buf_ub[i] = -np.inf
    if target == 0:
        return 0, hn
    kept = 0
    for o in range(done_to, nbuf):  # the unevaluated tail, best bucket first
        if kept == target:
            break
        i = order[o]
        if buf_ub[i] >= lvl:
            order[kept] = i
            kept += 1
    # move kept entries to the front (indices in order[:kept] may interleave: copy through temporaries)
    tu = buf_ub[order[:kept]].copy()
    td = buf_d[order[:kept]].copy()
    ts = buf_s[order[:kept]].copy()
    buf_ub[:kept] = tu
    buf_d[:kept] = td
    buf_s[:kept] = ts
    return kept, hn


@njit(cache=True, nogil=True)
def search_segment(
    q_indptr,
    q_indices,
    q_data,
    k,
    alpha,
    seg,
    n_docs,
    row_base,
    block_shift,
    allowed,
    use_allowed,
    heap_s,
    heap_r,
    heap_n,
    acc,
    touched,
    fub,
    buf_ub,
    buf_d,
    buf_s,
    n_select,
    n_round,
    max_eval,
    stats,
):
    """Search one segment for every query, updating the per-query top-k heaps in place.

    ``acc`` (float64) and ``touched`` hold 65,536 entries (``acc`` is all zeros on entry and on return), ``fub`` (uint16)
    65,536 >> block_shift, the candidate buffer ``buf_*`` at least 131,072. Candidates are mostly evaluated
    after the sweep, when the threshold is highest; one round per partition on the best buffered bounds keeps
    the threshold rising. While the heap is not yet full, a partition's ``n_select`` best-bound documents are
    evaluated at once to set a threshold. ``stats[q]`` gets the touched, evaluated and buffered counts.
    """
    (
        r_terms,
        r_ptr,
        r_lo,
        r_w,
        r_pptr,
        r_psb,
        r_poff,
        f_terms,
        f_ptr,
        f_loc,
        f_w,
        f_chunk,
        f_bmax,
        f_scale,
        row_ids,
    ) = seg
    nq = q_indptr.shape[0] - 1
    bsize = 1 << block_shift
    part = 1 << _SB_SHIFT
    n_parts = (n_docs + part - 1) >> _SB_SHIFT
    cap = buf_ub.shape[0] - part  # room for one more partition's candidates
    max_terms = 0
    for qi in range(nq):
        max_terms = max(max_terms, q_indptr[qi + 1] - q_indptr[qi])
    r_idx = np.empty(max_terms, np.int64)
    r_q = np.empty(max_terms, np.float32)
    r_cur = np.empty(max_terms, np.int64)
    f_idx = np.empty(max_terms, np.int64)
    f_q = np.empty(max_terms, np.float32)
    f_c = np.empty(max_terms, np.float32)
    f_ci = np.empty(max_terms, np.uint16)
    rem = np.empty(max_terms, np.float32)
    sel_ub = np.empty(n_select, np.float32)
    sel_id = np.empty(n_select, np.int64)
    counts = np.zeros(2, np.int64)  # evaluations of this query, and their budget
    nr_terms = r_terms.shape[0]
    nf_terms = f_terms.shape[0]
    has_pairs = r_pptr.shape[0] > 0

    for qi in range(nq):
        hs = heap_s[qi]
        hr = heap_r[qi]
        hn = heap_n[qi]
        nr = 0
        nf = 0
        for j in range(q_indptr[qi], q_indptr[qi + 1]):
            t = q_indices[j]
            w = q_data[j]
            p = _find_sorted(r_terms, 0, nr_terms, t)
            if p >= 0:
                r_idx[nr] = p
                r_q[nr] = w
                r_cur[nr] = r_pptr[p] if has_pairs else 0
                nr += 1
                continue
            p = _find_sorted(f_terms, 0, nf_terms, t)
            if p >= 0:
                # insertion by decreasing bound, so that evaluation can stop early
                c = w * f_scale[p]
                i = nf
                while i > 0 and f_c[i - 1] < c:
                    f_idx[i] = f_idx[i - 1]
                    f_q[i] = f_q[i - 1]
                    f_c[i] = f_c[i - 1]
                    i -= 1
                f_idx[i] = p
                f_q[i] = w
                f_c[i] = c
                nf += 1
        if nr + nf == 0:
            continue
        # integer weights of the dense terms: sum(f_ci) * 255 fits in uint16, and f_ci * unit >= f_c
        nfb = min(nf, _MAX_INT_TERMS)
        csum = 0.0
        for j in range(nfb):
            csum += f_c[j]
        unit = np.float32(csum / (257 - nfb) * (1 + 1e-6)) if nfb > 0 else np.float32(0.0)
        for j in range(nfb):
            f_ci[j] = np.uint16(min(math.ceil(f_c[j] / unit), 257)) if unit > 0 else np.uint16(0)
        fconst = np.float32(0.0)  # dense terms past the first _MAX_INT_TERMS: their global bound
        for j in range(nfb, nf):
            fconst += f_c[j] * np.float32(255.0)
        margin = 2e-7 * (nr + nf + 2)
        n_touched = 0
        n_buf = 0
        counts[0] = 0
        counts[1] = max_eval
        nbuf = 0

        for sb in range(n_parts):
            d0 = sb << _SB_SHIFT
            pn = min(part, n_docs - d0)
            b0 = d0 >> block_shift
            nbl = (pn + bsize - 1) >> block_shift
            # 1. sparse terms, term at a time
            nt = 0
            for j in range(nr):
                p = r_cur[j]
                ri = r_idx[j]
                base = r_ptr[ri]
                if has_pairs:
                    if p >= r_pptr[ri + 1] or r_psb[p] != sb:
                        continue
                    r_cur[j] = p + 1
                    s0 = base + r_poff[p]
                    e0 = base + r_poff[p + 1] if p + 1 < r_pptr[ri + 1] else r_ptr[ri + 1]
                else:  # a single partition: the whole list
                    s0 = base
                    e0 = r_ptr[ri + 1]
                qw = np.float64(r_q[j])
                for i in range(s0, e0):
                    x = np.int64(r_lo[i])
                    v = acc[x]
                    if v == 0.0:
                        touched[nt] = x
                        nt += 1
                    acc[x] = v + qw * np.float64(r_w[i])
            if nt == 0 and nf == 0:
                continue
            n_touched += nt

            # 2. dense terms: integer block bounds of this partition (bound = unit * fub + fconst)
            if nfb > 0:
                fb = fub[:nbl]
                row = f_bmax[f_idx[0], b0 : b0 + nbl]
                ci = f_ci[0]
                for b in range(nbl):
                    fb[b] = ci * np.uint16(row[b])
                for j in range(1, nfb):
                    row = f_bmax[f_idx[j], b0 : b0 + nbl]
                    ci = f_ci[j]
                    for b in range(nbl):
                        fb[b] += ci * np.uint16(row[b])
            elif nf > 0:
                fub[:nbl] = 0

            # 3. while the heap is not full: evaluate this partition's best-bound documents at once
            if hn < k:
                lvl = _prune_level(hs, hn, k, margin, alpha)
                ns = 0
                for i in range(nt):
                    x = touched[i]
                    u = acc[x]
                    if nf > 0:
                        u += unit * np.float32(fub[x >> block_shift]) + fconst
                    ns = _sel_push(sel_ub, sel_id, ns, n_select, u, x)
                order = np.argsort(-sel_ub[:ns])
                for o in order:
                    if sel_ub[o] < lvl:
                        break
                    x = sel_id[o]
                    r = _row_of(d0 + x, row_base, row_ids)
                    if _is_allowed(r, allowed, use_allowed):
                        s = _eval_dense(
                            acc[x],
                            d0 + x,
                            lvl,
                            nf,
                            f_idx,
                            f_q,
                            f_c,
                            rem,
                            f_ptr,
                            f_loc,
                            f_w,
                            f_chunk,
                            f_bmax,
                            block_shift,
                        )
                        counts[0] += 1
                        if s > 0.0:
                            hn = _heap_push(hs, hr, hn, k, np.float32(s), r)
                            lvl = _prune_level(hs, hn, k, margin, alpha)
                    acc[x] = -1.0  # evaluated
                if nf > 0 and hn < k:
                    ns = 0
                    for b in range(nbl):
                        ns = _sel_push(sel_ub, sel_id, ns, n_select, unit * np.float32(fub[b]) + fconst, b)
                    order = np.argsort(-sel_ub[:ns])
                    for o in order:
                        if sel_ub[o] <= 0.0 or sel_ub[o] < lvl:
                            break
                        b = sel_id[o]
                        for x in range(b * bsize, min((b + 1) * bsize, pn)):
                            if acc[x] != 0.0:
                                continue
                            r = _row_of(d0 + x, row_base, row_ids)
                            if _is_allowed(r, allowed, use_allowed):
                                s = _eval_dense(
                                    0.0,
                                    d0 + x,
                                    lvl,
                                    nf,
                                    f_idx,
                                    f_q,
                                    f_c,
                                    rem,
                                    f_ptr,
                                    f_loc,
                                    f_w,
                                    f_chunk,
                                    f_bmax,
                                    block_shift,
                                )
                                counts[0] += 1
                                if s > 0.0:
                                    hn = _heap_push(hs, hr, hn, k, np.float32(s), r)
                                    lvl = _prune_level(hs, hn, k, margin, alpha)
                            acc[x] = -1.0
                            touched[nt] = x
                            nt += 1

            # 4. buffer every other document whose bound reaches the threshold
            first = nbuf
            lvl = _prune_level(hs, hn, k, margin, alpha)
            for i in range(nt):
                x = touched[i]
                u = acc[x]
                if u <= 0.0:
                    continue
                if nf > 0:
                    u += unit * np.float32(fub[x >> block_shift]) + fconst
                if u < lvl:
                    continue
                if use_allowed and not _is_allowed(_row_of(d0 + x, row_base, row_ids), allowed, use_allowed):
                    continue
                buf_ub[nbuf] = u
                buf_d[nbuf] = d0 + x
                buf_s[nbuf] = acc[x]
                nbuf += 1
                n_buf += 1
            if nf > 0:
                # untouched documents: dense part only; 64-block runs whose maximum is too low are skipped
                if lvl <= fconst or unit == 0.0:
                    t_int = 0
                else:
                    t_int = int(min((lvl - fconst) / unit, 65535.0))
                for b1 in range(0, nbl, 64):
                    run = fub[b1 : min(b1 + 64, nbl)]
                    m = np.uint16(0)
                    for b in range(run.shape[0]):  # vectorised maximum (a slice, not an offset loop)
                        v = run[b]
                        m = v if v > m else m
                    if m < t_int:
                        continue
                    for b in range(b1, b1 + run.shape[0]):
                        if fub[b] < t_int:
                            continue
                        u = unit * np.float32(fub[b]) + fconst
                        if u <= 0.0 or u < lvl:
                            continue
                        for x in range(b * bsize, min((b + 1) * bsize, pn)):
                            if acc[x] != 0.0:
                                continue
                            if use_allowed and not _is_allowed(
                                _row_of(d0 + x, row_base, row_ids), allowed, use_allowed
                            ):
                                continue
                            buf_ub[nbuf] = u
                            buf_d[nbuf] = d0 + x
                            buf_s[nbuf] = 0.0
                            nbuf += 1
                            n_buf += 1
            for i in range(nt):
                acc[touched[i]] = 0.0
            # one round on the best buffered bounds keeps the threshold rising during the sweep
            if nbuf > cap:  # make room for the next partition
                nbuf, hn = _drain_bucketed(
                    buf_ub, buf_d, buf_s, nbuf, cap // 2, hs, hr, hn, k, margin, alpha, row_base, row_ids,
                    nf, f_idx, f_q, f_c, rem, f_ptr, f_loc, f_w, f_chunk, f_bmax, block_shift, counts,
                )  # fmt: skip
                first = 0  # the drain reordered the buffer
            if nbuf > first:
                nbuf, hn = _round(
                    buf_ub,
                    buf_d,
                    buf_s,
                    first,
                    nbuf,
                    n_round,
                    sel_ub,
                    sel_id,
                    hs,
                    hr,
                    hn,
                    k,
                    margin,
                    alpha,
                    row_base,
                    row_ids,
                    nf,
                    f_idx,
                    f_q,
                    f_c,
                    rem,
                    f_ptr,
                    f_loc,
                    f_w,
                    f_chunk,
                    f_bmax,
                    block_shift,
                    counts,
                )
            if hn >= k and counts[0] >= counts[1]:
                nbuf = 0  # the evaluation budget is spent: nothing can enter the top-k any more
                break

        # 5. the buffered candidates, best bound first, against the final threshold
        nbuf, hn = _drain_bucketed(
            buf_ub, buf_d, buf_s, nbuf, 0, hs, hr, hn, k, margin, alpha, row_base, row_ids,
            nf, f_idx, f_q, f_c, rem, f_ptr, f_loc, f_w, f_chunk, f_bmax, block_shift, counts,
        )  # fmt: skip
        heap_n[qi] = hn
        stats[qi, 0] += n_touched
        stats[qi, 1] += counts[0]
        stats[qi, 2] += n_buf


# ----------------------------------------------------------------------------- exact scores of given rows
@njit(cache=True, nogil=True)
def score_segment(q_indptr, q_indices, q_data, rows, out, seg, n_docs, row_base, block_shift):
    """``out[i, j] = query_i . row rows[i, j]`` for the rows this segment holds (others are left as they are).

    Products of the float32 weights are summed in float64 and rounded once to float32, so a score does not
    depend on summation order or on how documents are split into segments.
    """
    (
        r_terms,
        r_ptr,
        r_lo,
        r_w,
        r_pptr,
        r_psb,
        r_poff,
        f_terms,
        f_ptr,
        f_loc,
        f_w,
        f_chunk,
        f_bmax,
        f_scale,
        row_ids,
    ) = seg
    nq = q_indptr.shape[0] - 1
    m = rows.shape[1]
    if n_docs == 0:
        return
    first = row_base if row_ids.shape[0] == 0 else row_ids[0]
    last = row_base + n_docs - 1 if row_ids.shape[0] == 0 else row_ids[n_docs - 1]
    nr_terms = r_terms.shape[0]
    nf_terms = f_terms.shape[0]
    for qi in range(nq):
        for jj in range(m):
            row = rows[qi, jj]
            if row < first or row > last:
                continue
            if row_ids.shape[0] == 0:
                d = row - row_base
            else:
                d = _find_sorted(row_ids, 0, n_docs, row)
                if d < 0:
                    continue
            s = 0.0
            for j in range(q_indptr[qi], q_indptr[qi + 1]):
                t = q_indices[j]
                p = _find_sorted(r_terms, 0, nr_terms, t)
                if p >= 0:
                    s += np.float64(q_data[j]) * np.float64(_r_weight(p, d, r_ptr, r_lo, r_w, r_pptr, r_psb, r_poff))
                    continue
                p = _find_sorted(f_terms, 0, nf_terms, t)
                if p >= 0:
                    s += np.float64(q_data[j]) * np.float64(
                        _f_weight(p, d, f_ptr, f_loc, f_w, f_chunk, f_bmax, block_shift)
                    )
            out[qi, jj] = np.float32(s)


# ----------------------------------------------------------------------------- final order
@njit(cache=True, nogil=True)
def sort_hits(rows, scores):
    """Sort each query's hits in place: score descending, then row id ascending; padding (-1, -inf) last."""
    nq, k = rows.shape
    for qi in range(nq):
        r = rows[qi].copy()
        s = scores[qi].copy()
        by_row = np.argsort(r, kind="mergesort")
        neg = np.empty(k, np.float64)
        for i in range(k):
            neg[i] = -np.float64(s[by_row[i]]) if r[by_row[i]] >= 0 else np.inf
        order = np.argsort(neg, kind="mergesort")
        for i in range(k):
            j = by_row[order[i]]
            rows[qi, i] = r[j]
            scores[qi, i] = s[j] if r[j] >= 0 else -np.inf
