"""The public API's annotations resolve (a misspelt name in a hint fails here, not in a
user's type checker), and every public method of the estimators is annotated."""

import inspect
import typing

import pytest

import rgals
from rgals import data, metrics
from rgals.datasets import load_default

PUBLIC = [rgals.ALSSolver.fit, rgals.ALSSolver.recommend, rgals.ALSSolver.similar_items,
          rgals.ALSSolver.similar_users, rgals.ALSSolver.recalculate_user,
          rgals.ALSSolver.recalculate_item, rgals.ALSSolver.partial_fit_users,
          rgals.ALSSolver.partial_fit_items, rgals.ALSSolver.explain,
          rgals.ALSSolver.recommend_all, rgals.ALSSolver.save_recommendations,
          rgals.ALSSolver.approximate_index, rgals.ann.ApproximateIndex.recommend,
          rgals.ALSSolver.save, rgals.ALSSolver.load,
          rgals.ALSSolver.to_cpu, rgals.ALSSolver.to_gpu, rgals.ALSSolver.get_params,
          rgals.ALSSolver.set_params, rgals.tune, rgals.tuning.search_space,
          metrics.ranking_metrics, metrics.evaluate, data.holdout_split, data.leave_k_out,
          data.validation_split, data.synthetic, data.load_ids, load_default,
          rgals.ConvergenceMonitor.to_csv, rgals.ConvergenceMonitor.plot]


@pytest.mark.parametrize("function", PUBLIC, ids=lambda function: function.__qualname__)
def test_public_annotations_resolve(function):
    hints = typing.get_type_hints(function, localns={"ALSSolver": rgals.ALSSolver})
    assert "return" in hints
    named = [name for name in inspect.signature(function).parameters
             if name not in ("self", "cls", "params")]
    assert set(named) <= set(hints), f"unannotated: {set(named) - set(hints)}"


def test_the_dask_estimator_is_annotated():
    pytest.importorskip("distributed")
    from rgals.dask import DaskALSSolver
    for function in (DaskALSSolver.fit, DaskALSSolver.to_local, DaskALSSolver.save):
        assert "return" in typing.get_type_hints(function)
