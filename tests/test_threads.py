"""BLAS's thread setting is the process's: rgals limits it while any caller needs it and
gives it back when the last one is done, also when callers overlap on several threads."""

import threading
from concurrent.futures import ThreadPoolExecutor

import numba
import numpy as np
import pytest
from threadpoolctl import ThreadpoolController, threadpool_limits

import rgals
from conftest import random_interactions
from rgals.threads import blas_on_one_thread, kernel_threads


def blas_threads():
    return [info["num_threads"] for info in ThreadpoolController().info()
            if info["user_api"] == "blas"]


@pytest.fixture
def blas_on_two_threads():
    if not blas_threads():
        pytest.skip("no BLAS library that threadpoolctl can see")
    with threadpool_limits(limits=2, user_api="blas"):
        yield


def test_overlapping_holders_restore_the_setting_when_the_last_leaves(blas_on_two_threads):
    """A holder that leaves while another still holds the limit leaves it in place; the
    last one out restores the process's setting (read here, in the main thread: OpenBLAS
    may not show another thread's change to it)."""
    seen = {}

    def second_holder():
        with blas_on_one_thread():
            pass

    with blas_on_one_thread():
        seen["held"] = blas_threads()
        other = threading.Thread(target=second_holder)
        other.start()
        other.join()
        seen["after the other left"] = blas_threads()
    seen["after both left"] = blas_threads()
    assert set(seen["held"]) == set(seen["after the other left"]) == {1}
    assert set(seen["after both left"]) == {2}


def test_concurrent_recommend_leaves_blas_as_it_was(rng, blas_on_two_threads):
    user_items = random_interactions(rng, n_users=60, n_items=40)
    model = rgals.ALSSolver(factors=4, iterations=2, random_state=0).fit(
        user_items, show_progress=False)
    expected = model.recommend(np.arange(60), N=5)
    with ThreadPoolExecutor(max_workers=2) as pool:
        results = list(pool.map(lambda _: model.recommend(np.arange(60), N=5), range(8)))
    for ids, scores in results:
        np.testing.assert_array_equal(ids, expected[0])
        np.testing.assert_array_equal(scores, expected[1])
    assert set(blas_threads()) == {2}


def test_kernel_threads_sets_numba_for_this_thread_only_and_restores_it():
    before = numba.get_num_threads()
    seen = []
    with kernel_threads(1):
        seen.append(numba.get_num_threads())
        other = threading.Thread(target=lambda: seen.append(numba.get_num_threads()))
        other.start()
        other.join()
    assert seen[0] == 1 and seen[1] == numba.config.NUMBA_NUM_THREADS
    assert numba.get_num_threads() == before
