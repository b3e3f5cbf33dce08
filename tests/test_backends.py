"""One model whatever the backend: the behavioural tests run per backend.

- "cpu": the Numba kernels.
- "_batched": the GPU's batched kernels (kernels/batched.py) run with NumPy arrays (the
  private backend "_batched"), so that every machine checks the GPU algorithms inside a
  whole fit.
- "gpu": CuPy on a CUDA device; skipped when CuPy or a device is missing (as in CI).
"""

import json
import sys
from pathlib import Path
import types

import numpy as np
import pytest

import rgals
from rgals import ALSSolver, backend
from rgals.data import synthetic
from conftest import HAS_GPU

OTHER_BACKENDS = ["_batched", pytest.param("gpu", marks=pytest.mark.skipif(
    not HAS_GPU, reason="needs CuPy and a CUDA device"))]
CASES = [("rg2", 0.3, "auto"), ("rg2", 0.0, "auto"), ("rgx", 0.3, "auto"),
         ("rgx", 0.3, "cholesky"), ("rgx", 0.0, "auto"), ("ials", 4.0, "auto"),
         ("ials", 1.0, "auto"), ("rg2", 0.3, "cholesky"),
         ({"name": "rg2", "popularity_exponent": 0.5}, 0.3, "auto")]
TOLERANCE = {np.float64: 1e-9, np.float32: 1e-4}


@pytest.fixture(scope="module")
def user_items():
    return synthetic(n_users=80, n_items=50, mean_activity=8.0, seed=4)


@pytest.fixture(params=OTHER_BACKENDS)
def backend_name(request):
    """The backends compared with the CPU's (overrides conftest's, which has "cpu")."""
    return request.param


def fit(user_items, backend_name, validation=None, **params):
    params = {"factors": 6, "iterations": 5, "random_state": 7, "dtype": np.float64,
              "regularization": 0.05, "tol": 0.0, "monitor": "full", **params,
              "backend": backend_name}
    return ALSSolver(**params).fit(user_items, show_progress=False, validation=validation)


def reference(user_items, validation=None, **params):
    """The CPU backend's fit (the Numba kernels)."""
    return fit(user_items, "cpu", validation, **params)


def assert_same_factors(model, expected, tolerance):
    for side in ("user_factors_", "item_factors_"):
        got, want = backend.to_host(getattr(model, side)), getattr(expected, side)
        assert got.dtype == want.dtype
        error = np.abs(got - want).max() / np.abs(want).max()
        assert error <= tolerance, f"{side}: relative difference {error:.2e}"


@pytest.mark.parametrize("loss,alpha,solver", CASES)
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_five_sweeps_give_the_cpu_model(user_items, backend_name, loss, alpha, solver,
                                        dtype):
    params = dict(loss=loss, alpha=alpha, solver=solver, dtype=dtype)
    model = fit(user_items, backend_name, **params)
    expected = reference(user_items, **params)
    assert_same_factors(model, expected, TOLERANCE[dtype])
    # the monitor saw the same objective and the same decreases
    got, want = model.monitor_.history, expected.monitor_.history
    np.testing.assert_allclose(got["objective"], want["objective"],
                               rtol=100 * TOLERANCE[dtype])
    assert np.nanmax(got["identity_error"]) <= (1e-9 if dtype == np.float64 else 1e-5)


def test_many_factors(backend_name):
    """No limit on the number of factors: 1024 factors on a small problem."""
    user_items = synthetic(n_users=30, n_items=20, mean_activity=6.0, seed=1)
    params = dict(factors=1024, iterations=1, alpha=0.3, regularization=0.5)
    for solver in ("cg", "cholesky"):
        model = fit(user_items, backend_name, solver=solver, **params)
        assert_same_factors(model, reference(user_items, solver=solver, **params), 1e-8)


def test_ranking_and_validation_agree(user_items, backend_name):
    model = fit(user_items, backend_name, loss="rg2", alpha=0.3)
    expected = reference(user_items, loss="rg2", alpha=0.3)
    users = np.arange(10)
    for method, ids in (("recommend", users), ("similar_items", np.arange(5)),
                        ("similar_users", users)):
        got_ids, got_scores = getattr(model, method)(ids, N=7)
        want_ids, want_scores = getattr(expected, method)(ids, N=7)
        assert isinstance(got_ids, np.ndarray) and isinstance(got_scores, np.ndarray)
        np.testing.assert_array_equal(got_ids, want_ids)
        np.testing.assert_allclose(got_scores, want_scores, rtol=1e-8)
    folded = model.recalculate_user(users, user_items[users])
    np.testing.assert_allclose(backend.to_host(folded),
                               expected.recalculate_user(users, user_items[users]), rtol=1e-8)
    got = rgals.metrics.evaluate(model, user_items, K=5)
    assert got == pytest.approx(rgals.metrics.evaluate(expected, user_items, K=5), rel=1e-9)


def test_validation_and_early_stopping(user_items, backend_name):
    fit_part, validation = rgals.data.validation_split(user_items, seed=0)
    params = dict(loss="rg2", alpha=0.3, early_stopping=True, patience=2, iterations=8)
    model = fit(fit_part, backend_name, validation, **params)
    expected = reference(fit_part, validation, **params)
    np.testing.assert_allclose(model.monitor_.history["validation_ndcg@20"],
                               expected.monitor_.history["validation_ndcg@20"], rtol=1e-9)
    assert model.monitor_.best_sweep == expected.monitor_.best_sweep


@pytest.mark.skipif(not HAS_GPU, reason="needs CuPy and a CUDA device")
def test_gpu_model_keeps_factors_on_the_device_and_moves(user_items, tmp_path):
    import cupy

    model = fit(user_items, "gpu")
    assert isinstance(model.user_factors_, cupy.ndarray)
    on_cpu = model.to_cpu()
    assert on_cpu.backend == "cpu" and isinstance(on_cpu.user_factors_, np.ndarray)
    back = on_cpu.to_gpu()
    assert isinstance(back.item_factors_, cupy.ndarray)
    np.testing.assert_array_equal(back.item_factors_.get(), on_cpu.item_factors_)
    model.save(tmp_path / "gpu")
    on_cpu.save(tmp_path / "cpu")
    for name in ("user_factors.npy", "item_factors.npy"):
        assert (tmp_path / "gpu" / name).read_bytes() == (tmp_path / "cpu" / name).read_bytes()
    loaded = rgals.load(tmp_path / "gpu")
    assert loaded.backend == "gpu" and isinstance(loaded.user_factors_, cupy.ndarray)


def test_to_cpu_is_a_copy_and_save_writes_the_same_files(user_items, tmp_path):
    model = fit(user_items, "cpu")
    copy = model.to_cpu()
    assert copy is not model and copy.backend == "cpu"
    copy.user_factors_[0] += 1.0
    assert not np.array_equal(copy.user_factors_[0], model.user_factors_[0])
    model.save(tmp_path / "a")
    model.to_cpu().save(tmp_path / "b")
    for name in ("user_factors.npy", "item_factors.npy"):
        assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes()


def test_a_model_fitted_on_a_gpu_loads_on_the_cpu(user_items, tmp_path):
    fit(user_items, "cpu").save(tmp_path)
    description = json.loads((tmp_path / "params.json").read_text())
    description["params"]["backend"] = "gpu"
    (tmp_path / "params.json").write_text(json.dumps(description))
    loaded = rgals.load(tmp_path, backend="cpu")
    assert loaded.backend == "cpu" and isinstance(loaded.user_factors_, np.ndarray)
    if not HAS_GPU:
        with pytest.raises((ImportError, RuntimeError), match="backend='cpu'"):
            rgals.load(tmp_path)
    with pytest.raises(ValueError, match="unknown backend 'tpu'"):
        rgals.load(tmp_path, backend="tpu")


def test_gpu_without_a_device_says_so(user_items, monkeypatch):
    runtime = types.SimpleNamespace(getDeviceCount=lambda: 0)
    fake = types.ModuleType("cupy")
    fake.cuda = types.SimpleNamespace(runtime=runtime)
    cupyx = types.ModuleType("cupyx")
    cupyx.scipy = types.ModuleType("cupyx.scipy")
    cupyx.scipy.sparse = types.ModuleType("cupyx.scipy.sparse")
    monkeypatch.setitem(sys.modules, "cupy", fake)
    monkeypatch.setitem(sys.modules, "cupyx", cupyx)
    monkeypatch.setitem(sys.modules, "cupyx.scipy", cupyx.scipy)
    monkeypatch.setitem(sys.modules, "cupyx.scipy.sparse", cupyx.scipy.sparse)
    with pytest.raises(RuntimeError, match="no CUDA device.*nvidia-smi"):
        ALSSolver(backend="gpu").fit(user_items, show_progress=False)
    with pytest.raises(RuntimeError, match="no CUDA device"):
        fit(user_items, "cpu").to_gpu()


def fake_cupy(monkeypatch, failing):
    """A CuPy with one device, computing with NumPy, whose `failing` call raises what a
    missing CUDA library raises."""
    import scipy.sparse

    def broken(*args, **kwargs):
        raise RuntimeError("CuPy failed to load libcublasLt.so.12: OSError: "
                           "libcublasLt.so.12: cannot open shared object file")

    fake = types.ModuleType("cupy")
    fake.__version__ = "14.2.0"
    fake.cuda = types.SimpleNamespace(runtime=types.SimpleNamespace(
        getDeviceCount=lambda: 1))
    fake.ones, fake.eye, fake.arange = np.ones, np.eye, np.arange
    fake.linalg = types.SimpleNamespace(eigh=np.linalg.eigh)
    cupyx = types.ModuleType("cupyx")
    cupyx.scipy = types.ModuleType("cupyx.scipy")
    cupyx.scipy.sparse = types.ModuleType("cupyx.scipy.sparse")
    cupyx.scipy.sparse.csr_matrix = scipy.sparse.csr_matrix
    if failing == "cuBLAS":
        fake.ones = broken
    elif failing == "cuSOLVER":
        fake.linalg.eigh = broken
    elif failing == "cuSPARSE":
        cupyx.scipy.sparse.csr_matrix = broken
    elif failing == "NVRTC":
        fake.arange = broken
    for name, module in (("cupy", fake), ("cupyx", cupyx), ("cupyx.scipy", cupyx.scipy),
                         ("cupyx.scipy.sparse", cupyx.scipy.sparse)):
        monkeypatch.setitem(sys.modules, name, module)
    return fake


@pytest.mark.parametrize("failing", ["cuBLAS", "cuSOLVER", "cuSPARSE", "NVRTC"])
def test_gpu_without_the_cuda_libraries_says_what_to_install(user_items, monkeypatch,
                                                              failing):
    # CuPy 14's wheels carry no CUDA libraries: the first cuBLAS call would fail mid-fit
    fake_cupy(monkeypatch, failing)
    with pytest.raises(RuntimeError, match=rf"found CuPy 14.2.0 and a CUDA device, but "
                                           rf"{failing} .*failed: RuntimeError: CuPy failed "
                                           rf"to load libcublasLt.*rgals\[gpu\].*rgals\["
                                           rf"gpu-cuda13\].*backend='cpu'"):
        ALSSolver(backend="gpu").fit(user_items, show_progress=False)


def test_the_cuda_libraries_are_checked_once(monkeypatch):
    fake = fake_cupy(monkeypatch, None)
    assert backend.require_gpu() is fake
    fake.ones = None  # a second check would fail
    assert backend.require_gpu() is fake


def test_the_gpu_extras_bring_cupy_with_its_cuda_libraries():
    tomllib = pytest.importorskip("tomllib")  # Python 3.11
    pyproject = tomllib.loads((Path(__file__).parent.parent / "pyproject.toml").read_text())
    extras = pyproject["project"]["optional-dependencies"]
    assert extras["gpu"] == ["cupy-cuda12x[ctk]>=14"]
    assert extras["gpu-cuda13"] == ["cupy-cuda13x[ctk]>=14"]


def test_data_larger_than_the_gpu_is_refused_with_the_size_needed():
    needed = backend.fit_bytes(138_000, 27_000, 20_000_000, 256, np.float32)
    assert needed > 20_000_000 * 12 * 2  # at least both copies of the interactions
    with pytest.raises(MemoryError, match=r"needs about \d+\.\d\d GiB .* but 1\.00 GiB is "
                                          r"free.*fewer factors"):
        backend.check_gpu_memory(138_000, 27_000, 20_000_000, 256, np.float32,
                                 available=1 << 30)
    assert backend.check_gpu_memory(100, 50, 1000, 8, np.float32, available=1 << 30) > 0
    # more factors and a wider dtype need more, and top-K weights users x K more
    assert backend.fit_bytes(100, 50, 1000, 16, np.float64) > backend.fit_bytes(
        100, 50, 1000, 8, np.float32)
    assert backend.fit_bytes(100, 50, 1000, 8, np.float32, top_k=20) == backend.fit_bytes(
        100, 50, 1000, 8, np.float32) + 3 * 100 * 20 * 8


def test_running_out_of_gpu_memory_becomes_a_clear_error():
    class OutOfMemoryError(Exception):  # CuPy's name, raised by its allocator
        pass

    with pytest.raises(MemoryError, match="ran out of memory during fit.*fewer factors"):
        with backend.gpu_memory_errors("fit"):
            raise OutOfMemoryError("out of memory allocating 1,024 bytes")
    with pytest.raises(KeyError):  # other errors pass through unchanged
        with backend.gpu_memory_errors("fit"):
            raise KeyError("x")


@pytest.mark.parametrize("name, message, other", [
    ("CUBLASError", "CUBLAS_STATUS_ALLOC_FAILED", "CUBLAS_STATUS_NOT_SUPPORTED"),
    ("CUSOLVERError", "CUSOLVER_STATUS_ALLOC_FAILED", "CUSOLVER_STATUS_INVALID_VALUE"),
    ("CuSparseError", "CUSPARSE_STATUS_INSUFFICIENT_RESOURCES",
     "CUSPARSE_STATUS_NOT_SUPPORTED"),
    ("CUDARuntimeError", "cudaErrorMemoryAllocation: out of memory",
     "cudaErrorInvalidValue: invalid argument"),
])
def test_the_cuda_libraries_running_out_of_memory_is_the_same_clear_error(name, message,
                                                                          other):
    # the libraries raise their own types, not CuPy's OutOfMemoryError (issue 30)
    library_error = type(name, (RuntimeError,), {})
    with pytest.raises(MemoryError, match=f"ran out of memory during fit.*{message}"):
        with backend.gpu_memory_errors("fit"):
            raise library_error(message)
    with pytest.raises(library_error):  # another status of the same library passes
        with backend.gpu_memory_errors("fit"):
            raise library_error(other)


def test_one_backend_object_per_name():
    from rgals.kernels import cpu
    from rgals.kernels.batched import BatchedKernels

    cpu_backend = backend.get_backend("cpu")
    assert cpu_backend.xp is np and cpu_backend.kernels is cpu and not cpu_backend.on_device
    batched = backend.get_backend("_batched")
    assert isinstance(batched.kernels, BatchedKernels) and batched.kernels.xp is np
    assert backend.get_backend("cpu") is cpu_backend  # chosen once, shared
    assert backend.backend_of(np.zeros(3)) is cpu_backend
    array = np.arange(4.0)
    assert cpu_backend.put(array) is array and cpu_backend.get(array) is array
    with pytest.raises(ValueError, match="unknown backend 'tpu'"):
        backend.get_backend("tpu")
    with pytest.raises(ValueError, match="unknown backend 'tpu'"):
        ALSSolver(backend="tpu").fit(synthetic(n_users=5, n_items=4, mean_activity=2.0),
                                     show_progress=False)
