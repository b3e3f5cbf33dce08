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


def dense_pcg(A, b, x, steps):
    """Jacobi-preconditioned CG on a dense system, written out: the kernel's reference."""
    jacobi = np.diag(A)
    r = b - A @ x
    z = r / jacobi
    p, rz = z.copy(), r @ z
    for _ in range(steps):
        if rz <= 0.0:  # converged exactly (a diagonal system after one step)
            break
        Ap = A @ p
        step = rz / (p @ Ap)
        x, r = x + step * p, r - step * Ap
        z = r / jacobi
        rz, previous = r @ z, rz
        p = z + (rz / previous) * p
    return x


def test_cg_kernel_takes_dense_pcg_steps_on_rows_of_every_length(rng):
    """Rows of 0 to 41 pairs: the four-pairs-at-a-time loops, their remainders and the
    prefetch (from 20 pairs on) give the steps of a dense PCG (float64, 1e-10)."""
    n_rows, n_others, d = 42, 60, 7
    lengths = np.arange(n_rows)
    indptr = np.concatenate([[0], np.cumsum(lengths)])
    indices = np.concatenate([np.sort(rng.choice(n_others, n, replace=False))
                              for n in lengths]).astype(np.int32)
    pair_gram, pair_rhs = rng.random(indices.size), rng.standard_normal(indices.size)
    others = rng.standard_normal((n_others, d))
    eigenvalues = rng.random(d) + 0.1
    rhs, shift = rng.standard_normal(d), rng.standard_normal(d)
    scale, reg = rng.random(n_rows) + 0.5, rng.random(n_rows) * 0.1 + 0.01
    start = rng.standard_normal((n_rows, d))
    factors = start.copy()
    cpu.cg_rows(indptr, indices, pair_gram, pair_rhs, others, eigenvalues, rhs, shift,
                scale, reg, factors, 3, 0.0)
    for row in range(n_rows):
        pairs = slice(indptr[row], indptr[row + 1])
        Y = others[indices[pairs]]
        A = np.diag(scale[row] * eigenvalues + reg[row]) + (Y.T * pair_gram[pairs]) @ Y
        b = scale[row] * rhs + shift + Y.T @ pair_rhs[pairs]
        np.testing.assert_allclose(factors[row], dense_pcg(A, b, start[row], 3), rtol=1e-10,
                                   atol=1e-12, err_msg=f"row with {lengths[row]} pairs")


@pytest.mark.parametrize("kernel", ["_pairs_product", "_pairs_first_pass", "_dot_same"])
def test_float32_pair_loops_never_widen_to_float64(kernel):
    """A float32 model's pair loops stay in float32 lanes: one float64 accumulator
    (as `p[0] * 0` once made, Numba types it float64) halves the SIMD width and cost the
    CG kernel 1.5-1.8x (measured on Gowalla)."""
    import numba

    python_function = getattr(cpu, kernel).py_func
    fresh = numba.njit(fastmath=True)(python_function)  # its own typing, not the cache
    vector, indices = np.ones(5, np.float32), np.arange(6, dtype=np.int32)
    weights, others = np.ones(6, np.float32), np.ones((6, 5), np.float32)
    arguments = {
        "_pairs_product": (0, 6, indices, weights, others, vector, vector.copy()),
        "_pairs_first_pass": (0, 6, indices, weights, weights, others, vector,
                              vector.copy(), vector.copy(), vector.copy()),
        "_dot_same": (vector, vector),
    }[kernel]
    fresh(*arguments)
    typemap = fresh.overloads[fresh.signatures[0]].type_annotation.typemap
    widened = {name: str(kind) for name, kind in typemap.items() if "float64" in str(kind)}
    assert not widened, f"{kernel} computes in float64: {widened}"
    assert "float32" in {str(kind) for kind in typemap.values()}


def test_cg_tolerance_skips_rows_already_near_their_minimiser(rng):
    user_items, loss, _, P, Q = make_problem(rng, "rg2", 0.7, d=6)
    systems = loss.user_systems(Q, user_items)
    exact = P.copy()
    solve_rows(systems, exact, "cholesky")
    # even rows far from their minimiser, odd rows within about 1e-6 of it
    far = np.arange(exact.shape[0]) % 2 == 0
    near = 1e-6 * np.abs(exact).max(axis=1, keepdims=True)  # relative to each row
    start = exact + np.where(far[:, None], 0.5, near) * rng.standard_normal(exact.shape)
    results = {}
    for tolerance in (1e-3, None):
        factors = start.copy()
        solve_rows(systems, factors, "cg", cg_steps=3, cg_tolerance=tolerance)
        results[tolerance] = factors
    # no step taken (the rotation into the eigenbasis and back rounds at 1e-15)
    np.testing.assert_allclose(results[1e-3][~far], start[~far], rtol=0, atol=1e-13)
    assert not np.allclose(results[None][~far], start[~far], rtol=0, atol=1e-10)
    assert not np.allclose(results[1e-3][far], start[far])
    with pytest.raises(ValueError, match="cg_tolerance must be a finite number >= 0"):
        from rgals import ALSSolver
        ALSSolver(cg_tolerance=-1.0).fit(user_items, show_progress=False)
