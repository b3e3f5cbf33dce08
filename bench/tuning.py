"""Defaults against tuning (issue 16): what a fit with no parameters gives, against
`rgals.tune`, on the shared datasets and on synthetic ones.

    python -m bench.tuning --dataset health electronic gowalla --trials 20 --threads 2
    python -m bench.tuning --synthetic --trials 12

For each shared dataset: a default `ALSSolver()` fitted on the whole training split
(its 15 sweeps), the defaults of before this issue (alpha 0.01, regularization 0.001),
and `rgals.tune(train, n_trials=...)` (Optuna's TPE on a 10% validation split, the best
refitted on all of train); the test split is read once for each of these settings.
Beside them the 8-trial rgals-rg2 row of bench/results/. Synthetic data (planted
structure, `rgals.data.synthetic`) has no test split here: the defaults' and the tuned
setting's validation NDCG@20 are compared. Results: bench/out/tuning/<name>.json.
"""

import argparse
import dataclasses
import json
import math
import sys
import time
from pathlib import Path

import rgals
from rgals.cli import positive_integer as positive
from rgals.data import synthetic
from rgals.files import write_json
from rgals.metrics import ranking_metrics
from bench.common import DATASETS, HERE, load, script

BEFORE = {"alpha": 0.01, "regularization": 1e-3}  # the RG2 defaults before issue 16
# planted structures of several shapes: (users, items, planted rank, mean activity)
SYNTHETIC = {"synthetic-square": (3000, 2000, 16, 20.0),
             "synthetic-wide": (2000, 8000, 32, 30.0),
             "synthetic-sparse": (6000, 3000, 8, 8.0)}


def test_ndcg(model, train, test):
    return ranking_metrics(model.user_factors_, model.item_factors_, test, train,
                           K=20)["ndcg@20"]


def shared(dataset, trials, threads, seed):
    """Test NDCG@20 of the defaults, the old defaults and the tuned best; tune's wall."""
    train, test = load(dataset)
    # JIT warm-up: a default fit on a slice compiles the sweep's and the path's kernels
    rgals.ALSSolver(num_threads=threads).fit(train[:2000], show_progress=False)
    row = {"dataset": dataset, "trials": trials, "seed": seed, "threads": threads}
    # "rule": the rule's lam fixed, without the path (the defaults of the session before)
    rule = {"regularization": rgals.losses.RG2().resolve(train).regularization}
    for name, params in (("defaults", {}), ("rule", rule), ("before", BEFORE)):
        start = time.perf_counter()
        model = rgals.ALSSolver(num_threads=threads, random_state=seed, **params).fit(
            train, show_progress=False)
        row[name] = {"seconds": time.perf_counter() - start, "test_ndcg@20":
                     test_ndcg(model, train, test), "alpha": model.loss_.alpha,
                     "regularization": model.loss_.regularization}
        if model.regularization_path_ is not None:
            row[name]["path"] = [dataclasses.asdict(stage)
                                 for stage in model.regularization_path_]
    result = rgals.tune(train, n_trials=trials, random_state=seed, num_threads=threads,
                        show_progress=False)
    row["tuned"] = {"seconds": result.seconds, "test_ndcg@20": test_ndcg(result.model, train,
                                                                         test),
                    "validation_ndcg@20": result.best_value, "params": result.best_params,
                    "states": [trial.state for trial in result.trials]}
    row["validation_defaults"] = result.trials[0].value  # trial 0: the defaults
    bench_row = _results_row(dataset)
    if bench_row is not None:
        row["bench_8_trials"] = {"test_ndcg@20": bench_row["test"]["ndcg@20"],
                                 "params": bench_row["params"]}
    return row


def planted(name, trials, threads, seed):
    """Validation NDCG@20 of the defaults (trial 0) against the best of the search."""
    users, items, rank, activity = SYNTHETIC[name]
    matrix = synthetic(users, items, factors=rank, mean_activity=activity, seed=seed)
    result = rgals.tune(matrix, n_trials=trials, random_state=seed, num_threads=threads,
                        show_progress=False, refit=False)
    defaults = result.trials[0]
    return {"dataset": name, "shape": [users, items], "rank": rank, "mean_activity": activity,
            "trials": trials, "seed": seed, "validation_defaults": defaults.value,
            "defaults": defaults.params, "validation_tuned": result.best_value,
            "tuned": result.best_params, "seconds": result.seconds}


def _results_row(dataset):
    path = HERE / "results" / f"{dataset}.json"
    if not path.is_file():
        return None
    rows = json.loads(path.read_text())["methods"]
    return next((row for row in rows if row["method"] == "rgals-rg2" and row["factors"] == 64),
                None)


def table(rows):
    lines = ["| dataset | defaults: test N@20 (alpha, lam) | rule's lam, no path | before "
             "(0.01, 0.001) | tuned: test N@20 | defaults / tuned | 8-trial row of "
             "bench/results | default fit s (rule's) | tune wall s |",
             "|---|---|---|---|---|---|---|---|---|"]
    for row in rows:
        if "tuned" in row and isinstance(row["tuned"], dict) and "test_ndcg@20" in row["tuned"]:
            defaults, tuned = row["defaults"], row["tuned"]
            bench = row.get("bench_8_trials", {}).get("test_ndcg@20")
            lines.append(
                f"| {row['dataset']} | {defaults['test_ndcg@20']:.4f} "
                f"({defaults['alpha']:.3g}, {defaults['regularization']:.3g}) | "
                f"{row['rule']['test_ndcg@20']:.4f} ({row['rule']['regularization']:.3g}) | "
                f"{row['before']['test_ndcg@20']:.4f} | {tuned['test_ndcg@20']:.4f} | "
                f"{defaults['test_ndcg@20'] / tuned['test_ndcg@20']:.3f} | "
                + (f"{bench:.4f}" if bench is not None else "-")
                + f" | {defaults['seconds']:.1f} ({row['rule']['seconds']:.1f}) | "
                f"{tuned['seconds']:.0f} |")
        else:
            lines.append(f"| {row['dataset']} | validation {row['validation_defaults']:.4f} "
                         f"(lam {row['defaults'].get('regularization', math.nan):.3g}) | - | - | "
                         f"validation {row['validation_tuned']:.4f} | "
                         f"{row['validation_defaults'] / row['validation_tuned']:.3f} | - | - | "
                         f"{row['seconds']:.0f} |")
    return "\n".join(lines)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--dataset", nargs="*", choices=list(DATASETS), default=[])
    parser.add_argument("--synthetic", action="store_true", help="also the planted datasets")
    parser.add_argument("--trials", type=positive, default=20)
    parser.add_argument("--threads", type=positive, default=2)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=HERE / "out" / "tuning")
    args = parser.parse_args(argv)
    rows = [shared(dataset, args.trials, args.threads, args.seed) for dataset in args.dataset]
    if args.synthetic:
        rows += [planted(name, args.trials, args.threads, args.seed) for name in SYNTHETIC]
    args.out.mkdir(parents=True, exist_ok=True)
    for row in rows:
        write_json(args.out / f"{row['dataset']}.json", row)
    print(table(rows))
    return 0


if __name__ == "__main__":
    sys.exit(script(main))
