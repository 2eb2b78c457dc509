"""Gate stage: the release package verifies and every gate condition holds, one test per
condition so a blocked gate names its reason.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from oneroof.core import gate, package
from oneroof.core.settings import Options

pytestmark = pytest.mark.gate


def test_package_verifies(oneroof_options: Options) -> None:
    pkg = package.load(Path(oneroof_options.package), oneroof_options.expect_sha256 or None)
    assert [t.number for t in pkg.tiers] == [2, 3, 4, 5, 6]


@pytest.mark.parametrize("condition", gate.CONDITIONS)
def test_gate_condition_holds(condition: str, verdict: gate.Verdict) -> None:
    assert condition not in verdict.reasons, f"BLOCKED: {verdict.reasons.get(condition)}"
    if condition == "state":
        assert verdict.state == "greenfield", f"state={verdict.state}: the rollout needs a greenfield target"
