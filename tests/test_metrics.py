"""ranking_metrics and evaluate against a plain brute force over dense scores (design.md 3)."""

import math

import numpy as np
import pytest
import scipy.sparse as sp

import rgals.ranking as ranking_module
from rgals import ALSSolver, NotFittedError
from rgals.metrics import METRICS, evaluate, ranking_metrics


def brute_force(P, Q, test, train, cutoffs, users=None):
    """Every metric straight from its definition: dense scores, one sort per user, loops."""
    scores = P @ Q.T
    relevant_items = test.toarray() != 0
    masked = np.zeros_like(relevant_items) if train is None else train.toarray() != 0
    totals = {f"{name}@{k}": 0.0 for name in METRICS for k in cutoffs}
    evaluated = 0
    for user in range(P.shape[0]):
        if users is not None and user not in users:
            continue
        relevant = set(np.flatnonzero(relevant_items[user]).tolist())
        if not relevant:
            continue
        evaluated += 1
        candidates = [item for item in range(Q.shape[0]) if not masked[user, item]]
        ranking = sorted(candidates, key=lambda item: -scores[user, item])
        for k in cutoffs:
            rel = [1 if item in relevant else 0 for item in ranking[:k]]
            hits = sum(rel)
            dcg = sum(r / math.log2(rank + 1) for rank, r in enumerate(rel, start=1))
            idcg = sum(1 / math.log2(rank + 1) for rank in range(1, min(k, len(relevant)) + 1))
            first = [rank for rank, r in enumerate(rel, start=1) if r]
            precisions = [sum(rel[:rank]) / rank for rank, r in enumerate(rel, start=1) if r]
            totals[f"ndcg@{k}"] += dcg / idcg
            totals[f"recall@{k}"] += hits / len(relevant)
            totals[f"precision@{k}"] += hits / k
            totals[f"mrr@{k}"] += 1 / first[0] if first else 0.0
            totals[f"map@{k}"] += sum(precisions) / min(k, len(relevant))
    return {key: total / evaluated for key, total in totals.items()}, evaluated


def random_problem(rng, n_users, n_items, factors, test_density, train_density):
    """Continuous random factors (no ties); some users without test items; test and train
    drawn independently, so they overlap."""
    P = rng.standard_normal((n_users, factors))
    Q = rng.standard_normal((n_items, factors))
    test = (rng.random((n_users, n_items)) < test_density) * rng.integers(1, 4, (n_users, n_items))
    test[rng.choice(n_users, size=max(1, n_users // 5), replace=False)] = 0
    train = (rng.random((n_users, n_items)) < train_density) * rng.random((n_users, n_items))
    return P, Q, sp.coo_matrix(test), sp.csc_matrix(train)


def assert_close(result, expected):
    assert set(result) == set(expected)
    for key, value in expected.items():
        assert abs(result[key] - value) <= 1e-12, (key, result[key], value)


@pytest.mark.parametrize("shape, cutoffs", [
    ((40, 30, 5, 0.15, 0.3), (1, 5, 10)),
    ((25, 8, 3, 0.3, 0.5), (2, 7, 12)),      # K beyond the items left after masking
    ((60, 120, 8, 0.05, 0.1), (3, 20, 50)),
    ((7, 4, 2, 0.5, 0.4), (4,)),             # K == n_items
    ((9, 5, 2, 0.5, 0.3), (3, 6, 10**9)),    # K > n_items: no top list of length K
])
def test_matches_brute_force(rng, shape, cutoffs, monkeypatch):
    P, Q, test, train = random_problem(rng, *shape)
    test_dense, train_dense = test.toarray() != 0, train.toarray() != 0
    assert (test_dense & train_dense).any() and (~test_dense.any(axis=1)).any()
    expected, evaluated = brute_force(P, Q, test, train, cutoffs)
    result = ranking_metrics(P, Q, test, train, K=cutoffs)
    assert result.pop("users") == evaluated == int(test_dense.any(axis=1).sum())
    assert_close(result, expected)
    # several batches, each scored 3 items at a time
    monkeypatch.setattr(ranking_module, "_TILE", 21)
    assert ranking_metrics(P, Q, test, train, K=cutoffs, batch_users=7) == \
        dict(result, users=evaluated)
    expected, _ = brute_force(P, Q, test, None, cutoffs)
    assert_close({k: v for k, v in ranking_metrics(P, Q, test, K=cutoffs).items()
                  if k != "users"}, expected)


def test_matches_brute_force_on_a_subset_of_users(rng):
    P, Q, test, train = random_problem(rng, 30, 20, 4, 0.2, 0.3)
    users = rng.choice(30, size=12, replace=False)
    expected, evaluated = brute_force(P, Q, test, train, (3, 10), users=set(users.tolist()))
    result = ranking_metrics(P, Q, test, train, K=[10, 3], users=np.concatenate([users, users]))
    assert result.pop("users") == evaluated
    assert_close(result, expected)


def test_float32_factors_and_key_order(rng):
    P, Q, test, train = random_problem(rng, 20, 15, 3, 0.2, 0.2)
    result = ranking_metrics(P.astype(np.float32), Q.astype(np.float32), test, train,
                             K=(5, 2), metrics=("mrr", "ndcg"))
    assert list(result) == ["mrr@2", "mrr@5", "ndcg@2", "ndcg@5", "users"]
    # integer and float16 factors are cast to float64
    mixed = ranking_metrics(P.astype(np.float32), Q.astype(np.float16), test, train, K=5)
    assert list(mixed)[0] == "ndcg@5"
    whole = ranking_metrics(np.round(3 * P).astype(int), np.round(3 * Q), test, train, K=5)
    assert whole == ranking_metrics(np.round(3 * P), np.round(3 * Q), test, train, K=5)
    assert all(type(value) is float for key, value in result.items() if key != "users")
    assert type(result["users"]) is int


# one user; scores 5, 4, 3, 2, 1 rank the items 0, 1, 2, 3, 4
ONE_USER = np.array([[1.0]])
FIVE_ITEMS = np.array([[5.0], [4.0], [3.0], [2.0], [1.0]])


def test_hand_computed_values():
    test = sp.csr_matrix(np.array([[0, 1, 0, 1, 0]]))  # test items at ranks 2 and 4
    result = ranking_metrics(ONE_USER, FIVE_ITEMS, test, K=(1, 3, 5))
    log3, log5 = math.log2(3), math.log2(5)
    expected = {
        # K=1: rank 1 is a miss
        "ndcg@1": 0.0, "recall@1": 0.0, "precision@1": 0.0, "mrr@1": 0.0, "map@1": 0.0,
        # K=3: rel 0,1,0; DCG = 1/log2(3); IDCG over min(3, 2) = 2: 1 + 1/log2(3)
        "ndcg@3": (1 / log3) / (1 + 1 / log3),
        "recall@3": 1 / 2, "precision@3": 1 / 3, "mrr@3": 1 / 2,
        "map@3": (1 / 2) / 2,                     # P@2 * rel_2 / min(3, 2)
        # K=5: rel 0,1,0,1,0; DCG = 1/log2(3) + 1/log2(5)
        "ndcg@5": (1 / log3 + 1 / log5) / (1 + 1 / log3),
        "recall@5": 2 / 2, "precision@5": 2 / 5, "mrr@5": 1 / 2,
        "map@5": (1 / 2 + 2 / 4) / 2,             # (P@2 + P@4) / min(5, 2)
        "users": 1,
    }
    assert list(result) == [f"{name}@{k}" for name in METRICS for k in (1, 3, 5)] + ["users"]
    assert_close(result, expected)


def test_masked_training_item_is_not_counted_and_empty_users_do_not_count():
    test = sp.csr_matrix(np.array([[1, 1, 0, 0, 0]]))
    unmasked = ranking_metrics(ONE_USER, FIVE_ITEMS, test, K=2)
    assert_close(unmasked, {"ndcg@2": 1.0, "recall@2": 1.0, "precision@2": 1.0,
                            "mrr@2": 1.0, "map@2": 1.0, "users": 1})
    # item 0 (rank 1) is a training item: the ranking becomes 1, 2, 3, 4; item 0 still
    # counts in |test| = 2 but can never be hit
    train = sp.csr_matrix(np.array([[1, 0, 0, 0, 0]]))
    masked = ranking_metrics(ONE_USER, FIVE_ITEMS, test, train, K=2)
    expected = {"ndcg@2": 1 / (1 + 1 / math.log2(3)),  # rel 1,0 over IDCG of 2 hits
                "recall@2": 1 / 2, "precision@2": 1 / 2, "mrr@2": 1.0,
                "map@2": 1 / 2,                      # P@1 / min(2, 2)
                "users": 1}
    assert_close(masked, expected)
    # a second user with training items but no test items leaves every average alone
    two_users = np.array([[1.0], [-3.0]])
    test2 = sp.csr_matrix(np.array([[1, 1, 0, 0, 0], [0, 0, 0, 0, 0]]))
    train2 = sp.csr_matrix(np.array([[1, 0, 0, 0, 0], [0, 0, 1, 1, 0]]))
    assert ranking_metrics(two_users, FIVE_ITEMS, test2, train2, K=2) == masked


def test_only_nonzero_entries_count_once_each():
    # row 0 stores item 3 twice (summed), an explicit zero at item 1 and unsorted indices;
    # it means test item {3}. The train row stores an explicit zero at item 0: no mask.
    test = sp.csr_matrix((np.array([1.0, 0.0, 2.0]), np.array([3, 1, 3]), np.array([0, 3])),
                         shape=(1, 5))
    train = sp.csr_matrix((np.array([0.0]), np.array([0]), np.array([0, 1])), shape=(1, 5))
    clean = sp.csr_matrix(np.array([[0, 0, 0, 1, 0]]))
    result = ranking_metrics(ONE_USER, FIVE_ITEMS, test, train, K=5)
    assert result == ranking_metrics(ONE_USER, FIVE_ITEMS, clean, K=5)
    assert result["recall@5"] == 1.0 and result["mrr@5"] == 1 / 4


def test_every_item_masked_scores_zero_and_equal_scores_rank_lower_ids_first():
    test = sp.csr_matrix(np.array([[1, 0, 0, 0], [0, 0, 0, 1], [0, 1, 0, 0]]))
    train = sp.csr_matrix(np.array([[1, 1, 1, 1], [0, 0, 0, 0], [0, 0, 0, 0]]))
    P, Q = np.ones((3, 2)), np.ones((4, 2))
    # all scores equal: the ranking is 0, 1, 2, 3. User 0: nothing left to rank, 0;
    # user 1: item 3 at rank 4, 1/4; user 2: item 1 at rank 2, 1/2
    result = ranking_metrics(P, Q, test, train, K=4, metrics="mrr")
    assert result == {"mrr@4": (0 + 1 / 4 + 1 / 2) / 3, "users": 3}
    # with K=2 a later item of equal score must not displace item 1
    result = ranking_metrics(P, Q, test, train, K=2, metrics="mrr", users=[2])
    assert result == {"mrr@2": 1 / 2, "users": 1}


def test_batching_does_not_change_the_result(rng, monkeypatch):
    P, Q, test, train = random_problem(rng, 50, 40, 6, 0.1, 0.2)
    reference = ranking_metrics(P, Q, test, train, K=(1, 10, 45), batch_users=1000)
    for batch_users in (1, 2, 7):
        assert ranking_metrics(P, Q, test, train, K=(1, 10, 45),
                               batch_users=batch_users) == reference
    # scores merged one item at a time, and several tile widths that do not divide n_items
    for tile in (1, 7, 30):
        monkeypatch.setattr(ranking_module, "_TILE", tile)
        monkeypatch.setattr(ranking_module, "_BATCH", 3)
        assert ranking_metrics(P, Q, test, train, K=(1, 10, 45)) == reference


@pytest.fixture
def problem():
    rng = np.random.default_rng(7)
    P, Q, test, train = random_problem(rng, 6, 5, 2, 0.4, 0.3)
    return P, Q, test, train


@pytest.mark.parametrize("change, error, message", [
    (dict(user_factors=np.ones(6)), ValueError, "user_factors must be 2-D"),
    (dict(item_factors=np.ones((5, 2, 1))), ValueError, "item_factors must be 2-D"),
    (dict(item_factors=np.ones((5, 3))), ValueError, "user_factors has 2 factors per row "
                                                     "but item_factors has 3"),
    (dict(item_factors=np.full((5, 2), np.nan)), ValueError,
     r"item_factors holds 10 NaN or infinite values \(the first in row 0\)"),
    (dict(user_factors=np.ones((6, 2), dtype=complex)), TypeError, "must hold real numbers"),
    (dict(user_factors=sp.csr_matrix(np.ones((6, 2)))), TypeError, "dense 2-D numpy array"),
    (dict(test=np.ones((6, 5))), TypeError, "test must be a scipy.sparse matrix"),
    (dict(train=[[1, 0]]), TypeError, "train must be a scipy.sparse matrix"),
    (dict(test=sp.csr_matrix((6, 4))), ValueError, r"test has shape \(6, 4\); expected \(6, 5\)"),
    (dict(train=sp.csr_matrix((5, 5))), ValueError, r"train has shape \(5, 5\); expected"),
    (dict(test=sp.csr_matrix((6, 5))), ValueError, "no user has a test item"),
    (dict(K=0), ValueError, "K must be an integer >= 1; got 0"),
    (dict(K=(10, -1)), ValueError, "K must be an integer >= 1; got -1"),
    (dict(K=2.5), ValueError, "K must be an integer >= 1; got 2.5"),
    (dict(K=()), ValueError, "K is empty"),
    (dict(metrics=("ndcg", "auc")), ValueError,
     "unknown metric 'auc'; use one of 'ndcg', 'recall', 'precision', 'mrr', 'map'"),
    (dict(metrics=()), ValueError, "metrics is empty"),
    (dict(metrics=None), TypeError, "metrics must be a metric name or a sequence"),
    (dict(users=[6]), IndexError, "users 6 is out of range"),
    (dict(batch_users=0), ValueError, "batch_users must be an integer >= 1"),
])
def test_bad_inputs_raise_helpful_errors(problem, change, error, message):
    P, Q, test, train = problem
    arguments = dict(user_factors=P, item_factors=Q, test=test, train=train)
    arguments.update(change)
    with pytest.raises(error, match=message):
        ranking_metrics(**arguments)


def test_users_without_test_items_raise(problem):
    P, Q, test, train = problem
    empty = np.flatnonzero(np.diff(sp.csr_matrix(test).indptr) == 0)
    with pytest.raises(ValueError, match="none of the given users has a test item"):
        ranking_metrics(P, Q, test, train, users=empty)


@pytest.fixture
def fitted():
    rng = np.random.default_rng(3)
    user_items = sp.csr_matrix((rng.random((30, 20)) < 0.25) * 1.0)
    test = sp.csr_matrix((rng.random((30, 20)) < 0.1) * 1.0)
    model = ALSSolver(factors=4, iterations=2, random_state=0).fit(user_items,
                                                                  show_progress=False)
    return model, user_items, test


def test_evaluate_equals_ranking_metrics_of_the_model_factors(fitted):
    model, user_items, test = fitted
    expected = ranking_metrics(model.user_factors_, model.item_factors_, test, user_items,
                               K=(5, 10))
    assert evaluate(model, test, K=(5, 10)) == expected
    other = sp.csr_matrix(np.eye(30, 20))
    assert evaluate(model, test, other, K=3, metrics=("recall",), users=np.arange(10)) == \
        ranking_metrics(model.user_factors_, model.item_factors_, test, other, K=3,
                        metrics=("recall",), users=np.arange(10))


def test_evaluate_needs_a_fitted_model(fitted):
    _, _, test = fitted
    with pytest.raises(NotFittedError, match="not fitted yet"):
        evaluate(ALSSolver(), test)
    with pytest.raises(TypeError, match="model must be a fitted rgals.ALSSolver"):
        evaluate(object(), test)


def test_the_progress_bar_counts_every_user_ranked(rng, monkeypatch):
    import rgals.metrics as metrics_module
    seen = []

    class Bar:
        def __init__(self, total, **options):
            seen.append(("total", total, options["disable"]))

        def update(self, rows):
            seen.append(("rows", rows))

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            return False

    monkeypatch.setattr(metrics_module, "tqdm", Bar)
    test = sp.random(700, 40, density=0.1, random_state=3, format="csr")
    P, Q = rng.standard_normal((700, 4)), rng.standard_normal((40, 4))
    metrics_module.ranking_metrics(P, Q, test, K=5, show_progress=True, batch_users=64)
    users = int((np.diff(test.indptr) > 0).sum())
    assert seen[0] == ("total", users, False)
    assert sum(rows for _, rows in seen[1:]) == users and len(seen) > 2
