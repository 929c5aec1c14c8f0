"""Every registered model builds with exactly its registered parameter count.

Family test files assert the paper/reference numbers; this test keeps the
registry (and so the README table) true for every model, new ones included.
"""

from __future__ import annotations

import pytest
from conftest import trainable_count

import keras_resnets
from keras_resnets.models.registry import model_info


def _param(name):
    marks = [pytest.mark.slow] if model_info(name).slow else []
    return pytest.param(name, marks=marks, id=name)


@pytest.mark.parametrize("name", [_param(n) for n in keras_resnets.list_models()])
def test_registered_count_is_exact(built_model, name):
    info = model_info(name)
    model = built_model(name)
    assert trainable_count(model) == info.num_params
    assert model.input_shape == (None, info.input_size, info.input_size, 3)
