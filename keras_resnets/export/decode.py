"""`decode_image`: the one image decoder of the trainer and the export.

TensorFlow is imported inside the function only.
"""

from __future__ import annotations

from keras_resnets._optional import require

__all__ = ["decode_image"]


def decode_image(data, channels: int = 3):
    """Decode one encoded image to the pixels Pillow gives, in TensorFlow ops.

    The one decoder of the package: the trainer's image-folder pipeline
    (`training.data`) and the export's `serve_bytes` signature both call
    it, so a file reaches a model the same way in training and in serving.
    The result is the RGB pixels of Pillow's `Image.open(f).convert("RGB")`
    (with `channels=1`, of `convert("L")`), for:

    - JPEG (grey, RGB, CMYK), decoded with libjpeg's accurate integer
      DCT and fancy upsampling, as Pillow does; the EXIF orientation tag
      is **not** applied (the pixels as stored, as Pillow's `Image.open`
      and `tf.io.decode_jpeg`);
    - PNG: grey, grey+alpha, RGB, RGBA, palette (with or without
      transparency), 16-bit RGB(A) (the high byte of each sample); alpha is
      dropped, not composited;
    - GIF (the first frame);
    - BMP: 24- and 32-bit, and 1-, 2-, 4- and 8-bit palette BMPs (decoded
      through their colour table here: `tf.io.decode_image` returns the
      palette indices of an 8-bit BMP as grey).

    Refused with an `InvalidArgumentError` that says why: 16-bit grey or
    grey+alpha PNGs (Pillow clips them to 255, TensorFlow keeps the high
    byte, so no answer is the reference one), run-length encoded and
    OS/2 BMPs, other BMP depths, and anything that is not an image.

    Args:
        data: scalar string tensor, the file's bytes.
        channels: 3 (RGB) or 1 (Pillow's `L`: `(19595 R + 38470 G + 7471 B
            + 32768) >> 16`).

    Returns:
        A uint8 tensor `[height, width, channels]`.

    Example:
        >>> pixels = decode_image(tf.io.read_file("cat.bmp"))  # doctest: +SKIP
    """
    tf = require("tensorflow", "`decode_image`", extra="serving")

    if channels not in (1, 3):
        raise ValueError(f"`channels` must be 1 or 3, got {channels!r}.")
    data = tf.convert_to_tensor(data, tf.string)
    # The first 64 bytes (zero-padded), for the format's header fields.
    head = tf.strings.substr(tf.strings.join([data, tf.constant(b"\0" * 64)]), 0, 64)
    head = tf.cast(tf.io.decode_raw(head, tf.uint8), tf.int32)

    def u16(offset):
        return head[offset] + head[offset + 1] * 256

    def u32(offset):
        return u16(offset) + u16(offset + 2) * 65536

    def i32(offset):
        value = tf.cast(u32(offset), tf.int64)
        return tf.cast(tf.where(value >= 2**31, value - 2**32, value), tf.int32)

    magic = tf.strings.substr(data, 0, 8)
    is_jpeg = tf.equal(tf.strings.substr(magic, 0, 3), b"\xff\xd8\xff")
    is_png = tf.equal(magic, b"\x89PNG\r\n\x1a\n")
    is_bmp = tf.equal(tf.strings.substr(magic, 0, 2), b"BM")
    png_grey16 = is_png & tf.equal(head[24], 16) & (tf.equal(head[25], 0) | tf.equal(head[25], 4))
    bpp = u16(28)
    palette_bmp = is_bmp & (bpp <= 8)
    bmp_ok = tf.logical_not(is_bmp) | (
        tf.reduce_any(tf.equal(bpp, [1, 2, 4, 8, 24, 32]))
        & tf.reduce_any(tf.equal(u32(30), [0, 3]))
        & (tf.logical_not(palette_bmp) | (tf.equal(u32(30), 0) & (u32(14) >= 40)))
    )
    checks = [
        tf.debugging.Assert(
            tf.logical_not(png_grey16),
            ["decode_image: 16-bit grey (or grey+alpha) PNG is not supported; save it as 8-bit."],
        ),
        tf.debugging.Assert(
            bmp_ok,
            [
                "decode_image: unsupported BMP (bits per pixel, compression):",
                bpp,
                u32(30),
                "; supported: uncompressed 1/2/4/8-bit palette, 24- and 32-bit.",
            ],
        ),
    ]

    def palette():
        raw = tf.cast(tf.io.decode_raw(data, tf.uint8), tf.int32)
        offset, header, width, height = u32(10), u32(14), i32(18), i32(22)
        count = tf.where(u32(46) > 0, u32(46), tf.bitwise.left_shift(1, bpp))
        table = tf.reshape(raw[14 + header : 14 + header + 4 * count], [count, 4])
        table = tf.stack([table[:, 2], table[:, 1], table[:, 0]], axis=-1)  # BGRx -> RGB
        rows = tf.abs(height)
        row_bytes = (bpp * width + 31) // 32 * 4
        packed = tf.reshape(raw[offset : offset + row_bytes * rows], [rows, row_bytes])
        shifts = tf.range(8 - bpp, -1, -bpp)  # most significant bits first
        index = tf.bitwise.bitwise_and(
            tf.bitwise.right_shift(packed[:, :, None], shifts), tf.bitwise.left_shift(1, bpp) - 1
        )
        index = tf.reshape(index, [rows, -1])[:, :width]
        index = tf.cond(height > 0, lambda: tf.reverse(index, [0]), lambda: index)  # bottom-up
        in_table = tf.debugging.Assert(
            tf.reduce_max(index) < count, ["decode_image: BMP pixel outside its colour table"]
        )
        with tf.control_dependencies([in_table]):
            return tf.cast(tf.gather(table, index), tf.uint8)

    def jpeg():
        return tf.io.decode_jpeg(data, channels=3, dct_method="INTEGER_ACCURATE")

    def other():
        return tf.io.decode_image(data, channels=3, expand_animations=False)

    with tf.control_dependencies(checks):
        image = tf.cond(is_jpeg, jpeg, lambda: tf.cond(palette_bmp, palette, other))
    image.set_shape([None, None, 3])
    if channels == 1:
        weights = tf.constant([19595, 38470, 7471], tf.int32)
        grey = tf.reduce_sum(tf.cast(image, tf.int32) * weights, axis=-1, keepdims=True)
        image = tf.cast(tf.bitwise.right_shift(grey + 32768, 16), tf.uint8)
    return image
