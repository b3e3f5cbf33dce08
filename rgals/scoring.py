"""One blocked scoring pass over all users x items, for losses that need the full ranking.

Scores s_uj = p_u . q_j are computed tile by tile (never an M x N array) and reduced per
user on the way: the `depth` highest scores and their items (so the K-th largest, the
top-K quantile, for any K <= depth), and, with a softmax temperature tau, the
log-normaliser LSE_u = log sum_j exp(s_uj / tau) and the softmax-weighted item sum
sum_j p_uj q_j with p_uj = exp(s_uj / tau - LSE_u). The CPU pass shares the tiling of
`rgals.ranking.top_lists`; with the batched kernels (CuPy factors) the reductions run on
the device, a batch of users at a time.
"""

from typing import NamedTuple, Optional

import numpy as np

from .backend import backend_of, to_host
from .kernels import batched, cpu
from .ranking import _BATCH, for_each_batch, score_tiles


class Scores(NamedTuple):
    """What one pass gives per user (host NumPy arrays; None where not asked for)."""

    top_scores: Optional[np.ndarray]  # users x depth, best first
    top_ids: Optional[np.ndarray]  # users x depth
    log_normaliser: Optional[np.ndarray]  # users: log sum_j exp(s_uj / tau)
    weighted_sum: Optional[np.ndarray]  # users x d: sum_j p_uj q_j, float64


def score_pass(user_factors, item_factors, depth=0, temperature=None, batch=None,
               backend=None):
    """Reduce every user's scores against all items in one blocked pass (see the module).

    depth: how many of the highest scores (and their ids) to keep per user (0: none).
    temperature: tau of the softmax whose log-normaliser and weighted item sums to
    compute (None: neither). batch: users per batch (CPU default 256). backend: whose
    kernels run the pass (default: the one holding the factors).
    """
    n_users, n_items = user_factors.shape[0], item_factors.shape[0]
    if not 0 <= depth <= n_items:
        raise ValueError(f"depth must be between 0 and the {n_items} items; got {depth}")
    if temperature is not None and not temperature > 0:
        raise ValueError(f"temperature must be > 0; got {temperature!r}")
    backend = backend or backend_of(user_factors)
    if backend.kernels is not cpu:
        return _batched_pass(user_factors, item_factors, depth, temperature, batch, backend)
    dtype = np.result_type(user_factors.dtype, item_factors.dtype)
    users, items = user_factors.astype(dtype, copy=False), item_factors.astype(dtype,
                                                                                copy=False)
    top = np.full((n_users, depth), -np.inf, dtype=dtype) if depth else None
    ids = np.full((n_users, depth), -1, dtype=np.int64) if depth else None
    softmax = temperature is not None
    log_normaliser = np.empty(n_users) if softmax else None
    weighted = np.empty((n_users, items.shape[1])) if softmax else None
    no_mask = np.zeros(0, np.int64)

    def reduce(start, stop):
        rows = stop - start
        next_mask = np.zeros(rows, np.int64)  # no mask: every row's span is empty
        running_max = np.full(rows, -np.inf)
        running_sum = np.zeros(rows)
        running_weighted = np.zeros((rows, items.shape[1]))
        for offset, scores in score_tiles(users[start:stop], items):
            if softmax:
                # online softmax: rescale what was summed so far to the new maximum. The
                # exponentials (all <= 1) and their product with the items run in the
                # factors' dtype; the running sums are float64
                scaled = scores * scores.dtype.type(1.0 / temperature)
                new_max = np.maximum(running_max, scaled.max(axis=1))
                shrink = np.exp(running_max - new_max)
                scaled -= new_max[:, None].astype(scaled.dtype)
                weights = np.exp(scaled, out=scaled)
                running_sum = running_sum * shrink + weights.sum(axis=1, dtype=np.float64)
                running_weighted *= shrink[:, None]
                running_weighted += weights @ items[offset:offset + scores.shape[1]]
                running_max = new_max
            if depth:
                cpu.merge_top(scores, offset,
                              np.arange(offset, offset + scores.shape[1], dtype=np.int64),
                              next_mask, next_mask, no_mask, top[start:stop], ids[start:stop])
        if softmax:
            log_normaliser[start:stop] = running_max + np.log(running_sum)
            weighted[start:stop] = running_weighted / running_sum[:, None]

    for_each_batch(n_users, batch or _BATCH, reduce)
    return Scores(top, ids, log_normaliser, weighted)


def _batched_pass(user_factors, item_factors, depth, temperature, batch, backend):
    """score_pass with the batched kernels (CuPy on the device; NumPy in tests): a batch of
    users x all items at a time, within the kernels' work budget."""
    xp = backend.xp
    n_users, n_items = user_factors.shape[0], item_factors.shape[0]
    batch = max(1, min(batch or n_users, batched.PAIR_BUDGET // max(n_items, 1)))
    top = ids = None
    if depth:
        top, ids = backend.kernels.top_lists(user_factors, item_factors, depth)
    log_normaliser = weighted = None
    if temperature is not None:
        log_normaliser = xp.empty(n_users)
        weighted = xp.empty((n_users, item_factors.shape[1]))
        for start in range(0, n_users, batch):
            scaled = (user_factors[start:start + batch] @ item_factors.T).astype(
                np.float64) / temperature
            top_scaled = scaled.max(axis=1)
            weights = xp.exp(scaled - top_scaled[:, None])
            total = weights.sum(axis=1)
            log_normaliser[start:start + batch] = top_scaled + xp.log(total)
            weighted[start:start + batch] = (weights @ item_factors.astype(np.float64)
                                             / total[:, None])
    return Scores(*(None if array is None else to_host(array)
                    for array in (top, ids, log_normaliser, weighted)))
