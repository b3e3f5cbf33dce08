"""The quality-and-time benchmark: every method under one protocol (design.md section 3).

    python -m bench.run --dataset health --methods all --trials 8 --threads 2
    python -m bench.run --dataset gowalla --methods rgals-rg2 implicit --trials 4
    python -m bench.run --dataset gowalla --methods rgals-rg2 --factors 64 128 256 512
    python -m bench.run --report          # tables, plots and bench/results/ from bench/out/

For each method: `trials` hyperparameter settings (trial 0 is the method's default; rgals'
methods are searched by `rgals.tune` with Optuna's TPE, seeded, the others drawn at
random from their search spaces, seeded), each trained on the training split minus a 10%
validation split (per user, at least one item) while validation NDCG@20 is measured
after every sweep/epoch; the setting with the best validation NDCG@20 is refitted on the
whole training split for as many sweeps/epochs as it needed, and evaluated on the test
split (full ranking, training items masked). Time to best = training seconds (solver
half steps or gradient epochs; evaluation excluded; rgals' defaults first run the
regularization path, whose wall time, holdout scoring included, counts) until the best
validation NDCG@20 of the chosen setting. `--factors 64 128` runs each method at each
embedding size. Results go to bench/out/<dataset>/<method>.json (<method>-<factors>.json
for sizes other than 64); --report turns them into the tables of bench/RESULTS.md, the
PNGs of bench/plots/ (<dataset>.png at 64 factors, <dataset>_frontier.png over every
size) and bench/results/<dataset>.json: each method's chosen setting, refit
sweeps/epochs, seed and test figures.
"""

import argparse
import json
import statistics
import sys
import time
import warnings
from pathlib import Path

import numpy as np
from threadpoolctl import threadpool_limits

import rgals
from bench.common import DATASETS, FACTORS, HERE, environment, load, positive, script
from rgals.files import write_json
from rgals.data import validation_split
from rgals.metrics import ranking_metrics

# Table 2 of Yang et al. (KDD 2025) on exactly these splits: (Recall@20, NDCG@20)
PUBLISHED = {
    "health": {"bpr": (0.1627, 0.1234), "softmax": (0.1719, 0.1261),
               "softmax_at_k": (0.1823, 0.1390)},
    "electronic": {"bpr": (0.0816, 0.0527), "softmax": (0.0821, 0.0529),
                   "softmax_at_k": (0.0901, 0.0590)},
    "gowalla": {"bpr": (0.1355, 0.1111), "softmax": (0.2064, 0.1624),
                "softmax_at_k": (0.2121, 0.1709)},
}
# both SL@K variants answer to the SL@20 row (the authors trained it over sampled negatives)
PUBLISHED_ROW = {"sampled_softmax_at_k": "softmax_at_k"}
# their tuned MF settings (same source): softmax temperature, SL@20 weight temperature;
# trial 0 of the softmax-type baselines starts from them
PUBLISHED_SETTINGS = {"health": (0.2, 2.5), "electronic": (0.2, 2.25), "gowalla": (0.1, 1.0)}
# users per gradient step: 1024 leaves Health two Adam steps an epoch
BATCH_USERS = 256
warnings.filterwarnings("ignore", message="OpenBLAS is configured", category=RuntimeWarning)


def log_uniform(rng, low, high):
    return float(np.exp(rng.uniform(np.log(low), np.log(high))))


# rgals methods: (fixed ALSSolver parameters, the space rgals.tune searches; None: the
# loss's declared domains). Trial 0 is the library's own default setting.
RGALS = {
    "rgals-rg2": ({"loss": "rg2"}, None),
    "rgals-rg2-popularity": ({"loss": "rg2"},  # design.md 1.6 B: gamma searched beside them
                             ["alpha", "regularization", "popularity_exponent"]),
    "rgals-rgx": ({"loss": "rgx"}, None),
}
TOP_K_SPACE = ({"learning_rate": 1e-3, "temperature": 0.2, "weight_temperature": 1.0},
               lambda rng: {"learning_rate": log_uniform(rng, 3e-4, 1e-2),
                            "temperature": log_uniform(rng, 0.05, 0.5),
                            "weight_temperature": log_uniform(rng, 0.5, 3.0)})
# the other methods: (default setting, a draw from its search space); rgals' entries are
# RGALS's (searched by rgals.tune)
SPACES = {
    **RGALS,
    "implicit": ({"regularization": 0.01, "alpha": 1.0},
                 lambda rng: {"regularization": log_uniform(rng, 1e-3, 10.0),
                              "alpha": log_uniform(rng, 0.3, 50.0)}),
    "softmax": ({"learning_rate": 1e-3, "temperature": 0.2},
                lambda rng: {"learning_rate": log_uniform(rng, 3e-4, 1e-2),
                             "temperature": log_uniform(rng, 0.05, 0.5)}),
    "sampled_softmax": ({"learning_rate": 1e-3, "temperature": 0.2, "negatives": 1000},
                        lambda rng: {"learning_rate": log_uniform(rng, 3e-4, 1e-2),
                                     "temperature": log_uniform(rng, 0.05, 0.5),
                                     "negatives": int(rng.choice([100, 300, 1000]))}),
    "bpr": ({"learning_rate": 1e-3, "weight_decay": 1e-6},
            lambda rng: {"learning_rate": log_uniform(rng, 3e-4, 1e-2),
                         "weight_decay": log_uniform(rng, 1e-8, 1e-3)}),
    "softmax_at_k": TOP_K_SPACE,
    "sampled_softmax_at_k": TOP_K_SPACE,  # 1000 negatives, as published
}
ALS = ("rgals-rg2", "rgals-rg2-popularity", "rgals-rgx", "implicit")


class Curve:
    """Validation NDCG@20 against training seconds; says when to stop a trial."""

    def __init__(self, validation, mask, patience):
        self.validation, self.mask, self.patience = validation, mask, patience
        self.points = []  # (step, training seconds, validation ndcg@20, recall@20)

    def evaluate(self, step, seconds, user_factors, item_factors):
        values = ranking_metrics(user_factors, item_factors, self.validation, self.mask,
                                 K=20, metrics=("ndcg", "recall"))
        return self.add(step, seconds, values["ndcg@20"], values["recall@20"])

    def add(self, step, seconds, ndcg, recall):
        self.points.append((step, seconds, ndcg, recall))
        best = max(range(len(self.points)), key=lambda index: self.points[index][2])
        return len(self.points) - 1 - best < self.patience  # False: stop

    def best(self):
        return max(self.points, key=lambda point: point[2])


def train(method, params, matrix, steps, threads, seed, curve=None, factors=FACTORS):
    """Fit `method` with `factors` dimensions for at most `steps` sweeps/epochs; returns
    (user factors, item factors, seconds of each step). With `curve`, every step is
    evaluated on validation (evaluation time excluded from the seconds) and the curve may
    stop the fit."""
    step_seconds = []
    if method.startswith("rgals"):
        # rgals evaluates the validation split itself (fit(..., validation=...))
        def callback(iteration, elapsed, record):
            step_seconds.append(record["seconds"])
            if curve is None:
                return None
            return curve.add(iteration + 1, sum(step_seconds), record["validation_ndcg@20"],
                             record["validation_recall@20"])

        model = rgals.ALSSolver(factors=factors, iterations=steps, tol=0.0,
                                num_threads=threads, random_state=seed, **params)
        model.fit(matrix, show_progress=False, callback=callback,
                  validation=None if curve is None else curve.validation)
        return model.user_factors_, model.item_factors_, step_seconds
    if method == "implicit":
        from implicit.cpu.als import AlternatingLeastSquares

        model = AlternatingLeastSquares(factors=factors, iterations=steps, num_threads=threads,
                                        random_state=seed, **params)
        clock = {}

        def callback(iteration, elapsed, loss):
            step_seconds.append(time.perf_counter() - clock["last"])
            keep = (curve.evaluate(iteration + 1, sum(step_seconds), model.user_factors,
                                   model.item_factors) if curve is not None else True)
            clock["last"] = time.perf_counter()
            if not keep:
                raise _Stop

        # implicit parallelises its own loops and asks for single-threaded BLAS (its warning
        # about the process-wide OpenBLAS setting is silenced above: this limit overrides it)
        with threadpool_limits(limits=1, user_api="blas"):
            clock["last"] = time.perf_counter()
            try:
                model.fit(matrix.astype(np.float32), show_progress=False, callback=callback)
            except _Stop:
                pass
        return model.user_factors, model.item_factors, step_seconds
    from bench.baselines import GradientMF

    model = GradientMF(loss=method, factors=factors, epochs=steps, random_state=seed,
                       batch_users=BATCH_USERS, **params)

    def callback(epoch, elapsed, model):
        step_seconds.append(elapsed - sum(step_seconds))
        if curve is None:
            return None
        return curve.evaluate(epoch, elapsed, model.user_factors_, model.item_factors_)

    with threadpool_limits(limits=threads, user_api="blas"):
        model.fit(matrix, callback=callback)
    return model.user_factors_, model.item_factors_, step_seconds


class _Stop(Exception):
    """Ends an implicit fit from its callback (its callback cannot return False)."""


def run_method(dataset, method, trials, steps, patience, threads, seed, out,
               factors=FACTORS):
    """Tune on validation, refit the best setting on all of train, test it; write JSON
    (bench/out/<dataset>/<method>.json, <method>-<factors>.json beside 64 factors).
    rgals' methods are searched by rgals.tune (Optuna's TPE), the others at random."""
    train_matrix, test_matrix = load(dataset)
    if method in RGALS:
        results, best, (user_factors, item_factors, seconds), warm_up, search = _tune_rgals(
            method, train_matrix, trials, steps, patience, threads, seed, factors)
    else:
        results, best, (user_factors, item_factors, seconds), warm_up = _search_at_random(
            dataset, method, train_matrix, trials, steps, patience, threads, seed, factors)
        search = "random"
    test = ranking_metrics(user_factors, item_factors, test_matrix, train_matrix, K=(10, 20),
                           metrics=("recall", "ndcg"))
    print(f"{dataset} {method} ({factors} factors) best {best['params']}: test {test}",
          flush=True)
    record = {"dataset": dataset, "method": method, "factors": factors, "trials": results,
              "best": best, "search": search,
              "test": test, "refit_step_seconds": seconds, "threads": threads, "seed": seed,
              "steps": steps, "patience": patience, "warm_up_seconds": warm_up,
              "environment": environment()}
    path = out / dataset / (f"{method}.json" if factors == FACTORS else
                            f"{method}-{factors}.json")
    path.parent.mkdir(parents=True, exist_ok=True)
    write_json(path, record)
    return record


def _tune_rgals(method, train_matrix, trials, steps, patience, threads, seed, factors):
    """rgals.tune on design.md 3's validation split (the same split as the other methods'),
    its best refitted on all of train: (trial records, the best, (P, Q, refit seconds per
    sweep), warm-up seconds, the search)."""
    fixed, space = SPACES[method]
    start = time.perf_counter()  # JIT compilation and cache loading, outside the trials
    train(method, fixed, train_matrix, 1, threads, seed, factors=factors)
    warm_up = time.perf_counter() - start
    result = rgals.tune(train_matrix, n_trials=trials, space=space, random_state=seed,
                        max_sweeps=steps, patience=patience, search="optuna",
                        show_progress=False, factors=factors, num_threads=threads, **fixed)
    results = []
    for trial in result.trials:
        params = result.params_of(trial)
        params.pop("factors", None)
        if trial.state == "failed":
            results.append({"params": params, "state": "failed", "error": trial.error})
            continue
        step_seconds = np.diff([0.0] + [point[1] for point in trial.curve])
        # trial 0 (the defaults) starts its curve after rgals.path's sweeps, its seconds
        # after the path's wall time
        best_point = next(point for point in trial.curve if point[0] == trial.best_sweep)
        results.append({"params": params, "state": trial.state,
                        "validation_ndcg@20": best_point[2],
                        "validation_recall@20": best_point[3],
                        "best_step": trial.best_sweep, "seconds_to_best": best_point[1],
                        "steps_run": trial.sweeps,
                        "median_step_seconds": float(np.median(step_seconds)),
                        "wall_seconds": trial.seconds, "curve": trial.curve,
                        # trial 0's params are the defaults; the values they resolved to
                        **({"resolved": trial.params} if trial.defaults else {})})
        print(f"{method} trial {trial.number} ({trial.state}): {params} -> validation "
              f"NDCG@20 {trial.value:.4f} after {trial.best_sweep} steps", flush=True)
    best = results[next(index for index, trial in enumerate(result.trials)
                        if trial.state == "complete" and trial.value == result.best_value)]
    model = result.model
    per_sweep = {}
    for row in model.monitor_.rows:
        per_sweep[row["sweep"]] = per_sweep.get(row["sweep"], 0.0) + row["seconds"]
    return (results, best, (model.user_factors_, model.item_factors_, list(per_sweep.values())),
            warm_up, result.search)


def _search_at_random(dataset, method, train_matrix, trials, steps, patience, threads, seed,
                      factors):
    """The baselines' search: trial 0 the default, then seeded draws of SPACES."""
    fit_part, validation = validation_split(train_matrix, ratio=0.1, seed=seed)
    default, draw = SPACES[method]
    temperature, weight_temperature = PUBLISHED_SETTINGS[dataset]
    default = {**default, **{name: value for name, value in
                             (("temperature", temperature),
                              ("weight_temperature", weight_temperature))
                             if name in default}}
    # JIT compilation and cache loading happen here, outside every timed run
    start = time.perf_counter()
    train(method, default, fit_part, 1, threads, seed, factors=factors)
    warm_up = time.perf_counter() - start
    rng = np.random.default_rng(seed)
    results = []
    for trial in range(trials):
        params = default if trial == 0 else draw(rng)
        curve = Curve(validation, fit_part, patience)
        start = time.perf_counter()
        _, _, seconds = train(method, params, fit_part, steps, threads, seed, curve, factors)
        step, at_seconds, ndcg, recall = curve.best()
        results.append({"params": params, "validation_ndcg@20": ndcg,
                        "validation_recall@20": recall, "best_step": step,
                        "seconds_to_best": at_seconds, "steps_run": len(seconds),
                        "median_step_seconds": statistics.median(seconds),
                        "wall_seconds": time.perf_counter() - start, "curve": curve.points})
        print(f"{dataset} {method} trial {trial}: {params} -> validation NDCG@20 {ndcg:.4f} "
              f"after {step} steps ({at_seconds:.1f} s)", flush=True)
    best = max(results, key=lambda result: result["validation_ndcg@20"])
    refit = train(method, best["params"], train_matrix, best["best_step"], threads, seed,
                  factors=factors)
    return results, best, refit, warm_up


def report(out, plots, results=None):
    """Markdown tables of every dataset in `out` (the methods at 64 factors, then the
    frontier over every embedding size run), a plot of each; with `results`, also
    <results>/<dataset>.json: each method's chosen setting and test figures."""
    lines = []
    for dataset in DATASETS:
        records = [json.loads(path.read_text()) for path in sorted((out / dataset).glob("*.json"))]
        if not records:
            continue
        for record in records:
            record.setdefault("factors", FACTORS)  # records written before --factors
        equal = [record for record in records if record["factors"] == FACTORS]
        lines += [f"### {dataset}", "",
                  "| method | trials | chosen setting | validation N@20 | test R@20 | test N@20 "
                  "| seconds to best validation | s / step | published R@20 / N@20 |",
                  "|---|---|---|---|---|---|---|---|---|"]
        for record in sorted(equal, key=lambda record: -record["test"]["ndcg@20"]):
            best, test = record["best"], record["test"]
            method = record["method"]
            published = PUBLISHED[dataset].get(PUBLISHED_ROW.get(method, method))
            lines.append(
                f"| {record['method']} | {len(record['trials'])} | {_setting(best)} | "
                f"{best['validation_ndcg@20']:.4f} | {test['recall@20']:.4f} | "
                f"{test['ndcg@20']:.4f} | {best['seconds_to_best']:.2f} "
                f"({best['best_step']} steps) | {best['median_step_seconds']:.3f} | "
                + (f"{published[0]:.4f} / {published[1]:.4f} |" if published else "- |"))
        lines.append("")
        if equal:
            _plot(dataset, equal, plots / f"{dataset}.png")
        frontier = sorted(records, key=lambda record: (record["method"], record["factors"]))
        lines += [f"Frontier ({dataset}): each method's chosen setting per embedding size", "",
                  "| method | factors | validation N@20 | seconds to best validation | "
                  "test N@20 |", "|---|---|---|---|---|"]
        lines += [f"| {record['method']} | {record['factors']} | "
                  f"{record['best']['validation_ndcg@20']:.4f} | "
                  f"{record['best']['seconds_to_best']:.2f} | {record['test']['ndcg@20']:.4f} |"
                  for record in frontier]
        lines.append("")
        _plot(dataset, frontier, plots / f"{dataset}_frontier.png", by_size=True)
        if results is not None:
            write_results(dataset, frontier, results / f"{dataset}.json")
    return "\n".join(lines)


def _setting(best):
    return ", ".join(f"{name}={value:.3g}" if isinstance(value, float) else f"{name}={value}"
                     for name, value in best["params"].items())


def write_results(dataset, records, path):
    """The chosen setting of each (method, factors) and its test figures, as JSON. An rgals
    row's params are ALSSolver keyword arguments: ALSSolver(factors=factors,
    iterations=best_step, tol=0, random_state=seed, **params) fitted on the whole training
    split gives its test figures."""
    methods = [{"method": record["method"], "params": record["best"]["params"],
                "factors": record["factors"], "best_step": record["best"]["best_step"],
                "seed": record["seed"], "test": record["test"],
                "validation_ndcg@20": record["best"]["validation_ndcg@20"],
                "seconds_to_best": record["best"]["seconds_to_best"],
                "trials": len(record["trials"]), "threads": record["threads"]}
               for record in records]
    path.parent.mkdir(parents=True, exist_ok=True)
    write_json(path, {"dataset": dataset, "methods": methods})


def _plot(dataset, records, path, by_size=False):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(figsize=(7, 4.5))
    for record in records:
        points = np.array(record["best"]["curve"])
        style = "o-" if record["method"] in ALS else ".-"
        label = record["method"] + (f", d={record['factors']}" if by_size else "")
        axes.plot(points[:, 1], points[:, 2], style, markersize=3, label=label)
    axes.set_xscale("symlog", linthresh=0.1)
    axes.set_xlabel("training seconds (evaluation excluded)")
    axes.set_ylabel("validation NDCG@20")
    axes.set_title(f"{dataset}: chosen setting of each method"
                   + (" and embedding size" if by_size else ""))
    axes.legend(fontsize=7)
    figure.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=120)
    plt.close(figure)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--dataset", choices=list(DATASETS), nargs="+", default=["health"])
    parser.add_argument("--methods", nargs="+", default=["all"],
                        help=f"'all' or some of {', '.join(SPACES)}")
    parser.add_argument("--trials", type=positive, default=8, help="settings tried per method")
    parser.add_argument("--als-steps", type=positive, default=30, help="most sweeps (ALS)")
    parser.add_argument("--epochs", type=positive, default=200, help="most epochs (gradient)")
    parser.add_argument("--patience", type=positive, default=10,
                        help="steps without a better validation NDCG@20 before a trial stops")
    parser.add_argument("--threads", type=positive, default=2)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--factors", type=positive, nargs="+", default=[FACTORS],
                        help="embedding sizes to run each method at")
    parser.add_argument("--out", type=Path, default=HERE / "out")
    parser.add_argument("--report", action="store_true",
                        help="print the tables, draw bench/plots/ and write "
                        "bench/results/ from --out, then exit")
    args = parser.parse_args(argv)
    if args.report:
        print(report(args.out, HERE / "plots", HERE / "results"))
        return 0
    methods = list(SPACES) if args.methods == ["all"] else args.methods
    unknown = [method for method in methods if method not in SPACES]
    if unknown:
        parser.error(f"unknown methods {unknown}; choose from {list(SPACES)}")
    for dataset in args.dataset:
        for method in methods:
            steps = args.als_steps if method in ALS else args.epochs
            for factors in args.factors:
                run_method(dataset, method, args.trials, steps, args.patience, args.threads,
                           args.seed, args.out, factors)
    return 0


if __name__ == "__main__":
    sys.exit(script(main))
