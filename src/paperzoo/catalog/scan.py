"""Find the tests marked ``@pytest.mark.paper("slug")`` by reading the test sources (no import, no run).

A mark counts for a test when it appears in the test's decorators (``pytest.param(..., marks=...)``
included), on its class, or in the module's ``pytestmark``. A test is slow when ``mark.slow`` appears
in the same places; slow tests do not make a paper ``verified`` because the default run skips them.
"""
from __future__ import annotations

import ast
from pathlib import Path


def _chain(node: ast.AST) -> str:
    parts = []
    while isinstance(node, ast.Attribute):
        parts.append(node.attr)
        node = node.value
    if isinstance(node, ast.Name):
        parts.append(node.id)
    return ".".join(reversed(parts))


def _marks(nodes: list[ast.AST]) -> tuple[set[str], bool]:
    slugs: set[str] = set()
    slow = False
    for root in nodes:
        for node in ast.walk(root):
            if isinstance(node, ast.Call) and _chain(node.func).endswith("mark.paper"):
                slugs.update(a.value for a in node.args if isinstance(a, ast.Constant) and isinstance(a.value, str))
            elif isinstance(node, ast.Attribute) and _chain(node).endswith("mark.slow"):
                slow = True
    return slugs, slow


def _doc(node: ast.AST) -> str:
    doc = ast.get_docstring(node) or ""
    return doc.strip().splitlines()[0] if doc.strip() else ""


def scan_tests(tests_dir: Path, root: Path | None = None) -> dict[str, list[dict]]:
    """``{slug: [{"test": node_id, "doc": first docstring line, "slow": bool}, ...]}``, sorted."""
    root = root or tests_dir.parent
    found: dict[str, list[dict]] = {}
    for path in sorted(tests_dir.rglob("test_*.py")):
        tree = ast.parse(path.read_text(), str(path))
        rel = path.relative_to(root).as_posix()
        module_level = [n.value for n in tree.body if isinstance(n, ast.Assign)
                        and any(isinstance(t, ast.Name) and t.id == "pytestmark" for t in n.targets)]
        todo: list[tuple[str, ast.AST, list[ast.AST]]] = []
        for node in tree.body:
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and node.name.startswith("test"):
                todo.append((f"{rel}::{node.name}", node, [*module_level, *node.decorator_list]))
            elif isinstance(node, ast.ClassDef) and node.name.startswith("Test"):
                for item in node.body:
                    if isinstance(item, (ast.FunctionDef, ast.AsyncFunctionDef)) and item.name.startswith("test"):
                        todo.append((f"{rel}::{node.name}::{item.name}", item,
                                     [*module_level, *node.decorator_list, *item.decorator_list]))
        for node_id, fn, decorators in todo:
            slugs, slow = _marks(decorators)
            for slug in slugs:
                found.setdefault(slug, []).append({"test": node_id, "doc": _doc(fn), "slow": slow})
    return {slug: sorted(v, key=lambda c: c["test"]) for slug, v in sorted(found.items())}
