"""Serving a fitted model, as `implicit`'s recommenders do: recommend, similar_items,
similar_users, recalculate_user/item (fold-in), partial_fit_users/items (rgals.updates),
explain, user_norms/item_norms, recommend_all and save_recommendations (rgals.serving),
the popularity fallback for users and items without interactions, and the filtering of
seen items. `Recommender` needs only the
fitted attributes (user_factors_, item_factors_, loss_, user_items_,
interaction_totals_): ALSSolver, a loaded model and the Dask model (on its gathered
factors) share it."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from .ann import ApproximateIndex
from .backend import backend_of, to_host
from .ranking import normalized_rows, row_norm_bound, row_norms, top_n
from .serving import BATCH_USERS, explain, recommend_all, save_recommendations
from .solve import solve_rows
from .updates import partial_fit
from .types import FilePath, IdMap, Ids, Matrix, Ranked
from .validation import check_ids, check_integer, check_interactions, check_value_range


class NotFittedError(ValueError, AttributeError):
    """The model is used before `fit` (or `rgals.load`)."""


class Recommender:
    """What a fitted model serves; the subclass fits (or loads) the attributes."""

    @property
    def user_factors(self):
        """Alias of `user_factors_`, for code written against `implicit`."""
        self._check_fitted()
        return self.user_factors_

    @property
    def item_factors(self):
        """Alias of `item_factors_`, for code written against `implicit`."""
        self._check_fitted()
        return self.item_factors_

    def _check_fitted(self):
        if getattr(self, "item_factors_", None) is None:
            raise NotFittedError(f"this {type(self).__name__} is not fitted yet: call "
                                 "fit(user_items) or rgals.load(directory) first")

    def _rows(self, ids, rows, n_columns, name, other):
        """Interaction rows for `ids`: the given matrix, checked, or the training rows."""
        if rows is None:
            if self.user_items_ is None:
                raise ValueError(
                    f"this model holds no training interactions (it was saved without "
                    f"them, or read from implicit's file): pass {name}, one row per "
                    f"requested id, as implicit takes it")
            return self.user_items_[ids] if other == "item" else self.user_items_.T.tocsr()[ids]
        rows = check_interactions(rows, name, allow_negative=self.loss_.allows_negative,
                                  loss_name=self.loss_.name, allow_empty=True)
        if rows.nnz:  # values the fit would refuse fold in to nothing, as they fit to nothing
            values = abs(rows.data)
            check_value_range((float(values.min()), float(values.max())),
                              self.item_factors_.dtype,
                              max(1.0, getattr(self.loss_, "alpha", 0.0) + 0.5), name)
        if rows.shape[0] == len(ids) and rows.shape[1] < n_columns:
            # as in implicit: columns the matrix does not reach (ids added since it was
            # built, e.g. by partial_fit_items) are ones without interactions
            rows.resize((len(ids), n_columns))
        if rows.shape != (len(ids), n_columns):
            raise ValueError(
                f"{name} has shape {rows.shape}; expected ({len(ids)}, {n_columns}): one row "
                f"per requested id (as in implicit) and one column per {other} of the fitted "
                f"model. To use the training matrix `X`, pass X[ids]")
        return rows

    def recalculate_user(self, userid: Ids, user_items: Matrix) -> np.ndarray:
        """Factors of users (new ones too) from their interactions, by the exact user step.

        `user_items` has one row per id in `userid` and one column per item. The step
        solves against `previous_item_factors_`, as the fit's last user step did: a
        training user's own row gives back its fitted factors (up to the fit's CG
        tolerance; exactly with solver="cholesky").
        """
        self._check_fitted()
        ids = check_ids(userid, None, "userid")
        rows = self._rows(ids, user_items, self.item_factors_.shape[0], "user_items", "item")
        factors = self._solve_users(rows, self.loss_)
        return factors[0] if _one(userid) else factors

    def recalculate_item(self, itemid: Ids, item_users: Matrix) -> np.ndarray:
        """Factors of items (new ones too) from their users, by the exact item step.

        For RGx the other items' sum sigma_Q is held fixed.
        """
        self._check_fitted()
        ids = check_ids(itemid, None, "itemid")
        rows = self._rows(ids, item_users, self.user_factors_.shape[0], "item_users", "user")
        factors = self._solve_items(rows, self.loss_)
        return factors[0] if _one(itemid) else factors

    def partial_fit_users(self, userids: Ids, user_items: Matrix) -> Recommender:
        """Replace the interactions of users `userids` by the rows of `user_items` and
        solve their factors, as implicit's `partial_fit_users`: one row per id, one
        column per item (fewer columns: the rest empty). Ids beyond the model add users
        (ids skipped over become users without interactions); the stored training
        rows, the totals and the loss follow. The users are solved by the fit's user
        step against `previous_item_factors_`, as `recalculate_user` solves them; other
        users' and the items' factors stay. Returns self (rgals.updates)."""
        return partial_fit(self, "user", userids, user_items)

    def partial_fit_items(self, itemids: Ids, item_users: Matrix) -> Recommender:
        """Replace the interactions of items `itemids` by the rows of `item_users` (one
        row per id, one column per user) and solve their factors by the fit's item step
        against the current user factors: `partial_fit_users` for the other side."""
        return partial_fit(self, "item", itemids, item_users)

    def _folded_against(self):
        """The item factors the fit's last user step saw: users fold in against them."""
        items = getattr(self, "previous_item_factors_", None)
        return self.item_factors_ if items is None else items

    def _solve_users(self, rows, loss):
        """Factors of users with interactions `rows` by `loss`'s user step."""
        return self._fold_in(loss.user_systems(to_host(self._folded_against()), rows))

    def _solve_items(self, rows, loss):
        """Factors of items with interactions `rows` (items x users) by `loss`'s item
        step; for RGx the other items' sum sigma_Q is held fixed."""
        systems = loss.item_systems(to_host(self.user_factors_), rows)
        if systems.coupling is not None:
            # the item side has unit scale, so the fixed coupling folds into rhs
            item_sum = to_host(self.item_factors_).sum(axis=0, dtype=np.float64)
            systems = dataclasses.replace(systems, coupling=None,
                                          rhs=systems.rhs + systems.coupling @ item_sum)
        return self._fold_in(systems)

    def _fold_in(self, systems):
        factors = np.zeros((systems.interactions.shape[0], self.item_factors_.shape[1]),
                           dtype=self.item_factors_.dtype)
        solve_rows(systems, factors, solver="cholesky")
        return self._on_backend(factors)

    def _on_backend(self, array):
        """A host array moved to where this model's factors live."""
        return backend_of(self.item_factors_).put(array)

    def _factor_rows(self, factors, ids):
        return factors[backend_of(factors).xp.asarray(ids)]

    def recommend(self, userid: Ids, user_items: Matrix | None = None, N: int = 10,
                  filter_already_liked_items: bool = True, filter_items: Ids | None = None,
                  recalculate_user: bool = False, items: Ids | None = None) -> Ranked:
        """Top-N items for one user id or a batch, as `(ids, scores)`.

        `user_items` (one row per requested user, as in `implicit`) gives the items to
        filter and, with `recalculate_user=True`, the interactions to fold in; without it
        the training interactions are used (a model saved without them needs
        `user_items` for either). `items` ranks only those item ids (each counted once)
        and returns every one of them: the user's liked ones last, with score -inf (as
        `implicit` lists them); `filter_items` removes ids. A batch returns arrays of
        shape (len(userid), min(N, number of candidate items)); where fewer items are
        left for a user, the row is padded with id -1 and score -inf.

        A user without any interaction (in training, or in the row folded in with
        `recalculate_user=True`) has zero factors and scores every item 0: such a user
        gets the most popular items of the training data instead of ids 0, 1, 2, ...,
        with score 0.
        """
        return self._recommend(userid, user_items, N, filter_already_liked_items,
                               filter_items, recalculate_user, items, top_n)

    def _recommend(self, userid, user_items, N, filter_already_liked_items, filter_items,
                   recalculate_user, items, rank):
        """`recommend`, ranking with `rank` (rgals.ranking.top_n's signature: the exact
        ranking, or an approximate index's)."""
        self._check_fitted()
        n_users, n_items = self.user_factors_.shape[0], self.item_factors_.shape[0]
        ids = check_ids(userid, None if recalculate_user else n_users, "userid")
        N = check_integer(N, "N", 1)
        rows = None
        if filter_already_liked_items or recalculate_user:
            if user_items is None and recalculate_user:
                raise ValueError("recalculate_user=True needs user_items: the interactions "
                                 "of the users to fold in")
            rows = self._rows(ids, user_items, n_items, "user_items", "item")
        queries = (self.recalculate_user(ids, rows) if recalculate_user
                   else self._factor_rows(self.user_factors_, ids))
        result = rank(queries, self.item_factors_, N, exclude=rows if
                      filter_already_liked_items else None,
                      filter_ids=filter_items, candidates=items,
                      largest_norm=self._largest_item_norm())
        # cold: zero factors, from no interactions in the rows folded in or in training
        counts = self.interaction_totals_.user_counts
        counts = np.diff(rows.indptr) if recalculate_user else (
            None if counts is None else counts[ids])
        cold = (np.empty(0, int) if counts is None or self._item_counts() is None
                else np.flatnonzero(counts == 0))
        if cold.size:
            result = self._most_popular(
                result, cold, N, filter_items, items,
                exclude=rows[cold] if filter_already_liked_items else None)
        return _single(result) if _one(userid) else result

    def recommend_all(self, N: int = 10, user_items: Matrix | None = None,
                      batch_size: int = BATCH_USERS, show_progress: bool = True,
                      **options: object) -> Iterator[tuple[np.ndarray, np.ndarray, np.ndarray]]:
        """Every user's top N, as (userids, ids, scores) for consecutive blocks of
        `batch_size` users: `recommend` on each block (`options`: its filter_items,
        items, filter_already_liked_items, recalculate_user; `user_items`: the matrix
        of every user, where the model holds no training rows), with one progress bar.
        Memory stays that of one block (`recommend(np.arange(n))` returns all at once)."""
        return recommend_all(self, N, user_items, batch_size, show_progress, **options)

    def save_recommendations(self, path: FilePath, N: int = 10, user_ids: IdMap | None = None,
                             item_ids: IdMap | None = None, overwrite: bool = False,
                             **options: object) -> Path:
        """Stream every user's top N into the tab-separated file `path` (`user, rank,
        item, score` with a header; `user_ids`/`item_ids` name the rows, e.g. an
        Interactions' maps), written to a temporary name and renamed at the end; an
        existing file is kept unless `overwrite`. `options`: those of recommend_all."""
        return save_recommendations(self, path, N, user_ids, item_ids, overwrite, **options)

    def explain(self, userid: int, user_items: Matrix | None, itemid: int,
                user_weights: tuple | None = None, N: int = 10) -> tuple[float, list, tuple]:
        """Why the user would get `itemid`, as implicit's ALS explains it: the score of
        the user folded in from `user_items` (the user's row, or the matrix of every
        user as implicit takes it; None: the training row) splits exactly along the
        fold-in system A x = b: item k's share is b_k y_t^T A^-1 y_k. Returns (score,
        contributions, user_weights): the N largest (itemid, share) of the user's
        items, then for RG2/RGx (-1, share) of the loss's term over every item (the
        softmax's normaliser), so that all shares add up to the score; user_weights,
        the Cholesky factor of A, makes the next call for this user cheaper."""
        return explain(self, userid, user_items, itemid, user_weights, N)

    def approximate_index(self, method: str = "hnsw", **settings: object) -> ApproximateIndex:
        """An approximate top-N index over this model's item factors (faiss: `pip
        install 'rgals[ann]'`), whose `recommend` takes this model's arguments and gives
        its shapes; `method` "hnsw", "ivf" or "flat" and its `settings`: see
        rgals.ann. The exact `recommend` stays this model's own."""
        return ApproximateIndex(self, method, **settings)

    @property
    def user_norms(self):
        """|p_u| of every user (as implicit's), computed once per factor array."""
        return self._cached("user_norms", self.user_factors_, row_norms)

    @property
    def item_norms(self):
        """|q_i| of every item (as implicit's), computed once per factor array."""
        return self._cached("item_norms", self.item_factors_, row_norms)

    def _largest_item_norm(self):
        """The item factors' largest norm (a pass over every item would cost as much
        again as scoring a single user)."""
        return self._cached("largest_item_norm", self.item_factors_, row_norm_bound)

    def _cached(self, name, factors, compute):
        """compute(factors), kept until the factor array is replaced (a fit, a partial
        fit): one tuple swapped in whole, so threads serving at once read it safely."""
        self._check_fitted()
        cache = self.__dict__.setdefault("_cache", {})
        cached = cache.get(name)
        if cached is None or cached[0] is not factors:
            cached = cache[name] = (factors, compute(factors))
        return cached[1]

    def _item_counts(self):
        """Training interactions of each item (popularity, and which items have none);
        None when unknown (a model from implicit's file)."""
        return self.interaction_totals_.item_counts

    def _most_popular(self, result, rows, N, filter_items, items, exclude=None):
        """`result` with rows `rows` (users or items without interactions) ranked by
        popularity, score 0; `exclude`: CSR of items not to list, one row per row of
        `rows`."""
        popularity = self._item_counts().astype(np.float64)
        popular, popular_scores = top_n(np.ones((rows.size, 1)), popularity[:, None], N,
                                        exclude=exclude, filter_ids=filter_items,
                                        candidates=items)
        ids, scores = (np.array(to_host(array)) for array in result)
        # score 0 for each listed item; -inf where none is left, or for an excluded candidate
        ids[rows] = popular
        scores[rows] = np.where(np.isfinite(popular_scores), 0.0, -np.inf)
        return ids, scores

    def similar_items(self, itemid: Ids, N: int = 10, recalculate_item: bool = False,
                      item_users: Matrix | None = None, filter_items: Ids | None = None,
                      items: Ids | None = None) -> Ranked:
        """The N items most similar (cosine of factors) to each given item, itself included.

        Items without any training interaction all share one factor (the loss's answer to
        no evidence), so they would be cosine 1 to each other: unless `items` names the
        candidates, they are never listed for another item, and such an item's own list
        is itself, then the most popular items (score 0).
        """
        self._check_fitted()
        n_items = self.item_factors_.shape[0]
        ids = check_ids(itemid, None if recalculate_item else n_items, "itemid")
        N = check_integer(N, "N", 1)
        queries = (self.recalculate_item(ids, item_users) if recalculate_item
                   else self._factor_rows(self.item_factors_, ids))
        counts = self._item_counts()
        if counts is None:  # unknown: every item is ranked
            counts = np.ones(n_items, dtype=np.int64)
        cold = np.flatnonzero(counts == 0)
        removed = filter_items
        if items is None and cold.size:
            removed = cold if filter_items is None else np.union1d(
                check_ids(filter_items, n_items, "filter_items"), cold)
        result = top_n(normalized_rows(queries), normalized_rows(self.item_factors_), N,
                       filter_ids=removed, candidates=items, largest_norm=1.0)
        if not recalculate_item:
            cold_queries = np.flatnonzero(counts[ids] == 0) if items is None else []
            if len(cold_queries):
                result = self._most_popular(result, cold_queries, N, removed, None)
        # a fitted item leads its own list, also when its factors are folded in again
        result = _itself_first(result, ids, n_items, filter_items, items)
        return _single(result) if _one(itemid) else result

    def similar_users(self, userid: Ids, N: int = 10, filter_users: Ids | None = None,
                      users: Ids | None = None) -> Ranked:
        """The N users most similar (cosine of factors) to each given user, itself included."""
        self._check_fitted()
        n_users = self.user_factors_.shape[0]
        ids = check_ids(userid, n_users, "userid")
        result = top_n(normalized_rows(self._factor_rows(self.user_factors_, ids)),
                       normalized_rows(self.user_factors_), check_integer(N, "N", 1),
                       filter_ids=filter_users, candidates=users, largest_norm=1.0)
        result = _itself_first(result, ids, n_users, filter_users, users)
        return _single(result) if _one(userid) else result

    # -- export ------------------------------------------------------------------------


def _itself_first(result, own, n_targets, filtered, candidates):
    """`result` of a cosine search with each query's own id `own` first, score 1 (where
    the filter and candidates allow it): near-parallel neighbours can round above a
    factor's cosine with itself, or crowd it out of the list on equal rounded scores."""
    allowed = own < n_targets  # a new item folded in is not among the targets
    own = np.minimum(own, n_targets - 1)
    if filtered is not None:
        allowed &= ~np.isin(own, check_ids(filtered, n_targets, "filter ids"))
    if candidates is not None:
        allowed &= np.isin(own, check_ids(candidates, n_targets, "candidate ids"))
    ids, scores = (np.array(to_host(array)) for array in result)
    rows = np.flatnonzero(allowed)
    # the others in their order, itself (if listed) moved out to make room at the front
    order = np.argsort(ids[rows] == own[rows, None], axis=1, kind="stable")[:, :-1]
    ids[rows, 1:] = np.take_along_axis(ids[rows], order, axis=1)
    scores[rows, 1:] = np.take_along_axis(scores[rows], order, axis=1)
    ids[rows, 0], scores[rows, 0] = own[rows], 1.0
    return ids, scores


def _one(ids):
    """Whether a query names one id (a number, or a 0-d array): a single answer."""
    return np.ndim(ids) == 0


def _single(result):
    ids, scores = result
    return ids[0], scores[0]
