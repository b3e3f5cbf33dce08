"""Synthetic interaction data with a planted low-rank structure, for tests and benchmarks."""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp

from ..validation import check_integer, check_real

_SIGNAL = 2.0  # standard deviation of the planted scores: strong enough to be learnt
_CHUNK = 1 << 20  # user x item keys drawn at a time (4 MB of float32)


def synthetic(n_users: int = 1000, n_items: int = 500, factors: int = 8,
              mean_activity: float = 20.0, popularity_exponent: float = 1.0, seed: int = 0,
              candidates: int | None = None) -> sp.csr_matrix:
    """A random users x items CSR matrix of ones with a planted low-rank structure.

    Item popularity follows a power law (popularity of the item ranked r is
    r^-popularity_exponent, ranks shuffled over the ids); user activity is heavy-tailed
    (2 + lognormal, mean about `mean_activity`, at most n_items). Each user draws its items
    without replacement with probability proportional to popularity * exp(p_u . q_i), with
    random `factors`-dimensional p_u, q_i (scores of standard deviation 2). Deterministic
    for a seed; users are drawn in chunks, so memory stays bounded.

    candidates: None draws exactly, over every item: O(users x items). An integer c
    draws approximately and fast, in O(interactions x c): each user's items are the best
    by p_u . q_i + Gumbel noise among c times as many candidates drawn by popularity
    (importance resampling; duplicates drawn collapse). For benchmark-sized data
    (`rgals.dask.synthetic_frame` makes it on Dask workers).
    """
    n_users = check_integer(n_users, "n_users", 1)
    planted = planted_items(n_items, factors, mean_activity, popularity_exponent, seed)
    indptr, indices = planted.draw_users(planted.rng, n_users, candidates)
    matrix = sp.csr_matrix((np.ones(len(indices)), indices, indptr),
                           shape=(n_users, planted.n_items))
    matrix.sort_indices()
    return matrix


class PlantedItems:
    """The item side of `synthetic`: vectors, popularity and the draw of users."""

    def __init__(self, rng, n_items, factors, mean_activity, popularity_exponent):
        self.n_items, self.factors, self.mean_activity = n_items, factors, mean_activity
        self.log_popularity = -popularity_exponent * np.log(rng.permutation(n_items) + 1.0)
        self.scale = (_SIGNAL ** 2 / factors) ** 0.25  # var(p . q) = factors * scale^4
        self.rng = rng

    def draw_items(self, rng):
        """The item vectors, drawn once (`synthetic` draws them after its users)."""
        if not hasattr(self, "item_vectors"):
            self.item_vectors = rng.standard_normal((self.n_items, self.factors)) * self.scale
        return self

    def draw_users(self, rng, n_users, candidates=None):
        """(indptr, indices) of `n_users` users drawn from `rng`."""
        user_vectors = rng.standard_normal((n_users, self.factors)) * self.scale
        self.draw_items(rng)
        extra = self.mean_activity - 2.0
        if extra > 0:
            activity = 2 + np.round(rng.lognormal(np.log(extra) - 0.5, 1.0, n_users))
        else:
            activity = np.full(n_users, 2.0)
        activity = np.minimum(activity, self.n_items).astype(np.int64)
        if candidates is None:
            chosen = _exact_draw(rng, user_vectors, self.item_vectors, self.log_popularity,
                                 activity)
        else:
            chosen, activity = _candidate_draw(
                rng, user_vectors, self.item_vectors, self.log_popularity, activity,
                check_integer(candidates, "candidates", 1))
        return np.concatenate(([0], np.cumsum(activity))), chosen


def planted_items(n_items=500, factors=8, mean_activity=20.0, popularity_exponent=1.0, seed=0):
    """The checked parameters' PlantedItems, from `seed`."""
    n_items = check_integer(n_items, "n_items", 2)
    factors = check_integer(factors, "factors", 1)
    mean_activity = check_real(mean_activity, "mean_activity", 2)
    if mean_activity > n_items:
        raise ValueError(f"mean_activity={mean_activity} exceeds n_items={n_items}: a user "
                         "cannot interact with more items than there are")
    popularity_exponent = check_real(popularity_exponent, "popularity_exponent", 0)
    rng = np.random.default_rng(check_integer(seed, "seed", 0))
    return PlantedItems(rng, n_items, factors, mean_activity, popularity_exponent)


def _exact_draw(rng, user_vectors, item_vectors, log_popularity, activity):
    n_users, n_items = len(user_vectors), len(item_vectors)
    # float32 keys: the draw is O(n_users * n_items) and this halves its cost
    item_vectors = item_vectors.T.astype(np.float32)
    log_popularity = log_popularity.astype(np.float32)
    chosen = []
    chunk = max(1, _CHUNK // n_items)
    for start in range(0, n_users, chunk):
        stop = min(start + chunk, n_users)
        # Gumbel top-k: the k largest of log(weight) + Gumbel noise are a draw of k items
        # without replacement with probability proportional to weight
        keys = user_vectors[start:stop].astype(np.float32) @ item_vectors
        keys += log_popularity
        keys -= _gumbel_negated(rng, keys.shape)
        wanted = activity[start:stop]
        top = int(wanted.max())
        best = np.argpartition(-keys, top - 1, axis=1)[:, :top] if top < n_items else \
            np.broadcast_to(np.arange(n_items), keys.shape)
        best = np.take_along_axis(
            best, np.argsort(-np.take_along_axis(keys, best, axis=1), axis=1), axis=1)
        chosen.append(best[np.arange(top) < wanted[:, None]])
    return np.concatenate(chosen)


def _gumbel_negated(rng, shape):
    """-Gumbel noise, log(-log U), in float32."""
    noise = rng.random(shape, dtype=np.float32)
    with np.errstate(divide="ignore"):  # a draw of exactly 0 or 1 gives an infinite key
        np.log(noise, out=noise)
        np.negative(noise, out=noise)
        np.log(noise, out=noise)
    return noise


def _candidate_draw(rng, user_vectors, item_vectors, log_popularity, activity, candidates):
    """(items, activity): users grouped by activity up to a power of two K, each scoring
    candidates * K items drawn by popularity and keeping its best distinct ones."""
    probability, alias = _alias_table(np.exp(log_popularity - log_popularity.max()))
    n_items = len(item_vectors)
    items_f32 = item_vectors.astype(np.float32)
    ceiling = 2 ** np.ceil(np.log2(np.maximum(activity, 1))).astype(np.int64)
    chosen, kept = [None] * len(activity), activity.copy()
    for top in np.unique(ceiling):
        users = np.flatnonzero(ceiling == top)
        width = int(min(candidates * top, 4 * n_items))
        chunk = max(1, _CHUNK // width)
        gathered = np.empty((min(chunk, len(users)), width, items_f32.shape[1]), np.float32)
        for start in range(0, len(users), chunk):
            group = users[start:start + chunk]
            # Walker's alias method: one draw by popularity in O(1)
            drawn = (rng.random((len(group), width)) * n_items).astype(np.int64)
            drawn = np.where(rng.random(drawn.shape) < probability[drawn], drawn, alias[drawn])
            block = gathered[:len(group)]
            np.take(items_f32, drawn, axis=0, out=block)
            keys = np.matmul(block, user_vectors[group].astype(np.float32)[:, :, None])[..., 0]
            keys -= _gumbel_negated(rng, keys.shape)
            ranked = np.take_along_axis(drawn, np.argsort(-keys, axis=1), axis=1)
            # a candidate drawn twice counts at its best key: later copies drop out
            by_item = np.argsort(ranked, axis=1, kind="stable")
            sorted_items = np.take_along_axis(ranked, by_item, axis=1)
            repeated = np.zeros(ranked.shape, dtype=bool)
            rows, columns = np.nonzero(sorted_items[:, 1:] == sorted_items[:, :-1])
            repeated[rows, by_item[rows, columns + 1]] = True
            keep = ~repeated & (np.cumsum(~repeated, axis=1) <= activity[group][:, None])
            kept[group] = keep.sum(axis=1)
            for row, user in enumerate(group):
                chosen[user] = ranked[row][keep[row]]
    return np.concatenate(chosen), kept


def _alias_table(weights):
    """(probability, alias) of Walker's alias method for drawing i with p ~ weights[i]."""
    n = len(weights)
    scaled = weights * (n / weights.sum())
    probability, alias = np.ones(n), np.arange(n)
    small = list(np.flatnonzero(scaled < 1.0))
    large = list(np.flatnonzero(scaled >= 1.0))
    while small and large:
        low, high = small.pop(), large[-1]
        probability[low], alias[low] = scaled[low], high
        scaled[high] -= 1.0 - scaled[low]
        if scaled[high] < 1.0:
            small.append(large.pop())
    return probability, alias
