"""Every image kind reaches the model as Pillow's RGB pixels, in training and in serving.

The reference is `np.asarray(Image.open(path).convert("RGB"))`. Training is
the image-folder pipeline (`training.data.load_source` + `eval_dataset`);
serving is the export's `serve_bytes` on a model whose output is its input
pixels (Flatten: with `preprocessing="none"` and the image's own size the
served "probabilities" are the decoded pixels). Kinds no decoder agrees on
are refused: by name in training, with a `decode_image` error in serving.
"""

from __future__ import annotations

import io

import keras
import numpy as np
import pytest
import tensorflow as tf
from PIL import Image

from keras_resnets.export import decode_image, export_saved_model
from training import data as data_lib

H, W = 7, 5  # odd sizes: row padding in BMPs, no resize anywhere


def _base() -> Image.Image:
    rng = np.random.default_rng(0)
    pixels = rng.integers(0, 256, (H, W, 3), dtype=np.uint8)
    pixels[0, 0] = (255, 0, 0)  # a pure red pixel: a palette index would show as grey
    return Image.fromarray(pixels)


def _encode(image: Image.Image, fmt: str, **kwargs) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, fmt, **kwargs)
    return buffer.getvalue()


def _exif_rotated() -> bytes:
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90 CW to display": not applied, by Pillow or by us
    return _encode(_base(), "JPEG", quality=90, exif=exif.tobytes())


def _png16(channels: int) -> bytes:
    rng = np.random.default_rng(1)
    return tf.io.encode_png(rng.integers(0, 65536, (H, W, channels)).astype("uint16")).numpy()


# name -> (file extension, encoded bytes)
ACCEPTED = {
    "palette_png": (".png", lambda: _encode(_base().convert("P"), "PNG")),
    "palette_png_transparency": (
        ".png",
        lambda: _encode(_base().convert("P"), "PNG", transparency=3),
    ),
    "palette_bmp_8bit": (".bmp", lambda: _encode(_base().convert("P"), "BMP")),
    "palette_bmp_16_colours": (".bmp", lambda: _encode(_base().quantize(16), "BMP")),
    "bmp_1bit": (".bmp", lambda: _encode(_base().convert("1"), "BMP")),
    "grey_bmp": (".bmp", lambda: _encode(_base().convert("L"), "BMP")),
    "rgb_bmp": (".bmp", lambda: _encode(_base(), "BMP")),
    "palette_gif": (".gif", lambda: _encode(_base().convert("P"), "GIF")),
    "grey_png": (".png", lambda: _encode(_base().convert("L"), "PNG")),
    "grey_alpha_png": (".png", lambda: _encode(_base().convert("LA"), "PNG")),
    "rgba_png": (".png", lambda: _encode(_base().convert("RGBA"), "PNG")),
    "rgb_png_16bit": (".png", lambda: _png16(3)),
    "rgb_jpeg": (".jpg", lambda: _encode(_base(), "JPEG", quality=90)),
    "grey_jpeg": (".jpg", lambda: _encode(_base().convert("L"), "JPEG", quality=90)),
    "cmyk_jpeg": (".jpg", lambda: _encode(_base().convert("CMYK"), "JPEG", quality=90)),
    "jpeg_exif_orientation": (".jpg", _exif_rotated),
}
REFUSED = {
    "grey_png_16bit": (".png", lambda: _png16(1)),  # Pillow clips to 255, TF keeps high byte
    "grey_alpha_png_16bit": (".png", lambda: _png16(2)),
    "rle_bmp": (".bmp", lambda: _encode(_base().convert("P"), "BMP")[:30] + b"\x01" + b"\0" * 3),
}


def _pillow_rgb(data: bytes) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(data)).convert("RGB")).astype(int)


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    """An image folder (one class per kind) and the identity-pixel export."""
    root = tmp_path_factory.mktemp("kinds")
    written = {}
    for name, (ext, make) in {**ACCEPTED, **REFUSED}.items():
        data = make()
        written[name] = data
        for split in ("train", "val"):
            folder = root / ("refused" if name in REFUSED else "accepted") / split / name
            folder.mkdir(parents=True)
            (folder / f"x{ext}").write_bytes(data)
    inputs = keras.Input((H, W, 3))
    model = keras.Model(inputs, keras.layers.Flatten()(inputs))
    path = export_saved_model(model, root / "identity", preprocessing="none", warmup=False)
    return {"root": root, "data": written, "served": tf.saved_model.load(path)}


def _folder_cfg(root, normalization="none") -> dict:
    return {
        "dataset": "folder",
        "data_dir": str(root),
        "validation": "folder",
        "image_size": H,  # square resize: compare at the original size below
        "augmentation": "none",
        "normalization": normalization,
        "flip": False,
    }


def test_the_reference_kinds_are_what_their_names_say(files):
    modes = {name: Image.open(io.BytesIO(files["data"][name])).mode for name in ACCEPTED}
    assert modes["palette_bmp_8bit"] == "P" and modes["cmyk_jpeg"] == "CMYK"
    assert modes["grey_alpha_png"] == "LA" and modes["rgba_png"] == "RGBA"
    assert Image.open(io.BytesIO(files["data"]["jpeg_exif_orientation"])).getexif()[0x0112] == 6
    assert Image.open(io.BytesIO(files["data"]["grey_png_16bit"])).mode.startswith("I")


@pytest.mark.parametrize("name", sorted(ACCEPTED))
def test_decode_image_gives_pillows_rgb_and_grey(files, name):
    data = files["data"][name]
    want = _pillow_rgb(data)
    np.testing.assert_array_equal(decode_image(tf.constant(data)).numpy(), want)
    grey = np.asarray(Image.open(io.BytesIO(data)).convert("L")).astype(int)
    got = tf.function(decode_image)(tf.constant(data), channels=1).numpy()[..., 0]
    np.testing.assert_array_equal(got, grey)


def test_training_pipeline_gives_pillows_rgb_for_every_kind(files):
    cfg = dict(_folder_cfg(files["root"] / "accepted"), image_size=None)
    source = data_lib.load_source(cfg)
    split = source.validation
    load = data_lib._decoder(split, cfg, source.channels)  # the pipeline's file reader
    assert split.size == len(ACCEPTED)
    for index, path in enumerate(split.images):
        name = path.split("/")[-2]
        image, label = load(index)
        got = np.round(image.numpy() * 255).astype(int)
        np.testing.assert_array_equal(got, _pillow_rgb(files["data"][name]), err_msg=name)
        assert source.class_names[int(label)] == name


def test_training_batches_hold_pillows_rgb_resized(files):
    # Through eval_dataset (resize to HxH, normalisation none): the same as
    # resizing Pillow's pixels with the pipeline's bilinear resize.
    cfg = _folder_cfg(files["root"] / "accepted")
    source = data_lib.load_source(cfg)
    batch = next(iter(data_lib.eval_dataset(source, source.validation, cfg, batch_size=64)))
    for index, path in enumerate(source.validation.images):
        name = path.split("/")[-2]
        want = tf.image.resize(_pillow_rgb(files["data"][name]).astype("float32") / 255, (H, H))
        np.testing.assert_allclose(batch[0].numpy()[index], want.numpy(), atol=1e-6)


@pytest.mark.parametrize("name", sorted(ACCEPTED))
def test_serve_bytes_gives_pillows_rgb(files, name):
    data = files["data"][name]
    served = files["served"].signatures["serve_bytes"](image_bytes=tf.constant([data]))
    got = served["probabilities"].numpy().reshape(H, W, 3)
    np.testing.assert_array_equal(got, _pillow_rgb(data))


@pytest.mark.parametrize("name", sorted(REFUSED))
def test_refused_kinds_are_refused_in_serving(files, name):
    with pytest.raises(tf.errors.InvalidArgumentError, match="decode_image"):
        files["served"].signatures["serve_bytes"](image_bytes=tf.constant([files["data"][name]]))


@pytest.mark.parametrize("name", sorted(REFUSED))
def test_refused_kinds_are_named_in_training(tmp_path, files, name):
    ext = REFUSED[name][0]
    for cls in ("ok", "bad"):
        (tmp_path / "train" / cls).mkdir(parents=True)
        (tmp_path / "train" / cls / "a.png").write_bytes(files["data"]["rgba_png"])
    bad = tmp_path / "train" / "bad" / f"b{ext}"
    bad.write_bytes(files["data"][name])
    with pytest.raises(ValueError, match="decode_image") as error:
        data_lib.load_source(_folder_cfg(tmp_path))
    assert str(bad) in str(error.value)


def test_folder_per_channel_normalisation_is_measured(files):
    root = files["root"] / "accepted"
    source = data_lib.load_source(_folder_cfg(root, "per_channel"))
    pixels = np.concatenate(
        [
            _pillow_rgb(files["data"][p.split("/")[-2]]).reshape(-1, 3) / 255.0
            for p in source.train.images
        ]
    )
    np.testing.assert_allclose(source.mean, pixels.mean(0), rtol=1e-9)
    np.testing.assert_allclose(source.std, pixels.std(0), rtol=1e-9)
    imagenet = data_lib.load_source(_folder_cfg(root, "imagenet"))
    assert imagenet.mean == data_lib.IMAGENET_MEAN and imagenet.std == data_lib.IMAGENET_STD
    with pytest.raises(ValueError, match="normalization"):
        data_lib._normalisation("per-channel", source.train, 3)


def test_the_field_case_of_a_palette_bmp(tmp_path):
    """../shared/cases/05-folder-palette-bmp.py, with the file's own colours as reference.

    The case writes an 8x8 image of red, green, blue and (250, 250, 250) with
    `convert("P")`, whose default web palette stores the light grey as
    (255, 255, 255): that is the file's colour, and what must reach the model.
    The three primaries are stored exactly and must arrive exactly.
    """
    colours = np.array([[255, 0, 0], [0, 255, 0], [0, 0, 255], [250, 250, 250]], "uint8")
    rgb = np.kron(colours.reshape(2, 2, 3), np.ones((4, 4, 1), "uint8"))
    for split in ("train", "val"):
        for cls in ("a", "b"):
            (tmp_path / split / cls).mkdir(parents=True)
            Image.fromarray(rgb[::-1]).save(tmp_path / split / cls / "x.png")
    Image.fromarray(rgb).convert("P").save(tmp_path / "val" / "a" / "y.bmp")
    cfg = {
        "dataset": "folder",
        "data_dir": str(tmp_path),
        "validation": "folder",
        "image_size": 8,
        "augmentation": "none",
        "normalization": "none",
        "flip": False,
    }
    source = data_lib.load_source(cfg)
    paths = source.validation.images
    index = [p.split("/")[-1] for p in paths].index("y.bmp")
    batch = next(iter(data_lib.eval_dataset(source, source.validation, cfg, len(paths))))
    got = np.round(batch[0].numpy()[index] * 255).astype(int)
    stored = np.asarray(Image.open(tmp_path / "val" / "a" / "y.bmp").convert("RGB"))
    np.testing.assert_array_equal(got, stored)
    np.testing.assert_array_equal(got[:4, :4], rgb[:4, :4])  # red
    np.testing.assert_array_equal(got[:4, 4:], rgb[:4, 4:])  # green
    np.testing.assert_array_equal(got[4:, :4], rgb[4:, :4])  # blue
    assert (got[4:, 4:] == 255).all()  # the web palette's nearest entry to 250
