"""The kill matrix: what the invariant suite can see, proven one crafted violation at a time.

Each violation is put on a fresh clone (of the golden database, of an approved clone, or of a
finalized clone), the stage that should see it runs as a real pytest session, and its JUnit XML
must show exactly the expected invariant ids failing and every other one passing; the failure
messages must name the collection, the tier and the value. A last test runs each stage on an
untouched clone (everything passes) and requires every invariant id to be killed by some
violation. No violation bypasses a constraint: each is an ordinary statement a role with write
rights could run. The violations themselves are data, in tests/support/kill_matrix.py.
"""

from __future__ import annotations

import os
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import psycopg
import pytest
from psycopg import sql

from oneroof.core import gate, package, signatures
from oneroof.executor import release
from oneroof.harness import clones
from oneroof.harness.db import connect
from tests.support.kill_matrix import CONTROLS, PKG, VIOLATIONS, Violation
from tests.support.processes import run_suite
from tests.support.testing import PgServer, signers

pytestmark = pytest.mark.proof
STAGE_TIMEOUT = 300


# -- running a stage on a clone ----------------------------------------------------------------


@dataclass(frozen=True)
class Outcome:
    status: str  # passed / failed / skipped
    message: str


def run_stage(dsn: str, stage: str, expect_db: str, junit: Path, package_dir: Path = PKG.path) -> dict[str, Outcome]:
    """The stage as a real pytest session, as `oneroof verify` runs it (`release.run_stage`: the
    executor's slim session, whatever makes that cheaper makes the matrix cheaper); its JUnit XML,
    by test name. A package that does not verify is the one exception: an executor's session
    refuses it before any test runs (a usage error, no JUnit), so the auditor's plain session
    shows which invariant ids see it.
    """
    if package_dir == PKG.path:
        release.run_stage(
            dsn,
            stage,
            expect_db=expect_db,
            package_dir=package_dir,
            extra=("--junitxml", str(junit)),
            # the tests' trust root, as an auditor's reviewed file
            allowed_signers=signers().trust.path,
        )
    else:
        env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTEST_", "ONEROOF_"))}
        env[signatures.ENV] = str(signers().trust.path)
        options = ("-m", stage, "--package", str(package_dir), "-q", "--junitxml", str(junit))
        run_suite(dsn, *options, expect_db=expect_db, env=env, timeout=STAGE_TIMEOUT)
    outcomes = {}
    for case in ET.parse(junit).getroot().iter("testcase"):
        bad = [c for c in case if c.tag in ("failure", "error")]
        skipped = [c for c in case if c.tag == "skipped"]
        status = "failed" if bad else "skipped" if skipped else "passed"
        text = " ".join((c.get("message") or "") + " " + (c.text or "") for c in bad)
        outcomes[case.get("name", "")] = Outcome(status, text)
    return outcomes


@pytest.fixture
def fresh(test_server: PgServer, worker_id: str) -> Iterator[object]:
    """A clone of the golden database in a starting state: greenfield; approved (a signed L4
    approval, which names this clone); or finalized (approved, then rolled out).
    """
    made: list[clones.Clone] = []

    def create(state: str) -> clones.Clone:
        clone = clones.create(
            test_server.admin,
            source=test_server.golden,
            name=clones.default_name(f"{test_server.prefix}_{worker_id}_km"),
            wait=60,
        )
        made.append(clone)
        if state in ("approved", "finalized"):
            with connect(clone.dsn, autocommit=True) as conn:
                signers().approve(conn, "l4")
        if state == "finalized":
            release.rollout(
                clone.dsn, PKG, confirm_db=clone.name, gate_session=False, audit=False, trust=signers().trust
            )
        return clone

    yield create
    with connect(test_server.admin, autocommit=True) as admin:
        for clone in made:
            admin.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(clone.name)))


@pytest.mark.parametrize("violation", VIOLATIONS, ids=lambda x: x.name)
def test_violation_fails_exactly_its_invariants(violation: Violation, fresh: object, tmp_path: Path) -> None:
    clone = fresh(violation.state)  # type: ignore[operator]
    package_dir = PKG.path
    if violation.tamper_package:
        package_dir = package.bundle(PKG.path, tmp_path / "rollout").path
        target = package_dir / "tier4_axes.deploy.sql"
        target.write_text(target.read_text().replace("'domain'", "'region'"))
    with connect(clone.dsn, autocommit=True) as conn:
        for statement in violation.sql:
            conn.execute(statement.encode())
        lock = None
        if violation.hold_lock:
            lock = psycopg.connect(clone.dsn, autocommit=True)
            lock.execute("SELECT pg_advisory_lock(%s, %s)", gate.LOCK_KEY)
        try:
            outcomes = run_stage(
                clone.dsn, violation.stage, violation.expect_db or clone.name, tmp_path / "junit.xml", package_dir
            )
        finally:
            if lock is not None:
                lock.close()
    failed = {name for name, o in outcomes.items() if o.status == "failed"}
    assert failed == violation.fails, (
        f"{violation.name}: unexpected failures {sorted(failed - violation.fails)}, "
        f"missed {sorted(violation.fails - failed)}"
    )
    assert all(o.status == "passed" for name, o in outcomes.items() if name not in failed)
    messages = " ".join(outcomes[name].message for name in failed)
    for word in violation.says:
        assert word in messages, f"{violation.name}: no failure message names {word!r}"


def test_controls_pass_and_every_invariant_id_is_killed(
    fresh: object, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """On untouched clones every stage passes; every invariant id of every stage fails under at
    least one violation above. Prints the figures docs/results/kill-matrix.md reports.
    """
    killed_all = 0
    total = 0
    for stage, state in CONTROLS.items():
        clone = fresh(state)  # type: ignore[operator]
        outcomes = run_stage(clone.dsn, stage, clone.name, tmp_path / f"{stage}.xml")
        assert outcomes and all(o.status == "passed" for o in outcomes.values()), (
            stage,
            [n for n, o in outcomes.items() if o.status != "passed"],
        )
        killed = set().union(*(x.fails for x in VIOLATIONS if x.stage == stage))
        alive = sorted(set(outcomes) - killed)
        assert not alive, f"{stage}: invariant ids no violation kills: {alive}"
        killed_all += len(set(outcomes) & killed)
        total += len(outcomes)
    families = sorted({x.family for x in VIOLATIONS})
    with capsys.disabled():
        print(
            f"\nkill matrix: {len(VIOLATIONS)} violations in {len(families)} families; "
            f"invariant ids killed {killed_all}/{total}"
        )
