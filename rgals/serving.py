"""Serving beyond one request: recommendations for every user in blocks (to iterate or
to stream into a file), and implicit's `explain`. Each works on any fitted Recommender
through its public methods and fold-in systems."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import scipy.linalg
import scipy.sparse as sp
from tqdm.auto import tqdm

from .backend import to_host
from .files import write_atomic
from .validation import check_ids, check_integer, check_interactions

BATCH_USERS = 8192  # users per block: a block's lists take N x 12 bytes per user


def recommend_all(model, N=10, user_items=None, batch_size=BATCH_USERS, show_progress=True,
                  **options):
    """Yield (userids, ids, scores) for consecutive blocks of `batch_size` users, every
    user of the model once, by `model.recommend(userids, user_items[userids], N,
    **options)`: memory stays that of one block."""
    model._check_fitted()
    n_users, n_items = model.user_factors_.shape[0], model.item_factors_.shape[0]
    batch_size = check_integer(batch_size, "batch_size", 1)
    N = check_integer(N, "N", 1)
    if user_items is not None:
        user_items = check_interactions(user_items, "user_items", allow_negative=True,
                                        shape=(n_users, n_items), allow_empty=True)
    with tqdm(total=n_users, unit="user", desc="recommending",
              disable=not show_progress) as bar:
        for start in range(0, n_users, batch_size):
            users = np.arange(start, min(start + batch_size, n_users))
            rows = None if user_items is None else user_items[users]
            ids, scores = model.recommend(users, rows, N=N, **options)
            bar.update(users.size)
            yield users, ids, scores


def save_recommendations(model, path, N=10, user_ids=None, item_ids=None, overwrite=False,
                         **options):
    """Write every user's top N to `path` as tab-separated `user, rank, item, score` lines
    (with a header), streamed block by block from `recommend_all` (`options`: its own
    and recommend's), to a temporary name renamed into place at the end. `user_ids`,
    `item_ids`: the original ids of the rows (rgals.data.Interactions' maps; default:
    the row numbers). Padding (-1, when fewer than N items are left) is left out."""
    path = Path(path)
    if path.exists() and not overwrite:
        raise FileExistsError(f"{path} exists: pass overwrite=True (--overwrite on the "
                              "command line) to replace it")
    users = np.arange(model.user_factors_.shape[0]) if user_ids is None else \
        np.asarray(user_ids)
    items = np.arange(model.item_factors_.shape[0]) if item_ids is None else \
        np.asarray(item_ids)
    if (len(users), len(items)) != (model.user_factors_.shape[0],
                                    model.item_factors_.shape[0]):
        raise ValueError(f"the id maps ({len(users)} users, {len(items)} items) do not match "
                         f"the model ({model.user_factors_.shape[0]} x "
                         f"{model.item_factors_.shape[0]})")

    def write(file):
        file.write(HEADER.encode())
        for rows, ids, scores in recommend_all(model, N, **options):
            file.write(recommendation_lines(users[rows], ids, scores, items).encode())

    write_atomic(path, write)
    return path


HEADER = "user\trank\titem\tscore\n"


def recommendation_lines(users, ids, scores, item_ids):
    """`user, rank, item, score` lines (tab-separated, each ending in a newline) of the
    lists `ids`, `scores` (one row per user of `users`; padding -1 left out), with the
    items named by `item_ids`."""
    listed = ids >= 0
    user = np.repeat(users, listed.sum(axis=1))
    rank = np.nonzero(listed)[1] + 1
    return "".join(f"{u}\t{r}\t{i}\t{s:.6g}\n" for u, r, i, s in
                   zip(user, rank, item_ids[ids[listed]], scores[listed]))


def explain(model, userid, user_items, itemid, user_weights=None, N=10):
    """implicit's `explain` for a fitted model: see Recommender.explain."""
    model._check_fitted()
    user = _scalar_id(userid, None, "userid")
    item = _scalar_id(itemid, model.item_factors_.shape[0], "itemid")
    N = check_integer(N, "N", 1)
    shape = getattr(user_items, "shape", ())
    if len(shape) == 2 and shape[0] > 1:  # the matrix of every user, as implicit takes it
        if user >= shape[0]:
            raise IndexError(f"userid {user} is out of range: user_items has {shape[0]} "
                             "rows (give the user's row alone, or the matrix of every user)")
        # the user's row alone (checked by _rows below, not the whole matrix)
        user_items = (sp.csr_matrix(user_items) if sp.issparse(user_items)
                      else user_items)[[user]]
    elif user_items is None and user >= model.user_factors_.shape[0]:
        raise IndexError(f"userid {user} is out of range: the model has "
                         f"{model.user_factors_.shape[0]} users (pass user_items, the "
                         "user's row, to explain a new user)")
    row = model._rows(np.array([user]), user_items, model.item_factors_.shape[0],
                      "user_items", "item")
    others = to_host(model._folded_against()).astype(np.float64)
    systems = model.loss_.user_systems(others, row)
    liked = np.asarray(row.indices)
    seen = others[liked]
    if user_weights is None:
        pair_gram = np.zeros(liked.size) if systems.pair_gram is None else \
            np.asarray(systems.pair_gram, dtype=np.float64)
        system = (float(systems.scale[0]) * np.asarray(systems.gram, dtype=np.float64)
                  + (seen * pair_gram[:, None]).T @ seen
                  + float(systems.reg[0]) * np.eye(seen.shape[1]))
        user_weights = scipy.linalg.cho_factor(system)
    # the fold-in user's factors are A^-1 b, so its score splits along b's terms
    weighted = scipy.linalg.cho_solve(user_weights,
                                      to_host(model.item_factors_[item]).astype(np.float64))
    shares = np.asarray(systems.pair_rhs, dtype=np.float64) * (seen @ weighted)
    shared = float(systems.scale[0]) * float(np.asarray(systems.rhs, np.float64) @ weighted)
    top = np.argsort(-shares, kind="stable")[:N]
    contributions = [(int(liked[k]), float(shares[k])) for k in top]
    if shared != 0.0:
        contributions.append((-1, shared))
    return float(shares.sum() + shared), contributions, user_weights


def _scalar_id(value, upper, name):
    if np.ndim(value) != 0:
        raise ValueError(f"{name} must be one id; got {np.shape(value)} of them")
    return int(check_ids(value, upper, name)[0])
