"""The serving graph: a `keras.export.ExportArchive` and TF Serving's warmup file.

TensorFlow is imported inside the functions only.
"""

from __future__ import annotations

import os

import keras

from keras_resnets._optional import require

__all__ = ["SIGNATURES", "WARMUP_FILE", "serving_archive"]

# The signatures every export has, with their input name and dtype.
SIGNATURES: dict[str, tuple[str, str]] = {
    "serving_default": ("images", "float32"),
    "serve_uint8": ("images", "uint8"),
    "serve_bytes": ("image_bytes", "string"),
}

WARMUP_FILE = os.path.join("assets.extra", "tf_serving_warmup_requests")


def require_serving_api() -> None:
    require(
        "tensorflow_serving.apis.prediction_log_pb2",
        "Writing the TF Serving warmup file (or pass `warmup=False`)",
    )


def serving_archive(model, *, channels, size, spec, top_k, labels_path, crop_fraction, logits):
    """A `keras.export.ExportArchive` of the model with the three signatures of `SIGNATURES`.

    The archive tracks the model (its variables) and, with class names, the
    lookup table that reads them from `labels_path` (saved as an asset);
    each signature is an endpoint (`add_endpoint`); `write_out` saves it.
    """
    import tensorflow as tf

    from keras_resnets.export.decode import decode_image

    archive = keras.export.ExportArchive()
    archive.track(model)
    height, width = size
    mean = tf.constant(spec["mean"], tf.float32)
    std = tf.constant(spec["std"], tf.float32)
    scale = spec["scale"]
    table = None
    if labels_path is not None:
        table = tf.lookup.StaticHashTable(
            tf.lookup.TextFileInitializer(
                tf.saved_model.Asset(labels_path),
                key_dtype=tf.int64,
                key_index=tf.lookup.TextFileIndex.LINE_NUMBER,
                value_dtype=tf.string,
                value_index=tf.lookup.TextFileIndex.WHOLE_LINE,
            ),
            default_value="",
        )
        archive.track(table)

    def resize(images):
        # images: float32 [batch, h, w, c] (or [h, w, c]), pixel values in [0, 255].
        if crop_fraction is None:
            return tf.image.resize(images, (height, width), method="bilinear")
        # ImageNet-style evaluation: shorter side to size / crop_fraction
        # (256 for 224 at 0.875), then the central height x width crop.
        shorter = int(round(max(height, width) / crop_fraction))
        shape = tf.cast(tf.shape(images)[-3:-1], tf.float32)
        new = tf.cast(tf.round(shape * (shorter / tf.reduce_min(shape))), tf.int32)
        new = tf.maximum(new, [height, width])
        images = tf.image.resize(images, new, method="bilinear")
        top = (new[0] - height) // 2
        left = (new[1] - width) // 2
        return tf.image.crop_to_bounding_box(images, top, left, height, width)

    def classify(images):
        x = (images * scale - mean) / std
        outputs = tf.cast(model(x, training=False), tf.float32)
        # The model's output as is; a softmax only when told it is logits.
        probabilities = tf.nn.softmax(outputs, axis=-1) if logits else outputs
        scores, indices = tf.math.top_k(probabilities, k=top_k)
        result = {
            "probabilities": probabilities,
            "top_k_indices": indices,
            "top_k_scores": scores,
        }
        if logits:
            result["logits"] = outputs
        if table is not None:
            result["top_k_classes"] = table.lookup(tf.cast(indices, tf.int64))
        return result

    def serve_float(images):
        return classify(resize(images))

    def serve_uint8(images):
        return classify(resize(tf.cast(images, tf.float32)))

    def serve_bytes(image_bytes):
        def decode(data):
            image = tf.cast(decode_image(data, channels=channels), tf.float32)
            return resize(image)

        images = tf.map_fn(
            decode,
            image_bytes,
            fn_output_signature=tf.TensorSpec([height, width, channels], tf.float32),
        )
        return classify(images)

    endpoints = {
        "serving_default": serve_float,
        "serve_uint8": serve_uint8,
        "serve_bytes": serve_bytes,
    }
    for name, fn in endpoints.items():
        input_name, dtype = SIGNATURES[name]
        shape = [None] if dtype == "string" else [None, None, None, channels]
        signature = tf.TensorSpec(shape, dtype, name=input_name)
        archive.add_endpoint(name, fn, input_signature=[signature])
    return archive


def _warmup_inputs(tf, size, channels) -> dict[str, dict[str, object]]:
    height, width = size
    pixels = tf.fill([1, height, width, channels], tf.constant(128, tf.uint8))
    png = tf.io.encode_png(pixels[0])
    return {
        "serving_default": {"images": tf.cast(pixels, tf.float32)},
        "serve_uint8": {"images": pixels},
        "serve_bytes": {"image_bytes": tf.reshape(png, [1])},
    }


def write_warmup(export_dir: str, *, size, channels, model_name: str) -> str:
    """Write one PredictionLog record per signature (TF Serving's warmup format)."""
    import tensorflow as tf
    from tensorflow_serving.apis import model_pb2, predict_pb2, prediction_log_pb2

    path = os.path.join(export_dir, WARMUP_FILE)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with tf.io.TFRecordWriter(path) as writer:
        for signature, inputs in _warmup_inputs(tf, size, channels).items():
            request = predict_pb2.PredictRequest(
                model_spec=model_pb2.ModelSpec(name=model_name, signature_name=signature)
            )
            for key, value in inputs.items():
                request.inputs[key].CopyFrom(tf.make_tensor_proto(value.numpy()))
            log = prediction_log_pb2.PredictionLog(
                predict_log=prediction_log_pb2.PredictLog(request=request)
            )
            writer.write(log.SerializeToString())
    return path
