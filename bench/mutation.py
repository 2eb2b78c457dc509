"""Mutation testing of the invariant suite and the gate: how many small changes to invariants/
and core/gate.py the tests kill.

    python bench/mutation.py run [--dsn ADMIN_DSN] [--minutes 45] [--write-docs]
    python bench/mutation.py report [--write-docs]                     # the last run's score again
    python bench/mutation.py survivors [--tests tests/test_x.py ...]   # re-judge the survivors

cosmic-ray mutates one place of the source at a time, on disk, and runs the test command below
(`check`) once per mutant: a mutant is killed when the check fails. The check is a targeted,
fast selection of the project's tests; it imports no test module, only tests/support:

- tests/test_gate_policy.py (every reason an approval does not count, no database) and
  tests/test_content.py (the amber snapshots read back), run by pytest in a process of their own,
  and the states of tests/test_gate.py (greenfield, finalized, mixed; tests/support/gate_states.py);
- the kill matrix (tests/support/kill_matrix.py): the four stages on untouched clones (everything
  passes) and a selection of its violations, each on a database prepared once before the run,
  each of which must fail exactly its expected invariant ids.

`run` prepares those databases, runs cosmic-ray (bounded by --minutes), prints the score and the
survivors, and drops the databases. With --write-docs, `run` and `report` write the score and the
survivors into docs/results/mutation.md. cosmic-ray comes from PyPI: `pip install cosmic-ray`.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
# The installed oneroof.* needs no path; the checkout's root is here for tests.support (the kill
# matrix's violations, the gate's states, the tests' signers), which no install carries.
sys.path.insert(0, str(ROOT))

MUTATED = [
    "core/gate.py",
    "core/content.py",
    "invariants/test_finalized.py",
    "invariants/test_greenfield.py",
    "invariants/conftest.py",
    "invariants/test_baseline.py",
    "invariants/test_gate.py",
    "core/metrics.py",
]
# cosmic-ray's operators, but for the variants that mostly duplicate another: `==` and `!=` are
# only negated (not turned into <, <=, >, >=, is, is not). `|` is left alone: in these files it
# is almost only in type annotations, which `from __future__ import annotations` never evaluates
# (every such mutant is equivalent).
EXCLUDED_OPERATORS = [
    "core/ReplaceComparisonOperator_Eq_(Lt|LtE|Gt|GtE|Is|IsNot)$",
    "core/ReplaceComparisonOperator_NotEq_(Lt|LtE|Gt|GtE|Is|IsNot)$",
    "core/ReplaceBinaryOperator_BitOr_.*",
    "core/ReplaceBinaryOperator_(Add|Sub|Mul|Div|FloorDiv|Mod|Pow)_(?!Add$|Sub$).*",
]
# The kill-matrix violations the check replays (the whole matrix stays in tests/, run by CI).
SELECTED = [
    "gate-approval-revoked",
    "gate-proposal-withdrawn",
    "gate-mixed-state",
    "gate-wrong-database",
    "gate-lock-held",
    "gate-package-tampered",
    "owner-inactive",
    "approval-revoked-after-finalization",
    "axis-value-changed",
    "collection-added-to-inventory",
    "ledger-row-missing",
    "wrong-database",
    "leftover-inactive-owner",
    "leftover-field",
    "baseline-approval-recorded",
    "baseline-wrong-database",
    "gate-proposal-names-another-package",
    "ledger-row-altered",
    "gate-not-rehearsed",
]
# The database-free tests each mutant runs first, by pytest node id.
REPLAYED = [
    "tests/test_gate_policy.py",
    "tests/test_content.py::test_the_reader_takes_only_what_it_knows",
    "tests/test_content.py::test_snapshot_entries_read_back_what_syrupy_wrote",
]
# The controls first: a mutant that breaks an invariant usually fails an untouched database.
CONTROL_ORDER = ("finalized", "greenfield", "gate", "baseline")
STATE = Path(tempfile.gettempdir()) / "oneroof-mutation"


def prepare(admin: str) -> list[dict[str, Any]]:
    """Build a golden database and one database per control and selected violation."""
    from oneroof.core import package
    from oneroof.executor import release
    from oneroof.harness import clones, golden
    from oneroof.harness.db import connect
    from tests.support.kill_matrix import CONTROLS, VIOLATIONS
    from tests.support.testing import signers

    pkg = package.load()
    cleanup(admin, [f"mut_{i:02d}" for i in range(len(SELECTED) + len(CONTROL_ORDER) + 1)])
    golden.build(admin, name="mut_golden", package_sha256=pkg.sha256, replace=True)

    def fresh(state: str, name: str) -> clones.Clone:
        """A clone in a starting state, as the kill matrix makes one: a signed L4 approval names
        this clone's database, so each approved or finalized clone is approved (and rolled out) itself.
        """
        made = clones.create(admin, source="mut_golden", name=name, wait=60)
        if state in ("approved", "approved twice", "finalized"):
            with connect(made.dsn, autocommit=True) as conn:
                signers().approve(conn, "l4")
                if state == "approved twice":
                    signers().approve(conn, "l2")
        if state == "finalized":
            release.rollout(made.dsn, pkg, confirm_db=made.name, gate_session=False, audit=False, trust=signers().trust)
        return made

    # The tests' trust root outlives this process (signers() removes its keys at exit): the check
    # of every mutant verifies the approvals' statements against it, as an auditor's reviewed file.
    shutil.copyfile(signers().trust.path, STATE / "allowed_signers")
    tampered = STATE / "tampered"
    shutil.rmtree(tampered, ignore_errors=True)
    package.bundle(pkg.path, tampered)
    (tampered / "tier4_axes.deploy.sql").write_text(
        (tampered / "tier4_axes.deploy.sql").read_text().replace("'domain'", "'region'")
    )
    entries: list[dict[str, Any]] = []
    by_name = {v.name: v for v in VIOLATIONS}
    plan = [(f"control-{stage}", CONTROLS[stage], stage, (), [], None, False, False, ()) for stage in CONTROL_ORDER]
    # two valid approvals open the gate as one does (tests/test_gate.py, "two valid humans")
    plan += [("control-gate-approved-twice", "approved twice", "gate", (), [], None, False, False, ())]
    plan += [
        (
            n,
            by_name[n].state,
            by_name[n].stage,
            by_name[n].sql,
            sorted(by_name[n].fails),
            by_name[n].expect_db,
            by_name[n].hold_lock,
            by_name[n].tamper_package,
            by_name[n].says,
        )
        for n in SELECTED
    ]
    for index, (name, state, stage, statements, fails, expect_db, hold_lock, tamper, says) in enumerate(plan):
        made = fresh(state, f"mut_{index:02d}")
        with connect(made.dsn, autocommit=True) as conn:
            for statement in statements:
                conn.execute(statement.encode())
        entries.append(
            {
                "name": name,
                "dsn": made.dsn,
                "db": made.name,
                "stage": stage,
                "fails": fails,
                "expect_db": expect_db or made.name,
                "hold_lock": hold_lock,
                "says": list(says),
                "package": str(tampered if tamper else pkg.path),
            }
        )
    (STATE / "prepared.json").write_text(json.dumps(entries, indent=1))
    return entries


def gate_package() -> Any:
    from oneroof.core import package

    return package.load()


def check() -> int:
    """The test command of each mutant: 0 when every selected test holds, 1 at the first that does not."""
    import psycopg
    import pytest

    from oneroof.core import gate, signatures

    # The database-free tests run as themselves, through pytest in a process of their own: any
    # failure (a non-zero exit) kills the mutant.
    replay = subprocess.run(
        [sys.executable, "-B", "-m", "pytest", "-p", "no:xdist", "-q", "--no-header", *REPLAYED],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=False,
    )
    if replay.returncode != 0:
        last = replay.stdout.strip().splitlines()[-1:] or replay.stderr.strip().splitlines()[-1:]
        print(f"killed by tests/test_gate_policy.py or tests/test_content.py: exit {replay.returncode}, {last}")
        return 1
    prepared = json.loads((STATE / "prepared.json").read_text())
    by_name = {e["name"]: e for e in prepared}
    os.environ[signatures.ENV] = str(STATE / "allowed_signers")
    from oneroof.harness.db import connect, consistent_read

    states = {
        "control-greenfield": "greenfield",
        "control-finalized": "finalized",
        "gate-mixed-state": "mixed",
        "owner-inactive": "mixed",
        "leftover-inactive-owner": "mixed",
    }
    for name, want in states.items():
        with connect(by_name[name]["dsn"]) as conn, consistent_read(conn):
            if gate.state(conn) != want:
                print(f"killed by gate.state on {name}")
                return 1
    for name, finalized in (("control-greenfield", False), ("control-finalized", True)):
        with connect(by_name[name]["dsn"]) as conn, consistent_read(conn):  # tests/test_gate.py: finalized is a note
            notes = [n for n in gate.evaluate(conn, gate_package(), confirm_db=None).notes if n.startswith("state=")]
        if notes != (["state=finalized: tiers 2-6 are already applied"] if finalized else []):
            print(f"killed by tests/test_gate.py::test_finalized_is_a_note_not_a_reason: {notes}")
            return 1
    with connect(by_name["control-gate"]["dsn"]) as conn:  # an approved marked clone
        from oneroof.core import evidence as rehearsal
        from oneroof.core import signatures
        from tests.support.testing import bound_evidence

        pkg = gate_package()
        trust = signatures.TrustRoot.load(STATE / "allowed_signers")
        evidence = rehearsal.from_evidence({"steps": [], "package": {}}, "/evidence.json", "0" * 64)
        with consistent_read(conn):
            plain = gate.evaluate(conn, pkg, confirm_db=None, trust=trust)
            given = gate.evaluate(conn, pkg, confirm_db=None, trust=trust, rehearsal=evidence)
            proposal = conn.execute("SELECT id FROM os_proposals WHERE code = %s", (pkg.proposal,)).fetchone()
        note = "rehearsed: not required on a marked clone (the rehearsal evidence was not compared)"
        if (
            plain.allowed_signers_sha256 != trust.sha256
            or plain.proposal_id != proposal["id"]
            or note in plain.notes
            or note not in given.notes
            or given.rehearsal_sha256 is not None
        ):
            print("killed by tests/test_signatures.py / tests/test_rehearsed.py: what the verdict records")
            return 1
    with connect(by_name["gate-not-rehearsed"]["dsn"]) as conn, consistent_read(conn):  # no clone mark: production
        # tests/test_rehearsed.py: evidence that binds this database opens `rehearsed`, and the verdict names it
        evidence = rehearsal.load(bound_evidence(by_name["gate-not-rehearsed"]["dsn"], STATE))
        bound = gate.evaluate(conn, pkg, confirm_db=None, trust=trust, rehearsal=evidence)
    if "rehearsed" in bound.reasons or bound.rehearsal_sha256 != evidence.sha256:
        print(f"killed by tests/test_rehearsed.py: {bound.reasons.get('rehearsed')}, {bound.rehearsal_sha256}")
        return 1
    with connect(by_name["control-gate"]["dsn"]) as conn:
        conn.execute("SET LOCAL default_transaction_read_only = on")  # tests/test_release.py: refused up front
        unwritable = gate.read_only_target(conn)
        alone = gate.evaluate(conn, pkg, confirm_db=None, trust=trust).reasons.get("target")
        both = gate.evaluate(conn, pkg, confirm_db="directus", trust=trust).reasons.get("target")
        conn.rollback()
        if (
            not unwritable
            or "read-only by default" not in unwritable
            or gate.read_only_target(conn) is not None
            or alone != unwritable
            or both
            != f"connected to {conn.info.dbname!r}, but the operator named 'directus' (--confirm-db); {unwritable}"
        ):
            print(f"killed by tests/test_release.py (a read-only target): {unwritable}; {alone}; {both}")
            return 1
        conn.rollback()
    from tests.support.gate_states import STATES, state_after
    from tests.support.processes import suite_args

    with connect(by_name["control-greenfield"]["dsn"]) as conn:
        for case in STATES:  # tests/test_gate.py::test_state_is_greenfield_finalized_or_mixed
            if state_after(conn, case) != case.split(":")[0]:
                print(f"killed by tests/test_gate.py::test_state_is_greenfield_finalized_or_mixed[{case}]")
                return 1
        # tests/test_signatures.py: a role that may not call pg_control_system() reads no cluster
        conn.execute("REVOKE EXECUTE ON FUNCTION pg_catalog.pg_control_system() FROM PUBLIC")
        conn.execute("CREATE ROLE mut_unprivileged")
        conn.execute("SET LOCAL ROLE mut_unprivileged")
        try:
            unread = gate.system_identifier(conn)
        except psycopg.Error as exc:
            unread = repr(exc)
        conn.rollback()
        if unread is not None or gate.system_identifier(conn) is None:
            print(f"killed by tests/test_signatures.py (an unreadable system_identifier): {unread}")
            return 1
        conn.rollback()
    junit = STATE / f"check-{os.getpid()}.xml"  # one per process: two checks never share it
    # every session: quiet, its results in `junit`; -W: this process imported syrupy before pytest could rewrite it
    common = ("-q", "--no-header", "-W", "ignore::pytest.PytestAssertRewriteWarning", "--junitxml", str(junit))
    for entry in prepared:
        lock = None
        if entry["hold_lock"]:
            lock = psycopg.connect(entry["dsn"], autocommit=True)
            lock.execute("SELECT pg_advisory_lock(%s, %s)", gate.LOCK_KEY)
        try:
            junit.unlink(missing_ok=True)
            stage = ("-m", entry["stage"], "--package", entry["package"], *common)
            code = pytest.main(suite_args(entry["dsn"], *stage, expect_db=entry["expect_db"]))
        finally:
            if lock is not None:
                lock.close()
        failed = set()
        cases = 0
        messages = ""
        if junit.exists():
            for case in ET.parse(junit).getroot().iter("testcase"):
                cases += 1
                bad = [c for c in case if c.tag in ("failure", "error")]
                if bad:
                    failed.add(case.get("name", ""))
                    messages += " ".join((c.get("message") or "") + " " + (c.text or "") for c in bad)
        if any(word not in messages for word in entry["says"]):
            print(f"killed by kill matrix {entry['name']}: a failure message no longer names {entry['says']}")
            return 1
        if not cases or failed != set(entry["fails"]) or code not in (0, 1) or (code == 0) != (not entry["fails"]):
            print(f"killed by kill matrix {entry['name']}: exit {code}, failed {sorted(failed)[:5]}")
            return 1
    # tests/test_release.py: a gate session skips ospa (a human's approval row), and only ospa
    recorded = by_name["baseline-approval-recorded"]
    gate_session = ("-m", "baseline", "-o", "oneroof_gate_session=true", "-rs", *common)
    code = pytest.main(suite_args(recorded["dsn"], *gate_session, expect_db=recorded["db"]))
    skipped = [c.get("name") for c in ET.parse(junit).getroot().iter("testcase") if c.find("skipped") is not None]
    if code != 0 or skipped != ["test_metric_matches_baseline[ospa]"]:
        print(f"killed by tests/test_release.py (the gate session's baseline): exit {code}, skipped {skipped}")
        return 1
    return check_content()


def check_content() -> int:
    """The rehearsal's content digests (tests/test_rehearse.py, too slow to replay whole): the
    release changed no content row, and a deleted system_issues row changes exactly that table;
    a clone's fingerprint is its golden's (tests/test_clones.py); the target checks' messages
    (tests/test_cli.py).
    """
    from oneroof.core import metrics, package
    from oneroof.executor import release
    from oneroof.harness.db import connect, with_dbname
    from oneroof.harness.errors import OneroofError

    prepared = {e["name"]: e for e in json.loads((STATE / "prepared.json").read_text())}
    digests = {}
    for name in ("control-greenfield", "control-finalized", "baseline-approval-recorded"):
        with connect(prepared[name]["dsn"]) as conn:
            digests[name] = metrics.read_content(conn)
    with connect(prepared["control-greenfield"]["dsn"]) as conn:
        conn.execute("DELETE FROM system_issues WHERE id = (SELECT max(id) FROM system_issues)")
        deleted = metrics.content_digests(conn)
        conn.rollback()
    changed = sorted(t for t in digests["control-greenfield"] if digests["control-greenfield"][t] != deleted.get(t))
    ok = (
        len(digests["control-greenfield"]) == 36
        and digests["control-greenfield"] == digests["control-finalized"] == digests["baseline-approval-recorded"]
        and changed == ["system_issues"]
    )
    if not ok:
        print("killed by the content digests")
        return 1
    with connect(prepared["control-finalized"]["dsn"]) as conn:  # tests/test_release.py: the figures it checks
        figures = metrics.read_some(conn, metrics.GOVERNANCE)
        conn.rollback()
    if figures != release.expected_figures(package.load(), "finalized"):
        print(f"killed by tests/test_release.py (the finalized figures): {figures}")
        return 1
    dsn = prepared["control-greenfield"]["dsn"]
    with connect(dsn) as clone, connect(with_dbname(dsn, "mut_golden")) as source:
        if metrics.read(clone).fingerprint != metrics.read(source).fingerprint:
            print("killed by tests/test_clones.py: a clone's fingerprint is not its golden's")
            return 1
    said = []
    with connect(with_dbname(dsn, "postgres")) as conn:
        try:
            metrics.check_target(conn)
        except OneroofError as exc:
            said.append(exc.message)
    with connect(dsn) as conn:
        for drop in (
            ("DROP VIEW os_governance_gap", "DROP TABLE os_idle_flags, os_gov_events"),
            ("DROP TABLE system_issues CASCADE",),
            ("DROP TABLE os_release_ledger, system_issues CASCADE",),
        ):
            for statement in drop:
                conn.execute(statement)
            try:
                metrics.check_target(conn)
            except OneroofError as exc:
                said.append(exc.message)
            conn.rollback()
    if not (
        len(said) == 4
        and "lacks the One-Roof tier-1 table os_release_ledger and 1 more; tier" in said[3]
        and said[0].startswith("database 'postgres' is not a Directus database (no directus_collections)")
        and "lacks the One-Roof tier-1 table os_gov_events and 2 more; tier 1 must be live" in said[1]
        and "lacks the One-Roof tier-1 table system_issues; tier 1 must be live" in said[2]
    ):
        print(f"killed by tests/test_cli.py (target messages): {said}")
        return 1
    return 0


def run(admin: str, minutes: float, write_docs: bool = False) -> int:
    """Prepare, run cosmic-ray over invariants/, core/gate.py, core/content.py and core/metrics.py, report, clean up."""
    STATE.mkdir(parents=True, exist_ok=True)
    originals = {name: (ROOT / name).read_bytes() for name in MUTATED}
    entries = prepare(admin)
    for folder in ("invariants", "executor", "tests"):
        shutil.rmtree(ROOT / folder / "__pycache__", ignore_errors=True)
    config = STATE / "cosmic-ray.toml"
    command = f"{sys.executable} -B {Path(__file__).resolve()} check"
    config.write_text(
        "[cosmic-ray]\n"
        f"module-path = {json.dumps(MUTATED)}\n"
        "timeout = 300.0\nexcluded-modules = []\n"
        f"test-command = {json.dumps(command)}\n\n"
        '[cosmic-ray.distributor]\nname = "local"\n\n'
        "[cosmic-ray.filters.operators-filter]\n"
        f"exclude-operators = {json.dumps(EXCLUDED_OPERATORS)}\n"
    )
    session = STATE / "session.sqlite"
    session.unlink(missing_ok=True)
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith(("PYTEST_", "ONEROOF_"))},
        "PYTHONDONTWRITEBYTECODE": "1",
        "PYTHONPATH": str(ROOT),
    }
    try:
        subprocess.run(["cosmic-ray", "init", str(config), str(session)], cwd=ROOT, env=env, check=True)
        subprocess.run(["cr-filter-operators", str(session), str(config)], cwd=ROOT, env=env, check=True)
        baseline = subprocess.run(
            [sys.executable, "-B", str(Path(__file__).resolve()), "check"], cwd=ROOT, env=env, check=False
        )
        if baseline.returncode != 0:
            print("the unmutated code fails the check: fix that first")
            return 1
        started = time.monotonic()
        try:
            subprocess.run(
                ["cosmic-ray", "exec", str(config), str(session)], cwd=ROOT, env=env, check=False, timeout=minutes * 60
            )
        except subprocess.TimeoutExpired:
            print(f"stopped after {minutes} minutes; the figures below cover the mutants run so far")
        print(f"cosmic-ray exec: {time.monotonic() - started:.0f} s")
        return report(session, write_docs)
    finally:
        for name, data in originals.items():  # a mutant interrupted by the time bound stays on disk otherwise
            (ROOT / name).write_bytes(data)
        cleanup(admin, [e["db"] for e in entries])


def report(session: Path, write_docs: bool = False) -> int:
    dump = subprocess.run(["cosmic-ray", "dump", str(session)], capture_output=True, text=True, check=True).stdout
    killed = survived = pending = skipped = 0
    survivors = []
    for line in dump.splitlines():
        work, result = json.loads(line)
        if result is None:
            pending += 1
            continue
        if result.get("worker_outcome") == "skipped":  # an excluded operator
            skipped += 1
            continue
        mutation = work["mutations"][0]
        if result.get("test_outcome") == "killed" or result.get("worker_outcome") in (
            "exception",
            "abnormal",
            "timeout",
        ):
            killed += 1
        else:
            survived += 1
            survivors.append(
                f"{mutation['module_path']}:{mutation['start_pos'][0]} {mutation['operator_name']} "
                f"#{mutation['occurrence']}"
            )
    done = killed + survived
    score = (
        f"mutants: {done + pending} (and {skipped} of excluded operators), run {done}, killed {killed}, "
        f"survived {survived}, score {100 * killed / done if done else 0:.1f}%"
    )
    print(score)
    for survivor in survivors:
        print(f"  survived: {survivor}")
    if write_docs:
        import results

        body = "\n".join([f"**{score}**", "", *(f"- survived: `{s}`" for s in survivors)])
        page = results.DOCS / "mutation.md"
        results.write(page, body, results.command_line("mutation.py", sys.argv[1:]))
        print(f"wrote {page}")
    return 0


def survivors(admin: str, session: Path, tests: list[str]) -> int:
    """Second pass, after tests were added for a run's survivors: apply each survivor again
    (`cosmic-ray apply`), run the current check and, with `tests`, those pytest files of tests/
    (slower, a test server of their own); report which survive still and the combined score.
    """
    dump = subprocess.run(["cosmic-ray", "dump", str(session)], capture_output=True, text=True, check=True).stdout
    results = [json.loads(line) for line in dump.splitlines()]
    done = [(w, r) for w, r in results if r is not None and r.get("worker_outcome") != "skipped"]
    left = [
        w["mutations"][0]
        for w, r in done
        if not (r.get("test_outcome") == "killed" or r.get("worker_outcome") in ("exception", "abnormal", "timeout"))
    ]
    originals = {name: (ROOT / name).read_bytes() for name in MUTATED}
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith(("PYTEST_", "ONEROOF_"))},
        "PYTHONDONTWRITEBYTECODE": "1",
        "PYTHONPATH": str(ROOT),
    }

    def fails(*args: str, timeout: float) -> bool:
        """`python -B *args` on the mutated checkout fails: the mutant is killed."""
        command = [sys.executable, "-B", *args]
        done = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, check=False, timeout=timeout)
        return done.returncode != 0

    entries = prepare(admin)
    still = []
    try:
        for mutation in left:
            where = (
                f"{mutation['module_path']}:{mutation['start_pos'][0]} {mutation['operator_name']} "
                f"#{mutation['occurrence']}"
            )
            subprocess.run(
                [
                    "cosmic-ray",
                    "apply",
                    mutation["module_path"],
                    mutation["operator_name"],
                    str(mutation["occurrence"]),
                ],
                cwd=ROOT,
                env=env,
                check=True,
                capture_output=True,
            )
            try:
                killed = fails(str(Path(__file__).resolve()), "check", timeout=300)
                if not killed and tests:
                    killed = fails("-m", "pytest", *tests, "-x", "-q", "-p", "no:randomly", timeout=1800)
            finally:
                (ROOT / mutation["module_path"]).write_bytes(originals[mutation["module_path"]])
            print(f"  {'killed now' if killed else 'survived'}: {where}", flush=True)
            if not killed:
                still.append(where)
    finally:
        for name, data in originals.items():
            (ROOT / name).write_bytes(data)
        cleanup(admin, [e["db"] for e in entries])
    total, first = len(done), len(done) - len(left)
    print(
        f"mutants run {total}: killed by the run {first}, by this pass {len(left) - len(still)}, survived "
        f"{len(still)}; score {100 * (total - len(still)) / total if total else 0:.1f}%"
    )
    return 0


def cleanup(admin: str, names: list[str]) -> None:
    from psycopg import sql

    from oneroof.harness.db import connect

    with connect(admin, autocommit=True) as conn:
        for name in names + ["mut_golden"]:
            conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument(
        "action",
        choices=("run", "check", "report", "survivors"),
        help="run: prepare, mutate, report; survivors: re-judge a run's survivors with today's tests",
    )
    parser.add_argument("--dsn", help="admin DSN of a server (default: the embedded server under $ONEROOF_HOME)")
    parser.add_argument("--minutes", type=float, default=45.0, help="time bound of the cosmic-ray run")
    parser.add_argument("--session", default=str(STATE / "session.sqlite"), help="survivors: the run's session")
    parser.add_argument("--tests", nargs="*", default=[], help="survivors: pytest files of tests/ to run too")
    parser.add_argument(
        "--write-docs", action="store_true", help="run, report: write the score into docs/results/mutation.md"
    )
    args = parser.parse_args()
    if args.action == "check":
        return check()
    if args.action == "report":
        return report(STATE / "session.sqlite", args.write_docs)
    from oneroof.core import target

    admin = args.dsn or target.admin_dsn(None)
    if args.action == "survivors":
        return survivors(admin, Path(args.session), args.tests)
    return run(admin, args.minutes, args.write_docs)


if __name__ == "__main__":
    raise SystemExit(main())
