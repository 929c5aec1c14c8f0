"""Pretrained ImageNet weights: the registry, the download cache, the conversion.

`weights="imagenet"` (or an explicit tag, `"tv_in1k"`, `"tv2_in1k"`) on a
builder downloads the PyTorch reference checkpoint once into the Keras cache
directory (`$KERAS_HOME/models/keras_resnets`, default
`~/.keras/models/keras_resnets`), checks its SHA-256, converts it with
`load_torch_checkpoint`, saves the converted Keras `.weights.h5` next to it
and loads that. The download is `keras.utils.get_file` with the SHA-256 as
`file_hash`. Later calls load the converted file directly.

The checkpoints are torchvision's ImageNet weights as re-published by timm
in `.safetensors` form (no PyTorch needed): `tv_in1k` are torchvision's
original `IMAGENET1K_V1` weights, `tv2_in1k` its `IMAGENET1K_V2` weights
(the newer training recipe), published for ResNet-50/101/152, ResNeXt and
Wide ResNet. `"imagenet"` means `tv_in1k`, published for every model here.
"""

from __future__ import annotations

import dataclasses
import hashlib
import os
import shutil
import tempfile
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

PRETRAINED_TAGS = ("imagenet", "tv_in1k", "tv2_in1k")
# torchvision's ImageNet normalisation, what every built-in checkpoint was trained with.
TORCHVISION_PREPROCESSING = {
    "scale": 1.0 / 255.0,
    "mean": list(IMAGENET_MEAN),
    "std": list(IMAGENET_STD),
}
_ALIASES = {"imagenet": "tv_in1k"}
_HUB = "https://huggingface.co/{repo}/resolve/main/model.safetensors"


class WeightsDownloadError(OSError):
    """A checkpoint could not be downloaded (no network, HTTP error)."""


@dataclasses.dataclass(frozen=True)
class PretrainedWeights:
    """One published checkpoint.

    Attributes:
        model_name: the registered builder name (`"ResNet50"`).
        tag: `"tv_in1k"` or `"tv2_in1k"` (or a tag given to
            `register_pretrained`).
        url: where the `.safetensors` (or `.pth`) checkpoint is downloaded from.
        sha256: its SHA-256 as published (the Hugging Face LFS object id), or
            None where no verified value is recorded: the file is then used
            unchecked and a warning gives the SHA-256 it had.
        origin: where the weights come from, for the docs.
        classes: width of the checkpoint's classifier (1000 for ImageNet).
        preprocessing: the input normalisation the weights were trained with,
            `{"scale": s, "mean": [...], "std": [...]}` (pixels in [0, 255]
            map to `(pixels * scale - mean) / std`); loading the weights sets
            it as the model's `preprocessing`, which the export serves by
            default. torchvision's: ImageNet mean and std on [0, 1].
    """

    model_name: str
    tag: str
    url: str
    sha256: str | None = None
    origin: str = ""
    classes: int = 1000
    preprocessing: dict = dataclasses.field(
        default_factory=lambda: dict(TORCHVISION_PREPROCESSING), compare=False, hash=False
    )

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
) -> PretrainedWeights:
    """Register (or replace) the checkpoint behind `weights=tag` for a model.

    Use it to point a model at a mirror or at your own torchvision-layout
    checkpoint; the built-in entries are registered the same way.

    Args:
        model_name: a registered builder name, e.g. `"ResNet50"`.
        tag: the `weights` value that selects it (not `"imagenet"`, which is
            an alias of `"tv_in1k"`).
        url: `http(s)://` or `file://` URL of a `.safetensors` or `.pth` file.
        sha256: the file's SHA-256 (64 hex digits), or None to skip the check.
        origin: free text shown in the docs.
        classes: width of the checkpoint's classifier.
        preprocessing: the normalisation the weights were trained with,
            `{"scale", "mean", "std"}`; None: torchvision's ImageNet one.

    Returns:
        The registered `PretrainedWeights`.

    Example:
        >>> register_pretrained(  # doctest: +SKIP
        ...     "ResNet50", "tv_in1k", url="https://mirror.example/resnet50.safetensors",
        ...     sha256="5d061a3c593d795bfe682d9b152bafbcf550579873492def3515b46db1189888")
    """
    if not isinstance(tag, str) or not tag or tag in _ALIASES:
        raise ValueError(f"`tag` must be a non-empty string other than 'imagenet', got {tag!r}.")
    if not isinstance(url, str) or not url.endswith((".safetensors", ".pth", ".pt")):
        raise ValueError(f"`url` must end in .safetensors, .pth or .pt, got {url!r}.")
    if sha256 is not None:
        if not isinstance(sha256, str) or len(sha256) != 64 or not _is_hex(sha256):
            raise ValueError(f"`sha256` must be 64 hexadecimal digits or None, got {sha256!r}.")
        sha256 = sha256.lower()
    if preprocessing is None:
        preprocessing = TORCHVISION_PREPROCESSING
    if not isinstance(preprocessing, dict) or set(preprocessing) != {"scale", "mean", "std"}:
        raise ValueError(
            "`preprocessing` must be None or a dict with keys 'scale', 'mean' and 'std', "
            f"got {preprocessing!r}."
        )
    preprocessing = {
        "scale": float(preprocessing["scale"]),
        "mean": [float(v) for v in preprocessing["mean"]],
        "std": [float(v) for v in preprocessing["std"]],
    }
    entry = PretrainedWeights(model_name, tag, url, sha256, origin, classes, preprocessing)
    _REGISTRY[(model_name, tag)] = entry
    return entry


def _is_hex(text: str) -> bool:
    return all(c in "0123456789abcdefABCDEF" for c in text)


def available_weights(model_name: str) -> list[str]:
    """The `weights` tags with a published checkpoint for `model_name`.

    Args:
        model_name: a registered builder name.

    Returns:
        A sorted list, with `"imagenet"` first where `"tv_in1k"` exists;
        empty for models without pretrained weights.

    Example:
        >>> available_weights("ResNet50")
        ['imagenet', 'tv2_in1k', 'tv_in1k']
    """
    tags = sorted(tag for name, tag in _REGISTRY if name == model_name)
    return (["imagenet"] if "tv_in1k" in tags else []) + tags


def pretrained_doc(model_name: str) -> str:
    """The sentence builders' docstrings add to `weights` (empty without weights)."""
    tags = available_weights(model_name)
    if not tags:
        return ""
    return (
        f" Or a pretrained tag ({', '.join(repr(t) for t in tags)}):\n"
        "        torchvision's ImageNet weights, downloaded once and converted\n"
        "        (see docs/pretrained.md); they need 3 input channels."
    )


def get_pretrained(model_name: str, tag: str) -> PretrainedWeights:
    """The registry entry for `(model_name, tag)`; `"imagenet"` is `"tv_in1k"`.

    Raises:
        ValueError: no checkpoint is published for that model and tag; the
            message lists the tags that are.
    """
    resolved = _ALIASES.get(tag, tag)
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
    `load_torch_checkpoint` and saves the weights under a temporary name,
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
    load_torch_checkpoint(model, checkpoint)
    with atomic_write(target) as temporary:
        model.save_weights(temporary)
    return target


def load_pretrained(model: keras.Model, model_name: str, tag: str) -> None:
    """Load the pretrained weights `tag` of `model_name` into `model`.

    With the top, the converted file is loaded as is (shapes checked layer by
    layer). Without it (`include_top=False`, any input size, any pooling),
    the weights are copied by layer name from the full converted model.
    A `keras_resnets.Network` then carries the weights' normalisation in
    `model.preprocessing` (the export serves it by default).

    Args:
        model: a model built by the `model_name` builder with default family
            options, 3 input channels.
        model_name: the registered builder name.
        tag: `"imagenet"`, `"tv_in1k"`, `"tv2_in1k"` or a registered tag.

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
    """Record the weights' normalisation on the model (a `Network`), for the export."""
    from keras_resnets.models.network import Network

    if isinstance(model, Network):
        model.preprocessing = {
            "scale": float(entry.preprocessing["scale"]),
            "mean": [float(v) for v in entry.preprocessing["mean"]],
            "std": [float(v) for v in entry.preprocessing["std"]],
        }


def _hub(model_name: str, repo: str, tag: str, sha256: str | None) -> None:
    register_pretrained(
        model_name,
        tag,
        url=_HUB.format(repo=repo),
        sha256=sha256,
        origin=f"torchvision, re-published by timm as {repo}",
    )


# SHA-256 values are the Git LFS object ids shown on each file's Hugging Face
# page; None marks files whose hash could not be verified when this table was
# written (see docs/pretrained.md).
_BUILT_IN = (
    ("ResNet18", "timm/resnet18.tv_in1k", "tv_in1k", "694f673df6520a3158624e8a89af086f59923ee4cd7436fe5bc3bc71d295ad81"),
    ("ResNet34", "timm/resnet34.tv_in1k", "tv_in1k", None),
    ("ResNet50", "timm/resnet50.tv_in1k", "tv_in1k", "5d061a3c593d795bfe682d9b152bafbcf550579873492def3515b46db1189888"),
    ("ResNet50", "timm/resnet50.tv2_in1k", "tv2_in1k", None),
    ("ResNet101", "timm/resnet101.tv_in1k", "tv_in1k", None),
    ("ResNet101", "timm/resnet101.tv2_in1k", "tv2_in1k", None),
    ("ResNet152", "timm/resnet152.tv_in1k", "tv_in1k", "15897077afdf4d6334dc0c3f8e6fb483afb3faa9298c139f3c6eb29bca6ae5b2"),
    ("ResNet152", "timm/resnet152.tv2_in1k", "tv2_in1k", None),
    ("ResNeXt50", "timm/resnext50_32x4d.tv_in1k", "tv_in1k", "c0d85cba49c0e9dedbcf6d4e572e2c5ea5eb68e9d64d0564811fd54d4f72939a"),
    ("ResNeXt50", "timm/resnext50_32x4d.tv2_in1k", "tv2_in1k", None),
    ("ResNeXt101_32x8d", "timm/resnext101_32x8d.tv_in1k", "tv_in1k", "71c7427e233904ad828b768b9683876dc71f143876cbadaa26428bfea3560fc3"),
    ("ResNeXt101_32x8d", "timm/resnext101_32x8d.tv2_in1k", "tv2_in1k", "580cfe940c344745cc8a629517a5c3300b6aeea9bd88a258f61027da010344af"),
    ("ResNeXt101_64x4d", "timm/resnext101_64x4d.tv_in1k", "tv_in1k", "47528f24e5cd6844249c9e4ea11aed6619431b83a0596afe80efdfffdb369900"),
    ("WideResNet50_2", "timm/wide_resnet50_2.tv_in1k", "tv_in1k", "df6fb6c4824769769de18e14088475fd6ee94236849aa4e5d8022ba9d9a9a16c"),
    ("WideResNet50_2", "timm/wide_resnet50_2.tv2_in1k", "tv2_in1k", None),
    ("WideResNet101_2", "timm/wide_resnet101_2.tv_in1k", "tv_in1k", None),
    ("WideResNet101_2", "timm/wide_resnet101_2.tv2_in1k", "tv2_in1k", "0438046a3b7bb8166e6564dec811985d595f3098c9970181305945e0efa964c3"),
    ("DenseNet121", "timm/densenet121.tv_in1k", "tv_in1k", "c894c6d9caa317a8ca1942986dee7a16a86c77734a4d691d2abe05389cfef358"),
    ("DenseNet161", "timm/densenet161.tv_in1k", "tv_in1k", None),
    ("DenseNet169", "timm/densenet169.tv_in1k", "tv_in1k", None),
    ("DenseNet201", "timm/densenet201.tv_in1k", "tv_in1k", None),
)  # fmt: skip

for _name, _repo, _tag, _sha in _BUILT_IN:
    _hub(_name, _repo, _tag, _sha)
