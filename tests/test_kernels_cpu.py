"""The Numba row kernels on one thread (the serial body, which releases the GIL) and on
several (the parallel driver) give the same numbers, also when Python threads call the
serial body at once (a Dask worker's tasks, concurrent serving)."""

import threading

import numba
import numpy as np
import pytest

from rgals.kernels import cpu
from rgals.solve import _kernel_arrays
from test_kernels_batched import problem

THREADS = numba.config.NUMBA_NUM_THREADS


def kernel_calls(rng, name="rg2", alpha=0.7):
    """{kernel name: a function of no argument returning its results (fresh outputs)},
    on a random problem of ~40 rows (more than ROW_CHUNKS' share of a thread each)."""
    systems, start = problem(rng, name, alpha, "user")
    arrays = _kernel_arrays(systems)
    eigenvalues, eigenvectors = np.linalg.eigh(systems.gram)
    rotated = systems.others @ eigenvectors
    shift = rng.standard_normal(start.shape[1])
    exact = [systems.others, systems.gram, systems.rhs, shift, systems.scale, systems.reg]
    cg = [rotated, np.maximum(eigenvalues, 0.0), eigenvectors.T @ systems.rhs, shift,
          systems.scale, systems.reg]
    pair_rotated = rng.standard_normal(start.shape)

    def cholesky_rows():
        factors = start.copy()
        return cpu.cholesky_rows(*arrays, *exact, factors), factors

    def cg_rows():
        factors = start @ eigenvectors
        return (*cpu.cg_rows(*arrays, *cg, factors, 3, 1e-12), factors)

    def diagonal_solve():
        solved = pair_rotated.copy()
        return cpu.diagonal_solve(solved, *cg[2:4], start @ eigenvectors, cg[1],
                                  systems.scale, systems.reg), solved

    return {"cholesky_rows": cholesky_rows,
            "cholesky_inverse_sum": lambda: cpu.cholesky_inverse_sum(*arrays, *exact, 5),
            "cg_rows": cg_rows,
            "pair_scores": lambda: (cpu.pair_scores(arrays[0], arrays[1], start,
                                                    systems.others),),
            "weighted_row_sums": lambda: (cpu.weighted_row_sums(arrays[0], arrays[1],
                                                                arrays[3], systems.others),),
            "diagonal_solve": diagonal_solve}


def on_threads(threads, call):
    previous = numba.get_num_threads()
    numba.set_num_threads(threads)
    try:
        return call()
    finally:
        numba.set_num_threads(previous)


def assert_same(first, second):
    for a, b in zip(first, second):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))


@pytest.mark.skipif(THREADS < 2, reason="needs Numba to have 2 threads")
@pytest.mark.parametrize("name,alpha", [("rg2", 0.7), ("rgx", 0.7), ("ials", 2.0)])
def test_one_thread_and_several_give_the_same_numbers(rng, name, alpha):
    calls = kernel_calls(rng, name, alpha)
    for kernel, call in calls.items():
        serial, parallel = on_threads(1, call), on_threads(THREADS, call)
        assert_same(serial, parallel)
        # and the rows were really solved: fresh random inputs give nonzero results
        assert np.abs(np.asarray(serial[0])).sum() > 0, kernel


def test_serial_bodies_release_the_gil():
    bodies = [cpu._cholesky_range, cpu._inverse_sum_range, cpu._cg_range, cpu._scores_range,
              cpu._row_sums_range, cpu._diagonal_range]
    assert all(body.targetoptions.get("nogil") for body in bodies)


def test_python_threads_call_the_serial_kernels_at_once(rng):
    """Four threads on one Numba thread each run every kernel together: each gets what
    it gets alone (no shared buffer, no threading layer between them)."""
    calls = kernel_calls(rng)
    alone = {kernel: on_threads(1, call) for kernel, call in calls.items()}
    results, errors = [], []
    start = threading.Barrier(4)

    def worker():
        try:
            start.wait()
            results.append({kernel: on_threads(1, call) for kernel, call in calls.items()})
        except BaseException as error:  # noqa: BLE001 - reported below
            errors.append(error)

    threads = [threading.Thread(target=worker) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not errors and len(results) == 4
    for result in results:
        for kernel in calls:
            assert_same(result[kernel], alone[kernel])
