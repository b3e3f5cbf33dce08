"""Interaction data: read files into a users x items matrix with id maps, split it, and
generate synthetic data for tests (modules interactions, readers, splits, synthetic).

Every reader ends in `from_pairs`, which maps the original ids to dense row and column
indices. Integer ids keep their order (ids 0..n-1 map to themselves), string ids are
sorted. To read a test file onto the rows and columns of a training set, pass the training
set's `user_ids` and `item_ids` as `users` and `items`:

    train = rgals.data.read("train.tsv")
    test = rgals.data.read("test.tsv", users=train.user_ids, items=train.item_ids)
    fit_part, validation = rgals.data.validation_split(train.matrix)
"""

from .interactions import (DUPLICATES, ID_FILES, UNKNOWN, Interactions, from_dataframe,
                           from_pairs, load_ids)
from .readers import FORMATS, read
from .splits import holdout_split, leave_k_out, validation_split
from .synthetic import synthetic

__all__ = ["DUPLICATES", "FORMATS", "ID_FILES", "UNKNOWN", "Interactions", "from_dataframe",
           "from_pairs", "holdout_split", "leave_k_out", "load_ids", "read", "synthetic",
           "validation_split"]
