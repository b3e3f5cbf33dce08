"""Batched top-N by inner product, with bounded memory."""

import numpy as np

from .validation import check_ids

# scores held at once: batch rows x candidates
_SCORE_BUDGET = 1 << 22


def normalized_rows(factors):
    """Rows scaled to unit length (zero rows stay zero), for cosine similarity."""
    norms = np.linalg.norm(factors, axis=1, keepdims=True)
    return factors / np.maximum(norms, np.finfo(factors.dtype).tiny)


def top_n(queries, targets, N, exclude=None, filter_ids=None, candidates=None):
    """The N targets with the largest score queries[r] . targets[j], for each query row.

    exclude: CSR with one row per query; its stored columns are removed for that row.
    filter_ids: target ids removed for every row. candidates: only these ids are ranked
    (cannot be combined with filter_ids, as in `implicit`). Returns (ids, scores) of
    shape (rows, min(N, candidates)), best first; slots left without a candidate hold
    id -1 and score -inf.
    """
    n_targets = targets.shape[0]
    if candidates is not None and filter_ids is not None:
        raise ValueError("pass either items/users (the candidates) or filter_items/"
                         "filter_users, not both")
    if candidates is not None:
        candidates = check_ids(candidates, n_targets, "items")
        if candidates.size == 0:
            raise ValueError("items (the candidates to rank) is empty")
        position = np.full(n_targets, -1, dtype=np.int64)
        position[candidates] = np.arange(candidates.size)
        targets = targets[candidates]
    removed = None
    if filter_ids is not None:
        removed = check_ids(filter_ids, n_targets, "filter_items")

    n_ranked = targets.shape[0]
    N = min(N, n_ranked)
    ids = np.empty((queries.shape[0], N), dtype=np.int64)
    best = np.empty((queries.shape[0], N), dtype=np.result_type(queries, targets))
    batch = max(1, _SCORE_BUDGET // n_ranked)
    for start in range(0, queries.shape[0], batch):
        stop = min(start + batch, queries.shape[0])
        scores = queries[start:stop] @ targets.T
        if removed is not None:
            scores[:, removed] = -np.inf
        if exclude is not None:
            rows, columns = exclude[start:stop].nonzero()
            if candidates is not None:
                columns = position[columns]
                rows, columns = rows[columns >= 0], columns[columns >= 0]
            scores[rows, columns] = -np.inf
        top = np.argpartition(-scores, N - 1, axis=1)[:, :N] if N < n_ranked else \
            np.broadcast_to(np.arange(n_ranked), scores.shape).copy()
        top_scores = np.take_along_axis(scores, top, axis=1)
        order = np.argsort(-top_scores, axis=1, kind="stable")
        top = np.take_along_axis(top, order, axis=1)
        top_scores = np.take_along_axis(top_scores, order, axis=1)
        found = candidates[top] if candidates is not None else top
        ids[start:stop] = np.where(np.isneginf(top_scores), -1, found)
        best[start:stop] = top_scores
    return ids, best
