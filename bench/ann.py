"""The approximate index against the exact recommend: recall@20 and queries per second.

    python -m bench.ann --threads 2                      # Gowalla and synthetic 500k x 100k
    python -m bench.ann --data gowalla --single 300

For each data set: a model (Gowalla: the default fit on its training split; synthetic:
`rgals.data.synthetic` with 500k users and 100k items, its fast approximate draw, 5
sweeps at regularization 0.01),
then the exact `recommend` and `model.approximate_index(method, ...)` for a few settings
on the same --users queried users (all of Gowalla's; a random sample of the synthetic
ones), seen items filtered, N = 20: the index's build seconds, queries per second in
blocks of 4096 users and one user per call (--single users), and recall@20, the share of
the exact list the approximate one holds. Every timing follows an untimed first call.
Numba, BLAS and faiss run on --threads threads.
"""

import argparse
import sys
import time

import numba
import numpy as np
from threadpoolctl import threadpool_limits

import rgals
from bench.common import environment, load, positive, script
from rgals.data import synthetic

N = 20
SETTINGS = [("hnsw", dict(ef_search=32)), ("hnsw", dict(ef_search=64)),
            ("hnsw", dict(ef_search=128)), ("ivf", dict()), ("ivf", dict(nprobe_share=0.25))]


def model_of(name, threads, seed):
    """(fitted model, its users to query: None for all)."""
    if name == "gowalla":
        train, _ = load("gowalla")
        return rgals.ALSSolver(random_state=seed, num_threads=threads).fit(
            train, show_progress=False)
    matrix = synthetic(n_users=500_000, n_items=100_000, factors=16, mean_activity=20.0,
                       seed=seed, candidates=8)
    return rgals.ALSSolver(iterations=5, regularization=0.01, random_state=seed,
                           num_threads=threads).fit(matrix, show_progress=False)


def queries_per_second(recommend, users, single):
    """(lists, batch QPS, single-call QPS), each after an untimed first call."""
    recommend(users[:8], N=N)
    start = time.perf_counter()
    ids, _ = recommend(users, N=N)
    batch = users.size / (time.perf_counter() - start)
    start = time.perf_counter()
    for user in users[:single]:
        recommend(int(user), N=N)
    return ids, batch, min(single, users.size) / (time.perf_counter() - start)


def recall(found, exact):
    hits = [np.intersect1d(a[a >= 0], e[e >= 0]).size / max((e >= 0).sum(), 1)
            for a, e in zip(found, exact)]
    return float(np.mean(hits))


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", nargs="+", choices=["gowalla", "synthetic"],
                        default=["gowalla", "synthetic"])
    parser.add_argument("--users", type=positive, default=20_000,
                        help="queried users of the synthetic set (Gowalla: all)")
    parser.add_argument("--single", type=positive, default=500)
    parser.add_argument("--threads", type=positive, default=2)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    from rgals.ann import require_faiss
    faiss = require_faiss()
    numba.set_num_threads(args.threads)
    faiss.omp_set_num_threads(args.threads)
    print(f"N = {N}, seen items filtered; {args.threads} threads; {environment()}, "
          f"faiss {faiss.__version__}")
    print()
    print("| data | ranking | build s | QPS, blocks | QPS, one user a call | recall@20 |")
    print("|---|---|---|---|---|---|")
    for name in args.data:
        model = model_of(name, args.threads, args.seed)
        n_users, n_items = model.user_factors_.shape[0], model.item_factors_.shape[0]
        rng = np.random.default_rng(args.seed)
        users = (np.arange(n_users) if name == "gowalla" else
                 np.sort(rng.choice(n_users, min(args.users, n_users), replace=False)))
        label = f"{name} ({n_users} x {n_items}, {users.size} users)"
        with threadpool_limits(limits=args.threads, user_api="blas"):
            exact, batch, single = queries_per_second(model.recommend, users, args.single)
            print(f"| {label} | exact | - | {batch:,.0f} | {single:,.0f} | 1 |", flush=True)
            for method, settings in SETTINGS:
                settings = dict(settings)
                share = settings.pop("nprobe_share", None)
                if share is not None:  # a share of the default lists
                    default = max(1, min(int(4 * np.sqrt(n_items)), n_items // 39))
                    settings["nprobe"] = max(1, int(share * default))
                start = time.perf_counter()
                index = model.approximate_index(method, **settings)
                built = time.perf_counter() - start
                found, batch, single = queries_per_second(index.recommend, users,
                                                          args.single)
                described = ", ".join(f"{key} {value}" for key, value in settings.items())
                print(f"| {label} | {method}{' (' + described + ')' if described else ''} | "
                      f"{built:.1f} | {batch:,.0f} | {single:,.0f} | "
                      f"{recall(found, exact):.4f} |", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(script(main))
