"""The model registry: one table of rows per family, one registry that holds them.

A variant is a `Row` of data: its name, the arguments of its family's
generic builder that make it (`ResNet(depths=(3, 4, 6, 3), block="bottleneck")`
is ResNet-50), its exact trainable parameter count, title and paper. A
`Family` says how to turn those arguments into a spec, build a model from a
spec, which options the builder takes (`Option`: default, type and range,
allowed values, values worth searching; the builders check values with it)
and what its docstring says. `register_rows` is the
one function that turns a table into registered builders, so adding a
variant is one row.

Everything else reads the registry: `list_models()`, `get_model()`,
`model_table()` (the README table), the tuner's search space
(`search_space`) and the tests, which build every registered model and assert
its trainable count equals `num_params`.
"""

from __future__ import annotations

import dataclasses
import difflib
import inspect
from collections.abc import Callable, Iterable, Mapping
from typing import Any

import keras


@dataclasses.dataclass(frozen=True)
class Option:
    """One argument a builder takes besides the keras.applications ones.

    The type and range are data, declared once per family: the builders
    check a value with `check`, and the tests draw good and bad values from
    the same fields.

    Attributes:
        default: the value used when the caller does not give one.
        choices: every allowed value where the set is finite, else None.
        search: the values a hyper-parameter search tries (empty: not
            searched, e.g. a seed or a switch that does not change the
            function such as `memory_efficient`).
        kind: `bool`, `int` or `float` (any finite real number; ints and
            NumPy numbers are accepted, bools are not); None: one of
            `choices` (strings).
        minimum, maximum: the range of an `int` or `float` option (None: no bound).
        low_open, high_open: the bound itself is excluded (`(0, 1]`).
        optional: None is accepted too (a seed, a bias worked out from the depth).
        note: why the range is what it is, added to the error message.
    """

    default: Any = None
    choices: tuple | None = None
    search: tuple = ()
    kind: type | None = None
    minimum: float | None = None
    maximum: float | None = None
    low_open: bool = False
    high_open: bool = False
    optional: bool = False
    note: str = ""

    def __post_init__(self):
        if self.kind not in (None, bool, int, float):
            raise ValueError(f"`kind` must be None, bool, int or float, got {self.kind!r}.")
        if self.kind is None and self.choices is None:
            raise ValueError("An `Option` needs a `kind` or `choices`.")

    def check(self, argument: str, value):
        """Return `value` as the Python value the builder uses.

        Raises:
            ValueError: naming `argument`, the value and what is allowed
                (NumPy scalars pass where the Python type does).
        """
        try:
            return self._check(argument, value)
        except ValueError as error:
            if not self.note:
                raise
            raise ValueError(f"{error} {self.note}") from None

    def _check(self, argument: str, value):
        from keras_resnets import utils

        if value is None and (self.optional or (self.choices and None in self.choices)):
            return None
        if self.kind is bool:
            return utils.check_bool(argument, value)
        if self.kind is int:
            return utils.check_int(
                argument, value, self.minimum, self.maximum, optional=self.optional
            )
        if self.kind is float:
            bounds = ("minimum", "maximum", "low_open", "high_open", "optional")
            return utils.check_number(argument, value, **{k: getattr(self, k) for k in bounds})
        return utils.check_choice(argument, value, self.choices)


# A rate (dropout, drop-path): a float in [0, 1); `Option(0.0, **RATE)`.
RATE = {"kind": float, "minimum": 0.0, "maximum": 1.0, "high_open": True}


def check_values(options: Mapping[str, Option], **values) -> dict[str, Any]:
    """Check each of `values` against its `Option`; return them as Python values.

    Args:
        options: the builder's `{option: Option}` (its family's table).
        **values: the options given.

    Raises:
        ValueError: a value outside its option's type, range or choices,
            naming the option.
    """
    return {key: options[key].check(key, value) for key, value in values.items()}


@dataclasses.dataclass(frozen=True)
class Row:
    """One named variant: a row of its family's table.

    Attributes:
        name: the public builder name (`"ResNet50"`).
        arguments: the architecture arguments of the family's generic
            builder that make this variant (`{"depths": (3, 4, 6, 3),
            "block": "bottleneck"}`).
        num_params: exact trainable parameter count with the default
            options (no conv bias before BatchNormalization).
        title: first line of the builder's docstring (`"ResNet-50"`).
        summary: the docstring's paragraph on the architecture.
        slow: True for the largest models (built once per test session).
        family: overrides the family's label in the docs (`"Plain"`).
        paper: overrides the family's paper.
        aliases: other registered names for the same builder.
        input_size: the default input size where it is not the spec's
            (ResNet-RS-50 trains at 160x160; timm's `input_size`).
        test_input_size: the size it is evaluated at, where larger than
            `input_size` (timm's `test_input_size`); None: `input_size`.
    """

    name: str
    arguments: Mapping[str, Any]
    num_params: int
    title: str
    summary: str = ""
    slow: bool = False
    family: str | None = None
    paper: str | None = None
    aliases: tuple[str, ...] = ()
    input_size: int | None = None
    test_input_size: int | None = None

    def __post_init__(self):
        for name in (self.name, *self.aliases):
            if not isinstance(name, str) or not name.isidentifier():
                raise ValueError(
                    f"A row's `name` (and each alias) must be a Python identifier such as "
                    f"'ResNet26', got {name!r}."
                )
        if not isinstance(self.arguments, Mapping):
            raise TypeError(
                f"Row {self.name!r}: `arguments` must be a mapping of the generic builder's "
                f"arguments, got {type(self.arguments).__name__}."
            )
        count = self.num_params
        if not isinstance(count, int) or isinstance(count, bool) or count < 1:
            raise ValueError(
                f"Row {self.name!r}: `num_params` must be the exact trainable parameter "
                f"count, a positive integer, got {count!r}."
            )


@dataclasses.dataclass(frozen=True)
class Family:
    """How the rows of one table become builders.

    Attributes:
        label: family label for the docs (`"ResNet v1"`).
        paper: short reference (`"He et al. 2015"`).
        generic: the public generic builder the rows' `arguments` are for
            (`keras_resnets.ResNet`).
        spec: maps a row's `arguments` to the family's spec (validating them).
        build: `build(spec, *, model_name, **application, **options)`.
        options: maps a spec to the builder's `{option: Option}`.
        options_doc: the options' `Args:` entries, or a function of the spec
            giving them.
        architecture: maps a spec to the generic builder's architecture
            arguments worth searching (`{"depth": Option(20, search=(8,
            14, 20, 32))}`); a search over them builds `generic`.
        pooling_note: text after "the last feature map" in `pooling`'s entry.
        example: arguments shown in the docstring's example call.
    """

    label: str
    paper: str
    generic: Callable[..., keras.Model]
    spec: Callable[..., Any]
    build: Callable[..., keras.Model]
    options: Callable[[Any], dict[str, Option]] = lambda spec: {}
    options_doc: str | Callable[[Any], str] = ""
    architecture: Callable[[Any], dict[str, Option]] = lambda spec: {}
    pooling_note: str = ""
    example: str = ""


@dataclasses.dataclass(frozen=True)
class ModelInfo:
    """Metadata of one registered builder.

    Attributes:
        name: the public builder name (`"ResNet50"`).
        builder: the builder function.
        family: family label used in docs (`"ResNet v1"`).
        input_size: default square input size (224 or 32; a row's own,
            e.g. 160 for ResNet-RS-50).
        test_input_size: the size it is evaluated at (timm's
            `test_input_size`; `input_size` unless the row says otherwise).
        num_params: exact trainable parameter count with the default
            arguments (no conv bias before BatchNormalization).
        paper: short reference (`"He et al. 2015"`).
        slow: True for the largest models (built once per test session).
        spec: the family's spec of this variant (`ResNetSpec`, ...).
        options: `{option: Option}` the builder accepts besides the
            keras.applications arguments, with defaults and choices.
        generic: name of the public generic builder (`"ResNet"`).
        arguments: the generic builder's architecture arguments that make
            this variant.
        architecture: the generic builder's arguments worth searching.
    """

    name: str
    builder: Callable[..., keras.Model]
    family: str
    input_size: int
    num_params: int
    paper: str
    slow: bool = False
    spec: Any = None
    options: Mapping[str, Option] = dataclasses.field(default_factory=dict)
    generic: str | None = None
    arguments: Mapping[str, Any] = dataclasses.field(default_factory=dict)
    architecture: Mapping[str, Option] = dataclasses.field(default_factory=dict)
    test_input_size: int | None = None

    def search_space(self) -> dict[str, list]:
        """`{argument: values}` a hyper-parameter search tries for this model.

        The generic builder's architecture arguments (`depth`, `cardinality`,
        ...) and the options with `search` values; never empty for a
        registered model (a test checks).
        """
        # An architecture argument that is also an option (`cardinality`) is
        # searched as architecture: through the generic builder.
        merged = {**self.options, **self.architecture}
        return {key: list(option.search) for key, option in merged.items() if option.search}


_REGISTRY: dict[str, ModelInfo] = {}


def _architecture_arguments(family: Family) -> list[str]:
    from keras_resnets.models.application import APPLICATION_ARGUMENTS

    parameters = inspect.signature(family.generic).parameters.values()
    return [
        p.name
        for p in parameters
        if p.name not in APPLICATION_ARGUMENTS and p.kind != p.VAR_KEYWORD
    ]


def register_rows(family: Family, rows: Iterable[Row]) -> dict[str, Callable[..., keras.Model]]:
    """Register every row of a family's table; return `{name: builder}`.

    Each builder has the keras.applications signature plus the family's
    options (`application_builder`), and its `ModelInfo` keeps the row's
    spec, options and arguments.

    Args:
        family: the `Family` the rows belong to.
        rows: the table.

    Returns:
        The builders by name, aliases included, for the module to export.

    Raises:
        ValueError: a name is registered twice, or a row's arguments are
            invalid for the family (the family's spec function says which);
            nothing of the table is registered then.
        TypeError: a row names an argument the family does not take.

    Example:
        >>> from keras_resnets.models.resnet import RESNET
        >>> row = Row("ResNet26", {"depths": (2, 2, 2, 2), "block": "bottleneck"},
        ...           num_params=15_995_176, title="ResNet-26")
        >>> builders = register_rows(RESNET, [row])  # keras_resnets.get_model("ResNet26")
    """
    from keras_resnets.models.application import application_builder

    rows = list(rows)
    specs, seen = [], set()
    for row in rows:  # every row is checked before any is registered
        for name in (row.name, *row.aliases):
            if name in _REGISTRY or name in seen:
                raise ValueError(f"Model {name!r} is registered twice.")
            seen.add(name)
        try:
            specs.append(family.spec(**row.arguments))
        except TypeError as exc:
            raise TypeError(
                f"Row {row.name!r}: {exc}; the architecture arguments of "
                f"`{family.generic.__name__}` are {', '.join(_architecture_arguments(family))}."
            ) from None
    builders = {}
    for row, spec in zip(rows, specs, strict=True):
        if row.input_size is not None:
            spec = dataclasses.replace(spec, default_size=row.input_size)
        options = family.options(spec)
        builder = application_builder(
            row.name,
            spec,
            family.build,
            title=row.title,
            summary=row.summary,
            options=options,
            options_doc=doc(spec) if callable(doc := family.options_doc) else doc,
            pooling_note=family.pooling_note,
            example=family.example,
        )
        info = ModelInfo(
            name=row.name,
            builder=builder,
            family=row.family or family.label,
            input_size=spec.default_size,
            num_params=row.num_params,
            paper=row.paper or family.paper,
            slow=row.slow,
            spec=spec,
            options=options,
            generic=family.generic.__name__,
            arguments=dict(row.arguments),
            architecture=family.architecture(spec),
            test_input_size=row.test_input_size or spec.default_size,
        )
        for name in (row.name, *row.aliases):
            _REGISTRY[name] = dataclasses.replace(info, name=name)
            builders[name] = builder
    return builders


def unregister(name: str) -> None:
    """Remove a registered name (tests that register a row clean up with it)."""
    model_info(name)  # raises for an unknown name
    del _REGISTRY[name]


def list_models() -> list[str]:
    """Return the names of all registered builders, sorted.

    Returns:
        A sorted list of names accepted by `get_model`.

    Example:
        >>> "ResNet50" in keras_resnets.list_models()
        True
    """
    return sorted(_REGISTRY)


def model_info(name: str) -> ModelInfo:
    """Return the `ModelInfo` of a registered builder (see `get_model` for errors)."""
    if not isinstance(name, str):
        raise TypeError(f"`name` must be a string, got {type(name).__name__}: {name!r}.")
    if name not in _REGISTRY:
        lowered = {key.lower(): key for key in _REGISTRY}
        if name.lower() in lowered:
            close = [lowered[name.lower()]]
        else:
            close = [
                lowered[key]
                for key in difflib.get_close_matches(name.lower(), list(lowered), n=5, cutoff=0.5)
            ]
        hint = f" Closest names: {', '.join(close)}." if close else ""
        raise ValueError(
            f"Unknown model name {name!r}.{hint} `keras_resnets.list_models()` lists all "
            f"{len(_REGISTRY)} models."
        )
    return _REGISTRY[name]


def get_model(name: str, **kwargs) -> keras.Model:
    """Build a registered model by name.

    Args:
        name: one of `list_models()`, e.g. `"ResNet50"`.
        **kwargs: passed to the builder (`include_top`, `weights`,
            `input_shape`, `classes`, family options...).

    Returns:
        A functional `keras.Model`.

    Raises:
        ValueError: the name is unknown; the message lists the closest names.

    Example:
        >>> model = keras_resnets.get_model("ResNet20", classes=100)
    """
    return model_info(name).builder(**kwargs)


def model_table() -> str:
    """The model zoo as a Markdown table (name, family, params, input, paper)."""
    lines = [
        "| model | family | trainable params | input | paper |",
        "|---|---|---:|---|---|",
    ]
    for name in list_models():
        info = _REGISTRY[name]
        size = info.input_size
        lines.append(
            f"| `{name}` | {info.family} | {info.num_params:,} | {size}x{size}x3 | {info.paper} |"
        )
    return "\n".join(lines)
