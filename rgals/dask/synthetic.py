"""Planted data drawn by the workers: `synthetic_frame`."""

import numpy as np

from ..prepared import row_ranges
from ..validation import check_integer
from .cluster import require_dask


def _synthetic_partition(users, items, candidates, seed):
    """The pairs of users `users` (a range) of `synthetic_frame`, as a pandas DataFrame;
    `items`: planted_items' arguments (each partition draws the items from the seed
    again rather than taking them through the graph)."""
    import pandas as pd
    from ..data.synthetic import planted_items
    planted = planted_items(**items, seed=seed)
    planted.draw_items(planted.rng)
    indptr, chosen = planted.draw_users(np.random.default_rng([seed, users.start]),
                                        len(users), candidates)
    rows = np.repeat(np.arange(users.start, users.stop), np.diff(indptr))
    return pd.DataFrame({"user": rows.astype(np.int64), "item": chosen.astype(np.int64)})


def synthetic_frame(n_users, n_items, factors=8, mean_activity=20.0, popularity_exponent=1.0,
                    seed=0, candidates=8, partitions=None):
    """`rgals.data.synthetic(..., candidates=...)` as a Dask DataFrame (user, item) whose
    partitions the workers draw themselves: the items from `seed`, each partition's users
    from (seed, its first user). The same pairs for the same arguments; not the same as
    the in-memory draw's (other streams). partitions: None, one per 100,000 users."""
    require_dask()
    import dask.dataframe as dd
    import pandas as pd
    from ..data.synthetic import planted_items
    n_users = check_integer(n_users, "n_users", 1)
    partitions = check_integer(partitions or max(1, n_users // 100_000), "partitions", 1)
    items = dict(n_items=n_items, factors=factors, mean_activity=mean_activity,
                 popularity_exponent=popularity_exponent)
    planted_items(**items, seed=seed)  # bad arguments fail here, not in a worker
    check_integer(candidates, "candidates", 1)
    ranges = [range(rows.start, rows.stop) for rows in row_ranges(n_users, partitions)]
    meta = pd.DataFrame({"user": np.zeros(0, np.int64), "item": np.zeros(0, np.int64)})
    return dd.from_map(_synthetic_partition, ranges, items=items, candidates=candidates,
                       seed=seed, meta=meta, enforce_metadata=False)
