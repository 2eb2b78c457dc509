"""Help as a newcomer meets it: no arguments list the commands, a typo gets "did you mean", an
error points to the help of the command it is about, each action of `golden` and `clone` has
its own help, and the metavars say what a value is. No database and no process of its own are
needed: the command line runs in the test's process (the `oneroof_main` fixture).
"""

from __future__ import annotations

import re
from typing import Any

import pytest

from oneroof.executor.cli import build_parser
from tests.support.testing import one_line_error

COMMANDS = ("server", "golden", "clone", "probe", "verify", "monitor", "rollout", "rollback", "rehearse")


def test_no_arguments_list_the_commands_as_a_usage_error(oneroof_main: Any) -> None:
    for args in ((), ("--debug",)):
        result = oneroof_main(*args)
        assert result.returncode == 2 and result.stdout == "", result.stdout + result.stderr
        assert "a command is missing" in result.stderr
        for name in (*COMMANDS, "report", "package", "approve", "approvals"):
            assert re.search(rf"^    {name}\b", result.stderr, re.MULTILINE), result.stderr


@pytest.mark.parametrize(
    ("args", "suggestion", "help_of"),
    [
        (("rolout",), "rollout", "oneroof"),
        (("rehearsal",), "rehearse", "oneroof"),
        (("verify", "--stage", "basline"), "baseline", "oneroof verify"),
        (("golden", "biuld"), "build", "oneroof golden"),
    ],
)
def test_a_typo_gets_did_you_mean(oneroof_main: Any, args: tuple[str, ...], suggestion: str, help_of: str) -> None:
    one_line_error(oneroof_main(*args), f"did you mean `{suggestion}`?", f"(see `{help_of} --help`)")


def test_a_word_like_no_command_gets_no_suggestion(oneroof_main: Any) -> None:
    result = oneroof_main("xyzzy")
    one_line_error(result, "invalid choice: 'xyzzy'", "(see `oneroof --help`)")
    assert "did you mean" not in result.stderr


@pytest.mark.parametrize(
    ("args", "help_of"),
    [
        (("rollout", "--confirm-db", "x", "--bogus"), "oneroof rollout"),
        (("probe", "--bogus"), "oneroof probe"),
        (("golden", "build", "--bogus"), "oneroof golden build"),
        (("clone", "create", "--scale", "2"), "oneroof clone create"),
        (("rollout",), "oneroof rollout"),
    ],
)
def test_an_error_points_to_the_help_of_its_command(oneroof_main: Any, args: tuple[str, ...], help_of: str) -> None:
    result = oneroof_main(*args)
    one_line_error(result, f"(see `{help_of} --help`)")
    assert result.stderr.startswith(f"{help_of}: error: "), result.stderr


@pytest.mark.parametrize(
    ("action", "has", "lacks"),
    [
        (("golden", "build"), ("--scale", "--replace", "--package", "--dsn"), ("--jobs", "--from")),
        (("golden", "snapshot"), ("--from", "--jobs", "--replace", "--dsn"), ("--scale", "--package")),
        (("golden", "list"), ("--dsn", "--json"), ("--scale", "--jobs", "--from", "--replace")),
        (("golden", "show"), ("NAME", "--dsn"), ("--scale", "--jobs", "--replace")),
        (("clone", "create"), ("--from", "--name", "--strategy", "--wait", "--json"), ("--older-than",)),
        (("clone", "drop"), ("NAME", "--dsn"), ("--strategy", "--older-than", "--json")),
        (("clone", "list"), ("--dsn", "--json"), ("--strategy", "--older-than")),
        (("clone", "gc"), ("--from", "--older-than"), ("--strategy", "--json", "--name")),
    ],
)
def test_each_action_has_its_own_help(
    oneroof_main: Any, action: tuple[str, ...], has: tuple[str, ...], lacks: tuple[str, ...]
) -> None:
    result = oneroof_main(*action, "--help")
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith(f"usage: oneroof {' '.join(action)}"), result.stdout
    for flag in has:
        assert flag in result.stdout, (flag, result.stdout)
    for flag in lacks:
        assert flag not in result.stdout, (flag, result.stdout)


def test_server_help_explains_each_action_and_approvals_is_not_called_offline(oneroof_main: Any) -> None:
    text = " ".join(oneroof_main("server", "--help").stdout.split())
    for explained in ("start: start it", "stop: stop it", "status: whether it runs", "url: print its DSN"):
        assert explained in text, text
    approvals = " ".join(oneroof_main("approvals", "--help").stdout.split())
    assert "offline" not in approvals and "read-only" in approvals
    assert "offline" not in oneroof_main("--help").stdout


METAVARS = {
    "--dsn": "DSN",
    "--from": ("DSN", "NAME"),  # production's DSN (golden snapshot, rehearse), a source database (clone)
    "--prod-dsn": "DSN",
    "--package": "DIR",
    "--runs-dir": "DIR",
    "--expect-sha256": "SHA256",
    "--allowed-signers": "FILE",
    "--rehearsal": "FILE",
    "--out": "FILE",
    "--submit": "FILE",
    "--key": "FILE",
    "--sign": "FILE",
    "--name": "NAME",
    "--golden": "NAME",
    "--confirm-db": "NAME",
    "--expect-db": "NAME",
    "--prod-db": "NAME",
}


def test_metavars_are_consistent() -> None:
    seen: dict[str, set[str]] = {}

    def walk(parser: Any) -> None:
        for action in parser._actions:
            if hasattr(action, "choices") and isinstance(action.choices, dict):
                for sub in action.choices.values():
                    walk(sub)
            for flag in action.option_strings:
                if flag in METAVARS:
                    seen.setdefault(flag, set()).add(action.metavar)

    walk(build_parser())
    assert set(seen) == set(METAVARS)
    for flag, metavars in seen.items():
        allowed = METAVARS[flag]
        assert metavars <= ({allowed} if isinstance(allowed, str) else set(allowed)), (flag, metavars)
