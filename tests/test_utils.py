"""`keras_resnets.utils`: the layer walk (public API only) and `atomic_write`."""

from __future__ import annotations

import os

import keras
import pytest
from model_checks import smallest_of_each_kind

import keras_resnets
from keras_resnets.utils import atomic_write, atomic_write_text, iter_layers, sublayers

# The walks differ by backend (a PyTorch layer holds its sublayers as torch
# modules), so the tests that build the kinds of nesting run on every backend
# (the multibackend marker); the registry-wide sweep runs on TensorFlow only,
# where it reuses the session's models.
multibackend = pytest.mark.multibackend


def _keras_walk(model, recursive=True) -> list:
    """Keras's own (private) walk, the reference `iter_layers` must equal.

    A Sequential's `InputLayer` is left out, as `Sequential.layers` leaves it.
    """
    layers = list(model._flatten_layers(include_self=False, recursive=recursive))
    if isinstance(model, keras.Sequential):
        own = {id(layer) for layer in model._layers if isinstance(layer, keras.layers.InputLayer)}
        layers = [layer for layer in layers if id(layer) not in own]
    return layers


def _nested_models():
    """Small models with every kind of nesting the package builds, and a wrapper."""
    return {
        "dense_block": keras_resnets.CifarDenseNet(depth=10, growth_rate=4),
        "stochastic_depth": keras_resnets.CifarResNet(8, drop_path_rate=0.5),
        "highway": keras_resnets.CifarHighwayNet(depth=8),
        "grouped": keras_resnets.CifarResNeXt(depth=11, cardinality=4, base_width=4),
        "wrapped": keras.Sequential([keras.Input((32, 32, 3)), keras_resnets.CifarResNet(8)]),
    }


@multibackend
def test_iter_layers_equals_keras_walk_on_nested_models():
    for name, model in _nested_models().items():
        ours, theirs = list(iter_layers(model)), _keras_walk(model)
        assert [layer.name for layer in ours] == [layer.name for layer in theirs], name
        assert all(a is b for a, b in zip(ours, theirs, strict=True)), name
        for layer in ours:
            assert sublayers(layer) == _keras_walk(layer, recursive=False), (name, layer.name)


@pytest.mark.slow
@pytest.mark.parametrize("name", smallest_of_each_kind())
def test_iter_layers_equals_keras_walk_over_the_registry(name, built_model):
    """On the smallest row of each kind (a deeper row repeats the same layer types)."""
    model = built_model(name)
    ours = list(iter_layers(model))
    assert len(ours) == len(_keras_walk(model))
    assert all(a is b for a, b in zip(ours, _keras_walk(model), strict=True))


@multibackend
def test_atomic_write_replaces_whole_or_not_at_all(tmp_path):
    path = tmp_path / "sub" / "model.weights.h5"
    with atomic_write(path) as temporary:
        assert temporary.endswith(".weights.h5") and os.path.dirname(temporary) == str(path.parent)
        assert not os.path.exists(temporary)
        with open(temporary, "w") as handle:
            handle.write("first")
    assert path.read_text() == "first"
    with pytest.raises(RuntimeError, match="killed"):
        with atomic_write(path) as temporary:
            with open(temporary, "w") as handle:
                handle.write("half")
            raise RuntimeError("killed")
    assert path.read_text() == "first"
    assert sorted(os.listdir(path.parent)) == ["model.weights.h5"]
    atomic_write_text(tmp_path / "notes.txt", "text\n")
    assert (tmp_path / "notes.txt").read_text() == "text\n"


@multibackend
def test_weights_file_keys_follow_keras_naming_for_every_layer_class():
    """`load_weights_file` finds each layer's group by Keras's (private) snake-case rule."""
    import inspect

    from keras.src.utils import naming

    import keras_resnets.layers
    from keras_resnets.weights import _h5_key

    classes = {
        cls
        for module in (keras.layers, keras_resnets.layers)
        for _, cls in inspect.getmembers(module, inspect.isclass)
        if issubclass(cls, keras.layers.Layer)
    }
    classes |= {type(layer) for model in _nested_models().values() for layer in iter_layers(model)}
    assert len(classes) > 100
    for cls in classes:
        assert _h5_key(cls.__name__) == naming.to_snake_case(cls.__name__), cls
