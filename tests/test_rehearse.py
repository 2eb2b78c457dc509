"""`oneroof rehearse` and the GO/NO-GO report: a full rehearsal, a broken package, the clone-only
rehearsal approval, a report from stored evidence, --keep, and Ctrl-C.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from psycopg import sql

from oneroof.core import metrics, package
from oneroof.core.evidence import REQUIRED_STEPS, StepName
from oneroof.executor import report
from oneroof.executor.rehearse import STEPS, Evidence, approve_rehearsal, rehearse
from oneroof.harness import clones
from oneroof.harness.db import connect
from oneroof.harness.errors import CloneError
from tests.support.matrix import SEED_ROWS
from tests.support.processes import interrupt, start_executor
from tests.support.testing import ROOT, PgServer


def test_one_table_of_steps_in_the_order_their_names_are_defined() -> None:
    """The rehearsal's table runs every named step in the order core.evidence defines them, and the
    gate's required steps are among them; the report's figures are the metrics, in their order.
    """
    assert [stage.name for stage in STEPS] == list(StepName)
    assert [stage.name for stage in STEPS if stage.required] == list(REQUIRED_STEPS)
    assert [stage.name for stage in STEPS if stage.closing] == [StepName.DROP_CLONE, StepName.GOLDEN_INTACT]
    assert report.FIGURES == metrics.METRICS


def fingerprint(dsn: str) -> str:
    with connect(dsn) as conn:
        return metrics.read(conn).fingerprint


def evidence_content(test_server: PgServer) -> dict[str, str]:
    with connect(test_server.dsn(test_server.golden)) as conn:
        return metrics.read_content(conn)


UNBOUND = (
    "the rehearsal ran on a synthetic golden database, not on a snapshot of {!r}: rehearse on a fresh "
    "snapshot (`oneroof rehearse --from PROD_DSN`) and pass its evidence with --rehearsal"
)


def clones_of(test_server: PgServer, source: str) -> list[str]:
    return [c.name for c in clones.list_clones(test_server.admin) if c.source == source]


def production_copy(test_server: PgServer, name: str) -> str:
    """An unmarked, writable copy of the golden database standing in for production (a golden
    database itself is never a rollout target, so its gate is not production's).
    """
    clones.create(test_server.admin, source=test_server.golden, name=name, wait=60)
    with connect(test_server.admin, autocommit=True) as admin:
        admin.execute(sql.SQL("ALTER DATABASE {} RESET ALL").format(sql.Identifier(name)))
    return test_server.dsn(name)


def drop_database(test_server: PgServer, name: str) -> None:
    with connect(test_server.admin, autocommit=True) as admin:
        admin.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))


@pytest.fixture(scope="module")
def production(test_server: PgServer, unique: Any) -> Iterator[tuple[str, str]]:
    """(DSN, name) of a production stand-in at the seed's figures."""
    name = unique("prod_rh")
    dsn = production_copy(test_server, name)
    yield dsn, name
    drop_database(test_server, name)


@pytest.fixture(scope="module")
def full_run(
    test_server: PgServer, production: tuple[str, str], tmp_path_factory: pytest.TempPathFactory
) -> tuple[Evidence, Path, str]:
    """One whole rehearsal on the session's golden database, reading a production stand-in's gate."""
    run_dir = tmp_path_factory.mktemp("rehearsal")
    golden_dsn = test_server.dsn(test_server.golden)
    before = fingerprint(golden_dsn)
    evidence = rehearse(
        test_server.admin,
        run_dir=run_dir,
        golden_name=test_server.golden,
        prod_dsn=production[0],
        prod_db=production[1],
    )
    return evidence, run_dir, before


def test_full_rehearsal_is_go_and_production_stays_no_go(
    full_run: tuple[Evidence, Path, str], test_server: PgServer, production: tuple[str, str]
) -> None:
    evidence, run_dir, before = full_run
    assert evidence.ok, [(s.name, s.detail) for s in evidence.steps if not s.ok]
    assert [s.name for s in evidence.steps] == [
        "package",
        "golden",
        "clone",
        "baseline",
        "monitor_blocked",
        "rollout_blocked",
        "approve",
        "monitor_open",
        "content_before",
        "rollout",
        "content_after_rollout",
        "finalized",
        "rollback",
        "content_after_rollback",
        "greenfield",
        "rollback_again",
        "drop_clone",
        "golden_intact",
    ]
    golden_content = evidence_content(test_server)
    assert len(golden_content) == 36 and golden_content["system_issues"].startswith("204556:")
    assert evidence.step(StepName.CONTENT_BEFORE).figures == {  # type: ignore[union-attr]
        "tables": 36,
        "rows": sum(int(d.split(":")[0]) for d in golden_content.values()),
    }
    baseline = evidence.step(StepName.BASELINE)  # what could dispatch governance events, listed: none
    assert baseline is not None and baseline.detail.endswith("; dispatch by other means: none")
    approve = evidence.step(StepName.APPROVE)
    assert approve is not None and approve.figures["signed"] is True and approve.figures["key"].startswith("SHA256:")
    assert "signed with one-off key" in approve.detail and "trusted only on the clone" in approve.detail
    texts = {r.component: r.evidence for r in report.matrix(evidence)}
    assert f"signed statement, one-off key {approve.figures['key']} trusted only on the clone" in texts["Gate monitor"]
    rows = {r.component: r.status for r in report.matrix(evidence)}
    assert list(rows) == SEED_ROWS
    assert rows == {
        "Production rollout executor": "GO — execution-proven, HELD at gate",
        "Rollback executor": "GO",
        "Verification suite": "GO",
        "Gate monitor": "GO — live-validated",
        "Option 3 inert shadow": "NO-GO — REJECTED",
        "Clone harness": "RETAINED",
        "Human ratification gate": "CLOSED — single blocker: valid approvals 0 < 1",
        "Production activation (tiers 2–6 in prod)": "NO-GO",
    }
    # The stand-in is no snapshot's source: the synthetic golden's rehearsal binds no rollout there,
    # and the report says so beside the missing ratification.
    assert report.verdict(evidence) == {
        "release_readiness": "GO (engineering-complete, execution-proven)",
        "production_execution": "NO-GO until os_proposal_approvals ≥ 1; and this rehearsal does not bind the rollout: "
        f"{UNBOUND.format(production[1])}",
    }
    assert list(evidence.production["blocked_by"]) == ["approvals", "rehearsed"]
    assert report.compliance(evidence).startswith(
        f"Zero production mutations. Entry==exit (db={production[1]}, ospa=0, own=0, gap=210, conflict=0, "
        "gov_emit=0, inventory=35, axis=0, idle=0, system_issues=204,556)"
    )
    assert evidence.clone not in clones_of(test_server, test_server.golden)
    assert fingerprint(test_server.dsn(test_server.golden)) == before
    assert {p.name for p in run_dir.iterdir()} >= {
        "evidence.json",
        "junit-baseline.xml",
        "junit-finalized.xml",
        "junit-greenfield.xml",
        "junit-production-baseline.xml",
    }
    assert evidence.production is not None and evidence.production["baseline_exit"] == 0
    assert "Baseline reads validated live in prod" in report.matrix(evidence)[2].evidence


def test_production_that_drifted_from_the_baseline_is_no_go(full_run: tuple[Evidence, Path, str]) -> None:
    evidence, _, _ = full_run
    drifted = Evidence.from_json(json.loads(json.dumps(evidence.as_json())))
    assert drifted.production is not None
    drifted.production["baseline_exit"] = 1
    assert "Baseline stage FAILED in prod" in report.matrix(drifted)[2].evidence
    assert report.verdict(drifted)["production_execution"].startswith("NO-GO: production differs")


def test_report_renders_from_the_stored_evidence(oneroof_main: Any, full_run: tuple[Evidence, Path, str]) -> None:
    evidence, run_dir, _ = full_run
    data = json.loads(oneroof_main("report", "--run", str(run_dir), "--format", "json").stdout)
    assert [r["component"] for r in data["matrix"]] == SEED_ROWS
    assert data["verdict"] == report.verdict(evidence)
    markdown = oneroof_main("report", "--run", str(run_dir)).stdout
    assert "| Human ratification gate | CLOSED — single blocker: valid approvals 0 < 1 |" in markdown
    assert "PRODUCTION EXECUTION: NO-GO until os_proposal_approvals ≥ 1; and this rehearsal does not bind " in markdown
    page = oneroof_main("report", "--run", str(run_dir), "--format", "html").stdout
    assert page.startswith("<!doctype html>") and "Clone harness" in page and "RETAINED" in page
    assert not re.search(r"""(src|href)\s*=\s*["']?(https?:)?//""", page), "the page must be self-contained"


def test_a_failed_step_in_stored_evidence_turns_its_row_no_go(
    oneroof_main: Any, full_run: tuple[Evidence, Path, str], tmp_path: Path
) -> None:
    _, run_dir, _ = full_run
    data = json.loads((run_dir / "evidence.json").read_text())
    rollback = next(s for s in data["steps"] if s["name"] == "rollback_again")
    rollback.update(ok=False, detail="the second rollback did reverted")
    (tmp_path / "evidence.json").write_text(json.dumps(data))
    rendered = json.loads(oneroof_main("report", "--run", str(tmp_path), "--format", "json").stdout)
    rows = {r["component"]: r for r in rendered["matrix"]}
    assert (
        rows["Rollback executor"]["status"] == "NO-GO"
        and "the second rollback did reverted" in rows["Rollback executor"]["evidence"]
    )
    assert rows["Production rollout executor"]["status"].startswith("GO")
    assert rendered["verdict"]["release_readiness"].startswith("NO-GO")


@pytest.fixture
def other_golden(test_server: PgServer, unique: Any) -> Iterator[str]:
    """A golden database name of the test's own (rehearse builds it), dropped afterwards with its clones."""
    name = unique("golden_rh")
    yield name
    with connect(test_server.admin, autocommit=True) as admin:
        for clone in clones_of(test_server, name) + [name]:
            admin.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(clone)))


def test_broken_package_fails_drops_the_clone_and_turns_the_executor_no_go(
    test_server: PgServer, other_golden: str, tmp_path: Path
) -> None:
    broken = package.bundle(package.DEFAULT_DIR, tmp_path / "broken").path
    tier6 = broken / "tier6_lifecycle.deploy.sql"
    tier6.write_text(tier6.read_text().replace("'os_gov_events', false", "'os_gov_events', true"))
    package.seal(broken)
    evidence = rehearse(test_server.admin, run_dir=tmp_path / "run", package_dir=broken, golden_name=other_golden)
    assert not evidence.ok
    failed = [s for s in evidence.steps if not s.ok]
    assert [s.name for s in failed] == [StepName.ROLLOUT] and "event bindings are enabled" in failed[0].detail
    assert evidence.step(StepName.DROP_CLONE).ok and clones_of(test_server, other_golden) == []  # type: ignore[union-attr]
    assert evidence.step(StepName.GOLDEN_INTACT).ok  # type: ignore[union-attr]
    rows = {r.component: r for r in report.matrix(evidence)}
    assert rows["Production rollout executor"].status == "NO-GO"
    assert "event bindings are enabled" in rows["Production rollout executor"].evidence
    assert report.verdict(evidence)["release_readiness"].startswith("NO-GO")


def test_rehearsal_approval_is_refused_on_an_unmarked_database(
    test_server: PgServer, clone: clones.Clone, clone_conn: Any
) -> None:
    with connect(test_server.admin, autocommit=True) as admin:
        admin.execute(sql.SQL("ALTER DATABASE {} RESET ALL").format(sql.Identifier(clone.name)))
    with pytest.raises(CloneError, match="not a marked clone"):
        approve_rehearsal(clone.dsn)
    assert clone_conn.execute("SELECT count(*) AS n FROM os_proposal_approvals").fetchone() == {"n": 0}


def test_keep_keeps_the_clone_and_prints_its_dsn(
    oneroof: Any, test_server: PgServer, other_golden: str, tmp_path: Path
) -> None:
    result = oneroof(
        "rehearse", "--keep", "--dsn", test_server.admin, "--golden", other_golden, "--runs-dir", str(tmp_path)
    )
    assert result.returncode == 0, result.stderr
    kept = [line.split(": ", 1)[1] for line in result.stdout.splitlines() if line.startswith("kept clone: ")]
    assert len(kept) == 1
    with connect(kept[0]) as conn:
        assert clones.connected_is_clone(conn) and metrics.read(conn).metrics["gap"] == 210
    assert "RELEASE READINESS: GO" in result.stdout and "[18/18] golden database unchanged" in result.stderr


def test_ctrl_c_drops_the_clone_and_exits_cleanly(test_server: PgServer, other_golden: str, tmp_path: Path) -> None:
    proc = start_executor(
        "rehearse", "--dsn", test_server.admin, "--golden", other_golden, "--runs-dir", str(tmp_path), group=True
    )
    out, err = interrupt(proc, after="baseline stage on the clone")
    assert proc.returncode == 130, err
    assert "Traceback" not in err and "interrupted" in err
    # Said as an interruption, not as a failed step: in the progress and in the report
    assert "interrupted (Ctrl-C): cleaning up; the verdict is NO-GO (interrupted: Ctrl-C)" in err
    assert "RELEASE READINESS: NO-GO (interrupted: Ctrl-C)" in out and "a rehearsal step failed" not in out
    assert clones_of(test_server, other_golden) == []
    evidence = Evidence.from_json(json.loads(next(tmp_path.glob("*/evidence.json")).read_text()))
    stopped = [s for s in evidence.steps if not s.ok]
    assert evidence.interrupted and [s.name for s in stopped] == ["baseline"]
    assert stopped[0].detail == "interrupted (Ctrl-C) before this step finished" and stopped[0].exit_code == 130
    assert "baseline stage on the clone: interrupted (Ctrl-C)" in report.matrix(evidence)[2].evidence
    for name in ("report.md", "report.html"):
        page = next(tmp_path.glob(f"*/{name}")).read_text()
        assert "RELEASE READINESS: NO-GO (interrupted: Ctrl-C)" in page and "a rehearsal step failed" not in page
        assert "INTERRUPTED" in page


def test_an_interrupted_rehearsal_reads_interrupted_in_every_report(full_run: tuple[Evidence, Path, str]) -> None:
    """The verdict of a rehearsal stopped by Ctrl-C says so, in every format: no step failed."""
    stopped = Evidence.from_json(json.loads(json.dumps(full_run[0].as_json())))
    stopped.interrupted = True
    baseline = stopped.step(StepName.BASELINE)
    assert baseline is not None
    baseline.ok, baseline.exit_code, baseline.detail = False, 130, "interrupted (Ctrl-C) before this step finished"
    assert report.verdict(stopped) == {
        "release_readiness": "NO-GO (interrupted: Ctrl-C)",
        "production_execution": "NO-GO: the rehearsal was interrupted (Ctrl-C) before it held",
    }
    for fmt in ("text", "md", "html", "json"):
        shown = report.render(stopped, fmt)
        assert "NO-GO (interrupted: Ctrl-C)" in shown and "a rehearsal step failed" not in shown, fmt
    assert "| INTERRUPTED: interrupted (Ctrl-C) before this step finished |" in report.as_markdown(stopped)


def test_the_html_report_shows_inline_code_as_code(full_run: tuple[Evidence, Path, str]) -> None:
    """Database names and commands the evidence quotes in backticks are <code> on the page, escaped:
    no literal backtick is left.
    """
    captured = Evidence.from_json(json.loads(json.dumps(full_run[0].as_json())))
    captured.golden_origin = "clone of production `dir<ectus>` on host prod:5432 at 2026-01-01T00:00:00+00:00"
    page = report.as_html(captured)
    assert "`" not in page
    assert "clone of production <code>dir&lt;ectus&gt;</code> on host prod:5432" in page
    assert "<code>oneroof rehearse --from PROD_DSN</code>" in page  # the unbound rehearsal's advice


@pytest.mark.parametrize(
    ("args", "code", "message"),
    [
        (["--package", "/missing"], 2, "package directory /missing does not exist"),
        (["--expect-sha256", "xyz"], 2, "--expect-sha256"),
        (["--expect-sha256", "0" * 64], 4, "is not the pinned"),
        (["--scale", "0"], 2, "--scale 0"),
        (["--golden", "Bad-Name"], 2, "is not a valid identifier"),
        (["--prod-dsn", "postgresql://u:pw@[::1/x"], 2, "cannot parse the DSN"),
    ],
    ids=["missing-package", "bad-pin", "wrong-pin", "scale", "golden-name", "prod-dsn"],
)
def test_bad_input_is_refused_before_anything_is_written(
    oneroof: Any, oneroof_main: Any, test_server: PgServer, tmp_path: Path, args: list[str], code: int, message: str
) -> None:
    runs = tmp_path / "runs"
    result = oneroof(
        "rehearse", "--dsn", test_server.admin, "--golden", test_server.golden, "--runs-dir", str(runs), *args
    )
    assert result.returncode == code, result.stdout + result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and message in lines[0] and "Traceback" not in result.stderr, result.stderr
    assert result.stdout == "" and not runs.exists()  # no run directory, no report, no "latest run"
    assert oneroof_main("report", "--runs-dir", str(runs)).returncode == 2


def test_a_rehearsal_that_stops_early_keeps_its_step_numbers(test_server: PgServer, tmp_path: Path) -> None:
    """Called as a function with a package that cannot load: one failure, the closing step keeps
    its number, and no second failure about a golden fingerprint that was never due.
    """
    lines: list[str] = []
    evidence = rehearse(
        test_server.admin,
        run_dir=tmp_path,
        package_dir=tmp_path / "missing",
        golden_name=test_server.golden,
        progress=lines.append,
    )
    assert [(s.name, s.ok) for s in evidence.steps] == [("package", False), ("drop_clone", True)]
    numbered = [line.split("]")[0] + "]" for line in lines if line.startswith("[")]
    assert numbered == ["[ 1/18]", "[17/18]", "[18/18]"], lines
    assert not any("never taken" in line for line in lines)
    rows = {r.component: r for r in report.matrix(evidence)}
    assert rows["Clone harness"].evidence == "FAILED: not reached: clone, golden_intact"


def test_production_baseline_agrees_with_an_auditors_plain_run(
    full_run: tuple[Evidence, Path, str], test_server: PgServer, unique: Any, tmp_path: Path
) -> None:
    """Production with an approval row that does not count (ospa=1, valid approvals 0): the
    rehearsal's production baseline fails [ospa] exactly as an auditor's `pytest -m baseline`
    does, and the report keeps the two counts apart.
    """
    from oneroof.executor.rehearse import _production

    name = unique("prod_ospa")
    dsn = production_copy(test_server, name)
    try:
        with connect(dsn, autocommit=True) as conn:
            conn.execute(
                "INSERT INTO os_proposal_approvals (proposal_id, approver, level, package_sha256, revoked_at) "
                "SELECT p.id, a.user_id, a.level, p.package_sha256, now() FROM os_proposals p, os_approvers a "
                "WHERE a.kind = 'human' AND a.level = 'L4' LIMIT 1"
            )
        evidence = Evidence.from_json(json.loads(json.dumps(full_run[0].as_json())))
        _production(evidence, dsn, name, package.DEFAULT_DIR, None, lambda _m: None, 16, tmp_path)
        auditor = subprocess.run(
            [
                sys.executable,
                "-m",
                "pytest",
                "invariants",
                "-m",
                "baseline",
                "--dsn",
                dsn,
                "--expect-db",
                name,
                "-p",
                "no:cacheprovider",
                "-rf",
            ],
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=300,
            check=False,
            env={k: v for k, v in os.environ.items() if not k.startswith(("PG", "ONEROOF_"))},
        )
    finally:
        drop_database(test_server, name)
    prod = evidence.production
    assert prod is not None and prod["metrics"]["ospa"] == 1 and prod["valid_approvals"] == []
    assert auditor.returncode == prod["baseline_exit"] == 1, auditor.stdout
    assert prod["baseline_failed"] == ["test_metric_matches_baseline[ospa]"]
    assert "FAILED invariants/test_baseline.py::test_metric_matches_baseline[ospa]" in auditor.stdout
    assert auditor.stdout.count("FAILED ") == 1
    rows = {r.component: r for r in report.matrix(evidence)}
    assert rows["Human ratification gate"].status.startswith("CLOSED — single blocker: valid approvals 0 < 1 (ospa=1:")
    assert "except ospa=1" in rows["Verification suite"].evidence
    assert report.verdict(evidence)["production_execution"].startswith("NO-GO until a valid approval (ospa=1")
    assert "ospa=1" in report.compliance(evidence)
    for fmt in ("md", "json", "html", "text"):
        assert "ospa=0" not in report.render(evidence, fmt)


def test_report_rejected_option_production_note_and_width(full_run: tuple[Evidence, Path, str]) -> None:
    evidence, _, _ = full_run
    option3 = report.as_json(evidence)["matrix"][4]
    assert option3["component"] == "Option 3 inert shadow"
    assert (option3["go"], option3["rejected"]) == (False, True)
    page = report.as_html(evidence)
    assert '<td class="rejected">NO-GO — REJECTED</td>' in page
    unread = Evidence.from_json(json.loads(json.dumps(evidence.as_json())))
    unread.production = None
    assert "production not read: pass --prod-dsn" in report.as_html(unread)
    for shown in (evidence, unread):
        text = report.as_text(shown)
        assert max(len(line) for line in text.splitlines()) <= 100, text
        assert all(component in text for component in SEED_ROWS)


CONTENT_CHANGES = {
    "system_issues row modified": (
        "UPDATE system_issues SET status = 'resolved' WHERE id = (SELECT min(id) FROM system_issues)"
    ),
    "content row deleted": "DELETE FROM kh_tags WHERE id = (SELECT min(id) FROM kh_tags)",
}


@pytest.mark.parametrize("change", sorted(CONTENT_CHANGES))
def test_a_content_change_during_the_rehearsal_is_no_go(
    test_server: PgServer, other_golden: str, tmp_path: Path, change: str
) -> None:
    """A row of system_issues or of a governed collection changed while the release ran: the
    content digests before and after the rollout differ, and the rehearsal names the table.
    """
    clone_name: list[str] = []

    def progress(message: str) -> None:
        found = re.search(r": (\S+) \(marked clone of", message)
        if found:
            clone_name.append(found.group(1))
        if "rollout greenfield -> finalized" in message:  # after the digests, before the rollout
            with connect(test_server.dsn(clone_name[0]), autocommit=True) as conn:
                conn.execute(CONTENT_CHANGES[change])

    evidence = rehearse(test_server.admin, run_dir=tmp_path / "run", golden_name=other_golden, progress=progress)
    failed = [s for s in evidence.steps if not s.ok]
    table = "system_issues" if "system_issues" in change else "kh_tags"
    assert [s.name for s in failed] == [StepName.CONTENT_AFTER_ROLLOUT], [(s.name, s.detail) for s in failed]
    assert failed[0].figures["changed"] == [table] and f"content changed by the rollout: {table}" in failed[0].detail
    rows = {r.component: r for r in report.matrix(evidence)}
    assert (
        rows["Production rollout executor"].status == "NO-GO" and table in rows["Production rollout executor"].evidence
    )
