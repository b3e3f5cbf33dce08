"""The functional core: row blocks, the loss protocol's per-sweep hook, the monitor levels."""

import copy

import numpy as np
import pytest

import rgals
from conftest import random_interactions
from rgals import ALSSolver
from rgals.backend import get_backend
from rgals.data import validation_split
from rgals.losses import Hyperparameter, Loss, make_loss
from rgals.prepared import prepare
from rgals.solve import RowSystems
from rgals.topk import Refresh
from rgals.training import Callback, LocalExecutor, train
from rgals.validation import check_interactions


def problem(rng, d=4, **shape):
    user_items = check_interactions(random_interactions(rng, **shape))
    P = 0.3 * rng.standard_normal((user_items.shape[0], d))
    Q = 0.3 * rng.standard_normal((user_items.shape[1], d))
    return user_items, P, Q


@pytest.mark.parametrize("loss,alpha,solver", [
    ("rg2", 0.5, "auto"), ("rg2", 0.0, "auto"), ("rg2", 0.5, "cholesky"),
    ("rgx", 0.5, "cholesky"), ("rgx", 0.0, "auto"), ("rgx", 0.5, "cg"),
    ("ials", 2.0, "auto"), ("ials", 2.0, "cholesky")])
def test_several_blocks_give_one_blocks_factors(rng, loss, alpha, solver):
    user_items, P, Q = problem(rng)
    data = prepare(user_items, get_backend("cpu"))
    bound = make_loss(loss, alpha=alpha, regularization=0.05).bind(user_items)
    results = []
    for n_blocks in (1, 4):
        user_factors, item_factors = P.copy(), Q.copy()
        monitor = train(bound, data, user_factors, item_factors, 4, solver=solver,
                        monitor="full", tol=0.0, n_blocks=n_blocks)
        results.append((user_factors, item_factors, monitor.history))
    (P1, Q1, one), (P4, Q4, four) = results
    assert not np.array_equal(P1, P)  # the fit moved
    np.testing.assert_allclose(P4, P1, rtol=0, atol=1e-10 * np.abs(P1).max())
    np.testing.assert_allclose(Q4, Q1, rtol=0, atol=1e-10 * np.abs(Q1).max())
    for column in ("objective", "decrease", "hessian_min", "hessian_max"):
        np.testing.assert_allclose(four[column], one[column], rtol=1e-9,
                                   atol=1e-12 * np.abs(one["objective"]).max())


@pytest.mark.parametrize("loss,alpha,solver", [
    ("rg2", 0.5, "auto"), ("rg2", 0.0, "auto"), ("rgx", 0.0, "auto"), ("rgx", 0.5, "cg"),
    ("ials", 2.0, "auto"), ("ials", 1.0, "auto")])
@pytest.mark.parametrize("n_blocks", [1, 3])
def test_the_shared_rotated_basis_gives_the_factors_of_rotating_back(rng, monkeypatch, loss,
                                                                     alpha, solver, n_blocks):
    """train keeps both sides in the solvers' eigenbasis and undoes the rotation at the
    end: the same factors, objective and bounds as rotating back after every half step."""
    user_items, P, Q = problem(rng)
    data = prepare(user_items, get_backend("cpu"))
    bound = make_loss(loss, alpha=alpha, regularization=0.05).bind(user_items)
    real = rgals.training.solve_blocks
    results = []
    for share in (True, False):
        if not share:
            monkeypatch.setattr(rgals.training, "solve_blocks",
                                lambda *args, **kwargs: real(*args, **{**kwargs,
                                                                       "share_basis": False}))
        user_factors, item_factors = P.copy(), Q.copy()
        previous = np.empty_like(Q)
        monitor = train(bound, data, user_factors, item_factors, 4, solver=solver,
                        monitor="full", tol=0.0, n_blocks=n_blocks,
                        previous_item_factors=previous)
        results.append((user_factors, item_factors, previous, monitor.history))
    for shared, plain in zip(results[0][:3], results[1][:3]):
        np.testing.assert_allclose(shared, plain, rtol=0, atol=1e-10 * np.abs(plain).max())
    for column in ("objective", "decrease", "hessian_min", "hessian_max"):
        np.testing.assert_allclose(results[0][3][column], results[1][3][column], rtol=1e-9,
                                   atol=1e-12 * np.abs(results[1][3]["objective"]).max())


def test_blocks_cover_every_row_and_pair(rng):
    user_items, _, _ = problem(rng, n_users=11, n_items=9)
    data = prepare(user_items, get_backend("cpu"))
    for side in ("user", "item"):
        matrix = data.matrix(side)
        blocks = data.blocks(side, 3)
        edges = [0, 3, 7, 11] if side == "user" else [0, 3, 6, 9]
        assert [(block.rows.start, block.rows.stop) for block in blocks] == \
            list(zip(edges[:-1], edges[1:]))
        for block in blocks:
            np.testing.assert_array_equal(block.matrix.toarray(),
                                          matrix[block.rows].toarray())
            np.testing.assert_array_equal(matrix.data[block.pairs], block.matrix.data)
            np.testing.assert_array_equal(block.row_sums,
                                          np.asarray(matrix[block.rows].sum(axis=1)).ravel())


def test_the_pair_permutation_maps_user_major_to_item_major(rng):
    user_items, _, _ = problem(rng)
    data = prepare(user_items, get_backend("cpu"))
    rows, columns = user_items.nonzero()  # user-major order
    item_users = data.item_users
    item_rows = np.repeat(np.arange(item_users.shape[0]), np.diff(item_users.indptr))
    # the k-th item-major pair is (item_rows[k], item_users.indices[k]) = (i, u)
    np.testing.assert_array_equal(rows[data.item_order], item_users.indices)
    np.testing.assert_array_equal(columns[data.item_order], item_rows)
    np.testing.assert_array_equal(item_users.toarray(), user_items.T.toarray())
    fresh = rng.random(user_items.nnz)
    dense = np.zeros(user_items.shape)
    dense[rows, columns] = fresh
    np.testing.assert_array_equal(data.in_order("item", fresh),
                                  dense.T[item_rows, item_users.indices])
    assert data.in_order("user", fresh) is fresh


class ScoreWeighting:
    """A toy reweighting: w_ui = 1 + sigmoid(s_ui), refreshed every sweep."""

    def begin_sweep(self):
        return True

    def refresh_block(self, user_factors, item_factors, user_items, previous, backend):
        rows = np.repeat(np.arange(user_items.shape[0]), np.diff(user_items.indptr))
        scores = np.sum(user_factors[rows] * item_factors[user_items.indices], axis=1)
        weights = 1.0 + 1.0 / (1.0 + np.exp(-scores))
        confidence = user_items.data * weights
        sums = np.bincount(rows, confidence, minlength=user_items.shape[0])
        return Refresh(weights, confidence, None, sums,
                       {"pairs": float(weights.size), "previous": previous is not None,
                        "weight_sum": float(weights.sum()), "change_sum": 0.0})


class ScoreWeightedRG2(Loss):
    """A toy loss written only against the protocol: RG2 whose confidences are
    c_ui w_ui, with w_ui = 1 + sigmoid(s_ui) frozen for a sweep by its reweighting from
    the current scores (user-major; the item step reads them through the data's
    permutation)."""

    name = "score_weighted_rg2"
    hyperparameters = {
        "alpha": Hyperparameter(0.3, "pair term", low=1e-3, high=1.0, log=True),
        "regularization": Hyperparameter(0.05, "lam", strict=True, low=1e-4, high=1.0,
                                         log=True),
    }

    def _bind(self, totals):
        self.user_sums = totals.user_sums

    def reweighting(self):
        return ScoreWeighting()

    def with_user_sums(self, user_sums):
        bound = copy.copy(self)
        bound.user_sums = user_sums
        return bound

    def side_statistics(self, side, fixed_factors, rows):
        weights = None if side == "user" else self.user_sums[rows] / (2.0 * self.n_items)
        scaled = fixed_factors if weights is None else fixed_factors * weights[:, None]
        return {"gram": fixed_factors.T @ scaled, "sum": scaled.sum(axis=0)}

    def row_systems(self, side, statistics, block, others, pair_terms=None):
        confidence, _ = pair_terms
        n_rows = block.matrix.shape[0]
        if side == "user":
            sums = self.user_sums[block.rows]
            scale, reg = sums / (2.0 * self.n_items), np.full(n_rows, self.regularization)
        else:
            scale, reg = np.ones(n_rows), np.full(n_rows, self.regularization)
        return RowSystems(block.matrix, self.alpha * confidence, (self.alpha + 0.5) * confidence,
                          others, statistics["gram"], -statistics["sum"], scale=scale, reg=reg)

    def objective(self, user_factors, item_factors, data, magnitude=False, pair_terms=None):
        confidence = pair_terms[0]
        total = dense_objective(self, data, user_factors, item_factors, confidence)
        if not magnitude:
            return total
        return total, dense_objective(self, data, user_factors, item_factors, confidence,
                                      size=True)


def dense_weights(data, confidence):
    dense = np.zeros(data.shape)
    rows, columns = data.host_user_items.nonzero()
    dense[rows, columns] = confidence
    return dense


def dense_objective(loss, data, P, Q, confidence, size=False):
    """The toy loss over all M x N pairs, straight from its definition (design.md 1.2), at
    these confidences (user-major); `size`: the sum of its terms' absolute values."""
    c = dense_weights(data, confidence)
    scores = P @ Q.T
    w = c.sum(axis=1) / (2.0 * Q.shape[0])
    sign = abs if size else (lambda x: x)
    return (np.sum(sign(-c * scores)) + np.sum(w[:, None] * (scores + 1.0) ** 2)
            + loss.alpha * np.sum(c * (scores - 1.0) ** 2)
            + loss.regularization * (np.sum(P * P) + np.sum(Q * Q)))


def dense_minimiser(loss, data, side, P, Q, confidence):
    """Each row's exact minimiser with the other side fixed, by dense normal equations."""
    c = dense_weights(data, confidence)
    n_items = Q.shape[0]
    w = c.sum(axis=1) / (2.0 * n_items)
    d = P.shape[1]
    if side == "user":
        rows = []
        for u in range(P.shape[0]):
            A = w[u] * Q.T @ Q + loss.alpha * (Q * c[u][:, None]).T @ Q + \
                loss.regularization * np.eye(d)
            b = -w[u] * Q.sum(axis=0) + (loss.alpha + 0.5) * Q.T @ c[u]
            rows.append(np.linalg.solve(A, b))
        return np.array(rows)
    G_W, sigma_W = (P * w[:, None]).T @ P, (P * w[:, None]).sum(axis=0)
    rows = []
    for i in range(n_items):
        A = G_W + loss.alpha * (P * c[:, i][:, None]).T @ P + loss.regularization * np.eye(d)
        b = -sigma_W + (loss.alpha + 0.5) * P.T @ c[:, i]
        rows.append(np.linalg.solve(A, b))
    return np.array(rows)


@pytest.mark.parametrize("n_blocks", [1, 3])
def test_a_loss_written_against_the_protocol_matches_brute_force(rng, n_blocks):
    user_items, P, Q = problem(rng, n_users=15, n_items=12, density=0.3)
    data = prepare(user_items, get_backend("cpu"))
    executor = LocalExecutor(data, {"user": P, "item": Q}, solver="cholesky",
                             n_blocks=n_blocks)
    executor.start(ScoreWeightedRG2(alpha=0.3).bind(user_items))
    previous = None
    for sweep in range(3):
        assert executor.begin_sweep()["weight_mean"] > 1.0
        confidence = executor.pair_terms["user"][0]
        assert previous is None or not np.allclose(confidence, previous)
        previous = confidence
        loss = executor.loss
        for side in ("user", "item"):
            factors = P if side == "user" else Q
            before = dense_objective(loss, data, P, Q, confidence)
            expected = dense_minimiser(loss, data, side, P, Q, confidence)
            decrease, _ = executor.half_step(side, sweep)
            np.testing.assert_allclose(factors, expected, rtol=1e-9, atol=1e-12)
            # the descent identity against the dense objective
            assert before - dense_objective(loss, data, P, Q, confidence) == \
                pytest.approx(decrease, rel=1e-8)


def test_a_refresh_starts_a_new_segment(rng):
    user_items, P, Q = problem(rng, n_users=15, n_items=12, density=0.3)
    data = prepare(user_items, get_backend("cpu"))
    loss = ScoreWeightedRG2(alpha=0.3).bind(user_items)
    records = []
    monitor = train(loss, data, P, Q, 4, solver="cholesky", monitor="full", tol=0.0,
                    callbacks=[RecordKeeper(records)])
    history = monitor.history
    assert list(history["segment"]) == [0, 0, 1, 1, 2, 2, 3, 3]
    # every sweep starts a segment: no rate (nor its bound check) spans two objectives
    assert np.isnan(history["rate"]).all() and np.isnan(history["within_bound"]).all()
    assert np.nanmax(history["identity_error"]) < 1e-10
    # a sweep's decrease is its own half steps' (within its segment's objective), not
    # the change from the previous sweep's end, which a refresh moved
    for record in records:
        assert record["decrease"] == pytest.approx(
            record["user_decrease"] + record["item_decrease"], rel=1e-9)
    ends = history["objective"][1::2]
    assert any(abs((ends[k] - ends[k + 1]) - records[k + 1]["decrease"]) > 1e-6 * abs(ends[k])
               for k in range(3))


class RecordKeeper(Callback):
    def __init__(self, records):
        self.records = records

    def after_sweep(self, state, record):
        self.records.append(record)
        return False


def test_monitor_levels_agree_on_evaluation_sweeps(rng):
    user_items = random_interactions(rng, n_users=40, n_items=25, density=0.3)
    train_part, held_out = validation_split(user_items, ratio=0.2, seed=0)
    params = dict(factors=4, iterations=7, dtype=np.float64, random_state=0, tol=0.0,
                  eval_every=3, alpha=0.5)
    models = {level: ALSSolver(monitor=level, **params).fit(
        train_part, show_progress=False, validation=held_out) for level in ("sweep", "full")}
    sweep, full = (models[level].monitor_.history for level in ("sweep", "full"))
    np.testing.assert_array_equal(models["sweep"].item_factors_, models["full"].item_factors_)
    assert full["exact"].all() and np.isfinite(full["identity_error"]).all()
    # "sweep": exact after sweeps 3 and 6 (evaluations) and 7 (the last) only
    exact_rows = np.flatnonzero(sweep["exact"])
    np.testing.assert_array_equal(sweep["sweep"][exact_rows], [3, 6, 7])
    np.testing.assert_array_equal(sweep["side"][exact_rows], ["item"] * 3)
    np.testing.assert_allclose(sweep["objective"][exact_rows], full["objective"][exact_rows],
                               rtol=1e-12)
    assert np.isfinite(sweep["identity_error"][exact_rows]).all()
    assert np.isnan(np.delete(sweep["identity_error"], exact_rows)).all()
    assert sweep["identity_error"][exact_rows].max() < 1e-9
    # the estimates between them are F minus the decreases: within rounding of exact F
    np.testing.assert_allclose(sweep["objective"], full["objective"], rtol=1e-9)
    np.testing.assert_array_equal(sweep["validation_ndcg@20"][exact_rows],
                                  full["validation_ndcg@20"][exact_rows])


def test_sweep_level_without_validation_measures_F_at_the_end(rng):
    model = ALSSolver(factors=3, iterations=5, tol=0.0, random_state=1).fit(
        random_interactions(rng), show_progress=False)
    history = model.monitor_.history
    np.testing.assert_array_equal(np.flatnonzero(history["exact"]), [9])
    brute = model.loss_.objective(model.user_factors_, model.item_factors_,
                                  model.user_items_)
    assert history["objective"][-1] == pytest.approx(brute, rel=1e-12)


def test_a_stop_between_evaluations_still_ends_on_an_exact_objective(rng):
    user_items = random_interactions(rng, n_users=40, n_items=25, density=0.3)
    train_part, held_out = validation_split(user_items, ratio=0.2, seed=0)
    model = ALSSolver(factors=3, iterations=50, tol=1e-3, eval_every=100, random_state=2,
                      dtype=np.float64).fit(train_part, show_progress=False,
                                            validation=held_out)
    monitor = model.monitor_
    assert monitor.stop_reason.startswith("converged") and len(monitor.rows) < 100
    assert monitor.rows[-1]["exact"] == 1.0
    assert monitor.rows[-1]["objective"] == pytest.approx(
        model.loss_.objective(model.user_factors_, model.item_factors_, model.user_items_),
        rel=1e-12)


def test_train_runs_callbacks_in_order_and_updates_factors_in_place(rng):
    user_items, P, Q = problem(rng)
    data = prepare(user_items, get_backend("cpu"))
    events = []

    class Recorder(Callback):
        def before_training(self, state):
            events.append("before")

        def after_sweep(self, state, record):
            events.append(record["sweep"])
            return record["sweep"] == 3

        def after_training(self, state):
            events.append("after")

    user_factors = P.copy()
    monitor = rgals.train(make_loss("rg2", alpha=0.2).bind(user_items), data, user_factors, Q,
                          10, tol=0.0, callbacks=[Recorder()])
    assert events == ["before", 1, 2, 3, "after"]
    assert len(monitor.rows) == 6 and not np.array_equal(user_factors, P)
    with pytest.raises(ValueError, match="unknown monitor 'every'"):
        train(make_loss("rg2").bind(user_items), data, P, Q, 1, monitor="every")
    with pytest.raises(ValueError, match="unknown monitor"):
        ALSSolver(monitor="every").fit(user_items, show_progress=False)
