"""The GO/NO-GO report: the seed's classification matrix, regenerated from rehearsal evidence.

Every status is computed from recorded steps and readings; a failed step turns its row NO-GO.
"""

from __future__ import annotations

import html
import json
import textwrap
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any

from oneroof.core import metrics
from oneroof.core.evidence import StepName
from oneroof.executor.rehearse import Evidence, Step
from oneroof.harness.errors import ExitCode

FIGURES = metrics.METRICS  # the order of the figures in the compliance line and the figures table


@dataclass(frozen=True)
class Row:
    """One row of the classification matrix."""

    component: str
    status: str
    evidence: str
    go: bool
    rejected: bool = False  # an option the release rejects (Option 3): neither GO nor a failure


def _ok(evidence: Evidence, *names: StepName) -> bool:
    return all((s := evidence.step(n)) is not None and s.ok for n in names)


def _failed(evidence: Evidence, *names: StepName) -> str:
    bad = [s for n in names if (s := evidence.step(n)) is not None and not s.ok]
    missing = [n for n in names if evidence.step(n) is None]
    parts = [f"{s.title}: {s.detail}" for s in bad] + ([f"not reached: {', '.join(missing)}"] if missing else [])
    return "FAILED: " + "; ".join(parts)


def _result(evidence: Evidence, step: Step) -> str:
    """A step's result in the step tables: ok, FAILED, or INTERRUPTED for the step Ctrl-C stopped."""
    if step.ok:
        return "ok"
    return "INTERRUPTED" if evidence.interrupted and step.exit_code == ExitCode.INTERRUPTED else "FAILED"


def _figures(metrics: dict[str, Any]) -> str:
    return ", ".join(
        f"{k}={metrics[k]:,}" if isinstance(metrics[k], int) else f"{k}={metrics[k]}" for k in FIGURES if k in metrics
    )


def production_gate(evidence: Evidence) -> tuple[str, str]:
    """(OPEN / BLOCKED / FINALIZED / UNKNOWN, reason text) of the production target."""
    prod = evidence.production
    if not prod:
        return "UNKNOWN", "production gate not read (pass --prod-dsn)"
    if "error" in prod:
        return "UNKNOWN", f"production gate unreadable: {prod['error']}"
    if prod.get("state") == "finalized":
        return "FINALIZED", "tiers 2-6 already applied in production"
    # The human gate: every condition but `rehearsed`, which binds the rollout to a rehearsal and is
    # judged apart (see unbound()).
    reasons = [r for r in prod["reasons"] if r != unbound(prod)]
    verdict = prod["verdict"]
    if verdict in ("OPEN", "BLOCKED"):
        verdict = "BLOCKED" if reasons else "OPEN"
    return verdict, "; ".join(reasons)


def unbound(prod: dict[str, Any]) -> str | None:
    """Why a rollout of production would not be bound to this rehearsal (the gate condition
    `rehearsed`, read with this very evidence), or None.
    """
    reason = (prod.get("blocked_by") or {}).get("rehearsed")
    return str(reason) if reason else None


OSPA_TEST = "test_metric_matches_baseline[ospa]"


def _approvals_only(prod: dict[str, Any]) -> bool:
    """True when the production gate's one reason is the valid-approvals count."""
    reasons = [r for r in prod.get("reasons") or [] if r != unbound(prod)]
    return len(reasons) == 1 and str(reasons[0]).startswith("valid approvals ")


def _ospa(prod: dict[str, Any]) -> int | None:
    """Production's ospa: the rows of os_proposal_approvals (the source document's meaning)."""
    value = (prod.get("metrics") or {}).get("ospa")
    return value if isinstance(value, int) else None


def baseline_drift(evidence: Evidence) -> list[str]:
    """The production baseline tests that failed, but for ospa: approval rows recorded since the
    baseline are the gate's to judge, not a drift of the figures the release was rehearsed on.
    A failed stage with no readable test list counts as a drift.
    """
    prod = evidence.production or {}
    code = prod.get("baseline_exit", 0)
    if code == 0:
        return []
    failed = [str(name) for name in prod.get("baseline_failed") or []]
    return [name for name in failed if name != OSPA_TEST] if failed else [f"pytest exit {code}"]


def _until(prod: dict[str, Any]) -> str:
    """What production execution waits for, in the source document's terms when they are true."""
    if _ospa(prod) == 0:
        return "os_proposal_approvals ≥ 1"
    return f"a valid approval (ospa={_ospa(prod)} approval rows, none valid)"


@dataclass(frozen=True)
class Seen:
    """What the rows read of the production target, read once for the whole matrix."""

    gate: str  # OPEN / BLOCKED / FINALIZED / UNKNOWN (production_gate)
    why: str
    prod: dict[str, Any]
    drift: list[str]  # baseline_drift

    @property
    def live(self) -> bool:
        """Whether the production gate was read."""
        return self.gate in ("OPEN", "BLOCKED", "FINALIZED")


def _step_row(component: str, evidence: Evidence, steps: tuple[StepName, ...], status: str, text: str) -> Row:
    """A row that is GO when every one of `steps` held: `status` and `text`, else NO-GO with what failed."""
    ok = _ok(evidence, *steps)
    return Row(component, status if ok else "NO-GO", text if ok else _failed(evidence, *steps), ok)


def _rollout_row(evidence: Evidence, seen: Seen) -> Row:
    pkg = evidence.package.get("sha256", "")[:12] or "unverified"
    held = "HELD at gate" if seen.gate != "OPEN" else "gate OPEN"
    return _step_row(
        "Production rollout executor",
        evidence,
        (
            StepName.PACKAGE,
            StepName.ROLLOUT_BLOCKED,
            StepName.CONTENT_BEFORE,
            StepName.ROLLOUT,
            StepName.CONTENT_AFTER_ROLLOUT,
        ),
        f"GO — execution-proven, {held}",
        f"Hash-verified ({pkg}); blocked attempt exit 3 with entry == exit; ran greenfield→finalized "
        f"exit 0 on fresh clone {evidence.clone or '(none)'}, content untouched (row digests of system_issues and "
        "the governed collections equal before and after)."
        + (" Cannot run in prod until valid approvals ≥ 1." if seen.gate != "OPEN" else ""),
    )


ROLLBACK_STEPS = (StepName.ROLLBACK, StepName.CONTENT_AFTER_ROLLBACK, StepName.ROLLBACK_AGAIN)
SUITE_STEPS = (StepName.BASELINE, StepName.FINALIZED, StepName.GREENFIELD)


def _rollback_row(evidence: Evidence, seen: Seen) -> Row:
    text = (
        f"Idempotent finalized→greenfield on clone {evidence.clone or '(none)'}, content untouched; a second "
        "rollback changed nothing."
    )
    return _step_row("Rollback executor", evidence, ROLLBACK_STEPS, "GO", text)


def _suite_row(evidence: Evidence, seen: Seen) -> Row:
    text = "Invariants PASS on clone: baseline, finalized and greenfield stages (JUnit XML in the run)."
    return _step_row("Verification suite", evidence, SUITE_STEPS, "GO", text + _production_baseline(seen))


def _production_baseline(seen: Seen) -> str:
    """What the production baseline stage said, for the verification suite row ("" when not run)."""
    prod = seen.prod
    if not seen.live or "baseline_exit" not in prod:
        return ""
    if prod["baseline_exit"] == 0:
        return " Baseline reads validated live in prod (read-only, entry == exit)."
    if not seen.drift:
        return (
            f" Baseline reads validated live in prod (read-only, entry == exit), except ospa={_ospa(prod)}: "
            f"approval rows recorded since the baseline, which the gate judges (valid approvals "
            f"{len(prod.get('valid_approvals') or [])})."
        )
    return (
        f" Baseline stage FAILED in prod (pytest exit {prod['baseline_exit']}: {', '.join(seen.drift)}): "
        "production differs from the figures the release was rehearsed on."
    )


def _monitor_row(evidence: Evidence, seen: Seen) -> Row:
    gate, why = seen.gate, seen.why
    vs_prod = f" Verdict vs prod → {gate}{'/' + why if why and gate == 'BLOCKED' else ''}." if seen.live else ""
    approve = evidence.step(StepName.APPROVE)
    signed = (
        f" (signed statement, one-off key {approve.figures['key']} trusted only on the clone)"
        if approve is not None and approve.figures.get("signed")
        else ""
    )
    return _step_row(
        "Gate monitor",
        evidence,
        (StepName.MONITOR_BLOCKED, StepName.MONITOR_OPEN),
        "GO — live-validated" if seen.live else "GO",
        f"On clone: BLOCKED (valid approvals 0 < 1) before, OPEN after the rehearsal approval{signed}.{vs_prod} "
        "Read-only (entry == exit), no daemon.",
    )


def _option3_row(evidence: Evidence, seen: Seen) -> Row:
    """An option the release rejects: the row says whether the rejection was verified, never GO."""
    tiers = evidence.package.get("tiers", [])
    ok = tiers == [2, 3, 4, 5, 6] and _ok(evidence, StepName.APPROVE)
    return Row(
        "Option 3 inert shadow",
        "NO-GO — REJECTED" if ok else "NO-GO — REJECTED (rejection not verified)",
        f"Package carries tiers {', '.join(map(str, tiers)) or '?'} only: no shadow tier, no override "
        "flag; the rehearsal approval counted only because the target is a marked clone."
        if ok
        else "Package or rehearsal approval not verified: " + _failed(evidence, StepName.PACKAGE, StepName.APPROVE),
        False,
        rejected=ok,
    )


def _clone_row(evidence: Evidence, seen: Seen) -> Row:
    intact = evidence.step(StepName.GOLDEN_INTACT)
    kept = (
        f" Clone kept: {evidence.kept_clone_dsn}." if evidence.kept_clone_dsn else " Rehearsal clone created & dropped."
    )
    return _step_row(
        "Clone harness",
        evidence,
        (StepName.CLONE, StepName.DROP_CLONE, StepName.GOLDEN_INTACT),
        "RETAINED",
        f"Golden {evidence.golden} ({evidence.golden_origin or 'origin not recorded'}) intact "
        f"(fingerprint {intact.entry[:12] if intact else ''} before == after)." + kept,
    )


def _ratification_row(evidence: Evidence, seen: Seen) -> Row:
    gate, why, prod = seen.gate, seen.why, seen.prod
    if gate == "BLOCKED" and _approvals_only(prod):
        status = f"CLOSED — single blocker: {why}"  # the gate's own words, as everywhere else
    elif gate == "BLOCKED":
        status = f"CLOSED — {seen.why}"
    elif gate == "OPEN":
        status = f"OPEN — ratified (approvals {', '.join(f'#{i}' for i in prod.get('valid_approvals', []))})"
    elif gate == "FINALIZED":
        status = "RATIFIED — tiers 2-6 live"
    else:
        status = f"UNKNOWN — {seen.why}"
    return Row(
        "Human ratification gate",
        status,
        "Requires human L2/L4 (Option 1) with a statement signed by the approver's own key, verified "
        "against allowed signers kept outside the database. Agent cannot open it: approvals by service "
        "or agent accounts, unsigned rows, and rehearsal approvals outside a marked clone, never count.",
        gate in ("OPEN", "FINALIZED"),
    )


def _activation_row(evidence: Evidence, seen: Seen) -> Row:
    gate, why, prod, loose = seen.gate, seen.why, seen.prod, unbound(seen.prod)
    if gate == "OPEN" and evidence.ok and not seen.drift and not loose:
        status, text = (
            "GO — press the button",
            f"oneroof rollout --confirm-db {prod.get('database')} --rehearsal evidence.json",
        )
    elif loose and gate in ("OPEN", "BLOCKED") and evidence.ok:
        status, text = (
            "NO-GO",
            f"{'Ratified' if gate == 'OPEN' else 'Gated on valid approvals ≥ 1'}; and this "
            f"rehearsal does not bind a rollout of production: {loose}.",
        )
    elif gate == "FINALIZED":
        status, text = "DONE", "Tiers 2-6 are live in production."
    elif gate != "UNKNOWN":
        unchanged = " Unchanged (entry == exit)." if prod.get("fingerprint", {}).get("equal") else ""
        status, text = "NO-GO", f"Gated on valid approvals ≥ 1.{unchanged}"
    else:
        status, text = "NO-GO", f"Gated on valid approvals ≥ 1; {why}."
    return Row("Production activation (tiers 2–6 in prod)", status, text, status.startswith(("GO", "DONE")))


# The classification matrix, one function per row, in the seed's order.
ROWS: tuple[Callable[[Evidence, Seen], Row], ...] = (
    _rollout_row,
    _rollback_row,
    _suite_row,
    _monitor_row,
    _option3_row,
    _clone_row,
    _ratification_row,
    _activation_row,
)


def matrix(evidence: Evidence) -> list[Row]:
    """The classification matrix of the seed, from evidence."""
    gate, why = production_gate(evidence)
    seen = Seen(gate, why, evidence.production or {}, baseline_drift(evidence))
    return [row(evidence, seen) for row in ROWS]


def verdict(evidence: Evidence) -> dict[str, str]:
    """Release readiness and production execution, separately."""
    gate, why = production_gate(evidence)
    if evidence.ok:
        readiness = "GO (engineering-complete, execution-proven)"
    elif evidence.interrupted:  # no step failed: it was stopped
        readiness = "NO-GO (interrupted: Ctrl-C)"
    else:
        readiness = "NO-GO (a rehearsal step failed)"
    if evidence.interrupted:
        production = "NO-GO: the rehearsal was interrupted (Ctrl-C) before it held"
    elif not evidence.ok:
        production = "NO-GO: the rehearsal did not hold"
    elif baseline_drift(evidence):
        production = "NO-GO: production differs from the rehearsed baseline (see the verification suite row)"
    elif gate == "OPEN" and unbound(evidence.production or {}):
        production = (
            "NO-GO: a human has ratified, but this rehearsal does not bind the rollout: "
            f"{unbound(evidence.production or {})}"
        )
    elif gate == "OPEN":
        production = "GO: a human has ratified; run the gated executor with this evidence (--rehearsal)"
    elif gate == "FINALIZED":
        production = "DONE"
    elif gate == "BLOCKED" and _approvals_only(evidence.production or {}):
        loose = unbound(evidence.production or {})
        production = f"NO-GO until {_until(evidence.production or {})}" + (
            f"; and this rehearsal does not bind the rollout: {loose}" if loose else ""
        )
    else:
        production = f"NO-GO: {why}"
    return {"release_readiness": readiness, "production_execution": production}


# The report's terms, for a reader who has not read the source document: rendered under the
# report (Markdown and HTML) and on the docs' glossary page (docs/hooks.py), from this one table.
GLOSSARY: tuple[tuple[str, str], ...] = (
    (
        "GO / NO-GO",
        "the rehearsal's verdicts. RELEASE READINESS judges the release on a copy; PRODUCTION EXECUTION "
        "judges production: GO only once a human has ratified and this rehearsal binds the rollout.",
    ),
    (
        "OPEN / BLOCKED",
        "the gate's verdict on a target (`oneroof monitor`): OPEN lets `oneroof rollout` apply "
        "tiers 2-6; BLOCKED lists every reason, and a blocked rollout changes nothing.",
    ),
    ("ospa", "rows of os_proposal_approvals, counted or not; the gate counts only valid approvals"),
    (
        "valid approval",
        "an approval by a human L2/L4 approver, signed with their own key, verified against the "
        "trust root, naming this package, proposal and target, unexpired and unrevoked (`oneroof approve`)",
    ),
    ("own", "active rows of os_collection_owners: the governed collections with an owner (35 once tier 3 is live)"),
    ("gap", "rows of the os_governance_gap view: governance facets still missing (210 before the rollout, 0 after)"),
    ("conflict", "collections with two active owners, or a label with two effects (always 0)"),
    ("gov_emit", "rows of os_gov_events: governance events emitted (0: tier 6's event bindings stay disabled)"),
    ("inventory", "rows of os_collection_inventory: the 35 governed collections (tier 1)"),
    ("axis", "governed collections with an axis (tier 4): 0 before the rollout, 35 after"),
    ("idle", "rows of os_idle_flags: collections flagged idle by the lifecycle (tier 6), 0"),
    ("system_issues", "rows of the system_issues log; the release never changes it"),
    ("entry / exit", "fingerprints of the target read before and after a command: equal means it changed nothing"),
    ("golden", "a read-only database that rehearsals clone: the synthetic golden, or a capture of production"),
    (
        "capture",
        "a golden snapshot of production (`oneroof golden snapshot`, `rehearse --from`), read-only, "
        "its secrets replaced by markers, equal to production's fingerprint",
    ),
    ("clone", "a marked copy of a golden database that a rehearsal changes and drops"),
    (
        "evidence",
        "evidence.json of a rehearsal run: the steps, figures and digests a rollout of production is "
        "bound to (`--rehearsal`)",
    ),
    ("statement", "the text an approver signs: package, proposal, level, target and validity"),
    ("trust root", "the allowed-signers file of the reviewed repository (`--allowed-signers`): whose keys count"),
    (
        "Option 3 inert shadow",
        "a rejected way to release (a shadow tier behind an override): REJECTED means the package holds no such thing",
    ),
    ("RETAINED", "the clone harness is kept as the way to rehearse"),
    ("Forbidden-compliance", "the proof that production was not changed: its figures, entry == exit"),
)


def meaning(evidence: Evidence) -> str:
    """One line under the verdict: what it means, and the next step (who, with which command)."""
    gate, _why = production_gate(evidence)
    production = verdict(evidence)["production_execution"]
    if evidence.interrupted:
        return "What this means: the rehearsal was stopped before it held; nothing is proven. Next: rehearse again."
    if not evidence.ok:
        return (
            "What this means: the release failed on a copy and must not go to production. Next: read the "
            "failed step in report.md, fix it, and rehearse again."
        )
    if gate == "UNKNOWN":
        return (
            "What this means: the release holds on a copy, but production was not read, so this rehearsal "
            "cannot bind its rollout. Next: rehearse on a capture of production, `oneroof rehearse --from PROD_DSN`."
        )
    if production.startswith("GO"):
        return (
            "What this means: the release holds and a human has ratified. Next: the operator runs "
            "`oneroof rollout --confirm-db DB --rehearsal evidence.json`."
        )
    if production == "DONE":
        return "What this means: tiers 2-6 are already live on production; `oneroof rollback` would undo them."
    if production.startswith("NO-GO until"):
        return (
            "What this means: the healthy result: the release holds on a copy, and production waits, unchanged, "
            "for a human. Next: an L2/L4 approver runs `oneroof approve`, then the operator `oneroof rollout`."
        )
    return "What this means: production may not be rolled out yet. Next: act on the reason above, then rehearse again."


def compliance(evidence: Evidence) -> str:
    """The forbidden-compliance line: entry == exit figures of production (or of the golden database)."""
    prod = evidence.production
    if prod and "metrics" in prod:
        equal = prod["fingerprint"]["equal"]
        return (
            f"{'Zero production mutations' if equal else 'PRODUCTION CHANGED DURING THE READ'}. "
            f"Entry{'==' if equal else '!='}exit ({_figures(prod['metrics'])})."
        )
    intact = evidence.step(StepName.GOLDEN_INTACT)
    if intact and intact.figures:
        rel = "==" if intact.ok else "!="
        return (
            f"Production not read. Golden database entry{rel}exit ({_figures(intact.figures)}). "
            "No external dispatch, no shadow commit, no gate bypass."
        )
    return "No figures recorded."


def as_json(evidence: Evidence) -> dict[str, Any]:
    """The report as JSON: matrix, verdict, compliance line and the evidence itself."""
    return {
        "matrix": [asdict(r) for r in matrix(evidence)],
        "verdict": verdict(evidence),
        "meaning": meaning(evidence),
        "compliance": compliance(evidence),
        "evidence": evidence.as_json(),
    }


def as_markdown(evidence: Evidence) -> str:
    """The report as Markdown (report.md): matrix, verdict, compliance line and the steps."""
    lines = [
        f"# One-Roof release GO/NO-GO ({evidence.started_at})",
        "",
        f"Package {evidence.package.get('name', '?')} {evidence.package.get('version', '')} "
        f"`{evidence.package.get('sha256', 'unverified')}`; {evidence.tool}; rehearsal {evidence.seconds:.1f} s.",
        "",
        f"Golden `{evidence.golden}`: {evidence.golden_origin or 'origin not recorded'}.",
        "",
        "## Classification matrix",
        "",
        "| Component | Status | Evidence |",
        "|---|---|---|",
    ]
    lines += [f"| {r.component} | {r.status} | {r.evidence.replace('|', '/')} |" for r in matrix(evidence)]
    v = verdict(evidence)
    lines += [
        "",
        "## Overall verdict",
        "",
        f"RELEASE READINESS: {v['release_readiness']}. PRODUCTION EXECUTION: {v['production_execution']}.",
        "",
        meaning(evidence),
        "",
        "## Forbidden-compliance",
        "",
        compliance(evidence),
        "",
        "## Terms",
        "",
        *[f"- **{term}**: {text}" for term, text in GLOSSARY],
        "",
        "## Steps",
        "",
        "| # | step | result | exit | seconds |",
        "|---|---|---|---|---|",
    ]
    lines += [
        f"| {i} | {s.title} | {_result(evidence, s)}: {s.detail.replace('|', '/')} | "
        f"{'' if s.exit_code is None else s.exit_code} | {s.seconds:.2f} |"
        for i, s in enumerate(evidence.steps, 1)
    ]
    return "\n".join(lines) + "\n"


TEXT_WIDTH = 100  # the terminal matrix fits 100 columns: the evidence wraps under its row


def as_text(evidence: Evidence) -> str:
    """The matrix for a terminal: component and status on one line, the evidence wrapped below."""
    rows = matrix(evidence)
    width = max(len(r.component) for r in rows) + 2
    out = [f"{'Component':<{width}}Status"]
    for r in rows:
        out.append(f"{r.component:<{width}}{r.status}")
        out += textwrap.wrap(
            r.evidence, TEXT_WIDTH, initial_indent="    ", subsequent_indent="    ", break_on_hyphens=False
        )
    v = verdict(evidence)
    out.append("")
    for text in (
        f"Golden {evidence.golden}: {evidence.golden_origin or 'origin not recorded'}",
        f"RELEASE READINESS: {v['release_readiness']}",
        f"PRODUCTION EXECUTION: {v['production_execution']}",
        meaning(evidence),
        f"Forbidden-compliance: {compliance(evidence)}",
    ):
        out += textwrap.wrap(text, TEXT_WIDTH, subsequent_indent="  ", break_on_hyphens=False)
    return "\n".join(out) + "\n"


CSS = """body{font:15px/1.45 system-ui,sans-serif;margin:2rem auto;max-width:70rem;color:#1d232a;padding:0 1rem}
table{border-collapse:collapse;width:100%;margin:1rem 0}th,td{border:1px solid #ccd3da;padding:.45rem .6rem;
text-align:left;vertical-align:top}th{background:#eef2f5}.go{color:#0b6e2e;font-weight:600}.nogo{color:#a4161a;
font-weight:600}.rejected{color:#7a5c00;font-weight:600}.note{color:#5b6670;font-style:italic}.verdict{font-size:1.1rem;padding:.8rem 1rem;background:#f6f8fa;border-left:4px solid #345}
.bar{background:#4a7bd0;height:.8rem;display:inline-block;border-radius:2px}code{font-size:.9em}"""  # noqa: E501


def _inline(text: str) -> str:
    """Text for the HTML page, escaped, with inline code (`directus`) as <code>: the evidence and
    the verdicts quote database names and commands as Markdown does. An unpaired backtick stays.
    """
    parts = text.split("`")
    if len(parts) % 2 == 0:
        return html.escape(text)
    return "".join(f"<code>{html.escape(p)}</code>" if i % 2 else html.escape(p) for i, p in enumerate(parts))


def as_html(evidence: Evidence) -> str:
    """One self-contained page: matrix, verdict, compliance, figures and the step timeline."""
    e = html.escape
    v = verdict(evidence)
    longest = max((s.seconds for s in evidence.steps), default=1.0) or 1.0
    rows = "".join(
        f"<tr><td>{e(r.component)}</td>"
        f'<td class="{"rejected" if r.rejected else "go" if r.go else "nogo"}">{_inline(r.status)}</td>'
        f"<td>{_inline(r.evidence)}</td></tr>"
        for r in matrix(evidence)
    )
    steps = "".join(
        f'<tr><td>{i}</td><td>{e(s.title)}</td><td class="{"go" if s.ok else "nogo"}">{_result(evidence, s)}</td>'
        f"<td>{_inline(s.detail)}</td><td>{s.seconds:.2f} s<br>"
        f'<span class=bar style="width:{max(2, 160 * s.seconds / longest):.0f}px">'
        f"</span></td></tr>"
        for i, s in enumerate(evidence.steps, 1)
    )
    intact = evidence.step(StepName.GOLDEN_INTACT)
    figures = intact.figures if intact and intact.figures else {}
    prod_metrics = (evidence.production or {}).get("metrics")
    if prod_metrics:
        fig_rows = "".join(
            f"<tr><td>{e(k)}</td><td>{e(str(figures.get(k, '')))}</td><td>{e(str(prod_metrics.get(k, '')))}</td></tr>"
            for k in FIGURES
        )
    else:  # one note in place of an empty column
        fig_rows = "".join(
            f"<tr><td>{e(k)}</td><td>{e(str(figures.get(k, '')))}</td>"
            + (f"<td rowspan={len(FIGURES)} class=note>production not read: pass --prod-dsn</td>" if i == 0 else "")
            + "</tr>"
            for i, k in enumerate(FIGURES)
        )
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>One-Roof release GO/NO-GO</title><style>{CSS}</style></head>
<body><h1>One-Roof release GO/NO-GO</h1>
<p>{e(evidence.started_at)} · package {e(str(evidence.package.get("name", "?")))} <code>{e(str(evidence.package.get("sha256", "unverified")))}</code>
· {e(evidence.tool)} · rehearsal {evidence.seconds:.1f} s</p>
<p>Golden <code>{e(evidence.golden)}</code>: {_inline(evidence.golden_origin or "origin not recorded")}</p>
<h2>Classification matrix</h2><table><tr><th>Component</th><th>Status</th><th>Evidence</th></tr>{rows}</table>
<h2>Overall verdict</h2><p class="verdict">RELEASE READINESS: {_inline(v["release_readiness"])}<br>
PRODUCTION EXECUTION: {_inline(v["production_execution"])}</p>
<p>{_inline(meaning(evidence))}</p>
<h2>Forbidden-compliance</h2><p>{_inline(compliance(evidence))}</p>
<h2>Figures</h2><table><tr><th>metric</th><th>golden (after rehearsal)</th><th>production</th></tr>{fig_rows}</table>
<h2>Terms</h2><dl>{"".join(f"<dt>{e(t)}</dt><dd>{_inline(d)}</dd>" for t, d in GLOSSARY)}</dl>
<h2>Step timeline</h2><table><tr><th>#</th><th>step</th><th>result</th><th>detail</th><th>duration</th></tr>{steps}</table>
</body></html>
"""  # noqa: E501


def render(evidence: Evidence, fmt: str) -> str:
    """The report in `fmt`: json, html, text, or else Markdown."""
    if fmt == "json":
        return json.dumps(as_json(evidence), indent=2) + "\n"
    if fmt == "html":
        return as_html(evidence)
    if fmt == "text":
        return as_text(evidence)
    return as_markdown(evidence)
