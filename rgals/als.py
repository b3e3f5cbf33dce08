"""ALSSolver: the scikit-learn style estimator with `implicit`'s recommend API."""

from __future__ import annotations

import copy
import dataclasses
import logging
import time
import warnings
from pathlib import Path

import numpy as np

from . import export
from .backend import (_BATCHED, BACKENDS, check_gpu_memory, get_backend, gpu_memory_errors,
                      require_gpu, to_device, to_host)
from .losses import LOSSES, make_loss
from .metrics import parse_metric
from .path import PathStage, path_holdout, regularization_path, uses_path
from .prepared import InteractionTotals, prepare
from .params import Estimator, Parameter, as_given
from .recommender import Recommender
from .solve import SOLVERS
from .threads import kernel_threads
from .training import (MONITOR_LEVELS, EarlyStopping, LocalExecutor, ProgressBar, Tolerance,
                       UserCallback, initial_factors, run)
from .validation import (check_bool, check_choice, check_interactions, check_random_state,
                         check_value_range, random_generator)
from .types import Callback, FilePath, Matrix
from .updates import warm_start_point

log = logging.getLogger("rgals")

DTYPES = (np.dtype(np.float32), np.dtype(np.float64))
CG_TOLERANCE = 0.0  # every CG step runs (bench/RESULTS.md, issue 15: looser measured)


@dataclasses.dataclass
class FitInputs:
    """A fit's training and validation matrices, checked once, with their totals and
    their PreparedData per backend, built on first use: every trial of rgals.tune fits
    on the same ones."""

    user_items: object
    validation: object
    totals: InteractionTotals
    allows_negative: bool = False
    _prepared: dict = dataclasses.field(default_factory=dict)

    @classmethod
    def checked(cls, user_items, validation=None, loss="rg2"):
        """`loss` (a Loss or its name) decides whether negative values are allowed."""
        loss = make_loss(loss) if isinstance(loss, str) else loss
        user_items = check_interactions(user_items, "user_items",
                                        allow_negative=loss.allows_negative,
                                        loss_name=loss.name)
        if validation is not None:
            validation = check_interactions(validation, "validation", allow_negative=True,
                                            shape=user_items.shape)
        return cls(user_items, validation, InteractionTotals.of(user_items),
                   loss.allows_negative)

    def for_loss(self, loss):
        """These inputs, checked again when they were checked for a loss that takes
        negative values and `loss` does not."""
        if self.allows_negative and not loss.allows_negative:
            return FitInputs.checked(self.user_items, self.validation, loss)
        return self

    def prepared(self, backend):
        if backend.name not in self._prepared:
            self._prepared[backend.name] = prepare(self.user_items, backend)
        return self._prepared[backend.name]


def _check_dtype(value, name):
    try:
        dtype = np.dtype(value)
    except TypeError:
        dtype = None
    # np.dtype(None) is float64: None is not a dtype here
    if value is None or dtype is None or dtype not in DTYPES:
        raise ValueError(f"{name} must be np.float32 or np.float64; got {value!r}")
    return dtype


def _check_backend(value, name):
    # "_batched" (NumPy running the GPU's kernels) is private, for tests
    return value if value == _BATCHED else check_choice(value, name, BACKENDS)


def _check_metric(value, name):
    return parse_metric(value)


PARAMETERS = {
    "factors": Parameter(64, "embedding dimension d", kind="integer", minimum=1,
                         cli="--factors", tunable=True),
    "loss": Parameter(
        "rg2", "the loss", kind="choice", choices=tuple(LOSSES), convert=as_given,
        cli="--loss", type_doc='{"rg2", "rgx", "ials"} or a rgals.losses.Loss',
        details='"rg2" and "rgx" are second-order expansions of the softmax ranking loss '
                '(rgx keeps the interactive term exactly); "ials" is the weighted squared '
                "loss of `implicit`. A loss object such as `rgals.losses.RG2(alpha=0.05)` "
                "carries its own hyperparameters (then leave alpha, regularization and "
                "reg_exponent at None); it gives the same model as the name with the same "
                "values."),
    "alpha": Parameter(
        None, "the weight of the observed pairs' squared term", optional=True,
        convert=as_given, cli="--alpha",
        details="RG2/RGx: the extra squared term on observed pairs (0 turns it off and "
                "enables the fast path); alpha N weighs a positive's squared term "
                "against an unobserved item's. iALS: the confidence scale, as in `implicit`. "
                "None: RG2/RGx derive it from the data, 300 / N within [1e-4, 1]; iALS "
                "takes 1.0."),
    "regularization": Parameter(
        None, "the regularization lam > 0", optional=True, convert=as_given,
        cli="--regularization",
        details="RG2/RGx: lambda_u = lam (n_u/2 + alpha N + 1)^nu and lambda_i = lam "
                "(sum_u w_u + alpha M)^nu; iALS: plain lam. None: RG2/RGx choose it on a "
                "short path inside the fit (`rgals.path`): from 0.01 times the mean stored "
                "value (1 for binary data, capped at a quarter of the value above which "
                "every factor collapses to zero: `rgals.losses.collapse_regularization`), "
                "lam is divided by 3 every 3 warm-started sweeps while the NDCG@20 of a "
                "holdout (10% of the interactions of up to 3,000 users) improves by more "
                "than 1%; when the first step down loses, lam is doubled instead while it "
                "gains, below half the collapse value; then, when a neighbour of the "
                "best lam scored within 5% of it, the lam halfway between them is tried "
                "(a step up or between that loses is dropped); "
                "the remaining sweeps fit all the data at the best lam. The path "
                "needs iterations >= 11 and 100 users with two interactions or more; "
                "otherwise lam stays at its start. iALS takes 0.01. The values used are in "
                "`loss_` after the fit, the path in `regularization_path_`. "
                "bench/RESULTS.md compares these defaults with 20 tuned trials on the "
                "shared datasets; `rgals.tune` searches further."),
    "reg_exponent": Parameter(
        None, "the exponent nu >= 0 of the regularization's counts", optional=True,
        convert=as_given, cli="--reg-exponent",
        details="0 gives a constant lam; None: 1.0; iALS has no such parameter and "
                "ignores it."),
    "iterations": Parameter(15, "sweeps (a user half step then an item half step)",
                            kind="integer", minimum=1, cli="--iterations"),
    "solver": Parameter(
        "auto", "how each row's system is solved", kind="choice", choices=SOLVERS,
        cli="--solver", tunable=True,
        details='"cholesky" solves every row exactly; "cg" runs at most `cg_steps` '
                "warm-started conjugate-gradient steps per row in the eigenbasis of the "
                'shared Gram matrix; "auto" uses the exact O(d^2)-per-row eigenbasis path '
                "when no pair carries a Gram weight (alpha = 0 for RG2/RGx, unit "
                'confidences for iALS) and "cg" otherwise.'),
    "cg_steps": Parameter(3, "conjugate-gradient steps per row and half step, at the most",
                          kind="integer", minimum=1, cli="--cg-steps", tunable=True),
    "cg_tolerance": Parameter(
        CG_TOLERANCE, "a row's CG stops once its residual |b - A x| is at most this "
        "fraction of |b| (0: only at the dtype's rounding)", cli="--cg-tolerance",
        tunable=True,
        details="Rows that the warm start left close to their minimiser then skip steps: at "
                "1e-2 a Gowalla fit's solves took about 40% less time with the same "
                "validation NDCG@20, but Electronic lost 1.2% (bench/RESULTS.md), and "
                "`recalculate_user` gives a training user back its fitted factors only to "
                "about that tolerance."),
    "dtype": Parameter(
        DTYPES[0], "the factors' float type (sums are in float64)", kind="choice",
        choices=tuple(dtype.name for dtype in DTYPES), convert=_check_dtype, cli="--dtype",
        type_doc="numpy float dtype",
        details="np.float32 (default) or np.float64."),
    "backend": Parameter(
        "cpu", "where the fit runs", kind="choice", choices=BACKENDS, convert=_check_backend,
        cli="--backend",
        details='"cpu" (Numba kernels) or "gpu" (CuPy on a CUDA device; needs `pip install '
                "'rgals[gpu]'` for a CUDA 12 driver, `'rgals[gpu-cuda13]'` for CUDA 13). "
                "Both give the same model from the same seed. With \"gpu\" "
                "the learned factors stay on the device as CuPy arrays (as in `implicit`'s "
                "GPU models); `to_cpu()` returns a NumPy copy of the model, `to_gpu()` the "
                "reverse."),
    "num_threads": Parameter(
        0, "threads for the kernels during fit (0: every core)", kind="integer", cli="--threads",
        machine=True,
        details="BLAS runs on one thread meanwhile, so that its idle workers do not compete "
                "with the kernels."),
    "random_state": Parameter(
        None, "seed of the initial factors (and of the softmax-loss user sample)",
        kind="integer", optional=True, convert=check_random_state, cli="--seed",
        cli_default=0, type_doc="None, int or numpy Generator / RandomState"),
    "tol": Parameter(
        1e-4, "stop once a sweep decreases the objective by less than tol * |F| (0: run "
        "every sweep)", cli="--tol", details="`iterations` is then the most sweeps the fit "
        "runs."),
    "early_stopping": Parameter(
        False, "stop when the validation metric has not improved for `patience` "
        "evaluations, and keep the factors of the best evaluation", kind="bool",
        details="Needs `fit(..., validation=...)`; `rgals fit --early-stopping` holds out "
                "a validation split of the training file for it."),
    "patience": Parameter(3, "evaluations without improvement before early stopping",
                          kind="integer", minimum=1, cli="--patience",
                          cli_group="validation and early stopping"),
    "validation_metric": Parameter(
        "ndcg@20", "the validation metric, \"<metric>@<K>\"", kind="text",
        convert=_check_metric, cli="--validation-metric",
        cli_group="validation and early stopping", type_doc="str",
        details="A metric of rgals.metrics.METRICS, e.g. \"ndcg@20\": shown on the "
                "progress bar and used by early stopping; Recall at the same K is recorded "
                "too."),
    "eval_every": Parameter(
        1, "sweeps between evaluations of the validation metric and the softmax loss",
        kind="integer", minimum=1, cli="--eval-every",
        cli_group="validation and early stopping",
        details="The last sweep is always evaluated."),
    "softmax_users": Parameter(
        0, "users on whom the monitor evaluates the exact softmax loss (0: off)",
        kind="integer", cli="--softmax-users",
        details="Sampled once per fit; RG2/RGx approximate that loss, and each evaluation "
                "costs users x items scores."),
    "monitor": Parameter(
        "sweep", "what the convergence monitor costs", kind="choice", choices=MONITOR_LEVELS,
        cli="--monitor",
        details='"sweep": F carried from the solvers\' decreases, measured exactly on '
                "evaluation sweeps and at the end (where the descent identity is checked); "
                '"full": exact F and the identity check after every half step (tests, '
                "debugging; a fit pays for an objective per half step)."),
}
# the estimator's parameters that make_loss turns, with `loss`, into the loss object
LOSS_PARAMETERS = ("alpha", "regularization", "reg_exponent")


class ALSSolver(Recommender, Estimator):
    """Matrix factorization for ranking, fitted by alternating least squares.

    Parameters
    ----------
    {parameters}

    Attributes
    ----------
    user_factors_, item_factors_ : arrays (users x factors, items x factors)
        The embeddings; NumPy, or CuPy with backend="gpu". Scores are their inner
        products. `user_factors` / `item_factors` are aliases, as in `implicit`.
    previous_item_factors_ : array (items x factors) or None
        The item factors the user factors were solved against: those of the sweep before
        the last (a sweep solves the users, then the items). `recalculate_user` solves
        against them, so that a user folded in gets the factors the fit gave a user with
        the same interactions (against the final item factors they would differ by as
        much as the last sweep moved, and rank worse on validation data). None for a
        model loaded from a file without them: fold-in then uses `item_factors_`.
    user_items_ : scipy.sparse.csr_matrix or None
        The training interactions, checked and canonical: the rows `recommend` filters
        and `recalculate_user=True` folds in when no `user_items` is given. None for a
        model saved without them (`save(..., interactions=False)`) or read from
        `implicit`'s file: then pass `user_items` to those calls.
    interaction_totals_ : rgals.prepared.InteractionTotals
        Each user's and item's count and sum of training values: the losses' constants,
        the users and items without interactions and the popularity fallback. Kept by
        every save; unknown (its fields None) for a model from `implicit`'s file, which
        then has no popularity fallback.
    loss_ : rgals.losses.Loss
        The fitted loss with its hyperparameters, bound to the training data; fold-in,
        `save` and `load` use it.
    monitor_ : rgals.ConvergenceMonitor
        Objective, descent-identity checks, observed and bounded convergence rates,
        seconds and validation metrics of every half step: those after the path's sweeps
        when the fit chose the regularization (the path fits other objectives, one per
        lam), numbered from the fit's first sweep.
    regularization_path_ : list of rgals.path.PathStage or None
        The lam of each stage of the path, the sweeps run by its end and the holdout's
        NDCG@20; None when the fit did not choose lam (given, iALS, or no room).
    """

    parameters = PARAMETERS

    def checked_params(self) -> dict:
        """The parameters as a fit uses them (the loss resolved to an object, the dtype a
        numpy dtype, ...), each checked: a bad one raises ValueError or TypeError saying
        how to fix it. The attributes themselves stay as the user set them; `fit` calls
        this first, and a caller may, to refuse bad parameters before reading data."""
        params = self.checked_values()
        params["loss"] = make_loss(params["loss"], **{name: params.pop(name)
                                                      for name in LOSS_PARAMETERS})
        self._check_device(params)
        return params

    def _check_device(self, params):
        """A GPU fit needs CuPy and a device here (a clear error otherwise)."""
        if params["backend"] == "gpu":
            require_gpu()

    # -- fitting -----------------------------------------------------------------------

    def fit(self, user_items: Matrix | FitInputs, show_progress: bool = True,
            callback: Callback | None = None, validation: Matrix | None = None,
            warm_start: bool = False) -> ALSSolver:
        """Fit the factors to `user_items` (users x items, values = confidence weights).

        Accepts any scipy.sparse matrix or array (a dense ndarray is converted, with a
        warning), or `FitInputs` prepared once for several fits (the training and
        validation matrices checked, their totals, the prepared data per backend:
        rgals.tune's trials share one; then `validation` stays None). `validation`: a
        users x items matrix of held-out interactions, scored every `eval_every` sweeps
        with `validation_metric` (and Recall at the same K), training items masked;
        needed for `early_stopping`. `callback(iteration, elapsed,
        record)` runs after each sweep with the sweep's monitor record (objective,
        decreases, rate, rate bound, seconds, validation metrics); returning False stops
        the fit. When the fit chooses lam on its path (see `regularization`), the
        callback and the validation data start after the path: its first iteration is
        the number of sweeps the path ran. The whole record is in `monitor_` afterwards.

        warm_start=True continues a fitted model on `user_items`, the training data with
        new interactions (scikit-learn's warm start): existing users and items keep their
        rows and factors, new ones (rows and columns appended) start as a fresh fit would
        start them, the loss is bound to the new data with the hyperparameters the fitted
        loss resolved (the regularization its path chose), and `iterations` more sweeps
        run, recorded in `monitor_` as a new segment after the earlier ones. On an
        unfitted model it is a fresh fit. Returns self.
        """
        params = self.checked_params()
        if isinstance(user_items, FitInputs):
            if validation is not None:
                raise ValueError("FitInputs hold the validation matrix already: pass "
                                 "validation= to FitInputs.checked, not to fit")
            inputs = user_items.for_loss(params["loss"])
        else:
            inputs = FitInputs.checked(user_items, validation, params["loss"])
        warm = None
        if check_bool(warm_start, "warm_start") and getattr(self, "item_factors_", None) \
                is not None:
            warm = warm_start_point(self, params, inputs.user_items.shape)
        return self._fit(params, inputs, show_progress, callback, warm)

    def _fit(self, params, inputs, show_progress=True, callback=None, warm=None):
        """`fit` on FitInputs checked for this loss (once, and prepared once per backend:
        rgals.tune's trials share them); `warm`: what rgals.updates.warm_start_point gives."""
        started = time.perf_counter()
        user_items = inputs.user_items
        backend = get_backend(params["backend"])
        if backend.on_device:
            check_gpu_memory(*user_items.shape, user_items.nnz, params["factors"],
                             params["dtype"], top_k=getattr(params["loss"], "top_k", None))
        with gpu_memory_errors("fit"), kernel_threads(params["num_threads"]):
            # the totals of the checked inputs: every trial of tune shares them
            executor = LocalExecutor(inputs.prepared(backend), {}, solver=params["solver"],
                                     cg_steps=params["cg_steps"],
                                     cg_tolerance=params["cg_tolerance"],
                                     totals=inputs.totals)
            spec, monitor, path = self._train(params, executor, inputs.validation,
                                              show_progress, callback, started, warm=warm)
        factors = executor.factors
        _warn_if_collapsed(factors["user"], factors["item"], spec)
        self.user_factors_ = factors["user"]
        self.item_factors_ = factors["item"]
        self.previous_item_factors_ = factors["previous"]
        self.user_items_ = user_items
        self.interaction_totals_ = inputs.totals
        # bound afresh on the host: fold-in needs no device and no per-sweep state
        self.loss_ = spec.bind(self.interaction_totals_)
        self.monitor_ = monitor
        return self

    def _train(self, params, executor, validation, show_progress, callback, started, *,
               callbacks=(), resumed=None, draw_on_workers=False, warm=None):
        """The fit on an executor (rgals.training.LocalExecutor, or rgals.dask's): the
        data-decided hyperparameters, the initial factors, the regularization path and
        the sweeps. Returns (the loss's resolved spec, the monitor, the path's stages or
        None). The random draws come in one order whatever the executor: the initial
        factors (users, then items), the softmax sample, the path's holdout.

        callbacks: more Callbacks (the Dask mode's checkpoints). resumed: (sweep,
        factors, reweighting state, what the fit resolved) of a checkpoint to go on from.
        draw_on_workers: the executor draws the initial factors per block from a seed
        instead (data beyond one process). warm: (sweeps done, (user, item) factors, the
        monitor) of a warm start: the factors replace the first rows of the initial ones,
        `iterations` more sweeps run and the monitor goes on with a new segment."""
        totals = executor.totals
        # the hyperparameters the data decides
        spec = params["loss"].resolve(executor.operator, totals)
        # the largest pair weight per unit of value: (alpha + 1/2) c for RG2, alpha c iALS
        alpha = getattr(spec, "alpha", None)
        check_value_range(totals.value_range, params["dtype"],
                          max(1.0, (alpha or 0.0) + 0.5),
                          weight_name=None if alpha is None else f"alpha={alpha:g}")
        if validation is None and params["early_stopping"]:
            raise ValueError("early_stopping=True needs validation data: pass "
                             "fit(user_items, validation=held_out), e.g. from "
                             "rgals.data.validation_split(user_items)")
        rng = random_generator(self.random_state)
        # one bar for the fit, the regularization path's sweeps included
        progress = ProgressBar(params["iterations"], show_progress, f"rgals {spec.name}")
        n_users, n_items = executor.shape
        if draw_on_workers:
            executor.draw(int(rng.integers(2 ** 63)), params["factors"])
        else:  # the same start on every backend and executor, drawn on the host
            starts = [initial_factors(rng, rows, params["factors"], params["dtype"])
                      for rows in (n_users, n_items)]
            for start, fitted in zip(starts, () if warm is None else warm[1]):
                start[:fitted.shape[0]] = fitted
            executor.place(*starts)
        softmax_users = np.sort(rng.choice(n_users, min(params["softmax_users"], n_users),
                                           replace=False))
        identity_tolerance = 1e-9 if params["dtype"] == np.float64 else 1e-5
        path_sweeps, path = 0, None
        if resumed is not None:
            done, factors, reweighting, resolved = resumed
            executor.factors.update(factors)
            # the lam the fit chose (its path's, not the rule's that resolve just set)
            if resolved is not None and params["loss"].regularization is None:
                spec = copy.copy(spec)
                spec.regularization = resolved["regularization"]
            if resolved is not None and resolved["path"] is not None:
                path = [PathStage(*stage) for stage in resolved["path"]]
                path_sweeps = path[-1].sweeps
        elif uses_path(params["loss"], params["iterations"]):
            holdout = path_holdout(totals.user_counts, executor.rows, rng)
            if holdout is not None:
                held, users = holdout
                regularization, path_sweeps, path = regularization_path(
                    spec, executor.without(held), held, users, params["iterations"],
                    identity_tolerance=identity_tolerance, progress=progress)
                spec = copy.copy(spec)
                spec.regularization = regularization
        if warm is None:  # a warm start keeps the path that chose its lam
            self.regularization_path_ = path
        executor.start(executor.bind(spec))
        first_sweep = path_sweeps + 1
        sweeps = params["iterations"] - path_sweeps
        if warm is not None:
            first_sweep, sweeps = warm[0] + 1, params["iterations"]
        if resumed is not None:
            first_sweep = done + 1
            sweeps = params["iterations"] - done
            if reweighting is not None:
                executor.restore_reweighting(*reweighting)
        callbacks = [progress, Tolerance(params["tol"]), *callbacks]
        if params["early_stopping"]:
            callbacks.append(EarlyStopping(params["patience"]))
        if callback is not None:
            callbacks.append(UserCallback(callback))
        monitor = run(executor, sweeps,
                      monitor=params["monitor"], tol=params["tol"],
                      identity_tolerance=identity_tolerance, eval_every=params["eval_every"],
                      validation=validation, metric=params["validation_metric"],
                      softmax_users=softmax_users, callbacks=callbacks,
                      first_sweep=first_sweep, started=started,
                      history=None if warm is None else warm[2])
        return spec, monitor, path

    # -- save, load, devices ----------------------------------------------------------

    def save(self, path: FilePath, overwrite: bool = False, interactions: bool = True) -> None:
        """Write the model to a directory, to one `.npz` file, or to an open binary file.

        A directory gets user_factors.npy, item_factors.npy, previous_item_factors.npy
        (what fold-in solves against), user_items.npz (the training matrix: 1.9 MB on
        Gowalla) and params.json, written last. A path ending in ".npz", or a file
        object, gets one `.npz` with the same arrays under the keys `implicit` uses
        (user_factors, item_factors, factors, dtype, ... and, for loss="ials", alpha and
        regularization), so that `implicit`'s `AlternatingLeastSquares.load` reads it.

        interactions=False leaves the training matrix out and keeps only its totals
        (each user's and item's count and sum): the loaded model ranks, folds in and
        falls back to popularity as before, but `recommend` and `recalculate_user` then
        need the `user_items` rows passed in, as in `implicit`. Files are written to a
        temporary name and renamed; existing ones are kept unless `overwrite=True`.
        """
        self._check_fitted()
        check_bool(interactions, "interactions")
        export.save(self, path, overwrite=overwrite, interactions=interactions)

    @classmethod
    def load(cls, path: FilePath, backend: str | None = None) -> ALSSolver:
        """A fitted model from what `save` wrote (also `rgals.load`): a directory, an
        `.npz` file or an open file; also an `.npz` of `implicit`'s ALS (`model.save`),
        read as an iALS model with its hyperparameters and no training data.

        backend: "cpu" or "gpu" for the loaded model; None keeps the one it was fitted
        with (a model fitted on a GPU then needs CuPy and a device: pass backend="cpu" to
        use it without).
        """
        saved = export.read(path)
        params = saved.params
        if backend is not None:
            params = {**params, "backend": check_choice(backend, "backend", BACKENDS)}
        unknown = sorted(set(params) - set(cls.parameters))
        model = cls(**{name: value for name, value in params.items() if name not in unknown})
        where = path if hasattr(path, "read") or str(path).endswith(".npz") else \
            Path(path) / export.MARKER
        try:
            if unknown:
                raise ValueError(f"unknown parameter {unknown[0]!r}")
            model.checked_params()
        except (ValueError, TypeError) as error:
            raise ValueError(f"{where} does not describe an ALSSolver: {error}") from error
        model.user_factors_, model.item_factors_ = saved.user_factors, saved.item_factors
        model.previous_item_factors_ = saved.previous_item_factors
        model.user_items_ = saved.user_items
        model.interaction_totals_ = saved.totals
        try:
            model.loss_ = make_loss(saved.loss).bind(saved.totals)
        except (ValueError, FloatingPointError) as error:
            raise ValueError(f"{where} holds a fitted loss that cannot serve this model: "
                             f"{error}") from error
        _warn_if_collapsed(model.user_factors_, model.item_factors_, model.loss_)
        return model.to_gpu() if model.backend == "gpu" else model

    # -- moving between backends -------------------------------------------------------

    def to_cpu(self) -> ALSSolver:
        """A copy of this fitted model with backend="cpu" and NumPy factors."""
        return self._copy_to("cpu", to_host)

    def to_gpu(self) -> ALSSolver:
        """A copy of this fitted model with backend="gpu" and CuPy factors."""
        require_gpu()
        return self._copy_to("gpu", to_device)

    def _copy_to(self, backend, move):
        self._check_fitted()
        model = ALSSolver(**{**self.get_params(), "backend": backend})
        for name in ("user_factors_", "item_factors_", "previous_item_factors_"):
            array = getattr(self, name, None)
            if array is not None:
                moved = move(array)  # a copy when it crosses devices, the array if not
                array = moved.copy() if moved is array else moved
            setattr(model, name, array)
        model.user_items_ = self.user_items_
        model.interaction_totals_ = self.interaction_totals_
        model.loss_ = self.loss_
        if hasattr(self, "monitor_"):
            model.monitor_ = self.monitor_
        return model


def _warn_if_collapsed(user_factors, item_factors, loss):
    largest = max(float(abs(user_factors).max()), float(abs(item_factors).max()))
    if largest < 1e-6:
        warnings.warn(
            f"every factor shrank to about zero (largest {largest:.2g}): the regularization "
            f"({loss.regularization}) outweighs the data, and zero is a stable point of "
            "this loss. Lower `regularization` (or raise alpha) and check on validation data",
            RuntimeWarning, stacklevel=3)
