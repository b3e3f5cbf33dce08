"""The probes of design.md 1.6's candidates A, B and E (research/reexpansion.py, popularity.py,
sphere.py) against dense brute force on small problems (float64), and the path probe
(research/path_up.py) run on small data."""

import sys
from types import SimpleNamespace

import numpy as np
import scipy.sparse as sp
import pytest

from research import path_up
from research import popularity
from research import reexpansion
from bench import common
from research import sphere

from rgals.data import holdout_split, synthetic
from rgals.losses import RG2
from rgals.solve import solve_rows
from rgals.validation import check_interactions


def random_interactions(rng, n_users=23, n_items=17, density=0.25, empty_item=True):
    """Random confidences in (0.5, 3], one user (and one item) left without any."""
    values = np.where(rng.random((n_users, n_items)) < density,
                      0.5 + 2.5 * rng.random((n_users, n_items)), 0.0)
    values[rng.integers(n_users)] = 0.0
    if empty_item:
        values[:, rng.integers(n_items)] = 0.0
    return sp.csr_matrix(values)


def softmax(scores):
    weights = np.exp(scores - scores.max(axis=1, keepdims=True))
    return weights / weights.sum(axis=1, keepdims=True)


def test_reexpanded_sweep_is_a_newton_step_of_the_softmax_with_every_item_in_the_top(rng):
    user_items = check_interactions(random_interactions(rng, n_users=7, n_items=12,
                                                        density=0.3, empty_item=False))
    values = user_items.toarray()
    M, N = values.shape
    d, tau, alpha = 4, 0.7, 0.2
    P, Q = rng.standard_normal((M, d)), rng.standard_normal((N, d))
    n = values.sum(axis=1)
    user_reg, item_reg = rng.uniform(0.1, 1.0, M), 0.3
    args = SimpleNamespace(top=N - 1, alpha=alpha, cg_steps=50, damping=0.0)
    P_new, Q_new = P.copy(), Q.copy()
    reexpansion.sweep(P_new, Q_new, user_items, user_items.T.tocsr(), n, args, tau,
                      user_reg, item_reg)
    # users at (P, Q)
    pi = softmax(P @ Q.T / tau)
    for u in range(M):
        c = values[u]
        H = (n[u] / tau) * (Q.T * pi[u]) @ Q + 2 * alpha * (Q.T * c) @ Q + 2 * user_reg[u] * \
            np.eye(d)
        g = -c @ Q + n[u] * pi[u] @ Q + 2 * alpha * (c * (Q @ P[u] - 1)) @ Q + \
            2 * user_reg[u] * P[u]
        np.testing.assert_allclose(P_new[u], P[u] - np.linalg.solve(H, g), rtol=1e-9,
                                   atol=1e-10)
    # items at (P new, Q)
    pi = softmax(P_new @ Q.T / tau)
    for j in range(N):
        c = values[:, j]
        H = (P_new.T * (n * pi[:, j] / tau)) @ P_new + 2 * alpha * (P_new.T * c) @ P_new + \
            2 * item_reg * np.eye(d)
        g = -c @ P_new + (n * pi[:, j]) @ P_new + \
            2 * alpha * (c * (P_new @ Q[j] - 1)) @ P_new + 2 * item_reg * Q[j]
        np.testing.assert_allclose(Q_new[j], Q[j] - np.linalg.solve(H, g), rtol=1e-9,
                                   atol=1e-10)


def test_reexpanded_user_step_at_zero_scores_is_rg2s(rng):
    user_items = check_interactions(random_interactions(rng, empty_item=False))
    M, N = user_items.shape
    loss = RG2(alpha=0.3, regularization=0.05).bind(user_items)
    Q = rng.standard_normal((N, 3))
    n = loss.user_sums
    expected = np.zeros((M, 3))
    solve_rows(loss.user_systems(Q, user_items), expected, "cholesky")
    P = np.zeros((M, 3))  # every score 0: the softmax is uniform, the floor 1/N
    args = SimpleNamespace(top=4, alpha=0.3, cg_steps=30, damping=0.0)
    Q_copy = Q.copy()
    reexpansion.sweep(P, Q_copy, user_items, user_items.T.tocsr(), n, args, 1.0,
                      loss.user_reg(n), loss.item_reg)
    # the sweep went on to the items; redo its user step alone from zero to compare
    P = np.zeros((M, 3))
    result = reexpansion.score_pass(P, Q, depth=4, temperature=1.0)
    assert np.allclose(result.log_normaliser, np.log(N))
    mass, _, floor = reexpansion.top_mass(P, Q, result.top_ids, result.log_normaliser, 1.0, N)
    np.testing.assert_allclose(mass, 1.0 / N)
    np.testing.assert_allclose(floor, 1.0 / N)
    gram = Q.T @ Q
    linear = -(n / 2)[:, None] * result.weighted_sum
    reexpansion.half_step(P, Q, user_items, result.top_ids, np.zeros((M, 4)), linear, gram,
                          n / (2 * N), loss.user_reg(n), 0.3, 30)
    np.testing.assert_allclose(P, expected, rtol=1e-8, atol=1e-10)


def fibonacci_sphere(count, radius):
    """`count` nearly uniform points on the sphere of `radius` in 3 dimensions."""
    k = np.arange(count) + 0.5
    z = 1 - 2 * k / count
    angle = np.pi * (1 + 5 ** 0.5) * k
    ring = np.sqrt(1 - z * z)
    return radius * np.stack([ring * np.cos(angle), ring * np.sin(angle), z], axis=1)


def test_sphere_item_step_is_the_constrained_minimiser(rng):
    """Against a dense search over the sphere (d = 3): no point of 200,000 is lower, and
    the solution is a KKT point (A q - b parallel to q)."""
    user_items = check_interactions(random_interactions(rng, n_users=15, n_items=9))
    loss = RG2(alpha=0.4, regularization=0.05).bind(user_items)
    item_users = user_items.T.tocsr()
    P = rng.standard_normal((15, 3))
    Q = rng.standard_normal((9, 3))
    radius = 0.8
    systems = loss.item_systems(P, item_users)
    values = item_users.toarray()
    sphere.sphere_item_step(loss, P, Q, item_users, radius, chunk=4)
    np.testing.assert_allclose(np.linalg.norm(Q, axis=1), radius, rtol=1e-9)
    points = fibonacci_sphere(200_000, radius)
    for j in range(9):
        c = values[j]
        A = systems.scale[j] * systems.gram + (P.T * (0.4 * c)) @ P + \
            systems.reg[j] * np.eye(3)
        b = systems.scale[j] * systems.rhs + (0.4 + 0.5) * c @ P
        found = Q[j] @ A @ Q[j] - 2 * b @ Q[j]
        searched = np.einsum("pi,ij,pj->p", points, A, points) - 2 * points @ b
        assert found <= searched.min() + 1e-12
        assert found >= searched.min() - 1e-3 * (1 + abs(found))  # the grid is that fine
        residual = A @ Q[j] - b
        np.testing.assert_allclose(np.cross(residual, Q[j]), 0.0, atol=1e-8)


def test_offset_factors_add_the_log_prior_to_every_score(rng):
    user_items = check_interactions(random_interactions(rng, empty_item=False))
    loss = RG2(popularity_exponent=0.5).bind(user_items)
    P = rng.standard_normal((user_items.shape[0], 3)).astype(np.float32)
    Q = rng.standard_normal((user_items.shape[1], 3)).astype(np.float32)
    P_offset, Q_offset = popularity.with_offset(P, Q, loss)
    counts = np.asarray(user_items.sum(axis=0)).ravel() ** 0.5
    np.testing.assert_allclose(P_offset @ Q_offset.T, P @ Q.T + np.log(counts / counts.sum()),
                               rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("probe, argv", [
    (popularity, ["--gammas", "0", "0.5", "--alphas", "0.1", "--regularizations", "0.01",
                  "--sweeps", "3"]),
    (sphere, ["--radii", "1", "--warm", "1", "--sweeps", "2"]),
    (reexpansion, ["--warm", "1", "--sweeps", "2", "--top", "5", "--damping", "3"]),
])
def test_each_probe_runs_on_small_data_and_prints_validation_figures(probe, argv, monkeypatch,
                                                                    capsys):
    train, test = holdout_split(synthetic(120, 80, seed=3), ratio=0.2, seed=3)
    monkeypatch.setattr(common, "load", lambda dataset: (train, test))
    assert probe.main(argv + ["--factors", "4", "--threads", "1"]) == 0
    out = capsys.readouterr().out
    figures = [float(word) for word in out.replace("|", " ").replace(",", " ").split()
               if word.startswith("0.") and len(word) == 6]
    assert figures and all(0 < figure <= 1 for figure in figures)


def test_the_path_probe_prints_each_variant_and_leaves_the_path_as_it_was(monkeypatch,
                                                                          capsys):
    from rgals import path

    train, test = holdout_split(synthetic(400, 150, seed=3), ratio=0.2, seed=3)
    monkeypatch.setattr(common, "load", lambda dataset: (train, test))
    settings = path.UP_STEP, path.BETWEEN_WITHIN
    assert path_up.main(["--dataset", "health", "--threads", "1"]) == 0
    assert (path.UP_STEP, path.BETWEEN_WITHIN) == settings
    row = capsys.readouterr().out.splitlines()[-1].split(" | ")
    assert row[0] == "| health" and len(row) == 5 + len(path_up.LAM_FACTORS)
    figures = [float(cell.split()[0]) for cell in row[1:4 + len(path_up.LAM_FACTORS)]]
    assert all(0 < figure <= 1 for figure in figures)


def test_the_sync_count_asks_for_the_cupy_stand_in(monkeypatch):
    from bench import gpu_syncs

    monkeypatch.setitem(sys.modules, "cupy_standin", None)  # not on the path
    with pytest.raises(SystemExit, match="run under the CuPy stand-in: PYTHONPATH="):
        gpu_syncs.main([])
