"""The GPU's batched kernels, run with NumPy, agree with the Numba kernels and the brute force.

On a machine with CuPy and a CUDA device the same checks also run on the device
(parameter `xp`); elsewhere those cases are skipped.
"""

import numpy as np
import pytest
import scipy.sparse as sp

from rgals.kernels import batched, cpu
from rgals.ranking import top_lists
from rgals.solve import _kernel_arrays
from test_losses import make_problem

try:
    import cupy
    HAS_GPU = cupy.cuda.runtime.getDeviceCount() > 0
except Exception:  # no CuPy, or CuPy without a driver
    cupy, HAS_GPU = None, False

ARRAY_LIBRARIES = ["numpy", pytest.param("cupy", marks=pytest.mark.skipif(
    not HAS_GPU, reason="needs CuPy and a CUDA device"))]


@pytest.fixture(params=ARRAY_LIBRARIES)
def xp(request):
    return np if request.param == "numpy" else cupy


@pytest.fixture(params=["default", "tiny"])
def budgets(request, monkeypatch):
    """Also run with tiny work budgets, so that every chunked loop takes many turns."""
    if request.param == "tiny":
        monkeypatch.setattr(batched, "PAIR_BUDGET", 7)
        monkeypatch.setattr(batched, "SYSTEM_BUDGET", 1)
    return request.param


def device(xp, value):
    if sp.issparse(value):
        return value if xp is np else batched.sparse_module(xp).csr_matrix(value)
    return xp.asarray(value)


def host(value):
    return batched.to_host(value)


def problem(rng, name, alpha, side, d=6):
    user_items, loss, _, P, Q = make_problem(rng, name, alpha, d=d)
    if side == "user":
        return loss.user_systems(Q, user_items), P
    return loss.item_systems(P, user_items.T.tocsr()), Q


def kernel_inputs(xp, systems, dtype=np.float64):
    indptr, indices, pair_gram, pair_rhs = _kernel_arrays(systems, dtype)
    return [device(xp, array) for array in (indptr, indices, pair_gram, pair_rhs)]


CASES = [("rg2", 0.7), ("rgx", 0.7), ("ials", 2.0), ("rg2", 0.0)]


@pytest.mark.parametrize("name,alpha", CASES)
@pytest.mark.parametrize("side", ["user", "item"])
def test_cg_rows_takes_the_cpu_kernels_steps(rng, xp, budgets, name, alpha, side):
    systems, start = problem(rng, name, alpha, side)
    eigenvalues, eigenvectors = np.linalg.eigh(systems.gram)
    eigenvalues = np.maximum(eigenvalues, 0.0)
    others = systems.others @ eigenvectors
    shift = rng.standard_normal(start.shape[1])  # a coupling shift, as RGx's CG step adds
    rest = [others, eigenvalues, eigenvectors.T @ systems.rhs, shift, systems.scale,
            systems.reg]
    expected_factors = start @ eigenvectors
    expected = cpu.cg_rows(*_kernel_arrays(systems), *rest, expected_factors, 3, 1e-12)
    factors = device(xp, start @ eigenvectors)
    decrease = batched.cg_rows(*kernel_inputs(xp, systems), *[device(xp, a) for a in rest],
                               factors, 3, 1e-12)
    np.testing.assert_allclose(host(factors), expected_factors, rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(host(decrease), expected, rtol=1e-9, atol=1e-14)
    assert expected.sum() > 0


@pytest.mark.parametrize("name,alpha", CASES)
@pytest.mark.parametrize("side", ["user", "item"])
def test_exact_solves_match_the_cpu_kernels(rng, xp, budgets, name, alpha, side):
    systems, start = problem(rng, name, alpha, side)
    shift = rng.standard_normal(start.shape[1])
    rest = [systems.others, systems.gram, systems.rhs, shift, systems.scale, systems.reg]
    expected_factors = start.copy()
    expected = cpu.cholesky_rows(*_kernel_arrays(systems), *rest, expected_factors)
    factors = device(xp, start)
    inputs = kernel_inputs(xp, systems) + [device(xp, a) for a in rest]
    decrease = batched.cholesky_rows(*inputs, factors)
    np.testing.assert_allclose(host(factors), expected_factors, rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(host(decrease), expected, rtol=1e-9, atol=1e-14)

    inverse_sum, solution_sum, n_bad = cpu.cholesky_inverse_sum(*_kernel_arrays(systems),
                                                                *rest, 4)
    got = batched.cholesky_inverse_sum(*inputs)
    np.testing.assert_allclose(host(got[0]), inverse_sum, rtol=1e-10)
    np.testing.assert_allclose(host(got[1]), solution_sum, rtol=1e-10, atol=1e-12)
    assert got[2] == n_bad == 0


def test_exact_solves_flag_systems_that_are_not_positive_definite(rng, xp):
    systems, start = problem(rng, "rg2", 0.4, "user")
    inputs = kernel_inputs(xp, systems) + [device(xp, a) for a in (
        systems.others, systems.gram, systems.rhs, np.zeros(start.shape[1]), systems.scale,
        -1e3 * np.ones_like(systems.reg))]
    decrease = host(batched.cholesky_rows(*inputs, device(xp, start)))
    assert np.isnan(decrease).all()
    assert batched.cholesky_inverse_sum(*inputs)[2] >= 0


def test_sparse_products_and_scores(rng, xp, budgets):
    systems, start = problem(rng, "rg2", 0.7, "user")
    indptr, indices, pair_gram, pair_rhs = _kernel_arrays(systems)
    others = systems.others
    expected = cpu.weighted_row_sums(indptr, indices, pair_rhs, others)
    got = batched.weighted_row_sums(*[device(xp, a) for a in (indptr, indices, pair_rhs,
                                                               others)])
    np.testing.assert_allclose(host(got), expected, rtol=1e-12, atol=1e-14)
    scores = batched.pair_scores(*[device(xp, a) for a in (indptr, indices, start, others)])
    rows, columns = systems.interactions.nonzero()
    np.testing.assert_allclose(host(scores), np.sum(start[rows] * others[columns], axis=1),
                               rtol=1e-12)


def test_diagonal_solve(rng, xp):
    n, d = 9, 4
    arrays = [rng.standard_normal((n, d)), rng.standard_normal(d), rng.standard_normal(d),
              rng.standard_normal((n, d)), rng.random(d), rng.random(n) + 0.1,
              rng.random(n) + 0.1]
    expected_solution = arrays[0].copy()
    expected = cpu.diagonal_solve(expected_solution, *arrays[1:])
    solution = device(xp, arrays[0])
    decrease = batched.diagonal_solve(solution, *[device(xp, a) for a in arrays[1:]])
    np.testing.assert_allclose(host(solution), expected_solution, rtol=1e-12)
    np.testing.assert_allclose(host(decrease), expected, rtol=1e-12)


def test_float32_cg_stays_close_to_float64(rng, xp):
    systems, start = problem(rng, "rg2", 0.7, "user", d=8)
    eigenvalues, eigenvectors = np.linalg.eigh(systems.gram)
    rest = [systems.others @ eigenvectors, np.maximum(eigenvalues, 0.0),
            eigenvectors.T @ systems.rhs, np.zeros(8), systems.scale, systems.reg]
    results = {}
    for dtype in (np.float64, np.float32):
        factors = device(xp, (start @ eigenvectors).astype(dtype))
        batched.cg_rows(*kernel_inputs(xp, systems, dtype),
                        *[device(xp, np.asarray(a, dtype)) for a in rest], factors, 3, 1e-6)
        assert factors.dtype == dtype
        results[dtype] = host(factors)
    scale = np.abs(results[np.float64]).max()
    np.testing.assert_allclose(results[np.float32], results[np.float64], atol=1e-4 * scale)


@pytest.mark.parametrize("depth", [1, 5, 40])
def test_top_lists_match_the_cpu_ranking(rng, xp, budgets, depth):
    queries, targets = rng.standard_normal((13, 4)), rng.standard_normal((31, 4))
    targets[3] = np.nan  # a NaN score never ranks
    mask = sp.csr_matrix(rng.random((13, 31)) < 0.3)
    mask.sort_indices()
    removed = np.array([0, 7, 30])
    expected_scores, expected_ids = top_lists(queries, targets, min(depth, 31), mask, removed)
    scores, ids = batched.top_lists(device(xp, queries), device(xp, targets), min(depth, 31),
                                    device(xp, mask.indptr), device(xp, mask.indices),
                                    device(xp, removed), batch=4)
    np.testing.assert_array_equal(host(ids), expected_ids)
    np.testing.assert_allclose(host(scores), expected_scores, rtol=1e-12)
    if depth == 40:
        assert (host(ids) == -1).any()  # slots beyond the items left stay empty


def test_array_module_and_host_copies():
    assert batched.array_module(np.zeros(3)) is np
    assert batched.array_module(sp.csr_matrix((2, 2))) is np
    assert batched.sparse_module(np) is sp
    array = np.arange(3.0)
    assert batched.to_host(array) is array
