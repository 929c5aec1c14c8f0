"""Extract the fenced code blocks of README.md and docs/*.md and run them as a user would.

`extract(path)` returns every fenced block of a page with its language and
the `docs-test` directives written before it. Run as a script
(`python tests/docs_blocks.py SPEC.json RESULTS.json`), it is the driver
`tests/test_docs.py` starts once per page, in a fresh process whose working
directory is a new temporary folder: it creates the stand-in files the page
names (`FIXTURES`), then runs the page's blocks in order, as a user who
follows the page does: python blocks in one namespace (one Python session,
so a later block sees what an earlier one defined), `pycon` blocks as
doctests in that namespace, bash blocks through `bash -e -o pipefail` in the
same folder, so files one block writes are there for the next.

Directives are HTML comments on the lines before a block (invisible on
GitHub):

    <!-- docs-test: needs-network expect="Could not prepare TFDS data set" -->
    <!-- docs-test: needs-server expect="Connection refused" -->
    <!-- docs-test: needs-file expect="does not exist" -->

The page runs with the network cut (HTTP(S) proxies pointing at a closed
local port, a fresh HOME and KERAS_HOME, so nothing cached helps); a block
marked `needs-network`, `needs-server` or `needs-file` (a file the user
downloads first, such as a checkpoint) must fail there, and its output must
contain `expect`: the error a user without the network, the server or the
file sees.
"""

from __future__ import annotations

import contextlib
import dataclasses
import io
import json
import os
import pathlib
import re
import shlex
import subprocess
import sys
import time
import traceback

#: Fence languages and what the harness does with them.
RUNNABLE = {"python": "python", "pycon": "doctest", "bash": "bash"}
NOT_RUNNABLE = {
    "text": "output or a diagram, not a command",
    "yaml": "a recipe or config fragment, not a command",
}
DIRECTIVES = {"needs-network", "needs-server", "needs-file"}

#: Lines of shell blocks that the harness does not run as written, and why.
#: Each is replaced by what it stands for (or by a check of its claim).
SUBSTITUTIONS = [
    (
        re.compile(r"^make demo\b.*$"),
        lambda match, root: "python -m training.demo",
        "`make demo` creates .venv and pip-installs the package (the test already runs in it); "
        "its command is `python -m training.demo`",
    ),
    (
        re.compile(r"^make test\b.*$"),
        lambda match, root: "true",
        "`make test` is the suite this test is part of",
    ),
    (
        re.compile(r"^keras-resnets\b(.*)$"),
        lambda match, root: f"python -m training.cli{match.group(1)}",
        "the console command is `training.cli:main`; the suite's python may not be on PATH",
    ),
    (
        re.compile(r"^pip install '?keras_resnets\[(\w+)\]'?.*$"),
        lambda match, root: (
            "python -c 'import configparser; c = configparser.ConfigParser(); "
            f'c.read("{root}/setup.cfg"); '
            f'assert "{match.group(1)}" in c["options.extras_require"]\''
        ),
        "installing from an index needs the network; the extra must exist in setup.cfg",
    ),
]

_FENCE = re.compile(r"^(\s*)(```+)\s*([\w+-]*)\s*$")
_DIRECTIVE = re.compile(r"^<!--\s*docs-test:\s*(.*?)\s*-->\s*$")


@dataclasses.dataclass
class Block:
    page: str
    line: int
    lang: str
    code: str
    directives: dict

    @property
    def id(self) -> str:
        return f"{self.page}:{self.line}"


def parse_directive(text: str) -> dict:
    words = shlex.split(text)
    out = {}
    for word in words:
        key, _, value = word.partition("=")
        out[key] = value if _ else True
    return out


def extract(path: pathlib.Path, root: pathlib.Path) -> list[Block]:
    """Every fenced block of a markdown page, in order."""
    lines = path.read_text(encoding="utf-8").splitlines()
    page = str(path.relative_to(root))
    blocks = []
    i = 0
    while i < len(lines):
        match = _FENCE.match(lines[i])
        if not match:
            i += 1
            continue
        indent, fence, lang = match.groups()
        end = i + 1
        while end < len(lines) and lines[end].strip() != fence:
            end += 1
        if end == len(lines):
            raise ValueError(f"{page}:{i + 1}: unclosed code fence")
        body = [
            line[len(indent) :] if line.startswith(indent) else line for line in lines[i + 1 : end]
        ]
        directives = {}
        j = i - 1
        while j >= 0 and (not lines[j].strip() or _DIRECTIVE.match(lines[j].strip())):
            found = _DIRECTIVE.match(lines[j].strip())
            if found:
                directives.update(parse_directive(found.group(1)))
            j -= 1
        blocks.append(Block(page, i + 1, lang, "\n".join(body) + "\n", directives))
        i = end + 1
    return blocks


def shell_script(code: str, root: str) -> str:
    """The block with `SUBSTITUTIONS` applied line by line (continuations joined)."""
    out = []
    for line in code.replace("\\\n", " ").splitlines():
        stripped = line.strip()
        for pattern, replacement, _reason in SUBSTITUTIONS:
            if pattern.match(stripped):
                line = replacement(pattern.match(stripped), root)
                break
        out.append(line)
    return "\n".join(out) + "\n"


# --------------------------------------------------------------------------
# Stand-in files: what a user following the page already has.


def _digit_png(path: str) -> None:
    import numpy as np
    from PIL import Image
    from sklearn.datasets import load_digits

    digits = load_digits()
    image = digits.images[list(digits.target).index(7)]
    pixels = np.kron(image / 16.0 * 255.0, np.ones((4, 4))).astype("uint8")
    Image.fromarray(np.stack([pixels] * 3, -1)).save(path)


def _image_folder(path: str) -> None:
    """The user's own images (`--dataset folder`, docs/training.md's layout):
    `train/` with 5 classes of 8 RGB 32x32 PNGs and `val/` with 2 of each."""
    import numpy as np
    from PIL import Image

    rng = np.random.default_rng(0)
    for split, count in (("train", 8), ("val", 2)):
        for label in range(5):
            folder = os.path.join(path, split, f"class{label}")
            os.makedirs(folder, exist_ok=True)
            for k in range(count):
                pixels = rng.integers(0, 256, (32, 32, 3), dtype=np.uint8)
                pixels[..., label % 3] = 40 * label
                Image.fromarray(pixels).save(os.path.join(folder, f"{k}.png"))


def _my_model(path: str) -> None:
    """An untrained ResNet-20 for 32x32 RGB, 10 classes: the user's trained model."""
    import keras_resnets

    keras_resnets.ResNet20(classes=10).save(path)


def _my_script(path: str) -> None:
    """A user's script: builds a model and runs it on the backend it was started with."""
    pathlib.Path(path).write_text(
        "import keras\n"
        "import numpy as np\n"
        "import keras_resnets\n\n"
        "model = keras_resnets.ResNet20(classes=3, input_shape=(16, 16, 3))\n"
        "print(keras.backend.backend(), model(np.zeros((1, 16, 16, 3))).shape)\n"
    )


FIXTURES = {
    "my_script.py": _my_script,
    "digit.png": _digit_png,
    "my_images": _image_folder,
    "my_model.keras": _my_model,
}


# --------------------------------------------------------------------------
# The driver.


def _run_python(code: str, name: str, namespace: dict) -> tuple[bool, str]:
    buffer = io.StringIO()
    ok = True
    with contextlib.redirect_stdout(buffer), contextlib.redirect_stderr(buffer):
        try:
            exec(compile(code, name, "exec"), namespace)
        except BaseException:  # noqa: BLE001 - a block's SystemExit is a failure too
            ok = False
            traceback.print_exc(file=buffer)
    return ok, buffer.getvalue()


def _run_doctest(code: str, name: str, namespace: dict) -> tuple[bool, str]:
    import doctest

    parser = doctest.DocTestParser()
    test = parser.get_doctest(code, namespace, name, name, 0)
    buffer = io.StringIO()
    flags = doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE
    runner = doctest.DocTestRunner(optionflags=flags)
    with contextlib.redirect_stderr(buffer):
        runner.run(test, out=buffer.write, clear_globs=False)
    return runner.failures == 0, buffer.getvalue()


def _run_bash(code: str, root: str) -> tuple[bool, str]:
    result = subprocess.run(
        ["bash", "-e", "-o", "pipefail", "-c", shell_script(code, root)],
        capture_output=True,
        text=True,
        check=False,
    )
    output = result.stdout + result.stderr + f"\n[exit status {result.returncode}]\n"
    return result.returncode == 0, output


def main(spec_path: str, results_path: str) -> int:
    spec = json.loads(pathlib.Path(spec_path).read_text())
    root = spec["root"]
    namespace = {"__name__": "__main__"}
    results = []
    text = "\n".join(block["code"] for block in spec["blocks"])
    for name, create in FIXTURES.items():
        if re.search(rf"(?<![\w/.]){re.escape(name)}", text) and not os.path.exists(name):
            create(name)
    for block in spec["blocks"]:
        start = time.time()
        name = f"{block['page']}:{block['line']}"
        kind = RUNNABLE[block["lang"]]
        if kind == "python":
            ok, output = _run_python(block["code"], name, namespace)
        elif kind == "doctest":
            ok, output = _run_doctest(block["code"], name, namespace)
        else:
            ok, output = _run_bash(block["code"], root)
        results.append(
            {"id": name, "ok": ok, "output": output[-6000:], "seconds": time.time() - start}
        )
        pathlib.Path(results_path).write_text(json.dumps(results))
    return 0


if __name__ == "__main__":
    sys.exit(main(*sys.argv[1:]))
