"""Type aliases of the public API's annotations (what a parameter accepts)."""

from collections.abc import Callable, Sequence
from os import PathLike
from typing import Union

import numpy as np
import scipy.sparse as sp

# a users x items interaction matrix: any scipy.sparse format, or a dense array
Matrix = Union[sp.spmatrix, np.ndarray]
# one id or several (rows of the matrix)
Ids = Union[int, Sequence[int], np.ndarray]
# the original ids of a model's rows (rgals.data.Interactions' user_ids / item_ids)
IdMap = Union[Sequence, np.ndarray]
# (ids, scores) of recommend and similar_*: 1-d for one id, 2-d for several
Ranked = tuple[np.ndarray, np.ndarray]
FilePath = Union[str, PathLike]
Seed = Union[None, int, np.random.Generator]
# callback(iteration, elapsed_seconds, record) -> False stops the fit
Callback = Callable[[int, float, dict], object]
Metrics = dict[str, float]
