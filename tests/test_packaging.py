"""Packaging: core requirements, extras, the `keras-resnets` command, the trainer kept apart.

The last test installs the package without extras into a fresh virtual
environment (plus JAX, as a user picks a backend) and builds every registered
model there with TensorFlow absent.
"""

from __future__ import annotations

import ast
import configparser
import hashlib
import json
import os
import pkgutil
import re
import subprocess
import sys
import sysconfig
import textwrap
from pathlib import Path

import pytest
from model_checks import smallest_of_each_kind

import keras_resnets
from keras_resnets import _optional
from training import cli

ROOT = Path(__file__).resolve().parents[1]
CORE = {"keras", "numpy", "h5py", "safetensors"}


def _setup_cfg() -> configparser.ConfigParser:
    parser = configparser.ConfigParser(interpolation=None)
    parser.read(ROOT / "setup.cfg", encoding="utf-8")
    return parser


def _requirements(text: str) -> list[str]:
    lines = (line.split("#")[0].strip() for line in text.splitlines())
    return [line for line in lines if line]


def _dist(requirement: str) -> str:
    return re.split(r"[<>=!~\[; ]", requirement, maxsplit=1)[0].lower().replace("_", "-")


def _extras() -> dict[str, set[str]]:
    """Each extra's distributions, with `keras_resnets[...]` references expanded."""
    raw = {k: _requirements(v) for k, v in _setup_cfg()["options.extras_require"].items()}

    def expand(extra: str, seen: frozenset = frozenset()) -> set[str]:
        out = set()
        for req in raw[extra]:
            if _dist(req) == "keras-resnets":
                for inner in re.search(r"\[(.*)\]", req).group(1).split(","):
                    assert inner.strip() not in seen, f"extras cycle through {inner}"
                    out |= expand(inner.strip(), seen | {extra})
            else:
                out.add(_dist(req))
        return out

    return {extra: expand(extra) for extra in raw}


def test_core_requirements_are_what_the_models_need():
    core = {_dist(r) for r in _requirements(_setup_cfg()["options"]["install_requires"])}
    assert core == CORE


def test_every_optional_module_is_in_the_extra_its_error_names():
    extras = _extras()
    for module, (dist, extra) in _optional.EXTRAS.items():
        assert dist in extras[extra], (module, dist, extra, extras[extra])
    # `all` (what `make` installs) holds every other extra.
    assert extras["all"] == set().union(*(v for k, v in extras.items() if k != "all"))


def test_readme_install_table_names_every_extra():
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    section = text.split("## Install", 1)[1].split("\n## ", 1)[0]
    named = re.findall(r"^\| ((?:`\w+`(?:, )?)+) \|", section, flags=re.M)
    listed = [name for cell in named for name in re.findall(r"`(\w+)`", cell)]
    assert sorted(listed) == sorted(_extras())


def test_no_module_level_import_outside_the_core():
    """Every module-level import in the library is stdlib, core or the library itself.

    Imports inside functions are the optional ones (`_optional.require`, or a
    backend's own package on that backend).
    """
    stdlib = set(sys.stdlib_module_names)
    allowed = stdlib | CORE | {"keras_resnets"}
    found = {}
    for path in (ROOT / "keras_resnets").rglob("*.py"):
        if path.name == "_tf_grouped_conv.py":  # imported only on the TensorFlow backend
            continue
        for node in ast.parse(path.read_text(encoding="utf-8")).body:
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and not node.level:
                names = [node.module]
            else:
                continue
            for name in names:
                if name.split(".")[0] not in allowed:
                    found[str(path.relative_to(ROOT))] = name
    assert found == {}


def _library_main_modules() -> list[str]:
    """The library's modules with a command line: a top-level `def main` (read from source)."""
    found = []
    for path in sorted((ROOT / "keras_resnets").rglob("*.py")):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        if any(isinstance(n, ast.FunctionDef) and n.name == "main" for n in tree.body):
            parts = path.relative_to(ROOT).with_suffix("").parts
            found.append(".".join(parts[:-1] if parts[-1] == "__init__" else parts))
    return found


def test_the_library_never_imports_the_trainer(tmp_path):
    """In a fresh process (JAX): import every keras_resnets module, run every library
    command line's `--help`, parse each analysis command's arguments, run `schedule` and
    load the digits: neither `training` nor TensorFlow is loaded; then run `lesion` on
    the digits: still no `training`.
    """
    code = textwrap.dedent(
        """
        import contextlib, importlib, io, json, pkgutil, re, sys
        import keras_resnets
        names = [m.name for m in pkgutil.walk_packages(keras_resnets.__path__, "keras_resnets.")
                 if not m.name.endswith("_tf_grouped_conv")]
        modules = [importlib.import_module(name) for name in names]

        def status(main, argv):
            out, err = io.StringIO(), io.StringIO()
            with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
                try:
                    code = main(argv)
                except SystemExit as exc:
                    code = exc.code
            return code, out.getvalue(), err.getvalue()

        helped = {}
        for module in modules:
            main = getattr(module, "main", None)
            if callable(main) and main.__module__ == module.__name__:
                helped[module.__name__] = status(main, ["--help"])[0]
        from keras_resnets.analysis import __main__ as analysis
        usage = status(analysis.main, ["--help"])[1]
        commands = re.search(r"{([\\w,]+)}", usage).group(1).split(",")
        subcommands, parsed = {}, {}
        for command in commands:
            code, _, err = status(analysis.main, [command, "--help"])
            subcommands[command] = [code, err]
            if command != "degradation":
                parsed[command] = analysis._parser().parse_args([command]).command
        schedule = status(analysis.main, ["schedule", "--num-blocks", "3",
                                          "--output-dir", sys.argv[1]])[0]
        from keras_resnets.datasets import load_digits_32
        (x, y), (xt, yt) = load_digits_32(size=8)
        loaded = sorted(m for m in sys.modules if m.split(".")[0] in ("training", "tensorflow"))
        # A command on the digits, untrained (Keras's own set_random_seed may load TensorFlow).
        lesion = status(analysis.main, ["lesion", "--models", "ResNet20", "--epochs", "0",
                                        "--image-size", "8", "--max-deletions", "1", "--draws",
                                        "1", "--max-swaps", "0", "--output-dir", sys.argv[1]])[0]
        trainer = sorted(m for m in sys.modules if m.split(".")[0] == "training")
        print(json.dumps({"imported": len(names), "helped": helped, "subcommands": subcommands,
                          "parsed": parsed, "schedule": schedule, "lesion": lesion,
                          "digits": [list(x.shape), len(xt)], "loaded": loaded,
                          "trainer": trainer}))
        """
    )
    env = {**os.environ, "KERAS_BACKEND": "jax", "MPLBACKEND": "Agg"}
    report = json.loads(_run_python(code, env, str(tmp_path)))
    modules = [m.name for m in pkgutil.walk_packages(keras_resnets.__path__, "keras_resnets.")]
    assert report["imported"] == len(modules) - 1  # all but the TF-backend grouped conv
    mains = _library_main_modules()
    assert "keras_resnets.analysis.__main__" in mains
    assert report["helped"] == dict.fromkeys(mains, 0)  # every `--help` exits 0
    subcommands = report["subcommands"]
    assert "degradation" in subcommands and len(subcommands) >= 5
    code, err = subcommands.pop("degradation")
    assert code == 2
    assert "keras-resnets analysis degradation" in err and "python -m training.degradation" in err
    assert subcommands == {c: [0, ""] for c in subcommands}
    assert report["parsed"] == {c: c for c in subcommands}
    assert report["schedule"] == 0 and (tmp_path / "schedule.png").is_file()
    assert report["lesion"] == 0 and (tmp_path / "lesion.png").is_file()
    assert report["digits"] == [[1437, 8, 8, 3], 360]
    assert report["loaded"] == []
    assert report["trainer"] == []


def _trainer_imports(source: str, name: str = "<source>") -> list[str]:
    """Every import of `training` in `source`, at any depth: `import training...`,
    `from training... import`, `importlib.import_module("training...")`, `__import__(...)`.
    """
    found = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and not node.level:
            names = [node.module]
        elif (
            isinstance(node, ast.Call)
            and getattr(node.func, "attr", getattr(node.func, "id", None))
            in ("import_module", "__import__")
            and node.args
            and isinstance(node.args[0], ast.Constant)
            and isinstance(node.args[0].value, str)
        ):
            names = [node.args[0].value]
        else:
            continue
        found += [f"{name}:{node.lineno}: {n}" for n in names if n.split(".")[0] == "training"]
    return found


def test_no_library_source_imports_the_trainer():
    """No `import training` / `from training` anywhere under keras_resnets/, even in a function."""
    sample = (
        "import training\n"
        "def f():\n"
        "    from training.train import run\n"
        "    import importlib\n"
        "    importlib.import_module('training.degradation')\n"
        "    __import__('training.cli')\n"
        "    from keras_resnets import training_utils\n"
    )
    assert len(_trainer_imports(sample)) == 4  # the check sees each form
    found = []
    for path in sorted((ROOT / "keras_resnets").rglob("*.py")):
        rel = str(path.relative_to(ROOT))
        found += _trainer_imports(path.read_text(encoding="utf-8"), rel)
    assert found == []


@pytest.mark.parametrize("module", sorted(_optional.EXTRAS))
def test_missing_optional_module_names_its_extra(module, monkeypatch):
    monkeypatch.setitem(sys.modules, module, None)  # `import module` raises ImportError
    dist, extra = _optional.EXTRAS[module]
    with pytest.raises(ImportError) as info:
        _optional.require(module, "This feature")
    assert str(info.value).startswith(f"This feature needs `{dist}`, which is not installed")
    assert str(info.value).endswith(f"pip install 'keras_resnets[{extra}]'")


def test_require_refuses_a_module_that_is_not_optional():
    with pytest.raises(ValueError, match=r"`module` must be an optional dependency .* 'numpy'"):
        _optional.require("numpy", "x")


def test_library_features_name_the_extra_without_tensorflow(monkeypatch, capsys):
    from keras_resnets import unit_gradients

    monkeypatch.setitem(sys.modules, "tensorflow", None)
    with pytest.raises(ImportError, match=r"pip install 'keras_resnets\[tensorflow\]'$"):
        unit_gradients.gradient_norm_ratio(None)
    assert cli.main(["train", "--help"]) == 2
    assert capsys.readouterr().err.strip().endswith("pip install 'keras_resnets[train]'")
    monkeypatch.setitem(sys.modules, "yaml", None)
    assert cli.main(["analysis", "degradation", "--models", "ResNet20"]) == 2
    err = capsys.readouterr().err
    assert "The degradation command" in err and "pip install 'keras_resnets[train]'" in err


def test_trainer_features_name_their_extra(monkeypatch, tmp_path):
    from training import tune
    from training.data import sources

    monkeypatch.setitem(sys.modules, "keras_tuner", None)
    with pytest.raises(ImportError, match=r"search needs `keras-tuner`.*\[tune\]'$"):
        tune.tune("digits_resnet20", output_dir=str(tmp_path), max_trials=1, epochs=1)
    monkeypatch.setitem(sys.modules, "sklearn.datasets", None)
    with pytest.raises(ImportError, match=r"digits data set needs `scikit-learn`.*\[train\]'$"):
        sources.load_digits_32()


def test_console_command_lists_its_subcommands(capsys):
    with pytest.raises(SystemExit) as info:
        cli.main(["--help"])
    assert info.value.code == 0
    out = capsys.readouterr().out
    listed = re.findall(r"^    (\w+) ", out.split("Commands:")[1], flags=re.M)
    assert (
        listed == list(cli.COMMANDS) == ["train", "tune", "export", "convert", "analysis", "models"]
    )
    with pytest.raises(SystemExit) as info:
        cli.main(["fit"])
    assert info.value.code == 2
    assert "invalid choice: 'fit'" in capsys.readouterr().err


@pytest.mark.parametrize("name", [n for n in cli.COMMANDS if n != "models"])
def test_each_subcommand_forwards_to_its_python_m_form(name, capsys):
    """`keras-resnets NAME --help` prints the help of `python -m MODULE --help`."""
    import importlib

    command = cli.COMMANDS[name]
    with pytest.raises(SystemExit) as info:
        cli.main([name, "--help"])
    assert info.value.code == 0
    ours = capsys.readouterr().out
    with pytest.raises(SystemExit):
        getattr(importlib.import_module(command.module), command.function)(["--help"])
    theirs = capsys.readouterr().out

    def options(text: str) -> str:  # the help after the usage paragraph (the prog differs)
        return text.split("\n\n", 1)[1]

    assert "--help" in ours and options(ours) == options(theirs)


@pytest.mark.parametrize(
    "route", [(name, *r) for name, command in cli.COMMANDS.items() for r in command.routes]
)
def test_each_routed_subcommand_forwards_to_its_python_m_form(route, capsys):
    """`keras-resnets analysis degradation --help` prints `python -m training.degradation --help`."""
    import importlib

    name, first, module = route
    with pytest.raises(SystemExit) as info:
        cli.main([name, first, "--help"])
    assert info.value.code == 0
    ours = capsys.readouterr().out
    assert ours.startswith(f"usage: python -m {module} ")
    with pytest.raises(SystemExit):
        importlib.import_module(module).main(["--help"])
    assert capsys.readouterr().out == ours


def test_library_degradation_points_to_the_trainer(capsys):
    """`python -m keras_resnets.analysis degradation ...` exits 2 naming the two commands."""
    from keras_resnets.analysis import __main__ as analysis_cli

    assert analysis_cli.main(["degradation", "--models", "ResNet20", "--epochs", "1"]) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err == f"error: {analysis_cli.DEGRADATION_MOVED}\n"
    assert "`keras-resnets analysis degradation ...`" in captured.err
    assert "`python -m training.degradation ...`" in captured.err
    assert cli.COMMANDS["analysis"].routes == (("degradation", "training.degradation"),)


def test_models_subcommand_lists_the_registry(capsys):
    assert cli.main(["models"]) == 0
    assert capsys.readouterr().out.splitlines() == keras_resnets.list_models()
    from keras_resnets.models.registry import model_table

    assert cli.main(["models", "--table"]) == 0
    assert capsys.readouterr().out == model_table() + "\n"


# ---------------------------------------------------------------------------
# A fresh virtual environment: `pip install .` without extras, JAX, no TensorFlow
# ---------------------------------------------------------------------------

_FRESH_SCRIPT = """
import importlib.util, json, os, sys, time
assert importlib.util.find_spec("tensorflow") is None, "tensorflow is installed"
try:
    import tensorflow  # noqa: F401
except ImportError:
    pass
else:
    raise SystemExit("import tensorflow worked")
import keras
import keras_resnets
from keras_resnets.models.registry import model_info
assert keras.backend.backend() == "jax", keras.backend.backend()
counts = {}
for name in json.loads(sys.argv[1]):
    start = time.perf_counter()
    model = keras_resnets.get_model(name, include_top=True)
    counts[name] = [
        sum(int(w.numpy().size) for w in model.trainable_weights),
        model_info(name).num_params,
        tuple(model.input_shape[1:3]) == (model_info(name).input_size,) * 2,
        round(time.perf_counter() - start, 1),
    ]
    keras.backend.clear_session()
missing = sorted(m for m in ("tensorflow", "yaml", "sklearn", "training") if m in sys.modules)
print(json.dumps({"counts": counts, "loaded": missing}))
"""


SHARDS = 2


def _fresh_venv() -> Path:
    """A venv under build/, keyed by the requirement files and the Python version."""
    key = hashlib.sha256()
    for name in ("setup.cfg", "constraints.txt"):
        key.update((ROOT / name).read_bytes())
    key.update(sysconfig.get_python_version().encode())
    venv = ROOT / "build" / f"venv-core-{key.hexdigest()[:12]}"
    python = venv / "bin" / "python"
    if not python.exists():
        subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=300)
    # A plain `pip install .` (no extras) with its dependencies, plus the user's backend,
    # at the versions `make` installs; reruns reuse the installed dependencies.
    subprocess.run(
        [str(python), "-m", "pip", "install", "--quiet", "-c", str(ROOT / "constraints.txt"),
         str(ROOT), "jax"],
        check=True,
        timeout=1200,
        cwd=venv,
    )  # fmt: skip
    return venv


@pytest.mark.slow
@pytest.mark.timeout(3600)
def test_pip_install_without_extras_builds_every_kind_of_model_on_jax_without_tensorflow():
    """A core install (no extras, no TensorFlow) builds the smallest row of each kind on JAX.

    Each kind (generic builder, family, block) has its own code path; a deeper
    row of a kind runs the same code (every row's count is asserted on
    TensorFlow by test_registry, and counts do not depend on the backend).
    """
    venv = _fresh_venv()
    names = smallest_of_each_kind()
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in ("PYTHONPATH", "KERAS_BACKEND", "VIRTUAL_ENV")
    }
    env["KERAS_BACKEND"] = "jax"
    run = dict(env=env, cwd=venv, capture_output=True, text=True, timeout=3000)
    # Run from the venv (not the repository) so the installed copy is imported; the
    # rows in SHARDS processes at once (CI has 2 cores; building is single-threaded).
    python = str(venv / "bin" / "python")
    workers = [
        subprocess.Popen(
            [python, "-c", _FRESH_SCRIPT, json.dumps(names[i::SHARDS])],
            env=env,
            cwd=venv,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for i in range(SHARDS)
    ]
    counts = {}
    for worker in workers:
        out, err = worker.communicate(timeout=3000)
        assert worker.returncode == 0, err[-3000:]
        report = json.loads(out.strip().splitlines()[-1])
        assert report["loaded"] == []
        counts.update(report["counts"])
    print({n: v[3] for n, v in sorted(counts.items(), key=lambda kv: -kv[1][3])})  # seconds
    assert sorted(counts) == names
    wrong = {n: v for n, v in counts.items() if v[0] != v[1] or not v[2]}
    assert wrong == {}
    # The console command is installed, and names the extra the trainer needs.
    command = str(venv / "bin" / "keras-resnets")
    listed = subprocess.run([command, "models"], **run)
    assert listed.returncode == 0, listed.stderr[-3000:]
    assert listed.stdout.splitlines() == keras_resnets.list_models()
    train = subprocess.run([command, "train", "--help"], **run)
    assert train.returncode == 2
    assert "pip install 'keras_resnets[train]'" in train.stderr


_BACKEND_CHECK = """
import sys
from training import cli, export, train, tune  # the commands that take --backend
assert "keras" not in sys.modules, "importing a trainer command imported Keras"
# Typed flags and --set are parsed (with YAML) before the backend is chosen.
argv = ["--backend", "jax", "--recipe", "no_such_recipe", "--epochs", "1", "--set", "train.seed=1"]
status = cli.main(["train", *argv])
assert status == 2, status  # the unknown recipe, reported after the backend was chosen
import keras
print(keras.backend.backend())
"""


def test_backend_flag_chooses_before_anything_imports_keras():
    """`--backend` works only if Keras is not imported before the flag is read."""
    env = {k: v for k, v in os.environ.items() if k != "KERAS_BACKEND"}
    assert _run_python(_BACKEND_CHECK, env) == "jax"


def _run_python(code: str, env: dict, *args: str) -> str:
    """Run `code` in a fresh interpreter on this checkout; return its last output line."""
    result = subprocess.run(
        [sys.executable, "-c", code, *args],
        env={**env, "PYTHONPATH": str(ROOT)},
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr
    return result.stdout.strip().splitlines()[-1]
