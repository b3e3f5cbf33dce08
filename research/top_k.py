"""Probe: top-K weights inside rg2 (SoftmaxLoss@K's idea) on validation (bench/RESULTS.md).

Status: adopted as an option, `RG2(top_k=K)` and `RGx(top_k=K)`; not a default (no gain
on validation): bench/RESULTS.md, "Top-K weights inside rg2".

    python -m research.top_k --dataset health --alpha 0.3 --regularization 0.01
    python -m research.top_k --dataset gowalla --alpha 0.01 --regularization 0.001 \
        --quantiles sampled --sweeps 15

Holds 10% of each user's training items out for validation (seed 0), fits rg2 at the
given alpha and regularization with and without top-K weights (every combination of
--temperatures, --quantiles, --warmups and --gradients, K = --top-k), 64 factors, each
fit stopped after 3 evaluations without improvement, and prints the best validation
NDCG@20, its sweep and the fit's seconds. Validation only: the test split is never read.
"""

import argparse
import itertools
import sys

from bench import common
from rgals.losses import RG2
from bench.common import script


def best_validation(loss, fit_part, validation, sweeps, factors, threads, seed):
    """(best validation NDCG@20, its sweep, the fit's seconds)."""
    model, seconds = common.validation_fit(loss, fit_part, validation, sweeps, factors, threads,
                                        seed, patience=3)
    return model.monitor_.best_score, model.monitor_.best_sweep, seconds


def boolean(text):
    """argparse type: yes/no."""
    if text not in ("yes", "no"):
        raise argparse.ArgumentTypeError(f"expected yes or no; got {text!r}")
    return text == "yes"


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--dataset", choices=list(common.DATASETS), default="health")
    parser.add_argument("--alpha", type=float, default=0.3)
    parser.add_argument("--regularization", type=float, default=0.01)
    parser.add_argument("--top-k", type=common.positive, default=20)
    parser.add_argument("--temperatures", type=float, nargs="+", default=[0.3, 1.0, 3.0])
    parser.add_argument("--quantiles", nargs="+", choices=["exact", "sampled"],
                        default=["exact"])
    parser.add_argument("--warmups", type=int, nargs="+", default=[0, 5])
    parser.add_argument("--gradients", type=boolean, nargs="+", default=[False, True],
                        help="yes/no: the weight's own gradient term")
    common.probe_options(parser, sweeps=20)
    args = parser.parse_args(argv)
    fit_part, validation = common.probe_data(args.dataset, args.seed)
    base = dict(alpha=args.alpha, regularization=args.regularization)
    fixed = (fit_part, validation, args.sweeps, args.factors, args.threads, args.seed)
    rows = ["| top-K weights | validation N@20 | best sweep | seconds |", "|---|---|---|---|"]
    score, sweep, seconds = best_validation(RG2(**base), *fixed)
    rows.append(f"| off | {score:.4f} | {sweep} | {seconds:.1f} |")
    for temperature, quantile, warmup, gradient in itertools.product(
            args.temperatures, args.quantiles, args.warmups, args.gradients):
        loss = RG2(**base, top_k=args.top_k, top_k_temperature=temperature,
                   top_k_quantile=quantile, top_k_warmup=warmup, top_k_gradient=gradient)
        score, sweep, seconds = best_validation(loss, *fixed)
        rows.append(f"| K={args.top_k}, t={temperature}, {quantile}, warm-up {warmup}, "
                    f"gradient {'yes' if gradient else 'no'} | {score:.4f} | {sweep} | "
                    f"{seconds:.1f} |")
        print(rows[-1], flush=True)
    print(f"\n{args.dataset}, rg2 alpha {args.alpha}, regularization {args.regularization}, "
          f"{args.factors} factors, seed {args.seed}:")
    print("\n".join(rows))
    return 0


if __name__ == "__main__":
    sys.exit(script(main))
