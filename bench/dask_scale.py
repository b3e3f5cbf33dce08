"""The Dask mode's cost (issue 17): seconds per sweep with 1 and 2 workers against the same
fit on one machine without Dask, bytes moved between workers against the traffic model,
and a projection to 1B interactions on 32 workers.

    python -m bench.dask_scale --size 10M 50M --factors 64 --sweeps 3 [--repeat 3]
    python -m bench.dask_scale --size --quality health gowalla

Data: `rgals.dask.synthetic_frame` (the workers draw their own partitions; the
approximate planted draw of `rgals.data.synthetic(candidates=8)`). Sizes: 10M = 250k
users x 100k items, 50M = 1M users x 1M items. One machine: ALSSolver on the same pairs
with num_threads = the cores. Dask: a LocalCluster of 1 worker with every core, or 2
workers of one thread each, started with `rgals.dask.worker_settings()` (`--dask-malloc`:
with Dask's own malloc settings); the first sweep (JIT loading, first transfers) is reported
apart, and the per-sweep figure is the median of the rest. Where a timed Dask sweep goes:
each kind of task's compute seconds (summed over threads, from the task stream) against
the threads' seconds, and the one-machine fit's CPU seconds a sweep. Results:
bench/out/dask/.

`--quality`: a default DaskALSSolver (no parameters; a LocalCluster of 2 one-thread
workers, the training split as a Dask DataFrame of pairs) against a default ALSSolver on
the shared datasets: test NDCG@20 of each, read once, the regularization each chose and
the wall time of each fit. Results: bench/out/dask/quality-<dataset>.json.
"""

import argparse
import os
import sys
import time
from pathlib import Path

import numpy as np
import scipy.sparse as sp

import rgals
from rgals.files import write_json
from bench.common import script

SIZES = {"1M": (50_000, 20_000, 20.0), "10M": (250_000, 100_000, 40.0),
         "50M": (1_000_000, 1_000_000, 50.0)}
BANDWIDTH = 1.25e9  # bytes/s a worker sends or receives in the projection (10 Gbit/s)


def traffic_model(shape, factors, user_blocks, item_blocks, workers, broadcast_bytes,
                  itemsize=4):
    """Bytes moved between workers per sweep, by the layout's design: per half step the
    fixed blocks' statistics to one reducer and the sum back to every worker (each
    (d^2 + d) float64), and the fixed side's factors: gathered to one worker and sent to
    each other worker when whole; when not, the rows each solved block touches, fetched
    by every block apart (at most the fixed side less its own worker's share, counted as
    that)."""
    statistics = (factors ** 2 + factors) * 8
    share = (workers - 1) / workers
    moved = 0.0
    for fixed_rows, fixed_blocks, solved_blocks in ((shape[1], item_blocks, user_blocks),
                                                    (shape[0], user_blocks, item_blocks)):
        fixed = fixed_rows * factors * itemsize
        moved += fixed_blocks * statistics * share + (workers - 1) * statistics
        if fixed <= broadcast_bytes:
            moved += fixed * share + fixed * (workers - 1)
        else:
            moved += solved_blocks * fixed * share
    return moved


def project(per_interaction_seconds, interactions=1e9, workers=32, users=10_000_000,
            items=1_000_000, factors=64):
    """Seconds per sweep projected for `interactions` on `workers` (one core each): the
    measured compute per interaction and core, plus the traffic model's bytes over
    BANDWIDTH per worker (the fixed sides go out as touched rows at this size)."""
    compute = per_interaction_seconds * interactions / workers
    blocks = 2 * workers
    moved = traffic_model((users, items), factors, blocks, blocks, workers, broadcast_bytes=0)
    return compute, moved / workers / BANDWIDTH, moved


def one_machine(matrix, factors, sweeps, threads):
    model = rgals.ALSSolver(factors=factors, regularization=0.01, iterations=1,
                            num_threads=threads, random_state=0)
    model.fit(matrix, show_progress=False)  # JIT warm-up
    model.set_params(iterations=sweeps, tol=0.0)
    cpu = []  # the process's CPU seconds (all threads) at each sweep's end
    start = time.perf_counter()
    model.fit(matrix, show_progress=False,
              callback=lambda iteration, elapsed, record: cpu.append(time.process_time()))
    wall = time.perf_counter() - start
    per_sweep = {}
    for row in model.monitor_.rows:
        per_sweep[row["sweep"]] = per_sweep.get(row["sweep"], 0.0) + row["seconds"]
    return {"wall_seconds": wall, "median_sweep_seconds": float(np.median(
        list(per_sweep.values())[1:] or list(per_sweep.values()))),
        "median_sweep_cpu_seconds": float(np.median(np.diff(cpu))) if len(cpu) > 1 else None}


def task_breakdown(stream, start, stop, sweeps):
    """Per sweep, from a task stream (distributed.get_task_stream) between two times:
    the compute seconds of each kind of task (summed over threads) and the seconds spent
    moving data between workers."""
    kinds, moving = {}, 0.0
    for task in stream:
        key = task["key"][0] if isinstance(task["key"], tuple) else task["key"]
        kind = key.rsplit("-", 1)[0]
        for part in task["startstops"]:
            if start <= part["start"] and part["stop"] <= stop:
                seconds = (part["stop"] - part["start"]) / sweeps
                if part["action"] == "compute":
                    kinds[kind] = kinds.get(kind, 0.0) + seconds
                else:
                    moving += seconds
    return {"task_seconds": dict(sorted(kinds.items(), key=lambda item: -item[1])),
            "moving_seconds": moving}


def on_dask(frame, shape, factors, sweeps, workers, threads, blocks_per_thread=2,
            dask_malloc=False):
    import dask
    import distributed
    from rgals.dask import BROADCAST_BYTES, DaskALSSolver, worker_settings
    with dask.config.set({} if dask_malloc else worker_settings()):
        cluster = distributed.LocalCluster(n_workers=workers, threads_per_worker=threads,
                                           processes=True, dashboard_address=None,
                                           memory_limit=0)
    client = distributed.Client(cluster)
    try:
        blocks = blocks_per_thread * workers * threads
        sent = []

        def outgoing():  # every worker's get_data replies: to other workers and the client
            return sum(client.run(lambda dask_worker: dask_worker.transfer_outgoing_bytes_total)
                       .values())

        times, ends = [], []

        def after_sweep(iteration, elapsed, record):
            times.append(record["seconds"])  # the half steps, as the local figure
            ends.append(time.time())  # the task stream's clock
            sent.append(outgoing())

        start = time.perf_counter()
        model = DaskALSSolver(factors=factors, regularization=0.01, iterations=sweeps + 1,
                              tol=0.0, random_state=0, client=client, user_blocks=blocks,
                              item_blocks=blocks)
        with distributed.get_task_stream(client) as stream:
            model.fit(frame, show_progress=False, callback=after_sweep)
        wall = time.perf_counter() - start
        moved = np.diff(sent)
        # where a timed sweep goes: the tasks' compute against the threads' time
        breakdown = task_breakdown(stream.data, ends[0], ends[-1], len(ends) - 1)
        breakdown["thread_seconds"] = (ends[-1] - ends[0]) / (len(ends) - 1) * workers * threads
        return {"workers": workers, "threads_per_worker": threads, "blocks": blocks,
                "wall_seconds": wall, "first_sweep_seconds": times[0],
                "median_sweep_seconds": float(np.median(times[1:])),
                "layout_seconds": wall - sum(times),
                "bytes_moved_per_sweep": float(np.median(moved)) if len(moved) else 0.0,
                "per_sweep": breakdown,
                "model_bytes_per_sweep": traffic_model(shape, factors, blocks, blocks,
                                                       workers, BROADCAST_BYTES)}
    finally:
        client.close()
        cluster.close()


def quality(dataset, cores):
    """Test NDCG@20 of a default fit on Dask and on one machine (the same seed)."""
    import dask
    import dask.dataframe as dd
    import distributed
    import pandas as pd
    from rgals.dask import DaskALSSolver, worker_settings
    from rgals.metrics import ranking_metrics
    from bench.common import load
    train, test = load(dataset)
    rgals.ALSSolver(iterations=1, num_threads=cores).fit(train, show_progress=False)  # JIT
    row = {"dataset": dataset, "interactions": int(train.nnz), "cores": cores}
    start = time.perf_counter()
    local = rgals.ALSSolver(num_threads=cores, random_state=0).fit(train, show_progress=False)
    row["one_machine"] = {"seconds": time.perf_counter() - start}
    pairs = train.tocoo()
    frame = dd.from_pandas(pd.DataFrame({"user": pairs.row.astype(np.int64),
                                         "item": pairs.col.astype(np.int64)}),
                           npartitions=4)
    with dask.config.set(worker_settings()), \
            distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                                     dashboard_address=None) as cluster, \
            distributed.Client(cluster) as client:
        start = time.perf_counter()
        model = DaskALSSolver(client=client, random_state=0).fit(frame, show_progress=False)
        row["dask"] = {"seconds": time.perf_counter() - start}
        remote = model.to_local()
    for name, fitted in (("one_machine", local), ("dask", remote)):
        row[name].update(
            regularization=fitted.loss_.regularization,
            sweeps=int(fitted.monitor_.rows[-1]["sweep"]),
            **{"test_ndcg@20": ranking_metrics(fitted.user_factors_, fitted.item_factors_,
                                               test, train, K=20)["ndcg@20"]})
    row["largest_factor_difference"] = float(np.abs(
        remote.item_factors_ - local.item_factors_).max() / np.abs(local.item_factors_).max())
    return row


def run(size, factors, sweeps, cores, repeat=1, blocks_per_thread=2, dask_malloc=False):
    from rgals.dask import synthetic_frame
    users, items, activity = SIZES[size]
    frame = synthetic_frame(users, items, factors=16, mean_activity=activity, seed=0,
                            candidates=8, partitions=max(2, users // 100_000))
    start = time.perf_counter()
    pairs = frame.compute()
    generated = time.perf_counter() - start
    matrix = sp.csr_matrix((np.ones(len(pairs)), (pairs["user"].to_numpy(),
                                                  pairs["item"].to_numpy())),
                           shape=(users, items))
    row = {"size": size, "users": users, "items": items, "interactions": int(matrix.nnz),
           "factors": factors, "sweeps": sweeps, "cores": cores,
           "generate_seconds_in_process": generated}
    del pairs
    overheads = {}
    for _ in range(repeat):  # the machine drifts: each run's ratio is its own
        row["one_machine"] = one_machine(matrix, factors, sweeps + 1, cores)
        print(f"{size}: one machine {row['one_machine']['median_sweep_seconds']:.2f} s/sweep",
              flush=True)
        row["dask"] = []
        for workers, threads in ((1, cores), (2, max(1, cores // 2))):
            result = on_dask(frame, (users, items), factors, sweeps, workers, threads,
                             blocks_per_thread, dask_malloc)
            result["overhead"] = (result["median_sweep_seconds"]
                                  / row["one_machine"]["median_sweep_seconds"])
            overheads.setdefault(f"{workers}x{threads}", []).append(result["overhead"])
            row["dask"].append(result)
            print(f"{size}: {workers} worker(s) x {threads} thread(s): "
                  f"{result['median_sweep_seconds']:.2f} s/sweep "
                  f"({result['overhead']:.2f}x one machine), "
                  f"{result['bytes_moved_per_sweep'] / 1e6:.1f} MB moved a sweep "
                  f"(model {result['model_bytes_per_sweep'] / 1e6:.1f} MB)", flush=True)
            parts = result["per_sweep"]
            busy = sum(parts["task_seconds"].values())
            print(f"    a sweep's {parts['thread_seconds']:.2f} thread-seconds: tasks "
                  f"{busy:.2f} (" + ", ".join(f"{kind} {seconds:.2f}" for kind, seconds in
                                             list(parts["task_seconds"].items())[:4])
                  + f"), moving data {parts['moving_seconds']:.2f}; one machine's CPU "
                  f"{row['one_machine']['median_sweep_cpu_seconds']:.2f} s", flush=True)
    # "one_machine" and "dask" hold the last run; the ratios of every run beside them
    row["overheads"] = overheads
    row["overhead_median"] = {name: float(np.median(values))
                              for name, values in overheads.items()}
    if repeat > 1:
        print(f"{size}: median overhead over {repeat} runs: " + ", ".join(
            f"{name} {value:.2f}x" for name, value in row["overhead_median"].items()),
            flush=True)
    two = row["dask"][-1]
    per_interaction = two["median_sweep_seconds"] * cores / matrix.nnz
    compute, network, moved = project(per_interaction, factors=factors)
    row["projection_1B_32_workers"] = {"compute_seconds": compute, "network_seconds": network,
                                       "bytes_moved": moved,
                                       "per_interaction_core_seconds": per_interaction}
    return row


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--size", nargs="*", choices=list(SIZES), default=["10M"])
    parser.add_argument("--quality", nargs="*", default=[], metavar="DATASET",
                        help="shared datasets for the default-fit comparison")
    parser.add_argument("--factors", type=int, default=64)
    parser.add_argument("--sweeps", type=int, default=3, help="timed sweeps after the first")
    parser.add_argument("--cores", type=int, default=os.cpu_count())
    parser.add_argument("--blocks-per-thread", type=int, default=2,
                        help="row blocks a side per worker thread (DaskALSSolver's default: 2)")
    parser.add_argument("--dask-malloc", action="store_true",
                        help="start the workers with Dask's malloc settings rather than "
                             "rgals.dask.worker_settings() (to measure what they cost)")
    parser.add_argument("--repeat", type=int, default=1,
                        help="runs of the three fits, each ratio against its own run's "
                             "one-machine fit; the median is reported")
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "out" / "dask")
    args = parser.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    for size in args.size:
        row = run(size, args.factors, args.sweeps, args.cores, args.repeat,
                  args.blocks_per_thread, args.dask_malloc)
        projection = row["projection_1B_32_workers"]
        print(f"{size}: projected 1B interactions on 32 workers: "
              f"{projection['compute_seconds']:.1f} s compute + "
              f"{projection['network_seconds']:.1f} s network a sweep", flush=True)
        write_json(args.out / f"{size}.json", row)
    for dataset in args.quality:
        row = quality(dataset, args.cores)
        print(f"{dataset}: test NDCG@20 {row['dask']['test_ndcg@20']:.4f} on Dask "
              f"({row['dask']['seconds']:.1f} s), {row['one_machine']['test_ndcg@20']:.4f} "
              f"on one machine ({row['one_machine']['seconds']:.1f} s)", flush=True)
        write_json(args.out / f"quality-{dataset}.json", row)
    return 0


if __name__ == "__main__":
    sys.exit(script(main))
