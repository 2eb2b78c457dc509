"""Hostile names (issue 12, item 6): quotes, semicolons, backslashes, unicode and 63-byte names.

Collection names in the golden database's content are round-tripped through every command
that composes SQL: the golden build (as extra ungoverned collections of a test golden), a clone
of it, `verify`, `rehearse` (clone, rollout, rollback, the stages, drop), `report`, `probe`.
Each name must arrive byte for byte as a table and as a Directus collection, with its rows, and
nothing else may change. Database names (golden, clone) given on the command line must be
plain identifiers: anything else is refused with one line (exit 2) and creates nothing.

Each test records `hostile_inputs` and `got_through` (a name that was cut, changed, or ran as
SQL) as junitxml properties.
"""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path
from typing import Any

import pytest
from hypothesis import example, given
from hypothesis import strategies as st
from psycopg import sql

from oneroof.core import package
from oneroof.harness import catalog, clones, golden
from oneroof.harness.db import IDENTIFIER, connect
from oneroof.harness.errors import CloneError, UsageError
from tests.support.processes import clean_env, run_executor
from tests.support.testing import PgServer, database_settings

pytestmark = pytest.mark.proof
PKG = package.load()
HOSTILE = list("'\";\\$`%-. ()[]{}*/=\t\n?!#&|<>~^@,:+") + [
    "--",
    "/*",
    "*/",
    "$$",
    "$x$",
    "é",
    "ß",
    "İ",
    "Ω",
    "漢",
    "字",
    "🙂",
    "\u202e",
    "\u200b",
    "\ufeff",
]
FRAGMENTS = st.one_of(
    st.sampled_from(HOSTILE),
    st.characters(codec="utf-8", exclude_categories=("Cs",), exclude_characters="\x00"),
    st.sampled_from(["kh_tags", "DROP TABLE system_issues", "x", "a" * 20]),
)


def names_of(min_size: int, max_bytes: int) -> st.SearchStrategy[str]:
    """Names made of hostile fragments, at most `max_bytes` bytes of UTF-8."""
    return (
        st.lists(FRAGMENTS, min_size=min_size, max_size=24)
        .map("".join)
        .filter(lambda name: len(name.encode()) <= max_bytes)
    )


def _fits(name: str) -> bool:
    try:
        golden.check_collection_names((name,))
    except UsageError:
        return False
    return True


collection_names = st.lists(names_of(1, 63).filter(_fits), min_size=1, max_size=4, unique=True)
INJECTION = 'x"; DROP TABLE system_issues; --'
BYTES_63 = "é" * 31 + "x"  # 63 bytes, 32 characters
RECORD: dict[str, int] = {"hostile_inputs": 0, "got_through": 0}  # collection names, over all examples
DATABASE_NAMES: dict[str, int] = {"hostile_inputs": 0, "got_through": 0}


def cli(home: Path, *args: str, timeout: float = 600) -> subprocess.CompletedProcess[str]:
    return run_executor(*args, env=clean_env(ONEROOF_HOME=str(home)), timeout=timeout)


def in_process(home: Path) -> dict[str, str]:
    """The environment `cli` gives its process, for a command run in this one (oneroof_main)."""
    return {k: v for k, v in clean_env(ONEROOF_HOME=str(home)).items() if k.startswith("ONEROOF_")}


def contents(dsn: str, names: list[str]) -> dict[str, tuple[int, int, str]]:
    """Per name: (rows in the table of exactly that name, its Directus fields, its registered name)."""
    found = {}
    with connect(dsn) as conn:
        for name in names:
            rows = conn.execute(sql.SQL("SELECT count(*) AS n FROM {}").format(sql.Identifier(name))).fetchone()
            meta = conn.execute(
                "SELECT c.collection, (SELECT count(*) FROM directus_fields f WHERE f.collection = c.collection) AS n "
                "FROM directus_collections c WHERE c.collection = %s",
                (name,),
            ).fetchone()
            assert rows is not None and meta is not None, name
            found[name] = (int(rows["n"]), int(meta["n"]), str(meta["collection"]))
    return found


OTHER_RUNS = re.compile(r"oneroof_t_[0-9a-f]{6}_golden")  # tests/support/testing.py: run_prefix(run) + "_golden"
# A database that names its xdist worker (the `unique` fixture's oneroof_t_<run>_<worker>_<name>, such as
# tests/test_signatures.py's module clone; tests/test_snapshot.py's snapshot; tests/support/directus.py's
# oneroof_directus_<worker>_...; tests/support/production.py's oneroof_prod_<worker>_...).
WORKER = re.compile(r"(?:^|_)(gw[0-9]+|master)_")
HOSTILE_GOLDEN = "oneroof_t_hostile_"  # + the xdist worker: the round-trip test's golden database


def database_names(admin: str, worker_id: str) -> set[str]:
    """The server's databases but those other xdist workers make and drop meanwhile (golden
    builds in progress, clones of the golden database, the round-trip test's own golden databases,
    the golden databases of the nested test runs some tests start on this server, each named
    oneroof_t_<its run>_golden, and every database whose name carries another worker's id). This
    worker runs nothing else meanwhile, so a database of its own worker's name is still seen, as is
    every hostile name: what the commands could make or drop is still seen.
    """
    with connect(admin, autocommit=True) as conn:
        names = {r["datname"] for r in conn.execute("SELECT datname FROM pg_database").fetchall()}
    # _directus_bootstrapped: the run's one Directus bootstrap (tests/support/directus.py), made by
    # whichever worker needs it first, as <prefix>_directus_bootstrapped_part, then renamed
    others = ("__building_", "_clone_", "_directus_bootstrapped")
    return {
        n
        for n in names
        if not any(o in n for o in others)
        and not n.startswith(HOSTILE_GOLDEN)
        and not OTHER_RUNS.fullmatch(n)
        and not any(m.group(1) != worker_id for m in WORKER.finditer(n))
    }


@given(names=collection_names)
@example(names=[INJECTION, "a'b\\c", BYTES_63])
@example(names=["a" * 63, "MixedCase", "semi;colon", "$$; SELECT 1; $$", "\u202eevil"])
@example(names=["'''''", "%"])  # found by hypothesis: a '%' in a name was read as a placeholder
@database_settings(0.5)
def test_hostile_collection_names_round_trip(
    names: list[str], test_server: PgServer, tmp_path_factory: Any, worker_id: str, figure: Any, oneroof_main: Any
) -> None:
    home = tmp_path_factory.mktemp("home")
    name = f"{HOSTILE_GOLDEN}{worker_id}"
    RECORD["hostile_inputs"] += len(names)
    figure("hostile_inputs", RECORD["hostile_inputs"])
    golden.build(test_server.admin, name=name, package_sha256=PKG.sha256, replace=True, extra_collections=tuple(names))
    try:
        built = contents(test_server.dsn(name), names)
        expected = {n: (built[n][0], len(golden.CONTENT_FIELDS), n) for n in names}
        if built != expected or any(rows < 1 for rows, _, _ in built.values()):
            RECORD["got_through"] += 1
        assert built == expected

        verify = cli(home, "verify", "--stage", "baseline", "--dsn", test_server.dsn(name), "--expect-db", name)
        assert verify.returncode == 0, verify.stdout[-2000:] + verify.stderr

        # The names' way into SQL is the subject, not the process: report and probe run in this one.
        # verify's pytest output is a process's; rehearse stays a process too (a stage-session worker
        # it started in this one was reused by later rehearsals here, whose sessions then skipped
        # every invariant for want of a target).
        runs = home / "runs"
        rehearse = cli(home, "rehearse", "--dsn", test_server.admin, "--golden", name, "--runs-dir", str(runs))
        assert rehearse.returncode == 0, rehearse.stdout[-3000:] + rehearse.stderr[-3000:]
        (run,) = [p for p in runs.iterdir() if (p / "evidence.json").exists()]
        report = oneroof_main("report", "--run", str(run), "--format", "json", env=in_process(home))
        assert report.returncode == 0, report.stderr
        assert json.loads(report.stdout)["verdict"]["release_readiness"].startswith("GO"), report.stdout

        made = clones.create(test_server.admin, source=name, name=clones.default_name(f"t_h_{worker_id}"), wait=60)
        try:
            assert contents(made.dsn, names) == built
            probe = oneroof_main("probe", "--json", "--dsn", made.dsn, env=in_process(home))
            assert probe.returncode == 0 and json.loads(probe.stdout)["fingerprint"]["equal"], probe.stderr
        finally:
            clones.drop(test_server.admin, made.name)
        with connect(test_server.dsn(name)) as conn:
            row = conn.execute("SELECT count(*) AS n FROM system_issues").fetchone()
        assert row == {"n": catalog.SYSTEM_ISSUES_PER_SCALE}
    finally:
        figure("got_through", RECORD["got_through"])
        with connect(test_server.admin, autocommit=True) as admin:
            admin.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))


database_name_inputs = st.one_of(names_of(0, 70), st.from_regex(IDENTIFIER, fullmatch=True))


@given(name=database_name_inputs)
@example(name=INJECTION)
@example(name="x; DROP DATABASE postgres")
@example(name="")  # once taken for "no name": a default-named clone was made
@example(name="_" + "a" * 62)
@example(name="a" * 64)
@database_settings(4)
def test_hostile_clone_names_are_refused_or_kept_exactly(
    name: str, test_server: PgServer, figure: Any, worker_id: str
) -> None:
    DATABASE_NAMES["hostile_inputs"] += 1
    figure("hostile_inputs", DATABASE_NAMES["hostile_inputs"])
    figure("got_through", DATABASE_NAMES["got_through"])
    before = database_names(test_server.admin, worker_id)
    if not IDENTIFIER.match(name):
        with pytest.raises(UsageError, match="is not a valid identifier"):
            clones.create(test_server.admin, source=test_server.golden, name=name)
    elif name in before:
        with pytest.raises(CloneError, match="already exists"):
            clones.create(test_server.admin, source=test_server.golden, name=name)
    else:
        made = clones.create(test_server.admin, source=test_server.golden, name=name, wait=60)
        try:
            assert made.name == name
            assert name in [c.name for c in clones.list_clones(test_server.admin)]
        finally:
            clones.drop(test_server.admin, name)
        with pytest.raises(UsageError, match="is not a valid identifier"):
            golden.build(test_server.admin, name=name + ";", package_sha256=PKG.sha256)
    if database_names(test_server.admin, worker_id) != before:
        DATABASE_NAMES["got_through"] += 1
        figure("got_through", DATABASE_NAMES["got_through"])
    assert database_names(test_server.admin, worker_id) == before


@pytest.mark.parametrize("name", [INJECTION, "x; DROP DATABASE postgres", "Upper", "a" * 64, "é"])
def test_the_command_line_refuses_a_hostile_database_name_in_one_line(
    name: str, test_server: PgServer, tmp_path: Path, worker_id: str
) -> None:
    before = database_names(test_server.admin, worker_id)
    for args in (
        ("clone", "create", "--from", test_server.golden, "--name", name),
        ("clone", "create", "--from", name),
        ("golden", "build", "--name", name),
        ("clone", "drop", name),
    ):
        result = cli(tmp_path, *args, "--dsn", test_server.admin)
        assert result.returncode == 2, (args, result.stdout, result.stderr)
        assert len(result.stderr.strip().splitlines()) == 1 and "Traceback" not in result.stderr, result.stderr
        assert "is not a valid identifier" in result.stderr, result.stderr
    assert database_names(test_server.admin, worker_id) == before


@pytest.mark.parametrize("name", ["", "a" * 64, "é" * 32, "kh_tags", "directus_users", "os_mine", "system_issues"])
def test_the_golden_builder_refuses_a_collection_name_it_cannot_keep(
    name: str, test_server: PgServer, worker_id: str
) -> None:
    before = database_names(test_server.admin, worker_id)
    with pytest.raises(UsageError, match="collection name"):
        golden.build(
            test_server.admin, name="oneroof_t_never_built", package_sha256=PKG.sha256, extra_collections=(name,)
        )
    assert database_names(test_server.admin, worker_id) == before
