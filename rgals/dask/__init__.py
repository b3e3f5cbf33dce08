"""rgals.dask: ALSSolver's fit on a Dask cluster, for data beyond one machine.

Layout as Spark's ALS (design.md 6): the interactions are shuffled once into user-row
blocks and item-row blocks (both orientations), kept on the workers; the factors are
partitioned by the same blocks. The modules, in the order a fit uses them:

- `layout`: the blocks, from a scipy.sparse matrix or a Dask DataFrame, and their totals;
- `executor` and `tasks`: the sweeps' operations as tasks on the blocks;
- `checkpoints`: the factors written every few sweeps, and resume;
- `estimator`: `DaskALSSolver`, the scikit-learn style front end;
- `cluster`: gathering with a deadline, tree sums, the workers' malloc settings
  (`worker_settings`); `synthetic`: planted data drawn by the workers.

Needs the `dask` extra: pip install 'rgals[dask]'.
"""

from .cluster import worker_settings
from .estimator import BROADCAST_BYTES, DaskALSSolver
from .synthetic import synthetic_frame

__all__ = ["BROADCAST_BYTES", "DaskALSSolver", "synthetic_frame", "worker_settings"]
