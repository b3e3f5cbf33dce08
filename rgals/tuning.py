"""rgals.tune: hyperparameters searched on validation data, never on test data.

Every trial fits an ALSSolver on the same checked and prepared training part
(`FitInputs`) and scores the validation part after every sweep; a trial's value is its
best validation metric, and the sweep of that best becomes the setting's `iterations`.
With Optuna installed (`pip install 'rgals[tune]'`) the search is TPE, with a median
pruner fed the validation metric after each sweep; without it, a seeded random search
over the same domains. Trial 0 is the estimator's own default setting.
"""

from __future__ import annotations

import dataclasses
import importlib.util
import math
import numbers
import time
import warnings

import numpy as np

from .als import ALSSolver, FitInputs
from .metrics import parse_metric
from .data import validation_split
from .losses import Loss, make_loss
from .params import Hyperparameter
from .validation import check_interactions
from .types import Matrix

SEARCHES = ("auto", "optuna", "random")
# the estimator's parameters a space may search (declared tunable; without declared
# ranges: give them), by name
ESTIMATOR_SPACE = {name: declared for name, declared in ALSSolver.parameters.items()
                   if declared.tunable}
# what tune itself decides for every trial
CONTROLLED = ("iterations", "tol", "early_stopping", "patience", "validation_metric",
              "eval_every", "random_state")
# parameters that do not change the model (left out of best_params)
MACHINE = tuple(name for name, declared in ALSSolver.parameters.items() if declared.machine)


@dataclasses.dataclass
class Trial:
    """One setting tried: `params` are the searched values; `state` "complete",
    "pruned" (stopped by the pruner) or "failed" (`error` says why); `value` the best
    validation metric it reached (NaN when failed) after `best_sweep` of `sweeps`;
    `seconds` its wall time; `curve` per evaluated sweep [sweep, training seconds so far
    (half steps, after the wall time of the regularization path where the fit ran one),
    metric, Recall at the same K]. `defaults`: trial 0, the estimator's
    defaults; its `params` are the values they resolved to on the data (the
    regularization the path chose, rgals.path), and `TuneResult.params_of` gives the
    defaults themselves, so that a refit chooses again on its own data."""

    number: int
    params: dict
    state: str
    value: float
    best_sweep: int
    sweeps: int
    seconds: float
    error: str = ""
    curve: list = dataclasses.field(default_factory=list)
    defaults: bool = False


@dataclasses.dataclass
class TuneResult:
    """`best_params`: ALSSolver keyword arguments (the fixed ones, the best searched
    values, its best sweep as `iterations`, tol 0 and the seed) that refit the best
    setting; `trials`: every Trial; `model`: the refitted ALSSolver (refit=True)."""

    best_params: dict
    best_value: float
    metric: str
    trials: list
    search: str
    seconds: float
    log_scale: dict = dataclasses.field(default_factory=dict)  # searched name -> log axis
    fixed: dict = dataclasses.field(default_factory=dict)  # the fixed ALSSolver parameters
    model: object = None
    stopped: str = "trials"  # what ended the search: "trials", "timeout" or "interrupted"

    def best_trial(self):
        """The Trial whose setting best_params holds."""
        return _best(self.trials)

    def params_of(self, trial):
        """ALSSolver keyword arguments of a trial's setting: the fixed parameters (those
        that change the model) and its searched values, a loss's inside `loss`."""
        fixed = {name: value for name, value in self.fixed.items() if name not in MACHINE}
        if "dtype" in fixed:
            fixed["dtype"] = np.dtype(fixed["dtype"]).name  # JSON-ready
        model = ALSSolver(**fixed)
        searched = {} if trial.defaults else trial.params
        _set_searched(model, searched)
        return {name: _plain(value) for name, value in model.get_params().items()
                if name in fixed or name in searched or name == "loss"}

    def table(self) -> str:
        """The trials as a Markdown table."""
        names = sorted({name for trial in self.trials for name in trial.params})
        lines = ["| trial | state | " + " | ".join(names) + f" | validation {self.metric} | "
                 "best sweep | sweeps | seconds |",
                 "|---" * (len(names) + 6) + "|"]
        for trial in self.trials:
            values = [_format(trial.params.get(name, "default")) for name in names]
            state = trial.state + (f" ({trial.error})" if trial.error else "")
            lines.append(f"| {trial.number} | {state} | " + " | ".join(values) +
                         f" | {trial.value:.4f} | {trial.best_sweep} | {trial.sweeps} | "
                         f"{trial.seconds:.1f} |")
        return "\n".join(lines)

    def plot(self, path):
        """A PNG of the search: the metric per trial with the best so far, and the metric
        against each numeric searched parameter (needs matplotlib)."""
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        numeric = [name for name in self.log_scale
                   if any(isinstance(trial.params.get(name), (int, float)) and
                          not isinstance(trial.params.get(name), bool)
                          for trial in self.trials)]
        figure, axes = plt.subplots(1, 1 + len(numeric), figsize=(4.2 * (1 + len(numeric)), 3.6),
                                    squeeze=False)
        axes = axes[0]
        colours = {"complete": "tab:blue", "pruned": "tab:orange"}
        shown = [trial for trial in self.trials if trial.state in colours]
        for state, colour in colours.items():
            points = [(trial.number, trial.value) for trial in shown if trial.state == state]
            if points:
                axes[0].scatter(*zip(*points), s=14, color=colour, label=state)
        running, best = [], -math.inf
        for trial in self.trials:
            if trial.state == "complete":
                best = max(best, trial.value)
            running.append(best)
        axes[0].step(range(len(running)), running, where="post", color="black", lw=1,
                     label="best so far")
        axes[0].set_xlabel("trial")
        axes[0].set_ylabel(f"validation {self.metric}")
        axes[0].legend(fontsize=7)
        for axis, name in zip(axes[1:], numeric):
            for state, colour in colours.items():
                points = [(trial.params[name], trial.value) for trial in shown
                          if trial.state == state and name in trial.params]
                if points:
                    axis.scatter(*zip(*points), s=14, color=colour)
            if self.log_scale[name]:
                axis.set_xscale("log")
            axis.set_xlabel(name)
        figure.suptitle(f"rgals tune: {len(self.trials)} trials ({self.search} search)",
                        fontsize=9)
        figure.tight_layout()
        figure.savefig(path, dpi=110)
        plt.close(figure)

    def to_dict(self) -> dict:
        """JSON-ready: what `rgals tune` writes to best_params.json."""
        return {"params": self.best_params, "metric": self.metric,
                "validation": self.best_value, "search": self.search,
                "seconds": self.seconds, "stopped": self.stopped,
                "trials": [dataclasses.asdict(trial) for trial in self.trials]}


def tune(user_items: Matrix, n_trials: int = 20, timeout: float | None = None,
         metric: str = "ndcg@20", space: dict | None = None, validation: Matrix | None = None,
         random_state: int | None = 0, refit: bool = True, *, max_sweeps: int = 30,
         patience: int = 5, search: str = "auto", show_progress: bool = True,
         **params) -> TuneResult:
    """Search ALSSolver settings on validation data; returns a TuneResult.

    user_items: the training interactions (users x items). validation: held-out
    interactions to score; None holds out 10% of each user's interactions
    (rgals.data.validation_split, seeded by `random_state`) and fits on the rest.
    n_trials / timeout: the search stops after that many trials or once `timeout`
    seconds have passed (a running trial finishes; the first always runs); give at
    least one.
    metric: "<metric>@<K>" of rgals.metrics, training items masked. space: None (the
    loss's declared domains marked `searched`: alpha and regularization), a list of
    hyperparameter names (their declared domains), or a dict name -> (low, high),
    (low, high, "log"), a list of choices or a rgals.losses.Hyperparameter; the
    estimator's factors, cg_steps, cg_tolerance and solver may be searched too, given
    with their ranges. params: fixed ALSSolver parameters (loss, factors, backend,
    num_threads, ...). A trial runs at most `max_sweeps` sweeps and stops after
    `patience` sweeps without a better metric; one that diverges or collapses to zero
    is recorded as failed. random_state seeds the split, the search and every fit
    (the same seed gives the same trials). refit: fit `best_params` on all of
    user_items and return it as `model`. search: "auto" (Optuna when installed),
    "optuna" or "random".
    """
    started = time.perf_counter()
    blocked = sorted(set(params) & set(CONTROLLED))
    if blocked:
        raise ValueError(f"tune sets {', '.join(blocked)} itself (max_sweeps, patience, "
                         "metric and random_state control them); leave them out")
    _check_count(n_trials, timeout)
    if not isinstance(random_state, (int, np.integer)) or isinstance(random_state, bool):
        raise ValueError(f"random_state must be an integer seed; got {random_state!r}")
    name, k = parse_metric(metric)
    metric = f"{name}@{k}"
    template = ALSSolver(**params)  # an unknown parameter is its TypeError
    template.set_params(iterations=max_sweeps, tol=0.0, early_stopping=True,
                        patience=patience, validation_metric=metric, eval_every=1,
                        random_state=random_state)
    base = template.checked_params()  # a bad fixed parameter fails here, not per trial
    dimensions = search_space(params.get("loss", "rg2"), space)
    if isinstance(params.get("loss"), Loss) and set(dimensions) - set(ESTIMATOR_SPACE):
        raise ValueError("a Loss object fixes its hyperparameters: to search them, give the "
                         "loss by name (loss='rg2') or as a dict")
    both = sorted(name for name in dimensions if params.get(name) is not None)
    if both:
        raise ValueError(f"{both[0]} is both fixed (given as a parameter) and searched; "
                         "leave it out of one")
    search = _resolve_search(search)

    user_items = check_interactions(user_items, "user_items",
                                    allow_negative=base["loss"].allows_negative,
                                    loss_name=base["loss"].name)
    if validation is None:
        fit_part, validation = validation_split(user_items, ratio=0.1, seed=int(random_state))
    else:
        fit_part = user_items
    inputs = FitInputs.checked(fit_part, validation, base["loss"])
    _check_held_out(inputs.validation, inputs.user_items)
    searcher = (_OptunaSearch if search == "optuna" else _RandomSearch)(
        dimensions, int(random_state))
    trials, stopped = [], "trials"
    progress = _progress(n_trials, show_progress)
    try:
        # the first trial (the defaults) always runs
        while not trials or n_trials is None or len(trials) < n_trials:
            if trials and timeout is not None and time.perf_counter() - started >= timeout:
                stopped = "timeout"
                break
            proposal = {} if not trials else searcher.propose()
            trial = _run_trial(len(trials), template, proposal, inputs, searcher)
            if not trials:  # the defaults: record and tell the search what they are
                trial.record.params = _resolved(trial.model, dimensions)
                trial.record.defaults = True
                searcher.add_default(trial)
            trials.append(trial.record)
            progress.update(1)
            best = _best(trials)
            if best is not None:
                progress.set_postfix_str(f"best {metric} {best.value:.4f} (trial {best.number})")
    except KeyboardInterrupt:  # Ctrl-C: the trials completed so far are the result
        if _best(trials) is None:
            raise
        stopped, refit = "interrupted", False
    finally:
        progress.close()
    best = _best(trials)
    if best is None:
        raise RuntimeError(
            "every trial failed: " + "; ".join(f"trial {trial.number}: {trial.error}"
                                               for trial in trials[:3])
            + ". Check the data and narrow the space (e.g. a smaller regularization range)")
    result = TuneResult({}, best.value, metric, trials, search, time.perf_counter() - started,
                        {name: domain.log for name, domain in dimensions.items()}, params,
                        stopped=stopped)
    result.best_params = {**result.params_of(best), "iterations": max(best.best_sweep, 1),
                          "tol": 0.0, "random_state": int(random_state)}
    if refit:
        model = ALSSolver(**result.best_params, **{name: params[name] for name in MACHINE
                                                   if name in params})
        model.fit(user_items, show_progress=False)
        result.model = model
    result.seconds = time.perf_counter() - started
    return result


def _check_held_out(validation, fit_part):
    """Refuse validation data that is all training pairs (every trial would score 0: the
    metrics mask training items), and warn when part of it is."""
    shared = validation.multiply(fit_part != 0).nnz
    if shared == validation.nnz:
        raise ValueError(f"every validation interaction ({shared}) is also a training "
                         "interaction: the metrics leave training items out, so every "
                         "trial would score 0. Hold out interactions the training data "
                         "does not have (rgals.data.validation_split), or pass "
                         "validation=None")
    if shared:
        warnings.warn(f"{shared} of {validation.nnz} validation interactions are also "
                      "training interactions; the metrics leave them out, so they score "
                      "nothing. Hold out interactions the training data does not have",
                      UserWarning, stacklevel=3)


def search_space(loss: str = "rg2", space: dict | None = None) -> dict:
    """name -> Hyperparameter: the domains a search draws from (see `tune`)."""
    declared = make_loss(loss).hyperparameters
    if space is None:
        return {name: domain for name, domain in declared.items() if domain.searched}
    if isinstance(space, str):
        space = [space]
    if isinstance(space, (list, tuple)) and all(isinstance(name, str) for name in space):
        space = {name: None for name in space}
    if not isinstance(space, dict):
        raise ValueError(f"space must be None, a hyperparameter name, a list of names or a "
                         f"dict name -> (low, high), (low, high, 'log') or [choices]; got "
                         f"{space!r}")
    dimensions = {}
    for name, given in space.items():
        if name in CONTROLLED:
            raise ValueError(f"{name!r} cannot be searched: tune controls it")
        if name not in declared and name not in ESTIMATOR_SPACE:
            raise ValueError(f"unknown hyperparameter {name!r} to search: the loss takes "
                             f"{', '.join(declared)}, and the estimator's "
                             f"{', '.join(ESTIMATOR_SPACE)} may be searched")
        dimensions[name] = _dimension(name, given, declared.get(name) or
                                      ESTIMATOR_SPACE.get(name))
    if not dimensions:
        raise ValueError("the search space is empty: name at least one hyperparameter")
    return dimensions


def _dimension(name, given, declared):
    """A Hyperparameter to draw `name` from, its ends checked as values."""
    if given is None:
        if declared is None or (declared.kind in ("real", "integer") and declared.low is None):
            raise ValueError(f"{name!r} has no declared domain: give its range, e.g. "
                             f"space={{{name!r}: (low, high)}}")
        given = declared
    if isinstance(given, Hyperparameter):
        domain = given
    elif isinstance(given, list):
        if not given:
            raise ValueError(f"the choices for {name!r} are empty")
        domain = Hyperparameter(given[0], "", kind="choice", choices=tuple(given))
    elif isinstance(given, tuple) and len(given) in (2, 3) and \
            (len(given) == 2 or given[2] == "log"):
        low, high = given[:2]
        if declared is not None:
            integer = declared.kind == "integer"
        else:
            integer = all(isinstance(end, (int, np.integer)) and not isinstance(end, bool)
                          for end in (low, high))
        if integer and not all(isinstance(end, numbers.Real) and float(end).is_integer()
                               for end in (low, high)):
            raise ValueError(f"{name!r} takes integers: its range needs integer ends; got "
                             f"{given!r}")
        if integer:
            low, high = int(low), int(high)
        domain = Hyperparameter(low, "", kind="integer" if integer else "real",
                                minimum=-math.inf, low=low, high=high, log=len(given) == 3)
    else:
        raise ValueError(f"the space of {name!r} must be (low, high), (low, high, 'log'), a "
                         f"list of choices or a Hyperparameter; got {given!r}")
    if domain.kind in ("real", "integer"):
        low, high = domain.low, domain.high
        if low is None or high is None or not (math.isfinite(low) and math.isfinite(high)) \
                or not low < high:
            raise ValueError(f"the range of {name!r} must be finite with low < high; got "
                             f"({low!r}, {high!r})")
        if domain.log and low <= 0:
            raise ValueError(f"a log range of {name!r} needs low > 0; got {low!r}")
    if declared is not None:  # both ends (or every choice) must be valid values
        for value in (domain.choices if domain.kind == "choice" else
                      (domain.low, domain.high) if domain.kind != "bool" else ()):
            declared.check(value, name)
    return domain


class _RandomSearch:
    """Seeded uniform draws (log-uniform where the domain says so)."""

    name = "random"

    def __init__(self, dimensions, seed):
        self.dimensions = dimensions
        self.rng = np.random.default_rng(seed)

    def propose(self):
        return {name: _draw(self.rng, domain) for name, domain in self.dimensions.items()}

    def start(self, params):
        return None

    def report(self, handle, value, sweep):
        return False

    def finish(self, handle, trial):
        pass

    def add_default(self, run):
        pass


def _draw(rng, domain):
    if domain.kind == "choice":
        return domain.choices[int(rng.integers(len(domain.choices)))]
    if domain.kind == "bool":
        return bool(rng.integers(2))
    low, high = domain.low, domain.high
    value = math.exp(rng.uniform(math.log(low), math.log(high))) if domain.log else \
        rng.uniform(low, high)
    return int(min(max(round(value), low), high)) if domain.kind == "integer" else float(value)


class _OptunaSearch:
    """Optuna's TPE (seeded) with a median pruner on the per-sweep validation metric."""

    name = "optuna"

    def __init__(self, dimensions, seed):
        import optuna

        optuna.logging.set_verbosity(optuna.logging.WARNING)
        self.optuna = optuna
        self.dimensions = dimensions
        self.distributions = {name: _distribution(optuna, domain)
                              for name, domain in dimensions.items()}
        self.study = optuna.create_study(
            direction="maximize", sampler=optuna.samplers.TPESampler(seed=seed),
            pruner=optuna.pruners.MedianPruner(n_startup_trials=4, n_warmup_steps=3))
        self.pending = None

    def propose(self):
        self.pending = self.study.ask(self.distributions)
        return dict(self.pending.params)

    def start(self, params):
        handle, self.pending = self.pending, None
        return handle

    def report(self, handle, value, sweep):
        """True when the pruner stops this trial."""
        if handle is None:
            return False
        handle.report(value, sweep)
        return handle.should_prune()

    def finish(self, handle, trial):
        if handle is None:
            return
        state = {"complete": self.optuna.trial.TrialState.COMPLETE,
                 "pruned": self.optuna.trial.TrialState.PRUNED,
                 "failed": self.optuna.trial.TrialState.FAIL}[trial.state]
        self.study.tell(handle, trial.value if trial.state == "complete" else None,
                        state=state)

    def add_default(self, run):
        """Trial 0 (the defaults), where it lies inside the space, as a finished trial."""
        trial, params = run.record, run.record.params
        if trial.state != "complete" or not all(
                name in params and _inside(domain, params[name])
                for name, domain in self.dimensions.items()):
            return
        self.study.add_trial(self.optuna.trial.create_trial(
            params={name: params[name] for name in self.dimensions},
            distributions=self.distributions, value=trial.value,
            intermediate_values=run.curve))


def _inside(domain, value):
    if domain.kind in ("choice", "bool"):
        return value in (domain.choices if domain.kind == "choice" else (False, True))
    return isinstance(value, (int, float)) and domain.low <= value <= domain.high


def _distribution(optuna, domain):
    distributions = optuna.distributions
    if domain.kind == "choice":
        return distributions.CategoricalDistribution(list(domain.choices))
    if domain.kind == "bool":
        return distributions.CategoricalDistribution([False, True])
    if domain.kind == "integer":
        return distributions.IntDistribution(int(domain.low), int(domain.high), log=domain.log)
    return distributions.FloatDistribution(float(domain.low), float(domain.high),
                                           log=domain.log)


@dataclasses.dataclass
class _Run:
    record: Trial
    model: object
    curve: dict


def _run_trial(number, template, proposal, inputs, searcher):
    """Fit one setting; a divergence, a collapse or an invalid combination is a failed
    trial, not an error."""
    model = ALSSolver(**template.get_params())
    handle = searcher.start(proposal)
    curve, points, state, error = {}, [], "complete", ""
    key = f"validation_{template.validation_metric}"
    recall = f"validation_recall@{template.validation_metric.partition('@')[2]}"
    start = time.perf_counter()
    training = 0.0

    def after_sweep(iteration, elapsed, record):
        nonlocal state, training
        path = model.regularization_path_
        if training == 0.0 and path:  # the defaults ran their lam's path first (rgals.path)
            training = path[-1].seconds
        training += record["seconds"]
        value = record.get(key)
        if value is None:
            return None
        curve[iteration + 1] = value
        points.append([iteration + 1, training, value, record.get(recall, math.nan)])
        if searcher.report(handle, value, iteration + 1):
            state = "pruned"
            return False
        return None

    try:
        _set_searched(model, proposal)
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message="every factor shrank",
                                    category=RuntimeWarning)
            model.fit(inputs, show_progress=False, callback=after_sweep)
        if _collapsed(model):
            state, error = "failed", "collapsed to zero"
    except (FloatingPointError, ValueError, np.linalg.LinAlgError) as failure:
        state, error = "failed", str(failure).split(". ")[0]
    seconds = time.perf_counter() - start
    value, best_sweep = (max((value, -sweep) for sweep, value in curve.items())
                         if curve and state != "failed" else (math.nan, 0))
    if not math.isfinite(value) and state != "failed":
        state, error = "failed", "no finite validation metric"
    # sweeps are numbered from the fit's first, the path's included (rgals.path)
    record = Trial(number, dict(proposal), state, float(value), abs(best_sweep),
                   max(curve, default=0), seconds, error, points)
    searcher.finish(handle, record)
    return _Run(record, model, curve)


def _set_searched(model, proposal):
    """Searched values onto the estimator: its own parameters, or the loss's (by name
    when the estimator has that parameter, else inside a loss dict)."""
    loss_values = {}
    for name, value in proposal.items():
        if name in model.get_params() and name != "loss":
            model.set_params(**{name: value})
        else:
            loss_values[name] = value
    if loss_values:
        loss = model.loss
        spec = dict(loss) if isinstance(loss, dict) else {"name": loss}
        if not isinstance(spec["name"], str):
            raise ValueError("searching loss hyperparameters needs loss= a name or a dict, "
                             "not a Loss object")
        model.set_params(loss={**spec, **loss_values})


def _resolved(model, dimensions):
    """The values trial 0 (the defaults) used for the searched names."""
    if model is None or getattr(model, "loss_", None) is None:
        return {}
    values = model.loss_.get_params()
    values.update({name: getattr(model, name) for name in dimensions
                   if name in ESTIMATOR_SPACE})
    return {name: values[name] for name in dimensions if name in values}


def _collapsed(model):
    # no max(initial=): CuPy's lacks it
    return all(float(abs(factors).max()) < 1e-6 for factors in
               (model.user_factors_, model.item_factors_) if factors.size)


def _best(trials):
    complete = [trial for trial in trials if trial.state == "complete"]
    # the lowest number wins a tie: the same seed picks the same trial
    return max(complete, key=lambda trial: (trial.value, -trial.number), default=None)


def _plain(value):
    """numpy scalars as Python numbers (for JSON)."""
    if isinstance(value, dict):
        return {name: _plain(item) for name, item in value.items()}
    return value.item() if isinstance(value, np.generic) else value


def _resolve_search(search):
    if search not in SEARCHES:
        raise ValueError(f"search must be one of {', '.join(map(repr, SEARCHES))}; "
                         f"got {search!r}")
    if search == "random":
        return search
    if importlib.util.find_spec("optuna") is not None:
        return "optuna"
    if search == "optuna":
        raise ImportError("search='optuna' needs Optuna: pip install 'rgals[tune]' (or use "
                          "search='random')")
    return "random"


def _check_count(n_trials, timeout):
    if n_trials is None and timeout is None:
        raise ValueError("give n_trials, timeout or both: the search needs a limit")
    if n_trials is not None and (not isinstance(n_trials, (int, np.integer)) or
                                 isinstance(n_trials, bool) or n_trials < 1):
        raise ValueError(f"n_trials must be an integer >= 1 (or None with a timeout); "
                         f"got {n_trials!r}")
    if timeout is not None and not (isinstance(timeout, numbers.Real) and
                                    not isinstance(timeout, bool) and timeout > 0 and
                                    math.isfinite(timeout)):
        raise ValueError(f"timeout must be a finite number of seconds > 0 (None: no time "
                         f"limit, with n_trials); got {timeout!r}")


def _progress(total, show):
    from tqdm.auto import tqdm

    return tqdm(total=total, desc="rgals tune", unit="trial", disable=not show)


def _format(value):
    if isinstance(value, float):
        return f"{value:.3g}"
    return str(value)
