"""One declaration per parameter: the estimators' __init__, get/set_params, repr, checks
and docstrings, the command line's options and tune's searchable parameters all follow
the declarations."""

import argparse
import inspect
import math

import numpy as np
import pytest

from rgals import ALSSolver, cli, tuning
from rgals.params import Estimator, Hyperparameter, Parameter


class Toy(Estimator):
    """A toy estimator.

    Parameters
    ----------
    {parameters}

    The end.
    """

    parameters = {
        "size": Parameter(4, "how many", kind="integer", minimum=1),
        "rate": Parameter(0.5, "how fast", strict=True, maximum=1.0),
        "mode": Parameter("a", "which way", kind="choice", choices=("a", "b")),
        "name": Parameter(None, "what to call it", optional=True,
                          convert=lambda value, name: str(value).upper(), type_doc="str"),
    }


def test_init_follows_the_declarations_in_order_by_position_or_keyword():
    assert list(inspect.signature(Toy).parameters) == ["size", "rate", "mode", "name"]
    assert [parameter.default for parameter in inspect.signature(Toy).parameters.values()] \
        == [4, 0.5, "a", None]
    toy = Toy(7, mode="b")
    assert toy.get_params() == {"size": 7, "rate": 0.5, "mode": "b", "name": None}
    with pytest.raises(TypeError, match="size"):
        Toy(1, size=2)
    with pytest.raises(TypeError, match="colour"):
        Toy(colour="red")
    with pytest.raises(TypeError):
        Toy(1, 0.5, "a", None, "one too many")


def test_values_are_stored_as_given_and_checked_on_demand():
    toy = Toy(size=0, rate=2.0, mode="c", name="x")  # no error before the check
    assert toy.size == 0
    with pytest.raises(ValueError, match="size must be an integer >= 1; got 0"):
        toy.checked_values()
    toy.set_params(size=3.0)  # an integral float is the integer
    with pytest.raises(ValueError, match="rate must be at most 1"):
        toy.checked_values()
    toy.set_params(rate=0.0)
    with pytest.raises(ValueError, match="rate must be a finite number > 0"):
        toy.checked_values()
    toy.set_params(rate=1.0)
    with pytest.raises(ValueError, match="unknown mode 'c'; use one of 'a', 'b'"):
        toy.checked_values()
    toy.set_params(mode="b")
    checked = toy.checked_values()
    assert checked == {"size": 3, "rate": 1.0, "mode": "b", "name": "X"}
    assert type(checked["size"]) is int
    assert toy.set_params(name=None).checked_values()["name"] is None  # optional
    with pytest.raises(ValueError, match="unknown parameter 'speed' for Toy; valid: size"):
        toy.set_params(speed=1)


def test_repr_shows_what_differs_from_the_declared_defaults():
    assert repr(Toy()) == "Toy()"
    assert repr(Toy(size=5, mode="a")) == "Toy(size=5)"
    assert repr(Toy(size=4.0)) == "Toy(size=4.0)"  # another type is another value


def test_the_docstring_lists_every_declared_parameter():
    doc = inspect.getdoc(Toy)
    assert "{parameters}" not in doc and doc.endswith("The end.")
    assert "size : int\n    How many." in doc
    assert "rate : float\n    How fast." in doc
    assert 'mode : {"a", "b"}\n    Which way.' in doc
    assert "name : str\n    What to call it." in doc


def test_a_subclass_extends_the_declarations():
    class Bigger(Toy):
        """More.

        {parameters}
        """

        parameters = {**Toy.parameters, "extra": Parameter(True, "more", kind="bool")}

    assert list(inspect.signature(Bigger).parameters)[-1] == "extra"
    assert Bigger(extra=False).get_params()["extra"] is False
    assert "extra : bool" in Bigger.__doc__ and "extra" not in Toy.__doc__
    with pytest.raises(ValueError, match="extra must be True or False"):
        Bigger(extra=1).checked_values()


def test_hyperparameter_checks_cover_every_kind():
    integer = Hyperparameter(1, "k", kind="integer", minimum=1, maximum=10)
    assert integer.check(np.int64(3), "k") == 3 and integer.check(4.0, "k") == 4
    for bad in (0, 2.5, True, "3", math.nan):
        with pytest.raises(ValueError, match="k must be an integer >= 1"):
            integer.check(bad, "k")
    with pytest.raises(ValueError, match="k must be at most 10"):
        integer.check(11, "k")
    real = Hyperparameter(0.1, "x")
    assert real.check(np.float32(0.25), "x") == 0.25
    for bad in (-0.1, math.inf, math.nan, "0.1", False):
        with pytest.raises(ValueError, match="x must be a finite number >= 0"):
            real.check(bad, "x")


# -- the declarations at work --------------------------------------------------------

def test_alssolver_signature_defaults_and_checks_come_from_its_declarations():
    signature = inspect.signature(ALSSolver).parameters
    assert list(signature) == list(ALSSolver.parameters)
    for name, declared in ALSSolver.parameters.items():
        assert signature[name].default is declared.default
        assert f"\n{name} : " in inspect.getdoc(ALSSolver), name
    params = ALSSolver().checked_params()
    # the loss's parameters become the loss object
    assert not {"alpha", "regularization", "reg_exponent"} & set(params)
    assert params["loss"].name == "rg2" and params["dtype"] == np.float32
    assert set(params) == set(ALSSolver.parameters) - {"alpha", "regularization",
                                                       "reg_exponent"}


@pytest.mark.parametrize("name", [name for name, declared in ALSSolver.parameters.items()
                                  if declared.kind in ("integer", "real", "choice", "bool")])
def test_every_declared_parameter_refuses_a_bad_value_by_name(name):
    declared = ALSSolver.parameters[name]
    bad = {"integer": -7, "real": -7.0, "choice": "nonsense", "bool": "yes"}[declared.kind]
    if name == "random_state":
        bad = "seed"
    with pytest.raises(ValueError, match=name):
        ALSSolver(**{name: bad}).checked_params()


def test_dask_solver_inherits_the_declarations():
    from rgals.dask.estimator import DaskALSSolver

    own = set(DaskALSSolver.parameters) - set(ALSSolver.parameters)
    assert own == {"client", "user_blocks", "item_blocks", "broadcast_bytes",
                   "checkpoint_every", "checkpoint_dir", "initialization"}
    changed = {name for name in ALSSolver.parameters
               if DaskALSSolver.parameters[name] is not ALSSolver.parameters[name]}
    assert changed == {"num_threads", "backend"}
    assert DaskALSSolver().num_threads == 1 and ALSSolver().num_threads == 0
    assert list(inspect.signature(DaskALSSolver).parameters) == list(DaskALSSolver.parameters)
    for name in DaskALSSolver.parameters:
        assert f"\n{name} : " in inspect.getdoc(DaskALSSolver), name
    with pytest.raises(ValueError, match="user_blocks must be an integer >= 1"):
        DaskALSSolver(user_blocks=0).checked_params()


def test_the_command_line_and_tune_read_the_declarations():
    fit = cli._parser()._subparsers._group_actions[0].choices["fit"]
    actions = {action.dest: action for action in fit._actions}
    for name, declared in ALSSolver.parameters.items():
        if declared.cli is None:
            continue
        assert declared.cli in actions[name].option_strings, name
        assert actions[name].default is argparse.SUPPRESS  # unless given: the estimator's
        assert declared.doc in actions[name].help, name
    parsed = cli._parser().parse_args(["fit", "data.tsv", "--threads", "3", "--seed", "5",
                                       "--dtype", "float64", "--cg-tolerance", "0.01"])
    assert cli._model_params(parsed) == {"num_threads": 3, "random_state": 5,
                                         "dtype": "float64", "cg_tolerance": 0.01}
    assert set(tuning.ESTIMATOR_SPACE) == {"factors", "cg_steps", "cg_tolerance", "solver"}
    assert tuning.MACHINE == ("num_threads",)
    assert tuning.search_space("rg2", ["solver"])["solver"].choices == ("auto", "cholesky",
                                                                      "cg")


def _readme_table(after):
    """The parameter names in the first column of the README's table after `after`."""
    from pathlib import Path

    text = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    rows = text[text.index(after):].split("| parameter | meaning |", 1)[1].split("\n\n")[0]
    names = set()
    for row in rows.splitlines()[2:]:
        cell = row.split("|")[1]
        names.update(name.strip(" `") for name in cell.split(","))
    return names


def test_the_readme_tables_name_every_declared_parameter():
    from rgals.dask.estimator import DaskALSSolver

    assert _readme_table("### Parameters") == set(ALSSolver.parameters)
    dask = _readme_table("`DaskALSSolver` takes `ALSSolver`'s parameters")
    # its own, and the inherited ones it reads differently
    assert set(DaskALSSolver.parameters) - set(ALSSolver.parameters) <= dask
    assert dask <= set(DaskALSSolver.parameters)
