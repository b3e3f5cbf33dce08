"""Top-K weights inside the RG losses (SoftmaxLoss@K's idea, design.md 1.6 C), against dense
brute force over all users x items with the weights frozen."""

import numpy as np
import pytest

import rgals.topk

from conftest import BruteForce, random_interactions
from rgals import ALSSolver
from rgals.backend import Backend, get_backend, to_host
from rgals.kernels.batched import BatchedKernels
from rgals.losses import RG2, RGx
from rgals.prepared import prepare
from rgals.topk import sampled_quantile
from rgals.training import LocalExecutor, half_step, run, train
from rgals.validation import check_interactions


def problem(rng, d=4, scale=0.6):
    user_items = check_interactions(random_interactions(rng, n_users=19, n_items=14,
                                                        density=0.35))
    P = scale * rng.standard_normal((user_items.shape[0], d))
    Q = scale * rng.standard_normal((user_items.shape[1], d))
    return user_items, P, Q


def executor_of(data, P, Q):
    return LocalExecutor(data, {"user": P, "item": Q}, solver="cholesky")


def dense_weights(user_items, P, Q, k, t, gradient):
    """w_ui (and g_ui) of every stored pair, written out from the definitions."""
    scores = P @ Q.T
    beta = -np.sort(-scores, axis=1)[:, k - 1]
    tau = t * scores.std(axis=1)
    rows, columns = user_items.nonzero()
    s = scores[rows, columns]
    sigmoid = 1.0 / (1.0 + np.exp(-(s - beta[rows]) / tau[rows]))
    mean = np.array([sigmoid[rows == user].mean() if (rows == user).any() else 1.0
                     for user in range(P.shape[0])])
    g = None
    if gradient:
        lse = np.log(np.exp(scores).sum(axis=1))
        g = (user_items.data * (lse[rows] - s) * sigmoid * (1 - sigmoid)
             / (tau[rows] * mean[rows]))
    return sigmoid / mean[rows], g


class WeightedBruteForce(BruteForce):
    """F of RG2/RGx with confidences c w (dense) plus sum g s over the positives."""

    def __init__(self, name, user_items, weights, linear, alpha, lam):
        weighted = user_items.copy()
        weighted.data = user_items.data * weights
        super().__init__(name, weighted, alpha, lam)
        self.linear = np.zeros(user_items.shape)
        if linear is not None:
            rows, columns = user_items.nonzero()
            self.linear[rows, columns] = linear
        plain = self.loss

        def loss(scores):
            total, gradient = plain(scores)
            return total + np.sum(self.linear * scores), gradient + self.linear

        self.loss = loss


@pytest.mark.parametrize("loss_class", [RG2, RGx])
@pytest.mark.parametrize("gradient", [False, True])
@pytest.mark.parametrize("n_blocks", [1, 3])
def test_frozen_weights_match_brute_force_after_each_half_step(rng, loss_class, gradient,
                                                               n_blocks):
    user_items, P, Q = problem(rng)
    data = prepare(user_items, get_backend("cpu"))
    executor = executor_of(data, P, Q)
    executor.start(loss_class(alpha=0.4, regularization=0.05, top_k=3, top_k_temperature=0.7,
                              top_k_gradient=gradient).bind(user_items))
    for _ in range(2):
        w, g = dense_weights(user_items, P, Q, 3, 0.7, gradient)
        report = executor.begin_sweep()
        np.testing.assert_allclose(executor.weights, w, rtol=1e-10)
        assert report["weight_mean"] == pytest.approx(w.mean())
        brute = WeightedBruteForce(loss_class.name, user_items, w, g, 0.4, 0.05)
        assert executor.objective() == pytest.approx(brute.objective(P, Q), rel=1e-10)
        for side in ("user", "item"):
            factors, others = (P, Q) if side == "user" else (Q, P)
            before = brute.objective(P, Q)
            solution, _ = half_step(executor.loss, data, side, factors, others, "cholesky",
                                    n_blocks=n_blocks, pair_terms=executor.pair_terms)
            # the exact minimiser of its block: the brute-force gradient vanishes there
            gradients = brute.gradients(P, Q)[0 if side == "user" else 1]
            assert np.abs(gradients).max() <= 1e-9 * max(1.0, np.abs(factors).max())
            assert before - brute.objective(P, Q) == pytest.approx(solution.decrease,
                                                                   rel=1e-8)


@pytest.mark.parametrize("budget", ["default", "a few users at a time"])
def test_exact_and_sampled_quantiles(rng, budget, monkeypatch):
    if budget != "default":
        monkeypatch.setattr(rgals.topk, "PAIR_BUDGET", 120)
    user_items, P, Q = problem(rng)
    data = prepare(user_items, get_backend("cpu"))
    scores = P @ Q.T
    rows, columns = user_items.nonzero()
    pair_scores = scores[rows, columns]
    for samples in (5, 40):
        got = sampled_quantile(pair_scores, rows, P, Q, 4, samples, 7, data.backend)
        drawn = np.random.default_rng(7).integers(Q.shape[0], size=samples)
        for user in range(P.shape[0]):
            candidates = np.concatenate([scores[user, columns[rows == user]],
                                         scores[user, drawn]])
            expected = -np.sort(-candidates)[min(4, candidates.size) - 1]
            assert got[user] == pytest.approx(expected, rel=1e-12)
    # the exact quantile is the K-th largest score over all items: a sort's K-th
    executor = executor_of(data, P, Q)
    executor.start(RG2(top_k=4, top_k_temperature=0.5).bind(user_items))
    executor.begin_sweep()
    beta = -np.sort(-scores, axis=1)[:, 3]
    tau = 0.5 * scores.std(axis=1)
    sigmoid = 1 / (1 + np.exp(-(pair_scores - beta[rows]) / tau[rows]))
    ratio = executor.weights / sigmoid  # the per-user scale m_u, the same for all of u's pairs
    for user in np.unique(rows):
        np.testing.assert_allclose(ratio[rows == user], 1 / sigmoid[rows == user].mean(),
                                   rtol=1e-10)
    counts = np.bincount(rows, minlength=P.shape[0])
    active = counts > 0  # the user without interactions has no weights
    np.testing.assert_allclose((np.bincount(rows, executor.weights, minlength=P.shape[0])
                                / np.maximum(counts, 1))[active], 1.0, rtol=1e-12)


class NumpyAsCupyBefore14_1:
    """NumPy refusing what CuPy 12 to 14.0 refuse: repeat's counts from the device."""

    def __getattr__(self, name):
        return getattr(np, name)

    @staticmethod
    def repeat(a, repeats, axis=None):
        if isinstance(repeats, np.ndarray):
            raise TypeError("repeats must be an int or a list of ints")
        return np.repeat(a, repeats, axis)


@pytest.mark.parametrize("quantile", ["exact", "sampled"])
def test_a_refresh_takes_no_device_counts_for_repeat(rng, quantile):
    # rgals.gpu allows cupy >= 12 (issue 30)
    user_items, P, Q = problem(rng)
    old_cupy = NumpyAsCupyBefore14_1()
    kernels = BatchedKernels(np)
    kernels.xp = old_cupy  # NumPy's arrays, with CuPy 12's repeat
    backend = Backend("_batched", old_cupy, kernels)
    weighting = RG2(top_k=3, top_k_quantile=quantile).bind(user_items).reweighting()
    got = weighting.refresh_block(P, Q, user_items, None, backend)
    expected = weighting.refresh_block(P, Q, user_items, None, get_backend("cpu"))
    np.testing.assert_allclose(got.weights, expected.weights, rtol=1e-10)
    np.testing.assert_allclose(got.user_sums, expected.user_sums, rtol=1e-10)


def test_refresh_schedule_damping_and_segments(rng):
    user_items, P, Q = problem(rng)
    data = prepare(user_items, get_backend("cpu"))
    loss = RG2(alpha=0.4, regularization=0.05, top_k=3, top_k_refresh=2,
               top_k_damping=0.5).bind(user_items)
    monitor = train(loss, data, P, Q, 6, solver="cholesky", monitor="full", tol=0.0)
    history = monitor.history
    assert list(history["segment"]) == [0, 0, 0, 0, 1, 1, 1, 1, 2, 2, 2, 2]
    assert history["identity_error"].max() < 1e-10  # frozen weights: exact identity
    # refreshes at sweeps 1, 3, 5; their reports sit on the first row after each
    refreshed = np.flatnonzero(np.isfinite(history["refresh_weight_mean"]))
    np.testing.assert_array_equal(refreshed, [0, 4, 8])
    change = history["refresh_weight_change"][refreshed]
    assert np.isnan(change[0]) and (change[1:] > 0).all()
    # the rate never compares two objectives: it is NaN on the first sweep of a segment
    rates = history["rate"][1::2]
    assert np.isnan(rates[[0, 2, 4]]).all() and np.isfinite(rates[[1, 3, 5]]).all()


def test_damping_mixes_the_previous_weights(rng):
    user_items, P, Q = problem(rng)
    data = prepare(user_items, get_backend("cpu"))
    executor = executor_of(data, P, Q)
    executor.start(RG2(top_k=3, top_k_damping=0.25).bind(user_items))
    executor.begin_sweep()
    first = executor.weights.copy()
    P += 0.3
    executor.begin_sweep()
    fresh, _ = dense_weights(user_items, P, Q, 3, 1.0, False)
    np.testing.assert_allclose(executor.weights, 0.25 * first + 0.75 * fresh, rtol=1e-10)


@pytest.mark.parametrize("quantile", ["exact", "sampled"])
def test_a_top_k_fit_on_every_backend(rng, backend_name, quantile):
    user_items = random_interactions(rng, n_users=40, n_items=30, density=0.3)
    params = dict(factors=4, iterations=4, tol=0.0, dtype=np.float64, random_state=3,
                  monitor="full", loss=RG2(alpha=0.3, regularization=0.05, top_k=5,
                                           top_k_quantile=quantile, top_k_gradient=True))
    model = ALSSolver(backend=backend_name, **params).fit(user_items, show_progress=False)
    reference = ALSSolver(**params).fit(user_items, show_progress=False)
    np.testing.assert_allclose(to_host(model.item_factors_), reference.item_factors_,
                               rtol=1e-8, atol=1e-10)
    assert np.nanmax(model.monitor_.history["identity_error"]) < 1e-9
    # fold-in uses the plain confidences of the fitted (bound, unfrozen) loss
    assert model.loss_.top_k == 5


def test_warmup_sweeps_run_the_plain_loss_first(rng):
    user_items, P, Q = problem(rng)
    data = prepare(user_items, get_backend("cpu"))
    plain_P, plain_Q = P.copy(), Q.copy()
    train(RG2(alpha=0.4, regularization=0.05).bind(user_items), data, plain_P, plain_Q, 2,
          solver="cholesky", tol=0.0)
    executor = executor_of(data, P, Q)
    executor.start(RG2(alpha=0.4, regularization=0.05, top_k=3,
                       top_k_warmup=2).bind(user_items))
    monitor = run(executor, 2, tol=0.0)
    np.testing.assert_array_equal(P, plain_P)  # two warm-up sweeps: the plain fit
    assert executor.pair_terms is None and "refresh_weight_mean" not in monitor.history
    assert executor.begin_sweep()["weight_mean"] == pytest.approx(1.0)  # sweep 3
