"""The `tf.data` input pipelines: the papers' augmentation, train and eval datasets.

Augmentation is stateless: each example's randomness is a function of the
run's seed and the example's step, so a resumed run sees the same images.
"""

from __future__ import annotations

import numpy as np

from training.data.splits import Source, Split

# ---------------------------------------------------------------------------
# Augmentation (stateless: each example's randomness is a function of the
# seed and its position in the stream, so resumed runs see the same images)
# ---------------------------------------------------------------------------


def cifar_augment(image, seed, pad: int = 4, flip: bool = True):
    """Pad `pad` pixels (zeros), take a random crop of the original size, flip.

    Args:
        image: `(h, w, c)` float tensor.
        seed: shape `(2,)` int tensor (stateless randomness).
        pad: padding on each side (4 in He et al. 2015).
        flip: random horizontal flip.

    Returns:
        The augmented `(h, w, c)` image.

    Example:
        >>> out = cifar_augment(tf.zeros((32, 32, 3)), tf.constant([1, 2]))
    """
    import tensorflow as tf

    shape = tf.shape(image)
    padded = tf.pad(image, [[pad, pad], [pad, pad], [0, 0]])
    out = tf.image.stateless_random_crop(padded, shape, seed=seed)
    if flip:
        out = tf.image.stateless_random_flip_left_right(out, seed=seed + 1)
    return out


def imagenet_train_crop(image, seed, size: int, flip: bool = True):
    """Random-resized crop (area 8%-100%, aspect 3/4-4/3) to `size`, then flip.

    Args:
        image: `(h, w, c)` float tensor in [0, 1].
        seed: shape `(2,)` int tensor.
        size: output height and width (224).
        flip: random horizontal flip.

    Returns:
        A `(size, size, c)` image.
    """
    import tensorflow as tf

    begin, extent, _ = tf.image.stateless_sample_distorted_bounding_box(
        tf.shape(image),
        bounding_boxes=tf.constant([[[0.0, 0.0, 1.0, 1.0]]]),
        seed=seed,
        min_object_covered=0.0,
        aspect_ratio_range=(3 / 4, 4 / 3),
        area_range=(0.08, 1.0),
        max_attempts=10,
        use_image_if_no_bounding_boxes=True,
    )
    crop = tf.slice(image, begin, extent)
    out = tf.image.resize(crop, (size, size), method="bilinear")
    if flip:
        out = tf.image.stateless_random_flip_left_right(out, seed=seed + 1)
    return out


def imagenet_eval_crop(image, size: int):
    """Resize the shorter side to `size * 256 / 224`, then center-crop `size`.

    Args:
        image: `(h, w, c)` float tensor.
        size: output height and width (224 gives the usual 256 / 224).

    Returns:
        A `(size, size, c)` image.
    """
    import tensorflow as tf

    resize = int(round(size * 256 / 224))
    shape = tf.cast(tf.shape(image)[:2], tf.float32)
    scale = resize / tf.reduce_min(shape)
    new = tf.cast(tf.round(shape * scale), tf.int32)
    image = tf.image.resize(image, new, method="bilinear")
    top = (new[0] - size) // 2
    left = (new[1] - size) // 2
    return tf.slice(image, [top, left, 0], [size, size, -1])


# ---------------------------------------------------------------------------
# tf.data pipelines
# ---------------------------------------------------------------------------


def _decoder(split: Split, data: dict, channels: int):
    """Return `load(index) -> (image float32 [0,1], label)` for arrays/files."""
    import tensorflow as tf

    size = data.get("image_size", 32)
    if split.kind == "arrays":
        images = tf.constant(split.images)
        labels = tf.constant(split.labels)
        scale = 255.0 if split.images.dtype == np.uint8 else 1.0

        def load(index):
            image = tf.cast(tf.gather(images, index), tf.float32) / scale
            if split.images.shape[1] != size or split.images.shape[2] != size:
                image = tf.image.resize(image, (size, size))
            return image, tf.gather(labels, index)

        return load
    from keras_resnets.export import decode_image

    paths = tf.constant(split.images)
    labels = tf.constant(split.labels)

    def load(index):
        # The export's decoder: what serve_bytes gives the model for this file.
        image = decode_image(tf.io.read_file(tf.gather(paths, index)), channels=channels)
        image = tf.cast(image, tf.float32) / 255.0
        return image, tf.gather(labels, index)

    return load


def _finish(image, data: dict, train: bool, seed, mean, std):
    """Augment (training) or resize/crop (evaluation), then normalise."""
    import tensorflow as tf

    size = data.get("image_size", 32)
    kind = data.get("augmentation", "cifar")
    flip = data.get("flip", True)
    if kind == "imagenet":
        image = (
            imagenet_train_crop(image, seed, size, flip)
            if train
            else imagenet_eval_crop(image, size)
        )
    else:
        if image.shape[0] != size or image.shape[1] != size:
            image = tf.image.resize(image, (size, size))
        if train and kind == "cifar":
            image = cifar_augment(image, seed, flip=flip)
        elif train and flip:
            image = tf.image.stateless_random_flip_left_right(image, seed=seed + 1)
    image = (image - tf.constant(mean, tf.float32)) / tf.constant(std, tf.float32)
    image.set_shape((size, size, len(mean)))
    return image


def _tfds_image(decode, value):
    """Decode an image read with `SkipDecoding` (already decoded data passes through)."""
    import tensorflow as tf

    return decode(value) if value.dtype == tf.string else value


def _options(kind: str):
    import tensorflow as tf

    options = tf.data.Options()
    policy = tf.data.experimental.AutoShardPolicy
    # In-memory arrays and path lists are one "file": shard by data. TFDS
    # splits are sharded TFRecord files: let tf.data shard by file when there
    # are enough files, by data otherwise.
    options.experimental_distribute.auto_shard_policy = (
        policy.AUTO if kind == "tfds" else policy.DATA
    )
    return options


def train_dataset(source: Source, data: dict, batch_size: int, seed: int, start_step: int = 0):
    """The endless, deterministic training stream, batched.

    Example `i` of the stream (counting from the first step) is example
    `index_shuffle(i mod n, seed=(seed, i // n))` of the training split,
    augmented with the stateless seed `(seed, i)`: a run resumed at step
    `s` reads exactly what the uninterrupted run read from step `s` on.

    Args:
        source: from `load_source`.
        data: the recipe's `data` section.
        batch_size: global batch size.
        seed: data seed.
        start_step: first optimizer step of this run (resume).

    Returns:
        A `tf.data.Dataset` of `(images, labels)` batches, never ending.

    Example:
        >>> ds = train_dataset(source, cfg["data"], 128, seed=0)
    """
    import tensorflow as tf

    split = source.train
    mean, std = source.mean, source.std
    first = start_step * batch_size
    if split.kind == "tfds":
        import tensorflow_datasets as tfds

        builder, name = split.tfds_split
        ds = builder.as_dataset(
            split=name,
            shuffle_files=True,
            decoders={"image": tfds.decode.SkipDecoding()},
            read_config=tfds.ReadConfig(shuffle_seed=seed),
        )
        buffer = min(data.get("shuffle_buffer", 10000), split.size)
        ds = ds.shuffle(buffer, seed=seed, reshuffle_each_iteration=True).repeat()
        ds = ds.skip(first).enumerate(first)
        decode = builder.info.features["image"].decode_example

        def prepare(i, example):
            image = tf.cast(_tfds_image(decode, example["image"]), tf.float32) / 255.0
            image = _finish(image, data, True, tf.stack([seed, i]), mean, std)
            return image, tf.cast(example["label"], tf.int32)

    else:
        n = split.size
        load = _decoder(split, data, source.channels)

        def prepare(i):
            epoch = i // n
            index = tf.random.experimental.index_shuffle(
                i % n, seed=tf.stack([tf.constant(seed, tf.int64), epoch]), max_index=n - 1
            )
            image, label = load(index)
            image = _finish(
                image, data, True, tf.stack([tf.constant(seed, tf.int64), i]), mean, std
            )
            return image, label

        ds = tf.data.Dataset.range(first, 2**62)
    ds = ds.map(prepare, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
    ds = ds.batch(batch_size, drop_remainder=True).prefetch(tf.data.AUTOTUNE)
    return ds.with_options(_options(split.kind))


def eval_dataset(source: Source, split: Split, data: dict, batch_size: int):
    """A finite evaluation pipeline (no augmentation; center crop for ImageNet).

    Args:
        source: from `load_source` (normalisation, channels).
        split: the split to read (`source.validation` or `source.test`).
        data: the recipe's `data` section.
        batch_size: global batch size.

    Returns:
        A `tf.data.Dataset` of `(images, labels)` batches, cached in memory
        when the split is in memory.
    """
    import tensorflow as tf

    mean, std = source.mean, source.std
    if split.kind == "tfds":
        import tensorflow_datasets as tfds

        builder, name = split.tfds_split
        ds = builder.as_dataset(split=name, decoders={"image": tfds.decode.SkipDecoding()})
        decode = builder.info.features["image"].decode_example

        def prepare(example):
            image = tf.cast(_tfds_image(decode, example["image"]), tf.float32) / 255.0
            return _finish(image, data, False, None, mean, std), tf.cast(example["label"], tf.int32)

        ds = ds.map(prepare, num_parallel_calls=tf.data.AUTOTUNE)
    else:
        load = _decoder(split, data, source.channels)

        def prepare(i):
            image, label = load(i)
            return _finish(image, data, False, None, mean, std), label

        ds = tf.data.Dataset.range(split.size).map(prepare, num_parallel_calls=tf.data.AUTOTUNE)
        if split.kind == "arrays":
            ds = ds.cache()
    ds = ds.batch(batch_size).prefetch(tf.data.AUTOTUNE)
    return ds.with_options(_options(split.kind))
