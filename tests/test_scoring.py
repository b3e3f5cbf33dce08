"""The blocked scoring pass against dense references over all users x items."""

import numpy as np
import pytest

import rgals.ranking
from conftest import HAS_GPU
from rgals.backend import get_backend
from rgals.kernels import batched
from rgals.scoring import score_pass

PASSES = ["cpu", "_batched", pytest.param("gpu", marks=pytest.mark.skipif(
    not HAS_GPU, reason="needs CuPy and a CUDA device"))]


@pytest.fixture(params=["default", "tiny"])
def tiles(request, monkeypatch):
    """Also with tiles of a few scores, so that every running reduction takes many turns."""
    if request.param == "tiny":
        monkeypatch.setattr(rgals.ranking, "_TILE", 7)
        monkeypatch.setattr(batched, "PAIR_BUDGET", 60)
    return request.param


@pytest.mark.parametrize("where", PASSES)
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("temperature", [1.0, 0.2])
def test_score_pass_against_dense_scores(rng, tiles, where, dtype, temperature):
    P = (rng.standard_normal((37, 5)) * 1.5).astype(dtype)
    Q = (rng.standard_normal((29, 5)) * 1.5).astype(dtype)
    backend = get_backend(where)
    result = score_pass(backend.put(P), backend.put(Q), depth=6, temperature=temperature,
                        batch=4, backend=backend)
    scores = P.astype(np.float64) @ Q.T.astype(np.float64)
    order = np.argsort(-scores, axis=1, kind="stable")[:, :6]
    np.testing.assert_array_equal(result.top_ids, order)
    precision = 1e-12 if dtype == np.float64 else 1e-5
    np.testing.assert_allclose(result.top_scores, np.take_along_axis(scores, order, axis=1),
                               rtol=precision, atol=precision)
    # the K-th largest score is the last of a top list of depth K: a sort's K-th value
    np.testing.assert_allclose(result.top_scores[:, 5], -np.sort(-scores, axis=1)[:, 5],
                               rtol=precision, atol=precision)
    scaled = scores / temperature
    log_normaliser = np.log(np.exp(scaled - scaled.max(1, keepdims=True)).sum(1)) + \
        scaled.max(1)
    np.testing.assert_allclose(result.log_normaliser, log_normaliser, rtol=precision * 10)
    softmax = np.exp(scaled - log_normaliser[:, None])
    np.testing.assert_allclose(result.weighted_sum, softmax @ Q.astype(np.float64),
                               rtol=precision * 10, atol=precision * 10)
    assert result.weighted_sum.dtype == np.float64


def test_score_pass_is_stable_for_large_scores_and_computes_only_what_is_asked(rng):
    P, Q = rng.standard_normal((9, 3)) * 30, rng.standard_normal((11, 3)) * 30
    result = score_pass(P, Q, temperature=0.05)
    assert np.isfinite(result.log_normaliser).all() and np.isfinite(result.weighted_sum).all()
    assert result.top_ids is None and result.top_scores is None
    only_top = score_pass(P, Q, depth=3)
    assert only_top.log_normaliser is None and only_top.weighted_sum is None
    with pytest.raises(ValueError, match="depth must be between 0 and the 11 items"):
        score_pass(P, Q, depth=12)
    with pytest.raises(ValueError, match="temperature must be > 0"):
        score_pass(P, Q, temperature=0.0)
