"""Veit et al.'s lesion study: delete or reorder blocks of a trained network at test time."""

from __future__ import annotations

import keras
import numpy as np

from keras_resnets.analysis.graph import Block, find_blocks
from keras_resnets.analysis.rebuild import rebuild
from keras_resnets.utils import check_int


def lesioned_model(
    model: keras.Model,
    *,
    remove=(),
    order=None,
    name: str | None = None,
) -> keras.Model:
    """A fresh copy of `model` (same weights) with blocks deleted or reordered.

    A deleted residual block keeps its shortcut and the layers after its
    merge (`{block}_out`), exactly as if its branch output were zero; a
    deleted plain block (same input and output shape) becomes the identity.
    `model` itself is not modified.

    Args:
        model: a model from this package, or one nesting it (blocks are
            found in its recorded stages, see `find_blocks`).
        remove: block names to delete, e.g. `["stage2_block3"]`.
        order: all block names in the order to run them (only blocks of
            equal input and output shapes may swap places).
        name: the new model's name.

    Returns:
        A new functional `keras.Model`.

    Example:
        >>> lesioned = lesioned_model(model, remove=["stage1_block2"])
    """
    return rebuild(model, remove=remove, order=order, name=name or f"{model.name}_lesioned")


def _dataset(dataset):
    if isinstance(dataset, (tuple, list)) and len(dataset) == 2:
        x, y = (np.asarray(v) for v in dataset)
    else:
        xs, ys = [], []
        try:
            for batch in dataset:
                xs.append(np.asarray(batch[0]))
                ys.append(np.asarray(batch[1]))
        except TypeError as exc:
            raise ValueError(
                "`dataset` must be a pair (images, labels) or an iterable of "
                f"(images, labels) batches, got {type(dataset).__name__}."
            ) from exc
        if not xs:
            raise ValueError("`dataset` is empty.")
        x, y = np.concatenate(xs), np.concatenate(ys)
    y = y.reshape(len(y), -1)
    if y.shape[1] > 1:  # one-hot labels
        y = y.argmax(axis=1)
    y = y.reshape(-1).astype(np.int64)
    if len(x) != len(y) or len(x) == 0:
        raise ValueError(
            f"`dataset` must hold as many labels as images (at least one), got {len(x)} "
            f"images and {len(y)} labels."
        )
    return x.astype("float32"), y


def error_rate(model: keras.Model, x: np.ndarray, y: np.ndarray, batch_size: int = 256) -> float:
    """Top-1 error of `model` on `(x, y)`, in inference mode.

    Args:
        model: a classifier.
        x: images.
        y: integer labels.
        batch_size: images per forward pass.

    Returns:
        The fraction of misclassified images.
    """
    wrong = 0
    for start in range(0, len(x), batch_size):
        out = keras.ops.convert_to_numpy(model(x[start : start + batch_size], training=False))
        wrong += int((out.argmax(axis=-1) != y[start : start + batch_size]).sum())
    return wrong / len(x)


def _swap_groups(blocks: list[Block]) -> list[list[int]]:
    """Indices of blocks that can trade places (same input and output shapes)."""
    groups: dict[tuple, list[int]] = {}
    for i, block in enumerate(blocks):
        if block.same_shape:
            key = (tuple(block.input.shape), tuple(block.output.shape))
            groups.setdefault(key, []).append(i)
    return [g for g in groups.values() if len(g) > 1]


def lesion_study(
    model: keras.Model,
    dataset,
    *,
    max_deletions: int | None = None,
    draws: int = 5,
    max_swaps: int | None = 0,
    include_downsampling: bool = False,
    seed: int = 0,
    batch_size: int = 256,
) -> dict:
    """Delete each block in turn, then k random blocks, then reorder blocks.

    For a residual model, deleting a block removes its branch at test time
    and keeps its shortcut; Veit et al. (2016) found that this barely
    changes a trained ResNet's error (except at downsampling blocks), while
    deleting a layer of a plain network breaks it. For a plain model, every
    block whose input and output shapes are equal is deleted (replaced by the
    identity). The downsampling blocks are the first blocks of the stages
    whose recorded reduction or channels change (`find_blocks`). Each lesion is a fresh model with copies of the weights
    (`lesioned_model`); `model` is not modified.

    Args:
        model: a trained classifier from this package (or one nesting a
            backbone from it); it must carry `feature_info`.
        dataset: `(images, labels)` (integer or one-hot labels) or an iterable
            of such batches; use held-out data.
        max_deletions: largest k for the random k-block deletions (default:
            all removable blocks); 0 skips them.
        draws: random draws per k (deletions and swaps).
        max_swaps: largest number of random swaps of two same-shape blocks
            for the reordering experiment (None: as many as such blocks; 0,
            the default, skips it).
        include_downsampling: let the random deletions pick residual blocks
            that change the shape (their shortcut stays); the single-block
            deletions always cover every removable block.
        seed: seed of the random draws.
        batch_size: images per forward pass.

    Returns:
        A dict: `model`, `residual`, `baseline_error`, `single` (one entry
        per block: `block`, `downsampling`, `removable`, `error`, None where
        not removable; `stage` and `downsampling` as recorded in the model's
        `feature_info`, see `find_blocks`), `deletions` (per k: `k`, `errors`, `mean`, `std`) and
        `swaps` (per number of swaps: `swaps`, `errors`, `mean`, `std`).

    Example:
        >>> result = lesion_study(model, (x_test, y_test), max_deletions=3)
        >>> result["baseline_error"], result["single"][1]["error"]
    """
    x, y = _dataset(dataset)
    check_int("draws", draws, minimum=1)
    check_int("batch_size", batch_size, minimum=1)
    blocks = find_blocks(model)
    residual = any(b.residual for b in blocks)
    rng = np.random.default_rng(seed)

    def error_of(**lesion) -> float:
        return error_rate(lesioned_model(model, **lesion), x, y, batch_size)

    baseline = error_rate(model, x, y, batch_size)
    single = []
    for block in blocks:
        error = error_of(remove=[block.name]) if block.removable else None
        single.append(
            {
                "block": block.name,
                "stage": block.stage,
                "downsampling": block.downsampling,
                "removable": block.removable,
                "error": error,
            }
        )

    candidates = [
        b.name for b in blocks if b.removable and (include_downsampling or not b.downsampling)
    ]
    if max_deletions is None:
        max_deletions = len(candidates)
    check_int("max_deletions", max_deletions, minimum=0)
    if max_deletions > len(candidates):
        raise ValueError(
            f"`max_deletions` is {max_deletions} but model {model.name!r} has only "
            f"{len(candidates)} blocks that can be deleted: {', '.join(candidates)}."
        )
    deletions = []
    for k in range(1, max_deletions + 1):
        errors = [
            error_of(remove=list(rng.choice(candidates, size=k, replace=False)))
            for _ in range(draws)
        ]
        deletions.append(_summary("k", k, errors))

    groups = _swap_groups(blocks)
    swappable = sum(len(g) for g in groups)
    if max_swaps is None:
        max_swaps = swappable
    check_int("max_swaps", max_swaps, minimum=0)
    if max_swaps and not groups:
        raise ValueError(
            f"`max_swaps` is {max_swaps} but model {model.name!r} has no two blocks of "
            "equal shapes to swap; pass max_swaps=0."
        )
    swaps = []
    names = [b.name for b in blocks]
    for count in range(1, max_swaps + 1):
        errors = []
        for _ in range(draws):
            order = list(names)
            for _ in range(count):
                group = groups[rng.integers(len(groups))]
                i, j = rng.choice(group, size=2, replace=False)
                order[i], order[j] = order[j], order[i]
            errors.append(error_of(order=order))
        swaps.append(_summary("swaps", count, errors))

    return {
        "model": model.name,
        "residual": residual,
        "num_examples": len(x),
        "baseline_error": baseline,
        "single": single,
        "deletions": deletions,
        "swaps": swaps,
    }


def _summary(key: str, value: int, errors: list[float]) -> dict:
    return {
        key: value,
        "errors": [float(e) for e in errors],
        "mean": float(np.mean(errors)),
        "std": float(np.std(errors)),
    }
