"""The analysis, degradation and tune commands' flags (issue 17, kind 11).

Every numeric flag of these commands is typed (`keras_resnets.utils.int_flag`,
`int_list_flag`, `float_flag`; `--output-dir` by `output_dir_flag`): a bad
value stops argparse before anything is built, exit 2, with `error:
argument --flag: ...` naming the value and what is allowed. The flags are
walked from the parsers, so a new flag is covered (and a bare `type=int`
fails `test_every_numeric_flag_is_typed`).
"""

from __future__ import annotations

import argparse
import math
import shlex

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from keras_resnets.analysis import __main__ as analysis
from keras_resnets.utils import output_dir_flag
from training import degradation, tune

#: Each command: its `main`, the arguments before the flag, its parser and
#: the arguments the parser needs (a sub-command's parser has no name to take).
COMMANDS = {
    "tune": (tune.main, ["--recipe", "x"], tune.build_parser(), ["--recipe", "x"]),
    "degradation": (degradation.main, [], degradation.build_parser(), []),
}
for _action in analysis._parser()._actions:
    if isinstance(_action, argparse._SubParsersAction):
        for _name, _sub in _action.choices.items():
            if _sub._actions[1:]:  # `degradation` is listed only (it runs from training/)
                COMMANDS[f"analysis {_name}"] = (analysis.main, [_name], _sub, [])

FLAGS = [
    (command, action.option_strings[-1], action)
    for command, (_, _, parser, _) in COMMANDS.items()
    for action in parser._actions
    if action.option_strings and action.type is not None
]
TYPED = [f for f in FLAGS if hasattr(f[2].type, "bounds") or hasattr(f[2].type, "interval")]
SETTINGS = settings(
    max_examples=15,
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)


def _parse(command: str, option: str, text: str, capsys):
    """`(value, None)` if argparse takes `option text`, else `(None, stderr)` (exit 2)."""
    _, _, parser, before = COMMANDS[command]
    dest = parser._option_string_actions[option].dest
    try:  # `--flag=value`: "-1e+16" is no option
        return getattr(parser.parse_args([*before, f"{option}={text}"]), dest), None
    except SystemExit as exit_:
        assert exit_.code == 2
        return None, capsys.readouterr().err


def test_every_numeric_flag_is_typed():
    assert {"tune", "degradation", "analysis gradients", "analysis schedule"} <= set(COMMANDS)
    assert len(TYPED) >= 20
    bare = [(c, o) for c, o, a in FLAGS if a.type in (int, float)]
    assert not bare, f"numeric flags without a range: {bare}"
    dirs = [(c, o) for c, o, a in FLAGS if o == "--output-dir" and a.type is not output_dir_flag]
    assert not dirs and sum(o == "--output-dir" for _, o, _ in FLAGS) == len(COMMANDS)


@pytest.mark.parametrize("command, option, action", TYPED, ids=[f"{c} {o}" for c, o, _ in TYPED])
@SETTINGS
@given(number=st.one_of(st.integers(-(10**12), 10**12), st.floats(allow_infinity=True)))
def test_numeric_flags_take_their_range_and_name_the_flag(command, option, action, number, capsys):
    kind = action.type
    text = str(number)
    if hasattr(kind, "bounds"):
        low, high = kind.bounds
        ok = isinstance(number, int) and number >= low and (high is None or number <= high)
        expected = [number] if ok and option == "--depths" else number
    else:
        low, high, closed_low, closed_high = kind.interval
        ok = not math.isnan(number) and (
            (low <= number if closed_low else low < number)
            and (number <= high if closed_high else number < high)
        )
        expected = float(number)
    value, err = _parse(command, option, text, capsys)
    if ok:
        assert err is None and value == (expected if action.nargs is None else [expected])
    else:
        assert value is None and f"error: argument {option}: must be " in err and repr(text) in err


#: The examples of issue 17 (kind 11): `command --flag value`, by what the flag allows.
EXAMPLES = {
    "an integer >= 1": [
        "analysis gradients --batch-size 0",
        "analysis schedule --num-blocks 0",
        "degradation --batch-size 0",
        "degradation --epochs -1",
        "tune --epochs -1",
    ],
    "an integer >= 0": ["analysis lesion --epochs -1"],
    "an integer in [0, 4294967295]": ["tune --seed -1", "analysis paths --seed -1"],
    "comma-separated integers >= 1 (e.g. 8,14,20)": [
        "tune --depths a,b",
        "tune --depths ''",
        "tune --depths 8,,14",
    ],
}


@pytest.mark.parametrize(
    "example, allowed", [(e, allowed) for allowed, rows in EXAMPLES.items() for e in rows]
)
def test_issue_examples_exit_2_naming_the_flag(example, allowed, capsys):
    *words, flag, value = shlex.split(example)
    main, before, _, _ = COMMANDS[" ".join(words)]
    with pytest.raises(SystemExit) as exit_:
        main([*before, flag, value])
    err = capsys.readouterr().err
    assert exit_.value.code == 2
    assert f"error: argument {flag}: must be {allowed}, got {value!r}" in err
    assert "Traceback" not in err


@pytest.mark.parametrize("command", sorted(COMMANDS))
def test_output_dir_on_a_file_is_refused_naming_it(command, tmp_path, capsys):
    main, before, _, _ = COMMANDS[command]
    afile = tmp_path / "results.txt"
    afile.write_text("mine\n")
    for path, why in ((afile, "is a file"), (afile / "sub", f"is under the file {str(afile)!r}")):
        with pytest.raises(SystemExit) as exit_:
            main([*before, "--output-dir", str(path)])
        err = capsys.readouterr().err
        assert exit_.value.code == 2
        assert f"error: argument --output-dir: {str(path)!r} {why}: pass a directory" in err
    assert afile.read_text() == "mine\n"
    assert _parse(command, "--output-dir", str(tmp_path / "new" / "dir"), capsys)[1] is None
