"""The convergence monitor: identity check, Hessian bounds, rates, stopping, outputs."""

import csv
import math
import logging
import types
import warnings

import numpy as np
import pytest
import scipy.sparse as sp

import rgals.training
from conftest import random_interactions
from rgals import ALSSolver, ConvergenceMonitor
from rgals.backend import Backend
from rgals.monitor import softmax_loss
from rgals.solve import solve_rows
from test_losses import make_problem

FAST = dict(factors=4, iterations=6, dtype=np.float64, random_state=0, num_threads=1,
            monitor="full")


def fitted(rng, **params):
    user_items = random_interactions(rng, n_users=30, n_items=20, density=0.3)
    return ALSSolver(**{**FAST, **params}).fit(user_items, show_progress=False), user_items


def test_history_records_every_half_step(rng):
    model, _ = fitted(rng, tol=0.0)
    history = model.monitor_.history
    assert list(history["side"]) == ["user", "item"] * 6
    assert list(history["sweep"]) == [1, 1, 2, 2, 3, 3, 4, 4, 5, 5, 6, 6]
    for name in ("objective", "decrease", "identity_error", "rate", "rate_bound", "seconds"):
        assert history[name].shape == (12,)
    # float64 exact steps: the identity holds to rounding and F never increases
    assert history["identity_error"].max() < 1e-12
    objective = np.concatenate(([model.monitor_.initial_objective], history["objective"]))
    assert np.all(np.diff(objective) <= 1e-12 * np.abs(objective[1:]))
    np.testing.assert_allclose(-np.diff(objective), history["decrease"],
                               rtol=1e-9, atol=1e-12 * np.abs(objective).max())
    # sweep-level columns live on the item rows
    assert np.isnan(history["rate_bound"][0::2]).all()
    assert np.isfinite(history["rate_bound"][1::2]).all()
    ends = objective[0::2]  # F before sweep 1, after sweep 1, ...
    drops = -np.diff(ends)
    np.testing.assert_allclose(history["rate"][3::2], drops[1:] / drops[:-1], rtol=1e-12)


def test_identity_check_catches_a_wrong_half_step(rng, monkeypatch):
    real = rgals.training.solve_blocks
    calls = []

    def wrong_on_third_call(*args, **kwargs):
        solution = real(*args, **kwargs)
        calls.append(1)
        if len(calls) == 3:  # the user step of sweep 2 moves off its minimiser unreported
            for block in args[1]:
                block *= 1.05
        return solution

    monkeypatch.setattr(rgals.training, "solve_blocks", wrong_on_third_call)
    with pytest.warns(RuntimeWarning, match="do not match the loss"):
        model, _ = fitted(rng, tol=0.0)
    errors = model.monitor_.history["identity_error"]
    assert errors[2] > 1e-6
    assert np.delete(errors, 2).max() < 1e-12


CASES_EXACT = [("rg2", 0.0), ("rgx", 0.0), ("ials", 1.0)]
CASES_PAIRS = [("rg2", 0.7), ("rgx", 0.7), ("ials", 2.5)]


@pytest.mark.parametrize("name,alpha", CASES_EXACT + CASES_PAIRS)
@pytest.mark.parametrize("side", ["user", "item"])
def test_hessian_bounds_against_brute_force_eigenvalues(rng, name, alpha, side):
    user_items, loss, brute, P, Q = make_problem(rng, name, alpha, d=3, n_users=9, n_items=7,
                                                 density=0.4)
    if name == "ials" and alpha == 1.0:  # unit confidences: no pair Gram term
        user_items.data[:] = 1.0
        loss = type(loss)(alpha=1.0, regularization=0.05).bind(user_items)
        brute = type(brute)(name, user_items, 1.0, 0.05)
    if side == "user":
        systems, block, other = loss.user_systems(Q, user_items), P, Q
    else:
        systems, block, other = loss.item_systems(P, user_items.T.tocsr()), Q, P
    eigenvalues = np.linalg.eigvalsh(brute.block_hessian(block.shape, other, side))
    lowest, highest = loss.hessian_bounds(side, [systems])
    if (name, alpha) in CASES_EXACT:
        assert lowest == pytest.approx(eigenvalues[0], rel=1e-9, abs=1e-12)
        assert highest == pytest.approx(eigenvalues[-1], rel=1e-9)
    else:  # pair terms: a bracket, never a false guarantee
        assert lowest <= eigenvalues[0] * (1 + 1e-9) + 1e-12
        assert highest >= eigenvalues[-1] * (1 - 1e-9)


@pytest.mark.parametrize("name,alpha", CASES_EXACT)
def test_rate_bound_from_brute_force_hessians(rng, name, alpha):
    user_items, loss, brute, P, Q = make_problem(rng, name, alpha, d=3, n_users=9, n_items=7,
                                                 density=0.4)
    if name == "ials":
        user_items.data[:] = 1.0
        loss = type(loss)(alpha=1.0, regularization=0.05).bind(user_items)
        brute = type(brute)(name, user_items, 1.0, 0.05)
    monitor = ConvergenceMonitor(tol=0.0)
    monitor.start(loss.objective(P, Q, user_items))
    spectra = []
    for side in ("user", "item"):
        systems = (loss.user_systems(Q, user_items) if side == "user"
                   else loss.item_systems(P, user_items.T.tocsr()))
        # the bound uses the Hessians the half steps see: the item one after the user step
        block, other = (P, Q) if side == "user" else (Q, P)
        spectra.append(np.linalg.eigvalsh(brute.block_hessian(block.shape, other, side)))
        decrease = solve_rows(systems, block)
        monitor.half_step(1, side, decrease, loss.objective(P, Q, user_items), 0.0,
                          loss.hessian_bounds(side, [systems]))
    record = monitor.end_sweep()
    mu = min(spectrum[0] for spectrum in spectra)
    smoothness = min(spectrum[-1] for spectrum in spectra)
    assert record["rate_bound"] == pytest.approx(1 - mu / smoothness, rel=1e-9)


@pytest.mark.parametrize("name,alpha", CASES_PAIRS)
@pytest.mark.parametrize("side", ["user", "item"])
def test_convex_case_contracts_within_the_bound(rng, name, alpha, side):
    """One side fixed: F is a convex quadratic in the other, minimised by one CG step a
    'sweep'; each sweep's contraction must respect 1 - mu / L."""
    user_items, loss, _, P, Q = make_problem(rng, name, alpha, d=4)
    P, Q = 5 * P, 5 * Q  # start far from the minimum
    item_users = user_items.T.tocsr()
    monitor = ConvergenceMonitor(tol=0.0)
    monitor.start(loss.objective(P, Q, user_items))
    rates = []
    for sweep in range(1, 9):
        systems = (loss.user_systems(Q, user_items) if side == "user"
                   else loss.item_systems(P, item_users))
        decrease = solve_rows(systems, P if side == "user" else Q, "cg", cg_steps=1)
        monitor.half_step(sweep, side, decrease, loss.objective(P, Q, user_items), 0.0,
                          loss.hessian_bounds(side, [systems]))
        record = monitor.end_sweep()
        rates.append(record["rate"])
        assert record["rate_bound"] < 1
    history = monitor.history
    assert np.isfinite(rates[1:]).all() and max(rates[1:]) > 0
    assert np.all(history["within_bound"][1:] == 1.0)


def test_tol_stops_and_predicts(rng):
    model, _ = fitted(rng, tol=1e-3, iterations=200)
    monitor = model.monitor_
    assert monitor.stop_reason.startswith("converged")
    last = monitor.rows[-1]
    assert len(monitor.rows) < 400 and last["predicted_sweeps"] == 0
    drop = monitor.rows[-3]["objective"] - last["objective"]
    assert drop <= 1e-3 * abs(last["objective"])
    # a sweep earlier the fit still had sweeps to go
    assert monitor.rows[-3]["predicted_sweeps"] >= 1


def test_callback_returning_false_stops(rng):
    seen = []

    def callback(iteration, elapsed, record):
        seen.append((iteration, record["sweep"], record["objective"]))
        return iteration < 1

    model, _ = fitted(rng, tol=0.0, iterations=10)
    again = ALSSolver(**{**FAST, "tol": 0.0, "iterations": 10}).fit(
        model.user_items_, show_progress=False, callback=callback)
    assert [item[:2] for item in seen] == [(0, 1), (1, 2)]
    assert len(again.monitor_.rows) == 4 and "callback" in again.monitor_.stop_reason
    assert seen[-1][2] == again.monitor_.rows[-1]["objective"]


def test_early_stopping_restores_the_best_factors(rng, monkeypatch):
    scripted = iter([0.10, 0.30, 0.20, 0.25, 0.05, 0.01])
    snapshots = []

    def scripted_metrics(user_factors, item_factors, test, train, K, metrics, users=None):
        snapshots.append((user_factors.copy(), item_factors.copy()))
        return {f"{metrics[0]}@{K}": next(scripted), f"recall@{K}": 0.0, "users": 1}

    monkeypatch.setattr(rgals.training, "ranking_metrics", scripted_metrics)
    user_items = random_interactions(rng, n_users=30, n_items=20, density=0.3)
    model = ALSSolver(**{**FAST, "tol": 0.0, "iterations": 20, "early_stopping": True,
                         "patience": 2}).fit(user_items, show_progress=False,
                                              validation=user_items)
    monitor = model.monitor_
    assert monitor.best_sweep == 2 and monitor.best_score == 0.30
    assert len(snapshots) == 4 and "early stopping" in monitor.stop_reason
    # the evaluation saw the factors in the fit's rotated basis: compare scores
    scores = model.user_factors_ @ model.item_factors_.T
    np.testing.assert_allclose(scores, snapshots[1][0] @ snapshots[1][1].T, rtol=1e-9,
                               atol=1e-12)
    assert not np.allclose(scores, snapshots[-1][0] @ snapshots[-1][1].T)
    assert monitor.history["validation_ndcg@20"][3] == 0.30
    # with the items that sweep's users were solved against: fold-in gives them back
    users = np.arange(30)
    refit = ALSSolver(**{**FAST, "solver": "cholesky", "dtype": np.float64, "tol": 0.0,
                         "iterations": 20, "early_stopping": True, "patience": 2})
    scripted = iter([0.10, 0.30, 0.20, 0.25, 0.05, 0.01])
    refit.fit(user_items, show_progress=False, validation=user_items)
    assert refit.monitor_.best_sweep == 2 and len(snapshots) == 8  # restored from sweep 4
    np.testing.assert_allclose(refit.recalculate_user(users, user_items),
                               refit.user_factors_, rtol=1e-9, atol=1e-12)


def test_validation_metrics_and_softmax_loss_are_recorded(rng):
    user_items = random_interactions(rng, n_users=40, n_items=25, density=0.3)
    from rgals.data import validation_split
    from rgals.metrics import ranking_metrics
    train, held_out = validation_split(user_items, ratio=0.2, seed=0)
    model = ALSSolver(**{**FAST, "tol": 0.0, "eval_every": 2, "softmax_users": 15}).fit(
        train, show_progress=False, validation=held_out)
    history = model.monitor_.history
    values = history["validation_ndcg@20"]
    assert np.isnan(values[[1, 5, 9]]).all() and np.isfinite(values[[3, 7, 11]]).all()
    final = ranking_metrics(model.user_factors_, model.item_factors_, held_out, train, K=20)
    assert values[-1] == pytest.approx(final["ndcg@20"])
    assert history["validation_recall@20"][-1] == pytest.approx(final["recall@20"])
    assert np.isfinite(history["softmax_loss"][[3, 7, 11]]).all()


def test_softmax_loss_against_brute_force(rng):
    values = random_interactions(rng, n_users=12, n_items=9, density=0.4)
    P, Q = rng.standard_normal((12, 3)), rng.standard_normal((9, 3))
    users = np.array([0, 3, 4, 7, 11])
    dense = values.toarray()
    expected = []
    for user in users:
        scores = P[user] @ Q.T
        log_softmax = scores - np.log(np.sum(np.exp(scores)))
        if dense[user].sum() > 0:
            expected.append(-(dense[user] @ log_softmax) / dense[user].sum())
    assert softmax_loss(P, Q, values, users, batch=2) == pytest.approx(np.mean(expected),
                                                                       rel=1e-12)


def test_csv_and_plot(rng, tmp_path):
    model, _ = fitted(rng, tol=0.0)
    path = tmp_path / "history.csv"
    model.monitor_.to_csv(path)
    with open(path) as file:
        rows = list(csv.DictReader(file))
    assert len(rows) == 12 and rows[1]["side"] == "item"
    assert float(rows[5]["objective"]) == pytest.approx(model.monitor_.rows[5]["objective"])
    with pytest.raises(FileExistsError, match="overwrite"):
        model.monitor_.to_csv(path)
    model.monitor_.to_csv(path, overwrite=True)

    pytest.importorskip("matplotlib")
    image = tmp_path / "plots" / "convergence.png"
    model.monitor_.plot(image)
    assert image.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and image.stat().st_size > 10_000
    with pytest.raises(FileExistsError):
        model.monitor_.plot(image)


def test_collapse_to_zero_warns(rng):
    with pytest.warns(RuntimeWarning, match="shrank to about zero"):
        fitted(rng, regularization=1e3, alpha=0.0)


def test_logging_when_the_bar_is_off(rng, caplog):
    with caplog.at_level(logging.INFO, logger="rgals"):
        fitted(rng, tol=0.0, iterations=2)
    assert "sweep 1: F " in caplog.text and "sweep 2: F " in caplog.text


@pytest.mark.parametrize("params,match", [
    (dict(validation_metric="ndcg"), "validation_metric"),
    (dict(validation_metric="auc@10"), "validation_metric"),
    (dict(validation_metric="ndcg@0"), "validation_metric"),
    (dict(tol=-1.0), "tol"),
    (dict(patience=0), "patience"),
    (dict(eval_every=0), "eval_every"),
    (dict(early_stopping="yes"), "early_stopping"),
    (dict(softmax_users=-3), "softmax_users"),
])
def test_bad_monitor_parameters(rng, params, match):
    user_items = random_interactions(rng)
    with pytest.raises(ValueError, match=match):
        ALSSolver(**params).fit(user_items, show_progress=False)


def test_validation_needed_and_checked(rng):
    user_items = random_interactions(rng)
    with pytest.raises(ValueError, match="needs validation"):
        ALSSolver(early_stopping=True).fit(user_items, show_progress=False)
    with pytest.raises(ValueError, match="shape"):
        ALSSolver().fit(user_items, show_progress=False,
                        validation=sp.random(3, 3, density=0.5, format="csr"))


@pytest.mark.parametrize("name,alpha", CASES_PAIRS)
@pytest.mark.parametrize("side", ["user", "item"])
def test_bounds_from_the_solvers_by_products_equal_the_direct_ones(rng, name, alpha, side):
    from rgals.solve import solve_blocks
    user_items, loss, _, P, Q = make_problem(rng, name, alpha, d=5)
    systems = (loss.user_systems(Q, user_items) if side == "user"
               else loss.item_systems(P, user_items.T.tocsr()))
    direct = loss.hessian_bounds(side, [systems])
    solution = solve_blocks([systems], [(P if side == "user" else Q).copy()], "cg")
    assert solution.pair_curvatures is not None and solution.eigenvalues is not None

    def no_pass(*args):
        raise AssertionError("the bound made a pass over the pairs of its own")

    # with the solver's by-products the bound needs no pass over the pairs
    spy = Backend("spy", np, types.SimpleNamespace(weighted_row_sums=no_pass))
    assert loss.hessian_bounds(side, [systems], spy, solution) == pytest.approx(direct,
                                                                               rel=1e-12)
    with pytest.raises(AssertionError, match="pass over the pairs"):
        loss.hessian_bounds(side, [systems], spy)


@pytest.mark.parametrize("objective, decrease", [(0.0, 1.0), (0.0, 0.0), (5.0, math.nan),
                                                 (math.inf, 1.0), (-0.0, 1e-300)])
def test_predicted_sweeps_never_raise(objective, decrease):
    """F can reach 0 (iALS shrunk to zero factors) or stop being finite; the monitor must
    record what it can and never raise."""
    monitor = ConvergenceMonitor(tol=1e-4)
    monitor.start(objective + decrease)
    monitor.half_step(1, "user", decrease, objective, 0.0, (1.0, 2.0))
    monitor.half_step(1, "item", 0.0, objective, 0.0, (1.0, 2.0))
    record = monitor.end_sweep()
    assert record["predicted_sweeps"] >= 0 or math.isnan(record["predicted_sweeps"])


@pytest.mark.parametrize("seed", [4, 16, 17])
def test_float32_rounding_of_F_is_no_identity_alarm(seed):
    """A 50 x 50 block checkerboard with iALS: the terms of F cancel (F ~ 15 from terms of
    ~1e4), so float32 rounding reached 6e-4 of |F| and the check warned; measured against
    the terms' size it stays at rounding."""
    rows, columns = np.indices((50, 50))
    matrix = sp.csr_matrix(((rows // 5 + columns // 5) % 2 == 0).astype(float))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        model = ALSSolver(loss="ials", factors=3, random_state=seed, monitor="full").fit(
            matrix, show_progress=False)
    assert np.nanmax(model.monitor_.history["identity_error"]) < 1e-5
