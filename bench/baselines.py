"""Gradient-trained matrix factorization: the peers rgals is compared with (design.md 5).

One model, five losses, trained with Adam (written here, torch's defaults). User and item
embeddings P (M x d), Q (N x d); the score of a pair is

    s_ui = p_u . q_i                        (normalize=False)
    s_ui = p_u . q_i / (|p_u| |q_i|)        (normalize=True, cosine similarity)

`normalize=None` (the default) follows the published setup (below): cosine similarity for
the softmax losses, the plain dot product for BPR. `user_factors_` and `item_factors_` are
the scoring factors (unit rows under cosine), so that `user_factors_ @ item_factors_.T`
ranks items exactly as the model scores them.

An epoch visits every user with at least one interaction once, in a random order, in
mini-batches of `batch_users` users; each mini-batch is one Adam step on the mini-batch
objective, which is the mean over the batch's (user, positive item) pairs of (tau =
`temperature`, S a sample of `negatives` items):

    "softmax"          log sum_{j in I} exp(s_uj / tau) - s_ui / tau        (all N items)
    "sampled_softmax"  log [exp(s_ui/tau) + sum_{j in S \\ I_u} exp(s_uj/tau)] - s_ui/tau
                       S uniform without replacement, one sample shared by the batch; the
                       user's own positives drawn into S ("accidental hits") are dropped, as
                       the published code samples negatives among non-interacted items. With
                       uniform sampling the log-Q correction is a constant and is left out.
    "bpr"              -log sigmoid(s_ui - s_uj), one negative j per pair, uniform over the
                       items the user has not interacted with (rejection sampling)
    "softmax_at_k"     SL@K, below: w_ui * [the "softmax" term of the pair]
    "sampled_softmax_at_k"
                       SL@K as the authors train it: w_ui * log sum_{j in S \\ I_u}
                       exp((s_uj - s_ui) / tau), S as in "sampled_softmax"; the positive
                       is not in its own normaliser, so a pair's term can be negative

plus `weight_decay / 2 * (|P_batch|^2 + |Q|^2)`: an L2 term in the objective (coupled,
like torch.optim.Adam(weight_decay=...), not AdamW), on the raw embeddings, on the batch's
user rows and on all item rows at every step. `loss_and_gradients` returns exactly this
objective and its gradients with respect to P[users] and Q.

SoftmaxLoss@K (Yang et al., "Breaking the Top-K Barrier: Advancing Top-K Ranking Metrics
Optimization in Recommender Systems", KDD 2025, arXiv 2508.05673). What the `search` tool
gave: the paper's abstract (quantile technique for the top-K truncation, a smooth upper
bound of NDCG@K) but not its body, so section and equation numbers are not cited here; the
definition below follows the authors' own implementation, the artifact named in the paper
(repository Tiny-Snow/IR-Benchmark-SLatK at commit 85833df, itemrec/optimizer/
optim_SLatK.py, and its later copy Tiny-Snow/IR-Benchmark, src/itemrec/optimizer/
optim_SLatK.py). Per user,

    L_SL@K(u) = sum_{i in P_u} sigma_w(s_ui - beta_u^K) * log sum_{j in I} exp((s_uj - s_ui) / tau)
    sigma_w(x) = sigmoid(x / tau_w)        (tau_w = `weight_temperature`)

- the weight is NOT detached: the gradient flows through sigma_w(s_ui - beta) as well as
  through the softmax term (their cal_slatk_loss multiplies the two tensors); the quantile
  beta_u^K is a buffer, a constant in the gradient;
- the weight is not normalised over the user's positives and there is no penalty term:
  the later repository version derives a normalised weight plus a penalty
  -lambda log sum_i sigma_w(.), then states "in practice, we omit the denominator ... and
  the penalty term", and its step function uses that unnormalised loss;
- beta_u^K is estimated by sorting, not learnt: the K-th largest score among the user's
  training positives and N sampled negatives (their `cal_quantile`; they note the
  estimate is biased low, and that quantile regression is an alternative they did not
  use). Implemented here with N = `negatives` uniform items shared by a batch of users,
  accidental hits dropped, seeded; where fewer than K candidates exist, the smallest.
  (Their code truncates each user's positives to the 90th percentile of the counts, a GPU
  padding device; all positives are used here.);
- beta starts at 0 and is refreshed every `quantile_every` epochs: in their code during
  the epochs with (epoch + 1) % epoch_quantile == 0 (0-based), batch by batch after the
  step; here in one pass right after epochs quantile_every, 2 quantile_every, ... (1-based),
  counted as training time;
- their normaliser is sum_{j in N} over 1000 sampled negatives per pair (positives
  excluded, the positive itself not included): "sampled_softmax_at_k", with one sample
  of `negatives` items shared by a batch of users instead of one per pair. The formula
  in their docstring sums over all items I: "softmax_at_k" computes it exactly (the same
  full softmax as "softmax"), and there `negatives` serves only the quantile estimate.
  The two differ in more than noise: the weight's own gradient, which pushes a positive's
  score down, grows with the log-normaliser (log 41k on Gowalla against about log 1000).

The published setup (the same code; the run script run_nni.py and the README in
../shared/data): MF with 64 dimensions; score = cosine similarity (F.cosine_similarity in
their SL and SL@K losses; their BPR takes the dot product of the embeddings, normalised
only under a --norm flag, with xavier-normal initialisation); Adam, lr 0.1 and weight
decay 0 in the run command, tuned over {0.1, 0.01, 0.001} and {0, 1e-6, 1e-5, 1e-4};
batches of 1024 (user, item) pairs with 1000 negatives each;
tau = 0.2, tau_w = 1.0 (tuned 2.5 / 2.25 / 1.0), K = 20, epoch_quantile 5 (or 20); 200
epochs. One difference here: batches of users, not of pairs (an epoch of Gowalla is
about 120 Adam steps with the benchmark's 256 users instead of about 790).

Initialisation: under cosine scores N(0, 0.01^2). Cosine scores do not change when P and Q
are scaled, and Adam's step is scale-free, so training from N(0, s^2) with learning rate
lr follows the same path as from N(0, 1) (torch's nn.Embedding default, used by the
authors) with lr / s: lr = 1e-3 here is their lr = 0.1 (exactly so on the same batches
without weight decay, up to Adam's epsilon). Under dot-product scores the authors' BPR
initialisation: xavier normal, standard deviation sqrt(2 / (rows + d)) per matrix.

Adam is torch's (beta1 0.9, beta2 0.999, eps 1e-8, bias correction from the global step),
applied densely to the whole of P and Q at every step as torch does for nn.Embedding
weights: a user row outside the batch gets a zero gradient that step and still moves with
its first moment. Computation in float32 (one batch_users x N score block at a time for
the full softmax, never M x N); `loss_and_gradients` in float64 when given float64.
numpy and BLAS do the work; four small single-threaded Numba loops do what numpy would do
in many passes, or through gathers and scipy.sparse products, at every step: the Adam
update, the chain rule through the row normalisation, the scores of the batch's (user,
item) pairs and the back-propagation of their score gradients. Their first call compiles
them (about 1 s; cached on disk afterwards), inside the first epoch's time. Pin BLAS
threads around `fit` with threadpoolctl: BLAS is the only multithreaded part.
The temperature does not enter BPR.
"""

import numbers
import time

import numpy as np
import scipy.sparse as sp
from numba import njit
from scipy.special import expit

LOSSES = ("softmax", "sampled_softmax", "bpr", "softmax_at_k", "sampled_softmax_at_k")
TOP_K_LOSSES = ("softmax_at_k", "sampled_softmax_at_k")

_BETA1, _BETA2, _EPSILON = 0.9, 0.999, 1e-8  # torch.optim.Adam defaults
_NORM_FLOOR = 1e-12  # as torch.nn.functional.normalize
_COSINE_INIT = 0.01  # see the module docstring: with lr 1e-3, the authors' N(0, 1) and lr 0.1
_BOUNDED_SHIFT = 40.0  # largest 1/tau for which cosine scores use the fixed shift 1


class GradientMF:
    """Matrix factorization trained by Adam on a softmax, sampled softmax, BPR or SL@K loss.

    Parameters are stored unchanged and checked in `fit` (scikit-learn style); the module
    docstring defines the losses. `negatives` is the sample size of the sampled losses and
    of SL@K's quantile estimate; `k`, `weight_temperature` and `quantile_every` belong to
    the two SL@K losses. `normalize`: None (cosine for the softmax losses, dot product for
    BPR, as published), True (cosine) or False (dot product).

    After `fit`: user_factors_, item_factors_ (float32 scoring factors), user_embeddings_,
    item_embeddings_ (the raw trained parameters), epoch_seconds_ (training seconds of each
    epoch), epoch_losses_ (mean mini-batch objective of each epoch, taken during the
    epoch), quantiles_ (SL@K: the current beta_u^K of every user), normalize_.
    """

    def __init__(self, loss="softmax", factors=64, learning_rate=1e-3, weight_decay=0.0,
                 temperature=0.2, negatives=1000, batch_users=1024, k=20,
                 weight_temperature=1.0, quantile_every=5, epochs=50, random_state=0,
                 normalize=None):
        self.loss = loss
        self.factors = factors
        self.learning_rate = learning_rate
        self.weight_decay = weight_decay
        self.temperature = temperature
        self.negatives = negatives
        self.batch_users = batch_users
        self.k = k
        self.weight_temperature = weight_temperature
        self.quantile_every = quantile_every
        self.epochs = epochs
        self.random_state = random_state
        self.normalize = normalize

    def __repr__(self):
        names = ("loss", "factors", "learning_rate", "weight_decay", "temperature",
                 "negatives", "batch_users", "k", "weight_temperature", "quantile_every",
                 "epochs", "random_state", "normalize")
        return f"GradientMF({', '.join(f'{name}={getattr(self, name)!r}' for name in names)})"

    # ----------------------------------------------------------------------------------
    # Public API

    def fit(self, user_items, epochs=None, callback=None):
        """Train from a fresh initialisation on `user_items` (scipy.sparse, users x items;
        every stored nonzero is a positive, its value is not used).

        epochs: overrides self.epochs for this call. callback(epoch, elapsed_seconds, model)
        runs after each epoch (epoch from 1; elapsed = training seconds so far, excluding
        callbacks); the model's factors are current when it runs; returning False stops.
        """
        config = self._config()
        epochs = config["epochs"] if epochs is None else _integer(epochs, "epochs", 1)
        if callback is not None and not callable(callback):
            raise TypeError(f"callback must be callable or None; got {type(callback).__name__}")
        data = _Interactions(_check_matrix(user_items, "user_items"))
        n_users, n_items = data.shape
        rng = np.random.default_rng(self.random_state)
        P, Q = self._initial(rng, n_users, n_items, config)
        adam = _Adam(P, Q)
        active = np.flatnonzero(data.counts)  # users without positives have no loss
        batch = config["batch_users"]
        buffer = None
        if config["loss"] in ("softmax", "softmax_at_k"):  # the full softmax block
            buffer = np.empty((min(batch, active.size), n_items), dtype=np.float32)
        self.quantiles_ = (np.zeros(n_users, dtype=np.float32)
                           if config["loss"] in TOP_K_LOSSES else None)
        self.normalize_ = config["normalize"]
        self.epoch_seconds_, self.epoch_losses_ = [], []
        elapsed = 0.0
        for epoch in range(1, epochs + 1):
            start = time.perf_counter()
            order = rng.permutation(active)
            total, pairs = 0.0, 0
            for first in range(0, order.size, batch):
                users = order[first:first + batch]
                loss, grad_rows, grad_Q, count = self._objective(
                    config, P, Q, data, users, rng, self.quantiles_, buffer)
                adam.step(config["learning_rate"], users, grad_rows, grad_Q)
                total += loss * count
                pairs += count
            if config["loss"] in TOP_K_LOSSES and epoch % config["quantile_every"] == 0:
                self.quantiles_ = self._estimate(config, P, Q, data, rng)
            seconds = time.perf_counter() - start
            elapsed += seconds
            self.epoch_seconds_.append(seconds)
            self.epoch_losses_.append(total / max(pairs, 1))
            self._publish(P, Q, config)
            if callback is not None and callback(epoch, elapsed, self) is False:
                break
        return self

    def loss_and_gradients(self, P, Q, user_items, users, rng=None, quantiles=None):
        """(loss, gradient w.r.t. P[users], gradient w.r.t. Q) of the mini-batch objective
        of `users` (module docstring), computed in the dtype of P and Q (float32 or
        float64).

        P: all user embeddings (n_users x d); Q: all item embeddings; user_items: the
        interactions; users: distinct user ids. rng: a numpy Generator or a seed for the
        sampled losses (a fixed seed draws the same samples on every call); None seeds
        with random_state. quantiles (SL@K): beta_u^K of every user, held
        constant; None takes `quantiles_` of a fit on the same users, else zeros (the
        authors' starting value).
        """
        config = self._config()
        data = _Interactions(_check_matrix(user_items, "user_items"))
        n_users, n_items = data.shape
        P = _check_embeddings(P, "P", n_users, None)
        Q = _check_embeddings(Q, "Q", n_items, P.shape[1])
        dtype = np.result_type(P, Q, np.float32)
        P, Q = P.astype(dtype, copy=False), Q.astype(dtype, copy=False)
        users = np.asarray(users)
        if users.ndim != 1 or users.size == 0 or not np.issubdtype(users.dtype, np.integer):
            raise ValueError("users must be a non-empty 1-D array of integer user ids")
        users = users.astype(np.int64)
        if users.min() < 0 or users.max() >= n_users:
            raise IndexError(f"users must lie in [0, {n_users}); got ids from {users.min()} "
                             f"to {users.max()}")
        if np.unique(users).size != users.size:
            raise ValueError("users must be distinct (the gradient is per row of P[users])")
        if not isinstance(rng, np.random.Generator):
            rng = np.random.default_rng(self.random_state if rng is None else rng)
        if config["loss"] in TOP_K_LOSSES:
            if quantiles is None:
                fitted = getattr(self, "quantiles_", None)
                quantiles = fitted if fitted is not None and len(fitted) == n_users \
                    else np.zeros(n_users)
            quantiles = np.asarray(quantiles, dtype=np.float64)
            if quantiles.shape != (n_users,) or not np.all(np.isfinite(quantiles)):
                raise ValueError(f"quantiles must be {n_users} finite numbers, one per user")
        loss, grad_rows, grad_Q, _ = self._objective(config, P, Q, data, users, rng,
                                                     quantiles, None)
        return loss, grad_rows, grad_Q

    def estimate_quantiles(self, P, Q, user_items, rng=None):
        """beta_u^K of every user by the sampled sort of SL@K (module docstring)."""
        config = self._config()
        data = _Interactions(_check_matrix(user_items, "user_items"))
        P = _check_embeddings(P, "P", data.shape[0], None)
        Q = _check_embeddings(Q, "Q", data.shape[1], P.shape[1])
        if not isinstance(rng, np.random.Generator):
            rng = np.random.default_rng(self.random_state if rng is None else rng)
        return self._estimate(config, P, Q, data, rng)

    # ----------------------------------------------------------------------------------
    # Checks and set-up

    def _config(self):
        loss = self.loss
        if not isinstance(loss, str) or loss not in LOSSES:
            raise ValueError(f"unknown loss {loss!r}; use one of {', '.join(map(repr, LOSSES))}")
        normalize = self.normalize
        if normalize is None:
            normalize = loss != "bpr"
        elif not isinstance(normalize, (bool, np.bool_)):
            raise ValueError(f"normalize must be None, True or False; got {normalize!r}")
        return {
            "loss": loss,
            "factors": _integer(self.factors, "factors", 1),
            "learning_rate": _real(self.learning_rate, "learning_rate", strict=True),
            "weight_decay": _real(self.weight_decay, "weight_decay", strict=False),
            "temperature": _real(self.temperature, "temperature", strict=True),
            "negatives": _integer(self.negatives, "negatives", 1),
            "batch_users": _integer(self.batch_users, "batch_users", 1),
            "k": _integer(self.k, "k", 1),
            "weight_temperature": _real(self.weight_temperature, "weight_temperature",
                                        strict=True),
            "quantile_every": _integer(self.quantile_every, "quantile_every", 1),
            "epochs": _integer(self.epochs, "epochs", 1),
            "random_state": _seed(self.random_state),
            "normalize": bool(normalize),
        }

    @staticmethod
    def _initial(rng, n_users, n_items, config):
        d = config["factors"]
        if config["normalize"]:
            scales = (_COSINE_INIT, _COSINE_INIT)
        else:  # xavier normal, as the authors' BPR
            scales = (np.sqrt(2.0 / (n_users + d)), np.sqrt(2.0 / (n_items + d)))
        P = (rng.standard_normal((n_users, d), dtype=np.float32) * scales[0])
        Q = (rng.standard_normal((n_items, d), dtype=np.float32) * scales[1])
        return P.astype(np.float32), Q.astype(np.float32)

    def _publish(self, P, Q, config):
        self.user_embeddings_, self.item_embeddings_ = P.copy(), Q.copy()
        if config["normalize"]:
            self.user_factors_, _ = _unit_rows(P)
            self.item_factors_, _ = _unit_rows(Q)
        else:
            self.user_factors_, self.item_factors_ = P.copy(), Q.copy()

    # ----------------------------------------------------------------------------------
    # The objective

    def _objective(self, config, P, Q, data, users, rng, quantiles, buffer):
        """(mean loss over the pairs of `users` + L2, grad P[users], grad Q, pair count)."""
        rows_P = P[users]
        if config["normalize"]:
            Ph, p_norms = _unit_rows(rows_P)
            Qh, q_norms = _unit_rows(Q)
        else:
            Ph, Qh = rows_P, Q
        rows, columns, _ = data.batch(users)
        count = rows.size
        beta = _batch_quantiles(config, quantiles, users, Ph.dtype)  # None but for SL@K
        if count == 0:
            loss, gPh, gQh = 0.0, np.zeros_like(Ph), np.zeros_like(Qh)
        elif config["loss"] in ("softmax", "softmax_at_k"):
            loss, gPh, gQh = _full_softmax(Ph, Qh, rows, columns, config, beta, buffer,
                                           config["normalize"])
        elif config["loss"] in ("sampled_softmax", "sampled_softmax_at_k"):
            sample = _sample(rng, data.shape[1], config["negatives"])
            loss, gPh, gQh = _sampled_softmax(Ph, Qh, rows, columns, sample, config, beta)
        else:
            negatives = data.negatives(rng, users[rows])
            loss, gPh, gQh = _bpr(Ph, Qh, rows, columns, negatives)
        if config["normalize"]:
            grad_rows = _through_unit_rows(gPh, Ph, p_norms)
            grad_Q = _through_unit_rows(gQh, Qh, q_norms)
        else:
            grad_rows, grad_Q = gPh, gQh
        decay = config["weight_decay"]
        if decay > 0:
            loss += 0.5 * decay * (float(np.sum(rows_P * rows_P, dtype=np.float64))
                                   + float(np.sum(Q * Q, dtype=np.float64)))
            grad_rows = grad_rows + decay * rows_P
            grad_Q = grad_Q + decay * Q
        return float(loss), grad_rows, grad_Q, count

    def _estimate(self, config, P, Q, data, rng):
        """Sampled top-K quantile of every user's scores (SL@K's beta_u^K)."""
        n_users, n_items = data.shape
        Qh = _unit_rows(Q)[0] if config["normalize"] else Q
        beta = np.zeros(n_users, dtype=np.result_type(P, Q, np.float32))
        k = config["k"]
        for first in range(0, n_users, config["batch_users"]):
            users = np.arange(first, min(first + config["batch_users"], n_users))
            Ph = _unit_rows(P[users])[0] if config["normalize"] else P[users]
            rows, columns, indptr = data.batch(users)
            sample = _sample(rng, n_items, config["negatives"])
            pool = [Ph @ Qh[sample].T]
            _drop_hits(pool[0], rows, columns, sample, n_items)
            counts = np.diff(indptr)
            width = int(counts.max()) if counts.size else 0
            if width:
                positives = np.full((users.size, width), -np.inf, dtype=beta.dtype)
                rank = np.arange(rows.size) - indptr[rows]
                positives[rows, rank] = _pair_scores(Ph, Qh, rows, columns)
                pool.append(positives)
            pool = np.hstack(pool)
            size = np.sum(np.isfinite(pool), axis=1)
            if k <= pool.shape[1]:
                kth = -np.partition(-pool, k - 1, axis=1)[:, k - 1]
            else:
                kth = np.full(users.size, -np.inf)
            short = size < k  # fewer candidates than k: the smallest of them
            if short.any():
                kth[short] = np.where(np.isfinite(pool[short]), pool[short], np.inf).min(axis=1)
            beta[users] = np.where(size > 0, kth, 0.0)
        return beta


# -------------------------------------------------------------------------------------
# Losses on unit (or raw) rows: each returns (mean loss over pairs, dL/dPh, dL/dQh)


def _full_softmax(Ph, Qh, rows, columns, config, beta, buffer, cosine):
    """Full softmax (beta None) or SL@K over all items, one dense batch x N block.

    Passes over the block: one GEMM writes (s_uj - shift_u) / tau (1/tau and the shift
    ride in an extra column), one exp in place, one GEMM against [Q, 1] gives E Q and the
    row sums, one GEMM gives E^T (c P). The per-user factor c multiplies the small
    matrices, never the block. Under cosine scores (|s| <= 1) the shift is the bound 1
    whenever tau >= 1/40 (the row sum then stays above exp(-80), a normal float32);
    otherwise it is the row maximum (one more pass and a subtraction).
    """
    n_pairs = rows.size
    inv_tau = 1.0 / config["temperature"]
    (n_batch, d), n_items, dtype = Ph.shape, Qh.shape[0], Ph.dtype
    Q1 = np.empty((n_items, d + 1), dtype=dtype)
    Q1[:, :d] = Qh
    Q1[:, d] = 1.0
    P1 = np.empty((n_batch, d + 1), dtype=dtype)
    np.multiply(Ph, inv_tau, out=P1[:, :d])
    bounded = cosine and inv_tau <= _BOUNDED_SHIFT
    P1[:, d] = -inv_tau if bounded else 0.0
    if buffer is not None and buffer.dtype == dtype and buffer.shape[0] >= n_batch:
        block = buffer[:n_batch]
        np.matmul(P1, Q1.T, out=block)
    else:
        block = P1 @ Q1.T
    if bounded:
        shift = np.full(n_batch, inv_tau)  # in units of s / tau
    else:
        shift = block.max(axis=1).astype(np.float64)
        block -= shift.astype(dtype)[:, None]
    shifted = block[rows, columns].astype(np.float64)  # s_ui / tau - shift_u
    np.exp(block, out=block)
    summed = block @ Q1  # [E Q, sum_j E_uj]
    total = summed[:, d].astype(np.float64)
    log_total = np.log(total)
    pair_loss = log_total[rows] - shifted  # log sum_j exp(s_uj / tau) - s_ui / tau
    if beta is None:
        loss = float(pair_loss.sum()) / n_pairs
        row_weight = np.bincount(rows, minlength=n_batch).astype(np.float64)
        pair_gradient = np.full(n_pairs, -inv_tau)
    else:
        positive = (shifted + shift[rows]) / inv_tau
        weight, pair_gradient = _top_k_weights(positive, beta[rows], pair_loss, config)
        loss = float(np.dot(weight, pair_loss)) / n_pairs
        row_weight = np.bincount(rows, weights=weight, minlength=n_batch)
    # dL/ds_uj = c_u E_uj (all j) + pair terms at the positives, c_u = W_u / (tau n Z_u)
    factor = (row_weight * inv_tau / (n_pairs * total)).astype(dtype)[:, None]
    grad_P = factor * summed[:, :d]
    grad_Q = block.T @ (factor * Ph)
    _add_pair_gradients(Ph, Qh, rows, columns, pair_gradient / n_pairs, grad_P, grad_Q)
    return loss, grad_P, grad_Q


def _top_k_weights(positive, beta, pair_loss, config):
    """SL@K's weight w = sigmoid((s_ui - beta_u) / tau_w) of each pair and d(w l)/ds_ui
    of its weighted pair loss l = log Z_u - s_ui / tau, through w and through -s_ui / tau
    (beta constant; the normaliser's own share is added by the caller)."""
    inv_tau_w = 1.0 / config["weight_temperature"]
    weight = expit((positive - beta) * inv_tau_w)
    gradient = weight * (1.0 - weight) * inv_tau_w * pair_loss - weight / config["temperature"]
    return weight, gradient


def _sampled_softmax(Ph, Qh, rows, columns, sample, config, beta=None):
    """Sampled softmax (beta None) or SL@K over the sampled negatives, one batch x sample
    block; the normaliser holds the positive itself only in the sampled softmax."""
    n_pairs = rows.size
    inv_tau = 1.0 / config["temperature"]
    n_batch, n_items = Ph.shape[0], Qh.shape[0]
    Qs = Qh[sample]
    scores = Ph @ Qs.T  # batch x sample
    _drop_hits(scores, rows, columns, sample, n_items)
    top = scores.max(axis=1)
    empty = ~np.isfinite(top)  # every sampled item is a positive of this user
    top[empty] = 0.0
    scores -= top[:, None]
    scores *= inv_tau
    np.exp(scores, out=scores)
    total = scores.sum(axis=1, dtype=np.float64)
    with np.errstate(divide="ignore"):
        negative_lse = top * inv_tau + np.log(total)  # -inf where empty
    positive = _pair_scores(Ph, Qh, rows, columns)
    margin = negative_lse[rows] - positive * inv_tau
    if beta is None:
        loss = float(np.logaddexp(0.0, margin).sum()) / n_pairs  # log(1 + e^margin)
        slope = expit(margin)  # d loss / d margin
        pair_gradient = -slope * inv_tau
    else:  # l = margin; a user whose whole sample is positives has no term (l = -inf)
        usable = ~empty[rows]
        margin[~usable] = 0.0
        slope, pair_gradient = _top_k_weights(positive, beta[rows], margin, config)
        pair_gradient *= usable  # its normaliser's share is 0 already (total = 0)
        loss = float(np.dot(slope, margin)) / n_pairs
    row_slope = np.bincount(rows, weights=slope, minlength=n_batch)
    with np.errstate(divide="ignore", invalid="ignore"):
        factor = np.where(total > 0, row_slope * inv_tau / (n_pairs * total), 0.0)
    scores *= factor.astype(scores.dtype)[:, None]
    grad_P = scores @ Qs
    grad_Q = np.zeros_like(Qh)
    grad_Q[sample] = scores.T @ Ph  # the sample holds distinct items
    _add_pair_gradients(Ph, Qh, rows, columns, pair_gradient / n_pairs, grad_P, grad_Q)
    return loss, grad_P, grad_Q


def _batch_quantiles(config, quantiles, users, dtype):
    """beta_u^K of the batch's users for the SL@K losses, None for the others."""
    if config["loss"] not in TOP_K_LOSSES:
        return None
    return np.asarray(quantiles, dtype=dtype)[users]


def _bpr(Ph, Qh, rows, columns, negatives):
    n_pairs = rows.size
    difference = _pair_scores(Ph, Qh, rows, columns) - _pair_scores(Ph, Qh, rows, negatives)
    loss = float(np.logaddexp(0.0, -difference).sum()) / n_pairs  # -log sigmoid
    slope = -expit(-difference) / n_pairs  # dL/ds_ui; dL/ds_uj is its opposite
    grad_P, grad_Q = np.zeros_like(Ph), np.zeros_like(Qh)
    _add_pair_gradients(Ph, Qh, rows, columns, slope, grad_P, grad_Q)
    _add_pair_gradients(Ph, Qh, rows, negatives, -slope, grad_P, grad_Q)
    return loss, grad_P, grad_Q


def _drop_hits(scores, rows, columns, sample, n_items):
    """Set the scores of sampled items that are positives of the row's user to -inf."""
    where = np.full(n_items, -1, dtype=np.int64)
    where[sample] = np.arange(sample.size)
    hit = where[columns]
    found = hit >= 0
    scores[rows[found], hit[found]] = -np.inf


def _sample(rng, n_items, size):
    if size >= n_items:
        return np.arange(n_items)
    return rng.choice(n_items, size=size, replace=False)


def _unit_rows(matrix):
    norms = np.sqrt(np.einsum("ij,ij->i", matrix, matrix))
    norms = np.maximum(norms, _NORM_FLOOR).astype(matrix.dtype)
    return matrix / norms[:, None], norms


# -------------------------------------------------------------------------------------
# Data, optimiser, checks


class _Interactions:
    """Row structure of a canonical CSR matrix and what the losses need from it."""

    def __init__(self, matrix):
        self.shape = matrix.shape
        self.indptr = matrix.indptr.astype(np.int64)
        self.indices = matrix.indices.astype(np.int64)
        self.counts = np.diff(self.indptr)
        self._keys = None

    def batch(self, users):
        """(row in batch, item, batch indptr) of every positive pair of `users`."""
        counts = self.counts[users]
        indptr = np.zeros(users.size + 1, dtype=np.int64)
        np.cumsum(counts, out=indptr[1:])
        rows = np.repeat(np.arange(users.size), counts)
        positions = np.arange(indptr[-1]) + np.repeat(self.indptr[users] - indptr[:-1], counts)
        return rows, self.indices[positions], indptr

    def negatives(self, rng, users):
        """One uniform item per entry of `users` that the user has not interacted with
        (any item for a user who has interacted with every item)."""
        n_items = self.shape[1]
        if self._keys is None:  # sorted, as CSR rows are sorted
            self._keys = np.repeat(np.arange(self.shape[0], dtype=np.int64),
                                   self.counts) * n_items + self.indices
        items = rng.integers(0, n_items, size=users.size)
        todo = np.flatnonzero(self.counts[users] < n_items)
        while todo.size:
            key = users[todo] * n_items + items[todo]
            where = np.minimum(np.searchsorted(self._keys, key), self._keys.size - 1)
            todo = todo[self._keys[where] == key]
            items[todo] = rng.integers(0, n_items, size=todo.size)
        return items


class _Adam:
    """torch.optim.Adam on P and Q, dense: every row moves with its moments at every step
    (a row outside the batch has a zero gradient). One fused pass per matrix (Numba): in
    numpy the update is about a dozen passes over M x d and N x d, which cost more than
    BPR's or the sampled softmax's whole step on Gowalla."""

    def __init__(self, P, Q):
        self.params = (P, Q)
        self.first = (np.zeros_like(P), np.zeros_like(Q))
        self.second = (np.zeros_like(P), np.zeros_like(Q))
        self.every_item = np.arange(Q.shape[0], dtype=np.int64)
        self.t = 0

    def step(self, lr, users, grad_rows, grad_Q):
        self.t += 1
        step = lr / (1.0 - _BETA1 ** self.t)
        root = 1.0 / np.sqrt(1.0 - _BETA2 ** self.t)
        slot = np.full(self.params[0].shape[0], -1, dtype=np.int64)
        slot[users] = np.arange(users.size)
        for index, (where, gradient) in enumerate(((slot, grad_rows),
                                                   (self.every_item, grad_Q))):
            _adam_rows(self.params[index], self.first[index], self.second[index], where,
                       np.ascontiguousarray(gradient, dtype=np.float32), _BETA1, _BETA2, step,
                       root, _EPSILON)


@njit(cache=True, fastmath=True)
def _adam_rows(param, first, second, slot, gradient, beta1, beta2, step, root, epsilon):
    """Adam on each row r of param, with gradient row slot[r] (none where slot[r] < 0)."""
    b1, b2 = np.float32(beta1), np.float32(beta2)
    c1, c2 = np.float32(1.0 - beta1), np.float32(1.0 - beta2)
    step, root, epsilon = np.float32(step), np.float32(root), np.float32(epsilon)
    for r in range(param.shape[0]):
        k = slot[r]
        if k < 0:
            for c in range(param.shape[1]):
                m = b1 * first[r, c]
                v = b2 * second[r, c]
                first[r, c] = m
                second[r, c] = v
                param[r, c] -= step * m / (np.sqrt(v) * root + epsilon)
        else:
            for c in range(param.shape[1]):
                g = gradient[k, c]
                m = b1 * first[r, c] + c1 * g
                v = b2 * second[r, c] + c2 * g * g
                first[r, c] = m
                second[r, c] = v
                param[r, c] -= step * m / (np.sqrt(v) * root + epsilon)


@njit(cache=True, fastmath=True)
def _through_unit_rows(gradient, unit, norms):
    """Gradient w.r.t. x from the gradient g w.r.t. u = x / |x|: (g - u (u . g)) / |x|."""
    out = np.empty_like(gradient)
    for r in range(gradient.shape[0]):
        radial = 0.0
        for c in range(gradient.shape[1]):
            radial += gradient[r, c] * unit[r, c]
        scale = 1.0 / norms[r]
        for c in range(gradient.shape[1]):
            out[r, c] = (gradient[r, c] - unit[r, c] * radial) * scale
    return out


@njit(cache=True, fastmath=True)
def _add_pair_gradients(P, Q, rows, columns, weights, grad_P, grad_Q):
    """Back-propagate dL/ds = weights[k] at the pairs (rows[k], columns[k]) of s = P Q^T:
    grad_P[rows[k]] += weights[k] Q[columns[k]], grad_Q[columns[k]] += weights[k] P[rows[k]]."""
    for k in range(rows.size):
        u, i = rows[k], columns[k]
        w = weights[k]
        for c in range(P.shape[1]):
            grad_P[u, c] += w * Q[i, c]
            grad_Q[i, c] += w * P[u, c]


@njit(cache=True, fastmath=True)
def _pair_scores(P, Q, rows, columns):
    """P[rows[k]] . Q[columns[k]] for every k (float64 sums)."""
    out = np.empty(rows.size, dtype=np.float64)
    for k in range(rows.size):
        u, i = rows[k], columns[k]
        total = 0.0
        for c in range(P.shape[1]):
            total += P[u, c] * Q[i, c]
        out[k] = total
    return out


def _check_matrix(matrix, name):
    if not sp.issparse(matrix):
        raise TypeError(f"{name} must be a scipy.sparse matrix (users x items); got "
                        f"{type(matrix).__name__}")
    if len(matrix.shape) != 2 or min(matrix.shape) == 0:
        raise ValueError(f"{name} must be 2-D with at least one row and column; got shape "
                         f"{matrix.shape}")
    if not (np.issubdtype(matrix.dtype, np.number) or matrix.dtype == np.bool_):
        raise TypeError(f"{name} must hold numbers; got dtype {matrix.dtype}")
    matrix = sp.csr_matrix(matrix, dtype=np.float64, copy=True)
    matrix.sum_duplicates()
    if not np.all(np.isfinite(matrix.data)):
        raise ValueError(f"{name} holds NaN or infinite values")
    if np.any(matrix.data < 0):
        raise ValueError(f"{name} holds negative values; these losses take implicit feedback "
                         "(any positive value marks an interaction)")
    matrix.eliminate_zeros()
    if matrix.nnz == 0:
        raise ValueError(f"{name} has no interactions (no nonzero values)")
    matrix.sort_indices()
    return matrix


def _check_embeddings(array, name, rows, columns):
    array = np.asarray(array)
    if array.ndim != 2 or array.shape[0] != rows or (columns is not None
                                                     and array.shape[1] != columns):
        expected = f"({rows}, {'d' if columns is None else columns})"
        raise ValueError(f"{name} must have shape {expected}; got {array.shape}")
    if array.dtype not in (np.float32, np.float64):
        raise TypeError(f"{name} must be float32 or float64; got {array.dtype}")
    return array


def _integer(value, name, minimum):
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < minimum:
        raise ValueError(f"{name} must be an integer >= {minimum}; got {value!r}")
    return int(value)


def _real(value, name, strict):
    ok = (isinstance(value, numbers.Real) and not isinstance(value, bool)
          and np.isfinite(value) and (value > 0 if strict else value >= 0))
    if not ok:
        relation = "> 0" if strict else ">= 0"
        raise ValueError(f"{name} must be a finite number {relation}; got {value!r}")
    return float(value)


def _seed(value):
    if value is None:
        return None
    return _integer(value, "random_state", 0)
