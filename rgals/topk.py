"""Per-sweep reweighting of a loss's positives: the top-K weights of SoftmaxLoss@K.

A loss whose pair confidences change between sweeps declares a reweighting component
(`Loss.reweighting()`): its settings, the count of sweeps begun (its public state) and,
for a block of users against every item, the refreshed pairs. The executors of
rgals.training (one process) and rgals.dask (row blocks on workers) run the same
component: each calls `begin_sweep()`, and when it says so, `refresh_block` on every
block of users; the loss then takes the pairs' confidences (and linear terms) as
`pair_terms` and its user sums from `Loss.with_user_sums`. What a checkpoint keeps is
`sweeps` plus each block's `Refresh.weights` (damping mixes them into the next refresh)
and pair terms.
"""

import math
from dataclasses import dataclass
from typing import Optional

import numpy as np

from .kernels.batched import PAIR_BUDGET
from .scoring import score_pass


@dataclass
class Refresh:
    """One block of users refreshed: per pair (in the block's user-major order) the
    weight w, the confidence c w, the linear term g (None without one); per user the
    summed c w; and the sums that make the monitor's report (`report`)."""

    weights: object
    confidence: object
    linear: Optional[object]
    user_sums: object
    totals: dict


def report(totals):
    """What a refresh reports (monitor columns refresh_<name>) from the blocks' summed
    `Refresh.totals`: the mean weight and the mean change from the weights before."""
    pairs = max(totals["pairs"], 1.0)
    return {"weight_mean": totals["weight_sum"] / pairs,
            "weight_change": (math.nan if not totals["previous"]
                              else totals["change_sum"] / pairs)}


@dataclass
class TopKWeights:
    """SoftmaxLoss@K's weights (Yang et al. 2025; design.md 1.6 C) for RG2/RGx's `top_k`.

    At a refresh each positive gets w_ui = sigmoid((s_ui - beta_u) / tau_u), beta_u the
    K-th largest score of user u ('exact': over all items, one scoring pass; 'sampled':
    among the user's positives and `samples` uniform items), tau_u = temperature times the
    spread of u's scores over all items (closed form), scaled to mean 1 over u's
    positives; damped as w <- d w_old + (1 - d) w_new. With `gradient`, each positive also
    gets g_ui = c_ui l_ui sigma (1 - sigma) / (tau_u m_u), l_ui = LSE_u - s_ui.
    """

    k: int
    temperature: float
    quantile: str
    samples: int
    refresh: int
    warmup: int
    damping: float
    gradient: bool
    n_items: int
    sweeps: int = 0  # sweeps begun: the state a checkpoint keeps

    def begin_sweep(self):
        """Count one more sweep; True when the weights are refreshed in it."""
        self.sweeps += 1
        return (self.sweeps > self.warmup
                and (self.sweeps - 1 - self.warmup) % self.refresh == 0)

    def refresh_block(self, user_factors, item_factors, user_items, previous, backend):
        """The `Refresh` of a block of users: `user_factors` its rows, `user_items` its
        interactions (columns: every item, as `item_factors`), `previous` its weights
        of the refresh before (None at the first)."""
        xp = backend.xp
        rows = backend.kernels.pair_rows(user_items.indptr, user_items.nnz)
        weights, linear = self._weights(user_factors, item_factors, user_items, rows,
                                        backend)
        totals = {"pairs": float(weights.size), "previous": previous is not None,
                  "change_sum": 0.0}
        if previous is not None:
            weights = self.damping * previous + (1.0 - self.damping) * weights
            totals["change_sum"] = float(abs(weights - previous).sum())
        totals["weight_sum"] = float(weights.sum())
        confidence = user_items.data * weights
        sums = xp.bincount(rows, weights=confidence, minlength=user_items.shape[0])
        return Refresh(weights, confidence, linear, sums, totals)

    def _weights(self, user_factors, item_factors, matrix, rows, backend):
        """w_ui of every stored pair of the block (user-major; `rows`: each pair's row)
        and, with `gradient`, g_ui."""
        xp = backend.xp
        scores = backend.kernels.pair_scores(matrix.indptr, matrix.indices, user_factors,
                                             item_factors)
        # the spread of each user's scores over all items, in closed form
        items = item_factors.astype(np.float64)
        users = user_factors.astype(np.float64)
        mean = users @ items.mean(axis=0)
        second = ((users @ (items.T @ items / self.n_items)) * users).sum(axis=1)
        tau = self.temperature * xp.sqrt(xp.maximum(second - mean * mean, 1e-24))
        k = min(self.k, self.n_items)
        if self.quantile == "exact" or self.gradient:
            result = score_pass(user_factors, item_factors,
                                depth=k if self.quantile == "exact" else 0,
                                temperature=1.0 if self.gradient else None, backend=backend)
        if self.quantile == "exact":
            beta = backend.put(result.top_scores[:, k - 1].astype(np.float64))
        else:
            beta = sampled_quantile(scores, rows, user_factors, item_factors, k,
                                    self.samples, self.sweeps, backend)
        margin = (scores - beta[rows]) / tau[rows]
        sigmoid = 1.0 / (1.0 + xp.exp(-margin))
        # mean 1 over each user's positives: the weights shift emphasis between them, not
        # the user's weight against the regularisation (which would shrink the factors)
        mean = xp.bincount(rows, weights=sigmoid, minlength=matrix.shape[0]) / \
            xp.maximum(xp.diff(matrix.indptr), 1)
        weights = sigmoid / mean[rows]
        linear = None
        if self.gradient:
            softmax_term = backend.put(result.log_normaliser)[rows] - scores
            linear = (matrix.data * softmax_term * sigmoid * (1.0 - sigmoid)
                      / (tau[rows] * mean[rows]))
        return weights, linear


def sampled_quantile(scores, rows, user_factors, item_factors, k, samples, seed, backend):
    """beta_u as the authors estimate it: the k-th largest of the user's positives' scores
    and the scores of `samples` items drawn uniformly (one draw for all users, from
    `seed`: every block of users draws the same items)."""
    xp = backend.xp
    n_users, n_items = user_factors.shape[0], item_factors.shape[0]
    drawn = backend.put(np.random.default_rng(seed).integers(n_items, size=samples))
    drawn_factors = item_factors[drawn]
    # only the k best of the sample can be among the k best overall; the users x samples
    # scores are made a chunk of users at a time (in one piece they would be a fit's
    # largest array, which fit_bytes does not count)
    sampled = xp.empty((n_users, min(k, samples)))
    chunk = max(1, PAIR_BUDGET // samples)
    for start in range(0, n_users, chunk):
        block = (user_factors[start:start + chunk] @ drawn_factors.T).astype(np.float64)
        if samples > k:
            block = -xp.partition(-block, k - 1, axis=1)[:, :k]
        sampled[start:start + chunk] = block
    candidates = xp.concatenate([scores, sampled.ravel()])
    owners = xp.concatenate([rows, xp.repeat(xp.arange(n_users), sampled.shape[1])])
    order = xp.lexsort(xp.stack([-candidates, owners]))
    counts = xp.bincount(owners, minlength=n_users)
    first = xp.concatenate([xp.zeros(1, dtype=counts.dtype), xp.cumsum(counts)[:-1]])
    # each user's k-th best (or its last, with fewer candidates)
    return candidates[order][first + xp.minimum(counts, k) - 1]
