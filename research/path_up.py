"""Probe: a default regularization path that can also go up (issue 29; bench/RESULTS.md).

Status: adopted: `rgals.path` steps up when its first step down loses, and between the
best lam and a close neighbour (bench/RESULTS.md, "A path that can go up", issue 29);
alpha's default stays 300 / N (no rule found).

    python -m research.path_up --dataset health electronic gowalla --synthetic

For each data set: its training split less a 10% validation split (seed 0; synthetic
sets: `rgals.data.synthetic` as bench/tuning.py plants them, then the same split), a
default fit (64 factors, seed 0) with the path as it is (`rgals.path`: down, then up
from the start when the first step down loses, then a step between the best lam and a
close neighbour), without the step between, and with neither (the path before issue
29), and fits at fixed lam around the rule's (x 1/3, 1/sqrt 3, 1, sqrt 2, 2, 3, at the
default alpha). Validation NDCG@20 of each, and each path's stages. Validation only:
the test split is never read.
"""

import argparse
import sys

from bench import tuning
from bench.common import DATASETS, positive, probe_data, script
from rgals import ALSSolver, path
from rgals.data import synthetic, validation_split
from rgals.losses import RG2
from rgals.metrics import ranking_metrics

LAM_FACTORS = (1 / 3, 3 ** -0.5, 1.0, 2 ** 0.5, 2.0, 3.0)


def validation_ndcg(model, fit_part, validation):
    return ranking_metrics(model.user_factors_, model.item_factors_, validation, fit_part,
                           K=20, metrics=("ndcg",))["ndcg@20"]


def data_of(name, seed):
    if name in DATASETS:
        return probe_data(name, seed)
    users, items, rank, activity = tuning.SYNTHETIC[name]
    matrix = synthetic(users, items, factors=rank, mean_activity=activity, seed=seed)
    return validation_split(matrix, ratio=0.1, seed=seed)


def default_fit(fit_part, threads, seed, up=True, between=True):
    saved = path.UP_STEP, path.BETWEEN_WITHIN
    path.UP_STEP = saved[0] if up else 1.0  # 1: no step up is ever taken
    path.BETWEEN_WITHIN = saved[1] if between else -1.0  # no neighbour is ever that close
    try:
        return ALSSolver(random_state=seed, num_threads=threads).fit(fit_part,
                                                                    show_progress=False)
    finally:
        path.UP_STEP, path.BETWEEN_WITHIN = saved


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--dataset", nargs="*", choices=list(DATASETS), default=[])
    parser.add_argument("--synthetic", action="store_true")
    parser.add_argument("--threads", type=positive, default=2)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    names = list(args.dataset) + (list(tuning.SYNTHETIC) if args.synthetic else [])
    fixed = " | ".join(f"lam x {factor:.3g}" for factor in LAM_FACTORS)
    print(f"| data | path | without the step between | down only (before) | {fixed} "
          "| stages (lam: holdout) |")
    print("|---" * (5 + len(LAM_FACTORS)) + "|")
    for name in names:
        fit_part, validation = data_of(name, args.seed)
        fits = [default_fit(fit_part, args.threads, args.seed),
                default_fit(fit_part, args.threads, args.seed, between=False),
                default_fit(fit_part, args.threads, args.seed, up=False, between=False)]
        rule = RG2().resolve(fit_part).regularization
        grid = [validation_ndcg(ALSSolver(regularization=rule * factor, random_state=args.seed,
                                          num_threads=args.threads).fit(
            fit_part, show_progress=False), fit_part, validation) for factor in LAM_FACTORS]
        stages = ", ".join(f"{stage.regularization:.3g}: {stage.holdout_ndcg:.4f}"
                           for stage in fits[0].regularization_path_ or [])
        print(f"| {name} | " + " | ".join(
            f"{validation_ndcg(model, fit_part, validation):.4f} "
            f"(lam {model.loss_.regularization:.3g})" for model in fits)
            + " | " + " | ".join(f"{score:.4f}" for score in grid) + f" | {stages} |",
            flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(script(main))
