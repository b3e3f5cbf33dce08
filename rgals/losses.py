"""The losses: each says what enters A and b on each side, and evaluates its objective F.

Notation of DESIGN.md section 1: R is users x items with confidences c_ui > 0,
n_u = sum_i c_ui, w_u = n_u / (2N), scores s_ui = p_u . q_i.

    RG2(u) = -sum_{i in I_u} c_ui s_ui + w_u sum_j (s_uj + 1)^2
             + alpha sum_{i in I_u} c_ui (s_ui - 1)^2
    RGx(u) = RG2(u) - (w_u / N) (sum_j s_uj)^2
    iALS(u) = sum_{i in I_u} alpha c_ui (1 - s_ui)^2 + sum_{j not in I_u} s_uj^2

F adds sum_u lambda_u |p_u|^2 + sum_i lambda_i |q_i|^2. No loss knows about devices or
solvers: it hands the solver `RowSystems` and evaluates F without touching M x N pairs.
The arrays stay in the library of the inputs (NumPy, or CuPy for backend="gpu").
"""

import numpy as np

from .backend import array_module, kernels_for
from .solve import RowSystems


def _gram(factors, weights=None):
    """factors^T diag(weights) factors and the weighted column sum, returned in float64.

    The product runs in the factors' dtype (BLAS speed); sums of float32 factors carry
    float32 rounding, which is the precision such a model has anyway.
    """
    weighted = factors if weights is None else factors * weights[:, None].astype(factors.dtype)
    return ((factors.T @ weighted).astype(np.float64),
            weighted.sum(axis=0, dtype=np.float64))


def _row_sums(matrix):
    xp = array_module(matrix)
    return xp.asarray(matrix.sum(axis=1), dtype=np.float64).ravel()


def _pair_scores(user_items, user_factors, item_factors):
    kernels = kernels_for(array_module(user_factors))
    return kernels.pair_scores(user_items.indptr, user_items.indices, user_factors,
                               item_factors)


def _squared_norms(factors):
    factors = factors.astype(np.float64)
    return (factors * factors).sum(axis=1)


class RG2:
    """Second-order Taylor expansion of the softmax loss without the interactive term.

    Regularisation as in the authors' code: lambda_u = lam (n_u/2 + alpha N + 1)^nu and
    lambda_i = lam (sum_u w_u + alpha M)^nu.
    """

    name = "rg2"
    allows_negative = False
    # no collapse to zero on any of the three shared datasets (validation NDCG@20, factors
    # 64); the best values differ per dataset: tune them on validation data
    default_alpha = 0.01
    default_regularization = 1e-3

    def __init__(self, alpha, regularization, reg_exponent, user_items):
        self.alpha = float(alpha)
        self.regularization = float(regularization)
        self.reg_exponent = float(reg_exponent)
        self.n_users, self.n_items = user_items.shape
        self.user_weight = _row_sums(user_items) / (2.0 * self.n_items)
        self.item_reg = self.regularization * (
            float(self.user_weight.sum()) + self.alpha * self.n_users) ** self.reg_exponent

    def user_reg(self, interaction_sums):
        base = interaction_sums / 2.0 + self.alpha * self.n_items + 1.0
        return self.regularization * base ** self.reg_exponent

    def pair_weights(self, values):
        """Per stored pair: its weight in A (None if all zero) and its weight in b."""
        values = values.astype(np.float64)
        gram = self.alpha * values if self.alpha > 0 else None
        return gram, (self.alpha + 0.5) * values

    def user_gram(self, item_factors):
        return _gram(item_factors)

    def user_systems(self, item_factors, user_items):
        """Systems for the users in the rows of `user_items` (training rows or new ones)."""
        sums = _row_sums(user_items)
        gram, column_sum = self.user_gram(item_factors)
        pair_gram, pair_rhs = self.pair_weights(user_items.data)
        return RowSystems(user_items, pair_gram, pair_rhs, item_factors, gram, -column_sum,
                          scale=sums / (2.0 * self.n_items), reg=self.user_reg(sums))

    def item_systems(self, user_factors, item_users):
        """Systems for the items in the rows of `item_users` (items x users)."""
        gram, column_sum = _gram(user_factors, self.user_weight)
        pair_gram, pair_rhs = self.pair_weights(item_users.data)
        n_rows, xp = item_users.shape[0], array_module(user_factors)
        return RowSystems(item_users, pair_gram, pair_rhs, user_factors, gram, -column_sum,
                          scale=xp.ones(n_rows), reg=xp.full(n_rows, self.item_reg),
                          coupling=self.item_coupling(gram))

    def item_coupling(self, weighted_user_gram):
        return None

    def objective(self, user_factors, item_factors, user_items):
        item_gram, item_sum = _gram(item_factors)
        user_gram, user_sum = _gram(user_factors, self.user_weight)
        # sum_u w_u sum_j (s_uj + 1)^2 over all M x N pairs, in closed form
        total = ((item_gram * user_gram).sum() + 2.0 * item_sum @ user_sum
                 + self.n_items * self.user_weight.sum())
        total -= self.interaction_term(item_sum, user_gram)
        scores = _pair_scores(user_items, user_factors, item_factors)
        values = user_items.data
        total += (values * (self.alpha * (scores - 1.0) ** 2 - scores)).sum()
        total += self.user_reg(_row_sums(user_items)) @ _squared_norms(user_factors)
        total += self.item_reg * _squared_norms(item_factors).sum()
        return float(total)

    def interaction_term(self, item_sum, weighted_user_gram):
        """sum_u (w_u / N) (sum_j s_uj)^2, subtracted by RGx; zero for RG2."""
        return 0.0


class RGx(RG2):
    """The exact second-order expansion: RG2 minus the interactive term.

    The user step uses the centred Gram G - sigma sigma^T / N; the item step is coupled
    through sigma_Q = sum_j q_j and solved exactly (DESIGN 1.3).
    """

    name = "rgx"

    def user_gram(self, item_factors):
        gram, column_sum = _gram(item_factors)
        return gram - column_sum[:, None] * column_sum[None, :] / self.n_items, column_sum

    def item_coupling(self, weighted_user_gram):
        return weighted_user_gram / self.n_items

    def interaction_term(self, item_sum, weighted_user_gram):
        return float(item_sum @ weighted_user_gram @ item_sum) / self.n_items


class IALS:
    """Weighted squared loss of Hu et al. (2008) with `implicit`'s conventions.

    Confidence alpha * r_ui; a positive one has target 1, a negative one target 0 with
    weight |alpha * r_ui|; unobserved pairs have confidence 1 and target 0; plain
    lam |x|^2 regularisation (reg_exponent does not apply).
    """

    name = "ials"
    allows_negative = True
    default_alpha = 1.0  # implicit's defaults
    default_regularization = 0.01

    def __init__(self, alpha, regularization, reg_exponent, user_items):
        self.alpha = float(alpha)
        self.regularization = float(regularization)

    def pair_weights(self, values):
        confidence = self.alpha * values.astype(np.float64)
        gram = abs(confidence) - 1.0
        return (gram if bool(gram.any()) else None), confidence.clip(0.0, None)

    def _systems(self, others, rows):
        gram, _ = _gram(others)
        pair_gram, pair_rhs = self.pair_weights(rows.data)
        n_rows, d, xp = rows.shape[0], others.shape[1], array_module(others)
        return RowSystems(rows, pair_gram, pair_rhs, others, gram, xp.zeros(d),
                          scale=xp.ones(n_rows), reg=xp.full(n_rows, self.regularization))

    def user_systems(self, item_factors, user_items):
        return self._systems(item_factors, user_items)

    def item_systems(self, user_factors, item_users):
        return self._systems(user_factors, item_users)

    def objective(self, user_factors, item_factors, user_items):
        user_gram, _ = _gram(user_factors)
        item_gram, _ = _gram(item_factors)
        total = (user_gram * item_gram).sum()  # every pair as unobserved: sum s_uj^2
        scores = _pair_scores(user_items, user_factors, item_factors)
        confidence = self.alpha * user_items.data
        target = (confidence > 0).astype(np.float64)
        total += (abs(confidence) * (target - scores) ** 2 - scores ** 2).sum()
        total += self.regularization * float(user_gram.trace() + item_gram.trace())
        return float(total)


LOSSES = {loss.name: loss for loss in (RG2, RGx, IALS)}
