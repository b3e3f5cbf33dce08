"""DaskALSSolver(backend="gpu") against ALSSolver on the CPU: the same factors (float64).

On a machine with one CUDA device per worker (real CuPy):

    python -m bench.dask_gpu_check

Without a GPU, under the strict CuPy stand-in (../shared/tools/cupy-standin: the API use
only, never speed; `pip install cupy-cuda12x` for its names):

    PYTHONPATH=../shared/tools/cupy-standin CUPY_STANDIN_LOG=/tmp/standin.json \\
        python -m bench.dask_gpu_check --standin

Measured (2026-12-03, stand-in, 2 workers): rgx, rg2 with top-K weights and the full
monitor, the default rg2 with early stopping and the softmax monitor, iALS with
Cholesky: largest relative difference 4e-12, 0 refusals (bench/RESULTS.md).
"""

import argparse
import logging
import sys

import numpy as np
from bench.common import script

CASES = (dict(loss="rgx", alpha=0.05, regularization=0.02, iterations=4),
         dict(loss={"name": "rg2", "top_k": 5, "top_k_gradient": True}, alpha=0.1,
              regularization=0.02, iterations=4, monitor="full"),
         dict(iterations=15, early_stopping=True, softmax_users=20),
         dict(loss="ials", iterations=3, solver="cholesky", regularization=0.1))


def dask_setup(worker):
    """Run by each worker when this file is its preload (--standin): dask.array first
    (it registers CuPy's sparse type on import), then the stand-in in place of CuPy."""
    import dask.array  # noqa: F401
    import cupy_standin  # noqa: F401


def main(argv=None):
    import dask
    import distributed
    import rgals
    from rgals.dask import DaskALSSolver, worker_settings
    from rgals.data import synthetic, validation_split

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--standin", action="store_true",
                        help="the workers run the CuPy stand-in (no GPU needed)")
    args = parser.parse_args(argv)
    matrix = synthetic(n_users=400, n_items=120, factors=4, mean_activity=10, seed=3)
    fit_part, held = validation_split(matrix, 0.2, seed=1)
    with dask.config.set(worker_settings()):
        cluster = distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                                           dashboard_address=None, silence_logs=logging.ERROR,
                                           preload=[__file__] if args.standin else [])
    client = distributed.Client(cluster)
    worst = 0.0
    try:
        for case in CASES:
            settings = dict(factors=6, random_state=0, dtype=np.float64, tol=0.0, **case)
            fit = dict(validation=held) if case.get("early_stopping") else {}
            gpu = DaskALSSolver(client=client, backend="gpu", user_blocks=3, item_blocks=2,
                                **settings).fit(fit_part, show_progress=False, **fit)
            cpu = rgals.ALSSolver(num_threads=1, **settings).fit(fit_part, show_progress=False,
                                                                 **fit)
            difference = float(np.abs(gpu.item_factors_.compute() - cpu.item_factors_).max()
                               / np.abs(cpu.item_factors_).max())
            worst = max(worst, difference)
            print(f"{case.get('loss', 'rg2 defaults')}: largest relative difference "
                  f"{difference:.2g}", flush=True)
    finally:
        client.close()
        cluster.close()
    return 0 if worst < 1e-9 else 1


if __name__ == "__main__":
    sys.exit(script(main))
