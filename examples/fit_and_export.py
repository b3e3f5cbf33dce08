"""Fit rgals on a train/test split, print its test metrics, export the embeddings.

    python examples/fit_and_export.py [FOLDER] [OUT]

FOLDER holds train.tsv and test.tsv (user and item ids, one interaction per line, a
header line); without one, the embedded Health split (rgals.datasets). OUT (default
example-model/, replaced) gets user_factors.npy, item_factors.npy, the id maps
user_ids.npy / item_ids.npy (row i of the factors is id [i]) and params.json;
examples/serve_top_n.py serves recommendations from them.
"""

import sys
from pathlib import Path

import numpy as np

import rgals
from rgals import data, metrics
from rgals.datasets import load_default


def read(folder):
    """(train, test) Interactions of FOLDER, or of the embedded split."""
    if folder is None:
        train, test = load_default()  # ids are the rows and columns themselves
        users, items = np.arange(train.shape[0]), np.arange(train.shape[1])
        return data.Interactions(train, users, items), data.Interactions(test, users, items)
    folder = Path(folder)
    missing = [name for name in ("train.tsv", "test.tsv") if not (folder / name).is_file()]
    if missing:
        sys.exit(f"{folder} holds no {' or '.join(missing)}: give a folder with train.tsv "
                 "and test.tsv, or none for the embedded Health split")
    train = data.read(folder / "train.tsv")
    return train, data.read(folder / "test.tsv", users=train.user_ids, items=train.item_ids)


def main(folder=None, out="example-model"):
    train, test = read(folder)
    model = rgals.ALSSolver(factors=64, loss="rg2", alpha=0.3, regularization=0.01,
                            iterations=15, random_state=0)
    model.fit(train.matrix)
    for name, value in metrics.evaluate(model, test.matrix, K=(10, 20)).items():
        print(f"{name:12} {value:.4f}" if name != "users" else f"({value} users evaluated)")

    model.save(out, overwrite=True)
    train.save_ids(out, overwrite=True)
    print(f"saved the embeddings and id maps in {out}/")


if __name__ == "__main__":
    if len(sys.argv) > 3:
        sys.exit(__doc__)
    main(*sys.argv[1:])
