"""The kernel knows no service: nothing under backstop/ imports services.* (statically or
through importlib). A service's own tools live in the service."""

from __future__ import annotations

import ast
from pathlib import Path

KERNEL = Path(__file__).resolve().parents[2] / "backstop"


def _imported_modules(tree: ast.AST) -> list[str]:
    names: list[str] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names += [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.append(node.module)
        elif (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Attribute | ast.Name)
            and (node.func.attr if isinstance(node.func, ast.Attribute) else node.func.id)
            in ("import_module", "__import__")
            and node.args
            and isinstance(node.args[0], ast.Constant)
            and isinstance(node.args[0].value, str)
        ):
            names.append(node.args[0].value)
    return names


def test_the_kernel_imports_no_service() -> None:
    sources = sorted(KERNEL.rglob("*.py"))
    assert len(sources) > 10
    upward = [
        f"{path.relative_to(KERNEL.parent)}: {name}"
        for path in sources
        for name in _imported_modules(ast.parse(path.read_text(encoding="utf-8")))
        if name == "services" or name.startswith("services.")
    ]
    assert upward == []


def test_a_dynamic_import_of_a_service_is_seen() -> None:
    tree = ast.parse('import importlib\nimportlib.import_module("services.registry.seed")')
    assert "services.registry.seed" in _imported_modules(tree)
