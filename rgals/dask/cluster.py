"""Talking to the cluster: futures held as task results, gathering with a deadline,
tree sums, and the copies every task makes of what it receives."""

import os
import platform
import time
import warnings

import numpy as np

from ..solve import add_statistics

try:
    import distributed
except ImportError:  # the extra is optional; require_dask says how to install it
    distributed = None

WORKERLESS_SECONDS = 60.0  # a fit fails once the cluster has had no worker this long
RETRIES = 3


# The malloc settings rgals's workers want (glibc, Linux): Dask's nanny starts workers
# with MALLOC_TRIM_THRESHOLD_=65536, which also stops glibc from raising its mmap
# threshold as a plain process does, so that every task's arrays come from fresh pages
# the kernel zeroes on first touch. Measured (10M interactions, 2 one-thread workers,
# bench/RESULTS.md): a sweep's solve tasks 2.2-7.0 thread-seconds with Dask's setting,
# 1.9 with these. A worker's memory then stays near its peak between tasks.
WORKER_MALLOC = {"MALLOC_MMAP_THRESHOLD_": 32 << 20, "MALLOC_TRIM_THRESHOLD_": 1 << 30}


def worker_settings():
    """The dask.config settings that start workers (nannies started after, e.g. a
    LocalCluster's) with WORKER_MALLOC:

        with dask.config.set(rgals.dask.worker_settings()):
            cluster = LocalCluster(...)

    For `dask worker` on the command line, export the same settings as
    DASK_DISTRIBUTED__NANNY__PRE_SPAWN_ENVIRON__MALLOC_MMAP_THRESHOLD_=33554432 and
    DASK_DISTRIBUTED__NANNY__PRE_SPAWN_ENVIRON__MALLOC_TRIM_THRESHOLD_=1073741824."""
    return {f"distributed.nanny.pre-spawn-environ.{name}": value
            for name, value in WORKER_MALLOC.items()}


def _malloc_settings():
    """What a worker runs with: None where malloc is not glibc's (nothing to check)."""
    if platform.system() != "Linux" or platform.libc_ver()[0] != "glibc":
        return None
    return {name: os.environ.get(name) for name in WORKER_MALLOC}


def check_worker_malloc(client):
    """Warn, once per cluster, when Linux workers run without WORKER_MALLOC."""
    try:
        found = client.run(_malloc_settings)
    except Exception:  # noqa: BLE001 - a check only; the fit reports real failures
        return
    expected = {name: str(value) for name, value in WORKER_MALLOC.items()}
    slow = [worker for worker, settings in found.items()
            if settings is not None and settings != expected]
    if slow:
        warnings.warn(
            f"{len(slow)} of {len(found)} Dask workers run with Dask's malloc settings, "
            "under which a sweep's tasks take about 1.5x as long (every array on fresh "
            "pages). Start the workers with rgals.dask.worker_settings(): `with "
            "dask.config.set(rgals.dask.worker_settings()): LocalCluster(...)` (see "
            "rgals.dask.cluster.WORKER_MALLOC)", stacklevel=3)


def require_dask():
    if distributed is None:
        raise ImportError("the Dask mode needs dask and distributed: "
                          "pip install 'rgals[dask]'")


def held(value):
    """A value held as a task's result rather than scattered: a worker that dies with it
    takes nothing the scheduler cannot compute again."""
    return value


ALIGNMENT = 64  # bytes: a cache line, and the widest SIMD register BLAS uses


def aligned_empty(shape, dtype):
    """An uninitialised C-ordered array starting on an ALIGNMENT-byte boundary (NumPy's
    own large arrays start 16 bytes past a page: `own` would copy each of them again)."""
    dtype = np.dtype(dtype)
    size = int(np.prod(shape)) * dtype.itemsize
    buffer = np.empty(size + ALIGNMENT, dtype=np.uint8)
    offset = -buffer.ctypes.data % ALIGNMENT
    return buffer[offset:offset + size].view(dtype).reshape(shape)


def own(array, copy=False):
    """An array that may have come over the network, as BLAS sees a fresh one: C-ordered
    and 64-byte aligned, copied only when it is not (or when `copy`). Without it two runs
    of one float32 fit differed by 1e-6 (measured: a network buffer's alignment sends
    BLAS down other code paths). Tasks only read what this returns unless they asked for
    the copy, and make their large results aligned, so that passing them on copies
    nothing."""
    if not copy and array.flags.c_contiguous and array.ctypes.data % ALIGNMENT == 0:
        return array
    result = aligned_empty(array.shape, array.dtype)
    result[...] = array
    return result


def add(*parts):
    return add_statistics(parts)


def concatenate(*arrays):
    rows = sum(array.shape[0] for array in arrays)
    return np.concatenate(arrays, out=aligned_empty((rows,) + arrays[0].shape[1:],
                                                     np.result_type(*arrays)))


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
