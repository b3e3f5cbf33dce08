"""Fit rgals on an interaction file, show a few recommendations, export the embeddings.

    python examples/fit_and_export.py ../shared/data/amazon2014-health/train.tsv out/health

The file is tab-separated with a header line and two columns: user id, item id (dense,
0-based), one interaction per line.
"""

import sys

import numpy as np
import scipy.sparse as sp

import rgals


def main(path, out):
    pairs = np.loadtxt(path, skiprows=1, dtype=np.int64, usecols=(0, 1))
    user_items = sp.csr_matrix((np.ones(len(pairs)), (pairs[:, 0], pairs[:, 1])))
    model = rgals.ALSSolver(factors=64, loss="rg2", iterations=15, random_state=0)
    model.fit(user_items)

    ids, scores = model.recommend([0, 1, 2], N=5)
    for user, (items, values) in enumerate(zip(ids, scores)):
        print(f"user {user}: items {items.tolist()} scores {[round(float(v), 3) for v in values]}")
    print("items like item 0:", model.similar_items(0, N=5)[0].tolist())

    model.save(out, overwrite=True)
    print(f"saved {out}/user_factors.npy and {out}/item_factors.npy")
    again = rgals.load(out)
    assert np.array_equal(again.recommend(0, N=5)[0], ids[0])


if __name__ == "__main__":
    if len(sys.argv) != 3:
        sys.exit(__doc__)
    main(sys.argv[1], sys.argv[2])
