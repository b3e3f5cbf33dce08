"""The losses: what enters A and b on each side of a half step, and the objective F.

Notation of design.md section 1: R is users x items with confidences c_ui > 0,
n_u = sum_i c_ui, w_u = n_u / (2N), scores s_ui = p_u . q_i.

    RG2(u) = -sum_{i in I_u} c_ui s_ui + w_u sum_j (s_uj + 1)^2
             + alpha sum_{i in I_u} c_ui (s_ui - 1)^2
    RGx(u) = RG2(u) - (w_u / N) (sum_j s_uj)^2
    iALS(u) = sum_{i in I_u} alpha c_ui (1 - s_ui)^2 + sum_{j not in I_u} s_uj^2

F adds sum_u lambda_u |p_u|^2 + sum_i lambda_i |q_i|^2.

The protocol every loss follows (`Loss`), in the order a half step uses it:

- a loss is built from keyword hyperparameters alone, `RG2(alpha=0.05)`, each declared
  with its default and the domain a tuner searches (`Hyperparameter`);
- `bind(user_items)` returns a copy that knows the data's constants (n_u, M, N);
- declared properties an executor reads instead of probing: `pairs_in_gram` (whether
  pairs carry a Gram weight: the solver then needs CG or Cholesky), `coupled_item_step`
  (RGx's item rows are tied through sum_j q_j) and `reweighting()` (per-sweep pair
  weights, rgals.topk; None for a loss without them);
- `side_statistics(side, fixed_factors, rows)`: sums over a block of the fixed side's
  rows (Grams, weighted sums), added up across blocks (`add_statistics`);
- `row_systems(side, statistics, block, others, pair_terms)`: the `RowSystems` A_r, b_r
  of a block (`pair_terms`: the reweighted confidences and linear terms of its pairs);
- `objective(P, Q, data)` without touching M x N pairs, summed from per-block parts
  (`objective_side`, `objective_pairs`, `objective_total`), and `hessian_bounds`.

No loss knows about devices or solvers; arrays stay in the library of the inputs.
"""

import copy
import math

import numpy as np
import scipy.sparse as sp

from .backend import array_module, backend_of
from .params import Hyperparameter
from .prepared import InteractionTotals, RowBlock
from .topk import TopKWeights
# add_statistics (the reduction of a half step) is re-exported beside the statistics
from .solve import RowSystems, add_statistics, row_bounds  # noqa: F401


def _gram(factors, weights=None):
    """factors^T diag(weights) factors and the weighted column sum, returned in float64.

    The product runs in the factors' dtype (BLAS speed); sums of float32 factors carry
    float32 rounding, which is the precision such a model has anyway.
    """
    weighted = factors if weights is None else factors * weights[:, None].astype(factors.dtype)
    return ((factors.T @ weighted).astype(np.float64),
            weighted.sum(axis=0, dtype=np.float64))


def _squared_norms(factors):
    """|x_r|^2 of every row, summed in float64 (without a float64 copy of the factors)."""
    return array_module(factors).einsum("ij,ij->i", factors, factors, dtype=np.float64)


# RG2/RGx defaults, derived on the validation splits of the shared datasets (bench/
# RESULTS.md, issue 16). alpha N is the weight of a positive's squared term against an
# unobserved item's (the analogue of iALS's alpha); lam is 0.01 per unit of the mean
# value, below a quarter of the regularization at which every factor collapses to zero
# (validation NDCG@20 falls off a cliff from about a third of it)
ALPHA_ITEMS = 300.0
REGULARIZATION = 0.01
COLLAPSE_FRACTION = 0.25


def collapse_regularization(user_items, alpha, reg_exponent, item_scale=None, steps=60,
                            stop_above=math.inf, user_sums=None):
    """lam* of RG2/RGx on this data: for a regularization lam above it, P = Q = 0 is a
    local minimum that the fit falls into.

    Near zero, F = sum_uj L_uj s_uj + sum_u lambda_u |p_u|^2 + sum_i lambda_i |q_i|^2 +
    O(|s|^2), with L_uj = (n_u / N) k_j - (1 + 2 alpha) c_uj (k_j: item j's scale in the
    user Gram, 1 without a prior) and lambda = lam base^nu (base_u = n_u/2 + alpha N + 1,
    base_i = sum_u w_u + alpha M). Zero is stable exactly when the bilinear form is
    dominated, lam >= sigma_max(B_U^-1/2 L B_I^-1/2) / 2. The singular value comes from
    power iterations on the sparse matrix and its rank-one part, never densified. Their
    estimates rise towards it: once one passes `stop_above`, that lower bound is returned.

    `user_items` may also be a scipy.sparse.linalg.LinearOperator (the Dask mode's
    blocks), with its row sums given as `user_sums`.
    """
    matrix = user_items.astype(np.float64) if sp.issparse(user_items) else user_items
    n_users, n_items = matrix.shape
    sums = (np.asarray(matrix.sum(axis=1)).ravel() if user_sums is None
            else np.asarray(user_sums, np.float64))
    scale = np.ones(n_items) if item_scale is None else np.asarray(item_scale, np.float64)
    # a base that overflows (a large reg_exponent) is refused, by name, where the fit
    # forms its regularisers; here it only needs to count as infinite
    with np.errstate(over="ignore"):
        user_base = (sums / 2.0 + alpha * n_items + 1.0) ** reg_exponent
        item_base = (sums.sum() / (2.0 * n_items) + alpha * n_users) ** reg_exponent
    rows, columns = 1.0 / np.sqrt(user_base), 1.0 / np.sqrt(item_base)
    shift = sums / n_items * rows  # B_U^-1/2 of the rank-one part's user side
    weight = 1.0 + 2.0 * alpha

    def product(v):  # K v, K = B_U^-1/2 L B_I^-1/2
        return shift * (columns * scale @ v) - weight * rows * (matrix @ (columns * v))

    def transposed(u):
        return columns * (scale * (shift @ u) - weight * (matrix.T @ (rows * u)))

    vector = np.full(n_items, 1.0 / math.sqrt(n_items))
    sigma = 0.0
    for _ in range(steps):
        image = product(vector)
        previous, sigma = sigma, float(np.linalg.norm(image))
        if sigma == 0.0:
            return 0.0
        vector = transposed(image / sigma)
        vector /= np.linalg.norm(vector)
        if abs(sigma - previous) <= 1e-6 * sigma or sigma / 2.0 >= stop_above:
            break
    return sigma / 2.0


class Loss:
    """Base of every loss: hyperparameters, binding to data, and the shared machinery.

    Subclasses declare `name`, `allows_negative`, `hyperparameters` (name ->
    Hyperparameter), what an executor must know (`coupled_item_step`, `pairs_in_gram`,
    `reweighting`) and implement `_bind`, `side_statistics`, `row_systems` and the
    objective's parts (`objective_side`, `objective_pairs`, `objective_total`, with the
    `magnitude` the monitor's check needs), or `objective` whole for a loss that runs
    only in one process.
    """

    name = None
    allows_negative = False
    hyperparameters = {}

    def __init__(self, **hyperparameters):
        unknown = sorted(set(hyperparameters) - set(self.hyperparameters))
        if unknown:
            raise ValueError(f"unknown hyperparameter {unknown[0]!r} for loss {self.name!r}; "
                             f"it takes {', '.join(self.hyperparameters) or 'none'}")
        for name, declared in self.hyperparameters.items():
            value = hyperparameters.get(name)
            setattr(self, name, declared.default if value is None else
                    declared.check(value, name))
        self.bound = False

    def get_params(self):
        """The hyperparameters, name -> value."""
        return {name: getattr(self, name) for name in self.hyperparameters}

    def __repr__(self):
        params = ", ".join(f"{name}={value!r}" for name, value in self.get_params().items())
        return f"{type(self).__name__}({params})"

    def __eq__(self, other):
        return type(self) is type(other) and self.get_params() == other.get_params()

    def __hash__(self):
        return hash((type(self), tuple(self.get_params().items())))

    def to_dict(self):
        """{"name": ..., hyperparameters...}: what params.json stores (`make_loss` reads it)."""
        return {"name": self.name, **self.get_params()}

    def resolve(self, user_items, totals=None):
        """A copy whose hyperparameters left at None that the data decides (see each
        loss) are computed from `user_items`, a checked users x items CSR on the host (or
        a LinearOperator of the distributed blocks, with `totals`, their
        InteractionTotals); the fit calls it before `bind`. The base loss has none."""
        return copy.copy(self)

    def bind(self, user_items):
        """A copy of this loss that knows the constants of `user_items` (a users x items
        CSR, or its rgals.prepared.InteractionTotals). A CSR also resolves what the data
        decides (`resolve`); totals need those hyperparameters set already."""
        if isinstance(user_items, InteractionTotals):
            totals, bound = user_items, copy.copy(self)
        else:
            totals = InteractionTotals.of(user_items)
            bound = self.resolve(user_items, totals)
        unresolved = [name for name, declared in self.hyperparameters.items()
                      if declared.from_data and getattr(bound, name) is None]
        if unresolved:
            raise ValueError(f"{self!r} has {unresolved[0]}=None, which the training data "
                             "decides: bind it to the interaction matrix, or give the value")
        bound.n_users, bound.n_items = totals.shape
        bound._bind(totals)
        bound.bound = True
        return bound

    def _bind(self, totals):
        """Compute what this loss needs from the data's InteractionTotals (n_u, M, N are
        set already)."""

    # -- what an executor needs to know, declared ---------------------------------------

    coupled_item_step = False  # RGx: the item rows are tied through sum_j q_j

    @property
    def pairs_in_gram(self):
        """Whether stored pairs carry a weight in A (then the rows share no eigenbasis
        and the solver is CG or Cholesky); known once bound."""
        return True

    def reweighting(self):
        """The per-sweep reweighting of the pairs (rgals.topk.TopKWeights), or None."""
        return None

    def with_user_sums(self, user_sums):
        """A copy bound to these per-user confidence sums n_u (a reweighting's)."""
        raise NotImplementedError(f"{type(self).__name__} has no reweighting")

    # -- a half step ---------------------------------------------------------------------

    def shared_gram(self, side, statistics):
        """The Gram every row system of `side` shares (RowSystems.gram), from the summed
        side statistics: what one eigendecomposition per half step serves."""
        return statistics["gram"]

    def side_statistics(self, side, fixed_factors, rows):
        """Sums over rows `rows` of the fixed side (`fixed_factors` are those rows) that
        `side`'s row systems need; a dict of arrays, added up across blocks."""
        raise NotImplementedError(f"{type(self).__name__} must define side_statistics")

    def row_systems(self, side, statistics, block, others, pair_terms=None):
        """The RowSystems of the rows of `block` (a rgals.prepared.RowBlock) of `side`;
        `pair_terms`: (confidences, linear terms or None) of the block's pairs in a
        reweighted sweep (None: the stored values)."""
        raise NotImplementedError(f"{type(self).__name__} must define row_systems")

    # -- the objective, from parts summed over row blocks --------------------------------

    def objective(self, user_factors, item_factors, data, magnitude=False, pair_terms=None):
        """F at these factors (data: PreparedData or a users x items CSR; `pair_terms`:
        the reweighted (confidences, linear terms) of every pair, user-major). With
        `magnitude`: (F, a bound on the sum of the absolute values of the terms F adds up),
        the size that F's rounding scales with (the monitor's tolerance)."""
        self._require_bound()
        user_items = getattr(data, "user_items", data)
        backend = getattr(data, "backend", None) or backend_of(user_factors)
        everything = slice(None)
        return self.objective_total(
            self.objective_side("user", user_factors, everything),
            self.objective_side("item", item_factors, everything),
            self.objective_pairs(user_items, user_factors, item_factors, pair_terms, backend),
            magnitude)

    def objective_side(self, side, factors, rows):
        """F's sums over the rows `rows` of one side (`factors`: those rows); a dict,
        added up across blocks."""
        raise NotImplementedError(f"{type(self).__name__} must define objective_side")

    def objective_pairs(self, user_items, user_factors, others, pair_terms, backend):
        """F's sums over the stored pairs of a block of users (`user_items` its rows,
        whose columns are the rows of `others`); a dict, added up across blocks."""
        raise NotImplementedError(f"{type(self).__name__} must define objective_pairs")

    def objective_total(self, users, items, pairs, magnitude=False):
        """F (and with `magnitude` its size) from the summed parts."""
        raise NotImplementedError(f"{type(self).__name__} must define objective_total")

    def _require_bound(self):
        if not self.bound:
            raise RuntimeError(f"{self!r} is not bound to data: call loss.bind(user_items) "
                               "first (ALSSolver.fit does)")

    def user_systems(self, item_factors, user_items):
        """Systems of the users in the rows of `user_items` (training rows or new ones)."""
        statistics = self.side_statistics("user", item_factors, slice(None))
        return self.row_systems("user", statistics, RowBlock.of(user_items, "user"),
                                item_factors)

    def item_systems(self, user_factors, item_users):
        """Systems of the items in the rows of `item_users` (items x users)."""
        statistics = self.side_statistics("item", user_factors, slice(None))
        return self.row_systems("item", statistics, RowBlock.of(item_users, "item"),
                                user_factors)

    def hessian_bounds(self, side, systems, backend=None, solution=None):
        """Bounds (lowest, highest) on the eigenvalues of the half step's Hessian, from
        the row systems of every block in `systems` (`solution`: the solve's
        rgals.solve.Solution, whose by-products save work)."""
        lowest, highest = _combined_bounds(systems, backend, solution)
        return self.half_step_bounds(
            side, lowest, highest, sum(part.interactions.shape[0] for part in systems),
            systems[0].gram, systems[0].coupling,
            None if solution is None else solution.eigenvalues)

    def half_step_bounds(self, side, lowest, highest, rows, gram, coupling,
                         eigenvalues=None):
        """The Hessian's bounds from the rows' (`lowest`, `highest`: over every row of
        the half step's `rows`; `gram` and `coupling`: the systems' shared ones).

        The objective is x^T A_r x - 2 b_r^T x summed over the rows, so the Hessian is
        2 A_r row by row; a coupling C adds -2 (1 1^T) kron C, which lowers the bound by
        rows * eig_max(C) (Weyl).
        """
        if coupling is not None:
            xp = array_module(coupling)
            lowest -= rows * max(float(xp.linalg.eigvalsh(coupling)[-1]), 0.0)
        return 2.0 * lowest, 2.0 * highest


def _combined_bounds(systems, backend, solution):
    eigenvalues, curvatures = ((None, None) if solution is None else
                               (solution.eigenvalues, solution.pair_curvatures))
    bounds = [row_bounds(part, backend, eigenvalues,
                         None if curvatures is None else curvatures[k])
              for k, part in enumerate(systems)]
    return min(low for low, _ in bounds), max(high for _, high in bounds)


_EXPANSION = {
    "alpha": Hyperparameter(
        None, f"weight of the squared term on observed pairs (None: {ALPHA_ITEMS:g} / N, "
        "within [1e-4, 1])", low=1e-4, high=1.0, log=True, searched=True, from_data=True),
    "regularization": Hyperparameter(
        None, f"lam in lambda_u and lambda_i (None: a fit chooses it on a holdout path "
        f"from {REGULARIZATION:g} times the mean value, or {COLLAPSE_FRACTION:g} of the "
        "value above which every factor collapses to zero if that is lower: "
        "rgals.path)", strict=True, low=1e-5, high=1.0, log=True, searched=True,
        from_data=True),
    "reg_exponent": Hyperparameter(1.0, "nu in lambda_u and lambda_i (0: constant lam)",
                                   low=0.0, high=1.0),
}
_PRIOR = {
    "popularity_exponent": Hyperparameter(
        0.0, "gamma of the expansion's prior pi_j ~ n_j^gamma (0: uniform)",
        maximum=2.0, low=0.0, high=1.0),
}
_TOP_K = {
    "top_k": Hyperparameter(None, "K of the top-K weights (None: off)", kind="integer",
                            minimum=1, low=5, high=200, log=True, optional=True),
    "top_k_temperature": Hyperparameter(
        1.0, "tau_u / std_j(s_uj): the weights' temperature in score spreads",
        strict=True, low=0.1, high=10.0, log=True),
    "top_k_quantile": Hyperparameter(
        "exact", "beta_u: 'exact' (K-th largest score over all items, one scoring "
        "pass) or 'sampled' (K-th largest of the positives and top_k_samples uniform "
        "items, as the authors estimate it)", kind="choice", choices=("exact", "sampled")),
    "top_k_samples": Hyperparameter(1000, "uniform items of the sampled quantile",
                                    kind="integer", minimum=1, low=100, high=5000,
                                    log=True),
    "top_k_refresh": Hyperparameter(1, "sweeps between refreshes of the weights",
                                    kind="integer", minimum=1, low=1, high=5),
    "top_k_warmup": Hyperparameter(0, "sweeps of the plain loss before the first "
                                   "refresh", kind="integer", minimum=0, low=0, high=10),
    "top_k_damping": Hyperparameter(0.0, "d in w <- d w_old + (1 - d) w_new",
                                    maximum=0.99, low=0.0, high=0.9),
    "top_k_gradient": Hyperparameter(False, "keep the weight's own gradient term",
                                     kind="bool"),
}


class SoftmaxExpansion(Loss):
    """The base of RG2 and RGx: second-order expansions of the softmax loss (design.md 1.2).

    Regularisation as in the authors' code: lambda_u = lam (n_u/2 + alpha N + 1)^nu and
    lambda_i = lam (sum_u w_u + alpha M)^nu.

    Top-K weights (SoftmaxLoss@K, Yang et al. 2025; design.md 1.6 C), with `top_k=K`: at a
    refresh (rgals.topk.TopKWeights, every `top_k_refresh` sweeps) each positive gets
    w_ui = sigmoid((s_ui - beta_u) / tau_u) from the current scores, beta_u the K-th
    largest score of user u (`top_k_quantile`), and the loss takes c_ui w_ui as its
    confidences (n_u = sum_i c_ui w_ui) until the next refresh; the weights are scaled to
    mean 1 over each user's positives, so that they move emphasis between a user's
    positives and not the user's weight against the regularisation (unscaled, most
    weights are far below 1 and the factors shrink). `top_k_warmup` sweeps of the plain
    loss come first, so that the first weights rank by learnt scores, not by the random
    start. The temperature rule puts
    tau in the model's own score units: tau_u = top_k_temperature * std_j(s_uj), the
    spread of the user's scores over all items (closed form: no scoring pass). A refresh
    damps the weights, w <- d w_old + (1 - d) w_new. `top_k_gradient` keeps the weight's
    own gradient as in the authors' loss: each positive adds g_ui s_ui with
    g_ui = c_ui l_ui sigma_ui (1 - sigma_ui) / (tau_u m_u) frozen (sigma the sigmoid, m_u
    its mean over the user's positives, l_ui = LSE_u - s_ui the softmax term), which
    lowers badly ranked (likely noisy) positives. Fold-in (`recalculate_*`) uses
    the plain confidences: weights need the scores of the row being solved.
    """

    allows_negative = False
    # alpha and regularization default from the data (`resolve`, bench/RESULTS.md issue
    # 16); the best values still differ per dataset: rgals.tune searches them
    hyperparameters = {**_EXPANSION, **_TOP_K}
    popularity_exponent = 0.0  # RG2 declares it; RGx keeps the uniform expansion

    def resolve(self, user_items, totals=None):
        """alpha=None: ALPHA_ITEMS / N (within alpha's domain). regularization=None:
        REGULARIZATION times the mean stored value, capped at COLLAPSE_FRACTION of
        `collapse_regularization` on this data (with the popularity prior's item scales,
        when gamma > 0): the rule's lam, where a fit's path (rgals.path) starts."""
        resolved = copy.copy(self)
        n_items = user_items.shape[1]
        if self.alpha is None:
            domain = self.hyperparameters["alpha"]
            resolved.alpha = float(min(max(ALPHA_ITEMS / n_items, domain.low), domain.high))
        if self.regularization is None:
            totals = InteractionTotals.of(user_items) if totals is None else totals
            pairs = int(totals.user_counts.sum())
            # RG2's data terms scale with the values but its regularisers' alpha N + 1 does
            # not: lam per unit of the mean value keeps the default scale-free
            target = REGULARIZATION * (float(totals.user_sums.sum()) / pairs if pairs else 1.0)
            # only whether the cap binds matters: stop once lam* is known to be above it
            threshold = resolved.collapse(user_items, totals,
                                          stop_above=target / COLLAPSE_FRACTION)
            # no interactions at all: nothing to collapse from (nor to regularise against)
            resolved.regularization = (min(target, COLLAPSE_FRACTION * threshold)
                                       if threshold > 0 else target)
        return resolved

    def collapse(self, user_items, totals, stop_above=math.inf):
        """`collapse_regularization` on this data at this loss's alpha (resolved), nu
        and popularity prior: the lam above which every factor falls to zero."""
        item_scale = None
        if self.popularity_exponent and int(totals.user_counts.sum()):
            powered = totals.item_sums ** self.popularity_exponent
            item_scale = user_items.shape[1] * powered / powered.sum()
        return collapse_regularization(user_items, self.alpha, self.reg_exponent, item_scale,
                                       stop_above=stop_above, user_sums=totals.user_sums)

    def _bind(self, totals):
        if not totals.known:
            raise ValueError(f"loss {self.name!r} needs the totals of its training data "
                             "(each user's and item's summed values); this model has none")
        self._set_user_sums(totals.user_sums)
        self.item_scale = None  # N pi_j of every item; None: all 1
        if self.popularity_exponent:
            sums = totals.item_sums
            self._prior_total = float((sums ** self.popularity_exponent).sum())
            self.item_scale = self._prior_scale(sums)

    def _set_user_sums(self, sums):
        self.user_sums = sums
        self.user_weight = sums / (2.0 * self.n_items)
        self.item_reg = float(self._regulariser(
            np.float64(float(self.user_weight.sum()) + self.alpha * self.n_users)))

    @property
    def pairs_in_gram(self):
        return self.alpha > 0

    def reweighting(self):
        self._require_bound()
        if self.top_k is None:
            return None
        return TopKWeights(k=self.top_k, temperature=self.top_k_temperature,
                           quantile=self.top_k_quantile, samples=self.top_k_samples,
                           refresh=self.top_k_refresh, warmup=self.top_k_warmup,
                           damping=self.top_k_damping, gradient=self.top_k_gradient,
                           n_items=self.n_items)

    def with_user_sums(self, user_sums):
        bound = copy.copy(self)
        bound._set_user_sums(user_sums)
        return bound

    def user_reg(self, interaction_sums):
        return self._regulariser(interaction_sums / 2.0 + self.alpha * self.n_items + 1.0)

    def _regulariser(self, base):
        """lam * base^nu, refused where it overflows (a large reg_exponent on large sums)."""
        xp = array_module(base)
        with np.errstate(over="ignore"):
            value = self.regularization * xp.power(base, self.reg_exponent)
        if not bool(xp.isfinite(value).all()):
            raise ValueError(
                f"the regularization lam * (n/2 + alpha N + 1)^reg_exponent overflows: "
                f"reg_exponent={self.reg_exponent:g} with sums up to {float(base.max()):.3g}. "
                "Use a smaller reg_exponent (default 1) or rescale the values")
        return value

    def pair_weights(self, values, linear=None):
        """Per stored pair: its weight in A (None if all zero) and its weight in b; `linear`:
        g of an extra term g s per pair (the top-K weight's gradient)."""
        values = values.astype(np.float64, copy=False)
        gram = self.alpha * values if self.alpha > 0 else None
        rhs = (self.alpha + 0.5) * values
        return gram, rhs if linear is None else rhs - 0.5 * linear

    def side_statistics(self, side, fixed_factors, rows):
        """User step: G = Q^T Q and sigma = sum_j q_j over a block of items. Item step:
        G_W = sum_u w_u p_u p_u^T and sigma_W = sum_u w_u p_u over a block of users."""
        self._require_bound()
        if side == "user":
            weights = None if self.item_scale is None else self.item_scale[rows]
        else:
            weights = self.user_weight[rows]
        gram, column_sum = _gram(fixed_factors, weights)
        return {"gram": gram, "sum": column_sum}

    def user_gram(self, statistics):
        return statistics["gram"]

    def shared_gram(self, side, statistics):
        return self.user_gram(statistics) if side == "user" else statistics["gram"]

    def row_systems(self, side, statistics, block, others, pair_terms=None):
        """design.md 1.3. User: A_u = w_u G + alpha sum c q q^T + lambda_u I,
        b_u = -w_u sigma + (alpha + 1/2) sum c q. Item: A_i = G_W + alpha sum c p p^T +
        lambda_i I, b_i = -sigma_W + (alpha + 1/2) sum c p (RGx adds its coupling)."""
        self._require_bound()
        values, linear = (block.matrix.data, None) if pair_terms is None else pair_terms
        pair_gram, pair_rhs = self.pair_weights(values, linear)
        n_rows = block.matrix.shape[0]
        xp = array_module(others)
        if side == "user":
            # training rows: the loss's n_u (c w with top-K weights); others: c
            sums = block.row_sums if block.pairs is None else self.user_sums[block.rows]
            return RowSystems(block.matrix, pair_gram, pair_rhs, others,
                              self.shared_gram(side, statistics), -statistics["sum"],
                              scale=sums / (2.0 * self.n_items), reg=self.user_reg(sums))
        return RowSystems(block.matrix, pair_gram, pair_rhs, others,
                          self.shared_gram(side, statistics), -statistics["sum"],
                          scale=self._item_scales(block),
                          reg=xp.full(n_rows, self.item_reg),
                          coupling=self.item_coupling(statistics["gram"]))

    def _item_scales(self, block):
        """N pi_j of the block's items (1 without a prior); an item from outside the
        training data (fold-in) takes its prior from its own interactions."""
        if self.item_scale is None:
            return array_module(block.row_sums).ones(block.matrix.shape[0])
        if block.pairs is None:
            return self._prior_scale(block.row_sums)
        return self.item_scale[block.rows]

    def _prior_scale(self, item_sums):
        """N pi_j for items with these summed confidences (the training normaliser)."""
        return self.n_items * item_sums ** self.popularity_exponent / self._prior_total

    def item_coupling(self, weighted_user_gram):
        """C of the coupled item step (None: the item rows are independent)."""
        return None

    def objective_side(self, side, factors, rows):
        """Items: the (prior-scaled) Gram and sum, and the norms' sums the objective and
        its size need; users: the w-weighted Gram and sum, their regularisers."""
        self._require_bound()
        xp = array_module(factors)
        norms = _squared_norms(factors)
        if side == "item":
            scale = (xp.ones(factors.shape[0]) if self.item_scale is None
                     else self.item_scale[rows])
            gram, total = _gram(factors, None if self.item_scale is None else scale)
            return {"gram": gram, "sum": total, "norms": norms.sum(),
                    "scaled_norms": scale @ norms, "scaled_roots": scale @ xp.sqrt(norms)}
        weight = self.user_weight[rows]
        gram, total = _gram(factors, weight)
        return {"gram": gram, "sum": total, "weight": weight.sum(),
                "regularisers": self.user_reg(self.user_sums[rows]) @ norms,
                "weighted_norms": weight @ norms, "weighted_roots": weight @ xp.sqrt(norms)}

    def objective_pairs(self, user_items, user_factors, others, pair_terms, backend):
        """sum c (alpha (s - 1)^2 - s) (+ g s) over the pairs, and its absolute size."""
        values, linear = (user_items.data, None) if pair_terms is None else pair_terms
        scores = backend.kernels.pair_scores(user_items.indptr, user_items.indices,
                                             user_factors, others)
        part = {"observed": (values * (self.alpha * (scores - 1.0) ** 2 - scores)).sum(),
                "observed_size": (values * (self.alpha * (scores - 1.0) ** 2
                                            + abs(scores))).sum()}
        if linear is not None:
            part["observed"] = part["observed"] + (linear * scores).sum()
            part["observed_size"] = part["observed_size"] + abs(linear * scores).sum()
        return part

    def objective_total(self, users, items, pairs, magnitude=False):
        """F of design.md 1.4 in closed form from the summed parts."""
        # sum_u w_u sum_j N pi_j (s_uj + 1)^2 over all M x N pairs, in closed form
        # (sum_j N pi_j = N)
        total = ((items["gram"] * users["gram"]).sum() + 2.0 * items["sum"] @ users["sum"]
                 + self.n_items * users["weight"])
        interaction = self.interaction_term(items["sum"], users["gram"])
        regularisers = users["regularisers"] + self.item_reg * items["norms"]
        total = total - interaction + pairs["observed"] + regularisers
        if not magnitude:
            return float(total)
        # |s_uj| <= |p_u| |q_j| bounds every all-pairs term by products of norms
        all_pairs = users["weighted_norms"] * items["scaled_norms"]
        size = (all_pairs + 2.0 * users["weighted_roots"] * items["scaled_roots"]
                + self.n_items * users["weight"] + pairs["observed_size"] + regularisers)
        if interaction:
            size += all_pairs  # (sum_j s_uj)^2 / N <= sum_j s_uj^2
        return float(total), float(size)

    def interaction_term(self, item_sum, weighted_user_gram):
        """sum_u (w_u / N) (sum_j s_uj)^2, subtracted by RGx; zero for RG2."""
        return 0.0


class RG2(SoftmaxExpansion):
    """Second-order Taylor expansion of the softmax loss without the interactive term.

    See SoftmaxExpansion for the regularisation and the top-K weights; RG2 alone takes
    the popularity prior.
    `popularity_exponent=gamma` (design.md 1.6 B) expands the softmax at a popularity prior
    pi_j ~ n_j^gamma (n_j: the item's summed confidences) instead of the uniform one:
    n_u LSE(log pi + s_u) ~ w_u sum_j N pi_j (s_uj + 1)^2 + const, so the user Gram is
    Q^T diag(N pi) Q and item j's system takes the scale N pi_j. The offset log pi_j is
    left out of the scores (measured in bench/RESULTS.md: it changes little), so popular
    items are pushed down harder than rare ones. gamma = 0 is plain rg2.
    """

    name = "rg2"
    hyperparameters = {**_EXPANSION, **_PRIOR, **_TOP_K}


class RGx(SoftmaxExpansion):
    """The exact second-order expansion: RG2 minus the interactive term.

    The user step uses the centred Gram G - sigma sigma^T / N; the item step is coupled
    through sigma_Q = sum_j q_j (coupling C = G_W / N) and solved exactly (design.md 1.3).
    """

    name = "rgx"
    coupled_item_step = True

    def user_gram(self, statistics):
        column_sum = statistics["sum"]
        return statistics["gram"] - column_sum[:, None] * column_sum[None, :] / self.n_items

    def item_coupling(self, weighted_user_gram):
        return weighted_user_gram / self.n_items

    def interaction_term(self, item_sum, weighted_user_gram):
        return float(item_sum @ weighted_user_gram @ item_sum) / self.n_items

    def half_step_bounds(self, side, lowest, highest, rows, gram, coupling,
                         eigenvalues=None):
        """As Loss.half_step_bounds, tighter for the item step: with unit scale and
        C = G_W / N the Gram part is (I - 1 1^T / N) kron G_W, whose lowest eigenvalue is
        0, so the bound drops by e_min(G_W) only (exact without pair terms)."""
        if side == "user":
            return super().half_step_bounds(side, lowest, highest, rows, gram, coupling,
                                            eigenvalues)
        if eigenvalues is None:
            eigenvalues = array_module(gram).linalg.eigvalsh(gram)
        lowest -= max(float(eigenvalues[0]), 0.0)
        return 2.0 * lowest, 2.0 * highest


class IALS(Loss):
    """Weighted squared loss of Hu et al. (2008) with `implicit`'s conventions.

    Confidence alpha * r_ui; a positive one has target 1, a negative one target 0 with
    weight |alpha * r_ui|; unobserved pairs have confidence 1 and target 0; plain
    lam |x|^2 regularisation.
    """

    name = "ials"
    allows_negative = True
    hyperparameters = {  # defaults: implicit's
        "alpha": Hyperparameter(1.0, "confidence scale: confidence = alpha * value",
                                strict=True, low=0.1, high=100.0, log=True, searched=True),
        "regularization": Hyperparameter(0.01, "lam of lam |x|^2", strict=True, low=1e-4,
                                         high=10.0, log=True, searched=True),
    }

    def _bind(self, totals):
        # no pair carries a Gram weight when every |alpha c| is 1: the same on every block
        # (alpha * |c| rounds monotonically, so the range's ends decide; no values: vacuous;
        # unknown values, as in a model from implicit's file: assume weights)
        if totals.value_range is None:
            self.unit_confidences = totals.known
        else:
            self.unit_confidences = all(self.alpha * value == 1.0
                                        for value in totals.value_range)

    @property
    def pairs_in_gram(self):
        return not self.unit_confidences

    def pair_weights(self, values):
        confidence = self.alpha * values.astype(np.float64)
        gram = None if self.unit_confidences else abs(confidence) - 1.0
        return gram, confidence.clip(0.0, None)

    def side_statistics(self, side, fixed_factors, rows):
        self._require_bound()
        gram, _ = _gram(fixed_factors)
        return {"gram": gram}

    def row_systems(self, side, statistics, block, others, pair_terms=None):
        self._require_bound()
        pair_gram, pair_rhs = self.pair_weights(block.matrix.data)
        n_rows, d, xp = block.matrix.shape[0], others.shape[1], array_module(others)
        return RowSystems(block.matrix, pair_gram, pair_rhs, others,
                          self.shared_gram(side, statistics), xp.zeros(d), scale=xp.ones(n_rows),
                          reg=xp.full(n_rows, self.regularization))

    def objective_side(self, side, factors, rows):
        self._require_bound()
        gram, _ = _gram(factors)
        return {"gram": gram}

    def objective_pairs(self, user_items, user_factors, others, pair_terms, backend):
        scores = backend.kernels.pair_scores(user_items.indptr, user_items.indices,
                                             user_factors, others)
        confidence = self.alpha * user_items.data
        target = (confidence > 0).astype(np.float64)
        observed = abs(confidence) * (target - scores) ** 2
        return {"observed": (observed - scores ** 2).sum(),
                "observed_size": (observed + scores ** 2).sum()}

    def objective_total(self, users, items, pairs, magnitude=False):
        user_gram, item_gram = users["gram"], items["gram"]
        total = (user_gram * item_gram).sum()  # every pair as unobserved: sum s_uj^2
        regulariser = self.regularization * float(user_gram.trace() + item_gram.trace())
        total = total + pairs["observed"] + regulariser
        if not magnitude:
            return float(total)
        # sum_uj s_uj^2 <= sum_u |p_u|^2 sum_j |q_j|^2
        size = (float(user_gram.trace()) * float(item_gram.trace())
                + pairs["observed_size"] + regulariser)
        return float(total), float(size)


LOSSES = {loss.name: loss for loss in (RG2, RGx, IALS)}


def make_loss(loss, **hyperparameters):
    """A Loss from a name (with hyperparameters; None values take the loss's defaults),
    a Loss object (copied; then no hyperparameters may be given), or a dict
    {"name": ..., hyperparameters...} as `Loss.to_dict` writes (the estimator's
    hyperparameters fill in what the dict leaves out; one given both ways is an error)."""
    spec = {}
    if isinstance(loss, dict):
        spec = dict(loss)
        loss = spec.pop("name", None)
        given = sorted(name for name, value in hyperparameters.items()
                       if value is not None and name in spec)
        if given:
            raise ValueError(f"{given[0]} was given both to the estimator and inside "
                             f"loss={spec!r}; set it in one place")
    if isinstance(loss, Loss):
        given = sorted(name for name, value in hyperparameters.items() if value is not None)
        if given:
            raise ValueError(f"{given[0]} was given both to the estimator and inside "
                             f"loss={loss!r}; set it in one place (the loss object, or "
                             "loss=name with the estimator's parameters)")
        return type(loss)(**loss.get_params())
    if loss not in LOSSES:
        raise ValueError(f"unknown loss {loss!r}; use one of "
                         f"{', '.join(map(repr, LOSSES))} or a rgals.losses.Loss object")
    declared = LOSSES[loss].hyperparameters
    # the estimator's hyperparameters that this loss takes; the dict's go in as they are
    # (an unknown one is the constructor's clear error)
    return LOSSES[loss](**{name: value for name, value in hyperparameters.items()
                           if name in declared and name not in spec}, **spec)
