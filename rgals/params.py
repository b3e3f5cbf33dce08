"""Declared parameters: each parameter of a loss or an estimator is declared once.

A loss declares its hyperparameters (`Hyperparameter`: default, domain, what rgals.tune
searches); an estimator declares its parameters (`Parameter`: the same, and what the
command line and tune do with it). From an estimator's declarations come its `__init__`,
`get_params` / `set_params`, repr, the checks of `checked_values` and the Parameters
section of its docstring (`Estimator`); the command line builds its options and tune its
searchable estimator parameters from them. Adding a parameter means one declaration plus
the code that uses it.
"""

from __future__ import annotations

import dataclasses
import inspect
import math
import re
import textwrap
from collections.abc import Callable

import numpy as np

from .validation import check_bool, check_choice, check_integer, check_real


@dataclasses.dataclass(frozen=True)
class Hyperparameter:
    """A loss hyperparameter: its default, the values it may take, and what to search.

    kind "real" or "integer": valid values are >= `minimum` (> when `strict`) and
    <= `maximum`; a tuner searches [low, high], on a log scale when `log`. kind
    "choice": one of `choices`; "bool": True or False. `optional`: the default is None,
    which turns the option off. `searched`: part of rgals.tune's default search space.
    `from_data`: the default None means "computed from the training data" (Loss.resolve).
    """

    default: object
    doc: str
    kind: str = "real"
    minimum: float = 0.0
    strict: bool = False
    maximum: float = math.inf
    low: float | None = None
    high: float | None = None
    log: bool = False
    choices: tuple = ()
    optional: bool = False
    searched: bool = False
    from_data: bool = False

    def check(self, value, name):
        if self.kind == "choice":
            return check_choice(value, name, self.choices)
        if self.kind == "bool":
            return check_bool(value, name)
        if self.kind == "integer":
            if isinstance(value, (float, np.floating)) and float(value).is_integer():
                value = int(value)  # 3.0 is the integer 3 (JSON, a tuner's draws)
            value = check_integer(value, name, int(self.minimum))
        else:
            value = check_real(value, name, self.minimum, self.strict)
        if value > self.maximum:
            raise ValueError(f"{name} must be at most {self.maximum:g}; got {value!r}")
        return value


@dataclasses.dataclass(frozen=True)
class Parameter(Hyperparameter):
    """An estimator parameter: a Hyperparameter (default, `doc` a lowercase phrase, the
    domain of its kind; `optional`: None is valid too) and

    convert: checks and converts a value where the kind's check does not say it all (a
        dtype, a seed, a metric); it replaces that check. kind then only gives the
        command line's type (int for "integer", float for "real", else text).
    cli: the command line's option ("--threads"); None: not on the command line.
    cli_default: the command line's default, where it differs from `default`.
    cli_group: the group of `rgals fit`'s options that shows it.
    tunable: rgals.tune may search it (`space={name: range}`, or `low`/`high` if declared).
    machine: it decides where and how fast the fit runs, not the model (tune's
        best_params leave it out).
    type_doc: the docstring's type, where the kind's is not it.
    details: the docstring's text after `doc`.
    """

    convert: Callable | None = None
    cli: str | None = None
    cli_default: object = None
    cli_group: str = "model"
    tunable: bool = False
    machine: bool = False
    type_doc: str = ""
    details: str = ""

    def check(self, value, name):
        if value is None and self.optional:
            return None
        if self.convert is not None:
            return self.convert(value, name)
        return super().check(value, name)

    @property
    def option_default(self):
        return self.default if self.cli_default is None else self.cli_default

    def describe(self, name):
        """The parameter's entry in a numpydoc Parameters section."""
        kind = self.type_doc or {
            "integer": "int", "real": "float", "bool": "bool",
            "choice": "{" + ", ".join(f'"{choice}"' for choice in self.choices) + "}"}[self.kind]
        if self.optional and not self.type_doc:
            kind += " or None"
        text = f"{self.doc[0].upper()}{self.doc[1:]}. {self.details}".strip()
        return f"{name} : {kind}\n" + textwrap.fill(
            text, width=84, initial_indent="    ", subsequent_indent="    ")


class Estimator:
    """A class whose `parameters` ({name: Parameter}) give its `__init__` (keyword or
    positional, in declaration order; each value stored as given, checked at fit),
    `get_params`, `set_params`, repr, and the "{parameters}" line of its docstring."""

    parameters: dict = {}

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        if "parameters" not in vars(cls):
            return
        if "__init__" not in vars(cls):
            cls.__init__ = _initializer(cls.parameters)
        if cls.__doc__:  # None under python -OO
            cls.__doc__ = re.sub(
                r"^( *)\{parameters\}$",
                lambda line: textwrap.indent("\n".join(
                    declared.describe(name) for name, declared in cls.parameters.items()),
                    line[1]),
                cls.__doc__, flags=re.M)

    def get_params(self, deep: bool = True) -> dict:
        """The parameters as set, name -> value (scikit-learn's convention)."""
        return {name: getattr(self, name) for name in self.parameters}

    def set_params(self, **params) -> Estimator:
        """Set parameters by name (checked at fit); returns self."""
        for name, value in params.items():
            if name not in self.parameters:
                raise ValueError(f"unknown parameter {name!r} for {type(self).__name__}; "
                                 f"valid: {', '.join(self.parameters)}")
            setattr(self, name, value)
        return self

    def __repr__(self):
        changed = [f"{name}={value!r}" for name, value in self.get_params().items()
                   if not _same(value, self.parameters[name].default)]
        return f"{type(self).__name__}({', '.join(changed)})"

    def checked_values(self) -> dict:
        """Every parameter checked against its declaration, name -> value as used."""
        return {name: declared.check(getattr(self, name), name)
                for name, declared in self.parameters.items()}


def as_given(value, name):
    """A Parameter's `convert` where another check sees the value (the loss's
    hyperparameters: make_loss, with the loss) or where any value is taken."""
    return value


def _initializer(parameters):
    signature = inspect.Signature(
        [inspect.Parameter("self", inspect.Parameter.POSITIONAL_OR_KEYWORD)] +
        [inspect.Parameter(name, inspect.Parameter.POSITIONAL_OR_KEYWORD,
                           default=declared.default)
         for name, declared in parameters.items()])

    def __init__(self, *args, **kwargs):
        bound = signature.bind(self, *args, **kwargs)
        bound.apply_defaults()
        for name in parameters:
            setattr(self, name, bound.arguments[name])

    __init__.__signature__ = signature
    return __init__


def _same(a, b):
    if a is None or b is None:
        return a is b
    if isinstance(a, (np.dtype, type)) or isinstance(b, (np.dtype, type)):
        try:  # np.float32 and np.dtype("float32") are the same dtype
            return np.dtype(a) == np.dtype(b)
        except TypeError:
            return False
    try:
        return bool(a == b) and type(a) is type(b)
    except (TypeError, ValueError):
        return a is b
