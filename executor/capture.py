"""`oneroof golden snapshot`: the harness's snapshot of production with the invariant suite's fingerprint."""

from __future__ import annotations

from oneroof.core import metrics
from oneroof.executor import __version__
from oneroof.harness import capture as snapshot


def take(
    prod_dsn: str,
    admin_dsn: str,
    *,
    name: str | None = None,
    replace: bool = False,
    jobs: int = 1,
    progress: snapshot.Progress | None = None,
) -> snapshot.SnapshotResult:
    """Copy production into golden database `name` (default capture_<production database>, never
    the synthetic golden's name; see harness.capture.take), comparing the copy with production by
    the fingerprint of core/metrics.py.
    """
    return snapshot.take(
        prod_dsn,
        admin_dsn,
        name=name or snapshot.default_name(prod_dsn),
        read=metrics.fingerprint_in_snapshot,
        tool=f"oneroof {__version__}",
        replace=replace,
        jobs=jobs,
        progress=progress,
    )
