"""Live application traffic through the real Directus REST API, for the tests and the benchmarks.

A production is never quiet: editors create and edit items, flows write `system_issues`, users
log in. `Traffic` does all four through Directus at a stated rate (writes per second), from a
few threads, and records each write's latency and outcome. Each write leaves a row that can be
found again, so a test can check that the writes made equal the rows found: none failed, none lost.

- create: POST /items/<collection> as an admin (static token), in the governed collections in turn;
  the item's name is `traffic <tag> c<n>`.
- update: PATCH /items/<collection>/<id> as an editor of the Data Stewards role (static token),
  each on an item of its own; the item's code becomes `u<tag>-<n>`.
- issue: POST /items/system_issues as the admin (Directus serves the table to admins though it is not
  registered in directus_collections); its code is `T<tag>`, its id a range of the tag's own.
- login: POST /auth/login as a human approver (argon2 in Directus, the dearest write); each leaves
  a row in directus_sessions.

The schedule is open-loop: write n is due at start + n / rate whatever the earlier writes took, so
a write held up by a lock shows as latency, not as a slower rate. At most `workers` writes are
in flight: when all are, the next write waits for one to answer, and records how late it was sent
(`late`) against its schedule; nothing queues up behind a stopped traffic.
"""

from __future__ import annotations

import secrets
import statistics
import threading
import time
from collections import Counter
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from psycopg import sql

from oneroof.harness import catalog
from oneroof.harness.db import connect
from tests.support.directus import DirectusClient, DirectusDatabase, DirectusServer, Installation, Response, start

KINDS = ("create", "update", "issue", "login")
# One cycle of 40 writes: a login in every 40 (a login costs Directus an argon2 hash, ~0.1 s of CPU
# on an idle core, 0.5 s on a loaded one: more would measure the hashing, not the database).
DEFAULT_MIX: tuple[str, ...] = ("create", "update", "issue") * 13 + ("login",)
EDITOR = catalog.account("editor")  # Data Stewards: read and update on every governed collection
LOGIN = catalog.account("l1")  # logs in and does nothing else
UPDATE_TARGETS = 200  # items per collection the updates may edit, each once
# The environment of a Directus that takes the traffic: its pressure limiter answers 503 "Under
# pressure" once node's event loop lags 500 ms, which a two-core machine shared with the test
# workers reaches without any help from oneroof; the figures are about the database.
DIRECTUS_ENV = {"PRESSURE_LIMITER_ENABLED": "false"}
ISSUE_IDS = 10**12  # system_issues ids of the traffic: 10**12 + tag * 10**6 + n (the seed's are below)


@dataclass(frozen=True)
class Accounts:
    """What the traffic writes as, and where: made once per production by `prepare`."""

    url: str
    admin_token: str
    editor_token: str
    login_email: str
    login_password: str
    collections: tuple[str, ...]
    targets: tuple[tuple[str, int], ...]  # (collection, id) of existing items, interleaved by collection


def prepare(admin: DirectusClient, collections: Sequence[str] | None = None) -> Accounts:
    """Ready a production for traffic, through the API as `admin` (an administrator): static tokens
    for the admin and the editor, a password for the login account, and the items updates may edit.
    The governed collections are those of the inventory that Directus serves, unless given.
    """
    admin_token, editor_token, password = (f"traffic-{secrets.token_hex(12)}" for _ in range(3))
    if collections is None:
        served = {c["collection"] for c in admin.get("/collections", limit=-1)}
        listed = [r["collection"] for r in admin.get("/items/os_collection_inventory", fields="collection", limit=-1)]
        collections = sorted(c for c in listed if c in served)
    admin.patch(f"/users/{EDITOR.id}", {"token": editor_token})
    admin.patch(f"/users/{LOGIN.id}", {"password": password})
    ids = {
        c: [int(r["id"]) for r in admin.get(f"/items/{c}", fields="id", sort="id", limit=UPDATE_TARGETS)]
        for c in collections
    }
    targets = tuple((c, ids[c][i]) for i in range(UPDATE_TARGETS) for c in collections if i < len(ids[c]))
    admin.patch("/users/me", {"token": admin_token})  # last: the admin's own access token stays valid till here
    return Accounts(admin.url, admin_token, editor_token, LOGIN.email, password, tuple(collections), targets)


def serve(installation: Installation, database: DirectusDatabase, *, log: Path) -> DirectusServer:
    """Start Directus on `database` to take traffic (DIRECTUS_ENV); the caller stops it."""
    return start(installation, replace(database, env={**database.env, **DIRECTUS_ENV}), log=log)


@dataclass(frozen=True)
class Write:
    """One application write: what, when it was sent (seconds since the traffic started), how long
    Directus took to answer, how late it was sent against its schedule, and the answer.
    """

    kind: str
    n: int
    sent: float
    seconds: float
    late: float
    status: int  # HTTP status; 0 when no answer came
    error: str = ""

    @property
    def ok(self) -> bool:
        return 200 <= self.status < 300


def percentile(values: Sequence[float], q: float) -> float:
    """The nearest-rank percentile `q` (0-100) of `values`; 0.0 when there are none."""
    if not values:
        return 0.0
    ordered = sorted(values)
    rank = max(1, -(-len(ordered) * q // 100))  # ceil(len * q / 100), at least 1
    return ordered[int(rank) - 1]


@dataclass(frozen=True)
class Latency:
    """Latency figures of a set of writes, in milliseconds."""

    writes: int
    failed: int
    p50: float
    p99: float
    max: float
    late_max: float

    @classmethod
    def of(cls, writes: Sequence[Write]) -> Latency:
        seconds = [w.seconds * 1000 for w in writes]
        return cls(
            len(writes),
            sum(not w.ok for w in writes),
            percentile(seconds, 50),
            percentile(seconds, 99),
            max(seconds, default=0.0),
            max((w.late * 1000 for w in writes), default=0.0),
        )

    def __str__(self) -> str:
        return (
            f"{self.writes} writes, {self.failed} failed, p50 {self.p50:.0f} ms, p99 {self.p99:.0f} ms, "
            f"max {self.max:.0f} ms"
        )


@dataclass
class Traffic:
    """Application writes through Directus at `rate` per second until stopped (`with Traffic(...)`).

    `dsn` is the production database Directus serves: read at the start (sessions of the login
    account) and by `found`, never written.
    """

    accounts: Accounts
    dsn: str
    rate: float = 20.0
    mix: tuple[str, ...] = DEFAULT_MIX
    workers: int = 16  # writes in flight at most: enough that a slow answer delays no other write
    tag: str = field(default_factory=lambda: secrets.token_hex(3))
    writes: list[Write] = field(default_factory=list)
    _stop: threading.Event = field(default_factory=threading.Event)
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _counters: Counter[str] = field(default_factory=Counter)
    _sessions: int = 0
    _started: float = 0.0
    _thread: threading.Thread | None = None

    def __post_init__(self) -> None:
        unknown = set(self.mix) - set(KINDS)
        if self.rate <= 0 or not self.mix or unknown:
            raise ValueError(f"traffic needs a rate > 0 and a mix of {KINDS}; got {self.rate}, {self.mix}")

    # -- running ----------------------------------------------------------------------------

    def start(self) -> Traffic:
        with connect(self.dsn) as conn:
            self._sessions = _sessions(conn)
        self._started = time.monotonic()
        self._thread = threading.Thread(target=self._dispatch, name=f"traffic-{self.tag}", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop sending; return once every write sent has its answer."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join()

    def __enter__(self) -> Traffic:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def now(self) -> float:
        """Seconds since the traffic started, on the clock of `Write.sent`."""
        return time.monotonic() - self._started

    def _dispatch(self) -> None:
        free = threading.Semaphore(self.workers)  # no queue: a write waits for a free worker, and is late
        with ThreadPoolExecutor(self.workers, thread_name_prefix=f"traffic-{self.tag}") as pool:
            n = 0
            while not self._stop.is_set():
                due = n / self.rate
                if self._stop.wait(max(0.0, due - self.now())):
                    break
                while not free.acquire(timeout=0.1):
                    if self._stop.is_set():
                        return
                kind = self.mix[n % len(self.mix)]
                with self._lock:
                    self._counters[kind] += 1
                    seq = self._counters[kind] - 1
                pool.submit(self._write, kind, seq, due, free)
                n += 1

    def _write(self, kind: str, n: int, due: float, free: threading.Semaphore) -> None:
        try:
            self._record(kind, n, due)
        finally:
            free.release()

    def _record(self, kind: str, n: int, due: float) -> None:
        sent = self.now()
        try:
            answer = self._send(kind, n)
            status, error = answer.status, "" if answer.ok else str(answer.payload)[:300]
        except (OSError, ValueError) as exc:  # no answer: refused, reset, timed out
            status, error = 0, f"{type(exc).__name__}: {exc}"
        write = Write(kind, n, sent, self.now() - sent, max(0.0, sent - due), status, error)
        with self._lock:
            self.writes.append(write)

    def _send(self, kind: str, n: int) -> Response:
        a = self.accounts
        admin = DirectusClient(a.url, a.admin_token)
        if kind == "create":
            collection = a.collections[n % len(a.collections)]
            return admin.request(
                "POST", f"/items/{collection}", {"name": f"traffic {self.tag} c{n}", "status": "draft"}
            )
        if kind == "update":
            collection, item = a.targets[n % len(a.targets)]
            body = {"code": f"u{self.tag}-{n}"}
            return DirectusClient(a.url, a.editor_token).request("PATCH", f"/items/{collection}/{item}", body)
        if kind == "issue":
            return admin.request("POST", "/items/system_issues", self._issue(n))
        return DirectusClient(a.url).request(
            "POST", "/auth/login", {"email": a.login_email, "password": a.login_password}
        )

    def _issue(self, n: int) -> dict[str, Any]:
        at = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
        return {
            "id": ISSUE_IDS + int(self.tag, 16) * 10**6 + n,
            "collection": self.accounts.collections[n % len(self.accounts.collections)],
            "item": str(n),
            "severity": "info",
            "status": "open",
            "code": f"T{self.tag}",
            "message": f"traffic {self.tag} i{n}",
            "source": "api",
            "occurrences": 1,
            "first_seen": at,
            "last_seen": at,
            "fingerprint": f"{self.tag}{n:026d}"[-32:],
        }

    # -- what it did ------------------------------------------------------------------------

    def between(self, start: float, stop: float) -> list[Write]:
        """The writes sent from `start` to `stop` (seconds on the clock of `now`)."""
        with self._lock:
            return [w for w in self.writes if start <= w.sent <= stop]

    def made(self) -> Counter[str]:
        """Successful writes by kind (updates: the items they edited, each counted once)."""
        with self._lock:
            done = [w for w in self.writes if w.ok]
        made = Counter(w.kind for w in done if w.kind != "update")
        made["update"] = len(
            {self.accounts.targets[w.n % len(self.accounts.targets)] for w in done if w.kind == "update"}
        )
        return made

    def failures(self) -> list[Write]:
        with self._lock:
            return [w for w in self.writes if not w.ok]

    def found(self) -> Counter[str]:
        """The traffic's rows found in production by kind: created items, edited items, issues, sessions."""
        found: Counter[str] = Counter()
        with connect(self.dsn) as conn:
            for collection in self.accounts.collections:
                row = conn.execute(
                    sql.SQL(
                        "SELECT count(*) FILTER (WHERE name LIKE %s) AS created, "
                        "count(*) FILTER (WHERE code LIKE %s) AS updated FROM {}"
                    ).format(sql.Identifier(collection)),
                    (f"traffic {self.tag} c%", f"u{self.tag}-%"),
                ).fetchone()
                assert row is not None
                found["create"] += row["created"]
                found["update"] += row["updated"]
            issues = conn.execute(
                "SELECT count(*) AS n FROM system_issues WHERE code = %s", (f"T{self.tag}",)
            ).fetchone()
            assert issues is not None
            found["issue"] = issues["n"]
            found["login"] = _sessions(conn) - self._sessions
        return found

    def summary(self) -> str:
        with self._lock:
            writes = list(self.writes)
        kinds = Counter(w.kind for w in writes)
        rate = len(writes) / max(self.now(), 1e-9)
        return f"traffic {self.tag}: {Latency.of(writes)} ({dict(kinds)}, {rate:.1f}/s)"


def _sessions(conn: Any) -> int:
    row = conn.execute('SELECT count(*) AS n FROM directus_sessions WHERE "user" = %s', (LOGIN.id,)).fetchone()
    return int(row["n"])


@contextmanager
def running(accounts: Accounts, dsn: str, **options: Any) -> Iterator[Traffic]:
    """Traffic running for the block; stopped (every answer in) when it ends."""
    traffic = Traffic(accounts, dsn, **options)
    with traffic:
        yield traffic


def median(values: Sequence[float]) -> float:
    return statistics.median(values) if values else 0.0
