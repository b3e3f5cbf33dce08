"""The half steps of one distributed fit, as tasks on the cluster."""

import copy
import operator

import numpy as np

from .cluster import RETRIES, concatenate, gather, held, tree_sum
from .layout import SIDES, pair_slice, piece, touched_ids
from .tasks import (_coupling, _coupling_decrease, _coupling_shift, _column_sum,
                    _frozen_for_items, _frozen_pair, _item_frozen, _item_pair_positions,
                    _method, _rows_among_range, _solve, _statistics, _top_k_block,
                    _user_pair_positions)


class _Fit:
    """The half steps of one distributed fit; `loss` is the bound loss, scattered."""

    def __init__(self, client, loss, parts, ranges, params, fixed_bytes, totals):
        self.client, self.parts, self.ranges = client, parts, ranges
        self.pair_counts = {side: [int(counts[rows].sum()) for rows in ranges[side]]
                            for side, counts in (("user", totals.user_counts),
                                                 ("item", totals.item_counts))}
        self.params, self.fixed_bytes = params, fixed_bytes
        self.loss = client.submit(held, loss)
        self.methods = {side: _method(loss, side, params["factors"], params["solver"])
                        for side in SIDES}
        self.coupled = getattr(loss, "item_coupling", lambda gram: None)(
            np.eye(params["factors"])) is not None
        self.touched = {side: [self.submit(touched_ids, part) for part in parts[side]]
                        for side in SIDES}
        # top-K weights: the loss refreshed on the client (its counter and user sums),
        # each block's (c w, g) and weights on the workers
        self.bound = copy.copy(loss)
        self.frozen = {side: [None] * len(parts[side]) for side in SIDES}
        self.weights = [None] * len(parts["user"])
        if getattr(loss, "top_k", None) is not None:
            self._pair_positions()

    def submit(self, function, *args):
        return self.client.submit(function, *args, retries=RETRIES)

    def _pair_positions(self):
        """Each user block's pairs' item-major positions, and the item blocks' first."""
        user_edges = np.array([rows.start for rows in self.ranges["user"]]
                              + [self.ranges["user"][-1].stop])
        by_item = [self.submit(_item_pair_positions, part, user_edges)
                   for part in self.parts["item"]]
        self.positions = [
            self.submit(_user_pair_positions, part,
                        *[self.submit(piece, pieces, k) for pieces in by_item])
            for k, part in enumerate(self.parts["user"])]
        slices = gather(self.client, [self.submit(pair_slice, part) for part in self.parts["item"]])
        self.item_pairs = slices
        self.item_edges = np.array([pairs.start for pairs in slices] + [slices[-1].stop])

    def top_k_state(self):
        """What a checkpoint keeps of the top-K weights: (the refresh counter and whether
        weights exist, {name: block futures}, {name: block lengths}, the user sums), or
        None without them."""
        if getattr(self.bound, "top_k", None) is None:
            return None
        meta = {"sweeps": self.bound._sweeps, "refreshed": self.weights[0] is not None}
        arrays, lengths = {}, {}
        if meta["refreshed"]:
            arrays["weights"], lengths["weights"] = self.weights, self.pair_counts["user"]
            parts = [0, 1] if self.bound.top_k_gradient else [0]
            for side in SIDES:
                for index, name in zip(parts, ("confidence", "gradient")):
                    arrays[f"{side}_{name}"] = [self.submit(operator.getitem, frozen, index)
                                                for frozen in self.frozen[side]]
                    lengths[f"{side}_{name}"] = self.pair_counts[side]
        return meta, arrays, lengths, self.bound.user_sums if meta["refreshed"] else None

    def restore_top_k(self, meta, arrays, user_sums):
        """The top-K state a checkpoint kept (see `top_k_state`)."""
        self.bound = copy.copy(self.bound)
        self.bound._sweeps = meta["sweeps"]
        if meta["refreshed"]:
            self.weights = arrays["weights"]
            for side in SIDES:
                gradients = arrays.get(f"{side}_gradient", [None] * len(self.parts[side]))
                self.frozen[side] = [self.submit(_frozen_pair, confidence, gradient)
                                     for confidence, gradient in
                                     zip(arrays[f"{side}_confidence"], gradients)]
            self.bound._set_user_sums(user_sums)
        self.loss = self.client.submit(held, self.bound)

    def begin_sweep(self, state):
        """RG2.begin_sweep across the blocks: every `top_k_refresh` sweeps after the
        warm-up, the weights from the current factors."""
        loss = self.bound
        if getattr(loss, "top_k", None) is None:
            return
        loss._sweeps += 1
        if loss._sweeps <= loss.top_k_warmup or \
                (loss._sweeps - 1 - loss.top_k_warmup) % loss.top_k_refresh:
            return
        items = self.submit(concatenate, *state["item"])
        refreshed = [self.submit(_top_k_block, self.loss, part, users, items, previous,
                                 loss._sweeps)
                     for part, users, previous in zip(self.parts["user"], state["user"],
                                                      self.weights)]
        self.weights = [self.submit(operator.getitem, result, 0) for result in refreshed]
        self.frozen["user"] = [self.submit(operator.getitem, result, 1)
                               for result in refreshed]
        sums = gather(self.client, [self.submit(operator.getitem, result, 2)
                                     for result in refreshed])
        pieces = [self.submit(_frozen_for_items, frozen, positions, self.item_edges)
                  for frozen, positions in zip(self.frozen["user"], self.positions)]
        self.frozen["item"] = [
            self.submit(_item_frozen, pairs.start, pairs.stop - pairs.start,
                        *[self.submit(piece, piece, k) for piece in pieces])
            for k, pairs in enumerate(self.item_pairs)]
        loss = copy.copy(loss)
        loss._set_user_sums(np.concatenate(sums))
        self.bound = loss
        self.loss = self.client.submit(held, loss)

    def half_step(self, side, state):
        """Solve `side`'s blocks given the other side's; returns (new blocks, decrease)."""
        fixed = "item" if side == "user" else "user"
        params = self.params
        statistics = tree_sum(self, [
            self.submit(_statistics, self.loss, side, factors, rows, params["num_threads"])
            for factors, rows in zip(state[fixed], self.ranges[fixed])])
        others = self.others(side, fixed, state[fixed])
        threads = params["num_threads"]
        shift = None
        coupled = side == "item" and self.coupled
        if coupled:
            before = tree_sum(self, [
                self.submit(_coupling, self.loss, side, statistics, part, other, factors,
                            params["solver"], threads, frozen)
                for part, other, factors, frozen in zip(self.parts[side], others, state[side],
                                                        self.frozen[side])])
            shift = self.submit(_coupling_shift, self.loss, statistics, before,
                                self.methods[side])
        solved = [self.submit(_solve, self.loss, side, statistics, part, other, factors,
                              shift, params["solver"], params["cg_steps"],
                              params["cg_tolerance"], threads, frozen)
                  for part, other, factors, frozen in zip(self.parts[side], others,
                                                          state[side], self.frozen[side])]
        blocks = [self.submit(operator.getitem, result, 0) for result in solved]
        decreases = [self.submit(operator.getitem, result, 1) for result in solved]
        decrease = float(sum(gather(self.client, decreases)))
        if coupled:
            sums = [self.submit(_column_sum, block) for block in blocks]
            decrease += gather(self.client, [self.submit(
                _coupling_decrease, self.loss, statistics, self.methods[side], before,
                *sums)])[0]
        return blocks, decrease

    def others(self, side, fixed, fixed_blocks):
        """Per block of `side`: the fixed side's factors it reads (whole, or its rows)."""
        if self.fixed_bytes[side] <= self.params["broadcast_bytes"]:
            whole = self.submit(concatenate, *fixed_blocks)
            return [whole] * len(self.parts[side])
        result = []
        for touched in self.touched[side]:
            pieces = [self.submit(_rows_among_range, block, rows.start, rows.stop, touched)
                      for block, rows in zip(fixed_blocks, self.ranges[fixed])]
            result.append(self.submit(concatenate, *pieces))
        return result
