"""DaskExecutor: the operations of a sweep (rgals.training.run's executor) as tasks on
row blocks held by Dask workers.

Each operation is the local fit's code (rgals.training.LocalExecutor) run per block in
rgals.dask.tasks, plus one reduction on the client:

- `half_step`: per block of the fixed side its side statistics, tree-summed (and, for
  blocks that read the whole fixed side, its rows in the Gram's eigenbasis); per block
  of the solved side its row systems and solve (RGx's coupled item step first sums
  the blocks' coupling parts); the decreases and the rows' Hessian bounds gathered;
- `objective`: F's per-block parts (each side's sums, each user block's pairs), summed;
- `validation_metrics` and `softmax_loss`: per user block against the item factors, the
  blocks' sums combined;
- `begin_sweep`: a reweighting (top-K weights) refreshed per user block, the pairs'
  c w moved to the item blocks by their item-major positions.

The factors are {"user", "item", "previous"}: lists of futures, one per block, replaced
(never changed) by each half step; a snapshot is a copy of the lists.
"""

import operator

import numpy as np

from ..solve import resolve_solver
from ..topk import report
from ..training import raise_diverged
from . import tasks
from .cluster import RETRIES, concatenate, gather, held, tree_sum
from .layout import SIDES, local_ids, pair_slice, piece, touched_ids


class DaskExecutor:
    """The sweep's operations on a `Layout` (rgals.dask.layout); `factors` is shared with
    the executors of other data (the regularization path's fit part); `settings`: the
    tasks' (solver, cg_steps, cg_tolerance, threads, backend)."""

    def __init__(self, layout, factors, settings, dtype):
        self.layout, self.client = layout, layout.client
        self.factors, self.settings, self.dtype = factors, settings, np.dtype(dtype)
        self.ranges = layout.ranges
        # per block: the fixed side's ids it touches (it receives those rows), or None
        # (it receives the whole side)
        self.touched = {side: [self.submit(touched_ids, part) if local else None
                               for part, local in zip(layout.parts[side],
                                                      layout.local_columns[side])]
                        for side in SIDES}
        self.loss = None
        self._positions = None
        self._ahead = None  # (key, prelude) of the next half step, submitted early

    def submit(self, function, *args):
        return self.client.submit(function, *args, retries=RETRIES)

    # -- data ------------------------------------------------------------------------------

    @property
    def shape(self):
        return self.layout.shape

    @property
    def totals(self):
        return self.layout.totals

    @property
    def operator(self):
        return self.layout.operator

    def rows(self, users):
        return self.layout.rows(users)

    def without(self, removed):
        return DaskExecutor(self.layout.without(removed), self.factors, self.settings,
                            self.dtype)

    def place(self, user_factors, item_factors):
        """The initial factors (host arrays, as ALSSolver draws them) as blocks."""
        for side, array in (("user", user_factors), ("item", item_factors)):
            self.factors[side] = [self.submit(held, array[rows]) for rows in self.ranges[side]]
        self.factors["previous"] = self.factors["item"]

    def draw(self, seed, factors):
        """Initial factors drawn per block on the workers from `seed` (data beyond one
        process: nothing of size users x factors passes through the client)."""
        for index, side in enumerate(SIDES):
            self.factors[side] = [self.submit(tasks.draw, seed, index, block,
                                              rows.stop - rows.start, factors, self.dtype)
                                  for block, rows in enumerate(self.ranges[side])]
        self.factors["previous"] = self.factors["item"]

    def bind(self, spec):
        return spec.bind(self.totals)

    # -- a training ------------------------------------------------------------------------

    def start(self, loss):
        """Begin training the bound `loss` (a fresh reweighting, if it has one)."""
        self.set_loss(loss)
        self.reweighting = loss.reweighting()
        self.weights = [None] * len(self.layout.parts["user"])
        self.pair_terms = {side: [None] * len(self.layout.parts[side]) for side in SIDES}

    def set_loss(self, loss):
        self.loss = loss
        self.loss_future = self.client.submit(held, loss)  # sent once per change

    def begin_sweep(self):
        if self.reweighting is None or not self.reweighting.begin_sweep():
            return False
        items = self.submit(concatenate, *self.factors["item"])
        n_items = self.shape[1]
        refreshed = [self.submit(tasks.refresh, self.reweighting, part, users, items,
                                 previous, n_items, self.settings)
                     for part, users, previous in zip(self.layout.parts["user"],
                                                      self.factors["user"], self.weights)]
        self.weights = [self.submit(operator.attrgetter("weights"), result)
                        for result in refreshed]
        self.pair_terms["user"] = [self.submit(tasks.pair_terms_of, result)
                                   for result in refreshed]
        summaries = gather(self.client, [self.submit(operator.attrgetter("user_sums", "totals"),
                                                     result) for result in refreshed])
        self._move_terms_to_items()
        self.set_loss(self.loss.with_user_sums(np.concatenate([sums for sums, _ in summaries])))
        totals = {name: sum(part[name] for _, part in summaries)
                  for name in ("pairs", "weight_sum", "change_sum", "previous")}
        return report(totals)

    def _move_terms_to_items(self):
        """The user blocks' (c w, g) to the item blocks, by the pairs' item-major
        positions (computed once)."""
        if self._positions is None:
            user_edges = np.array([rows.start for rows in self.ranges["user"]]
                                  + [self.shape[0]])
            by_item = [self.submit(tasks.item_pair_positions, part, user_edges)
                       for part in self.layout.parts["item"]]
            positions = [self.submit(tasks.user_pair_positions, part,
                                     *[self.submit(piece, pieces, k) for pieces in by_item])
                         for k, part in enumerate(self.layout.parts["user"])]
            slices = gather(self.client, [self.submit(pair_slice, part)
                                          for part in self.layout.parts["item"]])
            edges = np.array([pairs.start for pairs in slices] + [slices[-1].stop])
            self._positions = positions, slices, edges
        positions, slices, edges = self._positions
        pieces = [self.submit(tasks.terms_for_items, terms, where, edges)
                  for terms, where in zip(self.pair_terms["user"], positions)]
        self.pair_terms["item"] = [
            self.submit(tasks.item_terms, pairs.start, pairs.stop - pairs.start,
                        *[self.submit(piece, split, k) for split in pieces])
            for k, pairs in enumerate(slices)]

    def keep_previous(self):
        self.factors["previous"] = self.factors["item"]

    def half_step(self, side, sweep):
        """Solve `side`'s blocks given the other side's; returns (the decrease, the
        Hessian's bounds) as LocalExecutor.half_step does."""
        loss, settings = self.loss_future, self.settings
        statistics, rotated = self._prelude(side)
        coupled = side == "item" and self.loss.coupled_item_step
        method = _method(self.loss, settings["solver"])
        blocks = len(self.layout.parts[side])
        others = ([None] * blocks if rotated is not None and not coupled
                  else self.others(side))
        rotated = rotated or [None] * blocks
        shift = None
        work = list(zip(self.layout.parts[side], others, self.factors[side],
                        self.pair_terms[side], rotated))
        if coupled:
            before = tree_sum(self, [
                self.submit(tasks.coupling, loss, side, statistics, part, other, factors,
                            terms, settings)
                for part, other, factors, terms, _ in work])
            shift = self.submit(tasks.shift, loss, statistics, before, method)
        solved = [self.submit(tasks.solve, loss, side, statistics, part,
                              None if mine is not None else other, factors, shift, terms,
                              settings, mine)
                  for part, other, factors, terms, mine in work]
        self.factors[side] = [self.submit(operator.itemgetter(0), result)
                              for result in solved]
        if side == "user" or self.reweighting is None:
            # the next step's prelude waits on these new blocks, not on this process:
            # each block's statistics start as its solve ends, beside the others' solves
            # (a top-K refresh changes the loss between sweeps: then within one only)
            following = "item" if side == "user" else "user"
            self._ahead = self._prelude_key(following), self._prelude(following)
        # per block: the decrease, the rows' Hessian bounds, whether all is finite; the
        # shared Gram's eigenvalues (the same in every block) from the first
        results = gather(self.client, [self.submit(operator.itemgetter(1, 2, 4), result)
                                       for result in solved]
                         + [self.submit(operator.itemgetter(3), solved[0])])
        eigenvalues, results = results[-1], results[:-1]
        if not all(finite for *_, finite in results):
            raise_diverged(side, sweep, self.loss, self.dtype)
        decrease = float(sum(result[0] for result in results))
        gram = coupling = None
        if coupled:
            sums = [self.submit(tasks.column_sum, block) for block in self.factors[side]]
            change, gram = gather(self.client, [
                self.submit(tasks.coupling_decrease, loss, statistics, method, before, *sums),
                self.submit(operator.itemgetter("gram"), statistics)])
            decrease += change
            coupling = self.loss.item_coupling(gram)
        lowest = min(bounds[0] for _, bounds, _ in results)
        highest = max(bounds[1] for _, bounds, _ in results)
        rows = self.shape[0 if side == "user" else 1]
        return decrease, self.loss.half_step_bounds(side, lowest, highest, rows, gram,
                                                    coupling, eigenvalues)

    def _prelude_key(self, side):
        """What a half step's prelude depends on: the loss and the fixed side's blocks."""
        fixed = "item" if side == "user" else "user"
        return side, self.loss_future.key, tuple(block.key for block in self.factors[fixed])

    def _prelude(self, side):
        """(the side statistics, per solved block the fixed side it reads in the Gram's
        eigenbasis or None) of `side`'s half step, as futures: the fixed blocks'
        statistics tree-summed; for the eigen and CG methods, the eigenbasis once and
        each fixed block rotated into it in parallel, each solved block then reading the
        whole rotated side or the rotated rows it touches (not rotating its own copy).
        Taken from the previous half step when it submitted them."""
        ahead, self._ahead = self._ahead, None
        if ahead is not None and ahead[0] == self._prelude_key(side):
            return ahead[1]
        fixed = "item" if side == "user" else "user"
        loss, settings = self.loss_future, self.settings
        statistics = tree_sum(self, [
            self.submit(tasks.statistics, loss, side, factors, rows, settings)
            for factors, rows in zip(self.factors[fixed], self.ranges[fixed])])
        if _method(self.loss, settings["solver"]) not in ("eigen", "cg"):
            return statistics, None
        eigen = self.submit(tasks.eigenbasis, loss, side, statistics, settings)
        pieces = [self.submit(tasks.rotate, block, eigen, settings)
                  for block in self.factors[fixed]]
        # on one worker the blocks share one concatenation; across workers each block's
        # task joins the pieces itself, so that each crosses once
        whole = None
        if any(touched is None for touched in self.touched[side]):
            whole = (self.submit(tasks.rotated_side, eigen, *pieces)
                     if len(self.client.nthreads()) == 1 else (eigen, pieces))
        return statistics, [whole if rows is None else (eigen, rows)
                            for rows in self._rows_touched(side, pieces)]

    def others(self, side):
        """Per block of `side`: the fixed side's factors it reads: the whole side (one
        future), or the rows it touches as pieces, one per fixed block, that the task
        concatenates where it runs (so each piece crosses between workers once)."""
        fixed = "item" if side == "user" else "user"
        whole = None
        if any(touched is None for touched in self.touched[side]):
            whole = self.submit(concatenate, *self.factors[fixed])
        return [whole if rows is None else rows
                for rows in self._rows_touched(side, self.factors[fixed])]

    def _rows_touched(self, side, pieces):
        """Per block of `side`: the rows of the fixed side's `pieces` (one per fixed
        block) that it touches, as pieces; None for a block that reads the whole side."""
        fixed = "item" if side == "user" else "user"
        return [None if touched is None else
                [self.submit(tasks.rows_among_range, piece, rows.start, rows.stop, touched)
                 for piece, rows in zip(pieces, self.ranges[fixed])]
                for touched in self.touched[side]]

    def objective(self, magnitude=False):
        loss, settings = self.loss_future, self.settings
        sides = {side: tree_sum(self, [
            self.submit(tasks.objective_side, loss, side, factors, rows, settings)
            for factors, rows in zip(self.factors[side], self.ranges[side])])
            for side in SIDES}
        pairs = tree_sum(self, [
            self.submit(tasks.objective_pairs, loss, part, users, others, terms, settings)
            for part, users, others, terms in zip(self.layout.parts["user"],
                                                  self.factors["user"], self.others("user"),
                                                  self.pair_terms["user"])])
        users, items, pairs = gather(self.client, [sides["user"], sides["item"], pairs])
        return self.loss.objective_total(users, items, pairs, magnitude)

    def softmax_loss(self, users):
        """The softmax loss of `users` (sorted ids), averaged: each user block's sum."""
        items = self.submit(concatenate, *self.factors["item"])
        futures = []
        for part, factors, rows in zip(self.layout.parts["user"], self.factors["user"],
                                       self.ranges["user"]):
            mine = local_ids(np.asarray(users), rows)
            if mine.size:
                futures.append(self.submit(tasks.softmax_part, part, factors, items, mine,
                                           self.shape[1]))
        parts = gather(self.client, futures)
        counted = sum(count for _, count in parts)
        return sum(total for total, _ in parts) / counted if counted else float("nan")

    def validation_metrics(self, validation, K, metrics, users=None):
        """Ranking metrics of `validation` (a users x items CSR on the client), the
        training items masked: each user block's sums, combined."""
        validation = validation.tocsr()
        users = None if users is None else np.unique(np.asarray(users))
        items = self.submit(concatenate, *self.factors["item"])
        futures = []
        for rows, part, factors in zip(self.ranges["user"], self.layout.parts["user"],
                                       self.factors["user"]):
            block = validation[rows]
            evaluated = None
            if users is not None:
                evaluated = local_ids(users, rows)
                evaluated = evaluated[np.diff(block.indptr)[evaluated] > 0]
                if not evaluated.size:
                    continue
            if block.nnz == 0:
                continue
            futures.append(self.submit(tasks.block_metrics, part, factors, items, block, K,
                                       metrics, evaluated, self.shape[1]))
        if not futures:
            raise ValueError("the validation data has no nonzero entries for the users "
                             "evaluated: no user has a held-out item")
        parts = gather(self.client, futures)
        count = sum(number for _, number in parts)
        result = {name: sum(sums[name] for sums, _ in parts) / count for name in parts[0][0]}
        result["users"] = count
        return result

    def snapshot(self):
        return {name: list(blocks) for name, blocks in self.factors.items()}

    def restore(self, snapshot):
        self.factors.update({name: list(blocks) for name, blocks in snapshot.items()})

    def finish(self):
        """The blocks are never left rotated; a prelude submitted ahead for a half step
        that will not come is released (its futures hold rotated blocks on the workers)."""
        self._ahead = None

    # -- what a checkpoint keeps -----------------------------------------------------------

    def reweighting_state(self):
        """(its meta, {name: block futures}, {name: block lengths}, the user sums) of the
        reweighting, as rgals.dask.checkpoints writes it; None without one."""
        if self.reweighting is None:
            return None
        refreshed = self.weights[0] is not None
        meta = {"sweeps": self.reweighting.sweeps, "refreshed": refreshed}
        arrays, lengths = {}, {}
        counts = {side: [int(counts[rows].sum()) for rows in self.ranges[side]]
                  for side, counts in (("user", self.totals.user_counts),
                                       ("item", self.totals.item_counts))}
        if refreshed:
            arrays["weights"], lengths["weights"] = self.weights, counts["user"]
            for side in SIDES:
                names = ("confidence", "gradient") if self.reweighting.gradient \
                    else ("confidence",)
                for index, name in enumerate(names):
                    arrays[f"{side}_{name}"] = [self.submit(operator.itemgetter(index), terms)
                                                for terms in self.pair_terms[side]]
                    lengths[f"{side}_{name}"] = counts[side]
        return meta, arrays, lengths, self.loss.user_sums if refreshed else None

    def restore_reweighting(self, meta, arrays, user_sums):
        """The reweighting state a checkpoint kept (see `reweighting_state`)."""
        self.reweighting.sweeps = meta["sweeps"]
        if meta["refreshed"]:
            self.weights = arrays["weights"]
            for side in SIDES:
                gradients = arrays.get(f"{side}_gradient",
                                       [None] * len(self.layout.parts[side]))
                self.pair_terms[side] = [self.submit(tasks.pair, confidence, gradient)
                                         for confidence, gradient in
                                         zip(arrays[f"{side}_confidence"], gradients)]
            self.set_loss(self.loss.with_user_sums(user_sums))


def _method(loss, solver):
    """The method `solver` stands for, from what the loss declares."""
    return resolve_solver(solver, loss.pairs_in_gram)
