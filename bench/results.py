"""Writes a run's figures into a page of docs/results/: the block between the page's markers,
under a header naming the date, the commit, the command and the machine (CPU, cores, memory,
operating system and kernel, PostgreSQL version, load), and the page's "Measured" line.

A page holds one or more blocks, each between `<!-- results:begin NAME -->` and
`<!-- results:end NAME -->` lines (NAME optional: the default block has none). Text outside the
blocks is commentary, which a run leaves byte for byte as it was.
"""

from __future__ import annotations

import datetime
import os
import platform
import re
import shlex
import subprocess
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from oneroof.harness.errors import OneroofError

ROOT = Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs" / "results"
MARKER = re.compile(r"^<!-- results:(?P<kind>begin|end)(?: (?P<name>[\w-]+))? -->$", re.MULTILINE)
# A line that starts as a marker does: one that MARKER does not match exactly is a typo, refused
# (prose may quote a marker inside backticks).
MENTION = re.compile(r"^[ \t]*<!--\s*results:.*$", re.MULTILINE)
MEASURED = re.compile(r"^- \*\*Measured:\*\* .*$", re.MULTILINE)
# Options whose value may hold a password: the command written on the page shows a placeholder.
SECRET_OPTIONS = ("--dsn", "--prod")


class MalformedPage(OneroofError):
    """A results page whose markers do not delimit its blocks unambiguously; it was not written."""


@dataclass(frozen=True)
class Block:
    name: str  # "" for the default block
    start: int  # offset just after the begin marker's line
    stop: int  # offset of the end marker's line


def blocks(text: str, where: str = "page") -> dict[str, Block]:
    """The page's blocks by name; MalformedPage unless every begin is closed by its own end, in order, once."""
    for line in MENTION.finditer(text):
        if not MARKER.fullmatch(line.group()):
            raise MalformedPage(f"{where}: a malformed results marker: {line.group()!r}")
    found: dict[str, Block] = {}
    opened: re.Match[str] | None = None
    for marker in MARKER.finditer(text):
        name = marker["name"] or ""
        if marker["kind"] == "begin":
            if opened is not None:
                raise MalformedPage(f"{where}: `{marker.group()}` inside the block `{opened.group()}` opened")
            if name in found:
                raise MalformedPage(f"{where}: two blocks named {name!r}: `{marker.group()}` again")
            opened = marker
        else:
            if opened is None or (opened["name"] or "") != name:
                raise MalformedPage(f"{where}: `{marker.group()}` closes no block of that name")
            found[name] = Block(name, min(opened.end() + 1, len(text)), marker.start())
            opened = None
    if opened is not None:
        raise MalformedPage(f"{where}: `{opened.group()}` is never closed")
    if not found:
        raise MalformedPage(f"{where}: no `<!-- results:begin -->` ... `<!-- results:end -->` block")
    return found


@dataclass(frozen=True)
class Checkout:
    commit: str  # 12 hex digits
    dirty: bool  # tracked files differ from the commit


def checkout(root: Path = ROOT) -> Checkout:
    """The commit of the checkout at `root`, and whether its tracked files have uncommitted changes."""

    def git(*args: str) -> str:
        return subprocess.run(["git", *args], cwd=root, capture_output=True, text=True, check=True).stdout

    return Checkout(git("rev-parse", "HEAD").strip()[:12], bool(git("status", "--porcelain", "--untracked-files=no")))


@dataclass(frozen=True)
class Machine:
    """What ran the benchmark, in words that name no host, user or path."""

    cpu: str
    cores: int
    memory_gb: float
    system: str  # the operating system and its kernel
    postgres: str  # the server's version, or "" when the run did not read one
    load: float  # the one-minute load average when the run started (others' work on a shared machine)

    def describe(self) -> str:
        """One line: `Intel Xeon ..., 2 cores, 7.8 GB memory, Ubuntu 24.04 (Linux 6.8.0), PostgreSQL 18.1, ...`."""
        postgres = f"PostgreSQL {self.postgres}" if self.postgres else "no PostgreSQL version read"
        return (
            f"{self.cpu}, {self.cores} cores, {self.memory_gb:.1f} GB memory, {self.system}, {postgres}; "
            f"load average {self.load:.1f} at the start"
        )


def _first(path: str, key: str) -> str:
    """The value of the first `key: value` (or `KEY=value`) line of a /proc or /etc file, or ""."""
    try:
        lines = Path(path).read_text(encoding="utf-8", errors="replace").splitlines()
    except OSError:
        return ""
    for line in lines:
        name, sep, value = line.partition(":" if ":" in line else "=")
        if sep and name.strip() == key:
            return value.strip().strip('"')
    return ""


def machine(postgres: str = "") -> Machine:
    """This machine, now; `postgres` is the version of the server the run measured."""
    cpu = _first("/proc/cpuinfo", "model name") or platform.processor() or platform.machine()
    memory_kb = _first("/proc/meminfo", "MemTotal").split()[:1]
    distro = _first("/etc/os-release", "PRETTY_NAME")
    kernel = f"{platform.system()} {platform.release()}"
    return Machine(
        cpu=" ".join(cpu.split()),
        cores=os.cpu_count() or 0,
        memory_gb=int(memory_kb[0]) / 1024**2 if memory_kb else 0.0,
        system=f"{distro} ({kernel})" if distro else kernel,
        postgres=postgres,
        load=os.getloadavg()[0],
    )


def measured(day: datetime.date, where: Checkout) -> str:
    changes = " (with uncommitted changes)" if where.dirty else ""
    return f"{day.isoformat()} on commit `{where.commit}`{changes}"


def command_line(script: str, argv: Sequence[str]) -> str:
    """`python bench/SCRIPT ARGS` as typed, each secret option's value replaced by a placeholder."""
    shown: list[str] = []
    hide = False
    for arg in argv:
        option = arg.split("=", 1)[0]
        if hide:
            shown.append("ADMIN_DSN")
        elif option in SECRET_OPTIONS and "=" in arg:
            shown.append(f"{option}=ADMIN_DSN")
        else:
            shown.append(arg)
        hide = not hide and arg in SECRET_OPTIONS
    return shlex.join(["python", f"bench/{script}", *shown])


def write(
    page: Path,
    body: str,
    command: str,
    *,
    name: str = "",
    day: datetime.date | None = None,
    where: Checkout | None = None,
    host: Machine | None = None,
) -> None:
    """Replace the block `name` of `page` with a header (date, commit, `command`, the machine:
    `host`, else this one without a PostgreSQL version) and `body`, and the page's
    "- **Measured:**" line above the blocks with the same date and commit.
    """
    text = page.read_text(encoding="utf-8")
    found = blocks(text, str(page))
    if name not in found:
        raise MalformedPage(f"{page}: no block named {name!r}; it has {sorted(found)}")
    when = measured(day or datetime.date.today(), where or checkout())
    block = found[name]
    on = (host or machine()).describe()
    content = f"\nMeasured on {when} with `{command}`, on {on}:\n\n{body.strip()}\n\n"
    text = text[: block.start] + content + text[block.stop :]
    first = min(b.start for b in found.values())
    lines = [m for m in MEASURED.finditer(text) if m.start() < first]
    if len(lines) > 1:
        raise MalformedPage(f"{page}: {len(lines)} '- **Measured:**' lines above the blocks; one is written")
    if lines:
        text = text[: lines[0].start()] + f"- **Measured:** {when}." + text[lines[0].end() :]
    replace(page, text)


def publish(lines: Sequence[str], page: str, script: str, argv: Sequence[str], *, write_docs: bool) -> None:
    """Print a script's figures; with `write_docs`, also write them into docs/results/`page`."""
    print("\n".join(lines))
    if write_docs:
        write(DOCS / page, "\n".join(lines), command_line(script, argv))
        print(f"wrote {DOCS / page}")


def replace(page: Path, text: str) -> None:
    """Write `text` to `page` atomically: a reader sees the old page or the new one, never half."""
    fd, temp = tempfile.mkstemp(prefix=f".{page.name}.", dir=page.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as out:
            out.write(text)
        os.chmod(temp, page.stat().st_mode & 0o777)
        os.replace(temp, page)
    except BaseException:
        Path(temp).unlink(missing_ok=True)
        raise
