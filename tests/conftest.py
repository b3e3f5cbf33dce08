"""Small random problems, an independent dense brute force of every loss (float64), and
the backends every behavioural test runs on."""

import numpy as np
import pytest
import scipy.sparse as sp

from rgals.backend import to_host

try:
    import cupy
    HAS_GPU = cupy.cuda.runtime.getDeviceCount() > 0
except Exception:  # no CuPy, or CuPy without a driver
    cupy, HAS_GPU = None, False

# "_batched": the GPU's batched kernels run with NumPy, so every machine checks the GPU
# algorithms inside whole fits; "gpu" needs CuPy and a CUDA device (skipped in CI)
BACKENDS = ["cpu", "_batched", pytest.param("gpu", marks=pytest.mark.skipif(
    not HAS_GPU, reason="needs CuPy and a CUDA device"))]


def start_cluster():
    """A LocalCluster of two one-thread worker processes and its client (the Dask tests)."""
    import logging

    distributed = pytest.importorskip("distributed")
    import dask

    from rgals.dask import worker_settings
    with dask.config.set(worker_settings()):
        cluster = distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                                           dashboard_address=None, silence_logs=logging.ERROR)
    return cluster, distributed.Client(cluster)


@pytest.fixture(scope="module")
def client():
    """A Dask client of its own cluster for each test module that takes it."""
    cluster, client = start_cluster()
    yield client
    client.close()
    cluster.close()


@pytest.fixture(params=BACKENDS)
def backend_name(request):
    """Each behavioural test that takes this runs once per backend."""
    return request.param


def host_factors(model):
    """A fitted model's (user factors, item factors) as NumPy arrays, for brute force."""
    return to_host(model.user_factors_), to_host(model.item_factors_)


def random_interactions(rng, n_users=23, n_items=17, density=0.25, empty_user=True,
                        empty_item=True, negative=False):
    """Random confidences in (0.5, 3], with one user and one item left without any."""
    dense = rng.random((n_users, n_items)) < density
    values = np.where(dense, 0.5 + 2.5 * rng.random((n_users, n_items)), 0.0)
    if negative:
        values *= np.where(rng.random(values.shape) < 0.2, -1.0, 1.0)
    if empty_user:
        values[rng.integers(n_users)] = 0.0
    if empty_item:
        values[:, rng.integers(n_items)] = 0.0
    return sp.csr_matrix(values)


def dense_loss_parts(name, values, alpha, lam, nu, popularity=0.0):
    """Per-pair pieces of the loss over all M x N pairs, straight from design.md 1.2.

    `popularity` gamma (rg2, design.md 1.6 B): item j's term w_u (s_uj + 1)^2 weighs
    N pi_j, pi_j = n_j^gamma / sum_k n_k^gamma with n_j the item's summed values.
    Returns a function scores -> (loss, dloss/dscores), plus the regularisers.
    """
    n_users, n_items = values.shape
    observed = values != 0
    if name == "ials":
        confidence = alpha * values
        target = (confidence > 0).astype(float)
        weight = np.where(observed, np.abs(confidence), 1.0)

        def loss(scores):
            residual = scores - np.where(observed, target, 0.0)
            return np.sum(weight * residual ** 2), 2.0 * weight * residual

        return loss, np.full(n_users, lam), np.full(n_items, lam)

    n = values.sum(axis=1)
    w = n / (2.0 * n_items)
    prior = np.ones(n_items)
    if popularity:
        prior = values.sum(axis=0) ** popularity
        prior = n_items * prior / prior.sum()
    user_reg = lam * (n / 2.0 + alpha * n_items + 1.0) ** nu
    item_reg = np.full(n_items, lam * (w.sum() + alpha * n_users) ** nu)

    def loss(scores):
        total = -np.sum(values * scores)
        gradient = -values.copy()
        total += np.sum(w[:, None] * prior * (scores + 1.0) ** 2)
        gradient += 2.0 * w[:, None] * prior * (scores + 1.0)
        total += alpha * np.sum(values * (scores - 1.0) ** 2)
        gradient += 2.0 * alpha * values * (scores - 1.0)
        if name == "rgx":
            row_sums = scores.sum(axis=1)
            total -= np.sum(w / n_items * row_sums ** 2)
            gradient -= 2.0 * (w / n_items * row_sums)[:, None]
        return total, gradient

    return loss, user_reg, item_reg


class BruteForce:
    """F, its gradients and its block Hessians by dense computation over all pairs."""

    def __init__(self, name, user_items, alpha, lam, nu=1.0, popularity=0.0):
        self.name, self.alpha = name, alpha
        self.values = user_items.toarray()
        self.loss, self.user_reg, self.item_reg = dense_loss_parts(name, self.values, alpha,
                                                                   lam, nu, popularity)

    def objective(self, P, Q):
        total, _ = self.loss(P @ Q.T)
        return total + self.user_reg @ np.sum(P * P, axis=1) + \
            self.item_reg @ np.sum(Q * Q, axis=1)

    def gradients(self, P, Q):
        _, dscores = self.loss(P @ Q.T)
        return (dscores @ Q + 2.0 * self.user_reg[:, None] * P,
                dscores.T @ P + 2.0 * self.item_reg[:, None] * Q)

    def _block_gradient(self, block, other, side):
        P, Q = (block, other) if side == "user" else (other, block)
        return self.gradients(P, Q)[0 if side == "user" else 1].ravel()

    def block_hessian(self, shape, other, side):
        """The exact Hessian of F in one block (rows x d, flattened row-major).

        F is quadratic in each block, so column k is the gradient's change along unit k.
        """
        base = self._block_gradient(np.zeros(shape), other, side)
        size = base.size
        hessian = np.empty((size, size))
        for k in range(size):
            unit = np.zeros(size)
            unit[k] = 1.0
            hessian[:, k] = self._block_gradient(unit.reshape(shape), other, side) - base
        return hessian

    def block_decrease(self, before, after, other, side):
        """F(before) - F(after) for one block, from the block's exact Hessian H:
        F(x0) - F(x1) = g(x1).(x0-x1) + (x0-x1)^T H (x0-x1) / 2."""
        delta = (before - after).ravel()
        hessian = self.block_hessian(before.shape, other, side)
        return float(self._block_gradient(after, other, side) @ delta
                     + 0.5 * delta @ hessian @ delta)


def interrupt_tune_at(monkeypatch, trial):
    """Make rgals.tune meet a Ctrl-C as trial number `trial` starts."""
    from rgals import tuning
    real = tuning._run_trial

    def interrupted(number, *args):
        if number == trial:
            raise KeyboardInterrupt
        return real(number, *args)

    monkeypatch.setattr(tuning, "_run_trial", interrupted)
