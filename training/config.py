"""Recipes: YAML files of hyper-parameters, their schema, overrides and resolution.

A recipe is a small YAML file under `training/recipes/` (or any path) with
the sections `model`, `data`, `train`, `optimizer`, `schedule`, `transfer`,
`checkpoint` and `runtime`, declared once as typed dataclasses (`Recipe`,
`Data`, `Train`, ...: each field's type, default and allowed values).
Every key is checked against them (`SCHEMA` is their nested view, `RANGES`
the allowed range of each numeric key, declared in its field): an unknown
key, a value of the wrong type, outside its range or not one of its choices
raises a `ValueError` naming the file (or `--set`, or the flag), the dotted
key, the value and what is allowed, when the recipe is loaded or
overridden, before any data loads. Recipe files and `--set` values are read
with the YAML 1.2 core schema (`1e-3` is a float, `none` and `yes` are
strings; only `null`, `~` and an empty value are null); NumPy scalars and
paths given from Python are taken as their Python values (`python_value`).
Model names are not checked here, so recipes for families that are not
installed yet still validate; a run checks the name and `model.options`
before any data loads (`training.runner`).
"""

from __future__ import annotations

import copy
import dataclasses
import functools
import math
import os
import re
import types
import typing
from typing import Any

import numpy as np


def _yaml():
    """PyYAML, imported on first use, and without importing `keras_resnets`.

    The flags are parsed with it (their argparse types) before `--backend` has
    chosen the backend, and `keras_resnets` imports Keras; only a missing
    PyYAML goes through `keras_resnets._optional` for its message.
    """
    try:
        import yaml
    except ImportError:
        from keras_resnets._optional import require

        return require("yaml", "The trainer's recipes (`training/`)")
    return yaml


RECIPE_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "recipes")

#: The `--strategy` / `runtime.strategy` names; `training.distribute` maps them
#: to strategies.
STRATEGIES = ("auto", "default", "one_device", "mirrored", "multi_worker", "tpu")


def _choice(default: str, choices: tuple[str, ...]):
    """A string field that only takes one of `choices`."""
    return dataclasses.field(default=default, metadata={"choices": choices})


def _mutable(factory):
    return dataclasses.field(default_factory=factory)


@dataclasses.dataclass(frozen=True)
class Range:
    """The values a numeric recipe key allows (finite numbers only).

    Example:
        >>> 0 in Range(0, 1, exclusive_maximum=True), str(Range(0, exclusive_minimum=True))
        (True, '> 0')
    """

    minimum: float | None = None
    maximum: float | None = None
    exclusive_minimum: bool = False
    exclusive_maximum: bool = False

    def __contains__(self, value) -> bool:
        if isinstance(value, float) and not math.isfinite(value):
            return False
        low = self.minimum is None or (
            value > self.minimum if self.exclusive_minimum else value >= self.minimum
        )
        high = self.maximum is None or (
            value < self.maximum if self.exclusive_maximum else value <= self.maximum
        )
        return low and high

    def __str__(self) -> str:
        low, high = self.minimum, self.maximum
        if low is not None and high is not None:
            left, right = (
                "(" if self.exclusive_minimum else "[",
                ")" if self.exclusive_maximum else "]",
            )
            return f"in {left}{low}, {high}{right}"
        if low is not None:
            return f"{'>' if self.exclusive_minimum else '>='} {low}"
        if high is not None:
            return f"{'<' if self.exclusive_maximum else '<='} {high}"
        return "finite"


def _number(default, minimum=None, maximum=None, *, above=False, below=False):
    """A numeric field with its allowed range (`above`/`below`: the bound is excluded)."""
    return dataclasses.field(
        default=default, metadata={"range": Range(minimum, maximum, above, below)}
    )


#: The largest seed NumPy and TensorFlow both take (`keras.utils.set_random_seed`),
#: read from NumPy (`keras_resnets.utils.seed_flag` reads the same).
MAX_SEED = int(np.iinfo(np.uint32).max)


@dataclasses.dataclass
class Model:
    name: str = "ResNet20"
    options: dict = _mutable(dict)


@dataclasses.dataclass
class Data:
    dataset: str = "digits"
    data_dir: str | None = None
    image_size: int = _number(32, 1)
    augmentation: str = _choice("cifar", ("none", "cifar", "imagenet"))
    flip: bool = True
    normalization: str = _choice("per_channel", ("per_channel", "imagenet", "none"))
    validation: str = _choice("test", ("test", "split", "folder", "none"))
    validation_fraction: float = _number(0.1, 0, 1, below=True)
    train_subset: int | None = _number(None, 0)
    test_subset: int | None = _number(None, 0)
    skip_bad_images: bool = False
    shuffle_buffer: int = _number(10000, 1)


@dataclasses.dataclass
class Train:
    batch_size: int = _number(128, 1)
    per_replica_batch_size: int | None = _number(None, 1)
    epochs: int | None = _number(None, 1)
    iterations: int | None = _number(None, 1)
    steps_per_epoch: int | None = _number(None, 1)  # null: the data's size // batch
    seed: int = _number(0, 0, MAX_SEED)
    deterministic: bool = False


@dataclasses.dataclass
class Optimizer:
    name: str = _choice("sgd", ("sgd", "adam", "adamw"))
    learning_rate: float = _number(0.1, 0, above=True)
    momentum: float = _number(0.9, 0, 1)
    nesterov: bool = False
    weight_decay: float = _number(1e-4, 0)
    scale_with_batch: bool = True
    reference_batch_size: int | None = _number(None, 1)
    clipnorm: float | None = _number(None, 0, above=True)


@dataclasses.dataclass
class Schedule:
    name: str = _choice("piecewise", ("piecewise", "cosine", "constant"))
    unit: str = _choice("epochs", ("epochs", "iterations", "fraction"))
    # Increasing numbers >= 0, each in `unit`s.
    boundaries: list = dataclasses.field(default_factory=list, metadata={"range": Range(0)})
    factor: float = _number(0.1, 0, above=True)
    warmup_steps: int = _number(0, 0)
    warmup_unit: str = _choice("iterations", ("iterations", "epochs"))
    warmup_mode: str = _choice("linear", ("linear", "constant"))
    warmup_learning_rate: float | None = _number(None, 0)


# `from` is a Python keyword: the field is `from_`, the recipe key `from`.
@dataclasses.dataclass
class Transfer:
    from_: str | None = dataclasses.field(default=None, metadata={"key": "from"})
    freeze_until: str | None = None
    freeze_batchnorm: bool = True
    new_classes: int | None = _number(None, 1)


@dataclasses.dataclass
class Checkpoint:
    every_epoch: bool = True
    every_steps: int | None = _number(None, 1)


@dataclasses.dataclass
class Runtime:
    strategy: str = _choice("auto", STRATEGIES)
    mixed_precision: bool = False
    jit_compile: bool = False
    tensorboard: bool = True
    tensorboard_images: bool = True
    verbose: str = _choice("auto", ("auto", "bar", "line", "quiet"))
    cpu_devices: int | None = _number(None, 1)


@dataclasses.dataclass
class Recipe:
    """The recipe schema: one typed dataclass per section, the defaults in the fields.

    A field's type is what the YAML value may be (`float` also takes an
    int, `X | None` also `null`); a `choices` entry in its metadata lists the
    allowed values. `load_recipe` returns the plain nested dict.
    """

    description: str = ""
    paper: str = ""
    reference_error: float | None = _number(None, 0, 100)  # percent
    model: Model = _mutable(Model)
    data: Data = _mutable(Data)
    train: Train = _mutable(Train)
    optimizer: Optimizer = _mutable(Optimizer)
    schedule: Schedule = _mutable(Schedule)
    transfer: Transfer = _mutable(Transfer)
    checkpoint: Checkpoint = _mutable(Checkpoint)
    runtime: Runtime = _mutable(Runtime)


def _leaf_types(hint) -> tuple:
    """The Python types a field's annotation allows (`float` also takes int)."""
    args = typing.get_args(hint) if typing.get_origin(hint) is types.UnionType else (hint,)
    out: list = []
    for arg in args:
        out.extend((int, float) if arg is float else (arg,))
    return tuple(out)


def _schema(cls, prefix: str = "") -> tuple[dict[str, Any], dict[str, Range]]:
    """A dataclass as `{key: (allowed types, default[, allowed values])}`, nested,
    and the `{dotted key: Range}` of its numeric fields."""
    hints = typing.get_type_hints(cls)
    out: dict[str, Any] = {}
    ranges: dict[str, Range] = {}
    for field in dataclasses.fields(cls):
        key = field.metadata.get("key", field.name)
        hint = hints[field.name]
        if dataclasses.is_dataclass(hint):
            out[key], inner = _schema(hint, f"{prefix}{key}.")
            ranges.update(inner)
            continue
        if field.default is not dataclasses.MISSING:
            default = field.default
        else:
            default = field.default_factory()
        choices = field.metadata.get("choices")
        out[key] = (_leaf_types(hint), default) + ((choices,) if choices else ())
        if "range" in field.metadata:
            ranges[prefix + key] = field.metadata["range"]
    return out, ranges


#: The schema as nested `{key: (allowed types, default[, allowed values])}`,
#: and the allowed `Range` of every numeric key by dotted key, both read from
#: the `Recipe` dataclasses (their one declaration).
SCHEMA, RANGES = _schema(Recipe)


def _is_leaf(spec: Any) -> bool:
    return isinstance(spec, tuple)


def leaves(schema: dict | None = None, prefix: str = "") -> list[tuple[str, tuple]]:
    """Every leaf key of the schema as `(dotted key, (types, default[, choices]))`.

    Example:
        >>> dict(leaves())["train.batch_size"][1]
        128
    """
    schema = SCHEMA if schema is None else schema
    out = []
    for key, spec in schema.items():
        out += [(prefix + key, spec)] if _is_leaf(spec) else leaves(spec, f"{prefix}{key}.")
    return out


def defaults(schema: dict | None = None) -> dict:
    """The default value of every key of the schema, as a nested dict.

    Returns:
        A fresh nested dict (safe to modify).

    Example:
        >>> defaults()["train"]["batch_size"]
        128
    """
    schema = SCHEMA if schema is None else schema
    out = {}
    for key, spec in schema.items():
        out[key] = copy.deepcopy(spec[1]) if _is_leaf(spec) else defaults(spec)
    return out


def _type_names(types) -> str:
    types = types if isinstance(types, tuple) else (types,)
    return " or ".join("null" if t is type(None) else t.__name__ for t in types)


def validate(recipe: dict, source: str = "<recipe>") -> None:
    """Check a (partial) recipe against `SCHEMA`.

    Args:
        recipe: nested dict as read from YAML.
        source: file name used in error messages.

    Raises:
        ValueError: an unknown key, a value of the wrong type, outside its
            range (`RANGES`) or not one of its choices; the message names
            `source`, the dotted key, the value and what is allowed.

    Example:
        >>> validate({"train": {"epochs": 3}}, "mine.yaml")
    """

    def walk(node: Any, schema: dict, prefix: str) -> None:
        if not isinstance(node, dict):
            raise ValueError(f"{source}: `{prefix or '<top>'}` must be a mapping, got {node!r}.")
        for key, value in node.items():
            dotted = f"{prefix}.{key}" if prefix else str(key)
            if key not in schema:
                allowed = ", ".join(sorted(schema))
                raise ValueError(f"{source}: unknown key `{dotted}`. Allowed keys here: {allowed}.")
            spec = schema[key]
            if not _is_leaf(spec):
                walk(value, spec, dotted)
                continue
            problem = leaf_problem(dotted, value)
            if problem:
                raise ValueError(f"{source}: {problem}")

    walk(recipe, SCHEMA, "")


def leaf_problem(dotted: str, value: Any) -> str | None:
    """What is wrong with `value` for the leaf key `dotted` (None if it is fine).

    The one check of a value against its key's type, choices and range,
    used by `validate` (recipes, `--set`) and by the trainer's flags.

    Example:
        >>> leaf_problem("train.seed", -1)
        '`train.seed` must be an integer in [0, 4294967295], got -1.'
    """
    section, _, name = dotted.rpartition(".")
    spec = (SCHEMA[section] if section else SCHEMA)[name]
    types = spec[0]
    if isinstance(value, bool) and bool not in types or not isinstance(value, types):
        return f"`{dotted}` must be {_type_names(types)}, got {type(value).__name__} {value!r}."
    if len(spec) > 2 and value not in spec[2]:
        return f"`{dotted}` must be one of {', '.join(spec[2])}, got {value!r}."
    allowed = RANGES.get(dotted)
    if isinstance(value, list) and allowed is not None:  # increasing numbers in the range
        numbers = all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in value)
        if not (numbers and all(v in allowed for v in value) and value == sorted(set(value))):
            return f"`{dotted}` must be a list of increasing numbers {allowed}, got {value!r}."
    elif allowed is not None and value is not None and value not in allowed:
        kind = "an integer" if float not in types else "a number"
        nullable = " (or null)" if type(None) in types else ""
        return f"`{dotted}` must be {kind} {allowed}{nullable}, got {value!r}."
    return None


def _merge(base: dict, update: dict) -> dict:
    out = copy.deepcopy(base)
    for key, value in update.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict) and key != "options":
            out[key] = _merge(out[key], value)
        elif isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = {**out[key], **copy.deepcopy(value)}
        else:
            out[key] = copy.deepcopy(value)
    return out


def list_recipes() -> list[str]:
    """Names of the recipes shipped in `training/recipes/`, sorted.

    Returns:
        Recipe names without the `.yaml` suffix.

    Example:
        >>> "cifar10_resnet110" in list_recipes()
        True
    """
    return sorted(f[:-5] for f in os.listdir(RECIPE_DIR) if f.endswith(".yaml"))


def recipe_path(name: str) -> str:
    """The file of a recipe given by name or by path.

    Raises:
        ValueError: no such recipe; the message lists the available names.
    """
    if not isinstance(name, str) or not name:
        raise ValueError(f"`recipe` must be a recipe name or a YAML path, got {name!r}.")
    if name.endswith((".yaml", ".yml")) or os.sep in name:
        if not os.path.isfile(name):
            raise ValueError(f"`recipe`: no such file {name!r}.")
        return name
    path = os.path.join(RECIPE_DIR, name + ".yaml")
    if not os.path.isfile(path):
        raise ValueError(
            f"Unknown recipe {name!r}. Available: {', '.join(list_recipes())} "
            "(or give a path to a YAML file)."
        )
    return path


def load_recipe(name: str) -> dict:
    """Read, validate and complete a recipe with the schema's defaults.

    Args:
        name: a recipe name (`"cifar10_resnet20"`) or a path to a YAML file.

    Returns:
        The full nested dict (every schema key present).

    Raises:
        ValueError: unknown recipe, YAML syntax error, unknown key or bad
            value (naming the file and the key).

    Example:
        >>> load_recipe("cifar10_resnet20")["train"]["iterations"]
        64000
    """
    path = recipe_path(name)
    yaml = _yaml()
    with open(path, encoding="utf-8") as f:
        try:
            data = yaml.load(f, Loader=_core_loader()) or {}
        except yaml.YAMLError as error:
            raise ValueError(f"{path}: not valid YAML: {error}") from error
    validate(data, path)
    return _merge(defaults(), data)


#: The YAML 1.2 core schema's implicit scalars (YAML 1.2.2, section 10.3.2):
#: tag, pattern, first characters. Everything else is a string: `none`,
#: `yes`, `off` and `2024-01-01` stay strings (PyYAML reads YAML 1.1, where
#: `1e-3` is a string and `yes` a bool).
_CORE_SCALARS = (
    ("null", r"^(?:~|null|Null|NULL|)$", "~nN"),
    ("bool", r"^(?:true|True|TRUE|false|False|FALSE)$", "tTfF"),
    ("int", r"^(?:[-+]?[0-9]+|0o[0-7]+|0x[0-9a-fA-F]+)$", "-+0123456789"),
    (
        "float",
        r"^(?:[-+]?(?:\.[0-9]+|[0-9]+(?:\.[0-9]*)?)(?:[eE][-+]?[0-9]+)?"
        r"|[-+]?\.(?:inf|Inf|INF)|\.(?:nan|NaN|NAN))$",
        "-+.0123456789",
    ),
)


def _core_int(text: str) -> int:
    if text.startswith(("0o", "0x")):
        return int(text[2:], 8 if text[1] == "o" else 16)
    return int(text, 10)


def _core_float(text: str) -> float:
    if text.lower().endswith((".inf", ".nan")):
        return float(text.lower().replace(".", ""))  # "-.inf" -> float("-inf")
    return float(text)


@functools.cache
def _core_loader():
    """PyYAML's safe loader with the YAML 1.2 core schema's scalars (`_CORE_SCALARS`)."""
    yaml = _yaml()

    class CoreLoader(yaml.SafeLoader):
        pass

    CoreLoader.yaml_implicit_resolvers = {}
    for tag, pattern, first in _CORE_SCALARS:
        CoreLoader.add_implicit_resolver(
            f"tag:yaml.org,2002:{tag}",
            re.compile(pattern),
            [*first, ""] if tag == "null" else [*first],
        )
    convert = {"null": lambda text: None, "bool": lambda text: text.lower() == "true"}
    convert.update(int=_core_int, float=_core_float)
    for tag, function in convert.items():
        CoreLoader.add_constructor(
            f"tag:yaml.org,2002:{tag}",
            lambda loader, node, function=function: function(loader.construct_scalar(node)),
        )
    return CoreLoader


def parse_value(text: str) -> Any:
    """Parse the value of a `--set key=value` as YAML 1.2 (core schema), as recipe files are.

    Example:
        >>> parse_value("1e-3"), parse_value("none"), parse_value("null"), parse_value("[1, 2]")
        (0.001, 'none', None, [1, 2])
    """
    yaml = _yaml()
    try:
        return yaml.load(text, Loader=_core_loader())
    except yaml.YAMLError as error:
        raise ValueError(f"not a YAML value {text!r}: {error}") from error


def python_value(value: Any) -> Any:
    """`value` with NumPy scalars as Python values and paths as strings, nested too.

    What Python callers pass (`run(seed=np.int64(1))`, a config loader's
    `np.float32` learning rate, `pathlib.Path` for `data_dir`) is taken as
    the Python value it stands for; anything else is returned unchanged, for
    the schema to judge.

    Example:
        >>> python_value({"lr": np.float32(0.5), "sizes": [np.int64(8)], "flip": np.bool_(True)})
        {'lr': 0.5, 'sizes': [8], 'flip': True}
    """
    if isinstance(value, np.generic) and isinstance(value, (np.number, np.bool_, np.str_)):
        return value.item()
    if isinstance(value, os.PathLike):
        return os.fspath(value)
    if isinstance(value, dict):
        return {key: python_value(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return type(value)(python_value(item) for item in value)
    return value


def apply_overrides(config: dict, overrides: dict | None, source: str = "overrides") -> dict:
    """Apply dotted-key overrides (`{"optimizer.learning_rate": 0.05}`).

    Args:
        config: a full recipe dict.
        overrides: mapping of dotted keys (or nested dicts) to values.
        source: name used in error messages (`"--set"`).

    Returns:
        A new, validated config.

    Raises:
        ValueError: unknown key or bad value, naming `source` and the key.

    Example:
        >>> cfg = apply_overrides(load_recipe("digits_resnet20"), {"train.epochs": 1})
    """
    if not overrides:
        return copy.deepcopy(config)
    nested: dict = {}
    for key, value in overrides.items():
        value = python_value(value)
        if isinstance(value, dict) and "." not in key:
            nested = _merge(nested, {key: value})
            continue
        parts = key.split(".")
        node = nested
        for part in parts[:-1]:
            node = node.setdefault(part, {})
        node[parts[-1]] = value
    validate(nested, source)
    return _merge(config, nested)


def parse_set_flags(items: list[str] | None) -> dict:
    """Turn `["a.b=1", "c=x"]` into `{"a.b": 1, "c": "x"}`.

    Raises:
        ValueError: an item without `=`, or a value that is not YAML (naming it).
    """
    out = {}
    for item in items or []:
        if "=" not in item:
            raise ValueError(f"--set expects key=value, got {item!r}.")
        key, text = item.split("=", 1)
        try:
            out[key.strip()] = parse_value(text)
        except ValueError as error:
            raise ValueError(f"--set {key.strip()}: {error}") from error
    return out
