"""Incremental updates of a fitted model: `partial_fit_users` and `partial_fit_items`,
and what a warm start (`fit(..., warm_start=True)`) goes on from.

The given rows replace those users' (items') interactions. Their factors are solved by
the fit's own half step for that side, against the other side's factors: users against
the item factors the fit's last user step saw (`previous_item_factors_`, as
`recalculate_user`), items against the current user factors. Ids beyond the model grow
it: the factors, the totals and the stored training rows; ids skipped over become rows
without interactions, with the factors the loss gives such a row. The loss is bound
again to the new totals, so that later fold-ins, a save and a load see the updated data.

The model's attributes are replaced by new arrays, never written in place: a reader in
another thread sees each attribute before or after the update, never half written.
"""

from __future__ import annotations

import copy

import numpy as np
import scipy.sparse as sp

from .backend import backend_of, to_host
from .prepared import InteractionTotals
from .validation import check_ids

OTHER = {"user": "item", "item": "user"}


def partial_fit(model, side, ids, rows):
    """Update `model` (a fitted Recommender) in place; see the module's docstring."""
    model._check_fitted()
    ids_name, rows_name = f"{side}ids", f"{side}_{OTHER[side]}s"
    ids = check_ids(ids, None, ids_name)
    if ids.size == 0:
        raise ValueError(f"{ids_name} is empty: give the ids whose {rows_name} to fit")
    unique, counts = np.unique(ids, return_counts=True)
    if (counts > 1).any():
        raise ValueError(f"{ids_name} holds id {int(unique[counts > 1][0])} more than once: "
                         "give each id once, with the one row that replaces its interactions")
    factors = getattr(model, f"{side}_factors_")
    n_rows = max(factors.shape[0], int(ids.max()) + 1)
    n_columns = getattr(model, f"{OTHER[side]}_factors_").shape[0]
    rows = model._rows(ids, rows, n_columns, rows_name, OTHER[side])

    # every new row: the ids given, and those skipped over (no interactions)
    skipped = np.setdiff1d(np.arange(factors.shape[0], n_rows), ids)
    solved_ids = np.concatenate([ids, skipped])
    solved_rows = sp.vstack([rows, sp.csr_matrix((skipped.size, n_columns))], format="csr")

    user_items, totals = _updated_data(model, side, ids, rows, n_rows)
    loss = model.loss_.bind(totals)
    solved = (model._solve_users(solved_rows, loss) if side == "user"
              else model._solve_items(solved_rows, loss))

    new_factors = _placed(factors, n_rows, solved_ids, solved)
    previous = getattr(model, "previous_item_factors_", None)
    if side == "item" and previous is not None:
        # items the users never saw: their new factors stand for them in fold-in
        new = np.flatnonzero(solved_ids >= previous.shape[0])
        previous = _placed(previous, n_rows, solved_ids[new],
                           solved[backend_of(solved).xp.asarray(new)])
    # the data first: a reader that sees the grown factors finds their totals
    model.user_items_, model.interaction_totals_, model.loss_ = user_items, totals, loss
    if side == "item":
        model.previous_item_factors_ = previous
    setattr(model, f"{side}_factors_", new_factors)
    return model


def _placed(factors, n_rows, ids, solved):
    """A new array of `n_rows` rows: `factors`, zeros below them, rows `ids` = `solved`."""
    xp = backend_of(factors).xp
    placed = xp.zeros((n_rows, factors.shape[1]), dtype=factors.dtype)
    placed[:factors.shape[0]] = factors
    placed[xp.asarray(ids)] = solved
    return placed


def _updated_data(model, side, ids, rows, n_rows):
    """(training matrix or None, totals) with rows `ids` of `side` replaced by `rows`."""
    totals = model.interaction_totals_
    shape = (n_rows, totals.shape[1]) if side == "user" else (totals.shape[0], n_rows)
    matrix = model.user_items_
    if matrix is not None:
        oriented = matrix if side == "user" else matrix.T.tocsr()
        oriented = _replaced_rows(oriented, ids, rows, n_rows)
        matrix = oriented if side == "user" else oriented.T.tocsr()
        matrix.sort_indices()
        return matrix, InteractionTotals.of(matrix)
    if not totals.known:  # a model from implicit's file: only the shape is known
        return None, InteractionTotals.unknown(shape)
    counts = getattr(totals, f"{side}_counts")
    existing = ids[ids < counts.size]
    had = existing[counts[existing] > 0]
    if had.size:
        raise ValueError(
            f"this model holds no training interactions (saved with interactions=False), "
            f"so the old interactions of {side} {int(had[0])} (and {had.size - 1} more) "
            f"are unknown and the {OTHER[side]} totals cannot be updated: partial fits "
            f"of such a model may only add {side}s without interactions so far. Save the "
            "model with its interactions to replace them")
    return None, _added_totals(totals, side, ids, rows, shape)


def _replaced_rows(matrix, ids, rows, n_rows):
    """CSR `matrix` grown to `n_rows` rows, rows `ids` replaced by the rows of `rows`."""
    kept = np.ones(matrix.shape[0], dtype=bool)
    kept[ids[ids < matrix.shape[0]]] = False
    old = matrix.tocoo()
    on_kept = kept[old.row]
    new = rows.tocoo()
    return sp.csr_matrix(
        (np.concatenate([old.data[on_kept], new.data]),
         (np.concatenate([old.row[on_kept], ids[new.row]]),
          np.concatenate([old.col[on_kept], new.col]))),
        shape=(n_rows, matrix.shape[1]))


def _added_totals(totals, side, ids, rows, shape):
    """`totals` with rows `ids` of `side` (which had no interactions) given `rows`."""
    other = OTHER[side]
    added = InteractionTotals.of(rows)  # rows x the other side, oriented as users x items
    grown = {}
    for field in ("counts", "sums"):
        mine = np.zeros(shape[0 if side == "user" else 1],
                        dtype=getattr(totals, f"{side}_{field}").dtype)
        mine[:getattr(totals, f"{side}_{field}").size] = getattr(totals, f"{side}_{field}")
        mine[ids] = getattr(added, f"user_{field}")  # the rows' own totals
        grown[f"{side}_{field}"] = mine
        grown[f"{other}_{field}"] = getattr(totals, f"{other}_{field}") + \
            getattr(added, f"item_{field}")
    ranges = [value for value in (totals.value_range, added.value_range) if value is not None]
    value_range = None if not ranges else (min(low for low, _ in ranges),
                                           max(high for _, high in ranges))
    return InteractionTotals(shape=tuple(shape), value_range=value_range, **grown)


def warm_start_point(model, params, shape):
    """What a warm start of fitted `model` on a users x items matrix of `shape` goes on
    from: (sweeps done, the fitted (user, item) factors on the host, a copy of the
    monitor). params["loss"] (checked_params') takes the fitted loss's data-decided
    values where it leaves them to the data."""
    old = (model.user_factors_.shape[0], model.item_factors_.shape[0])
    if shape[0] < old[0] or shape[1] < old[1]:
        raise ValueError(
            f"warm_start: user_items is {shape[0]} x {shape[1]} but the fitted model "
            f"{old[0]} x {old[1]}: users and items keep their rows, so the matrix may "
            "only grow (new users and items appended as rows and columns)")
    if params["factors"] != model.user_factors_.shape[1]:
        raise ValueError(f"warm_start needs factors={model.user_factors_.shape[1]}, as "
                         f"fitted; got {params['factors']}")
    loss = params["loss"]
    if loss.name == model.loss_.name:
        for name, declared in loss.hyperparameters.items():
            if declared.from_data and getattr(loss, name) is None:
                setattr(loss, name, getattr(model.loss_, name))
    monitor = getattr(model, "monitor_", None)
    done = int(monitor.rows[-1]["sweep"]) if monitor is not None and monitor.rows else 0
    return done, (to_host(model.user_factors_), to_host(model.item_factors_)), \
        copy.deepcopy(monitor)
