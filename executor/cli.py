"""The `oneroof` command line: parse arguments, call one plain function, print, return an exit code."""

from __future__ import annotations

import argparse
import contextlib
import difflib
import json
import math
import os
import sys
import threading
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn

import psycopg

from oneroof.core import package, target
from oneroof.executor import __version__
from oneroof.harness import capture, catalog, clones, golden, server
from oneroof.harness.db import check_identifier, connect, first_line, parse
from oneroof.harness.errors import ExitCode, OneroofError, UsageError

if TYPE_CHECKING:  # imported where used: a command loads only what it needs
    from oneroof.core.signatures import TrustRoot
    from oneroof.executor.directus import Session

STAGES = ("baseline", "greenfield", "finalized", "gate")
# `verify` passes pytest's own exit codes through as they are, not as ExitCode members (0 passed,
# 1 failed, 2 the session refused its target, 5 no tests ran), but one: pytest's usage error (its 4)
# becomes ExitCode.USAGE, so that 4 always means package integrity.
PYTEST_USAGE_ERROR = 4


class Parser(argparse.ArgumentParser):
    """argparse with one-line errors (exit 2) that point at the --help of the command they are
    about, and a "did you mean" for a mistyped choice.
    """

    def error(self, message: str) -> NoReturn:
        """One line on stderr, exit 2."""
        self.exit(ExitCode.USAGE, f"{self.prog}: error: {message} (see `{self.prog} --help`)\n")

    def _check_value(self, action: argparse.Action, value: Any) -> None:
        # argparse's own hook for choices (commands, actions, --stage...): the nearest choice
        # instead of the whole list when there is one, so a typo's line says what was meant.
        if action.choices is None or value in action.choices:
            return
        choices = [str(choice) for choice in action.choices]
        close = difflib.get_close_matches(str(value), choices, n=1)
        hint = f"; did you mean `{close[0]}`?" if close else f" (choose from {', '.join(map(repr, choices))})"
        raise argparse.ArgumentError(action, f"invalid choice: {value!r}{hint}")


def _err(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def _progress(message: str) -> None:
    _err(f"  .. {message}")


def _package_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--package",
        default=str(package.DEFAULT_DIR),
        metavar="DIR",
        help="release package directory (default: rollout/ in the checkout)",
    )
    parser.add_argument("--expect-sha256", default=None, metavar="SHA256", help="the package hash the operator pinned")


def _trust_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--allowed-signers",
        default=None,
        metavar="FILE",
        help="allowed-signers file (ssh-keygen format, from the reviewed repository) that "
        "approvals' signed statements are verified against (default $ONEROOF_ALLOWED_SIGNERS)",
    )
    parser.add_argument(
        "--allowed-signers-sha256",
        default=None,
        metavar="SHA256",
        help="the SHA-256 the allowed-signers file must have: a pin of the reviewed trust root, refused "
        "when it differs (default $ONEROOF_ALLOWED_SIGNERS_SHA256)",
    )
    parser.add_argument(
        "--require-user-verification",
        action="store_true",
        help="count only approvals by a user-verified authenticator (a passkey, or a FIDO key the trust file "
        "lists with verify-required), whatever the manifest says (default $ONEROOF_REQUIRE_USER_VERIFICATION)",
    )


def _rehearsal_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--rehearsal",
        default=None,
        metavar="FILE",
        help="evidence.json of a GO rehearsal of this package on a snapshot of the target; a target "
        "that is not a marked clone is BLOCKED without one, or when a table the package reads or "
        "writes changed since the snapshot (default $ONEROOF_REHEARSAL)",
    )


def _release_log_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--release-log",
        default=None,
        metavar="FILE",
        help="the operator's append-only release log (JSON lines): rollout and rollback record there the "
        "statements they spent and the ledger's chain head; the gate refuses a statement found in it and a "
        "ledger that lost the head (default $ONEROOF_RELEASE_LOG, else $ONEROOF_HOME/release-log.jsonl)",
    )


def _release_log(args: argparse.Namespace) -> Any:
    from oneroof.core import ledger, settings

    return ledger.ReleaseLog.at(args.release_log or os.environ.get(settings.RELEASE_LOG.env), server.home_dir())


def _rehearsal(args: argparse.Namespace) -> Any:
    from oneroof.core import evidence as rehearsal

    return rehearsal.from_flag(args.rehearsal)


def _trust(args: argparse.Namespace) -> Any:
    from oneroof.core import settings, signatures

    if getattr(args, "require_user_verification", False):  # the gate and the sessions read it from here
        os.environ[settings.REQUIRE_USER_VERIFICATION.env] = "1"
    return signatures.trust_root(args.allowed_signers, args.allowed_signers_sha256)


def _dsn_option(parser: argparse.ArgumentParser, what: str) -> None:
    parser.add_argument(
        "--dsn",
        metavar="DSN",
        help=f"libpq URI or key=value string of {what}; without it the PG* "
        "variables, else the embedded server (started on demand)",
    )


def _json_option(parser: argparse.ArgumentParser, shape: str) -> None:
    parser.add_argument(
        "--json", action="store_true", help=f"print one JSON object instead of the text ({shape}; see the docs)"
    )


def _color_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--no-color",
        action="store_true",
        help="no colour on the verdict lines (also NO_COLOR; there is none in a pipe or a file anyway)",
    )


def _print_painted(args: argparse.Namespace, text: str) -> None:
    """`text` on stdout, its verdict lines coloured on a terminal (see oneroof.executor.output)."""
    from oneroof.executor import output

    print(output.paint(text, output.colour_wanted(getattr(args, "no_color", False), sys.stdout)))


def _amount(text: str) -> float:
    """The type of --wait and --older-than: a finite number, 0 or more (not -5, nan or inf)."""
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not (math.isfinite(value) and value >= 0):
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of 0 or more")
    return value


def _whole(minimum: int) -> Callable[[str], int]:
    """The type of a count (verify -n): a whole number of `minimum` or more."""

    def whole(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            value = minimum - 1
        if value < minimum:
            raise argparse.ArgumentTypeError(f"{text!r} is not a whole number of {minimum} or more")
        return value

    return whole


# -- commands: each one's parser (_add_X) beside its handler (cmd_X) --------------------------


def _add_server(sub: argparse._SubParsersAction[Parser]) -> None:
    p = sub.add_parser(
        "server",
        help="the embedded PostgreSQL 18 server",
        description="Start, stop or inspect the embedded PostgreSQL server; its data lives under "
        "$ONEROOF_HOME (default: the user data directory).",
    )
    p.add_argument(
        "action",
        choices=("start", "stop", "status", "url"),
        help="start: start it (or find it running) and print its DSN; stop: stop it; status: whether it runs, "
        "with its port, pid and data directory; url: print its DSN (starting it if it is not running)",
    )
    p.set_defaults(func=cmd_server)


def cmd_server(args: argparse.Namespace) -> ExitCode:
    """`oneroof server start|stop|status|url`."""
    home = server.home_dir()
    if args.action == "start":
        before = server.status(home)
        running = server.start(home)
        verb = "already running" if before else "started"
        _err(f"embedded PostgreSQL {verb} on 127.0.0.1:{running.port} (pid {running.pid}, data {running.pgdata})")
        print(running.dsn())
    elif args.action == "stop":
        print("stopped" if server.stop(home) else f"not running (data {home / 'pgdata'})")
    elif args.action == "status":
        found = server.status(home)
        print(
            f"running on 127.0.0.1:{found.port} (pid {found.pid}, data {found.pgdata})"
            if found
            else f"not running (data {home / 'pgdata'})"
        )
    else:
        print(server.start(home).dsn())
    return ExitCode.OK


def _print_provenance(name: str, prov: Any) -> None:
    print(f"{name}\t{prov.describe()}")
    if prov.kind == "production snapshot":
        for key in (
            "host",
            "port",
            "database",
            "system_identifier",
            "server_version",
            "taken_at",
            "fingerprint",
            "tool",
        ):
            print(f"  {key:<18}{getattr(prov, key) or 'unknown'}")
    elif prov.tool:
        print(f"  {'built_at':<18}{prov.taken_at}\n  {'tool':<18}{prov.tool}")


def _actions(parser: argparse.ArgumentParser) -> argparse._SubParsersAction[Parser]:
    """The subparsers of a command's actions, so that each action has its own --help."""
    return parser.add_subparsers(dest="action", required=True, metavar="ACTION", parser_class=Parser)


def _name_option(parser: argparse.ArgumentParser, default: str | None, shown: str) -> None:
    parser.add_argument("--name", default=default, metavar="NAME", help=f"database name (default {shown})")


def _replace_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--replace", action="store_true", help="rebuild (or re-snapshot) an existing golden database that oneroof made"
    )


def _add_golden(sub: argparse._SubParsersAction[Parser]) -> None:
    p = sub.add_parser(
        "golden",
        help="build, snapshot, list or show golden databases",
        description="Golden databases: the synthetic one that build makes, captures of production "
        "that snapshot makes, and where each came from (list, show). `oneroof golden ACTION --help` "
        "shows the options of each action.",
    )
    actions = _actions(p)
    build = actions.add_parser(
        "build",
        help="build the synthetic golden database",
        description="Build the synthetic golden database: every Directus 11 system table, 35 "
        "governed collections, system_issues (204,556 rows x scale) and the tier-1 governance layer.",
    )
    build.add_argument("--scale", type=int, default=1, metavar="N", help="multiplies the large tables (default 1)")
    _name_option(build, catalog.GOLDEN_NAME, f"{catalog.GOLDEN_NAME}, the synthetic golden")
    _replace_option(build)
    build.add_argument(
        "--package",
        default=str(package.DEFAULT_DIR),
        metavar="DIR",
        help="release package whose hash the proposal names",
    )
    snapshot = actions.add_parser(
        "snapshot",
        help="capture production, read-only, into a golden database",
        description="A consistent read-only copy of production, its secrets replaced by markers, equal "
        "to production's fingerprint.",
    )
    snapshot.add_argument(
        "--from",
        dest="prod_dsn",
        default=None,
        metavar="DSN",
        help="libpq DSN of the production database (read-only; its password in ~/.pgpass, never in the DSN)",
    )
    snapshot.add_argument(
        "--jobs",
        type=int,
        default=1,
        metavar="N",
        help="1 (default): stream pg_dump into pg_restore; N > 1: N-job dump, then N-job restore",
    )
    _name_option(
        snapshot,
        None,
        f"{catalog.CAPTURE_PREFIX}<production database>, so a capture never replaces the synthetic golden",
    )
    _replace_option(snapshot)
    listing = actions.add_parser("list", help="the golden databases and where each came from")
    _json_option(listing, '{"goldens": [{"name", "kind", "description", "provenance"}]}')
    show = actions.add_parser("show", help="where one golden database came from")
    show.add_argument("target", nargs="?", metavar="NAME", help="the golden database")
    for action in (build, snapshot, listing, show):
        _dsn_option(action, "the server (any database on it)")
    p.set_defaults(func=cmd_golden)


def cmd_golden(args: argparse.Namespace) -> ExitCode:
    """`oneroof golden build|snapshot|list|show`."""
    admin = target.admin_dsn(args.dsn, _err)
    if args.action == "list":
        found = golden.list_goldens(admin)
        if args.json:
            from oneroof.executor import output

            print(json.dumps(output.goldens(found)))
        for name, prov in found if not args.json else ():
            print(f"{name}\t{prov.describe()}")
        _err(f"{len(found)} golden database(s)")
        return ExitCode.OK
    if args.action == "show":
        _print_provenance(args.target, golden.provenance(admin, args.target))
        return ExitCode.OK
    if args.action == "snapshot":
        from oneroof.executor.capture import take

        snap = take(args.prod_dsn, admin, name=args.name, replace=args.replace, jobs=args.jobs, progress=_progress)
        _err(f"golden {snap.name}: {snap.provenance.describe()}")
        phases = ", ".join(f"{k} {v:.1f} s" for k, v in snap.phases.items())
        _err(
            f"snapshot {snap.name}: {snap.tables} tables, {snap.bytes / 1e6:,.1f} MB in {snap.seconds:.1f} s ({phases})"
        )
        _err(
            f"production entry {snap.entry}\nproduction exit  {snap.exit}\ngolden           {snap.golden}\n"
            f"entry == exit == golden: yes; transaction id assigned on production: no"
        )
        for text in snap.notes:
            _err(f"note: {text}")
        print(snap.name)
        return ExitCode.OK
    pkg = package.load(Path(args.package))
    result = golden.build(
        admin,
        name=args.name or catalog.GOLDEN_NAME,
        scale=args.scale,
        tool=f"oneroof {__version__}",
        package_sha256=pkg.sha256,
        replace=args.replace,
        progress=_progress,
    )
    _err(
        f"built {result.name}: scale {result.scale}, {result.system_issues:,} system issues, "
        f"proposal bound to package {pkg.sha256[:12]}, in {result.seconds:.1f} s"
    )
    print(result.name)
    return ExitCode.OK


def _add_demo(sub: argparse._SubParsersAction[Parser]) -> None:
    from oneroof.executor.demo import DEFAULT_NAME

    p = sub.add_parser(
        "demo",
        help="a production of your own to practise the release on",
        description="A demo production: the Directus 11 + tier-1 database a production would be, "
        "neither golden nor read-only, to snapshot, rehearse, approve, roll out and roll back (see "
        "the first production rollout in the docs). `oneroof demo ACTION --help` shows the options "
        "of each action.",
    )
    actions = _actions(p)
    build = actions.add_parser(
        "production",
        help="build a demo production; prints its DSN",
        description="Build a demo production: every Directus 11 system table, 35 governed collections, "
        "system_issues and tier 1 live, the proposal naming this package, and nothing of oneroof's but "
        "a comment. An existing database is refused (exit 2); --replace replaces only a demo production.",
    )
    build.add_argument("--scale", type=int, default=1, metavar="N", help="multiplies the large tables (default 1)")
    _name_option(build, DEFAULT_NAME, DEFAULT_NAME)
    build.add_argument(
        "--replace", action="store_true", help="rebuild an existing demo production (never any other database)"
    )
    build.add_argument(
        "--package",
        default=str(package.DEFAULT_DIR),
        metavar="DIR",
        help="release package whose hash the proposal names",
    )
    env = actions.add_parser(
        "directus-env",
        help="the environment Directus needs to serve a demo production",
        description="Print `export` lines (for `eval`) of DB_CLIENT, DB_HOST, DB_PORT, DB_DATABASE, DB_USER "
        "and PGPASSFILE, so that `npx directus start` serves the database; never a password.",
    )
    _name_option(env, DEFAULT_NAME, DEFAULT_NAME)
    for action in (build, env):
        _dsn_option(action, "the server (any database on it)")
    p.set_defaults(func=cmd_demo)


def cmd_demo(args: argparse.Namespace) -> ExitCode:
    """`oneroof demo production|directus-env`."""
    from oneroof.executor import demo

    if args.action == "directus-env":
        env, notes = demo.directus_env(target.admin_dsn(args.dsn, _err), args.name)
        for note in notes:
            _err(f"note: {note}")
        print(demo.as_shell(env), end="")
        return ExitCode.OK
    if not 1 <= args.scale <= 1000:
        raise UsageError(f"--scale {args.scale} is out of range: use a whole number from 1 to 1000")
    made = demo.production(
        target.admin_dsn(args.dsn, _err),
        name=args.name,
        scale=args.scale,
        replace=args.replace,
        package_dir=Path(args.package),
        progress=_progress,
    )
    _err(
        f"demo production {made.name}: scale {made.result.scale}, {made.result.system_issues:,} system issues, "
        f"proposal bound to package {made.package_sha256[:12]}, in {made.result.seconds:.1f} s; not golden, "
        "not read-only: practise on it as on production"
    )
    print(made.dsn)
    return ExitCode.OK


def _add_clone(sub: argparse._SubParsersAction[Parser]) -> None:
    p = sub.add_parser(
        "clone",
        help="rehearsal clones of the golden database",
        description="Create, drop, list and collect marked clones (CREATE DATABASE ... TEMPLATE). "
        "`oneroof clone ACTION --help` shows the options of each action.",
    )
    actions = _actions(p)
    create = actions.add_parser(
        "create", help="a marked clone of a golden database; prints its DSN", description="Create a marked clone."
    )
    create.add_argument(
        "--from",
        dest="source",
        default=catalog.GOLDEN_NAME,
        metavar="NAME",
        help=f"source database (default {catalog.GOLDEN_NAME})",
    )
    create.add_argument("--name", default=None, metavar="NAME", help="name of the new clone (default: generated)")
    create.add_argument(
        "--strategy",
        default="FILE_COPY",
        choices=clones.STRATEGIES,
        help="CREATE DATABASE strategy on PostgreSQL 15+ (default FILE_COPY)",
    )
    create.add_argument(
        "--wait",
        type=_amount,
        default=5.0,
        metavar="SECONDS",
        help="seconds to wait for other sessions to leave the source (default 5)",
    )
    create.add_argument(
        "--json",
        action="store_true",
        help='print one JSON object {"name": ..., "source": ..., "dsn": ...} instead of the DSN',
    )
    drop = actions.add_parser("drop", help="drop one clone", description="Drop a marked clone.")
    drop.add_argument("name", nargs="?", metavar="NAME", help="the clone to drop")
    listing = actions.add_parser("list", help="the clones: name, source, DSN")
    _json_option(listing, '{"clones": [{"name", "source", "dsn"}]}')
    gc = actions.add_parser(
        "gc",
        help="drop old clones no client uses",
        description="Drop the clones made more than --older-than minutes ago that no client is connected to.",
    )
    gc.add_argument("--from", dest="source", default=None, metavar="NAME", help="only clones of this database")
    gc.add_argument(
        "--older-than",
        type=_amount,
        default=60.0,
        metavar="MINUTES",
        help="only clones made more than this many minutes ago (default 60; 0 for all)",
    )
    for action in (create, drop, listing, gc):
        _dsn_option(action, "the server (any database on it)")
    p.set_defaults(func=cmd_clone)


def cmd_clone(args: argparse.Namespace) -> ExitCode:
    """`oneroof clone create|drop|list|gc`."""
    admin = target.admin_dsn(args.dsn, _err)
    if args.action == "create":
        clone = clones.create(admin, source=args.source, name=args.name, strategy=args.strategy, wait=args.wait)
        _err(f"created clone {clone.name} of {clone.source} in {clone.seconds:.2f} s")
        if args.json:  # both the DSN and the name an auditor's --expect-db needs
            print(json.dumps({"name": clone.name, "source": clone.source, "dsn": clone.dsn}))
        else:
            print(clone.dsn)
    elif args.action == "drop":
        clones.drop(admin, args.name)
        print(f"dropped {args.name}")
    elif args.action == "list":
        found = clones.list_clones(admin)
        if args.json:
            from oneroof.executor import output

            print(json.dumps(output.clones(found)))
        for clone in found if not args.json else ():
            print(f"{clone.name}\t{clone.source}\t{clone.dsn}")
        _err(f"{len(found)} clone(s)")
    else:
        dropped, busy = clones.gc(admin, source=args.source, older_than=args.older_than * 60)
        for name in dropped:
            print(f"dropped {name}")
        for name in busy:
            _err(f"kept {name}: a client is connected to it")
        _err(f"{len(dropped)} clone(s) dropped, {len(busy)} in use")
    return ExitCode.OK


def _print_metrics(data: dict[str, Any]) -> None:
    for key, value in data["metrics"].items():
        print(f"{key:<15}{value}")
    fp = data["fingerprint"]
    print(f"{'entry':<15}{fp['entry']}\n{'exit':<15}{fp['exit']}")
    if fp["equal"]:
        print(f"{'entry == exit':<15}yes")
    elif fp.get("changed") is not None:
        print(
            f"{'entry == exit':<15}no: production changed while it was read, by others' writes "
            f"({', '.join(fp['changed'])}); oneroof's own reads were assigned no transaction id"
        )
    else:
        print(f"{'entry == exit':<15}no: production changed while it was read, by others' writes")


def _add_probe(sub: argparse._SubParsersAction[Parser]) -> None:
    p = sub.add_parser(
        "probe",
        help="the ten metrics and the fingerprint, read-only",
        description="Read the ten metrics between an entry and an exit fingerprint, read-only. "
        "Production is live: when the fingerprints differ, others wrote meanwhile, and the probe "
        "names the metrics and tables that changed, as information. Exit 0 when the probe wrote "
        "nothing (each of its read-only transactions was assigned no transaction id), whether or "
        "not the fingerprints differ; 1 when a read was assigned a transaction id.",
    )
    p.add_argument("--json", action="store_true", help="one JSON object")
    _dsn_option(p, "the target database")
    p.set_defaults(func=cmd_probe)


def cmd_probe(args: argparse.Namespace) -> ExitCode:
    """`oneroof probe`: 1 only when one of its reads was assigned a transaction id (it wrote)."""
    from oneroof.executor.probe import probe

    result = probe(target.target_dsn(args.dsn, progress=_err))
    if args.json:
        print(json.dumps(result.as_json()))
    else:
        _print_metrics(result.as_json())
    if not result.wrote_nothing:
        _err(
            f"oneroof: the probe's reads were assigned transaction ids {result.assigned}: "
            "it cannot prove it wrote nothing"
        )
        return ExitCode.FAILED
    return ExitCode.OK


def _add_verify(sub: argparse._SubParsersAction[Parser]) -> None:
    p = sub.add_parser(
        "verify",
        help="run the invariant suite (pytest) against a database",
        description="Run the invariants of one stage with pytest; arguments it does not know "
        "are passed to pytest. Exits with pytest's code.",
    )
    p.add_argument(
        "--stage",
        required=True,
        choices=STAGES,
        help="which invariants: baseline (the seed's figures), greenfield (no tier 2-6 facet), "
        "finalized (every facet), gate (the package and every gate condition)",
    )
    p.add_argument("-n", type=_whole(0), default=0, metavar="N", help="pytest-xdist workers")
    p.add_argument(
        "--expect-db",
        default=None,
        metavar="NAME",
        help=f"the database name the run expects (default {catalog.GOLDEN_NAME})",
    )
    _package_options(p)
    _trust_option(p)
    _rehearsal_option(p)
    _release_log_option(p)
    _dsn_option(p, "the target database")
    p.set_defaults(func=cmd_verify)


def cmd_verify(args: argparse.Namespace, extra: list[str]) -> int:
    """`oneroof verify`: pytest's exit code (its usage error is ExitCode.USAGE)."""
    from oneroof.executor.release import run_stage

    # A verification never writes or relaxes snapshots: --snapshot-update, and every other
    # syrupy option, belongs to an auditor's plain pytest run on a branch.
    snapshot_options = [a.split("=", 1)[0] for a in extra if a.startswith("--snapshot")]
    if snapshot_options:
        raise UsageError(
            f"verify does not take {', '.join(snapshot_options)}: it is a verification and never "
            "changes snapshots; to update them, run `pytest invariants --snapshot-update ...` on a branch "
            "then `oneroof package seal`, and commit the reviewed diff of snapshots/"
        )

    if not Path(args.package).is_dir():
        raise UsageError(f"package directory {args.package} does not exist: pass --package DIR")
    if args.expect_sha256 is not None:
        package.check_sha256(args.expect_sha256)
    trust = _trust(args)
    bound = _rehearsal(args)
    dsn = target.target_dsn(args.dsn, progress=_err)
    with _relayed(1, 2):  # pytest's output: a closed pipe must not become its outcome
        code = run_stage(
            dsn,
            args.stage,
            expect_db=args.expect_db,
            package_dir=Path(args.package),
            expect_sha256=args.expect_sha256,
            extra=(*(["-n", str(args.n)] if args.n else []), *extra),
            quiet=False,
            allowed_signers=trust.path if trust is not None else None,
            rehearsal=bound.path if bound is not None else None,
            release_log=_release_log(args).path,
        )
    # pytest's usage error (4) is bad input, oneroof's 2: exit 4 always means package integrity.
    return ExitCode.USAGE if code == PYTEST_USAGE_ERROR else code


def _add_monitor(sub: argparse._SubParsersAction[Parser]) -> None:
    p = sub.add_parser(
        "monitor",
        help="the gate verdict (OPEN/BLOCKED) and its reasons, read-only",
        description="One read-only shot: prints OPEN or BLOCKED with every reason, the metrics and "
        "the entry and exit fingerprints. Exit 0 OPEN, 3 BLOCKED.",
    )
    p.add_argument("--json", action="store_true", help="one JSON object")
    p.add_argument("--confirm-db", default=None, metavar="NAME", help="also check that the target is this database")
    p.add_argument(
        "--until-open",
        action="store_true",
        help="read again (every 2 s, waits growing to 30 s) until the gate is OPEN, saying each change on "
        "stderr; then print as one shot does. Exit 0 OPEN, 3 still BLOCKED at --timeout",
    )
    p.add_argument(
        "--timeout",
        type=float,
        default=None,
        metavar="SECONDS",
        help="with --until-open: stop waiting after this many seconds (default: wait until OPEN or Ctrl-C)",
    )
    _color_option(p)
    _package_options(p)
    _trust_option(p)
    _rehearsal_option(p)
    _release_log_option(p)
    _dsn_option(p, "the target database")
    p.set_defaults(func=cmd_monitor)


def cmd_monitor(args: argparse.Namespace) -> ExitCode:
    """`oneroof monitor`: OK when the gate is OPEN, BLOCKED otherwise."""
    from oneroof.executor.monitor import monitor, until_open

    _check_until_open(args)
    trust = _trust(args)  # bad input before any server is touched
    bound = _rehearsal(args)
    log = _release_log(args)
    dsn = target.target_dsn(args.dsn, progress=_err)

    def read() -> Any:
        return monitor(
            dsn,
            Path(args.package),
            expect_sha256=args.expect_sha256,
            confirm_db=args.confirm_db,
            trust=trust,
            rehearsal=bound,
            release_log=log,
        )

    report = until_open(read, timeout=args.timeout, progress=_progress) if args.until_open else read()
    if args.until_open and report.verdict != "OPEN":
        _err(f"oneroof: the gate did not open within {args.timeout:g} s (exit 3)")
    if args.json:
        print(json.dumps(report.as_json()))
    else:
        if report.verdict == "OPEN":
            _print_painted(args, report.verdict)
        _print_blocked(report.blocked_by or {}, report.reasons, args)
        for note in report.notes:
            print(f"note: {note}")
        print(
            f"{'target':<15}{report.database} on cluster {report.system_identifier or '(system_identifier unreadable)'}"
        )
        trusted = report.allowed_signers
        print(
            "allowed signers "
            + (
                f"sha256 {trusted['sha256']} ({trusted['path']})"
                if trusted
                else "none given (--allowed-signers or ONEROOF_ALLOWED_SIGNERS)"
            )
        )
        given = report.rehearsal
        print(
            f"{'rehearsal':<15}"
            + (
                f"sha256 {given['sha256']} ({given['path']})"
                if given
                else "none given (--rehearsal or ONEROOF_REHEARSAL)"
            )
        )
        _print_metrics(report.as_json())
    return ExitCode.OK if report.verdict == "OPEN" else ExitCode.BLOCKED


def _check_until_open(args: argparse.Namespace) -> None:
    import math

    if args.timeout is None:
        return
    if not args.until_open:
        raise UsageError("--timeout goes with --until-open: one shot of monitor does not wait")
    if not (math.isfinite(args.timeout) and args.timeout > 0):
        raise UsageError(f"--timeout {args.timeout:g} is not a number of seconds above 0: use, e.g., --timeout 600")


def _print_blocked(blocked_by: dict[str, str], reasons: list[str], args: argparse.Namespace) -> None:
    """One `BLOCKED:` line per reason, each ending with the next step of its gate condition."""
    from oneroof.core import gate

    for condition, reason in blocked_by.items() if blocked_by else (("", r) for r in reasons):
        _print_painted(args, f"BLOCKED: {gate.with_next_step(condition, reason)}")


def _print_outcome(outcome: Any, args: argparse.Namespace) -> None:
    if args.json:
        from oneroof.executor import output

        print(json.dumps(output.outcome(outcome)))
        return
    timings = ", ".join(f"{k} {v:.2f} s" for k, v in outcome.seconds.items())
    _print_painted(
        args,
        f"{outcome.action.upper()}: {outcome.database} (package {outcome.package_sha256[:12]}"
        f"{', approvals ' + ', '.join(f'#{i}' for i in outcome.approvals) if outcome.approvals else ''})"
        f"{'; ' + timings if timings else ''}",
    )
    if outcome.metrics:
        print("  " + " ".join(f"{k}={v}" for k, v in outcome.metrics.items() if k != "db"))
    print(f"  entry {outcome.entry}\n  exit  {outcome.exit}")
    if outcome.ledger_head:
        print(f"  ledger head {outcome.ledger_head}")


def _add_rollout(sub: argparse._SubParsersAction[Parser]) -> None:
    p = sub.add_parser(
        "rollout",
        help="the gated executor: apply tiers 2-6 once a human has ratified",
        description="Verify the package, run the gate session, take the release lock and apply "
        "tiers 2-6 in one transaction, then audit. Exit 0 applied or already finalized, 1 invariant "
        "failed (nothing kept), 2 bad input or unreachable database, 3 BLOCKED (nothing changed), "
        "4 package integrity, 5 lock held, 6 applied and committed but the audit after the commit "
        "failed (tiers live: inspect with `oneroof verify --stage finalized`, undo with `oneroof "
        "rollback`), 130 interrupted.",
    )
    p.add_argument("--confirm-db", required=True, metavar="NAME", help="the name of the database you mean to change")
    _json_option(p, '{"result", "database", "package_sha256", "approvals", "entry", "exit", ...}')
    _color_option(p)
    _package_options(p)
    _trust_option(p)
    _rehearsal_option(p)
    _release_log_option(p)
    _dsn_option(p, "the target database")
    p.set_defaults(func=cmd_rollout)


def cmd_rollout(args: argparse.Namespace) -> ExitCode:
    """`oneroof rollout`: the gated executor."""
    from oneroof.executor import release
    from oneroof.harness.errors import Blocked

    release.lock_timeout()  # a bad $ONEROOF_LOCK_TIMEOUT is bad input, before anything is read
    pkg = package.load(Path(args.package), args.expect_sha256)
    trust = _trust(args)
    bound = _rehearsal(args)
    log = _release_log(args)
    dsn = target.target_dsn(args.dsn, progress=_err)
    if release.runs_as_superuser(dsn):  # a warning, not a refusal: the docs' grants are the fix
        _err("oneroof: warning: the release role should not be a superuser; see docs/release-role.md")
    try:
        outcome = release.rollout(
            dsn, pkg, confirm_db=args.confirm_db, progress=_progress, trust=trust, rehearsal=bound, release_log=log
        )
    except Blocked as exc:
        if args.json:
            from oneroof.executor import output

            print(json.dumps(output.blocked(exc, pkg.sha256)))
            return ExitCode.BLOCKED
        _print_blocked(exc.blocked_by, exc.reasons, args)
        print(
            f"  nothing was changed: entry {exc.entry}\n                      exit  {exc.exit}"
            f"\n  entry == exit: {'yes' if exc.entry == exc.exit else 'NO'}"
        )
        return ExitCode.BLOCKED
    _print_outcome(outcome, args)
    if outcome.audit_exit not in (None, 0):
        _err(
            f"oneroof: error: tiers 2-6 are committed and live, but the finalized audit failed (pytest exit "
            f"{outcome.audit_exit}); inspect with `oneroof verify --stage finalized`, undo with `oneroof rollback`"
        )
        return ExitCode.LIVE_AUDIT_FAILED
    return ExitCode.OK


def _add_rollback(sub: argparse._SubParsersAction[Parser]) -> None:
    p = sub.add_parser(
        "rollback",
        help="revert tiers 6..2 (idempotent)",
        description="Take the release lock and revert tiers 6..2 in one transaction; on a greenfield "
        "database nothing changes. Approvals and the ledger are kept. Only the package the ledger says was deployed "
        "is reverted. Exit 0 reverted or already greenfield, 1 invariant failed (nothing kept), 2 bad input "
        "or a missing privilege or no allowed signers, 4 package integrity, not the deployed package, or a "
        "deployment whose statements do not verify against the allowed signers, 5 lock held.",
    )
    p.add_argument("--confirm-db", required=True, metavar="NAME", help="the name of the database you mean to change")
    _json_option(p, "the keys of `rollout --json`")
    _color_option(p)
    _package_options(p)
    _trust_option(p)
    _release_log_option(p)
    _dsn_option(p, "the target database")
    p.set_defaults(func=cmd_rollback)


def cmd_rollback(args: argparse.Namespace) -> ExitCode:
    """`oneroof rollback`: revert tiers 6..2."""
    from oneroof.executor import release

    release.lock_timeout()  # a bad $ONEROOF_LOCK_TIMEOUT is bad input, before anything is read
    pkg = package.load(Path(args.package), args.expect_sha256)
    trust, log = _trust(args), _release_log(args)
    if trust is None:  # before any server is touched
        raise UsageError(
            "rollback re-verifies the signed statements of the deployment it reverts: pass "
            "--allowed-signers FILE or set ONEROOF_ALLOWED_SIGNERS; nothing was changed"
        )
    outcome = release.rollback(
        target.target_dsn(args.dsn, progress=_err),
        pkg,
        confirm_db=args.confirm_db,
        progress=_progress,
        trust=trust,
        release_log=log,
    )
    _print_outcome(outcome, args)
    return ExitCode.OK


def _runs_dir(args: argparse.Namespace) -> Path:
    return Path(args.runs_dir) if args.runs_dir else server.home_dir() / "runs"


def _add_rehearse(sub: argparse._SubParsersAction[Parser]) -> None:
    p = sub.add_parser(
        "rehearse",
        help="the main job: the whole release on a fresh clone, then the report",
        description="Verify the package, build the golden database if missing, clone it, and on the "
        "clone: baseline stage, monitor BLOCKED, blocked rollout, rehearsal approval, monitor OPEN, "
        "rollout, finalized stage, rollback, greenfield stage, rollback again; drop the clone, check "
        "the golden database is unchanged, optionally read the production gate, and write the "
        "evidence and the GO/NO-GO report. Exit 0 GO, 1 NO-GO, 2 bad input (nothing written), "
        "4 package integrity (nothing written), 130 interrupted.",
    )
    p.add_argument("--scale", type=int, default=1, metavar="N", help="scale of the golden database if it must be built")
    p.add_argument("--keep", action="store_true", help="keep the rehearsal clone and print its DSN")
    p.add_argument(
        "--golden",
        default=None,
        metavar="NAME",
        help=f"golden database (default {catalog.GOLDEN_NAME}, the synthetic golden; with --from, "
        f"{catalog.CAPTURE_PREFIX}<production database>, the capture)",
    )
    p.add_argument(
        "--from",
        dest="snapshot_from",
        default=None,
        metavar="DSN",
        help="first capture production (read-only) into its own golden database, "
        f"{catalog.CAPTURE_PREFIX}<production database> unless --golden names another, replacing a "
        "golden oneroof made; production's gate is then read too",
    )
    p.add_argument(
        "--jobs",
        type=int,
        default=1,
        metavar="N",
        help="with --from: 1 (default) streams pg_dump into pg_restore; N > 1: N-job dump, then restore",
    )
    p.add_argument(
        "--prod-dsn", default=None, metavar="DSN", help="read the production gate here, read-only (entry == exit)"
    )
    p.add_argument("--prod-db", default=None, metavar="NAME", help="the production database name the operator expects")
    p.add_argument(
        "--runs-dir", default=None, metavar="DIR", help="where run directories go (default $ONEROOF_HOME/runs)"
    )
    _json_option(p, '{"ok", "verdict", "meaning", "evidence", "run_dir", "reports", ...}')
    _color_option(p)
    _package_options(p)
    _trust_option(p)
    _dsn_option(p, "the rehearsal server (any database on it)")
    p.set_defaults(func=cmd_rehearse)


def _new_run_dir(args: argparse.Namespace) -> Path:
    from oneroof.executor.rehearse import new_run_dir

    try:
        return new_run_dir(_runs_dir(args))
    except OSError as exc:
        raise UsageError(
            f"cannot create a run directory under {_runs_dir(args)}: {exc.strerror or exc}; pass --runs-dir"
        ) from exc


def cmd_rehearse(args: argparse.Namespace) -> ExitCode:
    """`oneroof rehearse`: the whole release on a fresh clone; OK for GO, FAILED for NO-GO."""
    from oneroof.executor import report
    from oneroof.executor.rehearse import default_golden, golden_in_use, rehearse

    # Bad input is refused before anything is written: no run directory, no report, and so no
    # "latest run" that is only a typo (exit 2; a package that fails its integrity check, exit 4).
    if args.scale < 1:
        raise UsageError(f"--scale {args.scale} is not a positive whole number: use 1 or more")
    prod_trust = _trust(args)
    golden_name = check_identifier(args.golden or default_golden(args.snapshot_from), "--golden")
    if args.prod_dsn is not None:
        parse(args.prod_dsn)
    package.load(Path(args.package), args.expect_sha256)
    admin = target.admin_dsn(args.dsn, _err)
    with connect(admin) as conn:  # an unreachable server is bad input (exit 2), not a NO-GO
        if args.snapshot_from is not None:
            capture.require_rehearsal_server(conn)  # else step 2 fails after a run directory is made
    using = golden_in_use(admin, golden_name, args.snapshot_from)
    run_dir = _new_run_dir(args)
    _err(f"rehearsal run {run_dir}\n{using}")
    evidence = rehearse(
        admin,
        run_dir=run_dir,
        package_dir=Path(args.package),
        scale=args.scale,
        golden_name=golden_name,
        expect_sha256=args.expect_sha256,
        keep=args.keep,
        prod_dsn=args.prod_dsn,
        prod_db=args.prod_db,
        progress=_err,
        prod_trust=prod_trust,
        snapshot_from=args.snapshot_from,
        jobs=args.jobs,
    )
    for fmt, name in (("md", "report.md"), ("html", "report.html")):
        (run_dir / name).write_text(report.render(evidence, fmt))
    if args.json:
        from oneroof.executor import output

        print(json.dumps(output.rehearsal(evidence, run_dir, report.verdict(evidence), report.meaning(evidence))))
    else:
        _print_painted(args, report.as_text(evidence).rstrip("\n"))
        print(f"\nevidence {run_dir / 'evidence.json'}\nreport   {run_dir / 'report.md'}, {run_dir / 'report.html'}")
    if evidence.kept_clone_dsn and not args.json:
        print(f"kept clone: {evidence.kept_clone_dsn}")
    if evidence.interrupted:
        _err("oneroof: interrupted: the clone was dropped" if not args.keep else "oneroof: interrupted")
        return ExitCode.INTERRUPTED
    return ExitCode.OK if evidence.ok else ExitCode.FAILED


def _add_report(sub: argparse._SubParsersAction[Parser]) -> None:
    p = sub.add_parser(
        "report",
        help="the GO/NO-GO matrix from rehearsal evidence",
        description="Render the classification matrix, verdict and compliance line from a "
        "rehearsal's evidence.json (default: the latest run).",
    )
    p.add_argument(
        "--format",
        default="md",
        choices=("md", "json", "html", "text"),
        help="md (Markdown, default), json (matrix, verdict, compliance and the evidence), html (one "
        "self-contained page) or text (the terminal matrix, 100 columns)",
    )
    p.add_argument(
        "--run", default=None, metavar="PATH", help="a run directory or evidence.json (default: the latest run)"
    )
    p.add_argument(
        "--runs-dir", default=None, metavar="DIR", help="where run directories are (default $ONEROOF_HOME/runs)"
    )
    _color_option(p)
    p.set_defaults(func=cmd_report)


def cmd_report(args: argparse.Namespace) -> ExitCode:
    """`oneroof report`: render a rehearsal's evidence."""
    from oneroof.executor import report
    from oneroof.executor.rehearse import Evidence, latest_run

    if args.run:
        run = Path(args.run)
    else:
        latest = latest_run(_runs_dir(args))
        if latest is None:
            raise UsageError(f"no rehearsal evidence under {_runs_dir(args)}: run `oneroof rehearse` or pass --run DIR")
        run = latest
    file = run / "evidence.json" if run.is_dir() else run
    try:
        evidence = Evidence.from_json(json.loads(file.read_text()))
    except (FileNotFoundError, IsADirectoryError, PermissionError) as exc:
        raise UsageError(f"{file} cannot be read: pass --run with a rehearsal run directory") from exc
    except (ValueError, TypeError, KeyError, AttributeError) as exc:
        raise UsageError(f"{file} is not rehearsal evidence: {exc}") from exc
    try:
        text = report.render(evidence, args.format)
    except (AttributeError, KeyError, TypeError, ValueError) as exc:
        raise UsageError(f"{file} is not rehearsal evidence oneroof can render ({type(exc).__name__}: {exc})") from exc
    if args.format == "text":
        _print_painted(args, text.rstrip("\n"))
    else:
        print(text, end="")
    return ExitCode.OK


def _add_package(sub: argparse._SubParsersAction[Parser]) -> None:
    p = sub.add_parser(
        "package",
        help="release package integrity",
        description="hash: print the package hash; verify: check every file against the "
        "manifest (exit 4 on any difference); seal: record new file hashes after editing SQL; "
        "bundle DIR: copy the package, its expected figures inside (DIR/snapshots/), into the new "
        "directory DIR and verify the copy (exit 2 if DIR exists, 4 on any difference).",
    )
    p.add_argument("action", choices=("hash", "verify", "seal", "bundle"))
    p.add_argument("destination", nargs="?", metavar="DIR", help="bundle: the new directory to copy the package into")
    p.add_argument("--expect-sha256", default=None, metavar="SHA256", help="the package hash the operator pinned")
    p.add_argument(
        "--package", default=str(package.DEFAULT_DIR), metavar="DIR", help="package directory (default: rollout/)"
    )
    p.add_argument(
        "--sign",
        default=None,
        metavar="FILE",
        help="seal: also sign the manifest with this SSH key file "
        "(the manifest names its fingerprint; approvals signed by it do not count)",
    )
    p.set_defaults(func=cmd_package)


def _package_destination(args: argparse.Namespace, extra: list[str]) -> None:
    # argparse fills an optional positional only from the words before the first option: in
    # `package bundle --package SRC DIR`, DIR comes back unrecognized. It is the destination.
    if args.command == "package" and args.destination is None and extra and not extra[0].startswith("-"):
        args.destination = extra.pop(0)


def cmd_package(args: argparse.Namespace) -> ExitCode:
    """`oneroof package hash|verify|seal|bundle`."""
    path = Path(args.package)
    if args.action == "seal":
        print(package.seal(path, Path(args.sign) if args.sign else None))
        return ExitCode.OK
    pkg = package.load(path, expect_sha256=getattr(args, "expect_sha256", None))
    if args.action == "bundle":
        copy = package.bundle(path, Path(args.destination))
        print(f"{copy.path}\n{copy.sha256}")
        return ExitCode.OK
    if args.action == "verify":
        _err(f"package {pkg.name} {pkg.version}: {len(pkg.tiers)} tiers, every file matches the manifest")
    print(pkg.sha256)
    return ExitCode.OK


def _add_approve(sub: argparse._SubParsersAction[Parser]) -> None:
    p = sub.add_parser(
        "approve",
        help="a human approver signs the ratification and records it through Directus",
        description="Show exactly what is approved (package, proposal, tiers, target database and "
        "cluster, ownership map), ask for confirmation, sign the statement with your own SSH key "
        "(ssh-keygen: a key file, or the .pub of a key in ssh-agent, hardware sk- keys included), "
        "and record the approval through Directus as you (your login; the password is asked for, "
        "or read from ONEROOF_DIRECTUS_PASSWORD). The signed statement is stored as a comment on "
        "the approval. --out writes it to a file instead.",
    )
    p.add_argument(
        "--email",
        required=True,
        metavar="EMAIL",
        help="your Directus login, the principal of your key in the allowed signers",
    )
    p.add_argument(
        "--key", default=None, metavar="FILE", help="your private key file, or the .pub of your key in ssh-agent"
    )
    p.add_argument(
        "--submit",
        default=None,
        metavar="FILE",
        help="record, through Directus as you, a statement signed before: with --out, or with your passkey in "
        "the ratification page (Sign and save)",
    )
    p.add_argument(
        "--directus", default=None, metavar="URL", help="the Directus instance, e.g. https://hub.gov.example"
    )
    p.add_argument(
        "--valid-hours",
        type=int,
        default=24,
        metavar="HOURS",
        help="how long the statement is valid (default 24, at most 720)",
    )
    p.add_argument("--yes", action="store_true", help="do not ask for confirmation (the summary is still printed)")
    p.add_argument("--out", default=None, metavar="FILE", help="write the signed statement to FILE; record nothing")
    p.add_argument(
        "--rehearsal",
        default=None,
        metavar="FILE",
        help="evidence.json of the GO rehearsal you reviewed; the statement names its SHA-256 and the rollout "
        "must use that file (required for a target that is not a marked clone; default $ONEROOF_REHEARSAL)",
    )
    _package_options(p)
    _trust_option(p)
    _dsn_option(p, "the target database (read-only: its name, cluster identity, proposal and your level)")
    p.set_defaults(func=cmd_approve)


def _check_approve_flags(args: argparse.Namespace) -> None:
    if not 1 <= args.valid_hours <= 24 * 30:
        raise UsageError(f"--valid-hours {args.valid_hours} is not between 1 and 720 (30 days)")
    if not args.out and not args.directus:
        raise UsageError(
            "--directus URL is missing: the approval is recorded through Directus as you "
            "(or pass --out FILE to write the signed statement for an offline hand-over)"
        )
    if args.submit and (args.out or args.key):
        raise UsageError("--submit records a statement signed before: it takes neither --key nor --out")
    if not args.submit and not args.key:
        raise UsageError("--key is missing: your private key file, or the .pub of your key in ssh-agent")
    if args.key and not Path(args.key).expanduser().is_file():
        raise UsageError(f"--key {args.key}: no such key file (your private key, or the .pub of a key in ssh-agent)")
    if args.directus and not args.directus.startswith(("http://", "https://")):
        raise UsageError(f"--directus {args.directus!r} is not an http(s) URL of the Directus instance")


def _directus_session(args: argparse.Namespace) -> Session:
    import getpass
    import os

    from oneroof.executor import directus

    password = os.environ.get("ONEROOF_DIRECTUS_PASSWORD")
    if not password:
        if not sys.stdin.isatty():
            raise UsageError("no terminal to ask for your Directus password: set ONEROOF_DIRECTUS_PASSWORD")
        password = getpass.getpass(f"Directus password for {args.email}: ")
    return directus.login(args.directus, args.email, password)


def _confirmed(args: argparse.Namespace) -> bool:
    if args.yes:
        return True
    if not sys.stdin.isatty():
        raise UsageError("no terminal to confirm on: read the summary above, then pass --yes")
    return input("Sign and record this approval? [y/N] ").strip().lower() in ("y", "yes")


def _write_statement(path: str, text: str) -> None:
    try:
        with open(path, "x", encoding="ascii") as out:
            out.write(text)
    except FileExistsError as exc:
        raise UsageError(f"--out {path} exists: choose a new file") from exc


def _approve_trust(args: argparse.Namespace) -> TrustRoot:
    trust: TrustRoot | None = _trust(args)
    if trust is None:
        # without it the gate cannot verify the statement: the approval would be recorded and never count
        raise UsageError(
            "no allowed signers to check your key against, so this approval could never count: pass "
            "--allowed-signers FILE, the allowed-signers file of the reviewed repository (or set "
            "ONEROOF_ALLOWED_SIGNERS); nothing was signed or recorded"
        )
    return trust


def cmd_approve(args: argparse.Namespace) -> ExitCode:
    """`oneroof approve`: sign the ratification, check it counts as the gate will, and record it
    through Directus; FAILED if the approver says no. Directus is logged in to only once the
    signed statement is known to count.
    """
    import datetime as dt

    from oneroof.executor import approvals

    _check_approve_flags(args)
    trust = _approve_trust(args)
    if args.submit:
        try:
            text = Path(args.submit).read_text(encoding="ascii")
        except (OSError, UnicodeDecodeError) as exc:
            raise UsageError(f"--submit {args.submit}: cannot read a signed statement from it") from exc
        plan = approvals.handed_over(text, trust)
    else:
        pkg = package.load(Path(args.package), args.expect_sha256)
        plan = approvals.prepare(
            target.target_dsn(args.dsn),
            pkg,
            email=args.email,
            valid_for=dt.timedelta(hours=args.valid_hours),
            rehearsal=_rehearsal(args),
        )
    print("You approve, with your own key:")
    for line in plan.summary():
        print(f"  {line}")
    if not _confirmed(args):
        _err("oneroof: not approved: nothing was signed or recorded")
        return ExitCode.FAILED
    if args.submit:
        approval = approvals.record(_directus_session(args), plan, text)
        print(
            f"APPROVED: approval #{approval} recorded through Directus as {plan.statement.approver_email} "
            f"with the statement signed before, valid until {plan.statement.expires_at}"
        )
        return ExitCode.OK
    text, fingerprint = approvals.sign(plan, args.key, pkg, trust)
    if args.out:
        _write_statement(args.out, text)
        print(
            f"signed with {fingerprint}; statement written to {args.out} (it counts once it is recorded "
            "through Directus as you)"
        )
        return ExitCode.OK
    approval = approvals.record(_directus_session(args), plan, text)
    print(
        f"APPROVED: approval #{approval} recorded through Directus as {plan.statement.approver_email}, "
        f"signed with {fingerprint}, valid until {plan.statement.expires_at}"
    )
    return ExitCode.OK


def _add_approvals(sub: argparse._SubParsersAction[Parser]) -> None:
    p = sub.add_parser(
        "approvals",
        help="auditors: re-check every approval and deployment, read-only",
        description="verify: connect to the database read-only and re-check every approval's signed "
        "statement and every deployment in the ledger against an allowed-signers file (its statements, "
        "nonces, signer hash, proposal and package consistent, no statement used twice), and the ledger's "
        "hash chain against the head the release log recorded; no Directus, no key from the database. "
        "Exit 0 when every deployment verifies and the chain holds, 1 otherwise.",
    )
    p.add_argument("action", choices=("verify",))
    _json_option(p, '{"ok", "database", "system_identifier", "allowed_signers_sha256", "approvals", "deployments"}')
    _trust_option(p)
    _release_log_option(p)
    _dsn_option(p, "the target database")
    p.set_defaults(func=cmd_approvals)


def cmd_approvals(args: argparse.Namespace) -> ExitCode:
    """`oneroof approvals verify`: FAILED when a deployment does not verify."""
    from oneroof.executor import approvals

    trust = _trust(args)
    if trust is None:
        raise UsageError("--allowed-signers FILE is missing: the audit verifies against the reviewed allowed signers")
    result = approvals.audit(target.target_dsn(args.dsn), trust, _release_log(args))
    if args.json:
        from oneroof.executor import output

        print(json.dumps(output.audit(result)))
        return ExitCode.OK if result.ok else ExitCode.FAILED
    print(
        f"database {result.database} on cluster {result.system_identifier or '(unreadable)'}; "
        f"allowed signers sha256 {result.allowed_signers_sha256}"
    )
    for finding in result.approvals:
        print(f"{finding.what}: {'VERIFIED' if finding.ok else 'REFUSED'}: {finding.detail}")
    for finding in result.deployments:
        print(f"{finding.what}: {'VERIFIED' if finding.ok else 'REFUSED'}: {finding.detail}")
    for problem in result.ledger:
        print(f"ledger: BROKEN: {problem}")
    print(
        f"{len(result.approvals)} approvals ({sum(f.ok for f in result.approvals)} verified), "
        f"{len(result.deployments)} deployments ({sum(f.ok for f in result.deployments)} verified); "
        f"ledger chain {'BROKEN' if result.ledger else 'intact'}"
    )
    return ExitCode.OK if result.ok else ExitCode.FAILED


# -- the parser and main --------------------------------------------------------------------


def build_parser() -> Parser:
    """The `oneroof` parser: each subcommand's parser is added by its _add_X, beside cmd_X."""
    parser = Parser(
        prog="oneroof",
        description="Verify, rehearse and release the One-Roof governance tiers "
        "of a Directus production database behind a human ratification gate.",
        epilog="Exit codes: 0 ok/OPEN/GO, 1 invariant failed/NO-GO, 2 bad input or unreachable "
        "database, 3 BLOCKED, 4 package integrity, 5 release lock held, 6 rollout applied but its audit "
        "failed (tiers live: inspect, or roll back), 130 interrupted (Ctrl-C). `verify` exits with "
        "pytest's own codes, but a pytest usage error is 2.",
    )
    parser.add_argument("--version", action="version", version=f"oneroof {__version__}")
    parser.add_argument("--debug", action="store_true", help="show tracebacks")
    # Not required: without a command, main() lists the commands (exit 2) instead of argparse's
    # bare "the following arguments are required".
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=Parser)

    _add_server(sub)
    _add_golden(sub)
    _add_demo(sub)
    _add_clone(sub)
    _add_probe(sub)
    _add_verify(sub)
    _add_monitor(sub)
    _add_rollout(sub)
    _add_rollback(sub)
    _add_rehearse(sub)
    _add_report(sub)
    _add_package(sub)
    _add_approve(sub)
    _add_approvals(sub)
    # --debug also after the subcommand and its action (the error messages advise it): SUPPRESS
    # keeps the top-level value when a subcommand does not get it.
    for command in _descendants(parser):
        command.add_argument("--debug", action="store_true", default=argparse.SUPPRESS, help="show tracebacks")
    return parser


def _subparsers(parser: argparse.ArgumentParser) -> argparse._SubParsersAction[Parser] | None:
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            return action
    return None


def _descendants(parser: argparse.ArgumentParser) -> list[argparse.ArgumentParser]:
    """Every subcommand's parser and every action's under it."""
    sub = _subparsers(parser)
    children = list(sub.choices.values()) if sub is not None else []
    return [found for child in children for found in (child, *_descendants(child))]


def _parser_of(parser: Parser, args: argparse.Namespace) -> Parser:
    """The parser of the command (and action) that `args` ran, whose --help an error points to."""
    sub = _subparsers(parser)
    chosen = getattr(args, sub.dest, None) if sub is not None else None
    if sub is None or chosen not in sub.choices:
        return parser
    return _parser_of(sub.choices[chosen], args)


def _validate(args: argparse.Namespace) -> None:
    if args.command == "clone" and args.action == "drop" and not args.name:
        raise UsageError("clone drop needs the NAME of the clone (see `oneroof clone list`)")
    if args.command == "package" and (args.action == "bundle") != (args.destination is not None):
        raise UsageError(
            "package bundle needs DIR, the new directory to copy the package into"
            if args.action == "bundle"
            else f"package {args.action} takes no DIR (only bundle does)"
        )
    if args.command == "golden" and args.action == "build" and args.scale < 1:
        raise UsageError(f"--scale {args.scale} is not a positive whole number: use 1 or more")
    if args.command == "golden" and args.action == "snapshot" and not args.prod_dsn:
        raise UsageError("golden snapshot needs --from PROD_DSN, the production database to copy")
    if "jobs" in args and not 1 <= args.jobs <= 64:
        raise UsageError(f"--jobs {args.jobs} is out of range: use a whole number from 1 to 64")
    if args.command == "golden" and args.action == "show" and not args.target:
        raise UsageError("golden show needs the NAME of a golden database (see `oneroof golden list`)")


class _Sturdy:
    """A text stream whose reader may be gone (`oneroof rollout 2>&1 | head -1`): a write to a
    closed pipe goes to /dev/null instead of raising, so what a command does, and its exit code,
    never depend on whether anyone still reads its output.
    """

    def __init__(self, stream: Any) -> None:
        self._stream = stream

    def write(self, text: str) -> int:
        """Write `text`, to /dev/null once the pipe is closed."""
        return int(self._guarded("write", text))

    def flush(self) -> None:
        """Flush, to /dev/null once the pipe is closed."""
        self._guarded("flush")

    def _guarded(self, method: str, *args: Any) -> Any:
        try:
            return getattr(self._stream, method)(*args)
        except BrokenPipeError:
            try:  # the file descriptor itself: a child process (verify's pytest) inherits it too
                devnull = os.open(os.devnull, os.O_WRONLY)
                os.dup2(devnull, self._stream.fileno())
                os.close(devnull)
            except (OSError, ValueError):  # a stream without one (pytest's capture)
                self._stream = open(os.devnull, "w")  # noqa: SIM115 - it lives as long as the process
            return getattr(self._stream, method)(*args)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._stream, name)


@contextlib.contextmanager
def _output_may_close() -> Iterator[None]:
    """sys.stdout and sys.stderr as _Sturdy streams for the length of one command."""
    saved = sys.stdout, sys.stderr
    sys.stdout, sys.stderr = _Sturdy(sys.stdout), _Sturdy(sys.stderr)
    try:
        yield
    finally:
        sys.stdout.flush()  # what is still buffered, while a closed pipe is still harmless
        sys.stderr.flush()
        sys.stdout, sys.stderr = saved


def _pump(source: int, sink: int) -> None:
    """Copy `source` to `sink` until EOF; once `sink`'s reader is gone, keep draining into nothing."""
    broken = False
    while chunk := os.read(source, 65536):
        view = memoryview(chunk)
        while view and not broken:
            try:
                view = view[os.write(sink, view) :]
            except OSError:  # the reader is gone (EPIPE), or the sink is closed
                broken = True


@contextlib.contextmanager
def _relayed(*fds: int) -> Iterator[None]:
    """Each of `fds` as a pipe this process drains into the real one, for the length of the block:
    a child process (verify's pytest session) that inherits them never meets a closed reader, so
    its outcome is its own and not a broken pipe's.
    """
    sys.stdout.flush()
    sys.stderr.flush()
    relays = []
    for fd in fds:
        real = os.dup(fd)
        source, pipe = os.pipe()
        os.dup2(pipe, fd)
        os.close(pipe)
        thread = threading.Thread(target=_pump, args=(source, real), daemon=True)
        thread.start()
        relays.append((fd, real, source, thread))
    try:
        yield
    finally:
        sys.stdout.flush()
        sys.stderr.flush()
        for fd, real, _, _ in relays:
            os.dup2(real, fd)  # the pipe's last write end closes: the relay reads EOF
        for _, real, source, thread in relays:
            thread.join(timeout=60)  # everything written before the block ended reaches `real` first
            if not thread.is_alive():  # else a grandchild still holds the pipe: the relay keeps both
                os.close(real)
                os.close(source)


def main(argv: Sequence[str] | None = None) -> int:
    """Run one command; every OneroofError becomes one line on stderr and its exit code. A closed
    output pipe changes neither what the command does nor its exit code.
    """
    with _output_may_close():
        return _main(argv)


def _main(argv: Sequence[str] | None) -> int:
    parser = build_parser()
    args, extra = parser.parse_known_args(argv)
    if args.command is None:  # a usage error, but one that shows what there is to run
        _err(parser.format_help().rstrip() + "\n")
        parser.error("a command is missing: run one of the commands above")
    _package_destination(args, extra)
    if extra and args.command != "verify":
        _parser_of(parser, args).error(f"unrecognized arguments: {' '.join(extra)}")
    try:
        _validate(args)
        func: Callable[..., int] = args.func
        return func(args, extra) if args.command == "verify" else func(args)
    except OneroofError as exc:
        if args.debug:
            raise
        _err(f"oneroof: error: {exc.message}")
        return exc.exit_code
    except psycopg.Error as exc:  # a refusal the command did not expect: permissions, timeouts
        if args.debug:
            raise
        _err(
            f"oneroof: error: the database refused: {first_line(exc)} (check the role's privileges and the "
            "server's state; --debug shows where)"
        )
        return ExitCode.USAGE
    except KeyboardInterrupt:
        _err("oneroof: interrupted")
        return ExitCode.INTERRUPTED


if __name__ == "__main__":
    raise SystemExit(main())
