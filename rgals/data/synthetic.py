"""Synthetic interaction data with a planted low-rank structure, for tests and benchmarks."""

import numpy as np
import scipy.sparse as sp

from ..validation import check_integer, check_real

_SIGNAL = 2.0  # standard deviation of the planted scores: strong enough to be learnt
_CHUNK = 1 << 20  # user x item keys drawn at a time (4 MB of float32)


def synthetic(n_users=1000, n_items=500, factors=8, mean_activity=20.0, popularity_exponent=1.0,
              seed=0):
    """A random users x items CSR matrix of ones with a planted low-rank structure.

    Item popularity follows a power law (popularity of the item ranked r is
    r^-popularity_exponent, ranks shuffled over the ids); user activity is heavy-tailed
    (2 + lognormal, mean about `mean_activity`, at most n_items). Each user draws its items
    without replacement with probability proportional to popularity * exp(p_u . q_i), with
    random `factors`-dimensional p_u, q_i (scores of standard deviation 2). Deterministic
    for a seed; users are drawn in chunks, so memory stays bounded.
    """
    n_users = check_integer(n_users, "n_users", 1)
    n_items = check_integer(n_items, "n_items", 2)
    factors = check_integer(factors, "factors", 1)
    mean_activity = check_real(mean_activity, "mean_activity", 2)
    if mean_activity > n_items:
        raise ValueError(f"mean_activity={mean_activity} exceeds n_items={n_items}: a user "
                         "cannot interact with more items than there are")
    popularity_exponent = check_real(popularity_exponent, "popularity_exponent", 0)
    rng = np.random.default_rng(check_integer(seed, "seed", 0))

    log_popularity = -popularity_exponent * np.log(rng.permutation(n_items) + 1.0)
    scale = (_SIGNAL ** 2 / factors) ** 0.25  # var(p . q) = factors * scale^4
    user_vectors = rng.standard_normal((n_users, factors)) * scale
    item_vectors = rng.standard_normal((n_items, factors)) * scale
    extra = mean_activity - 2.0
    if extra > 0:
        activity = 2 + np.round(rng.lognormal(np.log(extra) - 0.5, 1.0, n_users))
    else:
        activity = np.full(n_users, 2.0)
    activity = np.minimum(activity, n_items).astype(np.int64)

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
        noise = rng.random(keys.shape, dtype=np.float32)
        with np.errstate(divide="ignore"):  # a draw of exactly 0 or 1 gives an infinite key
            np.log(noise, out=noise)
            np.negative(noise, out=noise)
            np.log(noise, out=noise)
        keys -= noise
        wanted = activity[start:stop]
        top = int(wanted.max())
        best = np.argpartition(-keys, top - 1, axis=1)[:, :top] if top < n_items else \
            np.broadcast_to(np.arange(n_items), keys.shape)
        best = np.take_along_axis(
            best, np.argsort(-np.take_along_axis(keys, best, axis=1), axis=1), axis=1)
        chosen.append(best[np.arange(top) < wanted[:, None]])
    indptr = np.concatenate(([0], np.cumsum(activity)))
    matrix = sp.csr_matrix((np.ones(int(activity.sum())), np.concatenate(chosen), indptr),
                           shape=(n_users, n_items))
    matrix.sort_indices()
    return matrix
