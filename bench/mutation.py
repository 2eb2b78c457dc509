"""Mutation testing of the invariant suite and the gate: how many small changes to invariants/
and core/gate.py the tests kill.

    python bench/mutation.py run [--dsn ADMIN_DSN] [--minutes 45] [--write-docs]
    python bench/mutation.py report [--write-docs]                     # the last run's score again
    python bench/mutation.py survivors [--tests tests/test_x.py ...]   # re-judge the survivors
    python bench/mutation.py trust [--dsn ADMIN_DSN] [--minutes 60] [--modules core/x.py ...] [--write-docs]
    python bench/mutation.py trust --resume --modules core/x.py ...  # go on where the time bound stopped
    python bench/mutation.py trust-report [--write-docs]               # the trust run's score again
    python bench/mutation.py trust-survivors --modules core/x.py --tests tests/test_y.py ...  # re-judge
    python bench/mutation.py trust-recheck --modules core/x.py   # ExceptionReplacer's kills, again (SITE)

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

`trust` does the same for the code that handles trust and the release (TRUST below: signatures,
passkeys, approvals, the package, the release and rollback, the rehearsal evidence, the ledger),
one cosmic-ray session per module, each with a check of its own: the project's tests that cover
that module, run as themselves by pytest (`--noconftest -p mutation_plugin`: a server and a golden
database prepared once, not once per mutant), stopping at the first failure. Before a module's
session runs, its check runs once under coverage, each test's node id its context
(mutation_contexts.py): a mutant on a line the check never executes survives by construction, and
is recorded as survived ("not reached") without being run; any other mutant runs only the tests
that execute the lines it changes (`trust-check`, cosmic-ray's test command), or the whole check
when one of those lines ran outside every test. The modules share the --minutes bound; a mutant
not run is reported as not run. `coverage` comes from PyPI too. MUTATION_STATE and MUTATION_RUN
name another state folder and other databases, for a second run in another worktree.
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
# MUTATION_STATE and MUTATION_RUN name another folder and other databases, for a second run beside the
# first (in another worktree: two runs in one checkout would see each other's mutants on disk)
STATE = Path(os.environ.get("MUTATION_STATE") or Path(tempfile.gettempdir()) / "oneroof-mutation")

# The trust and release code (issue 18), in the order its sessions run, each with the pytest
# arguments of its check: the tests that cover the module, the cheap and decisive first (the check
# stops at the first failure), none that needs a rehearsal server. The one that needs Directus
# (tests/test_approvals_directus.py: `whoami` and `record`) comes last; it skips without node.
TRUST: dict[str, tuple[str, ...]] = {
    "core/signatures.py": (
        "tests/test_trust_root.py",
        "tests/test_ssh_signing.py",
        "tests/test_gate_policy.py",
        "tests/test_signatures.py",
        "tests/test_user_verification.py",
        "tests/test_siege_statements.py",
        "tests/test_operator_side.py::test_the_trust_file_and_its_directories_follow_openssh_strict_modes",
        "tests/test_passkeys.py::test_a_passkey_assertion_that_fails_a_check_is_refused_with_its_reason",
        "-k",
        "not test_approve and not audit and not cli and not bad_input and not rehearsal and not monitor",
    ),
    "core/passkeys.py": (
        "tests/test_passkey_lines.py",
        "tests/test_passkeys.py",
        "tests/test_user_verification.py::test_a_user_verified_passkey_counts_under_the_policy",
    ),
    "core/package.py": (
        "tests/test_package_refusals.py",
        "tests/test_package.py",
        "tests/test_operator_side.py",
        "tests/test_signatures.py::test_a_sealed_package_needs_its_signature",
        "-k",
        "not cli and not pipe and not trust_root and not evidence and not numeric and not planted"
        " and not standard_conforming and not pinned_again and not ends_the_transaction",
    ),
    "core/evidence.py": (
        "tests/test_evidence_reading.py",
        "tests/test_operator_side.py::test_the_evidence_a_rehearsal_writes_has_the_shape",
        "tests/test_operator_side.py::test_random_types_in_evidence_never_give_a_traceback",
        "tests/test_rehearsed.py::test_the_bound_tables_are_what_the_package_reads_or_writes_but_the_approvals",
        "tests/test_siege_statements.py::test_a_statement_that_names_rehearsal_evidence_counts_only_with_it",
        "tests/test_siege_statements.py::test_a_swapped_pg_control_system_binds_no_rehearsal",
        "tests/test_operator_side.py::test_evidence_with_wrong_types_is_one_line_exit_2",
    ),
    "executor/approvals.py": (
        "tests/test_approval_plan.py",
        "tests/test_passkeys.py::test_the_auditor_re_checks_passkey_approvals_offline",
        "tests/test_signatures.py::test_the_ledger_records_the_trust_root_and_the_audit_verifies",
        "tests/test_signatures.py::test_the_audit_names_a_different_trust_root",
        "tests/test_user_verification.py::test_the_auditor_re_checks_approvals_under_the_executors_policy",
        "tests/test_siege_statements.py::test_approve_signs_the_database_identity",
        "tests/test_siege_statements.py::test_approve_off_a_clone_names_the_evidence_reviewed",
        "tests/test_approvals_directus.py",
    ),
    "executor/release.py": (
        "tests/test_release_privileges_named.py",
        "tests/test_release_settings.py",
        "tests/test_release_privileges_checked.py",
        "tests/test_release_locks.py",
        "tests/test_release_stage_sessions.py",
        "tests/test_operator_side.py::test_a_statement_that_ends_the_transaction_is_still_caught_at_run_time",
        "tests/test_races.py::test_a_gate_session_failed_under_another_executor_s_lock_names_the_lock",
        "tests/test_concurrent_writes.py::test_an_uncommitted_conflicting_row_held_through_the_rollout_is_named",
        "tests/test_release.py::test_approved_rollout_reaches_exactly_the_finalized_figures",
        "tests/test_release.py::test_lock_held_raises_at_once",
        "tests/test_release.py::test_a_golden_or_read_only_database_is_refused_up_front",
        "tests/test_release.py::test_revocation_after_the_gate_session_blocks_under_the_lock",
        "tests/test_hardening.py::test_a_rollout_blocked_under_the_lock_locks_no_row",
        "tests/test_release.py::test_broken_tier_rolls_everything_back",
        "tests/test_release.py::test_an_approval_is_spent_by_a_deployment_that_was_rolled_back",
        "tests/test_release.py::test_after_a_rollback_ospa_counts_rows_and_the_gate_counts_valid_approvals",
        "tests/test_release.py::test_pytest_addopts_cannot_reach_the_gate_session",
        "tests/test_release.py::test_ctrl_c_after_the_commit_says_the_tiers_are_live",
        "tests/test_concurrent_writes.py::test_a_conflicting_row_committed_while_the_rollout_waits_is_refused",
    ),
    "core/ledger.py": ("tests/test_siege_ledger.py",),
}
# the prepared databases are oneroof_t_mut_*, as a test run's (tests/support/testing.py)
TRUST_RUN = os.environ.get("MUTATION_RUN", "mut")


# cosmic-ray's ExceptionReplacer turns `except X` into `except CosmicRayTestingException`, a name
# that only cosmic-ray's own process defines: in a check's processes, a handler the test reaches
# would raise NameError, and `except (X, Y)` would no longer catch Y, a kill the mutant did not
# earn. Every process of a check defines it as a builtin, from this sitecustomize on its path.
SITE = STATE / "site"
SITECUSTOMIZE = """import builtins

from cosmic_ray.exceptions import CosmicRayTestingException

builtins.CosmicRayTestingException = CosmicRayTestingException
"""


def child_env() -> dict[str, str]:
    """The environment of cosmic-ray and of each check: no pytest or oneroof settings of the caller's,
    but its PYTHONPATH (a worktree serves its own oneroof that way), then the checkout and bench/,
    and first SITE, whose sitecustomize defines cosmic-ray's replacement exception (see SITE).
    """
    SITE.mkdir(parents=True, exist_ok=True)
    (SITE / "sitecustomize.py").write_text(SITECUSTOMIZE)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTEST_", "ONEROOF_"))}
    paths = [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p]
    return {
        **env,
        "PYTHONDONTWRITEBYTECODE": "1",
        "PYTHONPATH": os.pathsep.join([str(SITE), *paths, str(ROOT), str(ROOT / "bench")]),
    }


def trust_check(module: str) -> list[str]:
    """The test command of `module`'s mutants."""
    return [sys.executable, "-B", "-m", "pytest", "--noconftest", "-p", "mutation_plugin", "-p", "no:xdist"] + [
        "-x",
        "-q",
        "--no-header",
        "-o",
        "addopts=-p no:cacheprovider -p no:benchmark",
        *TRUST[module],
    ]


def mutant_check(module: str) -> list[str]:
    """cosmic-ray's test command for `module`: `trust-check`, which runs the tests that execute the mutant."""
    return [sys.executable, "-B", str(Path(__file__).resolve()), "trust-check", "--modules", module]


def trust_session(module: str) -> Path:
    return STATE / f"trust-{module.replace('/', '-')}.sqlite"


def trust_map(module: str) -> Path:
    return STATE / f"map-{module.replace('/', '-')}.json"


def coverage_map(module: str, env: dict[str, str]) -> set[int] | None:
    """Run `module`'s check, unmutated, once under coverage, with each test's name as coverage's
    context (bench/mutation_contexts.py), in the check's process and the `oneroof` processes it
    starts. Write the map of each executed line to the tests that execute it (`trust_map`), with
    the module's source and the tests' order, for `trust-check`; return the lines the check never
    executes (None when the check fails).
    """
    for old in STATE.glob("coverage*"):
        old.unlink()
    rc = STATE / "coveragerc"
    rc.write_text(
        f"[run]\ndata_file = {STATE / 'coverage'}\nparallel = true\npatch = subprocess\ninclude = */{module}\n"
    )
    order = STATE / "order.json"
    command = trust_check(module)
    ran = subprocess.run(
        [sys.executable, "-B", "-m", "coverage", "run", f"--rcfile={rc}", *command[2:], "-p", "mutation_contexts"],
        cwd=ROOT,
        env={**env, "MUTATION_ORDER": str(order)},
        check=False,
        capture_output=True,
        text=True,
    )
    if ran.returncode != 0:
        print(f"{module}: the unmutated code fails its check: {ran.stdout.strip().splitlines()[-3:]}")
        return None
    report = STATE / "coverage.json"
    for step in (["combine"], ["json", "--show-contexts", "-o", str(report)]):
        subprocess.run(
            [sys.executable, "-m", "coverage", *step, f"--rcfile={rc}"],
            cwd=ROOT,
            env=env,
            check=True,
            capture_output=True,
        )
    files = json.loads(report.read_text())["files"]
    contexts: dict[str, set[str]] = {}
    for entry in files.values():
        for line, names in entry.get("contexts", {}).items():
            contexts.setdefault(line, set()).update(names)
    tests = json.loads(order.read_text())
    rank = {name: i for i, name in enumerate(tests)}
    trust_map(module).write_text(
        json.dumps(
            {
                "source": (ROOT / module).read_text(),
                "tests": tests,
                # "" is no test: the line ran outside every test (an import, a session's set-up)
                "lines": {line: sorted(names, key=lambda n: rank.get(n, -1)) for line, names in contexts.items()},
            }
        )
    )
    # a statement's continuation lines are neither executed nor missing: only `missing` is certain
    return {line for entry in files.values() for line in entry["missing_lines"]}


def changed_lines(before: str, after: str) -> set[int]:
    """The lines of `before` (1-based) that `after` changes; a line inserted counts as the one it follows."""
    import difflib

    lines: set[int] = set()
    matcher = difflib.SequenceMatcher(a=before.splitlines(), b=after.splitlines(), autojunk=False)
    for tag, i1, i2, _j1, _j2 in matcher.get_opcodes():
        if tag in ("replace", "delete"):
            lines.update(range(i1 + 1, i2 + 1))
        elif tag == "insert":
            lines.add(max(i1, 1))
    return lines


def function_bodies(source: str) -> set[int]:
    """The lines of `source` inside the body of a function or lambda: what runs when it is called,
    not when the module is imported (a def line, its defaults and decorators run at the import).
    """
    import ast

    lines: set[int] = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            lines.update(range(node.body[0].lineno, (node.end_lineno or node.lineno) + 1))
        elif isinstance(node, ast.Lambda):
            lines.update(range(node.body.lineno, (node.body.end_lineno or node.body.lineno) + 1))
    return lines


def selected_check(module: str) -> list[str]:
    """The test command of the mutant of `module` now on disk: only the tests that execute the lines
    it changes (every test of a module whose import ran one), in the check's order, or the whole
    check when a changed line is not in a function's body (it runs at the module's import, and every
    test sees it), ran outside every test and test module (at a plugin's import), or is not in the
    map (a statement's continuation line).
    """
    mapped = json.loads(trust_map(module).read_text())
    bodies = function_bodies(mapped["source"])
    chosen: set[str] = set()
    for line in changed_lines(mapped["source"], (ROOT / module).read_text()):
        names = mapped["lines"].get(str(line))
        if line not in bodies or not names or "" in names:  # run at the module's import: every test sees it
            return trust_check(module)
        for name in names:
            if name.startswith("collect:"):  # a test module's import ran it: every test of that module
                chosen.update(t for t in mapped["tests"] if t.startswith(name.removeprefix("collect:") + "::"))
            else:
                chosen.add(name)
    if not chosen:
        return trust_check(module)
    base = trust_check(module)[: -len(TRUST[module])]
    return base + [name for name in mapped["tests"] if name in chosen]


def trust_mutant_check(module: str) -> int:
    """`trust-check`: cosmic-ray's test command for one mutant of `module`; its exit code is the check's."""
    return subprocess.run(selected_check(module), cwd=ROOT, check=False).returncode


def trust(admin: str, minutes: float, modules: list[str], write_docs: bool = False, resume: bool = False) -> int:
    """Prepare a golden database, run one cosmic-ray session per module of `modules`, report, clean up.
    With `resume`, a module whose session and map are in STATE (a run the time bound stopped) goes
    on with the mutants not run yet.
    """
    from cosmic_ray.work_db import WorkDB, use_db
    from cosmic_ray.work_item import TestOutcome, WorkerOutcome, WorkResult

    from oneroof.core import package
    from oneroof.harness import golden
    from oneroof.harness.db import connect
    from tests.support.testing import _cleanup

    STATE.mkdir(parents=True, exist_ok=True)
    info = {"run": TRUST_RUN, "admin": admin, "golden": f"oneroof_t_{TRUST_RUN}_golden"}
    _cleanup(info)
    with connect(admin, autocommit=True) as conn:
        info["version"] = str(conn.execute("SHOW server_version").fetchone()["server_version"])  # type: ignore[index]
    golden.build(admin, name=info["golden"], package_sha256=package.load().sha256)
    (STATE / "server.json").write_text(json.dumps(info))
    env = child_env()
    originals = {name: (ROOT / name).read_bytes() for name in modules}
    deadline = time.monotonic() + minutes * 60
    try:
        for index, module in enumerate(modules):
            session = trust_session(module)
            resumed = resume and session.exists() and trust_map(module).exists()
            if not resumed:
                session.unlink(missing_ok=True)
            config = STATE / "trust.toml"
            config.write_text(
                "[cosmic-ray]\n"
                f"module-path = {json.dumps(module)}\n"
                "timeout = 300.0\nexcluded-modules = []\n"
                f"test-command = {json.dumps(subprocess.list2cmdline(mutant_check(module)))}\n\n"
                '[cosmic-ray.distributor]\nname = "local"\n\n'
                "[cosmic-ray.filters.operators-filter]\n"
                f"exclude-operators = {json.dumps(EXCLUDED_OPERATORS)}\n"
            )
            if resumed:  # the mutants left by the time bound, on the same source and map
                if json.loads(trust_map(module).read_text())["source"] != (ROOT / module).read_text():
                    print(f"{module}: the source is not the one the session was made of; run without --resume")
                    return 1
                lines: set[int] | None = set()
            else:
                subprocess.run(["cosmic-ray", "init", str(config), str(session)], cwd=ROOT, env=env, check=True)
                subprocess.run(["cr-filter-operators", str(session), str(config)], cwd=ROOT, env=env, check=True)
                lines = coverage_map(module, env)
            if lines is None:
                return 1
            with use_db(str(session), WorkDB.Mode.open) as db:
                for item in list(db.pending_work_items):
                    if item.mutations[0].start_pos[0] in lines:
                        not_reached = WorkResult(
                            worker_outcome=WorkerOutcome.NORMAL, test_outcome=TestOutcome.SURVIVED, output="not reached"
                        )
                        db.set_result(item.job_id, not_reached)
            share = (deadline - time.monotonic()) / (len(modules) - index)
            started = time.monotonic()
            try:
                subprocess.run(
                    ["cosmic-ray", "exec", str(config), str(session)],
                    cwd=ROOT,
                    env=env,
                    check=False,
                    timeout=max(share, 1),
                )
            except subprocess.TimeoutExpired:
                print(f"{module}: stopped after {share / 60:.1f} minutes, its share of the bound")
            finally:
                (ROOT / module).write_bytes(originals[module])
            print(f"{module}: cosmic-ray exec {time.monotonic() - started:.0f} s", flush=True)
        return trust_report(modules, write_docs)
    finally:
        for name, data in originals.items():  # a mutant interrupted by the time bound stays on disk otherwise
            (ROOT / name).write_bytes(data)
        _cleanup(info)


def trust_survivors(admin: str, modules: list[str], tests: list[str]) -> int:
    """Second pass of `trust`: apply each survivor of the modules' sessions again and run `tests`
    (pytest arguments, tests of their own beyond the check, with the prepared golden database);
    print which are killed now. The sessions are left as the run wrote them.
    """
    from oneroof.core import package
    from oneroof.harness import golden
    from tests.support.testing import _cleanup

    info = json.loads((STATE / "server.json").read_text())
    golden.build(admin, name=info["golden"], package_sha256=package.load().sha256)
    env = child_env()
    command = [sys.executable, "-B", "-m", "pytest", "--noconftest", "-p", "mutation_plugin", "-p", "no:xdist"]
    command += ["-x", "-q", "--no-header", "-o", "addopts=-p no:cacheprovider -p no:benchmark", *tests]
    originals = {name: (ROOT / name).read_bytes() for name in modules}
    try:
        for module in modules:
            dump = subprocess.run(
                ["cosmic-ray", "dump", str(trust_session(module))], capture_output=True, text=True, check=True
            ).stdout
            for line in dump.splitlines():
                work, result = json.loads(line)
                if result is None or result.get("test_outcome") != "survived":
                    continue
                mutation = work["mutations"][0]
                where = f"{module}:{mutation['start_pos'][0]} {mutation['operator_name']} #{mutation['occurrence']}"
                apply = ["cosmic-ray", "apply", module, mutation["operator_name"], str(mutation["occurrence"])]
                if subprocess.run(apply, cwd=ROOT, env=env, check=False, capture_output=True).returncode != 0:
                    print(f"  not applied (cosmic-ray apply failed): {where}", flush=True)
                    (ROOT / module).write_bytes(originals[module])
                    continue
                try:
                    ran = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, check=False)
                finally:
                    (ROOT / module).write_bytes(originals[module])
                print(f"  {'killed now' if ran.returncode != 0 else 'survived'}: {where}", flush=True)
    finally:
        for name, data in originals.items():
            (ROOT / name).write_bytes(data)
        _cleanup(info)
    return 0


def trust_recheck(admin: str, modules: list[str]) -> int:
    """Run each killed ExceptionReplacer mutant of the modules' sessions again, with cosmic-ray's
    replacement exception defined (SITE), by the test command of the run (`selected_check`); one that
    survives now is recorded as survived in its session, with the output "survived the recheck".
    For sessions run before SITE existed, whose kills of that operator may be a NameError's.
    """
    from cosmic_ray.work_db import WorkDB, use_db
    from cosmic_ray.work_item import TestOutcome, WorkerOutcome, WorkResult

    from oneroof.core import package
    from oneroof.harness import golden
    from tests.support.testing import _cleanup

    info = json.loads((STATE / "server.json").read_text())
    golden.build(admin, name=info["golden"], package_sha256=package.load().sha256)
    env = child_env()
    originals = {name: (ROOT / name).read_bytes() for name in modules}
    try:
        for module in modules:
            with use_db(str(trust_session(module)), WorkDB.Mode.open) as db:
                items = [
                    (item, result)
                    for item, result in db.completed_work_items
                    if item.mutations[0].operator_name == "core/ExceptionReplacer"
                    and result.test_outcome == TestOutcome.KILLED
                ]
                for item, _result in items:
                    mutation = item.mutations[0]
                    where = f"{module}:{mutation.start_pos[0]} #{mutation.occurrence}"
                    apply = ["cosmic-ray", "apply", module, mutation.operator_name, str(mutation.occurrence)]
                    if subprocess.run(apply, cwd=ROOT, env=env, check=False, capture_output=True).returncode != 0:
                        print(f"  not applied (cosmic-ray apply failed), kept as killed: {where}", flush=True)
                        (ROOT / module).write_bytes(originals[module])
                        continue
                    try:
                        ran = subprocess.run(
                            selected_check(module), cwd=ROOT, env=env, capture_output=True, text=True, check=False
                        )
                    finally:
                        (ROOT / module).write_bytes(originals[module])
                    if ran.returncode == 0:
                        survived = WorkResult(
                            worker_outcome=WorkerOutcome.NORMAL,
                            test_outcome=TestOutcome.SURVIVED,
                            output="survived the recheck",
                        )
                        db.set_result(item.job_id, survived)
                    print(f"  {'killed still' if ran.returncode else 'survived the recheck'}: {where}", flush=True)
    finally:
        for name, data in originals.items():
            (ROOT / name).write_bytes(data)
        _cleanup(info)
    return 0


def tally(session: Path) -> dict[str, Any]:
    """A session's counts: run, killed, survived (and of those not reached), not run, excluded; its survivors."""
    dump = subprocess.run(["cosmic-ray", "dump", str(session)], capture_output=True, text=True, check=True).stdout
    counts: dict[str, Any] = {"killed": 0, "survived": 0, "not reached": 0, "not run": 0, "excluded": 0}
    survivors = []
    for line in dump.splitlines():
        work, result = json.loads(line)
        if result is None:
            counts["not run"] += 1
        elif result.get("worker_outcome") == "skipped":
            counts["excluded"] += 1
        elif result.get("test_outcome") == "killed" or result.get("worker_outcome") in (
            "exception",
            "abnormal",
            "timeout",
        ):
            counts["killed"] += 1
        else:
            counts["survived"] += 1
            mutation = work["mutations"][0]
            where = f"{mutation['module_path']}:{mutation['start_pos'][0]} {mutation['operator_name']}"
            where += f" #{mutation['occurrence']}"
            if result.get("output") == "not reached":
                counts["not reached"] += 1
                where += " (not reached)"
            survivors.append(where)
    counts["survivors"] = survivors
    return counts


def trust_report(modules: list[str], write_docs: bool = False) -> int:
    """Print the score of each module's session and of all, and the survivors; with write_docs,
    write them into the `trust` block of docs/results/mutation.md.

    cosmic-ray runs a session's mutants in random order, so those the time bound left are a random
    sample: the score of a session not run to the end is estimated, as the share of mutants reached
    times the share of those run that were killed (those not reached all survive).
    """
    lines = [
        "| module | mutants | not reached | reached, run | killed | survived | not run | score |",
        "|---|---|---|---|---|---|---|---|",
    ]
    survivors: list[str] = []
    estimated = exact = 0.0
    total = 0
    for module in modules:
        if not trust_session(module).exists():
            continue
        got = tally(trust_session(module))
        mutants = got["killed"] + got["survived"] + got["not run"]
        run = got["killed"] + got["survived"] - got["not reached"]
        reached = (mutants - got["not reached"]) / mutants if mutants else 0
        score = reached * got["killed"] / run if run else 0.0
        estimated += score * mutants
        total += mutants
        exact += got["killed"]
        survivors += got["survivors"]
        shown = f"{100 * score:.1f} %" + (" (est.)" if got["not run"] else "")
        lines.append(
            f"| `{module}` | {mutants} | {got['not reached']} | {run} | {got['killed']} | "
            f"{got['survived'] - got['not reached']} | {got['not run']} | {shown} |"
        )
    summary = (
        f"{total} mutants; killed {exact:.0f}; score {100 * estimated / total if total else 0:.1f} % "
        "(estimated where a session did not run to the end)"
    )
    print("\n".join(lines))
    print(summary)
    for survivor in survivors:
        print(f"  survived: {survivor}")
    if write_docs:
        import results

        body = "\n".join([*lines, "", f"**{summary}**", "", *(f"- survived: `{s}`" for s in survivors)])
        page = results.DOCS / "mutation.md"
        results.write(page, body, results.command_line("mutation.py", sys.argv[1:]), name="trust")
        print(f"wrote {page}")
    return 0


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
    env = child_env()
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
    env = child_env()

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
        choices=(
            "run",
            "check",
            "report",
            "survivors",
            "trust",
            "trust-report",
            "trust-survivors",
            "trust-check",
            "trust-recheck",
        ),
        help="run: prepare, mutate, report; survivors: re-judge a run's survivors with today's tests",
    )
    parser.add_argument("--dsn", help="admin DSN of a server (default: the embedded server under $ONEROOF_HOME)")
    parser.add_argument("--minutes", type=float, default=45.0, help="time bound of the cosmic-ray run")
    parser.add_argument("--modules", nargs="*", default=list(TRUST), help="trust: the modules to mutate, of TRUST")
    parser.add_argument(
        "--resume", action="store_true", help="trust: go on with the mutants a time bound left (same source)"
    )
    parser.add_argument("--session", default=str(STATE / "session.sqlite"), help="survivors: the run's session")
    parser.add_argument("--tests", nargs="*", default=[], help="survivors: pytest files of tests/ to run too")
    parser.add_argument(
        "--write-docs", action="store_true", help="run, report: write the score into docs/results/mutation.md"
    )
    args = parser.parse_args()
    if args.action == "check":
        return check()
    if args.action == "trust-check":
        return trust_mutant_check(args.modules[0])
    if args.action == "report":
        return report(STATE / "session.sqlite", args.write_docs)
    if args.action == "trust-report":
        return trust_report(args.modules, args.write_docs)
    from oneroof.core import target

    admin = args.dsn or target.admin_dsn(None)
    if args.action == "survivors":
        return survivors(admin, Path(args.session), args.tests)
    if args.action == "trust":
        unknown = sorted(set(args.modules) - set(TRUST))
        if unknown:
            parser.error(f"--modules: {unknown} not among {list(TRUST)}")
        return trust(admin, args.minutes, args.modules, args.write_docs, args.resume)
    if args.action == "trust-survivors":
        return trust_survivors(admin, args.modules, args.tests)
    if args.action == "trust-recheck":
        return trust_recheck(admin, args.modules)
    return run(admin, args.minutes, args.write_docs)


if __name__ == "__main__":
    raise SystemExit(main())
