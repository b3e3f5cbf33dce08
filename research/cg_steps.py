"""Validation NDCG@20 against the number of CG steps a half step takes (issue 15).

Status: not adopted; `cg_steps=3` stays the default (2 steps within 0.5%, a thin
margin): bench/RESULTS.md, "Speed (issue 15)".

    python -m research.cg_steps --dataset health gowalla electronic

For each dataset: the default setting and rg2's chosen 64-factor setting of
bench/results/<dataset>.json, fitted on design.md 3's validation split with early stopping
(30 sweeps at most, patience 10) for cg_steps 3 (the default), 2 and 1 and the exact
Cholesky solve. Prints the best validation NDCG@20 and its sweep; the test split is not
read.
"""

import argparse
import json
import sys

import rgals
from bench.common import DATASETS, HERE, probe_data, script

SOLVES = (("cg", 3), ("cg", 2), ("cg", 1), ("cholesky", 3))


def settings(dataset):
    """{"default": {}, "tuned": rg2's chosen 64-factor parameters, if recorded}."""
    found = {"default": {}}
    path = HERE / "results" / f"{dataset}.json"
    if path.is_file():
        for row in json.loads(path.read_text())["methods"]:
            if row["method"] == "rgals-rg2" and row["factors"] == 64:
                found["tuned"] = {key: value for key, value in row["params"].items()
                                  if key != "loss"}
    return found


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--dataset", choices=list(DATASETS), nargs="+", default=["health"])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--sweeps", type=int, default=30)
    args = parser.parse_args(argv)
    print("| dataset | setting | solve | validation ndcg@20 | best sweep |")
    print("|---|---|---|---|---|")
    for dataset in args.dataset:
        fit_part, validation = probe_data(dataset, 0)
        for name, params in settings(dataset).items():
            for solver, steps in SOLVES:
                model = rgals.ALSSolver(factors=64, iterations=args.sweeps, tol=0.0,
                                        random_state=0, early_stopping=True, patience=10,
                                        num_threads=args.threads, solver=solver,
                                        cg_steps=steps, **params)
                model.fit(fit_part, show_progress=False, validation=validation)
                label = f"cg {steps}" if solver == "cg" else solver
                print(f"| {dataset} | {name} | {label} | {model.monitor_.best_score:.5f} | "
                      f"{model.monitor_.best_sweep} |", flush=True)


if __name__ == "__main__":
    sys.exit(script(main))
