"""`oneroof rehearse`, the main job: the whole release on a fresh clone of the golden database,
each step recorded as evidence for the GO/NO-GO report.

The steps are one table, STEPS: each a method of `Run` that records what it saw in its `Step`
and hands the next steps what they need in `State`. `rehearse` runs them in order, times them,
records them, stops at the first failure, and always runs the closing steps: drop its clone
(unless kept) and check that the golden database is unchanged.
"""

from __future__ import annotations

import datetime as dt
import json
import secrets
import shutil
import tempfile
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any
from xml.etree import ElementTree

import psycopg

from oneroof.core import dispatch, gate, metrics, package, signatures
from oneroof.core import evidence as rehearsals
from oneroof.core.evidence import StepName
from oneroof.executor import __version__, release, sessions
from oneroof.executor.monitor import monitor
from oneroof.harness import capture, catalog, clones, golden, marks
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
        """GO: every step recorded held, and the rehearsal was not interrupted."""
        return bool(self.steps) and all(s.ok for s in self.steps) and not self.interrupted

    def step(self, name: str) -> Step | None:
        """The step recorded under `name`, or None when the rehearsal did not reach it."""
        return next((s for s in self.steps if s.name == name), None)

    def as_json(self) -> dict[str, Any]:
        """The content of evidence.json, with the derived `ok`."""
        data = asdict(self)
        data["ok"] = self.ok
        return data

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Evidence:
        """Evidence as `as_json` wrote it (its `ok` is recomputed, never read)."""
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
        text = _statement(conn, proposal["package_sha256"], account, key, valid_for) if key is not None else None
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


def _statement(
    conn: psycopg.Connection[Any], package_sha256: str, account: catalog.Account, key: Path, valid_for: dt.timedelta
) -> str:
    """The approval statement for this clone (its name, OID and cluster), signed with `key`."""
    cluster, unknown = gate.cluster_identity(conn)
    oid = gate.database_oid(conn)
    if cluster is None or oid is None:
        raise CloneError(f"cannot sign for this clone: {unknown or 'its database OID cannot be read'}")
    statement = signatures.Statement.new(
        package_sha256=package_sha256,
        proposal=catalog.PROPOSAL_CODE,
        approver_id=str(account.id),
        approver_email=account.email,
        level=str(account.level),
        database=conn.info.dbname,
        database_oid=oid,
        system_identifier=cluster,
        valid_for=valid_for,
    )
    return signatures.bundle(statement, signatures.sign(statement.message(), key))


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


class NotDue(Exception):
    """A closing step with nothing to check: it is left out of the evidence ("not reached")."""


@dataclass
class State:
    """What the steps hand each other; each field names the step that sets it."""

    golden_name: str
    golden_dsn: str
    pkg: package.Package | None = None  # package
    golden_entry: str | None = None  # golden: the fingerprint golden_intact compares
    clone: clones.Clone | None = None  # clone
    keydir: Path | None = None  # clone: the one-off key's directory, removed whatever happens
    signer: OneOffSigner | None = None  # clone
    content: dict[str, str] = field(default_factory=dict)  # content_before


@dataclass
class Run:
    """One rehearsal: what it was asked, the state its steps share, and one method per step."""

    admin_dsn: str
    run_dir: Path
    package_dir: Path
    scale: int
    expect_sha256: str | None
    keep: bool
    snapshot_from: str | None
    jobs: int
    reads_production: bool
    note: Progress
    state: State
    evidence: Evidence = field(init=False)

    def __post_init__(self) -> None:
        started_at = dt.datetime.now(dt.UTC).isoformat(timespec="seconds")
        self.evidence = Evidence(f"oneroof {__version__}", started_at, {}, self.state.golden_name)

    @property
    def stages(self) -> tuple[Stage, ...]:
        """The steps run in order, stopping at the first failure: the snapshot only with --from."""
        return tuple(st for st in STEPS if not st.closing and (st.name is not StepName.SNAPSHOT or self.snapshot_from))

    @property
    def total(self) -> int:
        """The number every progress line counts to: the steps, the closing ones and production's read."""
        closing = sum(1 for st in STEPS if st.closing)
        return len(self.stages) + closing + (1 if self.reads_production else 0)

    @property
    def pkg(self) -> package.Package:
        """The verified package (from the package step on)."""
        assert self.state.pkg is not None, "the package step runs first"
        return self.state.pkg

    @property
    def clone(self) -> clones.Clone:
        """The rehearsal clone (from the clone step on)."""
        assert self.state.clone is not None, "the clone step runs before any step on the clone"
        return self.state.clone

    @property
    def signer(self) -> OneOffSigner:
        """The one-off approver key the clone's gate trusts (from the clone step on)."""
        assert self.state.signer is not None, "the clone step makes the one-off signer"
        return self.state.signer

    def execute(self) -> None:
        """Run the steps, then the closing ones whatever happened; Ctrl-C stops the steps only."""
        try:
            self._run_steps()
        except KeyboardInterrupt:
            self.evidence.interrupted = True
            current = self.evidence.steps[-1] if self.evidence.steps else None
            if current is not None and not current.ok:
                current.detail = "interrupted (Ctrl-C) before this step finished"
                current.exit_code = 130
            self.note("        interrupted (Ctrl-C): cleaning up; the verdict is NO-GO (interrupted: Ctrl-C)")
        finally:
            if self.state.keydir is not None:  # the one-off key is never kept
                shutil.rmtree(self.state.keydir, ignore_errors=True)
            self._close()

    def _run_steps(self) -> None:
        for index, stage in enumerate(self.stages, 1):
            record = Step(stage.name.value, stage.title)
            self.evidence.steps.append(record)  # first, so that Ctrl-C finds the step it stopped
            self.note(f"[{index:2}/{self.total}] {record.title} ...")
            t = time.monotonic()
            try:
                stage.run(self, record)
                record.ok = True
            except (Failed, OneroofError) as exc:
                record.detail = str(exc)
                record.exit_code = getattr(exc, "exit_code", record.exit_code)
            record.seconds = time.monotonic() - t
            self._result(record)
            if not record.ok:
                break

    def _close(self) -> None:
        # The closing steps keep their own numbers, however early the rehearsal stopped.
        for index, stage in enumerate((st for st in STEPS if st.closing), len(self.stages) + 1):
            keeps = self.keep and stage.name is StepName.DROP_CLONE
            record = Step(stage.name.value, KEEP_TITLE if keeps else stage.title)
            self.note(f"[{index:2}/{self.total}] {record.title} ...")
            t = time.monotonic()
            try:
                stage.run(self, record)
                record.ok = True
            except NotDue as exc:
                self.note(f"        skipped: {exc}")
                continue
            except (Failed, OneroofError) as exc:
                record.detail = str(exc)
            record.seconds = time.monotonic() - t
            self.evidence.steps.append(record)
            self._result(record)

    def _result(self, record: Step) -> None:
        self.note(f"        {'ok' if record.ok else 'FAILED'} in {record.seconds:.2f} s: {record.detail}")

    # -- the steps, in the order of STEPS ---------------------------------------------------------

    def _verify_package(self, s: Step) -> None:
        pkg = self.state.pkg = package.load(self.package_dir, self.expect_sha256)
        self.evidence.package = {
            "name": pkg.name,
            "version": pkg.version,
            "sha256": pkg.sha256,
            "tiers": [t.number for t in pkg.tiers],
            "pinned": bool(self.expect_sha256),
        }
        s.figures = {"sha256": pkg.sha256, "files": 1 + 2 * len(pkg.tiers)}
        s.detail = f"{pkg.name} {pkg.version}: {len(pkg.tiers)} tiers, every file matches its manifest hash"

    def _snapshot_production(self, s: Step) -> None:
        from oneroof.executor.capture import take

        assert self.snapshot_from is not None
        made = take(
            self.snapshot_from,
            self.admin_dsn,
            name=self.state.golden_name,
            replace=True,
            jobs=self.jobs,
            progress=lambda m: self.note(f"        .. {m}"),
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

    def _golden_present(self, s: Step) -> None:
        name, dsn = self.state.golden_name, self.state.golden_dsn
        s.detail = self._golden_ready()
        marked = marks_golden(self.admin_dsn, name)
        origin = golden.provenance(self.admin_dsn, name) if marked else Provenance("unmarked")
        self.evidence.golden_origin, self.evidence.golden_provenance = origin.describe(), asdict(origin)
        s.detail += f"; {origin.describe()}"
        reading = _reading(dsn)
        self.state.golden_entry = reading.fingerprint
        s.entry, s.figures = reading.fingerprint, reading.metrics
        with connect(dsn, application_name="oneroof-rehearse") as conn, consistent_read(conn):
            self.evidence.bound = {"tables": rehearsals.digests(conn, rehearsals.bound_tables(self.pkg)), "on": name}
        s.detail += f"; {len(self.evidence.bound['tables'])} tables the package reads or writes digested"

    def _golden_ready(self) -> str:
        """Build the golden database when it is missing or its proposal names another package (but
        never over a snapshot of production); say which.
        """
        pkg, name = self.pkg, self.state.golden_name
        with connect(self.admin_dsn, autocommit=True) as admin:
            exists = database_exists(admin, name)
        stale, origin = False, Provenance("synthetic")
        if exists:
            with connect(self.state.golden_dsn) as conn:
                row = conn.execute(
                    "SELECT package_sha256 FROM os_proposals WHERE code = %s", (pkg.proposal,)
                ).fetchone()
            stale = row is None or row["package_sha256"] != pkg.sha256
            origin = golden.provenance(self.admin_dsn, name) if marks_golden(self.admin_dsn, name) else origin
        if stale and origin.kind == "production snapshot":
            raise Failed(
                f"golden {name} is a snapshot of production whose proposal "
                f"{'is missing' if row is None else 'names package ' + row['package_sha256'][:12]}, not this "
                f"package {pkg.sha256[:12]}: production has not been prepared for this package"
            )
        if exists and not stale:
            return "present"
        built = golden.build(self.admin_dsn, name=name, scale=self.scale, package_sha256=pkg.sha256, replace=stale)
        return f"{'rebuilt (its proposal named another package)' if stale else 'built'} in {built.seconds:.1f} s"

    def _create_clone(self, s: Step) -> None:
        made = self.state.clone = clones.create(self.admin_dsn, source=self.state.golden_name, wait=30)
        self.evidence.clone = made.name
        self.evidence.clone_seconds += made.seconds
        self.state.keydir = Path(tempfile.mkdtemp(prefix="oneroof-rehearsal-key-"))
        self.state.signer = one_off_signer(self.state.keydir)
        s.detail = f"{made.name} (marked clone of {self.state.golden_name}) in {made.seconds:.2f} s"

    def _baseline(self, s: Step) -> None:
        """The baseline stage, with what could emit governance events by other means listed (none
        expected: an active flow or a trigger moves gov_emit, so the stage fails on it too).
        """
        with connect(self.clone.dsn, application_name="oneroof-rehearsal") as conn:
            seen = dispatch.found(conn)
            conn.rollback()
        listed = f"dispatch by other means: {'; '.join(seen) if seen else 'none'}"
        try:
            self._stage(s, "baseline")
        except Failed as exc:
            raise Failed(f"{exc}; {listed}") from None
        s.detail += f"; {listed}"

    def _monitor_blocked(self, s: Step) -> None:
        self._gate(s, "BLOCKED")

    def _rollout_blocked(self, s: Step) -> None:
        try:
            release.rollout(self.clone.dsn, self.pkg, confirm_db=self.clone.name, trust=self.signer.trust)
        except Blocked as exc:
            s.exit_code, s.entry, s.exit = exc.exit_code, exc.entry, exc.exit
            s.figures = {"reasons": exc.reasons}
            if exc.entry != exc.exit:
                raise Failed("the blocked rollout changed the clone (entry != exit)") from exc
            s.detail = f"BLOCKED: {exc.reasons[0]}; entry == exit"
            return
        raise Failed("the rollout was not blocked without an approval")

    def _approve(self, s: Step) -> None:
        signer = self.signer
        approval = approve_rehearsal(self.clone.dsn, key=signer.key)
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

    def _monitor_open(self, s: Step) -> None:
        self._gate(s, "OPEN")

    def _content_before(self, s: Step) -> None:
        self._content(s, None)

    def _rollout(self, s: Step) -> None:
        out = release.rollout(
            self.clone.dsn, self.pkg, confirm_db=self.clone.name, audit=False, trust=self.signer.trust
        )
        s.exit_code, s.entry, s.exit = 0, out.entry, out.exit
        s.figures = {**out.metrics, "seconds": out.seconds, "ledger_head": out.ledger_head}
        if out.action != "applied":
            raise Failed(f"rollout did {out.action}")
        s.detail = (
            f"greenfield -> finalized exit 0 (gate session {out.seconds.get('gate_session', 0):.2f} s, "
            f"transaction {out.seconds['transaction'] * 1000:.0f} ms)"
        )

    def _content_after_rollout(self, s: Step) -> None:
        self._content(s, "by the rollout")

    def _finalized(self, s: Step) -> None:
        self._stage(s, "finalized")

    def _rollback(self, s: Step) -> None:
        out = release.rollback(self.clone.dsn, self.pkg, confirm_db=self.clone.name, trust=self.signer.trust)
        s.exit_code, s.entry, s.exit = 0, out.entry, out.exit
        s.figures = {**out.metrics, "seconds": out.seconds, "ledger_head": out.ledger_head}
        if out.action != "reverted":
            raise Failed(f"rollback did {out.action}")
        s.detail = f"finalized -> greenfield exit 0 (transaction {out.seconds['transaction'] * 1000:.0f} ms)"

    def _content_after_rollback(self, s: Step) -> None:
        self._content(s, "by the rollback")

    def _greenfield(self, s: Step) -> None:
        self._stage(s, "greenfield")

    def _rollback_again(self, s: Step) -> None:
        out = release.rollback(self.clone.dsn, self.pkg, confirm_db=self.clone.name, trust=self.signer.trust)
        s.exit_code, s.entry, s.exit = 0, out.entry, out.exit
        if out.action != "already-greenfield" or out.entry != out.exit:
            raise Failed(f"the second rollback did {out.action} (entry {out.entry[:12]}, exit {out.exit[:12]})")
        s.detail = "idempotent: nothing to revert, entry == exit"

    def _drop_clone(self, s: Step) -> None:
        made = self.state.clone
        if made is None:
            s.detail = "no clone was made"
        elif self.keep:
            self.evidence.kept_clone_dsn = made.dsn
            s.detail = f"kept: {made.dsn}"
        else:
            t = time.monotonic()
            try:
                clones.drop(self.admin_dsn, made.name)
            finally:
                self.evidence.clone_seconds += time.monotonic() - t
            s.detail = f"{made.name} dropped"

    def _golden_intact(self, s: Step) -> None:
        entry = self.state.golden_entry
        if entry is None:
            # Nothing to compare, and no second failure to report.
            raise NotDue("the rehearsal stopped before it read the golden database")
        reading = _reading(self.state.golden_dsn)
        s.entry, s.exit, s.figures = entry, reading.fingerprint, reading.metrics
        if reading.fingerprint != entry:
            raise Failed(f"CHANGED: {entry[:12]} -> {reading.fingerprint[:12]}")
        s.detail = "fingerprint before == after"

    # -- what several steps share ----------------------------------------------------------------

    def _stage(self, s: Step, stages: str, expect_exit: int = 0) -> None:
        """Run the invariants of `stages` on the clone (pytest), JUnit XML into the run directory."""
        junit = self.run_dir / f"junit-{stages.replace(' ', '-')}.xml"
        s.exit_code = release.run_stage(
            self.clone.dsn,
            stages,
            expect_db=self.clone.name,
            package_dir=self.pkg.path,
            expect_sha256=self.pkg.sha256,
            extra=("--junitxml", str(junit)),
            # the finalized stage judges the owners' approvals: with the clone's trust root
            allowed_signers=self.state.signer.trust.path if self.state.signer is not None else None,
        )
        s.figures = {"junit": junit.name}
        if s.exit_code != expect_exit:
            failed = failed_tests(junit)
            more = f" and {len(failed) - 5} more" if len(failed) > 5 else ""
            named = f" ({', '.join(failed[:5])}{more})" if failed else ""
            raise Failed(f"pytest -m {stages} exited {s.exit_code}{named}; see {junit}")
        s.detail = f"pytest invariants -m {stages}: passed ({junit.name})"

    def _gate(self, s: Step, expect: str) -> None:
        """Read the clone's gate with the monitor, read-only, and expect `expect` (BLOCKED or OPEN)."""
        report = monitor(self.clone.dsn, self.pkg.path, confirm_db=self.clone.name, trust=self.signer.trust)
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

    def _content(self, s: Step, expect_same_as: str | None) -> None:
        """Digest the content tables; first keep them, later expect them unchanged `expect_same_as`."""
        with connect(self.clone.dsn, application_name="oneroof-rehearse") as conn:
            digests = metrics.read_content(conn)
        s.figures = {"tables": len(digests), "rows": sum(int(d.split(":")[0]) for d in digests.values())}
        if expect_same_as is None:
            self.state.content = digests
            s.detail = f"{len(digests)} tables digested ({s.figures['rows']:,} rows)"
            return
        before = self.state.content
        changed = sorted(t for t in before.keys() | digests.keys() if before.get(t) != digests.get(t))
        if changed:
            s.figures["changed"] = changed
            raise Failed(
                f"content changed {expect_same_as}: {', '.join(changed)} (rows:digest "
                + "; ".join(f"{t} {before.get(t)} -> {digests.get(t)}" for t in changed[:3])
                + ")"
            )
        s.detail = f"{len(digests)} tables unchanged {expect_same_as}"


@dataclass(frozen=True)
class Stage:
    """One row of the rehearsal's table: the step's evidence name, the title it prints and records,
    and the method that runs it. A closing step runs whatever happened before, under its own number.
    """

    name: StepName
    title: str
    run: Callable[[Run, Step], None]
    closing: bool = False

    @property
    def required(self) -> bool:
        """Whether a rehearsal without this step's success is NO-GO for the gate (`rehearsed`)."""
        return self.name in rehearsals.REQUIRED_STEPS


STEPS: tuple[Stage, ...] = (
    Stage(StepName.PACKAGE, "verify the package and its pinned hash", Run._verify_package),
    Stage(StepName.SNAPSHOT, "snapshot production into the golden database (read-only)", Run._snapshot_production),
    Stage(StepName.GOLDEN, "golden database present and bound to this package", Run._golden_present),
    Stage(StepName.CLONE, "create the rehearsal clone", Run._create_clone),
    Stage(StepName.BASELINE, "baseline stage on the clone", Run._baseline),
    Stage(StepName.MONITOR_BLOCKED, "monitor says BLOCKED before ratification", Run._monitor_blocked),
    Stage(StepName.ROLLOUT_BLOCKED, "rollout attempt stops BLOCKED with equal fingerprints", Run._rollout_blocked),
    Stage(StepName.APPROVE, "sign and insert a rehearsal approval (one-off key, marked clone only)", Run._approve),
    Stage(StepName.MONITOR_OPEN, "monitor says OPEN after the approval", Run._monitor_open),
    Stage(StepName.CONTENT_BEFORE, "digest system_issues and every governed collection", Run._content_before),
    Stage(StepName.ROLLOUT, "rollout greenfield -> finalized", Run._rollout),
    Stage(StepName.CONTENT_AFTER_ROLLOUT, "content unchanged by the rollout", Run._content_after_rollout),
    Stage(StepName.FINALIZED, "finalized stage on the clone", Run._finalized),
    Stage(StepName.ROLLBACK, "rollback finalized -> greenfield", Run._rollback),
    Stage(StepName.CONTENT_AFTER_ROLLBACK, "content unchanged by the rollback", Run._content_after_rollback),
    Stage(StepName.GREENFIELD, "greenfield stage on the clone", Run._greenfield),
    Stage(StepName.ROLLBACK_AGAIN, "rollback again changes nothing", Run._rollback_again),
    Stage(StepName.DROP_CLONE, "drop the rehearsal clone", Run._drop_clone, closing=True),
    Stage(StepName.GOLDEN_INTACT, "golden database unchanged", Run._golden_intact, closing=True),
)
KEEP_TITLE = "keep the rehearsal clone (--keep)"  # the drop_clone step's title under --keep


def _run_suffix() -> str:
    return secrets.token_hex(3)


def new_run_dir(runs: Path, at: dt.datetime | None = None) -> Path:
    """A new, empty run directory under `runs` (made if missing), never one that already exists.

    Its name is the UTC start time to the microsecond and a random suffix
    (20250301T120000.123456Z-3f9a1c): two rehearsals started at once each get their own, and
    names sort by start time, so `latest_run` finds the newest. Raises OSError when it cannot be made.
    """
    stamp = (at or dt.datetime.now(dt.UTC)).strftime("%Y%m%dT%H%M%S.%fZ")
    runs.mkdir(parents=True, exist_ok=True)
    for _ in range(100):
        run_dir = runs / f"{stamp}-{_run_suffix()}"
        try:
            run_dir.mkdir()  # exclusive: the evidence of another run is never overwritten
        except FileExistsError:
            continue  # the same instant and the same suffix as another run: draw again
        return run_dir
    raise FileExistsError(f"no free run directory name under {runs} for {stamp}")


def latest_run(runs: Path) -> Path | None:
    """The run directory under `runs` that started last among those with evidence.json, if any."""
    done = sorted(p for p in runs.glob("*") if (p / "evidence.json").exists())
    return done[-1] if done else None


def default_golden(snapshot_from: str | None) -> str:
    """The golden database a rehearsal uses unless it is named: with `snapshot_from`, the capture of
    that production (capture_<its database>), else the synthetic golden. Two names, so that a
    rehearsal on production's data never replaces the synthetic golden of later plain rehearsals.
    """
    return capture.default_name(snapshot_from) if snapshot_from else catalog.GOLDEN_NAME


def golden_in_use(admin_dsn: str, name: str, snapshot_from: str | None) -> str:
    """One line saying which golden database a rehearsal is about to use, and of which kind."""
    if snapshot_from:
        return f"golden {name}: a capture of production `{capture.source_database(snapshot_from)}`, taken now (--from)"
    with connect(admin_dsn, autocommit=True) as admin:
        if not database_exists(admin, name):
            return f"golden {name}: synthetic golden, built now (it is missing)"
        marked = marks.is_golden(admin, name)
    origin = golden.provenance(admin_dsn, name) if marked else Provenance("unmarked")
    return f"golden {name}: {origin.describe()}"


def rehearse(
    admin_dsn: str,
    *,
    run_dir: Path,
    package_dir: Path = package.DEFAULT_DIR,
    scale: int = 1,
    golden_name: str | None = None,
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
    `golden_name` defaults to default_golden(snapshot_from).
    """
    started = time.monotonic()
    sessions.prepare()  # the stage worker imports pytest while the package, golden and clone steps run
    prod_dsn = prod_dsn or snapshot_from
    golden_name = golden_name or default_golden(snapshot_from)
    run_dir.mkdir(parents=True, exist_ok=True)
    run = Run(
        admin_dsn,
        run_dir,
        package_dir,
        scale,
        expect_sha256,
        keep,
        snapshot_from,
        jobs,
        bool(prod_dsn),
        progress or (lambda _m: None),
        State(golden_name, with_dbname(admin_dsn, golden_name)),
    )
    evidence = run.evidence
    run.execute()
    if prod_dsn and not evidence.interrupted:
        _production(evidence, prod_dsn, prod_db, package_dir, expect_sha256, run.note, run.total, run_dir, prod_trust)
    evidence.seconds = time.monotonic() - started
    (run_dir / "evidence.json").write_text(json.dumps(evidence.as_json(), indent=2) + "\n")
    return evidence


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
