"""The pytest plugin of the mapping run of bench/mutation.py's trust checks: under `coverage run`,
it names coverage's context after the test that runs, in this process (`switch_context`) and in
every process a test starts (the static context of the configuration coverage hands down to
subprocesses), so that each line of a mutated module maps to the tests that execute it. The tests'
order is written beside the map: a mutant's check runs its tests in that order. What a test
module's import runs (module-level set-up: a trust root, signed cases) is named after the module,
as `collect:` and its node id. oneroof's functools caches are emptied at each switch, so a cached
computation runs again, and is mapped, for every test that reads it.
"""

from __future__ import annotations

import base64
import json
import os
import sys
from collections.abc import Iterator

import coverage
import pytest

ORDER = "MUTATION_ORDER"  # where the tests' order is written, a path the caller sets
HANDED_DOWN = "COVERAGE_PROCESS_CONFIG"  # coverage's own variable: the subprocesses' configuration


def _forget_caches() -> None:
    """Empty every functools cache of oneroof's modules: a line a cached call ran for an earlier
    test would otherwise not run again, and the map would name only that test, though every test
    that reads the cached result sees a mutant of the line (the package's parse, for one).
    """
    for name, module in list(sys.modules.items()):
        if name.startswith("oneroof") and module is not None:
            for value in list(vars(module).values()):
                clear = getattr(value, "cache_clear", None)
                if callable(clear) and hasattr(value, "cache_info"):
                    clear()


def _switch(name: str) -> None:
    _forget_caches()
    current = coverage.Coverage.current()
    if current is not None:
        current.switch_context(name)
    handed = os.environ.get(HANDED_DOWN)
    if handed:
        config = json.loads(base64.b64decode(handed))
        config["context"] = name
        os.environ[HANDED_DOWN] = base64.b64encode(json.dumps(config).encode()).decode()


_ran: list[str] = []
COLLECTING = "collect:"  # the context of a test module's import: COLLECTING + the module's node id


def pytest_collectstart(collector: pytest.Collector) -> None:
    if isinstance(collector, pytest.Module):  # its import, and what its module level runs, come next
        _switch(COLLECTING + collector.nodeid)


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_protocol(item: pytest.Item, nextitem: pytest.Item | None) -> Iterator[None]:
    _switch(item.nodeid)
    _ran.append(item.nodeid)
    yield


def pytest_sessionfinish(session: pytest.Session) -> None:
    path = os.environ.get(ORDER)
    if path:
        with open(path, "w") as out:
            json.dump(_ran, out)
