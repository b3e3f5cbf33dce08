"""Talking to the cluster: futures held as task results, gathering with a deadline,
tree sums, and the copies every task makes of what it receives."""

import time

import numpy as np

from ..solve import add_statistics

try:
    import distributed
except ImportError:  # the extra is optional; require_dask says how to install it
    distributed = None

WORKERLESS_SECONDS = 60.0  # a fit fails once the cluster has had no worker this long
RETRIES = 3


def require_dask():
    if distributed is None:
        raise ImportError("the Dask mode needs dask and distributed: "
                          "pip install 'rgals[dask]'")


def held(value):
    """A value held as a task's result rather than scattered: a worker that dies with it
    takes nothing the scheduler cannot compute again."""
    return value


ALIGNMENT = 64  # bytes: a cache line, and the widest SIMD register BLAS uses


def own(array):
    """An array that may have come over the network, as BLAS sees a fresh one: C-ordered
    and 64-byte aligned, copied only when it is not. Without it two runs of one float32
    fit differed by 1e-6 (measured: a network buffer's alignment sends BLAS down other
    code paths). Tasks only read what this returns; a task that writes copies first."""
    if array.flags.c_contiguous and array.ctypes.data % ALIGNMENT == 0:
        return array
    return np.array(array, order="C", copy=True)


def add(*parts):
    return add_statistics(parts)


def concatenate(*arrays):
    return np.concatenate(arrays)


def gather(client, futures):
    """client.gather, failing with a clear error (instead of waiting for ever) once the
    cluster has had no worker for WORKERLESS_SECONDS."""
    futures = list(futures)
    alone_since = None
    while True:
        try:
            distributed.wait(futures, timeout=1.0)
            return client.gather(futures)
        except distributed.TimeoutError:
            if client.scheduler_info().get("workers"):
                alone_since = None
                continue
            alone_since = alone_since or time.perf_counter()
            if time.perf_counter() - alone_since > WORKERLESS_SECONDS:
                raise RuntimeError(
                    f"the Dask cluster has had no worker for {WORKERLESS_SECONDS:g} s, so "
                    "the fit cannot go on; start workers (or a cluster that keeps them) "
                    "and fit again, with resume= its checkpoint_dir to keep the sweeps "
                    "done") from None


def tree_sum(fit, futures):
    """A binary tree of sums (the reduction of a half step)."""
    while len(futures) > 1:
        futures = [fit.submit(add, *futures[k:k + 2]) for k in range(0, len(futures), 2)]
    return futures[0]


def dask_array(blocks, ranges, d, dtype):
    import dask.array as da
    return da.concatenate([da.from_delayed(block, shape=(rows.stop - rows.start, d),
                                           dtype=dtype)
                           for block, rows in zip(blocks, ranges)])
