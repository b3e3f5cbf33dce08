"""An approximate index for serving: top-N by inner product over faiss, for catalogues
where the exact (pruned) ranking is too slow per request. `pip install 'rgals[ann]'`.

`model.approximate_index(method)` builds one from a fitted model's item factors; its
`recommend` takes the model's arguments and returns the same shapes, with the seen items
(and `filter_items`) left out and the popularity fallback for users without
interactions. Each user's candidates come from faiss, N plus as many as that user's
block has items to leave out, and are rescored exactly and ordered as the exact
`recommend` orders them; `items=` (a given candidate set) is ranked exactly.

Methods, each under faiss's own inner product: "hnsw" (a graph over the item factors),
"ivf" (inverted lists) and "flat" (exhaustive: the exact lists, as a reference). The
usual norm augmentation, which turns the largest inner product into an L2 nearest
neighbour, is not needed with faiss, and measured worse: HNSW over augmented Gowalla
factors found 0.64-0.85 of the exact top 20 where the inner-product graph found
0.98-0.99 at the same search breadth (bench/RESULTS.md).
"""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp

from .backend import to_host
from .ranking import RESCORE_MARGIN, exact_order, top_n
from .types import Ids, Matrix, Ranked
from .validation import check_choice, check_ids, check_integer

METHODS = ("hnsw", "ivf", "flat")
BATCH = 4096  # queries per faiss search: bounds the candidate lists' memory


def _blocks_by_need(need):
    """Row blocks of at most BATCH rows, in order of `need` (the candidates each row
    needs), each cut where its rows' need passes twice its first row's: a search asks a
    block for as many as its neediest row, and users' histories differ by 100x."""
    order = np.argsort(need, kind="stable")
    ordered = need[order]
    start = 0
    while start < order.size:
        stop = int(np.searchsorted(ordered, 2 * ordered[start], side="right"))
        stop = max(min(start + BATCH, stop), start + 1)
        yield order[start:stop]
        start = stop


def require_faiss():
    try:
        import faiss
    except ImportError as error:
        raise ImportError("an approximate index needs faiss: pip install 'rgals[ann]' (or "
                          "faiss-cpu)") from error
    return faiss


class ApproximateIndex:
    """See the module's docstring. `hnsw_m`, `ef_construction`, `ef_search`: the graph's
    links per node, and the breadth of its build and of a search (raised to the number
    of candidates a search needs); `nlist`, `nprobe`: the inverted lists (default about
    4 sqrt(items), at most items / 39) and how many a search visits (default nlist / 8).
    Searches run on faiss's OpenMP threads. The index holds the item factors it was
    built from: after a fit or a partial fit that changes them, build it again."""

    def __init__(self, model, method="hnsw", *, hnsw_m=32, ef_construction=200,
                 ef_search=128, nlist=None, nprobe=None):
        faiss = require_faiss()
        model._check_fitted()
        self.model, self.method = model, check_choice(method, "method", METHODS)
        self._items = model.item_factors_
        items = np.ascontiguousarray(to_host(self._items), dtype=np.float32)
        n_items, d = items.shape
        if method == "hnsw":
            self.index = faiss.IndexHNSWFlat(d, check_integer(hnsw_m, "hnsw_m", 2),
                                             faiss.METRIC_INNER_PRODUCT)
            self.index.hnsw.efConstruction = check_integer(ef_construction,
                                                           "ef_construction", 1)
            self.index.add(items)
            self.ef_search = check_integer(ef_search, "ef_search", 1)
        elif method == "ivf":
            default = max(1, min(int(4 * np.sqrt(n_items)), n_items // 39))
            self.nlist = default if nlist is None else check_integer(nlist, "nlist", 1)
            if self.nlist > n_items:
                raise ValueError(f"nlist={self.nlist} is more than the {n_items} items")
            self.nprobe = max(1, self.nlist // 8) if nprobe is None else \
                min(check_integer(nprobe, "nprobe", 1), self.nlist)
            self._quantizer = faiss.IndexFlatIP(d)
            self.index = faiss.IndexIVFFlat(self._quantizer, d, self.nlist,
                                            faiss.METRIC_INNER_PRODUCT)
            self.index.train(items)
            self.index.add(items)
        else:
            self.index = faiss.IndexFlatIP(d)
            self.index.add(items)

    def recommend(self, userid: Ids, user_items: Matrix | None = None, N: int = 10,
                  filter_already_liked_items: bool = True, filter_items: Ids | None = None,
                  recalculate_user: bool = False, items: Ids | None = None) -> Ranked:
        """The model's `recommend` (same arguments, same shapes), ranked by this index."""
        if self.model.item_factors_ is not self._items:
            raise ValueError("the model's item factors changed since this index was built "
                             "(a fit or partial_fit_items): build it again with "
                             "model.approximate_index(...)")
        return self.model._recommend(userid, user_items, N, filter_already_liked_items,
                                     filter_items, recalculate_user, items, self._rank)

    def _rank(self, queries, targets, N, exclude=None, filter_ids=None, candidates=None,
              largest_norm=None):
        """rgals.ranking.top_n's contract, the candidates found by the index."""
        if candidates is not None:  # a given candidate set: ranked exactly
            return top_n(queries, targets, N, exclude, filter_ids, candidates, largest_norm)
        n_items = targets.shape[0]
        removed = None if filter_ids is None else np.unique(
            check_ids(filter_ids, n_items, "filter_items"))
        queries = to_host(queries)
        searched = np.ascontiguousarray(queries, dtype=np.float32)  # what faiss takes
        dtype = np.result_type(queries.dtype, targets.dtype)  # the scores', as top_n's
        exclude = None if exclude is None else sp.csr_matrix(exclude)
        depth = min(N, n_items)
        # what each row leaves out: it needs that many candidates more than N
        left_out = np.zeros(queries.shape[0], dtype=np.int64)
        if removed is not None:
            left_out += removed.size
        if exclude is not None:  # a seen item that is also filtered counts once
            left_out += np.diff(exclude.indptr)
            if removed is not None:
                left_out -= np.asarray((exclude[:, removed] != 0).sum(axis=1)).ravel()
        ids = np.full((queries.shape[0], depth), -1, dtype=np.int64)
        scores = np.full((queries.shape[0], depth), -np.inf, dtype=dtype)
        for rows in _blocks_by_need(depth + left_out):
            found = self._search(searched[rows], int(min(n_items,
                                                         depth + left_out[rows].max())))
            if removed is not None:
                found[np.isin(found, removed)] = -1
            if exclude is not None:  # (row, item) pairs as one key each
                seen_rows, seen_items = exclude[rows].nonzero()
                position = np.arange(rows.size)[:, None]
                found[np.isin(position * n_items + found, seen_rows * n_items + seen_items)
                      & (found >= 0)] = -1
            # the first candidates left, in the index's order, rescored exactly
            kept = np.take_along_axis(found, np.argsort(found < 0, axis=1, kind="stable"),
                                      axis=1)[:, :depth + RESCORE_MARGIN]
            best, chosen = exact_order(queries[rows], targets, kept, dtype)
            scores[rows], ids[rows] = best[:, :depth], chosen[:, :depth]
        # rows the search left short of the items they could list (an unreachable node
        # of the graph, e.g. items sharing one factor): ranked exactly
        short = np.flatnonzero((ids >= 0).sum(axis=1) < np.minimum(depth, n_items - left_out))
        if short.size:
            found, best = top_n(queries[short], targets, N,
                                None if exclude is None else exclude[short], filter_ids)
            ids[short], scores[short] = found, best
        return (ids.astype(np.int32) if n_items <= np.iinfo(np.int32).max else ids), scores

    def _search(self, queries, k):
        faiss = require_faiss()
        if self.method == "hnsw":
            params = faiss.SearchParametersHNSW(efSearch=max(self.ef_search, k))
        elif self.method == "ivf":
            params = faiss.SearchParametersIVF(nprobe=self.nprobe)
        else:
            params = None
        _, found = self.index.search(queries, k, params=params)
        return found
