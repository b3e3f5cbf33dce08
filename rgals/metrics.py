"""Top-K ranking metrics over a full ranking of all items (design.md 3).

Each evaluated user's items are ranked by the score user_factors[u] . item_factors[i];
the user's training items are masked (never ranked) and users with no test items are
skipped. With rel_k = 1 when the item at rank k (starting at 1) is one of the user's test
items and hits@K = sum_{k<=K} rel_k (binary gain):

    NDCG@K      = DCG@K / IDCG@K, DCG@K = sum_{k<=K} rel_k / log2(k + 1), IDCG@K the DCG
                  of an ideal ranking with min(K, |test|) hits first
    Recall@K    = hits@K / |test|
    Precision@K = hits@K / K
    MRR@K       = 1 / rank of the first hit if that rank is <= K, else 0
    MAP@K       = sum_{k<=K} Precision@k * rel_k / min(K, |test|)

and each is averaged over the evaluated users. |test| counts every test item of the user,
including items that are also training items: those are masked, so they can never be hit
and they cap what the user can score (as in the usual protocol, which assumes disjoint
splits). K is not shortened when fewer than K items are left after masking. Equal scores
rank the lower item id first.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np
import scipy.sparse as sp
from tqdm.auto import tqdm

from .backend import array_module
from .ranking import top_lists
from .validation import (check_choice, check_ids, check_integer, check_interactions,
                         check_numeric)
from .types import Ids, Matrix, Metrics

if TYPE_CHECKING:  # rgals.als imports this module
    from .als import ALSSolver

METRICS = ("ndcg", "recall", "precision", "mrr", "map")


def ranking_metrics(user_factors: np.ndarray, item_factors: np.ndarray, test: Matrix,
                    train: Matrix | None = None, K: int | Sequence[int] = (10, 20),
                    metrics: Sequence[str] = METRICS, users: Ids | None = None,
                    batch_users: int | None = None, show_progress: bool = False) -> Metrics:
    """Average ranking metrics of the scores user_factors @ item_factors.T.

    test, train: scipy.sparse matrices of shape (n_users, n_items), any format; a nonzero
    entry marks a relevant test item / a training item to mask. K: one cutoff or several;
    metrics: names from METRICS; users: optional user ids to restrict the evaluation to
    (users without test items among them are still skipped). batch_users: users ranked
    together by one thread (default 256, see rgals.ranking.top_lists); memory stays at
    about 2**17 scores per thread whatever the sizes. show_progress: a progress bar over
    the users ranked.

    Returns {"<metric>@<K>": float, ...} ordered by metric then K, plus "users": the number
    of users evaluated.
    """
    user_factors = _check_factors(user_factors, "user_factors")
    item_factors = _check_factors(item_factors, "item_factors")
    if user_factors.shape[1] != item_factors.shape[1]:
        raise ValueError(f"user_factors has {user_factors.shape[1]} factors per row but "
                         f"item_factors has {item_factors.shape[1]}; both must come from the "
                         "same model")
    dtype = np.result_type(user_factors.dtype, item_factors.dtype)
    user_factors = user_factors.astype(dtype, copy=False)
    item_factors = item_factors.astype(dtype, copy=False)
    n_users, n_items = user_factors.shape[0], item_factors.shape[0]
    if n_items == 0:
        raise ValueError("item_factors has no rows: there are no items to rank")
    cutoffs = check_cutoffs(K)
    names = _check_metrics(metrics)
    test = _check_split(test, "test", (n_users, n_items))
    if test is None:
        raise ValueError("test has no nonzero entries: no user has a test item to evaluate")
    train = None if train is None else _check_split(train, "train", (n_users, n_items))

    n_test = np.diff(test.indptr)
    if users is None:
        evaluated = np.flatnonzero(n_test)
    else:
        evaluated = np.unique(check_ids(users, n_users, "users"))
        evaluated = evaluated[n_test[evaluated] > 0]
        if evaluated.size == 0:
            raise ValueError("none of the given users has a test item; pass users with at "
                             "least one nonzero entry in their test row, or users=None")

    # a user cannot have more than n_items hits, so a cutoff beyond n_items needs no
    # longer top list (nor a longer ideal DCG): metrics @K read column min(K, depth) - 1
    depth = min(cutoffs[-1], n_items)
    queries = user_factors[array_module(user_factors).asarray(evaluated)]
    with tqdm(total=int(evaluated.size), unit="user", desc="evaluating",
              disable=not show_progress, leave=False) as bar:
        _, ids = top_lists(queries, item_factors, depth,
                           mask=None if train is None else train[evaluated],
                           batch=None if batch_users is None else
                           check_integer(batch_users, "batch_users", 1), progress=bar.update)
    # rel_k without a dense users x items array: test entries as sorted keys
    # user * n_items + item (CSR with sorted indices is already in that order)
    keys = np.repeat(np.arange(n_users, dtype=np.int64), n_test) * n_items + test.indices
    wanted = evaluated[:, None] * n_items + ids
    position = np.minimum(np.searchsorted(keys, wanted), keys.size - 1)
    # id -1 marks a slot left empty (K beyond the items left after masking)
    rel = ((ids >= 0) & (keys[position] == wanted)).astype(np.float64)
    values = _user_metrics(rel, n_test[evaluated], names, cutoffs)

    means = values.mean(axis=0)
    result = {}
    column = 0
    for name in names:
        for k in cutoffs:
            result[f"{name}@{k}"] = float(means[column])
            column += 1
    result["users"] = int(evaluated.size)
    return result


def _user_metrics(rel, relevant, names, cutoffs):
    """Per-user metric values (rows x (metric, K) columns) from the 0/1 relevance of each rank."""
    depth = rel.shape[1]
    ranks = np.arange(1, depth + 1, dtype=np.float64)
    discount = 1.0 / np.log2(ranks + 1.0)
    ideal = np.cumsum(discount)
    relevant = relevant.astype(np.int64)
    hits = np.cumsum(rel, axis=1)
    dcg = np.cumsum(rel * discount, axis=1)
    average_precision = np.cumsum(rel * hits / ranks, axis=1)
    first = np.where(rel.any(axis=1), np.argmax(rel, axis=1) + 1.0, np.inf)  # no hit: 1/inf
    values = np.empty((rel.shape[0], len(names) * len(cutoffs)))
    column = 0
    for name in names:
        for k in cutoffs:
            last = min(k, depth) - 1  # ranks past depth (> n_items) hold no item
            capped = np.minimum(relevant, k)  # <= n_items, so <= depth
            if name == "ndcg":
                values[:, column] = dcg[:, last] / ideal[capped - 1]
            elif name == "recall":
                values[:, column] = hits[:, last] / relevant
            elif name == "precision":
                values[:, column] = hits[:, last] / k
            elif name == "mrr":
                values[:, column] = np.where(first <= k, 1.0 / first, 0.0)
            else:
                values[:, column] = average_precision[:, last] / capped
            column += 1
    return values


def evaluate(model: ALSSolver, test: Matrix, train: Matrix | None = None,
             K: int | Sequence[int] = (10, 20), metrics: Sequence[str] = METRICS,
             users: Ids | None = None) -> Metrics:
    """ranking_metrics of a fitted rgals.ALSSolver; masks model.user_items_ when train is None."""
    if not callable(getattr(model, "_check_fitted", None)):
        raise TypeError(f"model must be a fitted rgals.ALSSolver; got {type(model).__name__}")
    model._check_fitted()
    if hasattr(model, "_served"):  # a DaskALSSolver: its factors gathered once
        model = model._served("evaluate")
    if train is None and model.user_items_ is None:
        raise ValueError("this model holds no training interactions (it was saved without "
                         "them, or read from implicit's file): pass train=, the training "
                         "matrix whose items are masked")
    return ranking_metrics(model.user_factors_, model.item_factors_, test,
                           model.user_items_ if train is None else train, K=K,
                           metrics=metrics, users=users)


def _check_factors(factors, name):
    if sp.issparse(factors):
        raise TypeError(f"{name} must be a dense 2-D numpy array (rows x factors); got a "
                        "scipy.sparse matrix")
    xp = array_module(factors)  # CuPy factors are ranked on their device
    array = xp.asarray(factors)
    if array.ndim != 2:
        raise ValueError(f"{name} must be 2-D (rows x factors); got an array of shape "
                         f"{array.shape}")
    check_numeric(array.dtype, name, "factors")
    if array.dtype not in (np.float32, np.float64):
        array = array.astype(np.float64)  # the kernel takes float32/64; it writes -inf
    bad = ~xp.isfinite(array)
    if bool(bad.any()):
        row = int(xp.flatnonzero(bad.any(axis=1))[0])
        raise ValueError(f"{name} holds {int(bad.sum())} NaN or infinite values (the first in "
                         f"row {row}); the model diverged or was not fitted correctly")
    return array


def check_cutoffs(K):
    many = np.ndim(K) > 0 if not isinstance(K, (str, bytes)) else False
    cutoffs = list(K) if many else [K]
    if not cutoffs:
        raise ValueError("K is empty; pass a cutoff such as K=10 or several, K=(10, 20)")
    return sorted({check_integer(k, "K", 1) for k in cutoffs})


def _check_metrics(metrics):
    if isinstance(metrics, str):
        names = [metrics]
    else:
        try:
            names = list(metrics)
        except TypeError:
            raise TypeError(f"metrics must be a metric name or a sequence of them, such as "
                            f"('ndcg', 'recall'); got {metrics!r}") from None
    if not names:
        raise ValueError(f"metrics is empty; use some of {', '.join(map(repr, METRICS))}")
    return list(dict.fromkeys(check_choice(name, "metric", METRICS) for name in names))


def _check_split(matrix, name, shape):
    """Canonical CSR of a test/train split, or None when it has no nonzero entries."""
    if not sp.issparse(matrix):
        raise TypeError(f"{name} must be a scipy.sparse matrix or array (users x items, "
                        f"nonzero = {'relevant' if name == 'test' else 'masked'}); got "
                        f"{type(matrix).__name__}. Convert it with scipy.sparse.csr_matrix")
    if tuple(matrix.shape) != shape:
        raise ValueError(f"{name} has shape {tuple(matrix.shape)}; expected {shape} "
                         "(n_users, n_items), the rows of user_factors and item_factors")
    if matrix.count_nonzero() == 0:
        return None
    return check_interactions(matrix, name, allow_negative=True)


def parse_metric(text):
    """("ndcg", 20) from "ndcg@20": a metric name of METRICS and a cutoff >= 1."""
    name, _, k = str(text).partition("@")
    if name not in METRICS or not (k.isascii() and k.isdigit()) or int(k) < 1:
        raise ValueError(f"validation_metric must look like 'ndcg@20': one of "
                         f"{', '.join(METRICS)}, '@', a cutoff >= 1; got {text!r}")
    return name, int(k)
