"""The public builders' contract: the keras.applications arguments, options, docstring.

`APPLICATION_ARGUMENTS` names the keras.applications arguments once;
`with_application_arguments` gives every builder, named or generic, that
signature; `check_options` refuses an option a builder does not take (a
`TypeError` that lists the ones it does) and a value its `Option` does not
allow (a `ValueError` naming it); `application_builder` makes the
builder of one registered row, with its docstring from `APPLICATION_DOC`;
`stochastic_depth_options` and `check_depth` are option helpers the families
share. `builder.build_model` is what every builder ends in.
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable, Mapping, Sequence

import keras

from keras_resnets.models.registry import RATE, Option, check_values

APPLICATION_ARGUMENTS = (
    "include_top",
    "weights",
    "input_tensor",
    "input_shape",
    "pooling",
    "classes",
    "classifier_activation",
    "name",
)


_PLAIN_NOTE = "A plain network has no shortcuts, so a dropped block would cut the network."


def stochastic_depth_options(search: bool = True, mode: str = "batch") -> dict[str, Option]:
    """The stochastic-depth options every residual family takes (`STOCHASTIC_DEPTH_DOC`).

    Args:
        search: whether a hyper-parameter search tries `drop_path_rate`
            (0, 0.2, 0.5); False for the plain networks, which take only 0.
        mode: the default `stochastic_depth_mode` (`"sample"` for the
            timm-era families).

    Returns:
        `{option: Option}` in the builders' order.
    """
    from keras_resnets.layers.stochastic_depth import MODES, SCALES

    return {
        "drop_path_rate": Option(0.0, search=(0.0, 0.2, 0.5), **RATE)
        if search
        else Option(0.0, **{**RATE, "maximum": 0.0, "high_open": False}, note=_PLAIN_NOTE),
        "stochastic_depth_mode": Option(mode, MODES),
        "stochastic_depth_scale": Option(None, (None, *SCALES)),
        "stochastic_depth_seed": Option(None, kind=int, minimum=0, optional=True),
    }


def check_depth(depth, *, step: int, extra: int, layout: str, argument: str = "depth", shown=6):
    """The n of a network of `depth` = `step` * n + `extra` layers.

    Args:
        depth: the depth asked for.
        step: weighted layers per unit of n (6 for three stages of basic blocks).
        extra: layers outside the stages (stem, classifier, ...).
        layout: what the formula describes, for the message.
        argument: the argument's name in the message.
        shown: how many valid depths the message lists.

    Returns:
        n, at least 1.

    Raises:
        ValueError: naming `argument`, the value and the valid depths.
    """
    from keras_resnets.utils import check_int

    check_int(argument, depth, minimum=step + extra)
    if (depth - extra) % step:
        valid = ", ".join(str(step * n + extra) for n in range(1, shown + 1))
        raise ValueError(
            f"`{argument}` must be {step}n + {extra} for {layout}, got {depth}; "
            f"valid depths are {valid}, ..."
        )
    return int((depth - extra) // step)


def _application_parameters(classes: int | None) -> list[inspect.Parameter]:
    defaults = dict.fromkeys(APPLICATION_ARGUMENTS)
    defaults.update(include_top=True, classes=classes, classifier_activation="softmax")
    # String annotations, as `from __future__ import annotations` writes them.
    annotations = {
        "include_top": "bool",
        "classes": "int" if classes is not None else "int | None",
        "name": "str | None",
    }
    kind = inspect.Parameter.POSITIONAL_OR_KEYWORD
    empty = inspect.Parameter.empty
    return [
        inspect.Parameter(key, kind, default=defaults[key], annotation=annotations.get(key, empty))
        for key in APPLICATION_ARGUMENTS
    ]


def with_application_arguments(classes: int | None):
    """Give a builder the keras.applications arguments, declared once here.

    The decorated function takes its architecture arguments as ordinary
    parameters, its family options as keyword-only ones (or `**options`)
    and a keyword-only `application` dict. The public signature is the
    architecture arguments, then `include_top, weights, input_tensor,
    input_shape, pooling, classes, classifier_activation, name` (as
    keras.applications), then the options, so positional calls work as
    with a hand-written signature; `inspect.signature` shows it.

    Args:
        classes: the default of `classes`.

    Returns:
        The decorator.

    Example:
        >>> @with_application_arguments(classes=10)
        ... def Tiny(depth=8, *, application, **options): ...
        >>> list(inspect.signature(Tiny).parameters)[:3]
        ['depth', 'include_top', 'weights']
    """

    def decorate(fn: Callable[..., keras.Model]) -> Callable[..., keras.Model]:
        own = inspect.signature(fn).parameters.values()
        kind = inspect.Parameter.POSITIONAL_OR_KEYWORD
        leading = [p for p in own if p.kind == kind]
        trailing = [
            p.replace(kind=kind)
            for p in own
            if p.kind == p.KEYWORD_ONLY and p.name != "application"
        ]
        variadic = [p for p in own if p.kind == p.VAR_KEYWORD]
        signature = inspect.Signature(
            [*leading, *_application_parameters(classes), *trailing, *variadic],
            return_annotation=inspect.signature(fn).return_annotation,
        )
        extra = variadic[0].name if variadic else None

        @functools.wraps(fn)
        def builder(*args, **kwargs):
            if extra is None:  # the signature is the whole list: name what is not in it
                own_names = [p.name for p in (*leading, *trailing)]
                check_options(fn.__name__, set(kwargs) - set(signature.parameters), own_names)
            try:
                bound = signature.bind(*args, **kwargs)
            except TypeError as error:
                raise TypeError(f"{fn.__name__}(): {error}") from None
            bound.apply_defaults()
            arguments = dict(bound.arguments)
            application = {key: arguments.pop(key) for key in APPLICATION_ARGUMENTS}
            options = arguments.pop(extra, {}) if extra else {}
            return fn(**arguments, application=application, **options)

        builder.__signature__ = signature
        return builder

    return decorate


APPLICATION_DOC = """{title}.

{summary}

Every argument is checked before anything is built. NumPy scalars
(`np.int64`, `np.float32`, `np.bool_`, as config loaders give them) are
accepted wherever a Python int, float or bool is; a bool is never taken for
a number, nor a number for a switch; NaN and infinities are refused.

Args:
    include_top: whether to include the global-average-pool + dense
        classifier (True or False).
    weights: None (random initialisation) or the path to a `.weights.h5` or
        `.keras` file of this architecture.{pretrained}
    input_tensor: optional Keras tensor (`keras.Input` or a layer's output)
        to use as the model's input; with `input_shape` as well, the two
        shapes (without the batch axis) must agree.
    input_shape: `(height, width, channels)`; defaults to
        `({size}, {size}, 3)` with `include_top=True`, `(None, None, 3)`
        without. Height and width must be at least {min_size}.
    pooling: with `include_top=False`: None (the last feature
        map{pooling_note}), `"avg"` or `"max"` (global pooling to a vector).
    classes: number of classes of the classifier, an integer >= 1
        (default {classes}; None means the default in every builder).
    classifier_activation: activation of the classifier: a Keras activation
        name (`"softmax"`), None for logits, or a function of one tensor
        (tried on a small tensor at build time). With `classes=1` use
        `"sigmoid"` or None: a softmax of one output is always 1.
    name: the model name (default `"{lower}"`).
{options}
Returns:
    A functional `keras.Model`.

Raises:
    ValueError: a bad argument value (the message names the argument, the
        value and what is allowed).
    TypeError: an option this model does not take.

Example:
    >>> model = keras_resnets.{name}({example})
    >>> model.count_params() > 0
    True
"""


def check_options(builder_name: str, options, accepted) -> dict:
    """Refuse an option a builder does not take, or a value its `Option` does not allow.

    Args:
        builder_name: the public builder's name (`"ResNet50"`, `"ResNet"`).
        options: the keyword arguments given besides the keras.applications ones.
        accepted: the option names the builder takes, or its `{option: Option}`
            (then each value is checked against its type, range and choices).

    Returns:
        `options` with each checked value as the Python value (`np.int64(8)`
        becomes 8, `np.bool_(True)` True).

    Raises:
        TypeError: an unknown option; the message names it and lists `accepted`.
        ValueError: a value outside its `Option`, naming the option.
    """
    unknown = sorted(set(options) - set(accepted))
    if unknown:
        allowed = ", ".join(accepted) if accepted else "none"
        raise TypeError(
            f"{builder_name}() got an unexpected keyword argument {unknown[0]!r}; "
            f"besides the keras.applications arguments it takes: {allowed}."
        )
    if not isinstance(accepted, Mapping):
        return dict(options)
    return check_values(accepted, **options)


def application_builder(
    model_name: str,
    spec,
    build: Callable[..., keras.Model],
    *,
    title: str,
    summary: str,
    options: Mapping[str, Option] | Sequence[str] = (),
    options_doc: str = "",
    pooling_note: str = "",
    example: str = "",
) -> Callable[..., keras.Model]:
    """Make the keras.applications-style builder function of one named model.

    Every registered builder (`ResNet50`, `ResNeXt29_8x64d`, `DenseNet121`,
    ...) is made here: the keras.applications arguments, the family's
    `options` (anything else is a `TypeError` naming the model and listing
    its options), and a docstring from `APPLICATION_DOC`.

    Args:
        model_name: the registry name, also the function's `__name__`.
        spec: the family's spec; needs `default_size`, `default_classes` and
            `total_stride`.
        build: called as `build(spec, model_name=..., include_top=..., ...,
            name=..., **options)`.
        title: first docstring line.
        summary: docstring paragraph describing the architecture.
        options: the family options the builder accepts, `{option: Option}`
            (each value given is checked against it) or their names.
        options_doc: their `Args:` entries (indented by four spaces).
        pooling_note: text after "the last feature map" in `pooling`'s entry.
        example: arguments shown in the docstring's example call.

    Returns:
        The builder function; its `options` attribute is the tuple of
        accepted option names.
    """
    from keras_resnets.weights.pretrained import pretrained_doc

    accepted = options if isinstance(options, Mapping) else tuple(options)

    @with_application_arguments(classes=spec.default_classes)
    def builder(*, application, **kwargs) -> keras.Model:
        kwargs = check_options(model_name, kwargs, accepted)
        return build(spec, model_name=model_name, **application, **kwargs)

    builder.__name__ = builder.__qualname__ = model_name
    builder.options = tuple(accepted)
    builder.__doc__ = APPLICATION_DOC.format(
        title=title,
        summary=summary,
        pretrained=pretrained_doc(model_name),
        size=spec.default_size,
        min_size=spec.total_stride,
        pooling_note=pooling_note,
        classes=spec.default_classes,
        lower=model_name.lower(),
        options=options_doc,
        name=model_name,
        example=example,
    )
    return builder
