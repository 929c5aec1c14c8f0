"""preprocess_input and decode_predictions."""

from __future__ import annotations

import keras
import numpy as np
import pytest
from keras.applications import imagenet_utils

import keras_resnets
from keras_resnets.preprocessing import imagenet_classes


@pytest.mark.parametrize("mode", ["torch", "tf", "caffe"])
def test_preprocess_input_matches_keras_applications(mode):
    images = np.random.default_rng(0).uniform(0, 255, (2, 5, 7, 3)).astype("float32")
    original = images.copy()
    ours = keras_resnets.preprocess_input(images, mode=mode)
    theirs = imagenet_utils.preprocess_input(images.copy(), mode=mode)
    np.testing.assert_allclose(ours, theirs, rtol=1e-6, atol=1e-5)
    np.testing.assert_array_equal(images, original)  # not modified in place
    tensor = keras_resnets.preprocess_input(keras.ops.convert_to_tensor(images), mode=mode)
    np.testing.assert_allclose(keras.ops.convert_to_numpy(tensor), theirs, rtol=1e-6, atol=1e-5)


def test_preprocess_input_torch_values():
    white = np.full((1, 1, 1, 3), 255.0)
    expected = (1 - np.array([0.485, 0.456, 0.406])) / np.array([0.229, 0.224, 0.225])
    np.testing.assert_allclose(keras_resnets.preprocess_input(white)[0, 0, 0], expected, 1e-6)


def test_preprocess_input_rejects_bad_input():
    with pytest.raises(ValueError, match="`mode` .*'torch'"):
        keras_resnets.preprocess_input(np.zeros((1, 2, 2, 3)), mode="bgr")
    with pytest.raises(ValueError, match=r"3 channels last.*\(1, 2, 2, 1\)"):
        keras_resnets.preprocess_input(np.zeros((1, 2, 2, 1)))


def test_decode_predictions_on_a_known_vector():
    probs = np.zeros((2, 1000), "float32")
    probs[0, [1, 281, 999]] = [0.2, 0.7, 0.1]
    probs[1, 0] = 1.0
    decoded = keras_resnets.decode_predictions(probs, top=3)
    assert decoded[0] == [
        ("n02123045", "tabby", pytest.approx(0.7)),
        ("n01443537", "goldfish", pytest.approx(0.2)),
        ("n15075141", "toilet tissue", pytest.approx(0.1)),
    ]
    assert decoded[1][0] == ("n01440764", "tench", 1.0)
    assert len(keras_resnets.decode_predictions(probs)[0]) == 5


def test_class_list_is_complete_and_sorted_by_wordnet_id():
    classes = imagenet_classes()
    wnids = [wnid for wnid, _ in classes]
    assert len(classes) == 1000 and len(set(wnids)) == 1000
    assert wnids == sorted(wnids)
    assert classes[207] == ("n02099601", "golden retriever")


def test_decode_predictions_rejects_bad_input():
    with pytest.raises(ValueError, match=r"\(batch, 1000\).*\(2, 10\)"):
        keras_resnets.decode_predictions(np.zeros((2, 10)))
    with pytest.raises(ValueError, match="`top` must be an integer from 1 to 1000, got 0"):
        keras_resnets.decode_predictions(np.zeros((1, 1000)), top=0)
