"""Pretrained ImageNet weights: the registry, the download cache, the conversion.

`weights="imagenet"` (or an explicit tag such as `"tv_in1k"`, `"a1_in1k"`,
`"ra2_in1k"`) on a builder downloads the PyTorch checkpoint once into the
Keras cache directory (`$KERAS_HOME/models/keras_resnets`, default
`~/.keras/models/keras_resnets`), checks its SHA-256 where one is recorded,
converts it with `load_torch_checkpoint`, saves the converted Keras
`.weights.h5` next to it and loads that. The download is
`keras.utils.get_file` with the SHA-256 as `file_hash`. Later calls load the
converted file directly.

Every checkpoint is a timm `.safetensors` file on the Hugging Face Hub
(`https://huggingface.co/timm/<timm model>.<tag>`; no PyTorch needed):
torchvision's weights as timm re-publishes them (`tv_in1k`: torchvision's
`IMAGENET1K_V1`, `tv2_in1k`: `IMAGENET1K_V2`) and timm's own ImageNet-1k
checkpoints (`a1_in1k`... "ResNet strikes back", `ra2_in1k`, `racm_in1k`,
`gluon_in1k`, ResNet-RS `tf_in1k`, ResNeSt `in1k`...). The rows of
`keras_resnets/data/pretrained_weights.json` are the one table of them: tag, top-1/top-5 from timm's results table, the
evaluation size, crop and interpolation, the training size. `"imagenet"`
means `tv_in1k` where torchvision publishes weights, and for the families it
does not (ResNet-D/T, SE, ECA, ResNet-RS, ResNeSt) timm's default tag for
the model (`_IMAGENET`).
"""

from __future__ import annotations

import copy
import dataclasses
import hashlib
import json
import os
import shutil
import tempfile
import textwrap
import warnings

import keras

from keras_resnets.preprocessing import IMAGENET_MEAN, IMAGENET_STD
from keras_resnets.utils import atomic_write

__all__ = [
    "PRETRAINED_TAGS",
    "PretrainedWeights",
    "WeightsDownloadError",
    "available_weights",
    "cache_dir",
    "converted_weights_path",
    "download_checkpoint",
    "get_pretrained",
    "load_pretrained",
    "register_pretrained",
]

# torchvision's ImageNet normalisation, what most checkpoints were trained with.
TORCHVISION_PREPROCESSING = {
    "scale": 1.0 / 255.0,
    "mean": list(IMAGENET_MEAN),
    "std": list(IMAGENET_STD),
}
# How a checkpoint is evaluated when nothing else is known (torchvision's
# "resize 256, center crop 224", bilinear).
DEFAULT_EVALUATION = {"input_size": 224, "crop_pct": 0.875, "interpolation": "bilinear"}
INTERPOLATIONS = ("bilinear", "bicubic")
_NORMALISATION = ("scale", "mean", "std")
_HUB = "https://huggingface.co/timm/{model}.{tag}/resolve/main/model.safetensors"
LAYOUTS = (None, "torchvision", "timm")


class WeightsDownloadError(OSError):
    """A checkpoint could not be downloaded (no network, HTTP error)."""


@dataclasses.dataclass(frozen=True)
class PretrainedWeights:
    """One published checkpoint.

    Attributes:
        model_name: the registered builder name (`"ResNet50"`).
        tag: the `weights` value that selects it: timm's pretrained tag
            (`"tv_in1k"`, `"a1_in1k"`, `"ra2_in1k"`...) or a tag given to
            `register_pretrained`.
        url: where the `.safetensors` (or `.pth`) checkpoint is downloaded from.
        sha256: its SHA-256 as published (the Hugging Face LFS object id), or
            None where no verified value is recorded: the file is then used
            unchecked and a warning gives the SHA-256 it had.
        origin: where the weights come from, for the docs.
        classes: width of the checkpoint's classifier (1000 for ImageNet).
        preprocessing: how the checkpoint is evaluated, in one dict:
            `{"scale": s, "mean": [...], "std": [...]}` (pixels in [0, 255]
            map to `(pixels * scale - mean) / std`) and `"input_size"` (the
            evaluation height and width), `"crop_pct"` (the central crop's
            share of the resized shorter side, in (0, 1]) and
            `"interpolation"` (`"bilinear"` or `"bicubic"`). Loading the
            weights sets it as the model's `preprocessing`;
            `preprocess_input(x, model)` and the export use it.
        layout: the checkpoint's parameter names, passed to
            `load_torch_checkpoint(..., layout=)`: `"timm"` for timm's own
            checkpoints; None (detected from the keys) for torchvision's.
        top1, top5: ImageNet-1k validation accuracy (%) in timm's results
            table (`results/results-imagenet.csv`) at `preprocessing`'s
            size, crop and interpolation; None where the table has no row.
        train_size: the resolution timm lists as the checkpoint's training
            (`input_size`) size, or None.
        license: the license timm's configuration lists, or None.
    """

    model_name: str
    tag: str
    url: str
    sha256: str | None = None
    origin: str = ""
    classes: int = 1000
    preprocessing: dict = dataclasses.field(
        default_factory=lambda: {**TORCHVISION_PREPROCESSING, **DEFAULT_EVALUATION},
        compare=False,
        hash=False,
    )
    layout: str | None = None
    top1: float | None = None
    top5: float | None = None
    train_size: int | None = None
    license: str | None = None

    @property
    def _stem(self) -> str:
        return f"{self.model_name}.{self.tag}.{self.sha256[:8] if self.sha256 else 'unverified'}"

    @property
    def checkpoint_name(self) -> str:
        """File name of the downloaded checkpoint in the cache."""
        suffix = ".safetensors" if self.url.endswith(".safetensors") else ".pth"
        return self._stem + suffix

    @property
    def converted_name(self) -> str:
        """File name of the converted Keras weights in the cache."""
        return self._stem + ".weights.h5"


_REGISTRY: dict[tuple[str, str], PretrainedWeights] = {}


def register_pretrained(
    model_name: str,
    tag: str,
    *,
    url: str,
    sha256: str | None = None,
    origin: str = "",
    classes: int = 1000,
    preprocessing: dict | None = None,
    layout: str | None = None,
    top1: float | None = None,
    top5: float | None = None,
    train_size: int | None = None,
    license: str | None = None,
) -> PretrainedWeights:
    """Register (or replace) the checkpoint behind `weights=tag` for a model.

    Use it to point a model at a mirror or at your own torchvision- or
    timm-layout checkpoint; the built-in entries are registered the same way.

    Args:
        model_name: a registered builder name, e.g. `"ResNet50"`.
        tag: the `weights` value that selects it (not `"imagenet"`, which is
            an alias: see `available_weights`).
        url: `http(s)://` or `file://` URL of a `.safetensors` or `.pth` file.
        sha256: the file's SHA-256 (64 hex digits), or None to skip the check.
        origin: free text shown in the docs.
        classes: width of the checkpoint's classifier.
        preprocessing: the normalisation the weights were trained with,
            `{"scale", "mean", "std"}`, optionally with the evaluation
            `"input_size"` (int), `"crop_pct"` (in (0, 1]) and
            `"interpolation"` (`"bilinear"`/`"bicubic"`); None: torchvision's
            ImageNet normalisation. Missing evaluation keys default to
            224, 0.875 and bilinear.
        layout: None (detected from the checkpoint's keys), `"torchvision"`
            or `"timm"`: passed to `load_torch_checkpoint`.
        top1, top5: the checkpoint's ImageNet accuracy in %, for the docs.
        train_size: its training resolution, for the docs.
        license: its license, for the docs.

    Returns:
        The registered `PretrainedWeights`.

    Raises:
        ValueError: a bad argument, named in the message.

    Example:
        >>> register_pretrained(  # doctest: +SKIP
        ...     "ResNet50", "tv_in1k", url="https://mirror.example/resnet50.safetensors",
        ...     sha256="5d061a3c593d795bfe682d9b152bafbcf550579873492def3515b46db1189888")
    """
    if not isinstance(tag, str) or not tag or tag == "imagenet":
        raise ValueError(f"`tag` must be a non-empty string other than 'imagenet', got {tag!r}.")
    if not isinstance(url, str) or not url.endswith((".safetensors", ".pth", ".pt")):
        raise ValueError(f"`url` must end in .safetensors, .pth or .pt, got {url!r}.")
    if sha256 is not None:
        if not isinstance(sha256, str) or len(sha256) != 64 or not _is_hex(sha256):
            raise ValueError(f"`sha256` must be 64 hexadecimal digits or None, got {sha256!r}.")
        sha256 = sha256.lower()
    if layout not in LAYOUTS:
        raise ValueError(
            f"`layout` must be one of {', '.join(repr(v) for v in LAYOUTS)}, got {layout!r}."
        )
    for argument, value in (("top1", top1), ("top5", top5)):
        if value is not None and not (isinstance(value, (int, float)) and 0 < value < 100):
            raise ValueError(
                f"`{argument}` must be None or a percentage in (0, 100), got {value!r}."
            )
    entry = PretrainedWeights(
        model_name,
        tag,
        url,
        sha256,
        origin,
        classes,
        _check_preprocessing(preprocessing),
        layout,
        top1,
        top5,
        train_size,
        license,
    )
    _REGISTRY[(model_name, tag)] = entry
    return entry


def _check_preprocessing(preprocessing: dict | None) -> dict:
    """`preprocessing` completed with the defaults, or a ValueError naming it."""
    if preprocessing is None:
        preprocessing = TORCHVISION_PREPROCESSING
    allowed = set(_NORMALISATION) | set(DEFAULT_EVALUATION)
    if (
        not isinstance(preprocessing, dict)
        or not set(_NORMALISATION) <= set(preprocessing)
        or not set(preprocessing) <= allowed
    ):
        raise ValueError(
            "`preprocessing` must be None or a dict with keys 'scale', 'mean' and 'std' "
            "(and optionally 'input_size', 'crop_pct', 'interpolation'), "
            f"got {preprocessing!r}."
        )
    spec = {**DEFAULT_EVALUATION, **preprocessing}
    size, crop = spec["input_size"], spec["crop_pct"]
    if not isinstance(size, int) or isinstance(size, bool) or size < 1:
        raise ValueError(f"`preprocessing['input_size']` must be a positive int, got {size!r}.")
    if not isinstance(crop, (int, float)) or isinstance(crop, bool) or not 0 < crop <= 1:
        raise ValueError(f"`preprocessing['crop_pct']` must be in (0, 1], got {crop!r}.")
    if spec["interpolation"] not in INTERPOLATIONS:
        raise ValueError(
            f"`preprocessing['interpolation']` must be one of {INTERPOLATIONS}, "
            f"got {spec['interpolation']!r}."
        )
    return {
        "scale": float(spec["scale"]),
        "mean": [float(v) for v in spec["mean"]],
        "std": [float(v) for v in spec["std"]],
        "input_size": int(size),
        "crop_pct": float(crop),
        "interpolation": spec["interpolation"],
    }


def _is_hex(text: str) -> bool:
    return all(c in "0123456789abcdefABCDEF" for c in text)


def _imagenet_tag(model_name: str) -> str | None:
    """The tag `"imagenet"` stands for: torchvision's `tv_in1k`, else timm's default."""
    if (model_name, "tv_in1k") in _REGISTRY:
        return "tv_in1k"
    tag = _IMAGENET.get(model_name)
    return tag if (model_name, tag) in _REGISTRY else None


def _canonical(model_name: str) -> str:
    """The row name behind a registered alias (`"ResNeXt50_32x4d"` -> `"ResNeXt50"`)."""
    from keras_resnets.models import registry

    info = registry._REGISTRY.get(model_name)
    return info.builder.__name__ if info is not None else model_name


def available_weights(model_name: str) -> list[str]:
    """The `weights` tags with a published checkpoint for `model_name`.

    `"imagenet"` is listed where it stands for a checkpoint: torchvision's
    `"tv_in1k"` where torchvision publishes weights for the model, and for
    the families it does not (ResNet-D/T, SE-ResNet(X)t, ECA-ResNet,
    ResNet-RS, ResNeSt) timm's default tag for the model (docs/pretrained.md
    lists which).

    Args:
        model_name: a registered builder name (an alias such as
            `"ResNeXt50_32x4d"` has its row's weights).

    Returns:
        A sorted list, with `"imagenet"` first where it applies; empty for
        models without pretrained weights.

    Example:
        >>> available_weights("ResNet18")
        ['imagenet', 'a1_in1k', 'a2_in1k', 'a3_in1k', 'gluon_in1k', 'tv_in1k']
    """
    model_name = _canonical(model_name)
    tags = sorted(tag for name, tag in _REGISTRY if name == model_name)
    return (["imagenet"] if _imagenet_tag(model_name) else []) + tags


def pretrained_doc(model_name: str) -> str:
    """The sentences builders' docstrings add to `weights` (empty without weights)."""
    tags = available_weights(model_name)
    if not tags:
        return ""
    imagenet = _imagenet_tag(model_name)
    alias = f" (`'imagenet'` is {imagenet!r})" if imagenet else ""
    text = (
        f"Or a pretrained tag, one of {', '.join(repr(t) for t in tags)}{alias}: "
        "ImageNet weights published by timm (torchvision's are 'tv_in1k' and "
        "'tv2_in1k'), downloaded once and converted, carrying the checkpoint's "
        "preprocessing in `model.preprocessing` (see docs/pretrained.md); they need 3 "
        "input channels."
    )
    lines = textwrap.wrap(text, 70, break_on_hyphens=False)
    return "".join("\n        " + line for line in lines)


def get_pretrained(model_name: str, tag: str) -> PretrainedWeights:
    """The registry entry for `(model_name, tag)`; `"imagenet"` as `available_weights` says.

    Raises:
        ValueError: no checkpoint is published for that model and tag; the
            message lists the tags that are.
    """
    model_name = _canonical(model_name)
    resolved = _imagenet_tag(model_name) if tag == "imagenet" else tag
    entry = _REGISTRY.get((model_name, resolved))
    if entry is None:
        have = available_weights(model_name)
        if have:
            hint = f"published for {model_name}: {', '.join(repr(t) for t in have)}"
        else:
            with_weights = sorted({name for name, _ in _REGISTRY})
            hint = (
                f"{model_name} has none; models with pretrained weights: {', '.join(with_weights)}"
            )
        raise ValueError(f"No pretrained weights {tag!r} for {model_name} ({hint}).")
    return entry


def cache_dir() -> str:
    """The directory of downloaded and converted checkpoints.

    `$KERAS_HOME/models/keras_resnets` (Keras's cache directory; `~/.keras`
    when `KERAS_HOME` is unset), created on first use.

    Returns:
        The directory path.
    """
    base = os.environ.get("KERAS_HOME") or os.path.join(os.path.expanduser("~"), ".keras")
    path = os.path.join(base, "models", "keras_resnets")
    os.makedirs(path, exist_ok=True)
    return path


def _sha256(path: str) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _warn_unverified(entry: PretrainedWeights, path: str, digest: str) -> None:
    warnings.warn(
        f"No verified SHA-256 is recorded for {entry.model_name} weights {entry.tag!r}; "
        f"{path!r} was used unchecked (its SHA-256 is {digest}).",
        stacklevel=3,
    )


def download_checkpoint(entry: PretrainedWeights) -> str:
    """Download `entry`'s checkpoint into the cache once, checking its SHA-256.

    The download is `keras.utils.get_file(..., file_hash=entry.sha256)` into
    a hidden temporary directory inside the cache; the file is moved under
    its final name only once complete and verified, so an interrupted or
    corrupted download leaves nothing in the cache.

    Args:
        entry: a registry entry (`get_pretrained(...)`).

    Returns:
        The path of the verified checkpoint in the cache.

    Raises:
        WeightsDownloadError: the URL cannot be reached; the message gives the
            URL and the path where the file can be placed by hand.
        ValueError: the downloaded (or hand-placed) file has the wrong SHA-256.
    """
    directory = cache_dir()
    target = os.path.join(directory, entry.checkpoint_name)
    if os.path.isfile(target):
        digest = _sha256(target)
        if entry.sha256 is not None and digest != entry.sha256:
            raise ValueError(
                f"Cached checkpoint {target!r} has SHA-256 {digest}, expected {entry.sha256} "
                f"({entry.url}); delete it to download it again."
            )
        return target
    staging = tempfile.mkdtemp(prefix=f".{entry.checkpoint_name}.", suffix=".part", dir=directory)
    try:
        try:
            path = keras.utils.get_file(
                entry.checkpoint_name,
                entry.url,
                file_hash=entry.sha256,
                hash_algorithm="sha256",
                cache_dir=staging,
                cache_subdir="",
            )
        except Exception as exc:  # get_file raises a bare Exception for URL errors
            partial = os.path.join(staging, entry.checkpoint_name)
            if isinstance(exc, ValueError) and os.path.isfile(partial):
                raise ValueError(
                    f"The file downloaded from {entry.url} has SHA-256 {_sha256(partial)}, "
                    f"expected {entry.sha256}: it is corrupted or not the published file. "
                    "Nothing was kept in the cache; try again."
                ) from None
            raise WeightsDownloadError(
                f"Could not download the {entry.model_name} weights {entry.tag!r} from "
                f"{entry.url} ({exc}). Without network access, download that file by "
                f"hand and place it at {target}"
                + (f" (SHA-256 {entry.sha256})." if entry.sha256 else ".")
            ) from exc
        os.replace(path, target)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    if entry.sha256 is None:
        _warn_unverified(entry, target, _sha256(target))
    return target


def converted_weights_path(entry: PretrainedWeights) -> str:
    """The converted Keras `.weights.h5` of `entry`, downloading and converting once.

    The conversion builds the registered model with its defaults
    (`include_top=True`, 1000 classes), loads the checkpoint with
    `load_torch_checkpoint` (with `layout=entry.layout` where one is set) and saves the weights under a temporary name,
    renamed when complete.

    Args:
        entry: a registry entry.

    Returns:
        The path of the converted weights in the cache.
    """
    target = os.path.join(cache_dir(), entry.converted_name)
    if os.path.isfile(target):
        return target
    from keras_resnets.models.registry import model_info
    from keras_resnets.weights.torch_checkpoint import load_torch_checkpoint

    checkpoint = download_checkpoint(entry)
    model = model_info(entry.model_name).builder(weights=None, classes=entry.classes)
    # torchvision's checkpoints keep the call without `layout` (detected from the keys).
    load_torch_checkpoint(model, checkpoint, **({"layout": entry.layout} if entry.layout else {}))
    with atomic_write(target) as temporary:
        model.save_weights(temporary)
    return target


def load_pretrained(model: keras.Model, model_name: str, tag: str) -> None:
    """Load the pretrained weights `tag` of `model_name` into `model`.

    With the top, the converted file is loaded as is (shapes checked layer by
    layer). Without it (`include_top=False`, any input size, any pooling),
    the weights are copied by layer name from the full converted model.
    A `keras_resnets.Network` then carries the checkpoint's normalisation,
    evaluation size, crop and interpolation in `model.preprocessing`
    (`entry.preprocessing`: `preprocess_input(x, model)` and the export use
    them).

    Args:
        model: a model built by the `model_name` builder with default family
            options, 3 input channels.
        model_name: the registered builder name.
        tag: `"imagenet"` or a tag of `available_weights(model_name)`.

    Raises:
        ValueError: no such weights, or the model's layers differ from the
            pretrained architecture (the message names the first one).
        WeightsDownloadError: the checkpoint cannot be downloaded.
    """
    from keras_resnets.weights import load_weights_file

    entry = get_pretrained(model_name, tag)
    path = converted_weights_path(entry)
    if any(layer.name == "head_fc" for layer in model.layers):
        load_weights_file(model, path)
        _carry_preprocessing(model, entry)
        return
    from keras_resnets.models.registry import model_info

    full = model_info(model_name).builder(weights=None, classes=entry.classes)
    full.load_weights(path)
    for layer in model.layers:
        if not layer.weights:
            continue
        try:
            source = full.get_layer(layer.name)
        except ValueError as exc:
            raise ValueError(
                f"Layer {layer.name!r} of model {model.name!r} is not in the pretrained "
                f"{model_name} {tag!r} architecture."
            ) from exc
        values = source.get_weights()
        shapes = [tuple(w.shape) for w in layer.weights]
        if [v.shape for v in values] != shapes:
            raise ValueError(
                f"Pretrained {model_name} {tag!r} weights do not match model {model.name!r} at "
                f"layer {layer.name!r}: {[v.shape for v in values]} vs {shapes}."
            )
        layer.set_weights(values)
    _carry_preprocessing(model, entry)


def _carry_preprocessing(model: keras.Model, entry: PretrainedWeights) -> None:
    """Record the checkpoint's preprocessing on the model (a `Network`), for the export."""
    from keras_resnets.models.network import Network

    if isinstance(model, Network):
        model.preprocessing = copy.deepcopy(entry.preprocessing)


# The built-in checkpoints, one row each, and where their facts come from: a data file.
_ROWS_FILE = os.path.join(
    os.path.dirname(os.path.dirname(__file__)), "data", "pretrained_weights.json"
)


def _read_rows() -> list[dict]:
    with open(_ROWS_FILE, encoding="utf-8") as handle:
        table = json.load(handle)
    return [dict(zip(table["columns"], row, strict=True)) for row in table["rows"]]


_ROWS = _read_rows()

# `weights="imagenet"` for the models torchvision publishes no weights for: timm's default
# tag (the first it lists for the model). Elsewhere "imagenet" is torchvision's "tv_in1k".
_IMAGENET = {
    "ResNet18D": "ra2_in1k",
    "ResNet34D": "ra2_in1k",
    "ResNet50D": "ra2_in1k",
    "ResNet101D": "ra2_in1k",
    "ResNet152D": "ra2_in1k",
    "ResNet200D": "ra2_in1k",
    "ResNet26T": "ra2_in1k",
    "SEResNet50": "a1_in1k",
    "SEResNeXt50_32x4d": "racm_in1k",
    "SEResNeXt101_32x4d": "gluon_in1k",
    "ECAResNet50D": "miil_in1k",
    "ResNetRS50": "tf_in1k",
    "ResNetRS101": "tf_in1k",
    "ResNetRS152": "tf_in1k",
    "ResNetRS200": "tf_in1k",
    "ResNetRS270": "tf_in1k",
    "ResNetRS350": "tf_in1k",
    "ResNetRS420": "tf_in1k",
    "ResNeSt14": "gluon_in1k",
    "ResNeSt26": "gluon_in1k",
    "ResNeSt50": "in1k",
    "ResNeSt101": "in1k",
    "ResNeSt200": "in1k",
    "ResNeSt269": "in1k",
}

# Where each kind of tag comes from (the part of the tag before "_in1k").
_ORIGINS = {
    "tv": "torchvision IMAGENET1K_V1",
    "tv2": "torchvision IMAGENET1K_V2",
    "gluon": "GluonCV, ported by timm",
    "miil": "Alibaba MIIL, ported by timm",
    "tf": "TensorFlow ResNet-RS (Bello et al. 2021), ported by timm",
    "": "ResNeSt authors (Zhang et al. 2020), ported by timm",
}
_RSB = "timm, ResNet strikes back (Wightman et al. 2021)"


def _origin(tag: str) -> str:
    kind = tag.removesuffix("in1k").removesuffix("_")
    if kind in _ORIGINS:
        return _ORIGINS[kind]
    if kind[0] in "abcd" and kind[1:] in ("1", "1h", "2", "3", "1k", "2k", ""):
        return _RSB
    return "timm's own training"


for _row in _ROWS:
    register_pretrained(
        _row["model"],
        _row["tag"],
        url=_HUB.format(model=_row["timm_model"], tag=_row["tag"]),
        sha256=_row["sha256"],
        origin=_origin(_row["tag"]),
        preprocessing={
            **TORCHVISION_PREPROCESSING,
            **{key: _row[key] for key in DEFAULT_EVALUATION},
        },
        layout=None if _row["tag"].startswith("tv") else "timm",
        top1=_row["top1"],
        top5=_row["top5"],
        train_size=_row["train_size"],
        license="bsd-3-clause" if _row["tag"].startswith("tv") else None,
    )

# Every built-in tag, "imagenet" first: what the builders route to `get_pretrained`.
PRETRAINED_TAGS = ("imagenet", *sorted({row["tag"] for row in _ROWS}))


def pretrained_table() -> str:
    """The Markdown table of the built-in checkpoints (docs/pretrained.md), from the registry."""
    lines = [
        "| model | `weights=` | top-1 | top-5 | size (train) | crop | interpolation | source "
        "| SHA-256 |",
        "|---|---|---:|---:|---|---:|---|---|---|",
    ]
    for entry in _REGISTRY.values():
        if not entry.url.startswith("https://huggingface.co/timm/"):
            continue
        spec = entry.preprocessing
        imagenet = " (`imagenet`)" if _imagenet_tag(entry.model_name) == entry.tag else ""
        accuracy = (
            (f"{entry.top1:.3f}", f"{entry.top5:.3f}") if entry.top1 else ("not in table", "")
        )
        lines.append(
            f"| {entry.model_name} | `{entry.tag}`{imagenet} | {accuracy[0]} | {accuracy[1]} "
            f"| {spec['input_size']} ({entry.train_size}) | {spec['crop_pct']!r} "
            f"| {spec['interpolation']} | [{entry.url.split('/')[4]}]"
            f"(https://huggingface.co/{'/'.join(entry.url.split('/')[3:5])}): {entry.origin} "
            f"| {f'`{entry.sha256}`' if entry.sha256 else 'not recorded'} |"
        )
    return "\n".join(lines)
