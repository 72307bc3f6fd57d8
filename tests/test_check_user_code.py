"""User code cannot end a check silently (issue 12, item 8).

``sys.exit`` or KeyboardInterrupt in a user's scoring function, a function that hangs, or a bug
in it: `check-method` exits 2 with one line that says what happened (and where, for a bug);
``--debug`` adds the user's full traceback. All of this happens in the probe, before any run.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from earlyprune import cli

BODIES = {
    "exit": "import sys\n\ndef score(model, batch):\n    sys.exit(0)\n",
    "interrupt": "def score(model, batch):\n    raise KeyboardInterrupt\n",
    "hang": "import time\n\ndef score(model, batch):\n    time.sleep(60)\n",
    "swallowing_hang": (
        "def score(model, batch):\n    while True:\n        try:\n            pass\n"
        "        except Exception:\n            pass\n"
    ),
    "bug": "def helper(x):\n    return x / 0\n\ndef score(model, batch):\n    return helper(1)\n",
}


def check(tmp_path: Path, capsys, body: str, *extra: str) -> tuple[int, str, str]:
    (tmp_path / "mine.py").write_text(body, encoding="utf-8")
    argv = [
        "check-method",
        f"{tmp_path}/mine.py:score",
        "--quick",
        "--store",
        str(tmp_path / "store"),
        "--out",
        str(tmp_path / "out"),
        *extra,
    ]
    try:
        code = cli.main(argv)
    except SystemExit as exc:  # what the user's sys.exit did before the fix
        code = exc.code
    out, err = capsys.readouterr()
    assert not (tmp_path / "store").exists()  # the probe refuses before any run
    return code, out, err


@pytest.mark.parametrize(
    ("body", "says"),
    [("exit", "called sys.exit(0)"), ("interrupt", "raised KeyboardInterrupt")],
)
def test_exit_or_interrupt_in_user_code_is_exit_2_with_a_message(tmp_path, capsys, body, says):
    code, out, err = check(tmp_path, capsys, BODIES[body])
    assert code == 2 and out == "" and err.count("\n") == 1, err
    assert says in err and "mine.py:score" in err


@pytest.mark.parametrize("body", ["hang", "swallowing_hang"])
def test_a_hanging_user_function_times_out_with_a_clear_message(tmp_path, capsys, body):
    code, _out, err = check(tmp_path, capsys, BODIES[body], "--timeout", "0.5")
    assert code == 2 and err.count("\n") == 1, err
    assert "did not return within 0.5 s" in err and "--timeout SECONDS" in err


def test_a_bug_in_user_code_names_the_users_file_and_line(tmp_path, capsys):
    code, _out, err = check(tmp_path, capsys, BODIES["bug"])
    assert code == 2 and err.count("\n") == 1, err
    assert "ZeroDivisionError" in err and f"{tmp_path}/mine.py, line 2" in err
    assert "Traceback" not in err
    code, _out, err = check(tmp_path, capsys, BODIES["bug"], "--debug")
    assert code == 2 and "Traceback" in err and 'mine.py", line 2, in helper' in err
    assert err.strip().splitlines()[-1].startswith("earlyprune: error: ")


def test_the_default_timeout_is_generous(tmp_path):
    from earlyprune.apps.check_method import DEFAULT_TIMEOUT_S

    args = cli.build_parser().parse_args(["check-method", "x.py:f"])
    assert args.timeout == DEFAULT_TIMEOUT_S >= 60
