"""Faults around a run's output directory: two runs at once, kills, damaged backups.

One run per output directory (`training.rundir.hold`, a `filelock` lock the
kernel drops with a killed process), `--overwrite` that never deletes an
input of the run, the temporaries of a kill removed on the next start, no
duplicate `log.csv` row after a kill during the end-of-epoch backup, a
damaged backup named and stepped back from, and `--export` of a finished run
not written twice. See docs/training.md ("Runs that survive").
"""

from __future__ import annotations

import csv
import os
import re
import signal
import subprocess
import sys
import textwrap

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from training_helpers import ROOT, TINY, tiny_set_flags, trainer_env

from keras_resnets.utils import EXIT_CODES, OutputDirectoryBusy


def _start_python(code: str, *args: str) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-c", textwrap.dedent(code), *args],
        cwd=ROOT,
        env=trainer_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


def test_a_second_run_is_refused_naming_the_holder_until_the_holder_is_killed(tmp_path, capsys):
    from training import rundir
    from training.runner import run
    from training.train import main

    output_dir = str(tmp_path / "run")
    holder = _start_python(
        """
        import sys, time
        from training import rundir
        with rundir.hold(sys.argv[1]):
            print("held", flush=True)
            time.sleep(600)
        """,
        output_dir,
    )
    try:
        while (line := holder.stdout.readline()) and line.strip() != "held":
            pass  # TensorFlow's start-up messages
        assert line.strip() == "held"
        # A kill's leftover: a refused run must not touch it (nor anything else).
        leftover = os.path.join(output_dir, ".model.keras.k3j9x0ab.tmp.keras")
        open(leftover, "wb").close()
        before = sorted(os.listdir(output_dir))
        for flags in ({}, {"resume": True}, {"overwrite": True}):
            with pytest.raises(OutputDirectoryBusy, match=rf"pid {holder.pid} on host .*started"):
                run("digits_resnet20", output_dir=output_dir, epochs=1, **flags)
        assert (
            main(["--recipe", "digits_resnet20", "--output-dir", output_dir]) == EXIT_CODES["busy"]
        )
        assert f"error: {output_dir} is in use by another run (pid {holder.pid}" in (
            capsys.readouterr().err
        )
        assert sorted(os.listdir(output_dir)) == before
    finally:
        holder.send_signal(signal.SIGKILL)
        holder.wait(timeout=30)
    assert holder.returncode == -signal.SIGKILL
    with rundir.hold(output_dir):  # the kernel dropped the killed holder's lock
        assert rundir.remove_leftovers(output_dir) == [leftover]


def test_an_input_of_the_run_is_never_among_its_outputs(tmp_path):
    from training.rundir import default_output_dir
    from training.runner import run

    previous = tmp_path / "digits_resnet20"
    (previous / "backup").mkdir(parents=True)
    source = previous / "model.keras"
    source.write_bytes(b"the user's trained model")
    (previous / "backup" / "state.npz").write_bytes(b"a backup")
    for flags in ({}, {"overwrite": True}, {"resume": True}):
        with pytest.raises(
            ValueError, match=re.escape(f"--transfer-from {source} is the model.keras")
        ):
            run(
                "digits_resnet20",
                output_dir=str(previous),
                transfer_from=str(source),
                new_classes=10,
                **flags,
            )
    assert source.read_bytes() == b"the user's trained model"
    assert (previous / "backup" / "state.npz").exists()
    # The command line's default for a transfer is a directory of its own.
    assert default_output_dir("digits_resnet20") == os.path.join("runs", "digits_resnet20")
    assert default_output_dir("digits_resnet20", str(source)) == os.path.join(
        "runs", "digits_resnet20-transfer"
    )


def test_overwrite_clears_every_output_of_the_previous_run_and_nothing_else(tmp_path):
    from training.rundir import OUTPUTS, clear_outputs

    for name in OUTPUTS:
        if "." in name:
            (tmp_path / name).write_text("old")
        else:
            (tmp_path / name / "1").mkdir(parents=True)
    (tmp_path / "notes.txt").write_text("mine")
    (tmp_path / "my_images" / "cat").mkdir(parents=True)
    removed = clear_outputs(str(tmp_path))
    assert sorted(os.path.basename(p) for p in removed) == sorted(OUTPUTS)
    assert sorted(os.listdir(tmp_path)) == ["my_images", "notes.txt"]


# Kill the trainer (SIGKILL, a real signal) inside the second end-of-epoch
# backup: after `log.csv` got epoch 1's row, the temporary backup file is
# written and not yet renamed.
_KILLED_IN_BACKUP = """
import os, signal, sys
import numpy as np

real_savez, calls = np.savez, []

def savez(file, **arrays):
    real_savez(file, **arrays)
    calls.append(1)
    if len(calls) == 2:
        file.flush()
        os.kill(os.getpid(), signal.SIGKILL)

np.savez = savez
from training.train import main
sys.exit(main(sys.argv[1:]))
"""


def _log_epochs(output_dir) -> list[int]:
    with open(os.path.join(output_dir, "log.csv"), newline="") as handle:
        return [int(row["epoch"]) for row in csv.DictReader(handle)]


def test_kill_in_the_epoch_backup_then_resume_export_once_and_overwrite(
    tmp_path, capsys, monkeypatch
):
    import keras_resnets
    from training.runner import run

    exports = []

    def export(model, export_base, **options):  # the SavedModel itself: tests/test_export.py
        exports.append(os.path.join(export_base, str(len(exports) + 1)))
        os.makedirs(exports[-1])
        return exports[-1]

    monkeypatch.setattr(keras_resnets, "export_saved_model", export)

    output_dir = str(tmp_path / "run")
    common = {"epochs": 2, "batch_size": 64, "verbose": "quiet"}
    victim = _start_python(
        _KILLED_IN_BACKUP,
        *("--recipe", "digits_resnet20", "--output-dir", output_dir, "--epochs", "2"),
        *("--batch-size", "64", "--verbose", "quiet", *tiny_set_flags()),
    )
    out, _ = victim.communicate(timeout=240)
    assert victim.returncode == -signal.SIGKILL, out[-3000:]
    backup_dir = os.path.join(output_dir, "backup")
    leftovers = [name for name in os.listdir(backup_dir) if name.startswith(".state.npz.")]
    assert len(leftovers) == 1, os.listdir(backup_dir)
    assert _log_epochs(output_dir) == [0, 1]  # epoch 1's row, not its backup

    result = run(
        "digits_resnet20", output_dir=output_dir, overrides=TINY, resume=True, export=True, **common
    )
    assert result["status"] == "completed" and result["steps"] == 8
    assert _log_epochs(output_dir) == [0, 1]
    assert not [name for name in os.listdir(backup_dir) if name.startswith(".")]
    assert "left by a run that was stopped" in capsys.readouterr().out
    export_base = os.path.join(output_dir, "saved_model")
    assert exports == [os.path.join(export_base, "1")]

    again = run(
        "digits_resnet20", output_dir=output_dir, overrides=TINY, resume=True, export=True, **common
    )
    assert again["weights_sha256"] == result["weights_sha256"]
    assert exports == [os.path.join(export_base, "1")]  # not exported a second time
    assert again["export_version_path"] == exports[0]

    # A smaller budget than the backup's step is refused before anything is written.
    config_before = open(os.path.join(output_dir, "config.yaml"), "rb").read()
    with pytest.raises(
        ValueError, match=r"--resume: the backup .* is at step 8, past this run's 4"
    ):
        run("digits_resnet20", output_dir=output_dir, overrides=TINY, resume=True,
            **{**common, "epochs": 1})  # fmt: skip
    assert open(os.path.join(output_dir, "config.yaml"), "rb").read() == config_before

    # --overwrite starts again there with none of the previous run's outputs.
    run("digits_resnet20", output_dir=output_dir, overrides=TINY, overwrite=True, **common)
    assert not os.path.exists(export_base)
    assert _log_epochs(output_dir) == [0, 1]
    assert sorted(os.listdir(backup_dir)) == ["state.npz", "state.prev.npz"]


@pytest.fixture(scope="module")
def tiny_model():
    import keras

    model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(2)])
    model.compile(optimizer=keras.optimizers.SGD(0.1, momentum=0.9), loss="mse")
    model.optimizer.build(model.trainable_variables)
    return model


def _damage(path, kind: str, position: float = 0.5) -> None:
    data = bytearray(open(path, "rb").read())
    if kind == "truncated":
        data = data[: int(len(data) * position)]
    elif kind == "empty":
        data = bytearray()
    elif kind == "flipped":
        data[int((len(data) - 1) * position)] ^= 0xFF
    elif kind == "no metadata":
        with np.load(path) as saved:
            arrays = {name: saved[name] for name in saved.files if name != "meta"}
        with open(path, "wb") as handle:
            np.savez(handle, **arrays)
        return
    with open(path, "wb") as handle:
        handle.write(bytes(data))


@pytest.mark.parametrize("kind", ["truncated", "empty", "flipped", "no metadata"])
def test_a_damaged_backup_is_named_and_resume_steps_back_one_save(
    tmp_path, tiny_model, capsys, kind
):
    from training import callbacks as cb

    path = str(tmp_path / "backup" / "state.npz")
    cb.save_state(path, tiny_model, 1, {"loss": [1.0]})
    first = [w.copy() for w in tiny_model.get_weights()]
    tiny_model.layers[0].kernel.assign(tiny_model.layers[0].kernel + 1.0)
    cb.save_state(path, tiny_model, 2, {"loss": [1.0, 0.5]})
    assert cb.read_meta(cb.previous_backup(path))["step"] == 1
    _damage(path, kind)

    with pytest.raises(
        cb.CorruptBackup, match=re.escape(f"Backup {path} is damaged") + ".*--overwrite"
    ):
        cb.load_state(path, tiny_model)
    meta, restored = cb.load_latest_state(path, tiny_model)
    assert (meta["step"], restored) == (1, cb.previous_backup(path))
    for got, want in zip(tiny_model.get_weights(), first, strict=True):
        np.testing.assert_array_equal(got, want)
    assert f"Resuming from the previous backup {restored} (step 1)" in capsys.readouterr().err

    # Both damaged: the message says so and names no third file to fall back to.
    _damage(cb.previous_backup(path), kind)
    with pytest.raises(cb.CorruptBackup, match="Neither backup can be read") as caught:
        cb.load_latest_state(path, tiny_model)
    assert cb.previous_backup(path) in str(caught.value)
    assert "prev.prev" not in str(caught.value)
    assert str(caught.value).endswith(
        "Start again with --overwrite or choose another --output-dir."
    )

    os.remove(cb.previous_backup(path))
    with pytest.raises(cb.CorruptBackup, match=re.escape(f"Backup {path} is damaged")):
        cb.load_latest_state(path, tiny_model)


@settings(
    max_examples=30,
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(position=st.floats(0.0, 1.0), kind=st.sampled_from(["truncated", "flipped"]))
def test_any_damage_is_refused_naming_the_file_or_restores_the_saved_state(
    tmp_path, tiny_model, position, kind
):
    from training import callbacks as cb

    path = str(tmp_path / f"state-{kind}-{position}.npz")
    cb.save_state(path, tiny_model, 3, {"loss": [0.5]}, keep_previous=False)
    saved = [w.copy() for w in tiny_model.get_weights()]
    _damage(path, kind, position)
    tiny_model.layers[0].kernel.assign(tiny_model.layers[0].kernel * 0.0 + 7.0)
    try:
        meta = cb.load_state(path, tiny_model)
    except cb.CorruptBackup as error:
        assert path in str(error)
    else:  # a byte no reader checks (a timestamp): the state is whole
        assert meta["step"] == 3
        for got, want in zip(tiny_model.get_weights(), saved, strict=True):
            np.testing.assert_array_equal(got, want)
