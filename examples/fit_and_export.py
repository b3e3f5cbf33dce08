"""Fit rgals on a train/test split, print its test metrics, export the embeddings.

    python examples/fit_and_export.py ../shared/data/amazon2014-health out/health

The folder holds train.tsv and test.tsv (user and item ids, one interaction per line,
a header line). The output folder gets user_factors.npy, item_factors.npy, the id maps
user_ids.npy / item_ids.npy (row i of the factors is id [i]) and params.json;
examples/serve_top_n.py serves recommendations from them.
"""

import sys
from pathlib import Path

import rgals
from rgals import data, metrics


def main(folder, out):
    folder = Path(folder)
    train = data.read(folder / "train.tsv")
    test = data.read(folder / "test.tsv", users=train.user_ids, items=train.item_ids)

    model = rgals.ALSSolver(factors=64, loss="rg2", alpha=0.3, regularization=0.01,
                            iterations=15, random_state=0)
    model.fit(train.matrix)
    for name, value in metrics.evaluate(model, test.matrix, K=(10, 20)).items():
        print(f"{name:12} {value:.4f}" if name != "users" else f"({value} users evaluated)")

    model.save(out, overwrite=True)
    train.save_ids(out, overwrite=True)
    print(f"saved the embeddings and id maps in {out}/")


if __name__ == "__main__":
    if len(sys.argv) != 3:
        sys.exit(__doc__)
    main(sys.argv[1], sys.argv[2])
