"""Checkpoints of a distributed fit: every block of the factors (and the top-K state)
written by the workers into checkpoint_dir/sweep-N/, then checkpoint.json (atomic) names
them with the fit's identity (`fit_identity`: its data and the parameters that decide
its factors); resume checks that identity and the file, then reads the blocks back."""

import hashlib
import json
import math
import tempfile
from pathlib import Path, PurePosixPath

import numpy as np

from ..files import write_atomic, write_json
from ..training import Callback
from .cluster import RETRIES, gather
from .layout import global_matrix

CHECKPOINT = "checkpoint.json"
FORMAT = "rgals-dask-checkpoint"
SIDES = ("user", "item", "previous")  # "previous": the item factors of the sweep before
# what a checkpoint must share with the fit that resumes it, in the order errors list them
IDENTITY = ("shape", "factors", "dtype", "solver", "cg_steps", "cg_tolerance", "loss",
            "blocks", "data")


def write_block(array, path):
    write_atomic(path, lambda file: np.save(file, array, allow_pickle=False))
    return str(path)


def read_block(path, shape, dtype):
    """The array in `path`, which the checkpoint says is `dtype` of `shape`. It runs on a
    worker: the errors name the file, and survive the trip back to the client."""
    try:
        array = np.load(path, allow_pickle=False)
    except (OSError, ValueError, EOFError) as error:
        raise ValueError(f"cannot read the checkpoint block {path} ({error}): the checkpoint "
                         "is incomplete or damaged, or this worker does not see its "
                         "directory (checkpoint_dir must be storage every worker shares); "
                         "resume from an intact checkpoint, or fit again without resume") \
            from None
    if not isinstance(array, np.ndarray) or array.shape != tuple(shape) or \
            array.dtype != np.dtype(dtype):
        what = (f"a {array.dtype} array of shape {array.shape}"
                if isinstance(array, np.ndarray) else "no single array")
        raise ValueError(f"the checkpoint block {path} holds {what}; the checkpoint says "
                         f"{np.dtype(dtype)} {tuple(shape)}: the file was replaced or "
                         "damaged; resume from an intact checkpoint, or fit again without "
                         "resume")
    return array


def write_blocks(client, directory, files, blocks):
    writes = [client.submit(write_block, block, str(directory / name), retries=RETRIES)
              for side in files for block, name in zip(blocks[side], files[side])]
    gather(client, writes)


def block_ranges(ranges):
    """[start, stop] of each block of the three factor sides, for a manifest (the item
    factors of the sweep before are blocked as the items)."""
    return {side: [[rows.start, rows.stop] for rows in ranges["item" if side == "previous"
                                                             else side]]
            for side in SIDES}


# -- what a checkpoint must match -------------------------------------------------------

def block_digest(part, n_items):
    """(pairs, sha256 of the row sums, sha256 of the pairs) of one user block (a
    layout.Block), in global item ids: a block with local columns hashes as the same
    block with global ones, and int32 or int64 indices hash alike."""
    matrix = global_matrix(part, n_items)
    if not matrix.has_sorted_indices:
        matrix = matrix.sorted_indices()
    rows = part.block.rows
    pairs = hashlib.sha256(np.array([rows.start, rows.stop], np.int64).tobytes())
    for array, dtype in ((matrix.indptr, np.int64), (matrix.indices, np.int64),
                         (matrix.data, np.float64)):
        pairs.update(np.ascontiguousarray(array, dtype=dtype).tobytes())
    sums = np.asarray(matrix.sum(axis=1), dtype=np.float64).ravel()
    return int(matrix.nnz), hashlib.sha256(sums.tobytes()).hexdigest(), pairs.hexdigest()


def fit_identity(client, parts, shape, params, loss, ranges):
    """What a checkpoint must share with the fit that resumes it, as a JSON-ready dict:
    the parameters that decide the factors (`params` of checked_params, the bound
    `loss`, the block `ranges`) and a fingerprint of the data, hashed per user block on
    the workers (`parts`: {side: futures of layout.Block}) and combined here in order.
    One pass over the user blocks; the fit computes it once."""
    digests = gather(client, [client.submit(block_digest, part, shape[1], retries=RETRIES)
                              for part in parts["user"]])

    def combined(index):
        return hashlib.sha256("".join(digest[index] for digest in digests).encode()).hexdigest()

    return {"shape": [int(size) for size in shape], "factors": int(params["factors"]),
            "dtype": np.dtype(params["dtype"]).name, "solver": params["solver"],
            "cg_steps": int(params["cg_steps"]),
            "cg_tolerance": float(params["cg_tolerance"]),
            "loss": json.loads(json.dumps(loss.to_dict())),  # as it reads back
            "blocks": block_ranges(ranges),
            "data": {"nnz": sum(digest[0] for digest in digests),
                     "row sums": combined(1), "pairs": combined(2)}}


def _differences(saved, identity):
    """What differs between a checkpoint's identity and this fit's, in words."""
    found = []
    for name in IDENTITY[:-1]:
        mine, theirs = identity[name], saved[name]
        if theirs == mine:
            continue
        if name == "loss" and isinstance(theirs, dict) and theirs.get("name") == mine["name"]:
            found += [f"its loss's {key} is {theirs.get(key)!r}, this fit's {mine.get(key)!r}"
                      for key in sorted(set(mine) | set(theirs))
                      if theirs.get(key) != mine.get(key)]
        elif name == "blocks" and [len(theirs[side]) for side in ("user", "item")] != \
                [len(mine[side]) for side in ("user", "item")]:
            found.append(f"its blocks are {len(theirs['user'])} user x {len(theirs['item'])} "
                         f"item blocks, this fit's {len(mine['user'])} x {len(mine['item'])} "
                         "(give user_blocks= and item_blocks= as that fit had them)")
        else:
            found.append(f"its {name} is {theirs!r}, this fit's {mine!r}")
    data = identity["data"]
    differ = [f"nnz {saved['data'].get('nnz')!r}, this fit's {data['nnz']}"
              if key == "nnz" else f"{key} hash"
              for key in data if saved["data"].get(key) != data[key]
              # the hashes are per block: with other blocks only the nnz compares
              if key == "nnz" or saved["blocks"] == identity["blocks"]]
    if differ:
        found.append(f"its data differs ({'; '.join(differ)})")
    return found


# -- checkpoint_dir and checkpoint.json --------------------------------------------------

def check_checkpoint_dir(directory):
    """Fail before any work if checkpoints cannot go to `directory`: it must be a
    directory, or a path that can be created, where this process can write. Creates
    nothing (a fit that fails its checks leaves no trace). The workers write the blocks:
    it must also be storage they share, which only they can tell."""
    directory = Path(directory)
    # the directory itself, or the nearest folder above it that the fit would create it in
    existing = directory.absolute()
    try:
        while not existing.exists() and existing != existing.parent:
            existing = existing.parent
    except OSError as error:
        raise ValueError(f"checkpoint_dir {directory} cannot be checked ({error}): choose a "
                         "directory this process and the workers can write") from None
    if not existing.is_dir():
        where = ("exists and is not a directory" if existing == directory.absolute()
                 else f"cannot be created: {existing} is a file, not a directory")
        raise ValueError(f"checkpoint_dir {directory} {where}; choose a directory path "
                         "(it is created if missing)")
    try:
        with tempfile.TemporaryFile(dir=existing):  # removed on closing: nothing stays
            pass
    except OSError as error:
        what = ("is" if existing == directory.absolute()
                else f"would be created in {existing}, which is")
        raise ValueError(f"checkpoint_dir {directory} {what} not writable "
                         f"({error.strerror or error}): choose a directory this process and "
                         "the workers can write, or give them the permission") from None
    return directory


def checkpoint_manifest(directory):
    """checkpoint.json of `directory` as written (None when there is none); a file that
    is not JSON is a clear error naming it."""
    path = Path(directory) / CHECKPOINT
    if not path.is_file():
        return None
    try:
        return json.loads(path.read_text())
    except ValueError as error:  # bad JSON, or bytes that are not UTF-8
        raise ValueError(f"{path} is damaged: it is not valid JSON ({error}); resume from "
                         "an intact checkpoint, or fit again without resume") from None


def _is_int(value):
    return isinstance(value, int) and not isinstance(value, bool)


def _strings(value):
    return isinstance(value, list) and all(isinstance(item, str) for item in value)


def _pair_of_ints(value):
    return isinstance(value, list) and len(value) == 2 and all(map(_is_int, value))


def _top_k_sound(top_k):
    """Whether a manifest's "top_k" is what write_checkpoint writes of
    DaskExecutor.reweighting_state: {name: file names} with their lengths, the counter, and with
    weights their files and the user sums."""
    if not isinstance(top_k, dict):
        return False
    names, lengths = top_k.get("files"), top_k.get("lengths")
    if not (isinstance(names, dict) and isinstance(lengths, dict)
            and sorted(names) == sorted(lengths)):
        return False
    for name in names:
        counts = lengths[name]
        if not (_strings(names[name]) and isinstance(counts, list)
                and len(counts) == len(names[name])
                and all(_is_int(count) and count >= 0 for count in counts)):
            return False
    refreshed, sums = top_k.get("refreshed"), top_k.get("user_sums")
    if not (_is_int(top_k.get("sweeps")) and isinstance(refreshed, bool)
            and (sums is None or isinstance(sums, str))):
        return False
    return not refreshed or (sums is not None and {
        "weights", "user_confidence", "item_confidence"} <= set(names))


def _checked(manifest, path, iterations):
    """The manifest once its structure is sound: a clear error naming `path` otherwise."""
    def damaged(problem):
        return ValueError(f"{path} is damaged or was edited: {problem}; resume from an "
                          "intact checkpoint, or fit again without resume")

    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        raise damaged(f'it is not an rgals Dask checkpoint (no "format": "{FORMAT}")')
    missing = [name for name in ("sweep", "files") + IDENTITY if name not in manifest]
    if missing:
        raise damaged(f"it has no {', '.join(missing)}")
    sweep = manifest["sweep"]
    if not _is_int(sweep) or sweep < 0:
        raise damaged(f"its sweep is {sweep!r}, not a whole number >= 0")
    if sweep > iterations:
        raise ValueError(f"{path} is the checkpoint after sweep {sweep}, past this fit's "
                         f"iterations={iterations}: resume with iterations >= {sweep}")
    blocks, files = manifest["blocks"], manifest["files"]
    if not (isinstance(blocks, dict) and sorted(blocks) == sorted(SIDES) and all(
            isinstance(ranges, list) and all(_pair_of_ints(rows) for rows in ranges)
            for ranges in blocks.values())):
        raise damaged('its "blocks" is not {side: [[start, stop], ...]} for the sides '
                      f"{', '.join(SIDES)}")
    if not (isinstance(files, dict) and sorted(files) == sorted(SIDES) and all(
            _strings(files[side]) and len(files[side]) == len(blocks[side])
            for side in SIDES)):
        raise damaged('its "files" is not {side: [one file name per block]} for the sides '
                      f"{', '.join(SIDES)}")
    if not isinstance(manifest["data"], dict) or not isinstance(manifest["loss"], dict):
        raise damaged('its "data" or "loss" is not a dict')
    if manifest.get("top_k") is not None and not _top_k_sound(manifest["top_k"]):
        raise damaged('its "top_k" is not the top-K state a fit writes')
    if not _resolved_sound(manifest.get("resolved")):
        raise damaged('its "resolved" is not {"regularization": number, "path": null or '
                      '[[lam, sweeps, holdout ndcg], ...]}')
    return manifest


def _resolved_sound(resolved):
    """Whether a manifest's "resolved" is what a fit writes (or absent)."""
    if resolved is None:
        return True
    if not isinstance(resolved, dict) or not _is_number(resolved.get("regularization")):
        return False
    path = resolved.get("path")
    return path is None or (isinstance(path, list) and all(
        isinstance(stage, list) and len(stage) == 3 and _is_number(stage[0])
        and _is_int(stage[1]) and _is_number(stage[2]) for stage in path))


def _is_number(value):
    return isinstance(value, (int, float)) and not isinstance(value, bool) and \
        math.isfinite(value)


def _inside(directory, name, path):
    """directory/name, once it is known to stay inside `directory`: a checkpoint's own
    files only, never an absolute path, "..", or a link out of it."""
    relative = PurePosixPath(name)
    if not relative.parts or relative.is_absolute() or Path(name).is_absolute() or \
            ".." in relative.parts:
        raise ValueError(f"{path} is damaged or was edited: it names the block file "
                         f"{name!r}, which is not a path inside {directory}; resume from an "
                         "intact checkpoint, or fit again without resume")
    full = directory / relative
    if not full.resolve().is_relative_to(directory.resolve()):
        raise ValueError(f"{path} names the block file {name!r}, a link to "
                         f"{full.resolve()} outside {directory}: a checkpoint reads only its "
                         "own files; resume from an intact checkpoint, or fit again without "
                         "resume")
    return full


def _read(client, directory, manifest, identity):
    """(the state, the top-K state) of a checked manifest: the block reads are submitted,
    and waited for here so that a missing or wrong file fails now, named."""
    path = directory / CHECKPOINT
    d, dtype = identity["factors"], identity["dtype"]
    state = {side: [client.submit(read_block, str(_inside(directory, name, path)),
                                  (rows[1] - rows[0], d), dtype, retries=RETRIES)
                    for name, rows in zip(manifest["files"][side], identity["blocks"][side])]
             for side in SIDES}
    futures = [future for side in SIDES for future in state[side]]
    saved = manifest.get("top_k")  # there exactly when the loss (checked) has top_k
    top_k = None
    if saved is not None:
        arrays = {name: [client.submit(read_block, str(_inside(directory, file, path)),
                                       (length,), np.float64, retries=RETRIES)
                         for file, length in zip(files, saved["lengths"][name])]
                  for name, files in saved["files"].items()}
        futures += [future for blocks in arrays.values() for future in blocks]
        sums = (None if saved["user_sums"] is None else
                read_block(_inside(directory, saved["user_sums"], path),
                           (identity["shape"][0],), np.float64))
        top_k = ({"sweeps": saved["sweeps"], "refreshed": saved["refreshed"]}, arrays, sums)
    gather(client, [client.submit(np.shape, future) for future in futures])
    return state, top_k


def write_checkpoint(client, directory, sweep, state, identity, top_k=None, resolved=None):
    """The factors after `sweep` (and `top_k`, DaskExecutor.reweighting_state) into
    directory/sweep-NNNNNN/, then checkpoint.json (atomic) names it with the fit's
    `identity` (fit_identity) and what the fit `resolved` from the data (the
    regularization and the path's stages); the previous checkpoint's folder goes once
    the new one is named. Returns (the state, the top-K state) read back from the
    files."""
    directory = Path(directory)
    folder = f"sweep-{sweep:06d}"
    (directory / folder).mkdir(parents=True, exist_ok=True)
    files = {side: [f"{folder}/{side}-{k:05d}.npy" for k in range(len(state[side]))]
             for side in SIDES}
    write_blocks(client, directory, files, state)
    previous = _previous_sweep(directory)
    manifest = {"format": FORMAT, "sweep": sweep, **identity, "files": files,
                "resolved": resolved}
    if top_k is not None:
        meta, arrays, lengths, user_sums = top_k
        extra = {name: [f"{folder}/{name}-{k:05d}.npy" for k in range(len(blocks))]
                 for name, blocks in arrays.items()}
        write_blocks(client, directory, extra, arrays)
        sums = None
        if user_sums is not None:
            sums = f"{folder}/user_sums.npy"
            write_atomic(directory / sums,
                         lambda file: np.save(file, user_sums, allow_pickle=False))
        manifest["top_k"] = {**meta, "files": extra, "lengths": lengths, "user_sums": sums}
    write_json(directory / CHECKPOINT, manifest, indent=2)
    if previous is not None and previous != sweep:
        old = directory / f"sweep-{previous:06d}"
        for path in sorted(old.glob("*.npy")):
            path.unlink()
        if old.is_dir() and not any(old.iterdir()):
            old.rmdir()
    return _read(client, directory, manifest, identity)


def _previous_sweep(directory):
    """The sweep of the checkpoint already in `directory` (None: none, or one too
    damaged to tell), whose folder a new checkpoint replaces."""
    try:
        manifest = checkpoint_manifest(directory)
    except ValueError:
        return None
    sweep = manifest.get("sweep") if isinstance(manifest, dict) else None
    return sweep if _is_int(sweep) and sweep >= 0 else None


def read_checkpoint(client, directory, identity, iterations):
    """(its sweep, {side: futures of the blocks}, the top-K state for
    DaskExecutor.restore_reweighting or None, what the fit resolved from the data or
    None) of the checkpoint in `directory`, once it is known to be sound, within
    `iterations` and written by a fit with this `identity` (fit_identity): anything else
    is a clear error."""
    directory = Path(directory)
    manifest = checkpoint_manifest(directory)
    if manifest is None:
        raise FileNotFoundError(f"{directory} holds no checkpoint ({CHECKPOINT}); "
                                "checkpoint_every and checkpoint_dir write one")
    manifest = _checked(manifest, directory / CHECKPOINT, iterations)
    differences = _differences(manifest, identity)
    if differences:
        raise ValueError(f"the checkpoint in {directory} was written by another fit: "
                         f"{'; '.join(differences)}. Resume with the same data, parameters "
                         "and blocks, or fit again without resume")
    if (manifest.get("top_k") is None) != (identity["loss"].get("top_k") is None):
        raise ValueError(f"{directory / CHECKPOINT} is damaged or was edited: its top-K "
                         "state does not match its loss; resume from an intact checkpoint, "
                         "or fit again without resume")
    state, top_k = _read(client, directory, manifest, identity)
    return manifest["sweep"], state, top_k, manifest.get("resolved")


class Checkpoint(Callback):
    """Writes a checkpoint every `every` sweeps and after the last (`iterations`), then
    goes on from the files: a lost block is read again, not recomputed from every sweep
    before (the graph stays bounded). What the fit resolved from the data (the
    regularization and the path's stages, from `model`) goes with it."""

    def __init__(self, model, directory, every, iterations, identity):
        self.model, self.directory, self.every = model, directory, every
        self.iterations, self.identity = iterations, identity

    def after_sweep(self, state, record):
        if state.sweep % self.every and state.sweep != self.iterations:
            return False
        executor = state.executor
        path = self.model.regularization_path_
        resolved = {"regularization": float(state.loss.regularization),
                    "path": None if path is None else [
                        [stage.regularization, stage.sweeps, stage.holdout_ndcg]
                        for stage in path]}
        factors, top_k = write_checkpoint(executor.client, self.directory, state.sweep,
                                          executor.factors, self.identity,
                                          executor.reweighting_state(), resolved)
        executor.factors.update(factors)
        if top_k is not None:
            executor.restore_reweighting(*top_k)
        return False
