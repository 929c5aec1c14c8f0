"""Recipes: YAML files of hyper-parameters, their schema, overrides and resolution.

A recipe is a small YAML file under `training/recipes/` (or any path) with
the sections `model`, `data`, `train`, `optimizer`, `schedule`, `transfer`,
`checkpoint` and `runtime`, declared once as typed dataclasses (`Recipe`,
`Data`, `Train`, ...: each field's type, default and allowed values).
Every key is checked against them (`SCHEMA` is their nested view): an
unknown key or a value of the wrong type raises a `ValueError` naming the
file and the dotted key. Model names are checked lazily, when a run builds
the model, so recipes for families that are not installed yet still
validate.
"""

from __future__ import annotations

import copy
import dataclasses
import os
import types
import typing
from typing import Any


def _yaml():
    """PyYAML, imported on first use: importing the trainer must not import Keras
    (through `keras_resnets`) before `--backend` has chosen the backend."""
    from keras_resnets._optional import require

    return require("yaml", "The trainer's recipes (`training/`)")


RECIPE_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "recipes")

#: The `--strategy` / `runtime.strategy` names; `training.distribute` maps them
#: to strategies.
STRATEGIES = ("auto", "default", "one_device", "mirrored", "multi_worker", "tpu")


def _choice(default: str, choices: tuple[str, ...]):
    """A string field that only takes one of `choices`."""
    return dataclasses.field(default=default, metadata={"choices": choices})


def _mutable(factory):
    return dataclasses.field(default_factory=factory)


@dataclasses.dataclass
class Model:
    name: str = "ResNet20"
    options: dict = _mutable(dict)


@dataclasses.dataclass
class Data:
    dataset: str = "digits"
    data_dir: str | None = None
    image_size: int = 32
    augmentation: str = _choice("cifar", ("none", "cifar", "imagenet"))
    flip: bool = True
    normalization: str = _choice("per_channel", ("per_channel", "imagenet", "none"))
    validation: str = _choice("test", ("test", "split", "folder", "none"))
    validation_fraction: float = 0.1
    train_subset: int | None = None
    test_subset: int | None = None
    skip_bad_images: bool = False
    shuffle_buffer: int = 10000


@dataclasses.dataclass
class Train:
    batch_size: int = 128
    per_replica_batch_size: int | None = None
    epochs: int | None = None
    iterations: int | None = None
    steps_per_epoch: int | None = None
    seed: int = 0
    label_smoothing: float = 0.0
    deterministic: bool = False


@dataclasses.dataclass
class Optimizer:
    name: str = _choice("sgd", ("sgd", "adam", "adamw"))
    learning_rate: float = 0.1
    momentum: float = 0.9
    nesterov: bool = False
    weight_decay: float = 1e-4
    scale_with_batch: bool = True
    reference_batch_size: int | None = None
    clipnorm: float | None = None


@dataclasses.dataclass
class Schedule:
    name: str = _choice("piecewise", ("piecewise", "cosine", "constant"))
    unit: str = _choice("epochs", ("epochs", "iterations", "fraction"))
    boundaries: list = _mutable(list)
    factor: float = 0.1
    warmup_steps: int = 0
    warmup_unit: str = _choice("iterations", ("iterations", "epochs"))
    warmup_mode: str = _choice("linear", ("linear", "constant"))
    warmup_learning_rate: float | None = None


# `from` is a Python keyword: the field is `from_`, the recipe key `from`.
@dataclasses.dataclass
class Transfer:
    from_: str | None = dataclasses.field(default=None, metadata={"key": "from"})
    freeze_until: str | None = None
    freeze_batchnorm: bool = True
    new_classes: int | None = None


@dataclasses.dataclass
class Checkpoint:
    every_epoch: bool = True
    every_steps: int | None = None


@dataclasses.dataclass
class Runtime:
    strategy: str = _choice("auto", STRATEGIES)
    mixed_precision: bool = False
    jit_compile: bool = False
    tensorboard: bool = True
    tensorboard_images: bool = True
    verbose: str = _choice("auto", ("auto", "bar", "line", "quiet"))
    cpu_devices: int | None = None


@dataclasses.dataclass
class Recipe:
    """The recipe schema: one typed dataclass per section, the defaults in the fields.

    A field's type is what the YAML value may be (`float` also takes an
    int, `X | None` also `null`); a `choices` entry in its metadata lists the
    allowed values. `load_recipe` returns the plain nested dict.
    """

    description: str = ""
    paper: str = ""
    reference_error: float | None = None
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


def _schema(cls) -> dict[str, Any]:
    """A dataclass as `{key: (allowed types, default[, allowed values])}`, nested."""
    hints = typing.get_type_hints(cls)
    out: dict[str, Any] = {}
    for field in dataclasses.fields(cls):
        key = field.metadata.get("key", field.name)
        hint = hints[field.name]
        if dataclasses.is_dataclass(hint):
            out[key] = _schema(hint)
            continue
        if field.default is not dataclasses.MISSING:
            default = field.default
        else:
            default = field.default_factory()
        choices = field.metadata.get("choices")
        out[key] = (_leaf_types(hint), default) + ((choices,) if choices else ())
    return out


#: The schema as nested `{key: (allowed types, default[, allowed values])}`,
#: read from the `Recipe` dataclasses (their one declaration).
SCHEMA: dict[str, Any] = _schema(Recipe)


def _is_leaf(spec: Any) -> bool:
    return isinstance(spec, tuple)


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
        ValueError: an unknown key, a value of the wrong type or outside its
            allowed set; the message names `source` and the dotted key.

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
            types = spec[0]
            ok = isinstance(value, types) and not (
                isinstance(value, bool) and bool not in _as_tuple(types)
            )
            if not ok:
                raise ValueError(
                    f"{source}: `{dotted}` must be {_type_names(types)}, got "
                    f"{type(value).__name__} {value!r}."
                )
            if len(spec) > 2 and value not in spec[2]:
                raise ValueError(
                    f"{source}: `{dotted}` must be one of {', '.join(spec[2])}, got {value!r}."
                )

    walk(recipe, SCHEMA, "")


def _as_tuple(types) -> tuple:
    return types if isinstance(types, tuple) else (types,)


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
            data = yaml.safe_load(f) or {}
        except yaml.YAMLError as error:
            raise ValueError(f"{path}: not valid YAML: {error}") from error
    validate(data, path)
    return _merge(defaults(), data)


def parse_value(text: str) -> Any:
    """Parse the value of a `--set key=value` with YAML rules (1e-4, true, [1, 2])."""
    value = _yaml().safe_load(text)
    if isinstance(value, str) and value.lower() in ("none", "null"):
        return None
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
        ValueError: an item without `=`.
    """
    out = {}
    for item in items or []:
        if "=" not in item:
            raise ValueError(f"--set expects key=value, got {item!r}.")
        key, text = item.split("=", 1)
        out[key.strip()] = parse_value(text)
    return out
