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
    from tests.support.testing import _stop

    _stop(info)


if __name__ == "__main__":
    main()
