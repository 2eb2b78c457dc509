"""The test run's cleanup when its controller dies without doing it (SIGKILL, the OOM killer, a
CI job cancelled hard): `python -m tests.support.watchdog`, started by the controller in a session
of its own with a pipe as its standard input.

The controller writes the run's server information (tests/support/testing.py `_start`) as one
JSON line, and keeps the pipe open while it lives. Its normal end (also Ctrl-C) cleans up itself,
then writes `done` and closes the pipe: the watchdog leaves. Any other end of the pipe means the
controller died: the watchdog does what the controller's `_stop` would have done, dropping the
run's databases and roles from a shared server, or stopping and removing the temporary server.
"""

from __future__ import annotations

import json
import sys


def main() -> None:
    first = sys.stdin.readline()
    if not first:
        return
    info = json.loads(first)
    rest = sys.stdin.read()  # blocks until the controller closes the pipe, or dies
    if rest.strip() == "done":
        return
    import shutil
    from pathlib import Path

    from tests.support import scratch
    from tests.support.testing import _stop

    try:
        _stop(info)
    finally:
        if info.get("scratch"):  # the run's own directory: the servers its tests started there, then it
            scratch.stop_servers_under(Path(info["scratch"]))
            shutil.rmtree(info["scratch"], ignore_errors=True)


if __name__ == "__main__":
    main()
