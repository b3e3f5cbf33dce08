"""Batched top-N by inner product, with bounded memory: recommend, similar_*, metrics."""

from concurrent.futures import ThreadPoolExecutor

import numba
import numpy as np
import scipy.sparse as sp

from .backend import array_module, backend_of, to_host
from .kernels import cpu
from .threads import blas_on_one_thread
from .validation import check_ids

# Scores are computed one tile (a batch of queries x a block of targets) at a time and
# merged into each query's running top list while the tile is still in cache: writing
# all batch x n_targets scores to memory and partitioning them cost more than the product.
_TILE = 1 << 17  # scores per tile and thread
_BATCH = 256  # queries per batch (larger batches read the targets fewer times)
_PRUNE_QUERIES = 1024  # from this many queries, sorting the targets by norm pays


def row_norms(factors):
    """The length of every row (NumPy or CuPy, in the rows' dtype)."""
    return array_module(factors).sqrt((factors * factors).sum(axis=1))


def normalized_rows(factors):
    """Rows scaled to unit length (zero rows stay zero), for cosine similarity."""
    norms = row_norms(factors)[:, None]
    return factors / array_module(factors).maximum(norms, np.finfo(factors.dtype).tiny)


def top_lists(queries, targets, depth, mask=None, removed=None, batch=None, progress=None):
    """The `depth` best targets of each query by score queries[r] . targets[j].

    mask: CSR with one row per query whose stored columns are never ranked for that row;
    removed: sorted target ids never ranked for any row. Returns (scores, ids) of shape
    (rows, depth), best first; empty slots hold -inf and id -1. Equal scores rank the
    lower id first. Batches of `batch` queries (default 256; 512 when pruning, below) run
    on numba's thread count, each with single-threaded BLAS (OpenBLAS workers spinning
    beside the kernels cost more).
    CuPy queries and targets are ranked on their device (same results, returned in NumPy).
    progress: called with the number of queries of each finished batch (CPU).

    Many queries at once (an evaluation) rank the targets in order of decreasing norm and
    stop each query once no target left can reach its list: q . y <= |q| |y| bounds every
    score still to come (exact; on Gowalla a query needs about a fifth of the items).
    """
    n_queries = queries.shape[0]
    dtype = np.result_type(queries.dtype, targets.dtype)
    queries, targets = queries.astype(dtype, copy=False), targets.astype(dtype, copy=False)
    backend = backend_of(queries)
    if backend.on_device:
        xp = backend.xp
        best, ids = backend.kernels.top_lists(
            queries, targets, depth,
            None if mask is None else xp.asarray(mask.indptr),
            None if mask is None else xp.asarray(mask.indices),
            None if removed is None else xp.asarray(removed), batch)
        if progress is not None:
            progress(n_queries)
        return to_host(best), to_host(ids)
    prune = n_queries >= _PRUNE_QUERIES
    # pruned batches shrink as their queries finish: start them larger
    batch = batch or (2 * _BATCH if prune else _BATCH)
    best = np.full((n_queries, depth), -np.inf, dtype=dtype)
    ids = np.full((n_queries, depth), -1, dtype=np.int64)
    order = None
    if prune:  # targets by decreasing norm; masks and removed ids as positions in it
        target_norms = np.sqrt(np.einsum("ij,ij->i", targets, targets, dtype=np.float64))
        order = np.argsort(-target_norms, kind="stable")
        target_norms, targets = target_norms[order], targets[order]
        position = np.empty(order.size, dtype=np.int64)
        position[order] = np.arange(order.size)
        if mask is not None:
            mask = sp.csr_matrix((np.ones(mask.nnz), position[mask.indices], mask.indptr),
                                 shape=mask.shape)
            mask.sort_indices()
        if removed is not None:
            removed = np.sort(position[removed])
        query_norms = np.sqrt(np.einsum("ij,ij->i", queries, queries, dtype=np.float64))
    target_ids = np.arange(targets.shape[0], dtype=np.int64) if order is None else order

    def rank(start, stop):
        rows = np.arange(start, stop)  # the queries of this batch still ranking
        if mask is None:
            next_mask = end_mask = np.zeros(rows.size, np.int64)
            positions = np.empty(0, np.int64)
        else:
            part = mask[start:stop]
            next_mask, end_mask = (part.indptr[:-1].astype(np.int64),
                                   part.indptr[1:].astype(np.int64))
            positions = part.indices.astype(np.int64)
        top, found = best[start:stop], ids[start:stop]
        local = np.arange(rows.size)  # rows' places in this batch's lists
        tile, offset = max(1, _TILE // max(rows.size, 1)), 0
        while offset < targets.shape[0]:
            block = slice(offset, offset + tile)
            scores = queries[rows] @ targets[block].T
            if removed is not None:
                inside = removed[(removed >= offset) & (removed < offset + scores.shape[1])]
                scores[:, inside - offset] = -np.inf
            lists, listed = top[local], found[local]
            cpu.merge_top(scores, offset, target_ids[block], next_mask, end_mask, positions,
                          lists, listed)
            top[local], found[local] = lists, listed
            if prune and offset + tile < targets.shape[0]:
                # rows whose last entry beats every score still to come are done (a
                # margin covers the rounding of the scores in their dtype)
                bound = query_norms[rows] * target_norms[offset + tile] * (1 + 1e-5) + 1e-30
                going = ~(lists[:, -1] > bound)
                if not going.all():
                    rows, local = rows[going], local[going]
                    next_mask, end_mask = next_mask[going], end_mask[going]
                    if rows.size == 0:
                        break
            offset += tile
            tile = max(1, _TILE // rows.size)

    for_each_batch(n_queries, batch, rank, progress)
    return best, ids


def score_tiles(queries, targets):
    """(offset, scores) tiles: queries . targets[offset:offset + tile] for every tile.

    A tile holds about _TILE scores, so it is still in cache when its consumer reads it.
    """
    tile = max(1, _TILE // max(queries.shape[0], 1))
    for offset in range(0, targets.shape[0], tile):
        yield offset, queries @ targets[offset:offset + tile].T


def for_each_batch(n_queries, batch, work, progress=None):
    """work(start, stop) for consecutive batches of `batch` queries, on numba's thread
    count. Several batches run on a pool of threads, with BLAS on one thread meanwhile
    (OpenBLAS workers spinning beside them cost more: 20k queries 1.1-1.7 s against 2.0
    s); one batch (a served request) runs here and leaves BLAS's setting alone, so that
    requests served from several threads never change it. A worker's exception is raised
    here. `progress(rows)`, if given, is called (in this thread) as batches finish."""
    starts = range(0, n_queries, batch)
    threads = numba.get_num_threads()
    report = progress or (lambda rows: None)
    if threads == 1 or len(starts) == 1:
        for start in starts:
            work(start, min(start + batch, n_queries))
            report(min(batch, n_queries - start))
        return
    with blas_on_one_thread(), ThreadPoolExecutor(max_workers=threads) as pool:
        for start, _ in zip(starts, pool.map(
                lambda start: work(start, min(start + batch, n_queries)), starts)):
            report(min(batch, n_queries - start))


def top_n(queries, targets, N, exclude=None, filter_ids=None, candidates=None,
          largest_norm=None):
    """The N targets with the largest score queries[r] . targets[j], for each query row.

    exclude: CSR with one row per query; its stored columns are removed for that row.
    filter_ids: target ids removed for every row. candidates: only these ids are ranked
    (cannot be combined with filter_ids, as in `implicit`; a repeated id counts once);
    every candidate is returned, an excluded one after the others with score -inf
    (lower id first), as `implicit` ranks the liked items among the given ones last.
    Returns (ids, scores) of shape (rows, min(N, candidates)), best first, ids as int32
    (as `implicit`'s) below 2^31 targets; slots left without a target hold id -1 and
    score -inf. largest_norm: the largest norm among `targets` when the caller knows it
    (1 for unit rows; None: computed here, a pass over the targets as long as the
    scoring of one query).
    """
    n_targets = targets.shape[0]
    all_targets = targets
    if candidates is not None and filter_ids is not None:
        raise ValueError("pass either items/users (the candidates) or filter_items/"
                         "filter_users, not both")
    removed = None
    if filter_ids is not None:
        removed = np.unique(check_ids(filter_ids, n_targets, "filter_items"))
    if candidates is not None:
        candidates = check_ids(candidates, n_targets, "items")
        if candidates.size == 0:
            raise ValueError("items (the candidates to rank) is empty")
        # each candidate ranked once, in the order first given
        _, first = np.unique(candidates, return_index=True)
        candidates = candidates[np.sort(first)]
        targets = targets[array_module(targets).asarray(candidates)]
        if exclude is not None:
            # the excluded columns, renumbered as positions among the candidates
            position = np.full(n_targets, -1, dtype=np.int64)
            position[candidates] = np.arange(candidates.size)
            rows, columns = exclude.nonzero()
            columns = position[columns]
            keep = columns >= 0
            exclude = sp.csr_matrix((np.ones(keep.sum()), (rows[keep], columns[keep])),
                                    shape=(exclude.shape[0], candidates.size))
    if exclude is not None:
        exclude = sp.csr_matrix(exclude)
        if not exclude.has_canonical_format:  # the kernel needs sorted, unique columns
            exclude = exclude.copy()
            exclude.sum_duplicates()
    depth = min(N, targets.shape[0])
    # a few more than asked, rescored exactly: which of two near-equal targets makes the
    # list must not depend on how BLAS summed this query's batch
    wide = min(depth + RESCORE_MARGIN, targets.shape[0])
    rough, ids = top_lists(queries, targets, wide, exclude, removed)
    crowded = _crowded_boundary(queries, rough, depth, lambda: largest_norm
                                if largest_norm is not None else row_norm_bound(targets))
    if candidates is not None:
        ids = np.where(ids >= 0, candidates[ids], -1)
    scores, ids = exact_order(queries, all_targets, ids, rough.dtype)
    if crowded.size:
        ids[crowded], scores[crowded] = _exact_rows(to_host(queries)[crowded], targets, wide,
                                                    None if exclude is None else
                                                    exclude[crowded], removed, candidates,
                                                    rough.dtype)
    scores, ids = scores[:, :depth], ids[:, :depth]
    if candidates is not None and exclude is not None:
        _fill_with_excluded(ids, exclude, candidates)
    # int32 ids, as implicit returns them (its evaluation code takes no other type)
    return (ids.astype(np.int32) if n_targets <= np.iinfo(np.int32).max else ids), scores


def _fill_with_excluded(ids, exclude, candidates):
    """Fill each row's empty slots (id -1, at its end) with its excluded candidates, lower
    id first; `exclude` holds them as positions among `candidates`."""
    rows, positions = exclude.nonzero()
    excluded = candidates[positions]
    order = np.lexsort((excluded, rows))
    rows, excluded = rows[order], excluded[order]
    rank = np.arange(rows.size) - np.searchsorted(rows, rows)  # place within its row
    free = (ids < 0).sum(axis=1)
    keep = rank < free[rows]
    rows, rank = rows[keep], rank[keep]
    ids[rows, ids.shape[1] - free[rows] + rank] = excluded[keep]


_PAIRS = 1 << 16  # chosen pairs rescored at a time (bounded memory)
RESCORE_MARGIN = 8  # targets ranked beyond the N asked, for the exact rescoring to choose among
# a float32 score a . b is within about d * 2^-24 |a||b| of the exact one (d <= ~1000)
_ROUGH = 1e-4


def row_norm_bound(rows):
    """The largest norm among `rows` (NumPy or CuPy), in float64."""
    return float(np.sqrt(to_host((rows * rows).sum(axis=1, dtype=np.float64)).max(
        initial=0.0)))


def _crowded_boundary(queries, rough, depth, largest_norm):
    """Rows whose rough (BLAS) list may have left out a target whose exact score belongs
    in the top `depth`: the list is full, and its last score is within the rounding of
    BLAS's sums of the depth-th (so more near-ties than RESCORE_MARGIN crowd the boundary).
    `largest_norm()`: the targets' largest norm (asked only when a list is full)."""
    full = np.isfinite(rough[:, -1]) if rough.shape[1] > depth else np.zeros(0, bool)
    if not full.any():
        return np.empty(0, dtype=np.int64)
    norms = np.sqrt((to_host(queries).astype(np.float64) ** 2).sum(axis=1))
    error = _ROUGH * norms * largest_norm()
    return np.flatnonzero(full & (rough[:, -1] >= rough[:, depth - 1] - 2 * error - 1e-300))


def _exact_rows(queries, targets, depth, exclude, removed, candidates, dtype):
    """(ids, scores) of the `depth` best targets of a few rows, every score in float64
    (ties: lower id first); for rows whose boundary is crowded with near-ties."""
    queries = to_host(queries).astype(np.float64)
    scores = np.empty((queries.shape[0], targets.shape[0]))
    for start in range(0, targets.shape[0], _PAIRS):
        block = to_host(targets[start:start + _PAIRS]).astype(np.float64)
        scores[:, start:start + block.shape[0]] = queries @ block.T
    if removed is not None:
        scores[:, removed] = -np.inf
    if exclude is not None:
        rows, columns = exclude.nonzero()
        scores[rows, columns] = -np.inf
    positions = np.broadcast_to(np.arange(targets.shape[0]), scores.shape)
    ids = positions if candidates is None else candidates[positions]
    order = np.lexsort((ids, -scores), axis=-1)[:, :depth]
    best = np.take_along_axis(scores, order, axis=-1)
    chosen = np.where(np.isfinite(best), np.take_along_axis(ids, order, axis=-1), -1)
    return chosen, best.astype(dtype)


def exact_order(queries, targets, ids, dtype):
    """The chosen ids' scores recomputed in float64 and the rows sorted by them (ties:
    lower id first): BLAS sums a single query and a block of queries in different orders,
    so without this a user's scores would depend on the batch it was asked in."""
    rows, slots = np.nonzero(ids >= 0)
    if rows.size == 0:
        return np.full(ids.shape, -np.inf, dtype=dtype), ids
    chosen = ids[rows, slots]
    unique, inverse = np.unique(chosen, return_inverse=True)
    query_rows = to_host(queries).astype(np.float64)
    target_rows = to_host(targets[array_module(targets).asarray(unique)]).astype(np.float64)
    exact = np.full(ids.shape, -np.inf)
    for start in range(0, rows.size, _PAIRS):
        part = slice(start, start + _PAIRS)
        exact[rows[part], slots[part]] = np.einsum("pd,pd->p", query_rows[rows[part]],
                                                   target_rows[inverse[part].ravel()])
    order = np.lexsort((np.where(ids >= 0, ids, np.iinfo(np.int64).max), -exact), axis=-1)
    return (np.take_along_axis(exact, order, axis=-1).astype(dtype),
            np.take_along_axis(ids, order, axis=-1))
