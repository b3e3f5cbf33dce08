"""Serve top-N recommendations from exported embeddings, with numpy alone.

    python examples/serve_top_n.py example-model 0 17 42

Reads user_factors.npy, item_factors.npy, the id maps and the training interactions
(to leave out what each user already has) written by `rgals fit --out` or
examples/fit_and_export.py, and prints the 10 best items for each given user id.
No rgals import: the files are plain .npy / .npz.
"""

import sys
from pathlib import Path

import numpy as np
import scipy.sparse as sp


def main(folder, users, n=10):
    folder = Path(folder)
    user_factors = np.load(folder / "user_factors.npy")
    item_factors = np.load(folder / "item_factors.npy")
    user_ids = np.load(folder / "user_ids.npy")
    item_ids = np.load(folder / "item_ids.npy")
    seen = sp.load_npz(folder / "user_items.npz").tocsr()
    row_of = {str(user): row for row, user in enumerate(user_ids)}

    for user in users:
        if user not in row_of:
            print(f"{user}: not in the model")
            continue
        row = row_of[user]
        scores = item_factors @ user_factors[row]
        scores[seen[row].indices] = -np.inf  # already interacted
        count = min(n, scores.size)
        best = np.argpartition(-scores, count - 1)[:count]
        best = best[np.argsort(-scores[best])]
        print(f"{user}: " + ", ".join(f"{item_ids[i]} ({scores[i]:.3f})" for i in best))


if __name__ == "__main__":
    if len(sys.argv) < 3:
        sys.exit(__doc__)
    main(sys.argv[1], sys.argv[2:])
