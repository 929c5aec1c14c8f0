"""The serving side of the export tests: a fresh process with TensorFlow only.

`serving_script(body)` is the program such a process runs: it imports json,
sys, numpy and TensorFlow, then refuses any import of keras, keras_resnets
or tf_keras (once TensorFlow is imported, TF 2.21 imports Keras with it, so
loading and serving could otherwise use them), then runs `body`.
"""

from __future__ import annotations

import textwrap

_PRELUDE = """
import json, sys
import numpy as np
import tensorflow as tf

class _Block:
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in ("keras", "keras_resnets", "tf_keras"):
            raise ImportError(f"the serving process must not import {name}")
        return None

sys.meta_path.insert(0, _Block())
"""


def serving_script(body: str) -> str:
    """The prelude above followed by `body` (dedented), as one program."""
    return _PRELUDE + textwrap.dedent(body)
