"""Thread settings that a fit or a ranking takes for a while and gives back.

Numba's thread count is per calling thread (`numba.set_num_threads`), but BLAS's is one
setting for the whole process: two threads that each limited it and restored "what it
was" would leave it limited for good (the second restores the first's limit). So BLAS
goes to one thread while at least one caller holds `blas_on_one_thread`, and back to its
own setting when the last one leaves.
"""

import threading
from contextlib import contextmanager

import numba
from threadpoolctl import ThreadpoolController

_LOCK = threading.Lock()
_HOLDERS = 0
_LIMITER = None  # threadpoolctl's limit while held; restores the original setting
_CONTROLLER = None  # the loaded BLAS libraries, found once (a scan costs 1 ms a call)


@contextmanager
def blas_on_one_thread():
    """BLAS on one thread while inside, for every caller together (thread-safe)."""
    global _HOLDERS, _LIMITER, _CONTROLLER
    with _LOCK:
        if _HOLDERS == 0:
            if _CONTROLLER is None:
                _CONTROLLER = ThreadpoolController()
            _LIMITER = _CONTROLLER.limit(limits=1, user_api="blas")
        _HOLDERS += 1
    try:
        yield
    finally:
        with _LOCK:
            _HOLDERS -= 1
            if _HOLDERS == 0:
                _LIMITER.restore_original_limits()
                _LIMITER = None


@contextmanager
def kernel_threads(num_threads):
    """The Numba kernels of this thread on `num_threads` threads (0: all), BLAS on one,
    then both restored.

    The dense products between kernels are small; OpenBLAS worker threads left spinning
    after them take the cores from the Numba kernels (measured: a sweep twice as slow).
    """
    available = numba.config.NUMBA_NUM_THREADS
    threads = available if num_threads == 0 else min(num_threads, available)
    previous = numba.get_num_threads()
    numba.set_num_threads(threads)
    try:
        with blas_on_one_thread():
            yield
    finally:
        numba.set_num_threads(previous)
