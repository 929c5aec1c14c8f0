"""The committed docs say what the code does."""

from __future__ import annotations

import functools
import json
import os
import pathlib
import signal
import subprocess
import sys
import tempfile

import docs_blocks
import numpy as np
import pytest
from model_checks import registry_param, smallest_of_each_kind

import keras_resnets
from keras_resnets.zoo import render_into

ROOT = pathlib.Path(__file__).resolve().parents[1]


@pytest.mark.parametrize("path", ["README.md", "docs/models.md"])
def test_model_table_matches_registry(path):
    text = (ROOT / path).read_text(encoding="utf-8")
    assert render_into(text, keras_resnets.model_table()) == text, (
        f"{path} is out of date: run python -m keras_resnets.zoo --write {path}"
    )


def test_readme_shows_the_two_commands():
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    assert "make demo" in text and "make test" in text


def test_every_public_builder_has_a_docstring():
    for name in keras_resnets.list_models():
        doc = getattr(keras_resnets, name).__doc__ or ""
        assert "Args:" in doc and "Returns:" in doc, name


# --------------------------------------------------------------------------
# Every fenced block of README.md and docs/*.md runs as a user would run it
# (tests/docs_blocks.py says how; docs/training.md, "Checking the docs").


PAGES = ["README.md"] + sorted(str(p.relative_to(ROOT)) for p in (ROOT / "docs").glob("*.md"))
BLOCKS = [b for page in PAGES for b in docs_blocks.extract(ROOT / page, ROOT)]
RUN_BLOCKS = [b for b in BLOCKS if b.lang in docs_blocks.RUNNABLE]

#: Blocks that cannot run here at all, and why, as "page :: text in the block"
#: (line numbers move). Keep it short: a block that needs the network or a
#: server is marked in the page and its error path is checked instead.
ALLOW_LIST = {
    "docs/deployment.md :: docker run": "starts the tensorflow/serving Docker image (no Docker "
    "here); the blocks after it are checked for the error a user without the server sees",
    "docs/pretrained.md :: python -m keras_resnets.convert": "converts the user's own "
    "torchvision checkpoints (none here, and no torchvision); tests/test_torch_weights.py "
    "runs the same command on fixture checkpoints",
    "docs/stochastic_depth.md :: python benchmarks/stochastic_depth.py": "a benchmark: minutes "
    "of ResNet-110 training at batch 128 per configuration; the page dates its figures",
    "docs/training.md :: TF_CONFIG=": "a two-machine MultiWorkerMirroredStrategy run (host1, "
    "host2); tests/test_training_distribute.py runs two local workers",
}

#: Blocks that fail because of a fault another part of issue 15 fixes, keyed
#: like ALLOW_LIST. Strict: once the fix is merged the block passes, the
#: test XPASSes and fails, and the entry must go.
PENDING: dict[str, str] = {}  # page :: text -> reason, for blocks waiting on a fix (strict xfail)


def _listed(table: dict, block) -> str | None:
    for key, reason in table.items():
        page, _, text = key.partition(" :: ")
        if block.page == page and text in block.code:
            return reason
    return None


PAGE_TIMEOUT = 1800  # a page that does not finish fails its remaining blocks (cached)


@functools.cache
def _page_results(page: str) -> dict:
    blocks = [b for b in RUN_BLOCKS if b.page == page and not _listed(ALLOW_LIST, b)]
    if not blocks:
        return {}
    with tempfile.TemporaryDirectory(prefix="docs-") as tmp:
        work = os.path.join(tmp, "work")
        home = os.path.join(tmp, "home")
        os.makedirs(work)
        os.makedirs(home)
        spec = os.path.join(tmp, "spec.json")
        results = os.path.join(tmp, "results.json")
        with open(spec, "w", encoding="utf-8") as f:
            json.dump({"root": str(ROOT), "blocks": [vars(b) for b in blocks]}, f)
        closed = "http://127.0.0.1:9"  # nothing listens there: no network
        env = dict(
            os.environ,
            HOME=home,
            KERAS_HOME=os.path.join(home, ".keras"),
            PYTHONPATH=os.pathsep.join(
                [str(ROOT), str(ROOT / "tests" / "docs_offline"), os.environ.get("PYTHONPATH", "")]
            ),
            PATH=os.pathsep.join([os.path.dirname(sys.executable), os.environ["PATH"]]),
            KERAS_RESNETS_SMOKE="1",
            KERAS_BACKEND="tensorflow",
            MPLBACKEND="Agg",
            CI="1",
            **{k: closed for k in ("HTTP_PROXY", "HTTPS_PROXY", "http_proxy", "https_proxy")},
            **{k: "localhost,127.0.0.1" for k in ("NO_PROXY", "no_proxy")},
        )
        env.pop("TFDS_DATA_DIR", None)
        proc = subprocess.Popen(
            [sys.executable, docs_blocks.__file__, spec, results],
            cwd=work,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            start_new_session=True,
        )
        try:
            log, _ = proc.communicate(timeout=PAGE_TIMEOUT)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            log, _ = proc.communicate()
            log += f"\n{page}: the page did not finish in {PAGE_TIMEOUT} s; this block had not run"
        found = {}
        if os.path.exists(results):
            with open(results, encoding="utf-8") as f:
                found = {r["id"]: r for r in json.load(f)}
        if os.environ.get("DOCS_TEST_KEEP"):  # a folder: keep each page's outputs there
            os.makedirs(os.environ["DOCS_TEST_KEEP"], exist_ok=True)
            keep = os.path.join(os.environ["DOCS_TEST_KEEP"], page.replace("/", "_") + ".json")
            with open(keep, "w", encoding="utf-8") as f:
                json.dump(found, f, indent=1)
    for b in blocks:
        found.setdefault(b.id, {"ok": False, "output": log[-6000:], "seconds": 0})
    return found


def test_every_block_has_a_known_language_and_directive():
    for b in BLOCKS:
        assert b.lang in docs_blocks.RUNNABLE or b.lang in docs_blocks.NOT_RUNNABLE, (
            f"{b.id}: fence language {b.lang!r}; use one of "
            f"{sorted(docs_blocks.RUNNABLE) + sorted(docs_blocks.NOT_RUNNABLE)}"
        )
        unknown = set(b.directives) - docs_blocks.DIRECTIVES - {"expect"}
        assert not unknown, f"{b.id}: unknown docs-test directive(s) {unknown}"
        if set(b.directives) & docs_blocks.DIRECTIVES:
            assert b.directives.get("expect"), f"{b.id}: say which error it shows (expect=...)"
            assert b.lang in docs_blocks.RUNNABLE, b.id
    for table in (ALLOW_LIST, PENDING):
        for key in table:
            hits = [b.id for b in RUN_BLOCKS if _listed({key: ""}, b) is not None]
            assert len(hits) == 1, f"{key!r} should name one runnable block, names {hits}"


def test_harness_finds_every_fence():
    """No fenced block escapes extraction (the count matches a plain fence count)."""
    for page in PAGES:
        lines = (ROOT / page).read_text(encoding="utf-8").splitlines()
        fences = sum(1 for line in lines if line.strip().startswith("```"))
        assert fences == 2 * sum(1 for b in BLOCKS if b.page == page), page


@pytest.mark.slow
@pytest.mark.parametrize(
    "block",
    [
        pytest.param(
            b,
            id=b.id,
            marks=[pytest.mark.xfail(reason=_listed(PENDING, b), strict=True)]
            if _listed(PENDING, b)
            else [],
        )
        for b in RUN_BLOCKS
        if not _listed(ALLOW_LIST, b)
    ],
)
def test_block_runs_as_written(block):
    result = _page_results(block.page)[block.id]
    marked = set(block.directives) & docs_blocks.DIRECTIVES
    if marked:
        assert not result["ok"], (
            f"{block.id} is marked {marked} but ran without them: remove the mark"
        )
        assert block.directives["expect"] in result["output"], (
            f"{block.id}: without {marked} it should fail with "
            f"{block.directives['expect']!r}; it gave:\n{result['output']}"
        )
    else:
        assert result["ok"], f"{block.id} failed:\n{result['output']}"


@pytest.mark.parametrize("name", [registry_param(n) for n in smallest_of_each_kind()])
def test_padding_layer_names_follow_the_user_guide(built_model, name):
    """docs/user_guide.md, "Layer names": `{conv name}_pad`, `stem_pad`, `stem_pool_pad`.

    On the smallest row of each kind: the padding layers of a deeper row of
    the same generic builder, family and block are the same layers repeated.
    """
    import keras

    model = built_model(name)
    layers = list(keras_resnets.utils.iter_layers(model))
    consumers = {}
    for layer in layers:
        for node in getattr(layer, "_inbound_nodes", []):
            for tensor in node.input_tensors:
                producer = tensor._keras_history.operation
                consumers.setdefault(producer.name, set()).add(layer.name)
    pads = [layer for layer in layers if isinstance(layer, keras.layers.ZeroPadding2D)]
    for pad in pads:
        target = "stem_conv" if pad.name == "stem_pad" else pad.name.removesuffix("_pad")
        assert pad.name.endswith("_pad") and consumers.get(pad.name) == {target}, (
            f"{name}: padding layer {pad.name} feeds {consumers.get(pad.name)}"
        )
    padded = {c for pad in pads for c in consumers.get(pad.name, ())}
    for layer in layers:
        strides = np.ravel(getattr(layer, "strides", 1))
        size = np.ravel(getattr(layer, "kernel_size", None) or getattr(layer, "pool_size", 1))
        if max(size) > 1 and max(strides) > 1 and getattr(layer, "padding", "") == "valid":
            if isinstance(layer, keras.layers.AveragePooling2D):
                continue  # DenseNet transitions: 2x2 stride-2 average pooling needs none
            assert layer.name in padded, f"{name}: strided {layer.name} has no padding layer"
