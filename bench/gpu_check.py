"""The GPU backend's checks beside the test suite (issue 18): CPU and GPU fits agree, device
memory against `rgals.backend.fit_bytes`, and a full evaluation's time on the device.

    python -m bench.gpu_check --data data/gowalla/train.tsv --test data/gowalla/test.tsv

For each factor count: 5-sweep fits (float32, seed 0, rg2 and rgx with a given lam, so
that both backends fit one setting) on the CPU (--threads) and the GPU; the largest
relative difference of their factors (target 1e-4); the device memory CuPy's pool held
at the fit's peak against fit_bytes; and the seconds of ranking_metrics on the GPU
model's factors, first call apart, median of 3. Writes a JSON to --out.
"""

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import numpy as np

import rgals
from rgals.backend import fit_bytes, to_host
from rgals.files import write_json
from rgals.metrics import ranking_metrics
from bench.common import script


def agreement(cpu, gpu):
    worst = 0.0
    for name in ("user_factors_", "item_factors_"):
        expected, got = getattr(cpu, name), to_host(getattr(gpu, name))
        worst = max(worst, float(np.abs(got - expected).max() / np.abs(expected).max()))
    return worst


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", required=True)
    parser.add_argument("--test", required=True)
    parser.add_argument("--factors", type=int, nargs="+", default=[64, 128, 256, 512])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args(argv)
    import cupy

    train = rgals.data.read(args.data)
    test = rgals.data.read(args.test, users=train.user_ids, items=train.item_ids,
                           unknown="drop")
    matrix = train.matrix
    device = cupy.cuda.runtime.getDeviceProperties(0)
    report = {"device": device["name"].decode(), "cupy": cupy.__version__,
              "cuda_runtime": cupy.cuda.runtime.runtimeGetVersion(), "rows": []}
    pool = cupy.get_default_memory_pool()
    for factors in args.factors:
        for loss in ("rg2", "rgx"):
            params = dict(factors=factors, loss=loss, regularization=0.01, iterations=5,
                          tol=0.0, random_state=0)
            cpu = rgals.ALSSolver(num_threads=args.threads, **params).fit(
                matrix, show_progress=False)
            rgals.ALSSolver(backend="gpu", **{**params, "iterations": 1}).fit(
                matrix, show_progress=False)  # kernels compiled outside the measurement
            pool.free_all_blocks()
            cupy.cuda.Device().synchronize()
            start = time.perf_counter()
            gpu = rgals.ALSSolver(backend="gpu", **params).fit(matrix, show_progress=False)
            cupy.cuda.Device().synchronize()
            seconds = time.perf_counter() - start
            row = {"factors": factors, "loss": loss, "gpu_fit_seconds": seconds,
                   "relative_difference": agreement(cpu, gpu),
                   "pool_bytes": int(pool.total_bytes()),
                   "fit_bytes": fit_bytes(*matrix.shape, matrix.nnz, factors, np.float32)}
            if loss == "rg2":
                def evaluate(model=gpu):
                    started = time.perf_counter()
                    metrics = ranking_metrics(model.user_factors_, model.item_factors_,
                                              test.matrix, matrix, K=(10, 20))
                    cupy.cuda.Device().synchronize()
                    return time.perf_counter() - started, metrics
                first, metrics = evaluate()
                row.update(evaluation_first_seconds=first,
                           evaluation_seconds=statistics.median(evaluate()[0]
                                                                for _ in range(3)),
                           test_ndcg20=metrics["ndcg@20"])
            report["rows"].append(row)
            print(json.dumps(row), flush=True)
            del gpu
            pool.free_all_blocks()
    write_json(args.out, report)
    return 0


if __name__ == "__main__":
    sys.exit(script(main))
