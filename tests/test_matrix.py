"""The compatibility matrix: every family crossed with every feature (issue 15).

Rows are the smallest model of every registered family (`ROWS`, one line of
data each; `test_every_registered_family_has_a_row` fails when a family joins
the registry without one). They are crossed with the backend, stochastic
depth (off, batch, sample, where the family takes `drop_path_rate`) and the
dtype policy (float32, mixed_bfloat16). The full product is too slow for
`make test`, so the cells come from a seeded greedy pairwise covering
(`pairwise`): every pair of factor values that can run together runs in at
least one cell. Each process runs the cells of its own backend (the module is
marked `multibackend`, so `make test` runs it on TensorFlow, JAX and PyTorch).

Operations, each its own test so that one fault does not hide another:

- `test_fit`: two optimizer steps; finite loss, the classifier's weights
  changed, float32 output under every policy;
- `test_keras_round_trip`: `model.save` / `keras.models.load_model`; the
  loaded model's outputs equal the saved one's;
- `test_transfer_helpers`: `stage_outputs`, `feature_extractor`,
  `replace_head` (a float32 classifier whose features are the old head's)
  and `freeze(until="all")` (only the new classifier trains);
- `test_resume`: `training.train.run` with `train.deterministic`, stopped
  after one epoch and resumed, ends with the weights of the uninterrupted run
  (its own covering design over backend, stochastic depth and policy);
- `test_export_served_in_a_fresh_process` (TensorFlow): `export_saved_model`,
  then `tf.saved_model.load` in a new process serves `model.predict`'s outputs;
  on JAX and PyTorch, `test_export_refused_off_tensorflow` wants a clear error.

Combinations a builder refuses are cells of `test_refused`, which asserts the
error. `KNOWN_FAULTS` marks, as strict xfails, the cells that fail today
because of faults being fixed under issue 15; remove a line there when its fix
lands. docs/compatibility.md holds the table of cells (`python
tests/test_matrix.py` prints it; `test_docs_table_is_the_design` keeps it so).
"""

from __future__ import annotations

import dataclasses
import itertools
import json
import os
import random
import subprocess
import sys
import textwrap

import numpy as np
import pytest

pytestmark = pytest.mark.multibackend

BACKENDS = ("tensorflow", "jax", "torch")
STOCHASTIC_DEPTH = ("off", "batch", "sample")
POLICIES = ("float32", "mixed_bfloat16")
SIZE, CLASSES, BATCH = 16, 3, 4
SEED = 15
DROP_PATH_RATE = 0.5


@dataclasses.dataclass(frozen=True)
class Row:
    """The smallest model of one family (or one option of a family).

    `drop_path` is True where the builder takes `drop_path_rate`, else the
    `(exception type, message pattern)` it refuses a non-zero rate with.
    """

    key: str
    family: str  # the registry's family label (`model_info(name).family`)
    builder: str  # a public builder of keras_resnets
    options: tuple  # builder options as (name, value) pairs
    drop_path: bool | tuple = True
    also: tuple = ()  # other families whose block ideas this row combines

    @property
    def families(self) -> tuple:
        return (self.family, *self.also)

    def kwargs(self, stochastic_depth: str = "off") -> dict:
        kwargs = dict(self.options)
        if stochastic_depth != "off":
            kwargs.update(drop_path_rate=DROP_PATH_RATE, stochastic_depth_mode=stochastic_depth)
            if self.drop_path is True:
                kwargs["stochastic_depth_seed"] = SEED
        return kwargs


def _rows() -> tuple[Row, ...]:
    from keras_resnets import blocks

    no_drop_path = (TypeError, "drop_path_rate")
    return (
        *(
            Row(
                f"resnet_{option}", "ResNet v1", "CifarResNet", (("depth", 8), ("shortcut", option))
            )
            for option in blocks.SHORTCUTS
        ),
        Row(
            "plain",
            "Plain",
            "CifarResNet",
            (("depth", 8), ("residual", False)),
            (ValueError, r"`drop_path_rate` must be 0\.0, got .*plain network"),
        ),
        Row(
            "preact",
            "ResNet v2 (pre-activation)",
            "CifarResNet",
            (("depth", 8), ("unit", "full_preactivation")),
        ),
        Row(
            "resnext",
            "ResNeXt",
            "CifarResNeXt",
            (("depth", 11), ("cardinality", 2), ("base_width", 2)),
        ),
        Row("wide_resnet", "Wide ResNet", "WideResNet", (("depth", 10), ("width", 1))),
        *(
            Row(
                "densenet" + ("_memory_efficient" if efficient else ""),
                "DenseNet",
                "CifarDenseNet",
                (("depth", 10), ("growth_rate", 4), ("memory_efficient", efficient)),
                no_drop_path,
            )
            for efficient in (False, True)
        ),
        Row("highway", "Highway", "CifarHighwayNet", (("depth", 5),), no_drop_path),
        # The timm-era families are the ResNet body with block ideas; two rows
        # combine them all (the ImageNet-style stems at 16x16 leave 4x4 to the stages).
        Row(
            "resnext_d_se",
            "SE-ResNeXt",
            "ResNeXt",
            (
                ("depths", (1, 1)),
                ("widths", (8, 16)),
                ("cardinality", 2),
                ("base_width", 16),
                ("stem", "deep_tiered"),
                ("downsample", "avg"),
                ("attention", "se"),
            ),
            also=("ResNet-D/T", "SE-ResNet"),
        ),
        Row(
            "resnest_rs_eca",
            "ResNeSt",
            "ResNet",
            (
                ("depths", (1, 1)),
                ("widths", (4, 8)),
                ("block", "bottleneck"),
                ("stem", "deep"),
                ("stem_width", 4),
                ("stem_pool", "conv"),
                ("downsample", "avg"),
                ("radix", 2),
                ("avd", True),
                ("attention", "eca"),
            ),
            also=("ResNet-RS", "ECA-ResNet"),
        ),
    )


ROWS = _rows()
ROW = {row.key: row for row in ROWS}


# --- the covering design ------------------------------------------------------


def pairwise(factors: dict[str, tuple], allowed, seed: int = SEED) -> list[dict]:
    """A small set of cells covering every allowed pair of factor values.

    Greedy (as AETG): among all allowed full combinations, repeatedly take the
    one covering the most still-uncovered pairs, ties broken by a `seed`ed
    shuffle, until every pair that occurs in some allowed combination is
    covered. Deterministic for a given seed and factor lists.

    Args:
        factors: `{factor name: values}`.
        allowed: predicate on a cell (a dict) saying whether it can run.
        seed: seed of the tie-breaking shuffle.

    Returns:
        The cells, as dicts `{factor name: value}`, in the order chosen.
    """
    names = list(factors)
    candidates = [
        dict(zip(names, values, strict=True)) for values in itertools.product(*factors.values())
    ]
    candidates = [cell for cell in candidates if allowed(cell)]
    random.Random(seed).shuffle(candidates)

    def pairs(cell):
        return {((a, cell[a]), (b, cell[b])) for a, b in itertools.combinations(names, 2)}

    uncovered = set().union(*(pairs(cell) for cell in candidates))
    chosen = []
    while uncovered:
        best = max(candidates, key=lambda cell: len(pairs(cell) & uncovered))
        chosen.append(best)
        uncovered -= pairs(best)
    return chosen


def _takes(row: Row, stochastic_depth: str) -> bool:
    return stochastic_depth == "off" or row.drop_path is True


def core_cells() -> list[dict]:
    """Fit, round trip, transfer (and export on TensorFlow): backend x row x depth x policy."""
    return pairwise(
        {"backend": BACKENDS, "row": tuple(ROW), "sd": STOCHASTIC_DEPTH, "policy": POLICIES},
        lambda cell: _takes(ROW[cell["row"]], cell["sd"]),
    )


RESUME_ROW = "resnet_zero_pad"  # the trainer's own family; resume is about the trainer


def resume_cells() -> list[dict]:
    """Resume equality: backend x stochastic depth x policy (three trainer runs each)."""
    cells = pairwise(
        {"backend": BACKENDS, "sd": STOCHASTIC_DEPTH, "policy": POLICIES}, lambda cell: True
    )
    return [{**cell, "row": RESUME_ROW} for cell in cells]


def refused_cells() -> list[dict]:
    """Every stochastic-depth setting a family does not take (refused on every backend)."""
    return [
        {"row": row.key, "sd": sd} for row in ROWS for sd in STOCHASTIC_DEPTH if not _takes(row, sd)
    ]


# --- cells that fail today because of known faults (issue 15) ---------------
# (issue 15 kind, operations, predicate on the cell, the error it fails with,
# reason). The lead removes a line when its fix is merged; strict=True makes a
# fixed cell fail until then, and `raises` makes a cell failing otherwise (a new
# fault) a failure. A cell hit by several faults gets one mark naming them all.


# Empty since the fixes of kinds 2, 3, 4 and 7 landed: every cell passes. An
# entry is (kind, operations, predicate on the cell, callable returning the
# exception type, reason).
KNOWN_FAULTS: tuple = ()


def _cell_id(cell: dict) -> str:
    return "-".join(str(cell[key]) for key in ("backend", "row", "sd", "policy") if key in cell)


def _params(operation: str, cells: list[dict]) -> list:
    import keras

    backend = keras.backend.backend()
    params = []
    for cell in cells:
        if cell.get("backend", backend) != backend:
            continue
        faults = [
            (f"issue 15 kind {kind}: {reason}", error())
            for kind, operations, applies, error, reason in KNOWN_FAULTS
            if operation in operations and applies(cell)
        ]
        marks = []
        if faults:
            reason = "; ".join(text for text, _ in faults)
            errors = tuple({error for _, error in faults})
            marks = [pytest.mark.xfail(strict=True, raises=errors, reason=reason)]
        params.append(pytest.param(cell, id=_cell_id(cell), marks=marks))
    return params


# --- helpers ------------------------------------------------------------------


@pytest.fixture
def policy(request):
    """Set the cell's global dtype policy for the test, and restore float32."""
    import keras

    cell = request.node.callspec.params["cell"]
    keras.config.set_dtype_policy(cell["policy"])
    yield cell["policy"]
    keras.config.set_dtype_policy("float32")


def _build(cell: dict, **extra):
    import keras_resnets

    row = ROW[cell["row"]]
    builder = getattr(keras_resnets, row.builder)
    return builder(classes=CLASSES, input_shape=(SIZE, SIZE, 3), **row.kwargs(cell["sd"]), **extra)


def _data(count: int = 2 * BATCH):
    rng = np.random.default_rng(SEED)
    x = rng.random((count, SIZE, SIZE, 3), dtype=np.float32)
    y = np.arange(count) % CLASSES
    return x, y


def _to_numpy(value):
    import keras

    return np.asarray(keras.ops.convert_to_numpy(keras.ops.cast(value, "float32")))


def _assert_policy(model, policy: str) -> None:
    """The backbone computes in the policy; the classifier's output is float32."""
    compute = "bfloat16" if policy == "mixed_bfloat16" else "float32"
    convs = [layer for layer in model._flatten_layers() if "Conv" in type(layer).__name__]
    assert convs and all(layer.compute_dtype == compute for layer in convs), {
        layer.name: layer.compute_dtype for layer in convs
    }
    assert all(weight.dtype == "float32" for weight in model.weights)
    assert str(model.output.dtype).endswith("float32"), model.output.dtype


# --- the tests ----------------------------------------------------------------


def test_every_registered_family_has_a_row():
    from keras_resnets import blocks, list_models, model_info

    families = {model_info(name).family for name in list_models()}
    assert families == {family for row in ROWS for family in row.families}
    resnet = {dict(row.options).get("shortcut") for row in ROWS if row.family == "ResNet v1"}
    assert resnet == set(blocks.SHORTCUTS)
    densenet = {dict(row.options)["memory_efficient"] for row in ROWS if row.family == "DenseNet"}
    assert densenet == {False, True}


def test_the_design_covers_every_allowed_pair():
    cells = core_cells()
    covered = {
        ((a, c[a]), (b, c[b])) for c in cells for a, b in itertools.combinations(sorted(c), 2)
    }
    for backend, row, sd, policy in itertools.product(BACKENDS, ROW, STOCHASTIC_DEPTH, POLICIES):
        cell = {"backend": backend, "row": row, "sd": sd, "policy": policy}
        if not _takes(ROW[row], sd):
            continue
        for a, b in itertools.combinations(sorted(cell), 2):
            assert ((a, cell[a]), (b, cell[b])) in covered
    assert all(_takes(ROW[c["row"]], c["sd"]) for c in cells)
    assert cells == core_cells()  # deterministic
    assert len(cells) < len(BACKENDS) * len(ROWS) * len(STOCHASTIC_DEPTH) * len(POLICIES) / 2


@pytest.mark.parametrize("cell", refused_cells(), ids=lambda c: f"{c['row']}-{c['sd']}")
def test_refused(cell):
    row = ROW[cell["row"]]
    error, pattern = row.drop_path
    with pytest.raises(error, match=pattern):
        _build({**cell, "policy": "float32"})


@pytest.mark.parametrize("cell", _params("fit", core_cells()))
def test_fit(cell, policy):
    import keras

    model = _build(cell)
    _assert_policy(model, policy)
    x, y = _data()
    head = model.get_layer("head_fc")
    before = [_to_numpy(w) for w in model.trainable_weights]
    head_before = _to_numpy(head.kernel)
    model.compile(optimizer=keras.optimizers.SGD(0.1), loss="sparse_categorical_crossentropy")
    history = model.fit(x, y, batch_size=BATCH, epochs=1, shuffle=False, verbose=0)
    assert int(_to_numpy(model.optimizer.iterations)) == 2
    assert np.isfinite(history.history["loss"][0])
    after = [_to_numpy(w) for w in model.trainable_weights]
    assert all(np.isfinite(w).all() for w in after)
    assert not np.array_equal(_to_numpy(head.kernel), head_before)
    changed = sum(not np.array_equal(a, b) for a, b in zip(before, after, strict=True))
    # Batch-mode stochastic depth may drop a block in both steps: its weights stay.
    assert changed == len(after) if cell["sd"] != "batch" else changed > len(after) // 4
    probabilities = model.predict(x, verbose=0)
    assert probabilities.dtype == np.float32
    np.testing.assert_allclose(probabilities.sum(axis=-1), 1.0, atol=1e-5)


@pytest.mark.parametrize("cell", _params("round_trip", core_cells()))
def test_keras_round_trip(cell, policy, tmp_path):
    import keras

    import keras_resnets

    model = _build(cell)
    x, _ = _data(BATCH)
    expected = model.predict(x, verbose=0)
    path = str(tmp_path / "model.keras")
    model.save(path)
    keras.config.set_dtype_policy("float32")  # the file alone decides the policy
    loaded = keras.models.load_model(path)
    _assert_policy(loaded, policy)
    np.testing.assert_array_equal(loaded.predict(x, verbose=0), expected)
    assert type(loaded) is type(model)
    if isinstance(model, keras_resnets.Network):
        assert loaded.feature_info == model.feature_info
        assert loaded.preprocessing == model.preprocessing


@pytest.mark.parametrize("cell", _params("transfer", core_cells()))
def test_transfer_helpers(cell, policy):
    import keras

    import keras_resnets

    model = _build(cell)
    x, _ = _data(BATCH)
    stages = keras_resnets.stage_outputs(model)
    # CIFAR rows: three stages at strides 1, 2, 4; the ImageNet-style stems' rows: 4, 8.
    recorded = {e["name"]: e["reduction"] for e in model.feature_info if e["name"] != "stem"}
    assert list(stages) == list(recorded) and len(stages) >= 2
    features = keras_resnets.feature_extractor(model)
    assert list(features.output) == list(stages)
    maps = features.predict(x, verbose=0)
    reductions = [SIZE // maps[name].shape[1] for name in stages]
    assert reductions == list(recorded.values())
    assert reductions in ([1, 2, 4], [4, 8])

    new = keras_resnets.replace_head(model, 5)
    _assert_policy(new, policy)
    old_pool = keras.Model(model.inputs, model.get_layer("head_pool").output)
    new_pool = keras.Model(new.inputs, new.get_layer("head_pool").output)
    np.testing.assert_array_equal(
        _to_numpy(new_pool(x, training=False)), _to_numpy(old_pool(x, training=False))
    )
    probabilities = new.predict(x, verbose=0)
    assert probabilities.shape == (BATCH, 5) and probabilities.dtype == np.float32
    np.testing.assert_allclose(probabilities.sum(axis=-1), 1.0, atol=1e-6)

    keras_resnets.freeze(new, until="all")
    trainable = {w.path for w in new.trainable_weights}
    assert trainable == {w.path for w in new.get_layer("head_fc").weights}


def _resume_run(cell, out, epochs, resume=False):
    from training.train import run

    row = ROW[cell["row"]]
    try:
        return run(
            "digits_resnet20",
            model=row.builder,
            epochs=epochs,
            batch_size=BATCH * 2,
            output_dir=str(out),
            resume=resume,
            mixed_precision=cell["policy"] != "float32",
            verbose="quiet",
            overrides={
                "model.options": row.kwargs(cell["sd"]),
                "data.image_size": SIZE,
                "data.train_subset": 32,
                "data.test_subset": 8,
                "train.deterministic": True,
                "runtime.tensorboard": False,
            },
        )
    finally:
        import keras

        keras.config.set_dtype_policy("float32")


@pytest.mark.slow
@pytest.mark.parametrize("cell", _params("resume", resume_cells()))
def test_resume(cell, tmp_path):
    if cell["policy"] != "float32":
        from training.train import _mixed_precision_policy

        if _mixed_precision_policy(True)[0] != cell["policy"]:
            pytest.skip(f"the trainer does not choose {cell['policy']} on this machine")
    straight = _resume_run(cell, tmp_path / "straight", epochs=2)
    _resume_run(cell, tmp_path / "stopped", epochs=1)
    resumed = _resume_run(cell, tmp_path / "stopped", epochs=2, resume=True)
    assert resumed["config"]["runtime"]["mixed_precision"] == (cell["policy"] != "float32")
    assert resumed["steps"] == straight["steps"]
    assert resumed["weights_sha256"] == straight["weights_sha256"]


_SERVE = textwrap.dedent(
    """
    import json, sys
    import numpy as np
    import tensorflow as tf
    images = tf.constant(np.load(sys.argv[1]))
    served = {}
    for name, path in json.loads(sys.argv[2]).items():
        signature = tf.saved_model.load(path).signatures["serving_default"]
        served[name] = signature(images=images)["probabilities"].numpy().tolist()
    json.dump(served, sys.stdout)
    """
)


def _export_cells() -> list[dict]:
    return [cell for cell in core_cells() if cell["backend"] == "tensorflow"]


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    """Export every export cell's model; serve them all in one fresh process.

    Returns `{cell id: (model.predict output, served output or the error)}`.
    One process loads every SavedModel, so the TensorFlow start-up is paid once.
    """
    import keras

    import keras_resnets

    root = tmp_path_factory.mktemp("exports")
    x, _ = _data(BATCH)
    pixels = np.round(x * 255).astype(np.float32)
    np.save(root / "pixels.npy", pixels)
    expected, paths, errors = {}, {}, {}
    for cell in _export_cells():
        name = _cell_id(cell)
        keras.config.set_dtype_policy(cell["policy"])
        try:
            model = _build(cell)
            expected[name] = model.predict(pixels / 255, verbose=0)
            paths[name] = keras_resnets.export_saved_model(
                model, str(root / name), preprocessing="unit", warmup=False
            )
        except Exception as error:  # reported by that cell's test
            errors[name] = error
        finally:
            keras.config.set_dtype_policy("float32")
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", "CUDA_VISIBLE_DEVICES": ""}
    done = subprocess.run(
        [sys.executable, "-c", _SERVE, str(root / "pixels.npy"), json.dumps(paths)],
        capture_output=True,
        text=True,
        env=env,
        timeout=600,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    outputs = json.loads(done.stdout)
    return {
        name: (expected.get(name), errors.get(name) or np.array(outputs[name], np.float32))
        for name in {*expected, *errors}
    }


@pytest.mark.parametrize("cell", _params("export", _export_cells()))
def test_export_served_in_a_fresh_process(cell, served):
    expected, result = served[_cell_id(cell)]
    if isinstance(result, Exception):
        raise result
    assert result.shape == (BATCH, CLASSES)
    np.testing.assert_allclose(result, expected, rtol=0, atol=1e-6)


def _export_refused_cells() -> list[dict]:
    return [
        {"backend": backend, "row": RESUME_ROW, "sd": "off", "policy": "float32"}
        for backend in BACKENDS
        if backend != "tensorflow"
    ]


@pytest.mark.parametrize("cell", _params("export_refused", _export_refused_cells()))
def test_export_refused_off_tensorflow(cell, tmp_path):
    """The SavedModel export is TensorFlow's: other backends get a clear error."""
    import keras_resnets

    model = _build(cell)
    with pytest.raises((ValueError, RuntimeError), match="(?i)tensorflow backend"):
        keras_resnets.export_saved_model(model, str(tmp_path / "export"), warmup=False)
    assert not (tmp_path / "export").exists()


# --- the table in docs/compatibility.md ------------------------------------------

_OPERATIONS = ("fit", "round_trip", "transfer", "export")


def _sorted(cells: list[dict]) -> list[dict]:
    order = {
        "backend": BACKENDS,
        "row": tuple(ROW),
        "sd": STOCHASTIC_DEPTH,
        "policy": POLICIES,
    }
    return sorted(cells, key=lambda c: [order[k].index(c[k]) for k in order])


def matrix_table() -> str:
    """The Markdown table of the cells that run (and what they run)."""
    lines = [
        "| backend | model (row) | stochastic depth | dtype policy | operations |",
        "|---|---|---|---|---|",
    ]
    for cell in _sorted(core_cells()):
        ops = [op for op in _OPERATIONS if op != "export" or cell["backend"] == "tensorflow"]
        lines.append(
            f"| {cell['backend']} | `{cell['row']}` | {cell['sd']} | {cell['policy']} | "
            + ", ".join(ops)
            + " |"
        )
    return "\n".join(lines)


def resume_table() -> str:
    """The Markdown table of the resume cells."""
    lines = [
        "| backend | model (row) | stochastic depth | dtype policy | operations |",
        "|---|---|---|---|---|",
    ]
    for cell in _sorted(resume_cells()):
        lines.append(
            f"| {cell['backend']} | `{cell['row']}` | {cell['sd']} | {cell['policy']} | resume |"
        )
    return "\n".join(lines)


def rows_table() -> str:
    """The Markdown table of the rows: family, builder call, stochastic depth."""
    lines = ["| row | family | builder | stochastic depth |", "|---|---|---|---|"]
    for row in ROWS:
        call = ", ".join(f"{k}={v!r}" for k, v in row.options)
        if row.drop_path is True:
            sd = "off, batch, sample"
        else:
            sd = f"off only; a rate is refused with `{row.drop_path[0].__name__}`"
        families = ", ".join(row.families)
        lines.append(f"| `{row.key}` | {families} | `{row.builder}({call})` | {sd} |")
    return "\n".join(lines)


def test_docs_table_is_the_design():
    path = os.path.join(os.path.dirname(os.path.dirname(__file__)), "docs", "compatibility.md")
    with open(path, encoding="utf-8") as f:
        text = f.read()
    assert rows_table() in text
    assert matrix_table() in text
    assert resume_table() in text


if __name__ == "__main__":
    print(rows_table())
    print()
    print(matrix_table())
    print()
    print(resume_table())
