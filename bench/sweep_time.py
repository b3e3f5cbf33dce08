"""Seconds per ALS sweep: rgals against implicit's CPU ALS on the same data and cores.

    python -m bench.sweep_time --data ../shared/data/gowalla/train.tsv --threads 2
    python -m bench.sweep_time --backend gpu --factors 64 128 256 --threads 2

What a user pays: each row first runs a one-sweep fit (JIT compilation or cache load
included; reported apart), then times a whole fit of 1 + repeats sweeps at default
settings, monitor included, from the call to its return: its wall time divided by the
sweeps is the "fit wall" column. Beside it, the median of the half steps' own seconds
per sweep (the monitor's `seconds`) and the ratio of the two (the monitor's and the
fit's overhead). The last column divides the fit wall by implicit's, timed the same way
in the same run. With --backend gpu every row is also timed on rgals' CPU backend with
--threads threads in the same run, and the last column is the GPU's speed-up over it.
Needs `pip install ".[bench]"` for implicit (or --no-implicit).
"""

import argparse
import platform
import statistics
import sys
import time

import numpy as np
import scipy.sparse as sp
from threadpoolctl import threadpool_info, threadpool_limits

import rgals
from bench.common import script

CONFIGS = [
    # (label, loss, alpha): the solver is the default "auto"
    ("rg2 alpha=0.01 (CG)", "rg2", 0.01),
    ("rg2 alpha=0 (eigenbasis)", "rg2", 0.0),
    ("rgx alpha=0.01 (CG)", "rgx", 0.01),
    ("ials alpha=2 (CG)", "ials", 2.0),
    ("ials alpha=1 (unit confidences: eigenbasis)", "ials", 1.0),
]


def read_interactions(path):
    """A users x items CSR of ones from a two-column TSV with a header line."""
    pairs = np.loadtxt(path, skiprows=1, dtype=np.int64, usecols=(0, 1))
    return sp.csr_matrix((np.ones(len(pairs), dtype=np.float32), (pairs[:, 0], pairs[:, 1])))


def time_rgals(user_items, loss, alpha, factors, threads, repeats, backend):
    """(first one-sweep fit, fit wall per sweep, median half-step seconds per sweep)."""
    def fit(iterations, seconds=None):
        # tol=0: every sweep runs; record["seconds"] counts the half steps alone
        model = rgals.ALSSolver(factors=factors, loss=loss, alpha=alpha,
                                iterations=iterations, num_threads=threads, random_state=0,
                                backend=backend, tol=0.0)
        start = time.perf_counter()
        model.fit(user_items, show_progress=False, callback=None if seconds is None else
                  lambda iteration, elapsed, record: seconds.append(record["seconds"]))
        return time.perf_counter() - start

    first = fit(1)
    seconds = []
    wall = fit(1 + repeats, seconds)
    return first, wall / (1 + repeats), statistics.median(seconds)


def time_implicit(user_items, factors, threads, repeats):
    """(first one-sweep fit, fit wall per sweep), timed as time_rgals."""
    from implicit.cpu.als import AlternatingLeastSquares

    def fit(iterations):
        model = AlternatingLeastSquares(factors=factors, iterations=iterations,
                                        num_threads=threads, random_state=0)
        # implicit parallelises its own loops and asks for single-threaded BLAS
        with threadpool_limits(limits=1, user_api="blas"):
            start = time.perf_counter()
            model.fit(user_items, show_progress=False)
            return time.perf_counter() - start

    first = fit(1)
    return first, fit(1 + repeats) / (1 + repeats)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", default="../shared/data/gowalla/train.tsv")
    parser.add_argument("--factors", type=int, nargs="+", default=[64, 128])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=14,
                        help="sweeps after the first (default 14: the default 15-sweep fit)")
    parser.add_argument("--backend", default="cpu", choices=["cpu", "gpu"])
    parser.add_argument("--no-implicit", action="store_true", help="skip the implicit row")
    args = parser.parse_args(argv)

    user_items = read_interactions(args.data)
    print(f"data {args.data}: {user_items.shape[0]} users x {user_items.shape[1]} items, "
          f"{user_items.nnz} interactions; threads {args.threads}; fits of "
          f"{1 + args.repeats} sweeps after a one-sweep warm-up fit")
    print(f"python {platform.python_version()}, rgals {rgals.__version__}, numpy "
          f"{np.__version__}, {platform.processor() or platform.machine()}; BLAS "
          f"{[info.get('internal_api') for info in threadpool_info()]}")
    gpu = args.backend == "gpu"
    if gpu:
        import cupy

        properties = cupy.cuda.runtime.getDeviceProperties(0)
        print(f"GPU {properties['name'].decode()}, {properties['totalGlobalMem'] / 2**30:.0f} "
              f"GiB; CuPy {cupy.__version__}, CUDA runtime "
              f"{cupy.cuda.runtime.runtimeGetVersion()}")
    print()
    header = ("| factors | method | fit wall s / sweep | half steps s / sweep | wall / half "
              "steps | first 1-sweep fit (JIT incl.) | fit wall vs implicit |")
    print(header + (" CPU fit wall s / sweep | GPU speed-up |" if gpu else ""))
    print("|---|---|---|---|---|---|---|" + ("---|---|" if gpu else ""))
    for factors in args.factors:
        peer = None
        if not args.no_implicit:
            first, peer = time_implicit(user_items, factors, args.threads, args.repeats)
            print(f"| {factors} | implicit ALS (CG, 3 steps) | {peer:.3f} | - | - | "
                  f"{first:.3f} | 1.00 |", flush=True)
        for label, loss, alpha in CONFIGS:
            first, wall, half = time_rgals(user_items, loss, alpha, factors, args.threads,
                                           args.repeats, args.backend)
            ratio = f"{wall / peer:.2f}" if peer else "-"
            row = (f"| {factors} | rgals {label} | {wall:.3f} | {half:.3f} | "
                   f"{wall / half:.2f} | {first:.3f} | {ratio} |")
            if gpu:
                _, cpu, _ = time_rgals(user_items, loss, alpha, factors, args.threads,
                                       args.repeats, "cpu")
                row += f" {cpu:.3f} | {cpu / wall:.1f}x |"
            print(row, flush=True)


if __name__ == "__main__":
    sys.exit(script(main))
