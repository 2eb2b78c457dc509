"""Concurrent writers standing for a live production: plain psycopg threads that insert into
system_issues and a governed collection's content table, and update rows, while a command runs.
"""

from __future__ import annotations

import itertools
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

import psycopg

ISSUE_IDS = itertools.count(50_000_000)  # above any golden's ids, at every scale used here
CONTENT = "kh_tags"
# Between one writer's writes: hundreds of commits a second in all, so that every read of a session
# that did not take the session's snapshot still sees others' writes (a worker started a second
# later is hundreds of writes behind), without the writers and their backends taking the two
# cores from the command under test. Unpaced, they made an xdist session of the suite twice as slow.
PACE = 0.005


@dataclass
class Traffic:
    """What the writers did: committed writes by kind, and the errors they met."""

    writes: dict[str, int] = field(default_factory=lambda: {"issues": 0, "content": 0, "updates": 0})
    errors: list[str] = field(default_factory=list)
    stop: threading.Event = field(default_factory=threading.Event)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def count(self, kind: str) -> None:
        with self.lock:
            self.writes[kind] += 1

    @property
    def total(self) -> int:
        with self.lock:
            return sum(self.writes.values())

    def wait_for(self, writes: int, timeout: float = 120.0) -> None:
        """Until the writers have committed `writes` more writes (poll, no fixed sleep)."""
        goal, deadline = self.total + writes, time.monotonic() + timeout
        while self.total < goal:
            assert not self.errors, self.errors
            assert time.monotonic() < deadline, f"the writers made {self.total} of {goal} writes in {timeout} s"
            time.sleep(0.01)


def _write(dsn: str, traffic: Traffic, number: int) -> None:
    try:
        with psycopg.connect(dsn, autocommit=True, application_name=f"live-writer-{number}") as conn:
            for step in itertools.count():
                if traffic.stop.is_set():
                    return
                kind = ("issues", "content", "updates")[(step + number) % 3]
                if kind == "issues":
                    conn.execute(
                        "INSERT INTO system_issues (id, collection, severity, status, code, message, source, "
                        "occurrences, first_seen, last_seen, fingerprint) VALUES (%s, 'kh_tags', 'info', 'open', "
                        "'E0001', 'live', 'api', 1, now(), now(), md5(%s::text))",
                        (next(ISSUE_IDS), step),
                    )
                elif kind == "content":
                    conn.execute("INSERT INTO kh_tags (name, status) VALUES (%s, 'draft')", (f"live {number}-{step}",))
                else:
                    conn.execute(
                        "UPDATE system_issues SET occurrences = occurrences + 1, last_seen = now() WHERE id = %s",
                        (1 + (step * 7919 + number) % 1000,),
                    )
                    conn.execute(
                        "UPDATE kh_tags SET status = CASE status WHEN 'draft' THEN 'published' ELSE 'draft' END, "
                        "date_updated = now() WHERE id = %s",
                        (1 + (step + number) % 40,),
                    )
                traffic.count(kind)
                time.sleep(PACE)
    except Exception as exc:  # noqa: BLE001 - a writer's failure is the test's finding
        traffic.errors.append(f"writer {number}: {type(exc).__name__}: {exc}")


@contextmanager
def writers(dsn: str, threads: int = 3) -> Iterator[Traffic]:
    """`threads` writers on `dsn` for the duration of the block; it starts once they have written."""
    traffic = Traffic()
    pool = [threading.Thread(target=_write, args=(dsn, traffic, n), daemon=True) for n in range(threads)]
    for thread in pool:
        thread.start()
    try:
        traffic.wait_for(3 * threads)
        yield traffic
    finally:
        traffic.stop.set()
        for thread in pool:
            thread.join(timeout=60)
    assert not traffic.errors, traffic.errors
