"""The GPU's batched kernels, run with NumPy, agree with the Numba kernels and the brute force.

On a machine with CuPy and a CUDA device the same checks also run on the device
(parameter `xp`); elsewhere those cases are skipped.
"""

import inspect

import numpy as np
import pytest
import scipy.sparse as sp

from rgals.kernels import batched, cpu
from rgals.ranking import top_lists
from rgals.solve import _kernel_arrays
from conftest import HAS_GPU, cupy
from test_losses import make_problem

ARRAY_LIBRARIES = ["numpy", pytest.param("cupy", marks=pytest.mark.skipif(
    not HAS_GPU, reason="needs CuPy and a CUDA device"))]


@pytest.fixture(params=ARRAY_LIBRARIES)
def xp(request):
    return np if request.param == "numpy" else cupy


@pytest.fixture
def kernels(xp):
    return batched.BatchedKernels(xp)


@pytest.fixture(params=["default", "tiny"])
def budgets(request, monkeypatch):
    """Also run with tiny work budgets, so that every chunked loop takes many turns."""
    if request.param == "tiny":
        monkeypatch.setattr(batched, "PAIR_BUDGET", 7)
        monkeypatch.setattr(batched, "SYSTEM_BUDGET", 1)
    return request.param


def device(xp, value):
    return xp.asarray(value)


def host(value):
    return np.asarray(value) if cupy is None else cupy.asnumpy(value)


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
def test_cg_rows_takes_the_cpu_kernels_steps(rng, xp, kernels, budgets, name, alpha, side):
    systems, start = problem(rng, name, alpha, side)
    eigenvalues, eigenvectors = np.linalg.eigh(systems.gram)
    eigenvalues = np.maximum(eigenvalues, 0.0)
    others = systems.others @ eigenvectors
    shift = rng.standard_normal(start.shape[1])  # a coupling shift, as RGx's CG step adds
    rest = [others, eigenvalues, eigenvectors.T @ systems.rhs, shift, systems.scale,
            systems.reg]
    expected_factors = start @ eigenvectors
    expected, expected_curvature = cpu.cg_rows(*_kernel_arrays(systems), *rest,
                                               expected_factors, 3, 1e-12)
    factors = device(xp, start @ eigenvectors)
    decrease, curvature = kernels.cg_rows(*kernel_inputs(xp, systems),
                                          *[device(xp, a) for a in rest], factors, 3, 1e-12)
    np.testing.assert_allclose(host(factors), expected_factors, rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(host(decrease), expected, rtol=1e-9, atol=1e-14)
    assert expected.sum() > 0
    # the pair curvature sum_k pair_gram_k |y_k|^2 of each row, written out
    matrix, pair_gram = systems.interactions, _kernel_arrays(systems)[2]
    brute = [sum(pair_gram[k] * systems.others[matrix.indices[k]] @
                 systems.others[matrix.indices[k]]
                 for k in range(matrix.indptr[row], matrix.indptr[row + 1]))
             for row in range(matrix.shape[0])]
    np.testing.assert_allclose(expected_curvature, brute, rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(host(curvature), brute, rtol=1e-9, atol=1e-12)


@pytest.mark.parametrize("name,alpha", CASES)
@pytest.mark.parametrize("side", ["user", "item"])
def test_exact_solves_match_the_cpu_kernels(rng, xp, kernels, budgets, name, alpha, side):
    systems, start = problem(rng, name, alpha, side)
    shift = rng.standard_normal(start.shape[1])
    rest = [systems.others, systems.gram, systems.rhs, shift, systems.scale, systems.reg]
    expected_factors = start.copy()
    expected = cpu.cholesky_rows(*_kernel_arrays(systems), *rest, expected_factors)
    factors = device(xp, start)
    inputs = kernel_inputs(xp, systems) + [device(xp, a) for a in rest]
    decrease = kernels.cholesky_rows(*inputs, factors)
    np.testing.assert_allclose(host(factors), expected_factors, rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(host(decrease), expected, rtol=1e-9, atol=1e-14)

    inverse_sum, solution_sum, n_bad = cpu.cholesky_inverse_sum(*_kernel_arrays(systems),
                                                                *rest, 4)
    got = kernels.cholesky_inverse_sum(*inputs, 4)
    np.testing.assert_allclose(host(got[0]), inverse_sum, rtol=1e-10)
    np.testing.assert_allclose(host(got[1]), solution_sum, rtol=1e-10, atol=1e-12)
    assert got[2] == n_bad == 0


@pytest.mark.parametrize("side", ["user", "item"])
def test_a_positive_definite_block_is_factorised_in_one_call(rng, xp, kernels, side,
                                                             monkeypatch):
    # the column-by-column factorisation launches ~10 kernels per column and block
    # (issue 30): only a block holding a row that is not positive definite may use it
    systems, start = problem(rng, "rgx", 0.7, side, d=24)
    shift = rng.standard_normal(start.shape[1])
    rest = [systems.others, systems.gram, systems.rhs, shift, systems.scale, systems.reg]
    expected_factors = start.copy()
    expected = cpu.cholesky_rows(*_kernel_arrays(systems), *rest, expected_factors)

    def column_by_column(A):
        raise AssertionError("a block of positive definite systems went column by column")

    monkeypatch.setattr(kernels, "_cholesky_factors", column_by_column)
    factors = device(xp, start)
    decrease = kernels.cholesky_rows(*kernel_inputs(xp, systems),
                                     *[device(xp, a) for a in rest], factors)
    np.testing.assert_allclose(host(factors), expected_factors, rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(host(decrease), expected, rtol=1e-9, atol=1e-14)


def test_linalg_errors_make_cupy_raise_as_numpy_does(monkeypatch):
    # CuPy's default linalg='ignore' turns a failed factorisation into NaN (issue 30)
    import contextlib
    import sys
    import types

    entered = []
    fake = types.ModuleType("cupyx")
    fake.errstate = lambda **settings: contextlib.nullcontext(entered.append(settings))
    monkeypatch.setitem(sys.modules, "cupyx", fake)
    with batched.linalg_errors(object()):  # any array module but NumPy
        pass
    assert entered == [{"linalg": "raise"}]
    with batched.linalg_errors(np):
        with pytest.raises(np.linalg.LinAlgError):
            np.linalg.cholesky(-np.eye(2))
    assert len(entered) == 1


def exact_solves(rng, xp, kernels, systems, start, reg):
    """(cpu, batched) results of cholesky_rows and cholesky_inverse_sum with this `reg`:
    each a (decrease, factors, (S, t, rows not positive definite))."""
    shift = rng.standard_normal(start.shape[1])
    rest = [systems.others, systems.gram, systems.rhs, shift, systems.scale, reg]
    factors = start.copy()
    decrease = cpu.cholesky_rows(*_kernel_arrays(systems), *rest, factors)
    expected = decrease, factors, cpu.cholesky_inverse_sum(*_kernel_arrays(systems), *rest, 4)
    inputs = kernel_inputs(xp, systems) + [device(xp, a) for a in rest]
    factors = device(xp, start)
    decrease = host(kernels.cholesky_rows(*inputs, factors))
    S, t, n_bad = kernels.cholesky_inverse_sum(*inputs, 4)
    return expected, (decrease, host(factors), (host(S), host(t), n_bad))


def failing_reg(systems, kind):
    """A reg per row that leaves no A_r positive definite: -1e3 (negative definite), or
    minus the midpoint of the eigenvalues of A_r without reg (indefinite: eigenvalues on
    both sides of zero, which a dx^T A dx >= 0 test mostly misses)."""
    if kind == "negative definite":
        return np.full_like(systems.reg, -1e3)
    indptr, indices, pair_gram, _ = _kernel_arrays(systems)
    reg = np.empty_like(systems.reg)
    for row in range(reg.shape[0]):
        pairs = slice(indptr[row], indptr[row + 1])
        y = systems.others[indices[pairs]]
        eigenvalues = np.linalg.eigvalsh(systems.scale[row] * systems.gram
                                         + (y * pair_gram[pairs, None]).T @ y)
        reg[row] = -(eigenvalues[0] + eigenvalues[-1]) / 2
    return reg


FAILURES = ["negative definite", "indefinite"]


@pytest.mark.parametrize("kind", FAILURES)
@pytest.mark.parametrize("side", ["user", "item"])
def test_exact_solves_flag_every_row_that_is_not_positive_definite(rng, xp, kernels, budgets,
                                                                   side, kind):
    systems, start = problem(rng, "rg2", 0.4, side)
    expected, got = exact_solves(rng, xp, kernels, systems, start, failing_reg(systems, kind))
    assert np.isnan(expected[0]).all()
    np.testing.assert_array_equal(np.isnan(got[0]), np.isnan(expected[0]))
    assert got[2][2] == expected[2][2] == start.shape[0]


@pytest.mark.parametrize("kind", FAILURES)
@pytest.mark.parametrize("name,alpha", CASES)
@pytest.mark.parametrize("side", ["user", "item"])
def test_exact_solves_flag_only_the_rows_that_are_not_positive_definite(
        rng, xp, kernels, budgets, name, alpha, side, kind):
    systems, start = problem(rng, name, alpha, side)
    n_rows = start.shape[0]
    bad = np.zeros(n_rows, dtype=bool)
    bad[rng.permutation(n_rows)[:n_rows // 3]] = True
    reg = np.where(bad, failing_reg(systems, kind), systems.reg)
    (expected, expected_factors, expected_sums), (decrease, factors, sums) = exact_solves(
        rng, xp, kernels, systems, start, reg)
    np.testing.assert_array_equal(np.isnan(expected), bad)
    np.testing.assert_array_equal(np.isnan(decrease), bad)
    good = ~bad
    np.testing.assert_allclose(decrease[good], expected[good], rtol=1e-10, atol=1e-14)
    np.testing.assert_allclose(factors[good], expected_factors[good], rtol=1e-10, atol=1e-12)
    assert sums[2] == expected_sums[2] == bad.sum()
    np.testing.assert_allclose(sums[0], expected_sums[0], rtol=1e-10)
    np.testing.assert_allclose(sums[1], expected_sums[1], rtol=1e-10, atol=1e-12)


def test_sparse_products_and_scores(rng, xp, kernels, budgets):
    systems, start = problem(rng, "rg2", 0.7, "user")
    indptr, indices, pair_gram, pair_rhs = _kernel_arrays(systems)
    others = systems.others
    expected = cpu.weighted_row_sums(indptr, indices, pair_rhs, others)
    got = kernels.weighted_row_sums(*[device(xp, a) for a in (indptr, indices, pair_rhs,
                                                               others)])
    np.testing.assert_allclose(host(got), expected, rtol=1e-12, atol=1e-14)
    scores = kernels.pair_scores(*[device(xp, a) for a in (indptr, indices, start, others)])
    rows, columns = systems.interactions.nonzero()
    np.testing.assert_allclose(host(scores), np.sum(start[rows] * others[columns], axis=1),
                               rtol=1e-12)
    # each pair's row, empty rows (the problem has one) included
    assert rows.size == indices.size and (np.diff(indptr) == 0).any()
    np.testing.assert_array_equal(cpu.pair_rows(indptr, indices.size), rows)
    np.testing.assert_array_equal(host(kernels.pair_rows(device(xp, indptr), indices.size)),
                                  rows)


def test_diagonal_solve(rng, xp, kernels):
    n, d = 9, 4
    arrays = [rng.standard_normal((n, d)), rng.standard_normal(d), rng.standard_normal(d),
              rng.standard_normal((n, d)), rng.random(d), rng.random(n) + 0.1,
              rng.random(n) + 0.1]
    expected_solution = arrays[0].copy()
    expected = cpu.diagonal_solve(expected_solution, *arrays[1:])
    solution = device(xp, arrays[0])
    decrease = kernels.diagonal_solve(solution, *[device(xp, a) for a in arrays[1:]])
    np.testing.assert_allclose(host(solution), expected_solution, rtol=1e-12)
    np.testing.assert_allclose(host(decrease), expected, rtol=1e-12)


def test_float32_cg_stays_close_to_float64(rng, xp, kernels):
    systems, start = problem(rng, "rg2", 0.7, "user", d=8)
    eigenvalues, eigenvectors = np.linalg.eigh(systems.gram)
    rest = [systems.others @ eigenvectors, np.maximum(eigenvalues, 0.0),
            eigenvectors.T @ systems.rhs, np.zeros(8), systems.scale, systems.reg]
    results = {}
    for dtype in (np.float64, np.float32):
        factors = device(xp, (start @ eigenvectors).astype(dtype))
        kernels.cg_rows(*kernel_inputs(xp, systems, dtype),
                        *[device(xp, np.asarray(a, dtype)) for a in rest], factors, 3, 1e-6)
        assert factors.dtype == dtype
        results[dtype] = host(factors)
    scale = np.abs(results[np.float64]).max()
    np.testing.assert_allclose(results[np.float32], results[np.float64], atol=1e-4 * scale)


@pytest.mark.parametrize("depth", [1, 5, 40])
def test_top_lists_match_the_cpu_ranking(rng, xp, kernels, budgets, depth):
    queries, targets = rng.standard_normal((13, 4)), rng.standard_normal((31, 4))
    targets[3] = np.nan  # a NaN score never ranks
    mask = sp.csr_matrix(rng.random((13, 31)) < 0.3)
    mask.sort_indices()
    removed = np.array([0, 7, 30])
    expected_scores, expected_ids = top_lists(queries, targets, min(depth, 31), mask, removed)
    scores, ids = kernels.top_lists(device(xp, queries), device(xp, targets), min(depth, 31),
                                    device(xp, mask.indptr), device(xp, mask.indices),
                                    device(xp, removed), batch=4)
    np.testing.assert_array_equal(host(ids), expected_ids)
    np.testing.assert_allclose(host(scores), expected_scores, rtol=1e-12)
    if depth == 40:
        assert (host(ids) == -1).any()  # slots beyond the items left stay empty


class NumpyRecordingSorts:
    """NumPy that records the length of every row it sorts or partitions."""

    def __init__(self):
        self.widths = []

    def __getattr__(self, name):
        function = getattr(np, name)
        if name not in ("sort", "argsort", "partition", "argpartition"):
            return function

        def recorded(a, *args, axis=-1, **kwargs):
            self.widths.append(a.shape[axis] if a.ndim else 1)
            return function(a, *args, axis=axis, **kwargs)
        return recorded


@pytest.mark.parametrize("depth", [1, 10])
def test_top_lists_sort_no_whole_row(rng, depth):
    # CuPy's argpartition sorts whole rows: 73 sorts of 2^24 scores for a Gowalla
    # evaluation (issue 30); only a few times `depth` entries per row may be sorted
    queries, targets = rng.standard_normal((50, 8)), rng.standard_normal((4000, 8))
    recording = NumpyRecordingSorts()
    kernels = batched.BatchedKernels(np)
    kernels.xp = recording  # NumPy's arrays, its sorts recorded
    scores, ids = kernels.top_lists(queries, targets, depth)
    expected_scores, expected_ids = top_lists(queries, targets, depth)
    np.testing.assert_array_equal(ids, expected_ids)
    np.testing.assert_allclose(scores, expected_scores, rtol=1e-12)
    assert recording.widths and max(recording.widths) <= 4000 // 10


@pytest.mark.parametrize("depth", [1, 3, 8, 30])
def test_top_lists_break_ties_by_the_lower_id(rng, xp, kernels, budgets, depth):
    # targets from 5 distinct vectors and integer queries: every score is tied many times
    queries = rng.integers(-2, 3, size=(9, 3)).astype(np.float64)
    targets = rng.integers(-2, 3, size=(5, 3)).astype(np.float64)[rng.integers(5, size=40)]
    mask = sp.csr_matrix(rng.random((9, 40)) < 0.2)
    mask.sort_indices()
    expected_scores, expected_ids = top_lists(queries, targets, depth, mask)
    scores, ids = kernels.top_lists(device(xp, queries), device(xp, targets), depth,
                                    device(xp, mask.indptr), device(xp, mask.indices),
                                    batch=4)
    np.testing.assert_array_equal(host(ids), expected_ids)
    np.testing.assert_array_equal(host(scores), expected_scores)


def test_kernels_take_the_cpu_kernels_arguments(xp, kernels):
    assert kernels.xp is xp
    if xp is np:
        assert kernels.sparse is sp
    else:
        import cupyx.scipy.sparse
        assert kernels.sparse is cupyx.scipy.sparse
    for name in ("pair_rows", "pair_scores", "weighted_row_sums", "diagonal_solve",
                 "cg_rows", "cholesky_rows", "cholesky_inverse_sum"):
        expected = inspect.signature(getattr(cpu, name))
        assert inspect.signature(getattr(kernels, name)) == expected, name
