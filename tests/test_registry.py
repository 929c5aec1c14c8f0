"""Every registered model builds with exactly its registered parameter count.

Family test files assert the paper/reference numbers; this test keeps the
registry (and so the README table) true for every model, new ones included.
"""

from __future__ import annotations

import pytest
from conftest import trainable_count
from model_checks import registry_param

import keras_resnets
from keras_resnets.models.registry import model_info


@pytest.mark.parametrize("name", [registry_param(n) for n in keras_resnets.list_models()])
def test_registered_count_is_exact(built_model, name):
    info = model_info(name)
    model = built_model(name)
    assert trainable_count(model) == info.num_params
    assert model.input_shape == (None, info.input_size, info.input_size, 3)


def _documented_options(builder) -> list[str]:
    """The option names a builder's docstring documents after `name:`."""
    args = builder.__doc__.split("Args:")[1].split("Returns:")[0]
    names = []
    for line in args.splitlines():
        if line.startswith("    ") and not line.startswith("     ") and ":" in line:
            names += [n.strip() for n in line.split(":")[0].split(",")]
    applications = names.index("name")
    return names[applications + 1 :]


@pytest.mark.parametrize("name", keras_resnets.list_models())
def test_unknown_option_names_the_model_and_documented_options_are_taken(name):
    builder = model_info(name).builder  # an alias shares its target's builder
    with pytest.raises(
        TypeError, match=rf"^{builder.__name__}\(\) got an unexpected keyword argument 'foo'"
    ):
        builder(foo=1)
    documented = _documented_options(builder)
    assert documented and set(documented) <= set(builder.options), (documented, builder.options)
