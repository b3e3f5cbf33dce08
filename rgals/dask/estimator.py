"""DaskALSSolver: ALSSolver's fit on a Dask cluster."""

from __future__ import annotations

import dataclasses
import functools
import time

import numpy as np
import scipy.sparse as sp

from ..als import ALSSolver
from ..backend import require_gpu
from ..data import ID_FILES, Interactions
from ..params import Parameter, as_given
from ..files import check_directory, prepare_directory, write_json
from ..validation import check_bool, check_interactions
from .checkpoints import (Checkpoint, block_ranges, check_checkpoint_dir, fit_identity,
                          read_checkpoint, write_blocks)
from .cluster import check_worker_malloc, dask_array, distributed, gather, require_dask
from .executor import DaskExecutor
from .layout import Layout, gather_matrix
from ..types import Callback, FilePath, Matrix

MANIFEST = "manifest.json"
INITIALIZATIONS = ("client", "workers")
BROADCAST_BYTES = 64 * 2 ** 20
# save() also writes the plain model, and recommend & co. gather the factors, up to
# this many factor bytes (read at each call: tests patch it)
LOCAL_BYTES = 2 ** 30


def _served_by(name):
    """ALSSolver's method `name`, run on the fitted model gathered to this process."""
    @functools.wraps(getattr(ALSSolver, name))
    def method(self, *args, **kwargs):
        return getattr(self._served(name), name)(*args, **kwargs)
    return method


PARAMETERS = {
    **ALSSolver.parameters,
    "num_threads": dataclasses.replace(
        ALSSolver.parameters["num_threads"], default=1,
        doc="threads per task (0: every core of the worker)",
        details="1 by default, so that a worker's threads solve blocks side by side."),
    "backend": dataclasses.replace(
        ALSSolver.parameters["backend"],
        details='"gpu" runs each worker\'s blocks on its GPU, one GPU per worker as '
                "dask-cuda arranges it, through the same code as the local GPU fit."),
    "client": Parameter(None, "the cluster (None: the current client, "
                        "`distributed.get_client()`)", optional=True, convert=as_given,
                        type_doc="distributed.Client or None"),
    "user_blocks": Parameter(
        None, "row blocks of the user side (None: twice the workers' threads)",
        kind="integer", minimum=1, optional=True,
        details="Blocks are contiguous ranges of ids; more blocks than rows leaves the "
                "extra ones out."),
    "item_blocks": Parameter(None, "row blocks of the item side (None: twice the "
                             "workers' threads)", kind="integer", minimum=1, optional=True),
    "broadcast_bytes": Parameter(
        BROADCAST_BYTES, "the size up to which the fixed side's factors travel whole to "
        "every block", kind="integer",
        details="Above it each block receives only the rows it touches, unless those are "
                "more than half the side (then it receives the whole side, which the "
                "blocks on a worker share)."),
    "checkpoint_every": Parameter(
        0, "sweeps between checkpoints of the factors in `checkpoint_dir` (0: never)",
        kind="integer",
        details="`fit(..., resume=checkpoint_dir)` continues from the last complete one."),
    "checkpoint_dir": Parameter(
        None, "where checkpoints go: a directory every worker can write (shared storage)",
        optional=True, convert=as_given, type_doc="str, Path or None"),
    "initialization": Parameter(
        "client", "where the initial factors are drawn", kind="choice",
        choices=INITIALIZATIONS,
        details='"client" (default): the initial factors ALSSolver draws from '
                "`random_state`, drawn here and sent with the first tasks: the model equals "
                'ALSSolver\'s. "workers": each block draws its own from (random_state, side, '
                "block), for data whose factors do not fit in one process; a different "
                "start from ALSSolver's (and so a different model, of the same quality)."),
}


def _local_only(name):
    """A method of a model in this process: on the Dask model, an error saying where."""
    def method(self, *args, **kwargs):
        raise NotImplementedError(
            f"DaskALSSolver.{name} is not distributed: the model's blocks live on the "
            f"workers. Call to_local() and use {name} on the ALSSolver it returns")
    method.__name__ = name
    return method


class DaskALSSolver(ALSSolver):
    """ALSSolver's fit on a Dask cluster: the same model from the same seed.

    The fit is ALSSolver's (rgals.training.run: the monitor, `tol`, callbacks, early
    stopping on `fit(..., validation=)`, the softmax monitor, the default regularization
    chosen on a holdout path) on a DaskExecutor (rgals.dask.executor), whose row blocks
    live on the workers.

    Parameters
    ----------
    {parameters}

    Workers should be started with `rgals.dask.worker_settings()` (glibc's malloc keeping
    freed blocks for reuse; under Dask's own setting a sweep takes about 1.5x as long);
    a fit on workers without it warns.

    Top-K weights (RG2/RGx `top_k`) are refreshed per user block: scores against the
    whole item side, the weights kept per block for damping, the pairs' c w shuffled to
    the item blocks, the refreshed user sums sent with the loss.

    Attributes after fit: those of ALSSolver, with `user_factors_`, `item_factors_` and
    `previous_item_factors_` Dask arrays (one chunk a block) and `user_items_` the
    checked matrix when the fit was given one (None for a DataFrame). `to_local()`
    gathers an ALSSolver; `save(directory)` writes the blocks.

    recommend, similar_items, similar_users, recalculate_user and recalculate_item are
    ALSSolver's, on the model gathered to this process once per fit (`to_local()`): the
    factors must take at most LOCAL_BYTES (1 GiB); larger ones are served from
    `to_local()` on a machine with the memory, or from the files `save` writes.
    """

    parameters = PARAMETERS

    def _check_device(self, params):
        """The GPUs are the workers': each task checks its own (a clear error there)."""

    def checked_params(self):
        params = super().checked_params()
        if params["checkpoint_every"] and self.checkpoint_dir is None:
            raise ValueError("checkpoint_every needs checkpoint_dir: a directory every "
                             "worker can write")
        return params

    def _client(self):
        require_dask()
        if self.client is not None:
            return self.client
        try:
            return distributed.get_client()
        except ValueError as error:
            raise ValueError("DaskALSSolver needs a Dask client: pass client=, or start "
                             "one first (distributed.Client(...))") from error

    # -- fitting -------------------------------------------------------------------------

    def fit(self, interactions, user_col: str = "user", item_col: str = "item",
            value_col: str | None = None, resume: FilePath | None = None,
            show_progress: bool = True, callback: Callback | None = None,
            validation: Matrix | None = None) -> DaskALSSolver:
        """Fit to `interactions`: a scipy.sparse users x items matrix (partitioned here)
        or a Dask DataFrame with integer `user_col` and `item_col` ids (an id's row is
        the id itself; gaps are rows without interactions, so ids should be dense: the
        factors have max id + 1 rows) and the values in `value_col` (None: the column
        "value" when the frame has one, else every pair counts 1; a named column must
        exist). `resume`: a checkpoint directory to continue from: it must have been
        written by a fit of the same data, parameters and blocks (checked: its
        checkpoint.json keeps a fingerprint of them). `validation`, `callback` and
        `show_progress`: as ALSSolver.fit's (`validation` a scipy.sparse users x items
        matrix, scored on the workers per user block). Returns self."""
        started = time.perf_counter()
        params = self.checked_params()
        if params["checkpoint_every"]:  # before the layout: not at the first checkpoint
            check_checkpoint_dir(self.checkpoint_dir)
        client = self._client()
        check_worker_malloc(client)
        workers = max(1, sum(client.nthreads().values()))
        d, dtype = params["factors"], params["dtype"]
        blocks = (self.user_blocks or 2 * workers, self.item_blocks or 2 * workers)
        layout = Layout.build(client, interactions, params["loss"], blocks,
                              (user_col, item_col, value_col), d * np.dtype(dtype).itemsize,
                              params["broadcast_bytes"])
        if validation is not None:
            validation = check_interactions(validation, "validation", allow_negative=True,
                                            shape=layout.shape)
        settings = {"solver": params["solver"], "cg_steps": params["cg_steps"],
                    "cg_tolerance": params["cg_tolerance"], "threads": params["num_threads"],
                    "backend": params["backend"]}
        executor = DaskExecutor(layout, {}, settings, dtype)
        callbacks, resumed = [], None
        if resume is not None or params["checkpoint_every"]:
            # what a checkpoint must match to be resumed: the data's hashes, the parameters
            identity = fit_identity(client, layout.parts, layout.shape, params,
                                    params["loss"], layout.ranges)
            if resume is not None:
                resumed = read_checkpoint(client, resume, identity, params["iterations"])
            if params["checkpoint_every"]:
                callbacks.append(Checkpoint(self, self.checkpoint_dir,
                                            params["checkpoint_every"],
                                            params["iterations"], identity))
        spec, monitor, path = self._train(
            params, executor, validation, show_progress, callback, started,
            callbacks=callbacks, resumed=resumed,
            draw_on_workers=params["initialization"] == "workers")
        factors = executor.factors
        self._ranges, self._blocks, self._client_used = layout.ranges, factors, client
        self._parts = layout.parts
        self.user_factors_ = dask_array(factors["user"], layout.ranges["user"], d, dtype)
        self.item_factors_ = dask_array(factors["item"], layout.ranges["item"], d, dtype)
        self.previous_item_factors_ = dask_array(factors["previous"], layout.ranges["item"],
                                                 d, dtype)
        self.interaction_totals_ = layout.totals
        self.loss_ = spec.bind(layout.totals)
        self.user_items_ = layout.user_items
        self.monitor_ = monitor
        self.regularization_path_ = path
        return self

    # -- results -------------------------------------------------------------------------

    def to_local(self, interactions: bool = True) -> ALSSolver:
        """The fitted model as an ALSSolver (factors gathered to this process; with
        `interactions`, the training matrix too, for `recommend`'s filtering)."""
        self._check_fitted()
        client = self._client_used
        params = {name: value for name, value in self.get_params().items()
                  if name in ALSSolver.parameters}
        params.update(backend="cpu")  # the factors are gathered here, as NumPy arrays
        model = ALSSolver(**params)
        model.user_factors_, model.item_factors_, model.previous_item_factors_ = (
            np.concatenate(gather(client, self._blocks[side]))
            for side in ("user", "item", "previous"))
        user_items = self.user_items_
        if interactions and user_items is None:
            user_items = gather_matrix(client, self._parts["user"], self.interaction_totals_)
        model.user_items_ = user_items if interactions else None
        model.interaction_totals_ = self.interaction_totals_
        model.loss_ = self.loss_
        model.monitor_ = self.monitor_
        model.regularization_path_ = self.regularization_path_
        return model

    def to_cpu(self) -> ALSSolver:
        """The fitted model gathered to this process: an ALSSolver with backend="cpu"
        (what `to_local()` gives)."""
        return self.to_local()

    def to_gpu(self) -> ALSSolver:
        """The fitted model gathered to this process: an ALSSolver with backend="gpu"."""
        require_gpu()  # before the gather, which may be long
        return self.to_local().to_gpu()

    def _factor_bytes(self):
        d, dtype = self.user_factors_.shape[1], self.user_factors_.dtype
        return (self.user_factors_.shape[0] + self.item_factors_.shape[0]) * d * dtype.itemsize

    def _served(self, method):
        """The ALSSolver that `method` runs on: to_local(), gathered once per fit."""
        self._check_fitted()
        cached = getattr(self, "_served_model", None)
        # a new fit makes new factor arrays: the model gathered from the last one is stale
        if cached is not None and cached[0] is self.user_factors_:
            return cached[1]
        size = self._factor_bytes()
        if size > LOCAL_BYTES:
            raise ValueError(
                f"DaskALSSolver.{method} gathers the factors to this process, but they take "
                f"{size:,} bytes, above rgals.dask.estimator.LOCAL_BYTES ({LOCAL_BYTES:,}): "
                f"call to_local() on a machine with enough memory and use the ALSSolver it "
                f"returns, or save(directory) and read the block files it writes")
        model = self.to_local()
        self._served_model = (self.user_factors_, model)
        return model

    recommend = _served_by("recommend")
    similar_items = _served_by("similar_items")
    similar_users = _served_by("similar_users")
    recalculate_user = _served_by("recalculate_user")
    recalculate_item = _served_by("recalculate_item")
    recommend_all = _served_by("recommend_all")
    save_recommendations = _served_by("save_recommendations")
    explain = _served_by("explain")
    user_norms = property(lambda self: self._served("user_norms").user_norms,
                          doc="|p_u| of every user, on the gathered model.")
    item_norms = property(lambda self: self._served("item_norms").item_norms,
                          doc="|q_i| of every item, on the gathered model.")
    partial_fit_users = _local_only("partial_fit_users")
    partial_fit_items = _local_only("partial_fit_items")

    def save(self, directory: FilePath, overwrite: bool = False, local: bool | None = None,
             interactions: bool = True) -> None:
        """Write one .npy per block and side (written by the workers: `directory` must
        be storage they share) and manifest.json, last; with `local` (None: when the
        factors take at most LOCAL_BYTES, 1 GiB) also what `rgals.load` and the command
        line (`rgals evaluate`, `rgals recommend`) read: the plain model
        (user_factors.npy, item_factors.npy, ...: ALSSolver.save) and the id maps
        user_ids.npy and item_ids.npy (a Dask fit's ids are its rows: 0, 1, 2, ...).

        interactions: the plain model keeps the training matrix (gathered from the user
        blocks when the fit was given a DataFrame), so that the loaded model's
        `recommend` leaves out the items each user has seen. With False it keeps only
        the matrix's totals: `recommend` and `recalculate_user` then need the
        `user_items` rows passed in, as in implicit (`rgals evaluate` and `rgals
        recommend` need --train).
        """
        self._check_fitted()
        check_bool(interactions, "interactions")
        files = {side: [f"blocks/{side}-{k:05d}.npy" for k in range(len(rows))]
                 for side, rows in (("user", self._ranges["user"]),
                                    ("item", self._ranges["item"]),
                                    ("previous", self._ranges["item"]))}
        names = [MANIFEST] + [name for group in files.values() for name in group]
        directory = prepare_directory(directory, names, overwrite, marker=MANIFEST)
        local = self._factor_bytes() <= LOCAL_BYTES if local is None else local
        if local:  # before any block: an existing plain model is checked first
            from ..export import ALL_FILES, MARKER
            check_directory(directory, ALL_FILES + ID_FILES, overwrite, marker=MARKER)
        (directory / "blocks").mkdir(exist_ok=True)
        write_blocks(self._client_used, directory, files, self._blocks)
        manifest = _manifest(self, files)
        write_json(directory / MANIFEST, manifest, indent=2)
        if local:
            model = self.to_local(interactions=interactions)
            # the id maps first: the model's params.json, written last, marks a complete save
            n_users, n_items = self.interaction_totals_.shape
            Interactions(sp.csr_matrix((n_users, n_items)), np.arange(n_users),
                         np.arange(n_items)).save_ids(directory, overwrite=overwrite)
            model.save(directory, overwrite=overwrite, interactions=interactions)


def _manifest(model, files):
    return {"format": "rgals-dask", "format_version": 1,
            "shape": list(model.interaction_totals_.shape),
            "factors": int(model.user_factors_.shape[1]),
            "dtype": np.dtype(model.user_factors_.dtype).name,
            "loss": model.loss_.to_dict(),
            "blocks": block_ranges(model._ranges), "files": files}

