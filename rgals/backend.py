"""Where a fit runs: NumPy and the Numba kernels on the CPU, or CuPy on a CUDA device.

`get_backend(name)` returns one `Backend`: its array module, its kernels and the moves
between host and device. The losses and the solvers are written once and take
everything device-specific from it. This module also turns a missing CuPy, a missing
device or too little GPU memory into errors that say what to do.
"""

from contextlib import contextmanager
from dataclasses import dataclass
from functools import cache
from types import ModuleType

import numpy as np

from .kernels import batched, cpu

BACKENDS = ("cpu", "gpu")
# NumPy running the GPU's batched kernels: lets every machine test the GPU algorithms
_BATCHED = "_batched"
GIB = float(1 << 30)


@dataclass(frozen=True)
class Backend:
    """An array module, the kernels for its arrays, and moves to and from its device."""

    name: str
    xp: ModuleType
    kernels: object  # kernels.cpu (Numba) or a kernels.batched.BatchedKernels
    on_device: bool = False

    def put(self, array):
        """`array` (NumPy or scipy.sparse CSR) where this backend computes."""
        return to_device(array) if self.on_device else array

    def get(self, array):
        """A host (NumPy) version of one of this backend's arrays."""
        return to_host(array)


@cache  # one Backend per name (a failed "gpu" is not cached)
def get_backend(name):
    """The Backend called `name`: "cpu", "gpu" (needs CuPy and a device) or the private
    "_batched" (NumPy with the GPU's kernels, for tests)."""
    if name == "cpu":
        return Backend("cpu", np, cpu)
    if name == _BATCHED:
        return Backend(_BATCHED, np, batched.BatchedKernels(np))
    if name == "gpu":
        cupy = require_gpu()
        return Backend("gpu", cupy, batched.BatchedKernels(cupy), on_device=True)
    raise ValueError(f"unknown backend {name!r}; use one of {', '.join(map(repr, BACKENDS))}")


def backend_of(array):
    """The backend whose arrays `array` is: "gpu" for CuPy arrays, else "cpu"."""
    return get_backend("gpu" if array_module(array) is not np else "cpu")


def array_module(array):
    """numpy or cupy, whichever holds `array` (a dense or a sparse matrix)."""
    if type(array).__module__.startswith(("cupy", "cupyx")):
        import cupy
        return cupy
    return np


def to_host(array):
    """A NumPy copy of a CuPy array; NumPy arrays pass through."""
    return array.get() if hasattr(array, "get") and not isinstance(array, np.ndarray) else array


INSTALL_GPU = ("pip install 'rgals[gpu]' (a CUDA 12 driver) or 'rgals[gpu-cuda13]' (CUDA 13), "
               "which bring CuPy with the CUDA libraries; for a CUDA toolkit of your own see "
               "https://docs.cupy.dev/en/stable/install.html")


def require_gpu():
    """The cupy module, once CuPy, a CUDA device and the CUDA libraries a fit uses are
    known to work."""
    try:
        import cupy
        import cupyx.scipy.sparse  # noqa: F401
    except ImportError as error:
        raise ImportError(f"backend='gpu' needs CuPy, which is not installed: "
                          f"{INSTALL_GPU}; or use backend='cpu'") from error
    try:
        devices = cupy.cuda.runtime.getDeviceCount()
    except Exception:  # CuPy raises its own CUDA errors when no driver is present
        devices = 0
    if devices == 0:
        raise RuntimeError("backend='gpu' found CuPy but no CUDA device (check the NVIDIA "
                           "driver with nvidia-smi); use backend='cpu'")
    _check_cuda_libraries(cupy)
    return cupy


@cache  # once per process (a failure is not cached: the next call checks again)
def _check_cuda_libraries(cupy):
    """Run one tiny call of each CUDA library a fit uses, so that a missing library
    (CuPy 14's wheels carry none) is an error that says what to install, here rather
    than in the middle of a fit."""
    import cupyx.scipy.sparse

    def sparse_product():
        return cupyx.scipy.sparse.csr_matrix(cupy.eye(3)) @ cupy.ones((3, 2))

    calls = (("cuBLAS (a matrix product)", lambda: cupy.ones((3, 3)) @ cupy.ones((3, 2))),
             ("cuSOLVER (eigh)", lambda: cupy.linalg.eigh(cupy.eye(3))[0]),
             ("cuSPARSE (a sparse product)", sparse_product),
             ("NVRTC (an elementwise kernel)", lambda: cupy.arange(3.0) * 2.0 + 1.0))
    for library, call in calls:
        try:
            float(call().sum())  # to the host: the call has finished
        except Exception as error:
            raise RuntimeError(
                f"backend='gpu' found CuPy {getattr(cupy, '__version__', '')} and a CUDA "
                f"device, but {library} failed: {type(error).__name__}: {error}. The CUDA "
                f"libraries are probably missing: {INSTALL_GPU}; or use backend='cpu'"
            ) from error


def to_device(array):
    """A CuPy copy of a NumPy array or a scipy.sparse CSR matrix."""
    cupy = require_gpu()
    if hasattr(array, "tocsr"):
        import cupyx.scipy.sparse
        return cupyx.scipy.sparse.csr_matrix(array)
    return cupy.asarray(array)


def fit_bytes(n_users, n_items, nnz, factors, dtype, top_k=None):
    """About how many bytes of GPU memory a fit needs at its peak.

    Both CSR copies of the interactions (int32 indices, float64 values), the factors
    (with the item factors of the sweep before, which fold-in uses),
    a dozen rows x d work arrays of the largest side (rotations, CG vectors), about ten
    float64 values per interaction (pair rows, weights, dot products), the chunked
    per-pair temporaries of the kernels and, with top-K weights, three float64 users x K
    arrays (each user's K best scores, their ranks and their order).
    """
    itemsize = np.dtype(dtype).itemsize
    rows = max(n_users, n_items)
    return int(2 * (nnz * 12 + (n_users + n_items + 2) * 4)
               + (n_users + 2 * n_items) * factors * itemsize
               + 12 * rows * factors * 8
               + 10 * nnz * 8
               + 4 * batched.PAIR_BUDGET * 8
               + 3 * n_users * (top_k or 0) * 8)


def free_gpu_bytes():
    """Free device memory plus what CuPy's pool holds unused."""
    cupy = require_gpu()
    free, _ = cupy.cuda.runtime.memGetInfo()
    return int(free + cupy.get_default_memory_pool().free_bytes())


def check_gpu_memory(n_users, n_items, nnz, factors, dtype, available=None, top_k=None):
    """Refuse, before any copy, a fit that does not fit in the device's free memory."""
    needed = fit_bytes(n_users, n_items, nnz, factors, dtype, top_k)
    available = free_gpu_bytes() if available is None else available
    if needed > available:
        raise MemoryError(
            f"backend='gpu' needs about {needed / GIB:.2f} GiB of GPU memory for this fit "
            f"({n_users} users, {n_items} items, {nnz} interactions, {factors} factors, "
            f"{np.dtype(dtype).name}) but {available / GIB:.2f} GiB is free. Use fewer "
            "factors, dtype=np.float32, free the device, or use backend='cpu'")
    return needed


# how CuPy's pool, the CUDA runtime and cuBLAS / cuSOLVER / cuSPARSE say they ran out
_OUT_OF_MEMORY = ("ALLOC_FAILED", "cudaErrorMemoryAllocation", "INSUFFICIENT_RESOURCES")


@contextmanager
def gpu_memory_errors(what):
    """Turn running out of GPU memory inside the block into a MemoryError that says why:
    CuPy's OutOfMemoryError, and the CUDA libraries' allocation failures (their own
    error types, naming CUBLAS_STATUS_ALLOC_FAILED and the like)."""
    try:
        yield
    except Exception as error:
        if type(error).__name__ != "OutOfMemoryError" and not any(
                status in str(error) for status in _OUT_OF_MEMORY):
            raise
        raise MemoryError(f"the GPU ran out of memory during {what} ({error}). Use fewer "
                          "factors, dtype=np.float32, free the device, or use "
                          "backend='cpu'") from error
