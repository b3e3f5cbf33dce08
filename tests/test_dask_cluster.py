"""rgals.dask.cluster's array helpers: what tasks receive is aligned as BLAS sees a fresh
array, copied only when it is not, and the large results tasks make are aligned already
(so that the next task copies nothing)."""

import numpy as np
import pytest

pytest.importorskip("distributed")

from rgals.dask import tasks  # noqa: E402
from rgals.dask.cluster import ALIGNMENT, aligned_empty, concatenate, own  # noqa: E402


def aligned(array):
    return array.flags.c_contiguous and array.ctypes.data % ALIGNMENT == 0


@pytest.mark.parametrize("shape", [(0, 3), (1,), (7, 5), (300_000, 16)])
@pytest.mark.parametrize("dtype", [np.float32, np.float64, np.int64])
def test_aligned_empty_starts_on_the_boundary(shape, dtype):
    array = aligned_empty(shape, dtype)
    assert array.shape == shape and array.dtype == dtype
    assert aligned(array) or array.size == 0  # an empty array's address means nothing
    array[...] = 1  # writable, and every element its own
    assert array.sum() == np.prod(shape)


def test_own_copies_only_what_is_not_aligned_or_when_asked():
    rng = np.random.default_rng()
    source = aligned_empty((1000, 8), np.float32)
    source[...] = rng.standard_normal(source.shape)
    assert own(source) is source
    copied = own(source, copy=True)
    assert copied is not source and aligned(copied)
    np.testing.assert_array_equal(copied, source)
    # 4 bytes past the boundary, or Fortran-ordered, as arrays from the network can be
    buffer = aligned_empty((source.nbytes + 4,), np.uint8)
    shifted = buffer[4:].view(np.float32).reshape(source.shape)
    shifted[...] = source
    for other in (shifted, np.asfortranarray(source)):
        fixed = own(other)
        assert fixed is not other and aligned(fixed)
        np.testing.assert_array_equal(fixed, other)


def test_large_numpy_arrays_are_not_aligned_so_tasks_make_their_own():
    # why the helpers exist: NumPy's large arrays start 16 bytes past a page
    rng = np.random.default_rng()
    pieces = [rng.standard_normal((200_000, 8)).astype(np.float32) for _ in range(3)]
    joined = concatenate(*pieces)
    assert aligned(joined)
    np.testing.assert_array_equal(joined, np.concatenate(pieces))
    assert own(joined) is joined
    eigen = np.linalg.eigh(np.cov(pieces[0].T.astype(np.float64)))
    settings = {"threads": 1, "backend": "cpu"}
    rotated = tasks.rotate(pieces[0], eigen, settings)
    assert aligned(rotated) and rotated.dtype == np.float32
    np.testing.assert_allclose(rotated, pieces[0] @ eigen[1].astype(np.float32), rtol=1e-5,
                               atol=1e-5)
