"""MkDocs hook: the reference pages are generated from the code, so they cannot drift.

At build time this module imports the command-line parser, the settings table and the exit
codes, and replaces markers in the Markdown of the pages:

- ``<!-- oneroof:synopsis NAME -->``: the ``## Synopsis`` of ``oneroof NAME`` (its usage, and
  the text of ``oneroof NAME --help``); NAME may be a path of nested subcommands, e.g.
  ``golden build`` when ``golden`` has subparsers of its own.
- ``<!-- oneroof:options NAME -->``: the ``## Options`` of ``oneroof NAME``: every flag and
  positional with its default and help, and the same for each nested subcommand.
- ``<!-- oneroof:command NAME -->``: both of the above.
- ``<!-- oneroof:commands -->``: a table of every command, linking to its page.
- ``<!-- oneroof:settings -->``: the settings table (flag, environment variable, ini key,
  default, meaning).
- ``<!-- oneroof:exit-codes -->``: the exit-code table.
- ``<!-- oneroof:glossary -->``: the report's terms, as the report lists them.

The build fails (a ``PluginError``) when a marker names a command the parser lacks, when a
command of the parser has no page ``commands/NAME.md`` with its markers, or when a page under
``commands/`` documents no command.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import logging
import os
import re
import sys
import types
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from mkdocs.exceptions import PluginError

ROOT = Path(__file__).resolve().parent.parent
log = logging.getLogger("mkdocs.plugins.oneroof")

# A marker stands alone on its line (so one quoted in a table or in inline code is left alone).
MARKER = re.compile(
    r"^[ \t]*<!--[ \t]*oneroof:(?P<kind>[a-z-]+)(?P<arg>(?:[ \t]+[A-Za-z0-9_-]+)*)[ \t]*-->[ \t]*$", re.MULTILINE
)
WIDTH = 100  # usage lines are wrapped at this width, whatever the terminal of the build

# -- imports ----------------------------------------------------------------------------------


def _import(name: str) -> Any:
    """Module `name` of this checkout (see _serve_checkout_as_oneroof)."""
    _serve_checkout_as_oneroof()
    try:
        return importlib.import_module(name)
    except ImportError as exc:
        raise PluginError(f"oneroof docs: cannot import {name}: {exc}") from exc


def _serve_checkout_as_oneroof() -> None:
    """Map `oneroof.<folder>` to this checkout's folders (core/, executor/, ...), as the package's
    own mapping does, unless `oneroof` is already imported: so the pages document this checkout
    even when an editable install of another checkout answers for `oneroof`.
    """
    if "oneroof" in sys.modules:
        return
    namespace = types.ModuleType("oneroof")
    namespace.__path__ = [str(ROOT)]
    sys.modules["oneroof"] = namespace


def cli() -> Any:
    """This checkout's command-line module (with `main` and `build_parser`)."""
    return _import("oneroof.executor.cli")


def build_parser() -> argparse.ArgumentParser:
    """The top-level parser of `oneroof`, from this checkout."""
    parser: argparse.ArgumentParser = cli().build_parser()
    return parser


def settings() -> list[tuple[str, str, str, str, str, str]]:
    """(attr, flag, ini, env, default, help) of each setting of the settings table."""
    rows = [(s.attr, s.flag, s.ini, s.env, s.default, s.help) for s in _import("oneroof.core.settings").SETTINGS]
    if not rows:
        raise PluginError("oneroof docs: the settings table is empty")
    return rows


def exit_codes() -> list[tuple[int, str, str]]:
    """(code, name, meaning) of each exit code, from ExitCode and EXIT_MEANINGS."""
    errors = _import("oneroof.harness.errors")
    codes, meanings = errors.ExitCode, errors.EXIT_MEANINGS
    missing = [code.name for code in codes if code not in meanings]
    if missing:
        raise PluginError(f"oneroof docs: EXIT_MEANINGS lacks {', '.join(missing)}")
    return [(int(code), code.name, str(meanings[code])) for code in codes]


# -- walking the parser -------------------------------------------------------------------------


def subcommands(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    """The subparsers of `parser`, in the order they were added (empty if it has none)."""
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            return dict(action.choices)
    return {}


def commands(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    """Every top-level command of `oneroof`."""
    found = subcommands(parser)
    if not found:
        raise PluginError("oneroof docs: the parser has no subcommands")
    return found


def find(parser: argparse.ArgumentParser, path: Sequence[str]) -> argparse.ArgumentParser:
    """The parser of `oneroof PATH...`; a PluginError when the parser lacks that command."""
    current = parser
    for i, word in enumerate(path):
        choices = subcommands(current)
        if word not in choices:
            known = ", ".join(choices) or "none"
            raise PluginError(
                f"oneroof docs: `oneroof {' '.join(path[: i + 1])}` is not a command of the parser "
                f"(the commands there: {known})"
            )
        current = choices[word]
    return current


def _help_lines(parser: argparse.ArgumentParser) -> dict[str, str]:
    """The one-line help of each subcommand, as given to add_parser(help=...)."""
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            return {choice.dest: choice.help or "" for choice in action._choices_actions}
    return {}


@contextlib.contextmanager
def _columns(width: int) -> Iterator[None]:
    saved = os.environ.get("COLUMNS")
    os.environ["COLUMNS"] = str(width)
    try:
        yield
    finally:
        if saved is None:
            del os.environ["COLUMNS"]
        else:
            os.environ["COLUMNS"] = saved


def _plain(value: str) -> str:
    """A default as the reader's checkout has it: paths inside the checkout relative to it."""
    root = str(ROOT)
    if value == root:
        return "."
    if value.startswith(root + os.sep):
        return value[len(root) + 1 :] + ("/" if Path(value).is_dir() else "")
    return value


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def _code(text: str) -> str:
    """Inline code that survives a table cell: backslash-escaped pipes render as pipes."""
    return f"`{_cell(text)}`"


def usage(parser: argparse.ArgumentParser) -> str:
    """The usage line of `parser`, without its `usage:` prefix."""
    with _columns(WIDTH):
        text = parser.format_usage()
    return re.sub(r"^usage:\s*", "", text.strip())


def _expand(parser: argparse.ArgumentParser, action: argparse.Action) -> str:
    if not action.help or action.help == argparse.SUPPRESS:
        return ""
    with _columns(WIDTH):
        formatter = parser._get_formatter()
    return " ".join(formatter._expand_help(action).split())


def _default(action: argparse.Action) -> str:
    if action.required or action.default in (None, False, argparse.SUPPRESS) or action.nargs == 0:
        return ""
    if isinstance(action.default, (list, tuple)) and not action.default:
        return ""
    return _code(_plain(str(action.default)))


def option_rows(parser: argparse.ArgumentParser) -> list[str]:
    """One Markdown table row per option and positional of `parser`: name, default, help."""
    rows = []
    for action in parser._actions:
        if isinstance(action, (argparse._HelpAction, argparse._SubParsersAction)):
            continue
        if action.help == argparse.SUPPRESS:
            continue
        if action.option_strings:
            metavar = ""
            if action.nargs != 0:
                metavar = " " + (action.metavar if isinstance(action.metavar, str) else action.dest.upper())
            name = ", ".join(f"{flag}{metavar}" for flag in action.option_strings)
        else:
            name = action.metavar if isinstance(action.metavar, str) else action.dest
        notes = []
        if action.choices is not None and not isinstance(action, argparse._SubParsersAction):
            notes.append("one of " + ", ".join(_code(str(c)) for c in action.choices))
        if action.required and action.option_strings:
            notes.append("required")
        if not action.option_strings and action.nargs == "?":
            notes.append("optional")
        text = _cell(_expand(parser, action))
        if notes:
            text = f"{text} ({'; '.join(notes)})" if text else "; ".join(notes)
        rows.append(f"| {_code(name)} | {_default(action)} | {text} |")
    return rows


def render_synopsis(root: argparse.ArgumentParser, path: Sequence[str], level: int = 2) -> str:
    """`## Synopsis` of `oneroof PATH`: its usage, its nested subcommands' usages, its --help text."""
    parser = find(root, path)
    out = [f"{'#' * level} Synopsis", "", "```text", usage(parser)]
    nested = subcommands(parser)
    for sub in nested.values():
        out.append(usage(sub))
    out += ["```", ""]
    if parser.description:
        out += [f"From `oneroof {' '.join(path)} --help`:", "", f"> {' '.join(parser.description.split())}", ""]
    if nested:
        helps = _help_lines(parser)
        out += ["| subcommand | does |", "|---|---|"]
        out += [f"| `oneroof {' '.join(path)} {name}` | {_cell(helps.get(name, ''))} |" for name in nested]
        out.append("")
    return "\n".join(out)


def render_options(root: argparse.ArgumentParser, path: Sequence[str], level: int = 2) -> str:
    """`## Options` of `oneroof PATH`, then a section per nested subcommand."""
    parser = find(root, path)
    out = [f"{'#' * level} Options", ""]
    rows = option_rows(parser)
    if rows:
        out += ["| option | default | meaning |", "|---|---|---|", *rows, ""]
    else:
        out += ["None but `-h`, `--help`.", ""]
    out += [
        "`-h`, `--help` prints the same text, and `--debug` (before or after the command) shows a traceback "
        "with an error.",
        "",
    ]
    for name in subcommands(parser):
        out += [f"{'#' * (level + 1)} `oneroof {' '.join(path)} {name}`", ""]
        sub = find(root, [*path, name])
        if sub.description:
            out += [" ".join(sub.description.split()), ""]
        out += ["```text", usage(sub), "```", ""]
        rows = option_rows(sub)
        if rows:
            out += ["| option | default | meaning |", "|---|---|---|", *rows, ""]
        for deeper in subcommands(sub):
            out.append(render_options(root, [*path, name, deeper], level + 2))
    return "\n".join(out)


def render_commands(root: argparse.ArgumentParser) -> str:
    """The table of every command, each linking to its page."""
    helps = _help_lines(root)
    out = ["| command | does |", "|---|---|"]
    for name in commands(root):
        out.append(f"| [`oneroof {name}`]({name}.md) | {_cell(helps.get(name, ''))} |")
    return "\n".join(out) + "\n"


def render_settings() -> str:
    """The settings table: flag, environment variable, ini key, default, meaning."""
    out = ["| flag | environment | ini key | default | meaning |", "|---|---|---|---|---|"]
    for _attr, flag, ini, env, default, text in settings():
        shown = _code(_plain(default)) if default else "(none)"
        out.append(f"| `{flag}` | `{env}` | `{ini}` | {shown} | {_cell(text)} |")
    return "\n".join(out) + "\n"


def render_exit_codes() -> str:
    """The exit-code table: code, name, meaning."""
    out = ["| code | name | meaning |", "|---|---|---|"]
    out += [f"| {code} | `{name}` | {_cell(meaning)} |" for code, name, meaning in exit_codes()]
    return "\n".join(out) + "\n"


def render_glossary() -> str:
    """The report's terms (oneroof.executor.report.GLOSSARY) as a definition list of bullets."""
    terms = _import("oneroof.executor.report").GLOSSARY
    return "\n".join(f"- **{term}**: {text}" for term, text in terms) + "\n"


def render(markdown: str, where: str) -> str:
    """`markdown` with every oneroof marker replaced; `where` names the page in errors."""
    parser: argparse.ArgumentParser | None = None

    def replace(match: re.Match[str]) -> str:
        nonlocal parser
        kind, arg = match["kind"], match["arg"].split()
        if kind in ("synopsis", "options", "command", "commands") and parser is None:
            parser = build_parser()
        if kind in ("synopsis", "options", "command"):
            if not arg:
                raise PluginError(f"oneroof docs: {where}: `oneroof:{kind}` needs a command name")
            assert parser is not None
            if kind == "synopsis":
                return render_synopsis(parser, arg)
            if kind == "options":
                return render_options(parser, arg)
            return render_synopsis(parser, arg) + "\n" + render_options(parser, arg)
        if arg:
            raise PluginError(f"oneroof docs: {where}: `oneroof:{kind}` takes no argument")
        if kind == "commands":
            assert parser is not None
            return render_commands(parser)
        if kind == "settings":
            return render_settings()
        if kind == "exit-codes":
            return render_exit_codes()
        if kind == "glossary":
            return render_glossary()
        raise PluginError(f"oneroof docs: {where}: unknown marker `oneroof:{kind}`")

    return MARKER.sub(replace, markdown)


def documented(markdown: str) -> set[str]:
    """The commands whose synopsis a page renders (first word of each marker)."""
    return {
        m["arg"].split()[0]
        for m in MARKER.finditer(markdown)
        if m["kind"] in ("synopsis", "command") and m["arg"].split()
    }


def check_command_pages(docs_dir: Path) -> None:
    """Every command has its page commands/NAME.md with its markers, and every page there has one."""
    names = set(commands(build_parser()))
    pages = {p.stem: p for p in (docs_dir / "commands").glob("*.md") if p.stem != "index"}
    problems = []
    for name in sorted(names - set(pages)):
        problems.append(f"`oneroof {name}` has no page commands/{name}.md")
    for stem, page in sorted(pages.items()):
        text = page.read_text(encoding="utf-8")
        if stem not in names:
            problems.append(f"commands/{stem}.md documents `oneroof {stem}`, which the parser lacks")
            continue
        if stem not in documented(text):
            problems.append(f"commands/{stem}.md lacks <!-- oneroof:synopsis {stem} -->")
        elif f"oneroof:options {stem}" not in text and f"oneroof:command {stem}" not in text:
            problems.append(f"commands/{stem}.md lacks <!-- oneroof:options {stem} -->")
    if problems:
        raise PluginError("oneroof docs: " + "; ".join(problems))


# -- MkDocs events --------------------------------------------------------------------------------


def on_pre_build(config: Any) -> None:
    """MkDocs: fail the build when a command and its page do not match."""
    check_command_pages(Path(config["docs_dir"]))


def on_page_markdown(markdown: str, page: Any, config: Any, files: Any) -> str:
    """MkDocs: replace the oneroof markers of a page."""
    return render(markdown, page.file.src_uri)


if __name__ == "__main__":  # python3 docs/hooks.py [PAGE.md]: print a page as the build renders it
    if len(sys.argv) > 1:
        target = Path(sys.argv[1])
        print(render(target.read_text(encoding="utf-8"), str(target)))
    else:
        check_command_pages(ROOT / "docs")
        print(render_commands(build_parser()))
