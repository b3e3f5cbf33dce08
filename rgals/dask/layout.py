"""The layout of a distributed fit (design.md 6, Spark's ALS): the interactions shuffled once
into user-row and item-row blocks (both orientations) that stay on the workers, from a
scipy.sparse matrix or a Dask DataFrame, with the checks of the frame; and the
InteractionTotals gathered from the blocks."""

from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp

from ..backend import get_backend
from ..prepared import InteractionTotals, RowBlock, prepare, row_ranges
from ..validation import check_interactions
from .cluster import RETRIES, gather, held

SIDES = ("user", "item")
# a block receives only the other side's rows it touches when they are at most this
# fraction of the side (read at each build: tests patch it)
TOUCHED_AT_MOST = 0.5


@dataclass
class Block:
    """One block of one side on a worker: its RowBlock (columns are positions in
    `touched` when set, else ids of the other side) and the other side's ids it uses."""

    block: RowBlock
    touched: object = None  # sorted ids of the other side, or None (columns are ids)


def global_matrix(part, n_columns=None):
    """The block's matrix with the other side's ids as columns (`n_columns`: its width,
    None: up to the largest id it touches)."""
    matrix = part.block.matrix
    if part.touched is None:
        return matrix
    if n_columns is None:
        n_columns = int(part.touched.max(initial=-1)) + 1
    return sp.csr_matrix((matrix.data, part.touched[matrix.indices], matrix.indptr),
                         shape=(matrix.shape[0], n_columns))


def _split(frame, user_col, item_col, value_col, user_edges, item_edges):
    """One partition's pairs as {(side, block): (rows, columns, values)}, rows in the
    block's own numbering."""
    users = frame[user_col].to_numpy(dtype=np.int64)
    items = frame[item_col].to_numpy(dtype=np.int64)
    values = (np.ones(len(frame)) if value_col is None
              else frame[value_col].to_numpy(dtype=np.float64))
    pieces = {}
    for side, rows, columns, edges in (("user", users, items, user_edges),
                                       ("item", items, users, item_edges)):
        blocks = np.searchsorted(edges, rows, side="right") - 1
        for block in np.unique(blocks):
            mine = blocks == block
            pieces[side, int(block)] = (rows[mine] - edges[block], columns[mine], values[mine])
    return pieces


def piece(pieces, key):
    return pieces.get(key)


def _partition_summary(frame, user_col, item_col, value_col):
    """What the checks and the shape need of one partition."""
    summary = {"pairs": len(frame)}
    for name in (user_col, item_col):
        column = frame[name]
        summary[name] = (int(column.min()), int(column.max())) if len(frame) else None
        summary[f"{name} nulls"] = int(column.isna().sum())
    if value_col is not None:
        values = frame[value_col].to_numpy(dtype=np.float64, na_value=np.nan)
        finite = np.isfinite(values)
        summary["nonfinite"] = int((~finite).sum())
        summary["negative"] = int((values[finite] < 0).sum())
    return summary


def _build(side, rows, n_columns, *pieces):
    """A block's RowBlock from its pieces: canonical CSR (duplicates summed, zeros
    dropped, float64 values), rows in the block's numbering."""
    pieces = [piece for piece in pieces if piece is not None]
    n_rows = rows.stop - rows.start
    if pieces:
        row, column, value = (np.concatenate(parts) for parts in zip(*pieces))
    else:
        row = column = np.zeros(0, np.int64)
        value = np.zeros(0)
    matrix = sp.csr_matrix((value, (row, column)), shape=(n_rows, n_columns))
    matrix.sum_duplicates()
    matrix.eliminate_zeros()
    return Block(RowBlock(side, rows, matrix, slice(0, matrix.nnz),
                           np.asarray(matrix.sum(axis=1), dtype=np.float64).ravel()))


def _nnz(part):
    return part.block.matrix.nnz


def _with_offset(part, offset):
    block = part.block
    return Block(RowBlock(block.side, block.rows, block.matrix,
                           slice(offset, offset + block.matrix.nnz), block.row_sums))


def localised(part, n_columns, most=1.0):
    """The block with its columns renumbered to the other side's ids it touches, when
    they are at most the fraction `most` of that side's `n_columns` ids; else as it is.
    Past that, its rows would cost more to gather each half step than the whole side's
    extra bytes, which a worker's blocks share."""
    matrix = part.block.matrix
    touched, local = np.unique(matrix.indices, return_inverse=True)
    if touched.size > most * n_columns:
        return part
    renumbered = sp.csr_matrix((matrix.data, local.astype(matrix.indices.dtype),
                                matrix.indptr), shape=(matrix.shape[0], len(touched)))
    return Block(RowBlock(part.block.side, part.block.rows, renumbered, part.block.pairs,
                           part.block.row_sums), touched)


def touched_ids(part):
    return part.touched


def has_local_columns(part):
    return part.touched is not None


def pair_slice(part):
    return part.block.pairs


def _block_totals(part):
    """(counts, sums, (smallest, largest |value|) or None) of one block's rows."""
    matrix = part.block.matrix
    values = abs(matrix.data)
    return (np.diff(matrix.indptr).astype(np.int64), part.block.row_sums,
            (float(values.min()), float(values.max())) if values.size else None)


def lay_out(client, interactions, loss, user_blocks, item_blocks, user_col, item_col,
            value_col):
    """(shape, {side: [futures of Block]}, the checked matrix or None). `value_col`: the
    frame's values column (None: "value" when the frame has one, else each pair counts
    1); a matrix's values are its entries."""
    if sp.issparse(interactions) or isinstance(interactions, np.ndarray):
        matrix = check_interactions(interactions, "interactions",
                                    allow_negative=loss.allows_negative, loss_name=loss.name)
        data = prepare(matrix, get_backend("cpu"))
        parts = {side: [client.submit(held, Block(block))
                        for block in data.blocks(side, count)]
                 for side, count in (("user", user_blocks), ("item", item_blocks))}
        return matrix.shape, parts, matrix
    if not hasattr(interactions, "to_delayed"):
        raise TypeError(f"interactions must be a scipy.sparse matrix or a Dask DataFrame; "
                        f"got {type(interactions).__name__}")
    return _layout_frame(client, interactions, loss, user_blocks, item_blocks, user_col,
                         item_col, value_col)


def _layout_frame(client, frame, loss, user_blocks, item_blocks, user_col, item_col,
                  value_col):
    missing = [name for name in (user_col, item_col) if name not in frame.columns]
    if missing:
        raise ValueError(f"the DataFrame has no column {missing[0]!r} (it has "
                         f"{', '.join(map(str, frame.columns))}): pass user_col= and "
                         "item_col= naming the id columns")
    for name in (user_col, item_col):
        if frame[name].dtype.kind not in "iu":
            raise ValueError(f"column {name!r} holds {frame[name].dtype}, not integer ids: "
                             "map the ids to integers 0..n-1 first (e.g. "
                             "dask.dataframe's categorize, or rgals.data.read for files)")
    if value_col is None:  # the default: the column "value" when there is one
        value_col = "value" if "value" in frame.columns else None
    elif value_col not in frame.columns:  # named, so meant: counting 1s would be wrong
        raise ValueError(f"the DataFrame has no column {value_col!r} (it has "
                         f"{', '.join(map(str, frame.columns))}): pass value_col= naming "
                         "the values column, or leave it out to count each pair once")
    if value_col is not None and frame[value_col].dtype.kind not in "iuf":
        raise ValueError(f"column {value_col!r} holds {frame[value_col].dtype}, not numbers")
    partitions = client.compute(frame.to_delayed())
    summaries = gather(client, [client.submit(_partition_summary, partition, user_col,
                                               item_col, value_col, retries=RETRIES)
                                 for partition in partitions])
    pairs = sum(summary["pairs"] for summary in summaries)
    if pairs == 0:
        raise ValueError("the DataFrame has no rows: nothing to fit")
    shape = []
    for name in (user_col, item_col):
        nulls = sum(summary[f"{name} nulls"] for summary in summaries)
        if nulls:
            raise ValueError(f"column {name!r} has {nulls} missing ids; drop those rows")
        low = min(summary[name][0] for summary in summaries if summary[name])
        high = max(summary[name][1] for summary in summaries if summary[name])
        if low < 0:
            raise ValueError(f"column {name!r} has negative ids (smallest {low}); ids are "
                             "rows of the matrix, 0 and up")
        shape.append(high + 1)
    if value_col is not None:
        nonfinite = sum(summary["nonfinite"] for summary in summaries)
        if nonfinite:
            raise ValueError(f"column {value_col!r} has {nonfinite} missing or infinite "
                             "values; drop or fill them")
        negative = sum(summary["negative"] for summary in summaries)
        if negative and not loss.allows_negative:
            raise ValueError(f"column {value_col!r} has {negative} negative values, which "
                             f"loss {loss.name!r} does not take (negative feedback needs "
                             "loss='ials')")
    edges = {side: np.array([rows.start for rows in row_ranges(shape[index], count)]
                            + [shape[index]])
             for index, (side, count) in enumerate((("user", user_blocks),
                                                    ("item", item_blocks)))}
    splits = [client.submit(_split, partition, user_col, item_col, value_col,
                            edges["user"], edges["item"], retries=RETRIES)
              for partition in partitions]
    parts = {}
    for index, side in enumerate(SIDES):
        n_columns = shape[1 - index]
        built = []
        for k, rows in enumerate(row_ranges(shape[index], len(edges[side]) - 1)):
            pieces = [client.submit(piece, split, (side, k)) for split in splits]
            built.append(client.submit(_build, side, rows, n_columns, *pieces,
                                       retries=RETRIES))
        # each block's pairs sit after the previous blocks' in that side's order
        counts = gather(client, [client.submit(_nnz, part) for part in built])
        offsets = np.concatenate(([0], np.cumsum(counts)[:-1]))
        parts[side] = [client.submit(_with_offset, part, int(offset), retries=RETRIES)
                       for part, offset in zip(built, offsets)]
    return tuple(shape), parts, None


def gather_totals(client, parts, shape):
    """InteractionTotals from the blocks (counts and sums per row of each side)."""
    by_side = {side: gather(client, [client.submit(_block_totals, part)
                                      for part in parts[side]]) for side in SIDES}
    ranges = [part for side in SIDES for part in by_side[side] if part[2] is not None]
    value_range = ((min(part[2][0] for part in ranges), max(part[2][1] for part in ranges))
                   if ranges else None)
    return InteractionTotals(
        shape=tuple(shape),
        user_counts=np.concatenate([part[0] for part in by_side["user"]]),
        user_sums=np.concatenate([part[1] for part in by_side["user"]]),
        item_counts=np.concatenate([part[0] for part in by_side["item"]]),
        item_sums=np.concatenate([part[1] for part in by_side["item"]]),
        value_range=value_range)


def gather_matrix(client, parts, totals):
    """The users x items CSR from the user blocks (their columns renumbered back)."""
    return sp.vstack([global_matrix(part, totals.shape[1]) for part in gather(client, parts)],
                     format="csr")


# -- the layout a fit works on -----------------------------------------------------------

def local_ids(ids, rows):
    """Those of the sorted global `ids` that fall in the block `rows`, numbered from the
    block's first row."""
    start, stop = np.searchsorted(ids, [rows.start, rows.stop])
    return ids[start:stop] - rows.start


def _block_rows(part, n_columns, local_rows):
    """Rows `local_rows` of a block, with the other side's ids as columns."""
    return global_matrix(part, n_columns)[local_rows]


def _without(part, removed, n_columns):
    """The block less the pairs of `removed` (its rows, global columns), columns local
    again when they were."""
    block = part.block
    matrix = (global_matrix(part, n_columns) - removed).tocsr()
    matrix.eliminate_zeros()  # the removed pairs cancel exactly
    matrix.sort_indices()
    rest = Block(RowBlock(block.side, block.rows, matrix, slice(0, matrix.nnz),
                          np.asarray(matrix.sum(axis=1), dtype=np.float64).ravel()))
    return rest if part.touched is None else localised(rest, n_columns)


def _product(part, n_columns, vector):
    """The block's rows times `vector` (over the other side's ids)."""
    return global_matrix(part, n_columns) @ vector


def _transposed_product(part, n_columns, vector):
    """The block's rows, transposed, times `vector` (the block's part of it)."""
    return global_matrix(part, n_columns).T @ vector


@dataclass
class Layout:
    """The blocks of one fit's data on the cluster: `parts` {side: futures of Block},
    their `totals`, and the checked matrix when the fit was given one (None for a
    DataFrame). `local_columns` {side: a bool per block}: whether the block's columns
    are local (it receives the fixed side's rows it touches) or the other side's ids (it
    receives the whole fixed side)."""

    client: object
    shape: tuple
    parts: dict
    totals: InteractionTotals
    user_items: object
    local_columns: dict

    @classmethod
    def build(cls, client, interactions, loss, blocks, columns, row_bytes, broadcast_bytes):
        """Lay `interactions` out in `blocks` = (user blocks, item blocks); `columns`:
        (user_col, item_col, value_col) of a DataFrame; `row_bytes`: the bytes of one
        row of factors, so that the factors of a side take rows x row_bytes. The fixed
        side travels whole when its factors take at most `broadcast_bytes`; past that,
        each block that touches at most TOUCHED_AT_MOST of it receives only those rows."""
        shape, parts, user_items = lay_out(client, interactions, loss, *blocks, *columns)
        totals = gather_totals(client, parts, shape)
        if totals.user_counts.sum() == 0:
            raise ValueError("the interactions are empty: nothing to fit")
        local_columns = {}
        for index, side in enumerate(SIDES):
            n_columns = shape[1 - index]
            if n_columns * row_bytes > broadcast_bytes:
                parts[side] = [client.submit(localised, part, n_columns, TOUCHED_AT_MOST,
                                             retries=RETRIES) for part in parts[side]]
                local_columns[side] = gather(client, [client.submit(has_local_columns, part)
                                                      for part in parts[side]])
            else:
                local_columns[side] = [False] * len(parts[side])
        return cls(client, shape, parts, totals, user_items, local_columns)

    @property
    def ranges(self):
        return {side: row_ranges(self.shape[index], len(self.parts[side]))
                for index, side in enumerate(SIDES)}

    def submit(self, function, *args):
        return self.client.submit(function, *args, retries=RETRIES)

    def rows(self, users):
        """The training rows of `users` (sorted ids), a CSR gathered here."""
        users = np.asarray(users)
        pieces = []
        for part, rows in zip(self.parts["user"], self.ranges["user"]):
            mine = local_ids(users, rows)
            if mine.size:
                pieces.append(self.submit(_block_rows, part, self.shape[1], mine))
        if not pieces:
            return sp.csr_matrix((0, self.shape[1]))
        return sp.vstack(gather(self.client, pieces), format="csr")

    def without(self, removed):
        """The layout of the data less the stored pairs of `removed` (a users x items
        CSR), in the same blocks."""
        by_side = {"user": removed.tocsr(), "item": removed.T.tocsr()}
        parts = {}
        for index, side in enumerate(SIDES):
            n_columns = self.shape[1 - index]
            built = [self.submit(_without, part, by_side[side][rows], n_columns)
                     for part, rows in zip(self.parts[side], self.ranges[side])]
            counts = gather(self.client, [self.submit(_nnz, part) for part in built])
            offsets = np.concatenate(([0], np.cumsum(counts)[:-1]))
            parts[side] = [self.submit(_with_offset, part, int(offset))
                           for part, offset in zip(built, offsets)]
        totals = gather_totals(self.client, parts, self.shape)
        user_items = None
        if self.user_items is not None:
            user_items = (self.user_items - removed).tocsr()
            user_items.eliminate_zeros()
        return Layout(self.client, self.shape, parts, totals, user_items,
                      self.local_columns)

    @property
    def operator(self):
        """The users x items matrix as a LinearOperator over the user blocks (what a
        loss resolves from the data: products with vectors only)."""
        from scipy.sparse.linalg import LinearOperator
        ranges = self.ranges["user"]

        def product(vector):
            vector = np.asarray(vector, np.float64).ravel()
            return np.concatenate(gather(self.client, [
                self.submit(_product, part, self.shape[1], vector)
                for part in self.parts["user"]]))

        def transposed(vector):
            vector = np.asarray(vector, np.float64).ravel()
            return sum(gather(self.client, [
                self.submit(_transposed_product, part, self.shape[1], vector[rows])
                for part, rows in zip(self.parts["user"], ranges)]))

        return LinearOperator(self.shape, matvec=product, rmatvec=transposed,
                              dtype=np.float64)
