"""`oneroof rehearse`, the main job: the whole release on a fresh clone of the golden database,
each step recorded as evidence for the GO/NO-GO report.

Every step is a plain function returning what it saw; `rehearse` runs them in order, times
them, records them, stops at the first failure, and always drops its clone (unless kept) and
checks that the golden database is unchanged.
"""

from __future__ import annotations

import datetime as dt
import json
import shutil
import tempfile
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any
from xml.etree import ElementTree

from oneroof.core import evidence as rehearsals
from oneroof.core import gate, metrics, package, signatures
from oneroof.executor import __version__, release
from oneroof.executor.monitor import monitor
from oneroof.harness import catalog, clones, golden, marks
from oneroof.harness.capture import Provenance
from oneroof.harness.db import connect, consistent_read, database_exists, public, with_dbname
from oneroof.harness.errors import Blocked, CloneError, OneroofError

Progress = Callable[[str], None]


@dataclass
class Step:
    """One rehearsal step as evidence."""

    name: str
    title: str
    ok: bool = False
    exit_code: int | None = None
    seconds: float = 0.0
    figures: dict[str, Any] = field(default_factory=dict)
    entry: str = ""
    exit: str = ""
    detail: str = ""


@dataclass
class Evidence:
    """Everything a rehearsal saw, written as evidence.json in its run directory."""

    tool: str
    started_at: str
    package: dict[str, Any]
    golden: str
    clone: str = ""
    kept_clone_dsn: str = ""
    steps: list[Step] = field(default_factory=list)
    production: dict[str, Any] | None = None
    seconds: float = 0.0
    clone_seconds: float = 0.0
    interrupted: bool = False
    golden_origin: str = ""  # "clone of production `directus` on host X at T" or "synthetic golden"
    golden_provenance: dict[str, Any] = field(default_factory=dict)
    # The tables the package reads or writes and the inventory, digested on the golden database:
    # what a rollout bound to this evidence requires production still to be (gate condition `rehearsed`).
    bound: dict[str, Any] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return bool(self.steps) and all(s.ok for s in self.steps) and not self.interrupted

    def step(self, name: str) -> Step | None:
        return next((s for s in self.steps if s.name == name), None)

    def as_json(self) -> dict[str, Any]:
        data = asdict(self)
        data["ok"] = self.ok
        return data

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Evidence:
        data = {k: v for k, v in data.items() if k != "ok"}
        data["steps"] = [Step(**s) for s in data["steps"]]
        return cls(**data)


@dataclass(frozen=True)
class OneOffSigner:
    """A rehearsal's own approver key and the allowed-signers file that trusts it, for one clone only."""

    key: Path
    trust: signatures.TrustRoot
    fingerprint: str


def one_off_signer(directory: Path, approver: str = "l4") -> OneOffSigner:
    """Make a fresh key for the rehearsal approver and an allowed-signers file naming only it (for
    the approval namespace only). It lives in `directory`, which the rehearsal removes at its end;
    no other trust root ever lists it.
    """
    key = signatures.one_off_key(directory, "oneroof rehearsal one-off key")
    public_key = " ".join(key.with_suffix(".pub").read_text().split()[:2])
    allowed = directory / "allowed_signers"
    allowed.write_text(f'{catalog.account(approver).email} namespaces="{signatures.NAMESPACE}" {public_key}\n')
    return OneOffSigner(key, signatures.TrustRoot.load(allowed), signatures.key_fingerprint(key))


def approve_rehearsal(
    dsn: str, approver: str = "l4", *, key: Path | None = None, valid_for: dt.timedelta = dt.timedelta(hours=1)
) -> int:
    """Insert a rehearsal approval by a human approver; refused unless the target is a marked clone.

    With `key`, the approval carries a statement signed with it for this clone (its name and
    cluster), stored as a Directus comment by the approver, as `oneroof approve` stores one.
    """
    with connect(dsn, autocommit=True) as conn:
        if not marks.connected_is_clone(conn):
            raise CloneError(
                f"refusing a rehearsal approval on {conn.info.dbname!r}: it is not a marked clone; "
                "only a human ratifies production"
            )
        account = catalog.account(approver)
        proposal = conn.execute(
            "SELECT id, package_sha256 FROM os_proposals WHERE code = %s", (catalog.PROPOSAL_CODE,)
        ).fetchone()
        if proposal is None:
            raise CloneError(f"no proposal {catalog.PROPOSAL_CODE} on the clone to approve")
        text = None
        if key is not None:
            cluster = gate.system_identifier(conn)
            if cluster is None:
                raise CloneError("the rehearsal role may not read pg_control_system(): grant it pg_monitor")
            statement = signatures.Statement.new(
                package_sha256=proposal["package_sha256"],
                proposal=catalog.PROPOSAL_CODE,
                approver_id=str(account.id),
                approver_email=account.email,
                level=str(account.level),
                database=conn.info.dbname,
                system_identifier=cluster,
                valid_for=valid_for,
            )
            text = signatures.bundle(statement, signatures.sign(statement.message(), key))
        with conn.transaction():
            row = conn.execute(
                "INSERT INTO os_proposal_approvals (proposal_id, approver, level, package_sha256, rehearsal, comment) "
                "VALUES (%s, %s, %s, %s, true, 'rehearsal approval by oneroof rehearse') RETURNING id",
                (proposal["id"], account.id, account.level, proposal["package_sha256"]),
            ).fetchone()
            assert row is not None
            if text is not None:
                conn.execute(
                    "INSERT INTO directus_comments (id, collection, item, comment, user_created) "
                    "VALUES (gen_random_uuid(), 'os_proposal_approvals', %s, %s, %s)",
                    (str(row["id"]), text, account.id),
                )
    return int(row["id"])


def marks_golden(admin_dsn: str, name: str) -> bool:
    """True when database `name` carries the golden mark."""
    with connect(admin_dsn, autocommit=True) as admin:
        return marks.is_golden(admin, name)


def _reading(dsn: str) -> metrics.Reading:
    with connect(dsn, application_name="oneroof-rehearse") as conn:
        conn.read_only = True
        return metrics.read(conn)


class Failed(Exception):
    """A rehearsal step did not hold; its message is the step's detail."""


def rehearse(
    admin_dsn: str,
    *,
    run_dir: Path,
    package_dir: Path = package.DEFAULT_DIR,
    scale: int = 1,
    golden_name: str = catalog.GOLDEN_NAME,
    expect_sha256: str | None = None,
    keep: bool = False,
    prod_dsn: str | None = None,
    prod_db: str | None = None,
    progress: Progress | None = None,
    prod_trust: signatures.TrustRoot | None = None,
    snapshot_from: str | None = None,
    jobs: int = 1,
) -> Evidence:
    """Rehearse the release on a fresh clone and write evidence.json into `run_dir`.

    The rehearsal approval is signed with a one-off key that only the clone's gate trusts;
    `prod_trust` is the allowed signers for reading the production gate (--prod-dsn). With
    `snapshot_from` (a production DSN), the golden database is first (re-)snapshotted from
    production, and production's gate is read at the end (unless `prod_dsn` names another).
    """
    prod_dsn = prod_dsn or snapshot_from
    note = progress or (lambda _m: None)
    started = time.monotonic()
    run_dir.mkdir(parents=True, exist_ok=True)
    evidence = Evidence(
        f"oneroof {__version__}", dt.datetime.now(dt.UTC).isoformat(timespec="seconds"), {}, golden_name
    )
    steps: list[tuple[str, str, Callable[[Step], None]]] = []
    state: dict[str, Any] = {}
    golden_dsn = with_dbname(admin_dsn, golden_name)

    def step(name: str, title: str) -> Callable[[Callable[[Step], None]], Callable[[Step], None]]:
        def register(func: Callable[[Step], None]) -> Callable[[Step], None]:
            steps.append((name, title, func))
            return func

        return register

    @step("package", "verify the package and its pinned hash")
    def _(s: Step) -> None:
        pkg = package.load(package_dir, expect_sha256)
        state["pkg"] = pkg
        evidence.package = {
            "name": pkg.name,
            "version": pkg.version,
            "sha256": pkg.sha256,
            "tiers": [t.number for t in pkg.tiers],
            "pinned": bool(expect_sha256),
        }
        s.figures = {"sha256": pkg.sha256, "files": 1 + 2 * len(pkg.tiers)}
        s.detail = f"{pkg.name} {pkg.version}: {len(pkg.tiers)} tiers, every file matches its manifest hash"

    def snapshot_step(s: Step) -> None:
        from oneroof.executor.capture import take

        assert snapshot_from is not None
        made = take(
            snapshot_from,
            admin_dsn,
            name=golden_name,
            replace=True,
            jobs=jobs,
            progress=lambda m: note(f"        .. {m}"),
        )
        s.entry, s.exit = made.entry, made.exit
        s.figures = {
            "golden": made.golden,
            "xid_assigned": made.xid_assigned,
            "tables": made.tables,
            "bytes": made.bytes,
            "phases": made.phases,
            **made.metrics,
        }
        s.detail = (
            f"{made.provenance.describe()}: {made.tables} tables, {made.bytes / 1e6:,.1f} MB; production "
            "entry == exit == golden fingerprint, no transaction id assigned"
        )

    if snapshot_from:
        steps.append(("snapshot", "snapshot production into the golden database (read-only)", snapshot_step))

    @step("golden", "golden database present and bound to this package")
    def _(s: Step) -> None:
        pkg = state["pkg"]
        with connect(admin_dsn, autocommit=True) as admin:
            exists = database_exists(admin, golden_name)
        stale = False
        origin = Provenance("synthetic")
        if exists:
            with connect(golden_dsn) as conn:
                row = conn.execute(
                    "SELECT package_sha256 FROM os_proposals WHERE code = %s", (pkg.proposal,)
                ).fetchone()
            stale = row is None or row["package_sha256"] != pkg.sha256
            origin = golden.provenance(admin_dsn, golden_name) if marks_golden(admin_dsn, golden_name) else origin
        if stale and origin.kind == "production snapshot":
            raise Failed(
                f"golden {golden_name} is a snapshot of production whose proposal "
                f"{'is missing' if row is None else 'names package ' + row['package_sha256'][:12]}, not this "
                f"package {pkg.sha256[:12]}: production has not been prepared for this package"
            )
        if not exists or stale:
            built = golden.build(admin_dsn, name=golden_name, scale=scale, package_sha256=pkg.sha256, replace=stale)
            s.detail = (
                f"{'rebuilt (its proposal named another package)' if stale else 'built'} in {built.seconds:.1f} s"
            )
        else:
            s.detail = "present"
        origin = (
            golden.provenance(admin_dsn, golden_name)
            if marks_golden(admin_dsn, golden_name)
            else Provenance("unmarked")
        )
        evidence.golden_origin, evidence.golden_provenance = origin.describe(), asdict(origin)
        s.detail += f"; {origin.describe()}"
        reading = _reading(golden_dsn)
        state["golden_entry"] = reading.fingerprint
        s.entry, s.figures = reading.fingerprint, reading.metrics
        with connect(golden_dsn, application_name="oneroof-rehearse") as conn, consistent_read(conn):
            evidence.bound = {"tables": rehearsals.digests(conn, rehearsals.bound_tables(pkg)), "on": golden_name}
        s.detail += f"; {len(evidence.bound['tables'])} tables the package reads or writes digested"

    @step("clone", "create the rehearsal clone")
    def _(s: Step) -> None:
        made = clones.create(admin_dsn, source=golden_name, wait=30)
        state["clone"] = made
        evidence.clone = made.name
        evidence.clone_seconds += made.seconds
        state["keydir"] = Path(tempfile.mkdtemp(prefix="oneroof-rehearsal-key-"))
        state["signer"] = one_off_signer(state["keydir"])
        s.detail = f"{made.name} (marked clone of {golden_name}) in {made.seconds:.2f} s"

    def stage(s: Step, stages: str, expect_exit: int = 0) -> None:
        made = state["clone"]
        junit = run_dir / f"junit-{stages.replace(' ', '-')}.xml"
        s.exit_code = release.run_stage(
            made.dsn,
            stages,
            expect_db=made.name,
            package_dir=state["pkg"].path,
            expect_sha256=state["pkg"].sha256,
            extra=("--junitxml", str(junit)),
            # the finalized stage judges the owners' approvals: with the clone's trust root
            allowed_signers=state["signer"].trust.path if "signer" in state else None,
        )
        s.figures = {"junit": junit.name}
        if s.exit_code != expect_exit:
            raise Failed(f"pytest -m {stages} exited {s.exit_code}; see {junit}")
        s.detail = f"pytest invariants -m {stages}: passed ({junit.name})"

    @step("baseline", "baseline stage on the clone")
    def _(s: Step) -> None:
        stage(s, "baseline")

    def gate_read(s: Step, expect: str) -> None:
        made = state["clone"]
        report = monitor(made.dsn, state["pkg"].path, confirm_db=made.name, trust=state["signer"].trust)
        s.exit_code = 0 if report.verdict == "OPEN" else 3
        s.entry, s.exit = report.entry, report.exit
        s.figures = {"verdict": report.verdict, "reasons": report.reasons, **report.metrics}
        if report.entry != report.exit:
            raise Failed("the monitor changed the clone (entry != exit)")
        if expect == "BLOCKED" and report.reasons != ["valid approvals 0 < 1"]:
            raise Failed(f"expected BLOCKED: valid approvals 0 < 1, got {report.verdict}: {report.reasons}")
        if expect == "OPEN" and report.verdict != "OPEN":
            raise Failed(f"expected OPEN, got BLOCKED: {'; '.join(report.reasons)}")
        s.detail = report.verdict + (f": {report.reasons[0]}" if report.reasons else "")

    @step("monitor_blocked", "monitor says BLOCKED before ratification")
    def _(s: Step) -> None:
        gate_read(s, "BLOCKED")

    @step("rollout_blocked", "rollout attempt stops BLOCKED with equal fingerprints")
    def _(s: Step) -> None:
        made = state["clone"]
        try:
            release.rollout(made.dsn, state["pkg"], confirm_db=made.name, trust=state["signer"].trust)
        except Blocked as exc:
            s.exit_code, s.entry, s.exit = exc.exit_code, exc.entry, exc.exit
            s.figures = {"reasons": exc.reasons}
            if exc.entry != exc.exit:
                raise Failed("the blocked rollout changed the clone (entry != exit)") from exc
            s.detail = f"BLOCKED: {exc.reasons[0]}; entry == exit"
            return
        raise Failed("the rollout was not blocked without an approval")

    @step("approve", "sign and insert a rehearsal approval (one-off key, marked clone only)")
    def _(s: Step) -> None:
        signer = state["signer"]
        approval = approve_rehearsal(state["clone"].dsn, key=signer.key)
        s.figures = {
            "approval_id": approval,
            "approver": catalog.account("l4").email,
            "level": "L4",
            "signed": True,
            "key": signer.fingerprint,
            "allowed_signers_sha256": signer.trust.sha256,
        }
        s.detail = (
            f"rehearsal approval #{approval} by the L4 approver, signed with one-off key "
            f"{signer.fingerprint}, trusted only on the clone"
        )

    @step("monitor_open", "monitor says OPEN after the approval")
    def _(s: Step) -> None:
        gate_read(s, "OPEN")

    def content(s: Step, expect_same_as: str | None) -> None:
        with connect(state["clone"].dsn, application_name="oneroof-rehearse") as conn:
            digests = metrics.read_content(conn)
        s.figures = {"tables": len(digests), "rows": sum(int(d.split(":")[0]) for d in digests.values())}
        if expect_same_as is None:
            state["content"] = digests
            s.detail = f"{len(digests)} tables digested ({s.figures['rows']:,} rows)"
            return
        before = state["content"]
        changed = sorted(t for t in before.keys() | digests.keys() if before.get(t) != digests.get(t))
        if changed:
            s.figures["changed"] = changed
            raise Failed(
                f"content changed {expect_same_as}: {', '.join(changed)} (rows:digest "
                + "; ".join(f"{t} {before.get(t)} -> {digests.get(t)}" for t in changed[:3])
                + ")"
            )
        s.detail = f"{len(digests)} tables unchanged {expect_same_as}"

    @step("content_before", "digest system_issues and every governed collection")
    def _(s: Step) -> None:
        content(s, None)

    @step("rollout", "rollout greenfield -> finalized")
    def _(s: Step) -> None:
        made = state["clone"]
        out = release.rollout(made.dsn, state["pkg"], confirm_db=made.name, audit=False, trust=state["signer"].trust)
        s.exit_code, s.entry, s.exit, s.figures = 0, out.entry, out.exit, {**out.metrics, "seconds": out.seconds}
        if out.action != "applied":
            raise Failed(f"rollout did {out.action}")
        s.detail = (
            f"greenfield -> finalized exit 0 (gate session {out.seconds.get('gate_session', 0):.2f} s, "
            f"transaction {out.seconds['transaction'] * 1000:.0f} ms)"
        )

    @step("content_after_rollout", "content unchanged by the rollout")
    def _(s: Step) -> None:
        content(s, "by the rollout")

    @step("finalized", "finalized stage on the clone")
    def _(s: Step) -> None:
        stage(s, "finalized")

    @step("rollback", "rollback finalized -> greenfield")
    def _(s: Step) -> None:
        made = state["clone"]
        out = release.rollback(made.dsn, state["pkg"], confirm_db=made.name)
        s.exit_code, s.entry, s.exit, s.figures = 0, out.entry, out.exit, {**out.metrics, "seconds": out.seconds}
        if out.action != "reverted":
            raise Failed(f"rollback did {out.action}")
        s.detail = f"finalized -> greenfield exit 0 (transaction {out.seconds['transaction'] * 1000:.0f} ms)"

    @step("content_after_rollback", "content unchanged by the rollback")
    def _(s: Step) -> None:
        content(s, "by the rollback")

    @step("greenfield", "greenfield stage on the clone")
    def _(s: Step) -> None:
        stage(s, "greenfield")

    @step("rollback_again", "rollback again changes nothing")
    def _(s: Step) -> None:
        made = state["clone"]
        out = release.rollback(made.dsn, state["pkg"], confirm_db=made.name)
        s.exit_code, s.entry, s.exit = 0, out.entry, out.exit
        if out.action != "already-greenfield" or out.entry != out.exit:
            raise Failed(f"the second rollback did {out.action} (entry {out.entry[:12]}, exit {out.exit[:12]})")
        s.detail = "idempotent: nothing to revert, entry == exit"

    total = len(steps) + 2 + (1 if prod_dsn else 0)
    try:
        for index, (name, title, func) in enumerate(steps, 1):
            record = Step(name, title)
            evidence.steps.append(record)
            note(f"[{index:2}/{total}] {title} ...")
            t = time.monotonic()
            try:
                func(record)
                record.ok = True
            except (Failed, OneroofError) as exc:
                record.detail = str(exc)
                record.exit_code = getattr(exc, "exit_code", record.exit_code)
            record.seconds = time.monotonic() - t
            note(f"        {'ok' if record.ok else 'FAILED'} in {record.seconds:.2f} s: {record.detail}")
            if not record.ok:
                break
    except KeyboardInterrupt:
        evidence.interrupted = True
        current = evidence.steps[-1] if evidence.steps else None
        if current is not None and not current.ok:
            current.detail = "interrupted (Ctrl-C) before this step finished"
            current.exit_code = 130
        note("interrupted: cleaning up")
    finally:
        if "keydir" in state:  # the one-off key is never kept
            shutil.rmtree(state["keydir"], ignore_errors=True)
        _finish(evidence, state, admin_dsn, golden_dsn, keep, note, total, prod=bool(prod_dsn))
    if prod_dsn and not evidence.interrupted:
        _production(evidence, prod_dsn, prod_db, package_dir, expect_sha256, note, total, run_dir, prod_trust)
    evidence.seconds = time.monotonic() - started
    (run_dir / "evidence.json").write_text(json.dumps(evidence.as_json(), indent=2) + "\n")
    return evidence


def _finish(
    evidence: Evidence,
    state: dict[str, Any],
    admin_dsn: str,
    golden_dsn: str,
    keep: bool,
    note: Progress,
    total: int,
    prod: bool = False,
) -> None:
    made = state.get("clone")
    drop = Step("drop_clone", "drop the rehearsal clone" if not keep else "keep the rehearsal clone (--keep)")
    # The closing steps keep their own numbers, however early the rehearsal stopped.
    position = total - (1 if prod else 0) - 1
    note(f"[{position:2}/{total}] {drop.title} ...")
    t = time.monotonic()
    if made is None:
        drop.ok, drop.detail = True, "no clone was made"
    elif keep:
        drop.ok, drop.detail = True, f"kept: {made.dsn}"
        evidence.kept_clone_dsn = made.dsn
    else:
        try:
            clones.drop(admin_dsn, made.name)
            drop.ok, drop.detail = True, f"{made.name} dropped"
        except OneroofError as exc:
            drop.detail = exc.message
    drop.seconds = time.monotonic() - t
    evidence.clone_seconds += drop.seconds if made is not None and not keep else 0.0
    evidence.steps.append(drop)
    note(f"        {'ok' if drop.ok else 'FAILED'} in {drop.seconds:.2f} s: {drop.detail}")

    intact = Step("golden_intact", "golden database unchanged")
    note(f"[{position + 1:2}/{total}] {intact.title} ...")
    t = time.monotonic()
    entry = state.get("golden_entry")
    if entry is None:
        # The rehearsal stopped before it read the golden database: nothing to compare, and no
        # second failure to report. The step is left out of the evidence ("not reached").
        note("        skipped: the rehearsal stopped before it read the golden database")
        return
    try:
        reading = _reading(golden_dsn)
        intact.entry, intact.exit, intact.figures = entry, reading.fingerprint, reading.metrics
        intact.ok = reading.fingerprint == entry
        intact.detail = (
            "fingerprint before == after" if intact.ok else f"CHANGED: {entry[:12]} -> {reading.fingerprint[:12]}"
        )
    except OneroofError as exc:
        intact.detail = exc.message
    intact.seconds = time.monotonic() - t
    evidence.steps.append(intact)
    note(f"        {'ok' if intact.ok else 'FAILED'} in {intact.seconds:.2f} s: {intact.detail}")


def _production(
    evidence: Evidence,
    prod_dsn: str,
    prod_db: str | None,
    package_dir: Path,
    expect_sha256: str | None,
    note: Progress,
    total: int,
    run_dir: Path,
    trust: signatures.TrustRoot | None = None,
) -> None:
    """Read the production gate and run the baseline stage there: both read-only, entry == exit."""
    note(f"[{total:2}/{total}] read the production gate and its baseline (read-only) ...")
    t = time.monotonic()
    try:
        # judged with this very rehearsal: the `rehearsed` condition says whether it binds a rollout there
        report = monitor(
            prod_dsn,
            package_dir,
            expect_sha256=expect_sha256,
            confirm_db=prod_db,
            trust=trust,
            rehearsal=rehearsals.from_evidence(evidence.as_json()),
        )
    except OneroofError as exc:
        evidence.production = {"error": exc.message, "dsn": public(prod_dsn)}
        note(f"        could not read the production gate: {exc.message}")
        return
    junit = run_dir / "junit-production-baseline.xml"
    # The very checks of an auditor's plain `pytest invariants -m baseline`, ospa included, so the
    # two agree on the same database; the report judges an ospa that moved (approval rows) apart.
    baseline = release.run_stage(
        prod_dsn,
        "baseline",
        expect_db=prod_db or report.database,
        extra=("--junitxml", str(junit)),
        allowed_signers=trust.path if trust is not None else None,
    )
    evidence.production = {
        **report.as_json(),
        "dsn": public(prod_dsn),
        "baseline_exit": baseline,
        "baseline_failed": failed_tests(junit),
        "seconds": time.monotonic() - t,
    }
    note(
        f"        {report.verdict}{': ' + report.reasons[0] if report.reasons else ''}; "
        f"baseline stage exit {baseline}; entry == exit: {report.entry == report.exit}"
    )


def failed_tests(junit: Path) -> list[str]:
    """The names of the failed or erroring tests in a JUnit XML file (none when it is unreadable)."""
    try:
        root = ElementTree.parse(junit).getroot()
    except (OSError, ElementTree.ParseError):
        return []
    return sorted(
        str(case.get("name"))
        for case in root.iter("testcase")
        if case.find("failure") is not None or case.find("error") is not None
    )
