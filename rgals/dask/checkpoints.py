"""Checkpoints of a distributed fit: every block of the factors (and the top-K state)
written by the workers into checkpoint_dir/sweep-N/, then checkpoint.json (atomic) names
them; resume reads them back."""

import json
from pathlib import Path

import numpy as np

from ..files import write_atomic
from .cluster import RETRIES, gather

CHECKPOINT = "checkpoint.json"


def write_block(array, path):
    write_atomic(path, lambda file: np.save(file, array, allow_pickle=False))
    return str(path)


def read_block(path, shape, dtype):
    array = np.load(path, allow_pickle=False)
    if array.shape != tuple(shape) or array.dtype != np.dtype(dtype):
        raise ValueError(f"{path} holds a {array.dtype} array of shape {array.shape}; the "
                         f"checkpoint says {np.dtype(dtype)} {tuple(shape)}")
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
            for side in ("user", "item", "previous")}


def write_checkpoint(client, directory, sweep, state, ranges, shape, d, dtype, loss,
                      top_k=None):
    """The factors after `sweep` (and `top_k`, _Fit.top_k_state) into
    directory/sweep-NNNNNN/, then checkpoint.json (atomic) names it; the previous
    checkpoint's folder goes once the new one is named. Returns (the state, the top-K
    state) read back from the files."""
    directory = Path(directory)
    folder = f"sweep-{sweep:06d}"
    (directory / folder).mkdir(parents=True, exist_ok=True)
    files = {side: [f"{folder}/{side}-{k:05d}.npy" for k in range(len(state[side]))]
             for side in ("user", "item", "previous")}
    write_blocks(client, directory, files, state)
    previous = checkpoint_manifest(directory)
    manifest = {"format": "rgals-dask-checkpoint", "sweep": sweep, "shape": list(shape),
                "factors": d, "dtype": np.dtype(dtype).name, "loss": loss.to_dict(),
                "blocks": block_ranges(ranges), "files": files}
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
    write_atomic(directory / CHECKPOINT,
                 lambda file: file.write(json.dumps(manifest, indent=2).encode() + b"\n"))
    if previous is not None and previous["sweep"] != sweep:
        old = directory / f"sweep-{previous['sweep']:06d}"
        for path in sorted(old.glob("*.npy")):
            path.unlink()
        if old.is_dir() and not any(old.iterdir()):
            old.rmdir()
    return read_checkpoint(client, directory, shape, ranges, d, dtype, loss)[1:]


def checkpoint_manifest(directory):
    path = Path(directory) / CHECKPOINT
    if not path.is_file():
        return None
    return json.loads(path.read_text())


def read_checkpoint(client, directory, shape, ranges, d, dtype, loss):
    """(its sweep, {side: futures of the blocks}, the top-K state for
    _Fit.restore_top_k or None) of the checkpoint in `directory`."""
    manifest = checkpoint_manifest(directory)
    if manifest is None:
        raise FileNotFoundError(f"{directory} holds no checkpoint ({CHECKPOINT}); "
                                "checkpoint_every and checkpoint_dir write one")
    expected = {"shape": list(shape), "factors": d, "dtype": np.dtype(dtype).name,
                "loss": json.loads(json.dumps(loss.to_dict())),
                "blocks": block_ranges(ranges)}
    for name, value in expected.items():
        if manifest.get(name) != value:
            raise ValueError(f"the checkpoint in {directory} was written by another fit: "
                             f"its {name} is {manifest.get(name)!r}, this fit's "
                             f"{value!r}; resume with the same data, parameters and blocks")
    state = {side: [client.submit(read_block, str(Path(directory) / name),
                                  (rows[1] - rows[0], d), dtype, retries=RETRIES)
                    for name, rows in zip(manifest["files"][side], manifest["blocks"][side])]
             for side in ("user", "item", "previous")}
    saved = manifest.get("top_k")  # there exactly when the loss (checked) has top_k
    top_k = None
    if saved is not None:
        arrays = {name: [client.submit(read_block, str(Path(directory) / path), (length,),
                                       np.float64, retries=RETRIES)
                         for path, length in zip(paths, saved["lengths"][name])]
                  for name, paths in saved["files"].items()}
        sums = (None if saved["user_sums"] is None else
                read_block(Path(directory) / saved["user_sums"], (shape[0],), np.float64))
        top_k = ({"sweeps": saved["sweeps"], "refreshed": saved["refreshed"]}, arrays, sums)
    return manifest["sweep"], state, top_k
