"""The private Keras APIs the trainer still needs, and the Keras version cap that guards them.

The library (`keras_resnets/`) uses public Keras API only. The trainer
needs two private pieces that Keras has no public API for:

- `training/callbacks.py`: the state of Keras's global `SeedGenerator`
  (the generator of unseeded `keras.random` calls), saved in the backup so
  a resumed run continues bit for bit;
- `training/distribute.py`: `FitModel` overrides `keras.Model._maybe_symbolic_build`,
  the fix for keras-team/keras issue 20585 (multi-worker `fit`).

`setup.cfg` caps Keras below the next minor release after the one these
were last checked with, so an upgrade that moves them is a deliberate step
(raise the cap after this file passes on the new release).
"""

from __future__ import annotations

import configparser
import pathlib
import re

import keras

ROOT = pathlib.Path(__file__).resolve().parents[1]
#: The Keras release the private pieces below were last checked with.
CHECKED_WITH = (3, 15)
ALLOWED = {"training/callbacks.py", "training/distribute.py"}


def test_only_the_listed_trainer_modules_use_private_keras_api():
    users = set()
    for path in [*ROOT.glob("keras_resnets/**/*.py"), *ROOT.glob("training/**/*.py")]:
        text = path.read_text(encoding="utf-8")
        if "keras.src" in text or "_maybe_symbolic_build" in text:
            users.add(str(path.relative_to(ROOT)))
    assert users == ALLOWED


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
