"""Each loss against an independent dense brute force over all M x N pairs (float64)."""

import warnings

import numpy as np
import scipy.sparse as sp
import pytest

from conftest import BruteForce, random_interactions
from rgals.losses import IALS, RG2, RGx, make_loss
from rgals.solve import resolve_solver, solve_rows
from rgals.validation import check_interactions

CASES = [("rg2", 0.0), ("rg2", 0.7), ("rgx", 0.0), ("rgx", 0.7), ("ials", 1.0), ("ials", 2.5)]


def make_problem(rng, name, alpha, d=4, lam=0.05, nu=1.0, **shape):
    user_items = check_interactions(
        random_interactions(rng, negative=name == "ials", **shape),
        allow_negative=name == "ials")
    loss = make_loss(name, alpha=alpha, regularization=lam, reg_exponent=nu).bind(user_items)
    brute = BruteForce(name, user_items, alpha, lam, nu)
    P = rng.standard_normal((user_items.shape[0], d)) * 0.3
    Q = rng.standard_normal((user_items.shape[1], d)) * 0.3
    return user_items, loss, brute, P, Q


@pytest.mark.parametrize("name,alpha", CASES)
@pytest.mark.parametrize("nu", [0.0, 1.0])
def test_objective_matches_brute_force(rng, name, alpha, nu):
    user_items, loss, brute, P, Q = make_problem(rng, name, alpha, nu=nu)
    expected = brute.objective(P, Q)
    assert loss.objective(P, Q, user_items) == pytest.approx(expected, rel=1e-10)


@pytest.mark.parametrize("name,alpha", CASES)
def test_brute_force_gradient_matches_finite_differences(rng, name, alpha):
    """The test's own gradient is right, so 'the gradient vanishes' below means something."""
    _, _, brute, P, Q = make_problem(rng, name, alpha, n_users=6, n_items=5, d=3)
    grad_P, grad_Q = brute.gradients(P, Q)
    step = 1e-6
    for block, gradient, side in ((P, grad_P, 0), (Q, grad_Q, 1)):
        numeric = np.zeros_like(block)
        for index in np.ndindex(block.shape):
            shifted = [P.copy(), Q.copy()]
            shifted[side][index] += step
            up = brute.objective(*shifted)
            shifted[side][index] -= 2 * step
            numeric[index] = (up - brute.objective(*shifted)) / (2 * step)
        np.testing.assert_allclose(gradient, numeric, rtol=1e-6, atol=1e-6)


def relative_gradient(brute, P, Q, side):
    """|dF/dblock| relative to the size of the terms that cancel at the minimum."""
    gradient = brute.gradients(P, Q)[0 if side == "user" else 1]
    _, dscores = brute.loss(np.zeros((P.shape[0], Q.shape[0])))
    scale = np.linalg.norm(dscores @ Q) + np.linalg.norm(dscores.T @ P) + \
        np.linalg.norm(brute.user_reg[:, None] * P) + np.linalg.norm(brute.item_reg[:, None] * Q)
    return np.linalg.norm(gradient) / scale


@pytest.mark.parametrize("name,alpha", CASES)
@pytest.mark.parametrize("solver", ["cholesky", "auto"])
def test_half_steps_minimise_and_satisfy_the_descent_identity(rng, name, alpha, solver):
    user_items, loss, brute, P, Q = make_problem(rng, name, alpha)
    if solver == "auto" and resolve_solver(solver, loss.pairs_in_gram) != "eigen":
        pytest.skip("auto picks the inexact CG here (tested below)")
    item_users = user_items.T.tocsr()
    F = brute.objective(P, Q)
    for _ in range(3):
        for side in ("user", "item"):
            block = P if side == "user" else Q
            before = block.copy()
            if side == "user":
                decrease = solve_rows(loss.user_systems(Q, user_items), P, solver)
            else:
                decrease = solve_rows(loss.item_systems(P, item_users), Q, solver)
            F_after = brute.objective(P, Q)
            # the step is the exact minimiser of its block
            assert relative_gradient(brute, P, Q, side) <= 1e-8
            # descent identity: F_before - F_after = sum dp^T A dp, A the block Hessian / 2
            other = Q if side == "user" else P
            identity = brute.block_decrease(before, block, other, side)
            assert decrease == pytest.approx(identity, rel=1e-8, abs=1e-10 * abs(F))
            assert F - F_after == pytest.approx(decrease, rel=1e-7, abs=1e-10 * abs(F))
            assert F_after <= F + 1e-12 * abs(F)
            F = F_after


@pytest.mark.parametrize("name,alpha", [("rg2", 0.7), ("rgx", 0.7), ("ials", 2.0)])
def test_cg_half_steps_report_their_decrease_and_never_increase_F(rng, name, alpha):
    user_items, loss, brute, P, Q = make_problem(rng, name, alpha)
    item_users = user_items.T.tocsr()
    F = brute.objective(P, Q)
    for _ in range(4):
        for side in ("user", "item"):
            if side == "user":
                decrease = solve_rows(loss.user_systems(Q, user_items), P, "cg", cg_steps=2)
            else:
                decrease = solve_rows(loss.item_systems(P, item_users), Q, "cg", cg_steps=2)
            F_after = brute.objective(P, Q)
            assert decrease >= 0
            assert F - F_after == pytest.approx(decrease, rel=1e-7, abs=1e-10 * abs(F))
            F = F_after


def test_rgx_coupled_item_step_differs_from_uncoupled(rng):
    """The coupling matters: ignoring it would leave a gradient the test above catches."""
    user_items, loss, brute, P, Q = make_problem(rng, "rgx", 0.7)
    systems = loss.item_systems(P, user_items.T.tocsr())
    assert systems.coupling is not None
    uncoupled = Q.copy()
    import dataclasses
    solve_rows(dataclasses.replace(systems, coupling=None), uncoupled, "cholesky")
    assert relative_gradient(brute, P, uncoupled, "item") > 1e-4


@pytest.mark.parametrize("gamma", [0.5, 1.3])
@pytest.mark.parametrize("alpha", [0.0, 0.7])
def test_popularity_prior_objective_and_exact_half_steps_match_brute_force(rng, gamma, alpha):
    user_items = check_interactions(random_interactions(rng))
    loss = RG2(alpha=alpha, regularization=0.05, popularity_exponent=gamma).bind(user_items)
    brute = BruteForce("rg2", user_items, alpha, 0.05, popularity=gamma)
    P = rng.standard_normal((user_items.shape[0], 4)) * 0.3
    Q = rng.standard_normal((user_items.shape[1], 4)) * 0.3
    F = brute.objective(P, Q)
    assert loss.objective(P, Q, user_items) == pytest.approx(F, rel=1e-10)
    item_users = user_items.T.tocsr()
    for _ in range(2):
        for side, block in (("user", P), ("item", Q)):
            before = block.copy()
            systems = (loss.user_systems(Q, user_items) if side == "user"
                       else loss.item_systems(P, item_users))
            decrease = solve_rows(systems, block, "cholesky")
            assert relative_gradient(brute, P, Q, side) <= 1e-8
            other = Q if side == "user" else P
            assert decrease == pytest.approx(brute.block_decrease(before, block, other, side),
                                             rel=1e-8, abs=1e-10 * abs(F))
            F_after = brute.objective(P, Q)
            assert loss.objective(P, Q, user_items) == pytest.approx(F_after, rel=1e-10)
            assert F - F_after == pytest.approx(decrease, rel=1e-7, abs=1e-10 * abs(F))
            F = F_after


def test_popularity_prior_weighs_items_by_their_interactions_and_zero_is_plain_rg2(rng):
    user_items = check_interactions(random_interactions(rng))
    counts = np.asarray(user_items.sum(axis=0)).ravel()
    loss = RG2(popularity_exponent=0.5).bind(user_items)
    expected = counts ** 0.5 * user_items.shape[1] / np.sum(counts ** 0.5)
    np.testing.assert_allclose(loss.item_scale, expected, rtol=1e-12)
    assert loss.item_scale[counts == 0].tolist() == [0.0]  # the item nobody chose
    # an item folded in from its own interactions takes the same scale as in training
    Q = rng.standard_normal((user_items.shape[1], 3))
    P = rng.standard_normal((user_items.shape[0], 3))
    systems = loss.item_systems(P, user_items.T.tocsr())
    np.testing.assert_allclose(systems.scale, expected, rtol=1e-12)
    plain = RG2().bind(user_items)
    assert plain.item_scale is None
    assert RG2(popularity_exponent=0.0).bind(user_items).objective(P, Q, user_items) == \
        plain.objective(P, Q, user_items)
    with pytest.raises(ValueError, match="unknown hyperparameter 'popularity_exponent'"):
        RGx(popularity_exponent=0.5)
    with pytest.raises(ValueError, match="popularity_exponent must be"):
        RG2(popularity_exponent=-1.0)


# -- the loss protocol ---------------------------------------------------------------

@pytest.mark.parametrize("name", ["rg2", "rgx", "ials"])
def test_every_loss_declares_its_hyperparameters_and_domains(name):
    from rgals.losses import LOSSES
    loss_class = LOSSES[name]
    loss = loss_class()
    assert loss.name == name and isinstance(loss_class.allows_negative, bool)
    assert set(loss.get_params()) == set(loss_class.hyperparameters) >= {"alpha",
                                                                         "regularization"}
    for key, declared in loss_class.hyperparameters.items():
        assert getattr(loss, key) == declared.default and declared.doc
        assert declared.kind in ("real", "integer", "choice", "bool")
        if declared.kind == "choice":
            assert declared.default in declared.choices
            with pytest.raises(ValueError, match=f"unknown {key} "):
                loss_class(**{key: "other"})
            continue
        if declared.kind == "bool":
            with pytest.raises(ValueError, match=f"{key} must be True or False"):
                loss_class(**{key: 1})
            continue
        # a number: a searchable range within the valid values
        # None: the option is off, or the data decides it
        assert (declared.optional or declared.from_data) == (declared.default is None)
        assert not (declared.optional and declared.from_data)
        assert declared.default is None or declared.low <= declared.default <= declared.high
        assert declared.minimum <= declared.low < declared.high <= declared.maximum
        assert not declared.log or declared.low > 0
        with pytest.raises(ValueError, match=f"{key} must be a"):
            loss_class(**{key: -1.0})
        with pytest.raises(ValueError, match=f"{key} must be a"):
            loss_class(**{key: float("nan")})
        if declared.kind == "integer":
            with pytest.raises(ValueError, match=f"{key} must be an integer"):
                loss_class(**{key: declared.low + 0.5})
    with pytest.raises(ValueError, match=f"unknown hyperparameter 'beta' for loss '{name}'"):
        loss_class(beta=1.0)


def test_losses_are_built_from_keywords_and_bound_to_data(rng):
    from rgals.losses import RG2, RGx
    loss = RG2(alpha=0.05, regularization=0.01)
    params = loss.get_params()
    assert {key: params[key] for key in ("alpha", "regularization", "reg_exponent",
                                         "top_k")} == {"alpha": 0.05, "regularization": 0.01,
                                                       "reg_exponent": 1.0, "top_k": None}
    assert repr(loss).startswith("RG2(alpha=0.05, regularization=0.01, reg_exponent=1.0, "
                                 "popularity_exponent=0.0, top_k=None")
    assert RG2(top_k=20.0).top_k == 20 and isinstance(RG2(top_k=20.0).top_k, int)
    assert loss == RG2(alpha=0.05, regularization=0.01) and loss != RGx(alpha=0.05,
                                                                        regularization=0.01)
    user_items = check_interactions(random_interactions(rng))
    with pytest.raises(RuntimeError, match="not bound to data"):
        loss.objective(np.zeros((23, 2)), np.zeros((17, 2)), user_items)
    bound = loss.bind(user_items)
    assert bound is not loss and not loss.bound and bound.bound and bound == loss
    np.testing.assert_allclose(bound.user_weight,
                               user_items.toarray().sum(axis=1) / (2 * user_items.shape[1]))


def test_make_loss_from_a_name_an_object_or_a_dict():
    from rgals.losses import IALS, RG2
    assert make_loss("rg2", alpha=0.2, regularization=None, reg_exponent=0.0) == RG2(
        alpha=0.2, reg_exponent=0.0)
    # iALS takes no reg_exponent: the estimator's value does not apply to it
    assert make_loss("ials", alpha=2.0, reg_exponent=1.0) == IALS(alpha=2.0)
    given = RG2(alpha=0.3)
    copy = make_loss(given, alpha=None, regularization=None)
    assert copy == given and copy is not given
    assert make_loss({"name": "ials", "alpha": 4.0}) == IALS(alpha=4.0)
    assert make_loss(RG2(alpha=0.3).to_dict()) == RG2(alpha=0.3)
    with pytest.raises(ValueError, match="alpha was given both"):
        make_loss(given, alpha=0.1)
    # a dict with the estimator's parameters: they fill in what it leaves out
    assert make_loss({"name": "rg2", "popularity_exponent": 0.5}, alpha=0.2,
                     regularization=None) == RG2(alpha=0.2, popularity_exponent=0.5)
    with pytest.raises(ValueError, match="alpha was given both"):
        make_loss({"name": "rg2", "alpha": 0.3}, alpha=0.1)
    with pytest.raises(ValueError, match="unknown hyperparameter 'popularty'"):
        make_loss({"name": "rg2", "popularty": 0.5})  # a typo is never dropped
    with pytest.raises(ValueError, match="unknown loss 'softmax'"):
        make_loss("softmax")


@pytest.mark.parametrize("name,alpha", CASES)
def test_side_statistics_of_row_blocks_add_up(rng, name, alpha):
    from rgals.losses import add_statistics
    _, loss, _, P, Q = make_problem(rng, name, alpha)
    for side, fixed in (("user", Q), ("item", P)):
        whole = loss.side_statistics(side, fixed, slice(0, fixed.shape[0]))
        parts = add_statistics(loss.side_statistics(side, fixed[rows], rows)
                               for rows in (slice(0, 5), slice(5, 9), slice(9, None)))
        assert set(parts) == set(whole)
        for key in whole:
            np.testing.assert_allclose(parts[key], whole[key], rtol=1e-12, atol=1e-14)


@pytest.mark.parametrize("name,alpha", CASES)
def test_objective_magnitude_bounds_the_absolute_terms(rng, name, alpha):
    """The size the monitor measures F's rounding against: at least |F| and at least the
    sum of the absolute values of the dense terms (brute force), within a small factor."""
    user_items, loss, brute, P, Q = make_problem(rng, name, alpha)
    F, size = loss.objective(P, Q, user_items, magnitude=True)
    assert F == pytest.approx(brute.objective(P, Q), rel=1e-10)
    scores = P @ Q.T
    # the dense terms one by one: every pair's part of the loss, then the regularisers
    pair_terms, _ = brute.loss(scores)
    absolute = abs(pair_terms) + brute.user_reg @ np.sum(P * P, axis=1) + \
        brute.item_reg @ np.sum(Q * Q, axis=1)
    assert size >= abs(F) and size >= 0.5 * absolute
    assert size <= 1e3 * (np.sum(scores ** 2) + absolute + P.shape[0] * Q.shape[0])


@pytest.mark.parametrize("alpha, reg_exponent, gamma", [(0.1, 1.0, 0.0), (0.02, 0.5, 0.7)])
def test_collapse_regularization_is_the_dense_threshold(rng, alpha, reg_exponent, gamma):
    """lam* = sigma_max(B_U^-1/2 L B_I^-1/2) / 2, here from a dense SVD of L built
    entry by entry from the linear term of F at zero."""
    from rgals.losses import collapse_regularization

    matrix = sp.random(40, 25, density=0.2, random_state=int(rng.integers(1 << 30)),
                       data_rvs=lambda n: rng.integers(1, 4, n).astype(float), format="csr")
    dense = matrix.toarray()
    n_users, n_items = dense.shape
    sums = dense.sum(axis=1)
    popularity = dense.sum(axis=0) ** gamma
    scale = n_items * popularity / popularity.sum() if gamma else np.ones(n_items)
    linear = np.outer(sums / n_items, scale) - (1 + 2 * alpha) * dense  # d F / d s_uj
    user_base = (sums / 2 + alpha * n_items + 1) ** reg_exponent
    item_base = (sums.sum() / (2 * n_items) + alpha * n_users) ** reg_exponent
    scaled = linear / np.sqrt(user_base)[:, None] / np.sqrt(item_base)
    expected = np.linalg.svd(scaled, compute_uv=False)[0] / 2
    found = collapse_regularization(matrix, alpha, reg_exponent,
                                    scale if gamma else None, steps=500)
    # power iterations stop once sigma moves by less than 1e-6 of itself in a step
    assert found == pytest.approx(expected, rel=1e-4) and found <= expected * (1 + 1e-12)
    # asked only whether it exceeds a level: a lower bound past that level
    early = collapse_regularization(matrix, alpha, reg_exponent, scale if gamma else None,
                                    stop_above=0.5 * expected)
    assert 0.5 * expected <= early <= expected * (1 + 1e-12)


def test_above_the_collapse_threshold_every_factor_goes_to_zero(rng):
    from rgals import ALSSolver
    from rgals.losses import collapse_regularization

    matrix = sp.random(60, 40, density=0.15, random_state=int(rng.integers(1 << 30)),
                       format="csr")
    matrix.data[:] = 1.0
    threshold = collapse_regularization(matrix, 0.1, 1.0)
    sizes = {}
    for fraction in (0.7, 1.1):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            model = ALSSolver(factors=4, alpha=0.1, regularization=fraction * threshold,
                              iterations=60, tol=0.0, solver="cholesky", dtype=np.float64,
                              random_state=1).fit(matrix, show_progress=False)
        sizes[fraction] = np.abs(model.user_factors_).max()
    assert sizes[1.1] < 1e-6 < 1e-2 < sizes[0.7]


def test_rg2_defaults_come_from_the_data(rng):
    from rgals.losses import (ALPHA_ITEMS, COLLAPSE_FRACTION, REGULARIZATION, RGx,
                              collapse_regularization)

    wide = sp.random(50, 3000, density=0.01, random_state=int(rng.integers(1 << 30)),
                     format="csr")
    wide.data[:] = 1.0
    resolved = RG2().resolve(wide)
    assert resolved.alpha == pytest.approx(ALPHA_ITEMS / 3000)
    assert resolved.regularization == min(
        REGULARIZATION, COLLAPSE_FRACTION * collapse_regularization(wide, resolved.alpha, 1.0))
    # values in other units (counts, ratings): lam follows their mean, so the fit does not
    # change with the unit where the cap does not bind (RG2's data terms scale with them)
    for unit in (0.01, 5.0):
        scaled = RG2().resolve(wide * unit)
        assert scaled.regularization < COLLAPSE_FRACTION * collapse_regularization(
            wide * unit, scaled.alpha, 1.0)  # the cap does not bind here
        assert scaled.regularization == pytest.approx(unit * resolved.regularization)
    narrow = wide[:, :40]
    assert RGx().resolve(narrow).alpha == 1.0  # alpha's domain caps 300 / 40
    # given values stay; so does the user's object
    loss = RG2(alpha=0.3)
    assert loss.resolve(wide).alpha == 0.3 and loss.regularization is None
    # a tiny scale of values: the cap follows it (the collapse threshold scales with them)
    assert RG2().resolve(wide * 1e-6).regularization < 1e-6
    assert IALS().resolve(wide).get_params() == IALS().get_params()  # implicit's defaults
