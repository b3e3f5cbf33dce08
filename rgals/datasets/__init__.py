"""The embedded default dataset: the Amazon 2014 Health split, shipped inside the package.

It is small (1,974 users x 1,200 items, 37,784 training and 10,405 test interactions,
73 kB) so that `rgals demo` and the examples run anywhere with no download. Source and
licence: see NOTICE.md in this folder.
"""

from __future__ import annotations

from importlib import resources

import numpy as np
import scipy.sparse as sp

DEFAULT = "amazon2014_health"
CITATION = ("Amazon 2014 reviews (McAuley et al., SIGIR 2015), Health category, as split by "
            "Yang et al., KDD 2025 (arXiv 2508.05673; Tiny-Snow/IR-Benchmark-Dataset)")
# published test numbers on this split (MF, 64 factors; Yang et al. 2025, Table 2)
PUBLISHED = {"softmax (SL)": {"recall@20": 0.1719, "ndcg@20": 0.1261},
             "SL@20": {"recall@20": 0.1823, "ndcg@20": 0.1390},
             "BPR": {"recall@20": 0.1627, "ndcg@20": 0.1234}}


def load_default() -> tuple:
    """(train, test): users x items CSR matrices of ones, on the same user and item ids."""
    with resources.files(__name__).joinpath(f"{DEFAULT}.npz").open("rb") as file:
        arrays = np.load(file)
        shape = tuple(int(n) for n in arrays["shape"])
        return tuple(
            sp.csr_matrix((np.ones(arrays[f"{part}_indices"].size),
                           arrays[f"{part}_indices"].astype(np.int32),
                           arrays[f"{part}_indptr"]), shape=shape)
            for part in ("train", "test"))
