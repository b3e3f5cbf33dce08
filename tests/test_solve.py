"""The three solvers agree: CG converges to Cholesky, the shared-eigenbasis path is exact."""

import dataclasses

import numpy as np
import pytest

from rgals.kernels import cpu
from test_losses import make_problem
from rgals.solve import solve_rows


@pytest.mark.parametrize("name,alpha", [("rg2", 0.7), ("rgx", 0.7), ("ials", 2.0)])
@pytest.mark.parametrize("side", ["user", "item"])
def test_cg_converges_to_cholesky(rng, name, alpha, side):
    user_items, loss, _, P, Q = make_problem(rng, name, alpha, d=6)
    if side == "user":
        systems, start = loss.user_systems(Q, user_items), P
    else:
        systems, start = loss.item_systems(P, user_items.T.tocsr()), Q
    exact = start.copy()
    solve_rows(systems, exact, "cholesky")
    approximate = start.copy()
    # enough steps for exact convergence per row; the RGx coupling needs repeated steps
    for _ in range(200 if systems.coupling is not None else 1):
        solve_rows(systems, approximate, "cg", cg_steps=40)
    np.testing.assert_allclose(approximate, exact, rtol=0, atol=1e-8 * np.abs(exact).max())


@pytest.mark.parametrize("name", ["rg2", "rgx"])
@pytest.mark.parametrize("side", ["user", "item"])
def test_eigenbasis_fast_path_equals_cholesky(rng, name, side):
    user_items, loss, _, P, Q = make_problem(rng, name, 0.0, d=5)
    if side == "user":
        systems, start = loss.user_systems(Q, user_items), P
    else:
        systems, start = loss.item_systems(P, user_items.T.tocsr()), Q
    assert systems.pair_gram is None
    results = {}
    for solver in ("auto", "cholesky"):
        factors = start.copy()
        results[solver] = (solve_rows(systems, factors, solver), factors)
    assert results["auto"][0] == pytest.approx(results["cholesky"][0], rel=1e-9)
    np.testing.assert_allclose(results["auto"][1], results["cholesky"][1], rtol=1e-9,
                               atol=1e-12)


def test_cholesky_kernel_against_numpy_solve(rng):
    """Row systems assembled and solved by the kernel equal numpy's dense solve."""
    user_items, loss, _, P, Q = make_problem(rng, "rg2", 0.4, d=7)
    systems = loss.user_systems(Q, user_items)
    factors = P.copy()
    solve_rows(systems, factors, "cholesky")
    for row in range(user_items.shape[0]):
        start, end = user_items.indptr[row], user_items.indptr[row + 1]
        items = user_items.indices[start:end]
        Y = Q[items]
        A = systems.scale[row] * systems.gram + systems.reg[row] * np.eye(7) + \
            (Y * systems.pair_gram[start:end, None]).T @ Y
        b = systems.scale[row] * systems.rhs + systems.pair_rhs[start:end] @ Y
        np.testing.assert_allclose(factors[row], np.linalg.solve(A, b), rtol=1e-10,
                                   atol=1e-13)


def test_cholesky_reports_non_positive_definite_rows(rng):
    user_items, loss, _, P, Q = make_problem(rng, "rg2", 0.4)
    systems = loss.user_systems(Q, user_items)
    broken = dataclasses.replace(systems, reg=-np.ones_like(systems.reg) * 1e3)
    with pytest.raises(FloatingPointError, match="not positive definite"):
        solve_rows(broken, P.copy(), "cholesky")


def test_pair_scores_kernel(rng):
    user_items, _, _, P, Q = make_problem(rng, "rg2", 0.0)
    scores = cpu.pair_scores(user_items.indptr, user_items.indices, P, Q)
    rows, columns = user_items.nonzero()
    np.testing.assert_allclose(scores, np.sum(P[rows] * Q[columns], axis=1), rtol=1e-12)
