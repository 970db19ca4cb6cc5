"""No import cycle between the crate's top-level modules: each layer (leaves such as
`secret`, `policy`, `keys`; then `config`; then the logic that reads it; `filter` last)
only imports layers below it. Reads `use crate::…` paths from src/, outside test code."""

from __future__ import annotations

import re
from pathlib import Path

SRC = Path(__file__).resolve().parent.parent / "src"
TEST_MODULE = re.compile(r"#\[cfg\(test\)\]\s*(?:pub(?:\(crate\))?\s+)?mod\s+(\w+)\s*;")
INLINE_TESTS = re.compile(r"#\[cfg\(test\)\]\s*mod\s+\w+\s*\{")
CRATE_PATH = re.compile(r"\bcrate::(\w+)")


def module_dir(file: Path) -> Path:
    """Where the children of the module in `file` live."""
    return file.parent if file.name in ("mod.rs", "lib.rs") else file.with_suffix("")


def files_of_test_modules() -> set[Path]:
    skipped: set[Path] = set()
    for file in SRC.rglob("*.rs"):
        for name in TEST_MODULE.findall(file.read_text()):
            base = module_dir(file)
            skipped.update({base / f"{name}.rs"})
            skipped.update((base / name).rglob("*.rs"))
    return skipped


def top_level_imports() -> dict[str, set[str]]:
    skipped = files_of_test_modules()
    edges: dict[str, set[str]] = {}
    for file in SRC.rglob("*.rs"):
        relative = file.relative_to(SRC)
        if file in skipped or relative.name == "lib.rs":
            continue
        module = relative.parts[0].removesuffix(".rs")
        code = INLINE_TESTS.split(file.read_text())[0]
        edges.setdefault(module, set()).update(
            target for target in CRATE_PATH.findall(code) if target not in (module, "testing"))
    return edges


def cycles(edges: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        for target in edges.get(node, ()):
            if target not in index:
                visit(target)
                low[node] = min(low[node], low[target])
            elif target in stack:
                low[node] = min(low[node], index[target])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in sorted(edges):
        if node not in index:
            visit(node)
    return found


def test_the_checker_sees_a_cycle():
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


def test_no_import_cycle_between_top_level_modules():
    edges = top_level_imports()
    assert "config" in edges and "filter" in edges, sorted(edges)
    found = cycles(edges)
    detail = {member: sorted(edges[member] & set(component)) for component in found for member in component}
    assert not found, f"import cycles: {found}; edges inside them: {detail}"
