"""Fit rgals on a Dask cluster from a Dask DataFrame, then evaluate, serve and save.

    pip install ".[dask]"
    python examples/dask_fit.py [OUT]

Starts a local cluster of two worker processes (point `Client` at your scheduler's
address instead, e.g. Client("scheduler:8786")), and fits the embedded Health split as a
DataFrame of (user, item) pairs with DaskALSSolver's defaults: the same model ALSSolver
fits from the same seed. Writes the model to OUT (default: dask-model/, replaced).
"""

import sys

import dask
import dask.dataframe as dd
import numpy as np
import pandas as pd
from distributed import Client, LocalCluster

from rgals import metrics
from rgals.dask import DaskALSSolver, worker_settings
from rgals.datasets import load_default


def main(out="dask-model"):
    train, test = load_default()  # scipy.sparse users x items matrices
    pairs = train.tocoo()
    # one row per interaction: integer ids that are the matrix's rows and columns (a
    # gap is a user or item without interactions), and optionally a "value" column
    # (confidence; without one every pair counts 1)
    frame = dd.from_pandas(pd.DataFrame({"user": pairs.row, "item": pairs.col}),
                           npartitions=4)
    # workers whose malloc keeps freed memory for reuse (Dask's own setting makes
    # every task's arrays fresh pages: about 1.5x the time)
    with dask.config.set(worker_settings()), \
            LocalCluster(n_workers=2, threads_per_worker=1, dashboard_address=None) as cluster, \
            Client(cluster) as client:
        model = DaskALSSolver(client=client, random_state=0)
        model.fit(frame, user_col="user", item_col="item")
        print("regularization chosen on the holdout path:", model.loss_.regularization)
        local = model.to_local()  # an ALSSolver in this process
        print({name: round(value, 4) for name, value in
               metrics.evaluate(local, test, K=20).items() if name != "users"})
        ids, scores = model.recommend(np.arange(3), N=5)  # training items filtered
        print("top 5 of users 0-2:", ids.tolist())
        model.save(out, overwrite=True)  # blocks/, manifest.json and the plain model
        print("saved to", out)


if __name__ == "__main__":  # process-based clusters start their workers by importing this
    main(*sys.argv[1:])
