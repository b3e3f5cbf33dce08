"""Device-to-host syncs of a GPU fit, counted under the CuPy stand-in (issue 30, item 8).

    PYTHONPATH=../shared/tools/cupy-standin python -m bench.gpu_syncs

Each sync (a bool() or float() of a device value, a copy to the host) waits for the GPU
to finish its queue: a few per sweep cost nothing, one per row would serialise the fit.
For each setting (CG with a given lam, Cholesky, RGx, top-K weights) the fit runs on
planted data of two sizes, the second with 4x the users and items, for 3 and for 6
sweeps; the difference per call site, divided by 3, is a sweep's syncs there. A site
whose count grows with the data fails the check. A default fit (its path's stages
depend on the data) is counted whole, beside its number of path stages. The stand-in
counts syncs per call site; it runs the GPU path on NumPy, so it measures no time.
Prints a table per setting: syncs per sweep at each size, by site.
"""

import argparse
import sys
from collections import Counter

import rgals
from rgals.data import synthetic
from bench.common import script

SETTINGS = {
    "cg, lam given": dict(regularization=0.01),
    "cholesky": dict(regularization=0.01, solver="cholesky"),
    "rgx": dict(loss="rgx", regularization=0.01),
    "top-K weights": dict(loss={"name": "rg2", "top_k": 10}, regularization=0.01),
}
SIZES = ((400, 200), (1600, 800))


def syncs_of_fit(standin, matrix, sweeps, params):
    """(syncs by (kind, site), the fitted model) of one GPU fit."""
    before = Counter(standin.SYNCS)
    model = rgals.ALSSolver(backend="gpu", factors=16, iterations=sweeps, tol=0.0,
                            random_state=0, **params).fit(matrix, show_progress=False)
    return Counter({site: count - before[site] for site, count in standin.SYNCS.items()
                    if count > before[site]}), model


def per_sweep(standin, matrix, params):
    """Syncs per sweep by (kind, site): the 3 sweeps a 6-sweep fit adds over a 3-sweep
    one."""
    short, _ = syncs_of_fit(standin, matrix, 3, params)
    long, _ = syncs_of_fit(standin, matrix, 6, params)
    return {site: (long[site] - short[site]) / 3 for site in set(long) | set(short)
            if long[site] != short[site]}


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.parse_args(argv)
    try:
        import cupy_standin as standin
    except ImportError:
        raise SystemExit("run under the CuPy stand-in: PYTHONPATH=<path to cupy-standin> "
                         "python -m bench.gpu_syncs") from None
    rgals.backend.require_gpu()  # its one-off check of the CUDA libraries syncs
    data = [synthetic(users, items, factors=4, mean_activity=12, seed=0)
            for users, items in SIZES]
    growing = []
    for name, params in SETTINGS.items():
        counts = [per_sweep(standin, matrix, params) for matrix in data]
        sites = sorted(set(counts[0]) | set(counts[1]))
        totals = [sum(count.values()) for count in counts]
        print(f"\n{name}: {totals[0]:g} syncs per sweep at {SIZES[0][0]} users, "
              f"{totals[1]:g} at {SIZES[1][0]}")
        print(f"| kind | site | per sweep, {SIZES[0][0]} users | {SIZES[1][0]} users |")
        print("|---|---|---|---|")
        for kind, site in sites:
            small, large = counts[0].get((kind, site), 0), counts[1].get((kind, site), 0)
            print(f"| {kind} | {site} | {small:g} | {large:g} |")
            if large > small:
                growing.append(f"{name}: {kind} at {site} ({small:g} -> {large:g})")
    for (users, _), matrix in zip(SIZES, data):
        syncs, model = syncs_of_fit(standin, matrix, 15, {})
        path = model.regularization_path_
        stages = ", ".join(f"lam {stage.regularization:.3g} to sweep {stage.sweeps}"
                           for stage in path)
        dropped = sum(after.sweeps == before.sweeps for before, after in zip(path, path[1:]))
        print(f"\na default fit, {users} users: {sum(syncs.values())} syncs (15 sweeps "
              f"and {3 * dropped} of dropped path steps; path: {stages})")
    if growing:
        print("\nsyncs that grow with the data:\n" + "\n".join(growing))
        return 1
    print("\nno sync grows with the data")
    return 0


if __name__ == "__main__":
    sys.exit(script(main))
