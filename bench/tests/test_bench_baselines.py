"""The gradient-trained MF baselines of bench/baselines.py: exact gradients, the losses
against brute force, a fit that learns, and parameter checks (float64, seeded, fast)."""


import numpy as np
import pytest
import scipy.sparse as sp

from bench.baselines import LOSSES, TOP_K_LOSSES, GradientMF

from rgals.data import holdout_split, synthetic
from rgals.metrics import ranking_metrics


def small_problem(seed=0, n_users=6, n_items=9, factors=3):
    rng = np.random.default_rng(seed)
    dense = rng.random((n_users, n_items)) < 0.35
    dense[0] = False  # a user without interactions
    dense[1, :3] = True  # and one with several
    matrix = sp.csr_matrix(dense.astype(np.float64))
    return (matrix, rng.standard_normal((n_users, factors)),
            rng.standard_normal((n_items, factors)), rng)


def scores_of(P, Q, normalize):
    if normalize:
        P = P / np.linalg.norm(P, axis=1, keepdims=True)
        Q = Q / np.linalg.norm(Q, axis=1, keepdims=True)
    return P @ Q.T


def logsumexp(values):
    top = values.max()
    return top + np.log(np.sum(np.exp(values - top)))


# -------------------------------------------------------------------------------------
# Gradients


@pytest.mark.parametrize("loss", LOSSES)
@pytest.mark.parametrize("normalize,temperature,decay", [
    (True, 0.5, 0.0),    # cosine scores, fixed log-sum-exp shift
    (True, 0.02, 0.0),   # cosine scores, 1/tau > 40: shift by the row maximum
    (False, 0.7, 0.1),   # dot products, with L2
])
def test_gradients_match_central_differences(loss, normalize, temperature, decay):
    matrix, P, Q, rng = small_problem(seed=3)
    users = np.array([5, 0, 1, 3])
    quantiles = rng.standard_normal(matrix.shape[0])
    model = GradientMF(loss=loss, negatives=4, k=3, temperature=temperature,
                       weight_temperature=0.8, weight_decay=decay, normalize=normalize)

    def objective(P, Q):  # the same seed draws the same samples on every call
        return model.loss_and_gradients(P, Q, matrix, users, rng=11, quantiles=quantiles)

    loss_value, grad_rows, grad_Q = objective(P, Q)
    assert np.isfinite(loss_value)
    if loss != "sampled_softmax_at_k":  # its normaliser leaves the positive out
        assert loss_value > 0
    assert grad_rows.shape == (users.size, P.shape[1]) and grad_Q.shape == Q.shape
    assert grad_rows.dtype == np.float64 and grad_Q.dtype == np.float64
    step = 1e-6
    numeric_rows = np.zeros_like(grad_rows)
    for a, user in enumerate(users):
        for b in range(P.shape[1]):
            shift = np.zeros_like(P)
            shift[user, b] = step
            numeric_rows[a, b] = (objective(P + shift, Q)[0]
                                  - objective(P - shift, Q)[0]) / (2 * step)
    numeric_Q = np.zeros_like(grad_Q)
    for a in range(Q.shape[0]):
        for b in range(Q.shape[1]):
            shift = np.zeros_like(Q)
            shift[a, b] = step
            numeric_Q[a, b] = (objective(P, Q + shift)[0]
                               - objective(P, Q - shift)[0]) / (2 * step)
    for analytic, numeric in ((grad_rows, numeric_rows), (grad_Q, numeric_Q)):
        scale = np.abs(numeric).max()
        assert scale > 0
        assert np.abs(analytic - numeric).max() <= 1e-6 * scale


def test_float32_embeddings_give_float32_gradients_close_to_float64():
    matrix, P, Q, _ = small_problem(seed=4)
    users = np.arange(matrix.shape[0])
    model = GradientMF(loss="softmax")
    loss64, rows64, q64 = model.loss_and_gradients(P, Q, matrix, users)
    loss32, rows32, q32 = model.loss_and_gradients(P.astype(np.float32),
                                                   Q.astype(np.float32), matrix, users)
    assert rows32.dtype == np.float32 and q32.dtype == np.float32
    assert loss32 == pytest.approx(loss64, rel=1e-5)
    np.testing.assert_allclose(rows32, rows64, rtol=1e-3, atol=1e-5)
    np.testing.assert_allclose(q32, q64, rtol=1e-3, atol=1e-5)


# -------------------------------------------------------------------------------------
# The losses against plain formulas


@pytest.mark.parametrize("normalize", [True, False])
@pytest.mark.parametrize("temperature", [0.3, 0.01])
def test_full_softmax_matches_brute_force(normalize, temperature):
    matrix, P, Q, _ = small_problem(seed=5)
    users = np.array([1, 2, 4, 5])
    decay = 0.05
    model = GradientMF(loss="softmax", temperature=temperature, weight_decay=decay,
                       normalize=normalize)
    loss, _, _ = model.loss_and_gradients(P, Q, matrix, users)
    scores = scores_of(P, Q, normalize) / temperature
    dense = matrix.toarray()
    terms = [logsumexp(scores[u]) - scores[u, i] for u in users
             for i in np.flatnonzero(dense[u])]
    expected = np.mean(terms) + decay / 2 * (np.sum(P[users] ** 2) + np.sum(Q ** 2))
    assert loss == pytest.approx(expected, rel=1e-12)


def test_softmax_at_k_matches_brute_force():
    matrix, P, Q, rng = small_problem(seed=6)
    users = np.arange(matrix.shape[0])
    quantiles = 0.3 * rng.standard_normal(matrix.shape[0])
    model = GradientMF(loss="softmax_at_k", temperature=0.2, weight_temperature=1.5)
    loss, _, _ = model.loss_and_gradients(P, Q, matrix, users, quantiles=quantiles)
    scores = scores_of(P, Q, True)
    dense = matrix.toarray()
    terms = [(1 / (1 + np.exp(-(scores[u, i] - quantiles[u]) / 1.5)))
             * (logsumexp(scores[u] / 0.2) - scores[u, i] / 0.2)
             for u in users for i in np.flatnonzero(dense[u])]
    assert loss == pytest.approx(np.mean(terms), rel=1e-12)


def test_sampled_softmax_at_k_with_every_item_sampled_sums_over_the_negatives():
    matrix, P, Q, rng = small_problem(seed=10)
    dense = matrix.toarray() > 0
    dense[2] = True  # a user with no negatives at all has no term
    matrix = sp.csr_matrix(dense.astype(np.float64))
    users = np.arange(matrix.shape[0])
    quantiles = 0.3 * rng.standard_normal(matrix.shape[0])
    model = GradientMF(loss="sampled_softmax_at_k", temperature=0.3, weight_temperature=0.7,
                       negatives=100)  # >= items: every item is sampled
    loss, grad_rows, grad_Q = model.loss_and_gradients(P, Q, matrix, users,
                                                       quantiles=quantiles)
    scores = scores_of(P, Q, True)
    terms = [(1 / (1 + np.exp(-(scores[u, i] - quantiles[u]) / 0.7)))
             * (logsumexp(scores[u, ~dense[u]] / 0.3) - scores[u, i] / 0.3)
             if (~dense[u]).any() else 0.0
             for u in users for i in np.flatnonzero(dense[u])]
    assert loss == pytest.approx(np.mean(terms), rel=1e-12)
    assert np.all(grad_rows[2] == 0.0) and np.all(np.isfinite(grad_Q))


def test_sampled_softmax_with_every_item_sampled_drops_the_other_positives():
    matrix, P, Q, _ = small_problem(seed=7)
    users = np.arange(matrix.shape[0])
    model = GradientMF(loss="sampled_softmax", temperature=0.4, negatives=100)  # >= items
    loss, _, _ = model.loss_and_gradients(P, Q, matrix, users)
    scores = scores_of(P, Q, True) / 0.4
    dense = matrix.toarray() > 0
    terms = [logsumexp(np.append(scores[u, ~dense[u]], scores[u, i])) - scores[u, i]
             for u in users for i in np.flatnonzero(dense[u])]
    assert loss == pytest.approx(np.mean(terms), rel=1e-12)


def test_bpr_draws_only_items_the_user_has_not_seen():
    # each user has seen every item but one, so that one is every pair's negative
    rng = np.random.default_rng(8)
    n_users, n_items = 5, 7
    dense = np.ones((n_users, n_items))
    unseen = rng.integers(0, n_items, n_users)
    dense[np.arange(n_users), unseen] = 0.0
    matrix = sp.csr_matrix(dense)
    P, Q = rng.standard_normal((n_users, 2)), rng.standard_normal((n_items, 2))
    users = np.arange(n_users)
    loss, _, _ = GradientMF(loss="bpr", normalize=False).loss_and_gradients(
        P, Q, matrix, users, rng=0)
    scores = P @ Q.T
    terms = [np.log1p(np.exp(-(scores[u, i] - scores[u, unseen[u]])))
             for u in users for i in np.flatnonzero(dense[u])]
    assert loss == pytest.approx(np.mean(terms), rel=1e-12)


def test_quantile_with_every_item_sampled_is_the_kth_largest_score():
    matrix, P, Q, _ = small_problem(seed=9)
    model = GradientMF(loss="softmax_at_k", k=4, negatives=50)
    quantiles = model.estimate_quantiles(P, Q, matrix, rng=0)
    expected = np.sort(scores_of(P, Q, True), axis=1)[:, -4]
    np.testing.assert_allclose(quantiles, expected, rtol=1e-12)
    # fewer candidates than k (a sample of 2, users with few positives): the smallest
    few = GradientMF(loss="softmax_at_k", k=8, negatives=2).estimate_quantiles(
        P, Q, matrix, rng=0)
    assert np.all(np.isfinite(few))


# -------------------------------------------------------------------------------------
# Training


SETTINGS = {  # small data, few Adam steps: settings that learn within 20 epochs
    "softmax": {},
    "sampled_softmax": {"negatives": 100},
    "bpr": {"weight_decay": 1e-3},
    "softmax_at_k": {"k": 10, "negatives": 50, "weight_temperature": 2.5},
    "sampled_softmax_at_k": {"k": 10, "negatives": 50, "weight_temperature": 2.5},
}


@pytest.mark.parametrize("loss", LOSSES)
def test_fit_lowers_the_loss_and_beats_popularity(loss):
    train, test = holdout_split(synthetic(300, 200, seed=1), ratio=0.2, seed=1)
    model = GradientMF(loss=loss, factors=16, learning_rate=0.01, batch_users=64, epochs=20,
                       random_state=1, **SETTINGS[loss])
    snapshots = []

    def callback(epoch, elapsed, fitted):
        if epoch == 1:
            snapshots.append((fitted.user_embeddings_.astype(np.float64),
                              fitted.item_embeddings_.astype(np.float64)))

    model.fit(train, callback=callback)
    assert model.user_factors_.dtype == np.float32 and model.item_factors_.dtype == np.float32
    assert model.user_factors_.shape == (300, 16) and model.item_factors_.shape == (200, 16)
    assert len(model.epoch_seconds_) == 20 and len(model.epoch_losses_) == 20
    assert model.epoch_losses_[-1] < 0.9 * model.epoch_losses_[0]

    # the objective on all users, same samples, same quantiles: after epoch 1 and at the end
    users = np.flatnonzero(np.diff(train.indptr))
    quantiles = model.quantiles_ if loss in TOP_K_LOSSES else None
    early = model.loss_and_gradients(*snapshots[0], train, users, rng=0,
                                     quantiles=quantiles)[0]
    final = model.loss_and_gradients(model.user_embeddings_.astype(np.float64),
                                     model.item_embeddings_.astype(np.float64), train, users,
                                     rng=0, quantiles=quantiles)[0]
    assert final < early

    popularity = np.asarray(train.sum(axis=0)).ravel()
    baseline = ranking_metrics(np.ones((300, 1)), popularity[:, None], test, train, K=10)
    learned = ranking_metrics(model.user_factors_, model.item_factors_, test, train, K=10)
    assert learned["ndcg@10"] > 1.05 * baseline["ndcg@10"]


def test_cosine_factors_are_unit_rows_and_rank_like_the_embeddings():
    train = synthetic(60, 40, seed=2)
    model = GradientMF(loss="softmax", factors=4, epochs=2, random_state=0).fit(train)
    assert model.normalize_ is True
    np.testing.assert_allclose(np.linalg.norm(model.user_factors_, axis=1), 1.0, rtol=1e-5)
    cosine = scores_of(model.user_embeddings_.astype(np.float64),
                       model.item_embeddings_.astype(np.float64), True)
    np.testing.assert_allclose(model.user_factors_ @ model.item_factors_.T, cosine, atol=1e-5)
    assert GradientMF(loss="bpr", factors=4, epochs=1).fit(train).normalize_ is False


def test_fit_is_deterministic_and_callback_can_stop_it():
    train = synthetic(80, 50, seed=3)
    seen = []

    def callback(epoch, elapsed, model):
        seen.append((epoch, elapsed, model.user_factors_.copy()))
        return epoch < 3  # False after the third epoch

    model = GradientMF(loss="sampled_softmax", factors=4, negatives=10, batch_users=16,
                       epochs=10, random_state=5).fit(train, callback=callback)
    assert [epoch for epoch, _, _ in seen] == [1, 2, 3]
    assert len(model.epoch_seconds_) == 3
    assert [elapsed for _, elapsed, _ in seen] == pytest.approx(
        np.cumsum(model.epoch_seconds_).tolist())
    np.testing.assert_array_equal(seen[-1][2], model.user_factors_)
    again = GradientMF(loss="sampled_softmax", factors=4, negatives=10, batch_users=16,
                       epochs=10, random_state=5).fit(train, epochs=3)
    np.testing.assert_array_equal(again.user_factors_, model.user_factors_)
    np.testing.assert_array_equal(again.item_factors_, model.item_factors_)


@pytest.mark.parametrize("loss", TOP_K_LOSSES)
def test_softmax_at_k_refreshes_the_quantiles_every_quantile_every_epochs(loss):
    train = synthetic(60, 40, seed=4)
    history = []
    GradientMF(loss=loss, factors=4, k=5, negatives=20, quantile_every=2,
               epochs=4).fit(train, callback=lambda e, s, m: history.append(m.quantiles_.copy()))
    assert np.all(history[0] == 0.0)  # the authors' starting value, until epoch 2
    assert not np.array_equal(history[1], history[0])
    np.testing.assert_array_equal(history[2], history[1])
    assert not np.array_equal(history[3], history[2])


# -------------------------------------------------------------------------------------
# Checks


@pytest.mark.parametrize("parameters,message", [
    ({"loss": "hinge"}, "unknown loss 'hinge'"),
    ({"factors": 0}, "factors must be an integer >= 1"),
    ({"factors": 2.5}, "factors must be an integer"),
    ({"learning_rate": 0.0}, "learning_rate must be a finite number > 0"),
    ({"learning_rate": float("nan")}, "learning_rate must be a finite number > 0"),
    ({"weight_decay": -1e-3}, "weight_decay must be a finite number >= 0"),
    ({"temperature": 0}, "temperature must be a finite number > 0"),
    ({"temperature": -0.2}, "temperature must be a finite number > 0"),
    ({"negatives": 0}, "negatives must be an integer >= 1"),
    ({"batch_users": 0}, "batch_users must be an integer >= 1"),
    ({"k": 0}, "k must be an integer >= 1"),
    ({"weight_temperature": float("inf")}, "weight_temperature must be a finite number > 0"),
    ({"quantile_every": 0}, "quantile_every must be an integer >= 1"),
    ({"epochs": 0}, "epochs must be an integer >= 1"),
    ({"random_state": -1}, "random_state must be an integer >= 0"),
    ({"normalize": "yes"}, "normalize must be None, True or False"),
])
def test_bad_parameters_raise_clear_errors(parameters, message):
    matrix, P, Q, _ = small_problem()
    model = GradientMF(**parameters)
    with pytest.raises(ValueError, match=message):
        model.fit(matrix)
    with pytest.raises(ValueError, match=message):
        model.loss_and_gradients(P, Q, matrix, np.array([1]))


def test_bad_inputs_raise_clear_errors():
    matrix, P, Q, _ = small_problem()
    model = GradientMF()
    with pytest.raises(TypeError, match="scipy.sparse"):
        model.fit(matrix.toarray())
    with pytest.raises(ValueError, match="negative values"):
        model.fit(-matrix)
    with pytest.raises(ValueError, match="no interactions"):
        model.fit(sp.csr_matrix(matrix.shape))
    with pytest.raises(ValueError, match="epochs must be an integer >= 1"):
        model.fit(matrix, epochs=0)
    with pytest.raises(TypeError, match="callback must be callable"):
        model.fit(matrix, callback=3)
    with pytest.raises(ValueError, match=r"Q must have shape \(9, 3\)"):
        model.loss_and_gradients(P, Q[:, :2], matrix, np.array([1]))
    with pytest.raises(ValueError, match="distinct"):
        model.loss_and_gradients(P, Q, matrix, np.array([1, 1]))
    with pytest.raises(IndexError, match="users must lie in"):
        model.loss_and_gradients(P, Q, matrix, np.array([6]))
    with pytest.raises(ValueError, match="quantiles must be 6 finite numbers"):
        GradientMF(loss="softmax_at_k").loss_and_gradients(P, Q, matrix, np.array([1]),
                                                           quantiles=np.zeros(5))
