"""The documentation: the site builds strictly, the README stays short, every relative link
resolves, the reference pages match the parser, and every command the docs mark `ci-runs`
exits with the code they say. No database is needed.
"""

from __future__ import annotations

import importlib.util
import re
import shlex
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType

import pytest

ROOT = Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs"
README = ROOT / "README.md"
README_MAX_LINES = 250
CI_RUNS = re.compile(r"^<!--\s*ci-runs(?:\s*:\s*exit\s+(?P<code>\d+))?\s*-->\s*$")
FENCE = re.compile(r"^(?P<fence>`{3,}|~{3,})")
LINK = re.compile(r"\[[^\]]*\]\((?P<target>[^)\s]+)(?:\s+\"[^\"]*\")?\)")


def pages() -> list[Path]:
    return [README, *sorted(DOCS.rglob("*.md"))]


def hooks() -> ModuleType:
    """docs/hooks.py, loaded as the build loads it."""
    pytest.importorskip("mkdocs", reason="mkdocs is not installed: pip install -e '.[dev]' (CI installs it)")
    spec = importlib.util.spec_from_file_location("oneroof_docs_hooks", DOCS / "hooks.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


# -- the ci-runs convention ---------------------------------------------------------------------


@dataclass(frozen=True)
class Command:
    page: str  # path:line
    text: str
    expected: int


def outside_fences(text: str) -> Iterator[tuple[int, str, bool]]:
    """(line number, line, inside a fence) for each line; a fence closes only with its own kind."""
    fence = ""
    for number, line in enumerate(text.splitlines(), 1):
        match = FENCE.match(line.strip())
        if not fence and match:
            fence = match["fence"]
            yield number, line, False  # the opening fence itself
            continue
        if (
            fence
            and match
            and match["fence"][0] == fence[0]
            and len(match["fence"]) >= len(fence)
            and line.strip() == match["fence"]
        ):
            fence = ""
            yield number, line, True
            continue
        yield number, line, bool(fence)


def ci_commands(path: Path) -> list[Command]:
    """The commands of the fenced blocks that `<!-- ci-runs -->` marks in `path`."""
    lines = path.read_text(encoding="utf-8").splitlines()
    found = []
    inside = dict((n, f) for n, _line, f in outside_fences("\n".join(lines)))
    for index, line in enumerate(lines):
        match = CI_RUNS.match(line.strip())
        if not match or inside[index + 1]:
            continue
        where = f"{path.relative_to(ROOT)}:{index + 1}"
        opening = FENCE.match(lines[index + 1].strip()) if index + 1 < len(lines) else None
        assert opening, f"{where}: a ci-runs marker must stand just before a fenced block"
        expected = int(match["code"] or 0)
        for number in range(index + 2, len(lines)):
            body = lines[number]
            if body.strip().startswith(opening["fence"]):
                break
            words = shlex.split(body, comments=True)
            if not words:
                continue
            assert words[0] == "oneroof", f"{where}: a ci-runs block holds only oneroof commands, not {body!r}"
            found.append(Command(f"{path.relative_to(ROOT)}:{number + 1}", body.split("#")[0].strip(), expected))
        else:
            raise AssertionError(f"{where}: the fenced block is not closed")
    return found


def all_ci_commands() -> list[Command]:
    return [command for page in pages() for command in ci_commands(page)]


def run(command: Command) -> int:
    """`command` run in this process by this checkout's command line (`main`, loaded as
    docs/hooks.py loads it): its exit code. None of these commands needs a process of its own (no
    database, no child), and a process per command would cost a Python start-up each.
    """
    words = shlex.split(command.text)
    try:
        return int(hooks().cli().main(words[1:]))
    except SystemExit as exc:  # argparse's --help, --version and usage errors
        return exc.code if isinstance(exc.code, int) else 1


# -- the tests ----------------------------------------------------------------------------------------


def test_the_site_builds_strictly(tmp_path: Path) -> None:
    hooks()  # skips without mkdocs
    result = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(tmp_path / "site")],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    for page in ("index.html", "commands/rollout/index.html", "settings/index.html", "design/index.html"):
        assert (tmp_path / "site" / page).is_file(), page


def test_the_readme_is_at_most_250_lines() -> None:
    count = len(README.read_text(encoding="utf-8").splitlines())
    assert count <= README_MAX_LINES, f"README.md has {count} lines: move the rest into docs/"


@pytest.mark.parametrize("page", pages(), ids=lambda p: str(p.relative_to(ROOT)))
def test_every_relative_link_resolves(page: Path) -> None:
    text = page.read_text(encoding="utf-8")
    code_free = "\n".join(line for _n, line, inside in outside_fences(text) if not inside)
    code_free = re.sub(r"`[^`\n]*`", "", code_free)
    broken = []
    for match in LINK.finditer(code_free):
        target = match["target"]
        if re.match(r"^[a-z][a-z0-9+.-]*:", target) or target.startswith("#"):
            continue
        path = target.split("#")[0]
        if not (page.parent / path).resolve().exists():
            broken.append(target)
    assert not broken, f"{page.relative_to(ROOT)} links to missing files: {broken}"


def test_every_command_has_its_page_and_every_page_its_command() -> None:
    docs = hooks()
    names = set(docs.commands(docs.build_parser()))
    pages = {p.stem for p in (DOCS / "commands").glob("*.md")} - {"index"}
    assert names == pages, f"commands without a page: {names - pages}; pages without a command: {pages - names}"
    docs.check_command_pages(DOCS)
    nav = (ROOT / "mkdocs.yml").read_text(encoding="utf-8")
    for name in names:
        assert f"commands/{name}.md" in nav, f"commands/{name}.md is not in mkdocs.yml's nav"


def test_a_page_for_a_command_the_parser_lacks_fails_the_build(tmp_path: Path) -> None:
    docs = hooks()
    from mkdocs.exceptions import PluginError

    (tmp_path / "commands").mkdir()
    for name in docs.commands(docs.build_parser()):
        (tmp_path / "commands" / f"{name}.md").write_text(
            f"<!-- oneroof:synopsis {name} -->\n<!-- oneroof:options {name} -->\n", encoding="utf-8"
        )
    docs.check_command_pages(tmp_path)
    (tmp_path / "commands" / "frobnicate.md").write_text("<!-- oneroof:synopsis frobnicate -->\n", encoding="utf-8")
    with pytest.raises(PluginError, match="frobnicate"):
        docs.check_command_pages(tmp_path)
    with pytest.raises(PluginError, match="frobnicate"):
        docs.render("<!-- oneroof:synopsis frobnicate -->\n", "test")


def test_the_generated_reference_holds_every_option_and_setting() -> None:
    docs = hooks()
    parser = docs.build_parser()
    for name, sub in docs.commands(parser).items():
        text = docs.render(f"<!-- oneroof:command {name} -->\n", name)
        assert f"oneroof {name}" in text and "## Synopsis" in text and "## Options" in text
        for action in sub._actions:
            for flag in action.option_strings:
                if flag not in ("-h", "--help"):
                    assert f"`{flag}" in text, f"oneroof {name}: {flag} is not on its page"
    settings = docs.render("<!-- oneroof:settings -->\n", "settings")
    for _attr, flag, ini, env, _default, _text in docs.settings():
        assert f"`{flag}`" in settings and f"`{env}`" in settings and f"`{ini}`" in settings
    assert "`--rehearsal`" in settings


def test_the_readme_exit_codes_are_the_codes_of_the_code() -> None:
    docs = hooks()
    readme = README.read_text(encoding="utf-8")
    table = readme[readme.index("## Exit codes") :]
    listed = {int(m) for m in re.findall(r"^\| (\d+) \|", table, re.MULTILINE)}
    assert listed == {code for code, _name, _meaning in docs.exit_codes()}


def test_the_docs_mark_the_commands_ci_runs() -> None:
    docs = hooks()
    commands = all_ci_commands()
    texts = {c.text for c in commands}
    needed = {"oneroof --help", "oneroof package hash", "oneroof package verify"}
    needed |= {f"oneroof {name} --help" for name in docs.commands(docs.build_parser())}
    assert needed <= texts, f"not marked ci-runs anywhere: {sorted(needed - texts)}"


@pytest.mark.parametrize("command", all_ci_commands(), ids=lambda c: f"{c.page} {c.text}")
def test_a_documented_command_exits_as_the_docs_say(command: Command, capsys: pytest.CaptureFixture[str]) -> None:
    hooks()  # skips without mkdocs
    code = run(command)
    out, err = capsys.readouterr()
    assert code == command.expected, (
        f"{command.page}: `{command.text}` exited {code}, the docs say {command.expected}\n{out[-2000:]}{err[-2000:]}"
    )
