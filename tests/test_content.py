"""core/content.py reads the package's amber snapshots back: every value syrupy writes for
plain data comes back equal (no database: the stages' own sessions test the rest).
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest
from syrupy.extensions.amber import AmberDataSerializer

from oneroof.core import metrics, package
from oneroof.core.content import _literal, figures, snapshot_entries

VALUES = {
    "nested": {"a": [1, -2, 0], "b": {"c": None, "d": True, "e": False}, "f": 'it\'s "quoted"'},
    "scalars": [-7, 3, "x", None],
    "tuple": ("t", -1),
    "set": {"s"},
    "empty": {"list": [], "dict": {}},
}


def test_snapshot_entries_read_back_what_syrupy_wrote(tmp_path: Path) -> None:
    lines = ["# serializer version: 1"]
    for name, value in VALUES.items():
        body = "\n".join("  " + line for line in AmberDataSerializer.serialize(value).splitlines())
        lines += [f"# name: test_values[{name}]", body, "# ---"]
    path = tmp_path / "test_values.ambr"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    read = snapshot_entries(path)
    assert read == {
        f"test_values[{name}]": (list(value) if isinstance(value, tuple) else value) for name, value in VALUES.items()
    }


def test_a_snapshot_that_is_not_plain_data_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "test_bad.ambr"
    path.write_text("# serializer version: 1\n# name: test_bad\n  print('x')\n# ---\n", encoding="utf-8")
    with pytest.raises(ValueError, match="not a snapshot value"):
        snapshot_entries(path)


def test_the_reader_takes_only_what_it_knows() -> None:
    """Empty constructor calls read as empty values; any other operator or name is refused."""

    def read(text: str) -> object:
        return _literal(ast.parse(text, mode="eval").body)

    assert (read("dict()"), read("list()"), read("set()"), read("-3")) == ({}, [], set(), -3)
    for text in ("not 1", "+1", "x", "1 - 2", "dict(a=1)", "list([1], [2])"):
        with pytest.raises(ValueError, match="not a snapshot value"):
            read(text)
    long = "some_very_long_name_that_amber_never_writes_" * 4
    with pytest.raises(ValueError) as refused:
        read(long)
    assert str(refused.value) == "not a snapshot value: " + ast.dump(ast.parse(long, mode="eval").body)[:80]


@pytest.mark.parametrize("stage", ["baseline", "finalized", "greenfield"])
def test_figures_are_the_package_snapshots_metric_entries(stage: str) -> None:
    """Every pinned metric of a stage, one entry each, from the package's snapshots (the one place
    they are written); content figures (system_issues) are observed, never pinned.
    """
    found = figures(package.snapshots_dir(package.DEFAULT_DIR), stage)
    measured = set(metrics.PINNED) - ({"ospa"} if stage != "baseline" else set())
    assert set(found) == measured and all(isinstance(v, int) for v in found.values())
    assert "system_issues" not in found and found["inventory"] > 0
