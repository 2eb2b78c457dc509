"""The house rules of the checkout, read from its source (no database): which package imports
which, that nothing imports a test module, how long a product function may grow, and the layout
of the card's folders.
"""

from __future__ import annotations

import ast
import tomllib
from collections.abc import Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
# Each package of ours and the packages of ours it may import (harness < core < executor, fixtures;
# the invariants read core, harness and the fixtures).
ALLOWED = {
    "harness": set(),
    "core": {"harness"},
    "executor": {"core", "harness"},
    "fixtures": {"core", "harness"},
    "invariants": {"core", "harness", "fixtures"},
}
PRODUCT = ("core", "executor", "fixtures", "harness")
LONGEST = 80  # lines, def line to the function's last line


def sources(*folders: str) -> Iterator[Path]:
    for folder in folders:
        yield from sorted((ROOT / folder).rglob("*.py"))


def every_source() -> Iterator[Path]:
    """Every .py of the checkout, but what git ignores here (build trees, the link tree of .ci/pythonpath)."""
    skip = {".git", ".oneroof-path", ".venv", "build", "__pycache__", ".hypothesis", ".pytest_cache", "runs"}
    for path in sorted(ROOT.rglob("*.py")):
        parts = path.relative_to(ROOT).parts
        if not skip.intersection(parts) and not any(p.endswith(".egg-info") for p in parts):
            yield path


def imported(path: Path) -> set[str]:
    """Every module `path` imports, at the top or inside a function, as a dotted name: relative
    imports resolved against the file's own package (`oneroof.<folder>`, or `tests`/`bench`), and
    `from X import y` counted as both X and X.y (y may be a module).
    """
    relative = path.relative_to(ROOT)
    package = ["oneroof", relative.parts[0]] if relative.parts[0] in ALLOWED else [relative.parts[0]]
    package += list(relative.parts[1:-1])
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = package[: len(package) - node.level + 1] if node.level else []
            module = ".".join(base + ([node.module] if node.module else []))
            names.add(module)
            names.update(f"{module}.{alias.name}" for alias in node.names)
    return names


def ours(name: str) -> str | None:
    """The package of ours a dotted name is in (`oneroof.core.gate` -> core), or None."""
    parts = name.split(".")
    return parts[1] if len(parts) > 1 and parts[0] == "oneroof" else None


def edges() -> dict[str, set[str]]:
    """Package -> the packages of ours its modules import (itself left out)."""
    graph: dict[str, set[str]] = {package: set() for package in ALLOWED}
    for package in ALLOWED:
        for path in sources(package):
            graph[package] |= {p for p in map(ours, imported(path)) if p is not None and p != package}
    return graph


def cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """A cycle of `graph` as the path that closes it, or None."""
    done: set[str] = set()

    def visit(node: str, path: list[str]) -> list[str] | None:
        if node in path:
            return path[path.index(node) :] + [node]
        if node in done:
            return None
        for target in sorted(graph.get(node, ())):
            found = visit(target, path + [node])
            if found:
                return found
        done.add(node)
        return None

    for node in sorted(graph):
        found = visit(node, [])
        if found:
            return found
    return None


def test_packages_import_only_the_layers_below() -> None:
    graph = edges()
    wrong = {package: sorted(targets - ALLOWED[package]) for package, targets in graph.items()}
    assert not {p: t for p, t in wrong.items() if t}, f"imports across the layering: {wrong}"


def test_the_packages_import_no_cycle() -> None:
    assert cycle(ALLOWED) is None  # the rule itself
    assert cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]  # the check sees one
    assert cycle(edges()) is None


def test_the_packages_import_neither_tests_nor_bench() -> None:
    wrong = sorted(
        f"{path.relative_to(ROOT)}: {name}"
        for path in sources(*ALLOWED)
        for name in imported(path)
        if name.split(".")[0] in ("tests", "bench")
    )
    assert not wrong, wrong


def is_test_module(name: str) -> bool:
    parts = name.split(".")
    return parts[-1].startswith("test_") or (len(parts) > 1 and parts[0] == "tests" and parts[1].startswith("test_"))


def test_nothing_imports_a_test_module() -> None:
    """Test modules are run, never imported: what several tests share lives in tests/support."""
    wrong = sorted(
        f"{path.relative_to(ROOT)}: {name}"
        for path in every_source()
        for name in imported(path)
        if is_test_module(name)
    )
    assert not wrong, wrong


def product_functions() -> list[tuple[int, str]]:
    """(lines, where) of every function and method of the product packages, longest first."""
    found = []
    for path in sources(*PRODUCT):
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                lines = (node.end_lineno or node.lineno) - node.lineno + 1
                found.append((lines, f"{path.relative_to(ROOT)}:{node.lineno} {node.name}"))
    return sorted(found, reverse=True)


def test_no_product_function_is_long() -> None:
    functions = product_functions()
    assert functions, "no product function found"
    top = "\n".join(f"  {lines} lines: {where}" for lines, where in functions[:5])
    assert functions[0][0] < LONGEST, f"functions of {LONGEST} lines or more; the longest:\n{top}"


def test_the_card_layout() -> None:
    for name in ("conftest.py", "pyproject.toml"):
        assert (ROOT / name).is_file(), name
    for name in ("invariants", "fixtures", "snapshots", "executor", "tests", "rollout", "bench"):
        assert (ROOT / name).is_dir(), name
    assert not (ROOT / "rollout" / "snapshots").exists(), "the expected figures live in snapshots/ only"


def test_snapshots_holds_what_the_manifest_lists() -> None:
    manifest = tomllib.loads((ROOT / "rollout" / "manifest.toml").read_text())
    listed = sorted(entry["path"] for entry in manifest["snapshot"])
    assert listed, "the manifest lists no snapshot"
    assert all(Path(p).parent == Path("snapshots") and (ROOT / p).is_file() for p in listed), listed
    present = sorted(str(p.relative_to(ROOT)) for p in (ROOT / "snapshots").glob("*.ambr"))
    assert listed == present, f"the manifest lists {listed}, snapshots/ holds {present}"


def plugins_of(path: Path) -> list[str]:
    """The literal value of the module-level `pytest_plugins` of `path` ([] without one)."""
    for node in ast.parse(path.read_text()).body:
        if isinstance(node, ast.Assign) and any(
            isinstance(t, ast.Name) and t.id == "pytest_plugins" for t in node.targets
        ):
            value = ast.literal_eval(node.value)
            return [value] if isinstance(value, str) else list(value)
    return []


def test_the_root_conftest_loads_only_the_production_plugin() -> None:
    assert plugins_of(ROOT / "conftest.py") == ["oneroof.fixtures.plugin"]


def test_the_production_plugin_loads_nothing_test_only() -> None:
    plugin = ROOT / "fixtures" / "plugin.py"
    wrong = sorted(
        name
        for name in imported(plugin) | set(plugins_of(plugin))
        if name.split(".")[0] in ("tests", "hypothesis", "pytester") or "pytester" in name.split(".")
    )
    assert not wrong, wrong
