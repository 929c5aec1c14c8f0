"""The private Keras APIs the trainer still needs, and the Keras version cap that guards them.

The library (`keras_resnets/`) uses public Keras API only. The trainer
needs two private pieces that Keras has no public API for:

- `training/callbacks.py`: the state of Keras's global `SeedGenerator`
  (the generator of unseeded `keras.random` calls), saved in the backup so
  a resumed run continues bit for bit;
- `training/distribute.py`: `FitModel` overrides `keras.Model._maybe_symbolic_build`,
  the fix for keras-team/keras issue 20585 (multi-worker `fit`).

The library walks the functional graph (from a tensor to the layer that made
it, from a layer to the tensors it was called on) through two private
attributes, because Keras has no public API for it:

- `KerasTensor._keras_history` (`operation`, `node_index`) and
  `Operation._inbound_nodes` (`input_tensors`), in the modules of
  `GRAPH_USERS`: recording a stage's layer while the body builds it
  (`models/builder.py`, `models/network.py`), and the transfer helpers and the
  analysis, which follow a stage's ancestors.

`setup.cfg` caps Keras below the next minor release after the one these
were last checked with, so an upgrade that moves them is a deliberate step
(raise the cap after this file passes on the new release).
"""

from __future__ import annotations

import configparser
import pathlib
import re

import keras
import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1]
#: The Keras release the private pieces below were last checked with.
CHECKED_WITH = (3, 15)
ALLOWED = {"training/callbacks.py", "training/distribute.py"}
GRAPH_ATTRIBUTES = ("_keras_history", "_inbound_nodes")
GRAPH_USERS = {
    "keras_resnets/analysis/graph.py",
    "keras_resnets/models/builder.py",
    "keras_resnets/models/network.py",
    "keras_resnets/transfer.py",
}


def test_only_the_listed_trainer_modules_use_private_keras_api():
    users = set()
    for path in [*ROOT.glob("keras_resnets/**/*.py"), *ROOT.glob("training/**/*.py")]:
        text = path.read_text(encoding="utf-8")
        if "keras.src" in text or "_maybe_symbolic_build" in text:
            users.add(str(path.relative_to(ROOT)))
    assert users == ALLOWED


def _modules():
    for path in [*ROOT.glob("keras_resnets/**/*.py"), *ROOT.glob("training/**/*.py")]:
        yield str(path.relative_to(ROOT)), path.read_text(encoding="utf-8")


def test_only_the_listed_modules_walk_the_graph_through_private_attributes():
    users = {name for name, text in _modules() if any(a in text for a in GRAPH_ATTRIBUTES)}
    assert users == GRAPH_USERS


@pytest.mark.multibackend
def test_the_graph_attributes_behave_as_the_library_uses_them():
    inputs = keras.Input((4,))
    dense = keras.layers.Dense(3, name="d")
    hidden = dense(inputs)
    outputs = keras.layers.Dense(2, name="e")(hidden)
    history = hidden._keras_history
    assert history.operation is dense
    node = history.operation._inbound_nodes[history.node_index]
    assert keras.tree.flatten(node.input_tensors) == [inputs]
    assert outputs._keras_history.operation.name == "e"
    assert len(dense._inbound_nodes) == 1


def test_the_private_api_exists_in_the_installed_keras():
    from keras.src.backend.common import global_state
    from keras.src.random.seed_generator import GLOBAL_SEED_GENERATOR, global_seed_generator

    generator = global_seed_generator()
    assert global_state.get_global_attribute(GLOBAL_SEED_GENERATOR) is generator
    assert callable(keras.Model._maybe_symbolic_build)


def _version(text: str) -> tuple[int, ...]:
    return tuple(int(part) for part in re.findall(r"\d+", text)[:2])


def test_setup_caps_keras_at_the_next_minor_release():
    parser = configparser.ConfigParser()
    parser.read(ROOT / "setup.cfg", encoding="utf-8")
    requirements = parser["options"]["install_requires"].split("\n")
    (keras_line,) = [line.strip() for line in requirements if re.match(r"\s*keras\b", line)]
    cap = re.search(r"<\s*([\d.]+)", keras_line)
    assert cap, f"setup.cfg does not cap keras: {keras_line!r}"
    assert _version(cap.group(1)) == (CHECKED_WITH[0], CHECKED_WITH[1] + 1), keras_line
    assert _version(keras.__version__) < _version(cap.group(1))
