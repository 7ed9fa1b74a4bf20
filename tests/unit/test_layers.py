"""DESIGN.md section 3 layering, checked on the source: who may import what."""

from __future__ import annotations

import ast
import importlib
import subprocess
import sys
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[2] / "gateway"
MODULES = sorted(
    ".".join(p.relative_to(PACKAGE.parent).with_suffix("").parts)
    for p in PACKAGE.rglob("*.py")
    if p.name != "__main__.py"
)
FORBIDDEN = {
    "gateway/oauth": {"aiohttp", "asyncpg", "aiocache", "gateway.store", "gateway.web"},
    "gateway/tokens": {"aiohttp", "asyncpg", "aiocache", "gateway.store", "gateway.web"},
    "gateway/store": {"aiohttp", "gateway.web", "gateway.proxy"},
    "gateway/config": {"aiohttp", "asyncpg", "gateway.store", "gateway.web"},
}


def imports_of(path: Path) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
    return names


@pytest.mark.parametrize("layer", sorted(FORBIDDEN))
def test_layer_imports(layer: str) -> None:
    root = PACKAGE.parent / layer
    bad = []
    for path in root.rglob("*.py"):
        for name in imports_of(path):
            if any(name == f or name.startswith(f + ".") for f in FORBIDDEN[layer]):
                bad.append(f"{path.relative_to(PACKAGE.parent)} imports {name}")
    assert not bad


def test_no_module_named_utils() -> None:
    assert not [p for p in PACKAGE.rglob("*.py") if p.stem in ("utils", "helpers", "misc")]


@pytest.mark.parametrize("module", MODULES)
def test_every_module_imports_on_its_own(module: str) -> None:
    result = subprocess.run(
        [sys.executable, "-c", f"import {module}"], capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stderr


def test_modules_list_is_not_empty() -> None:
    assert "gateway.app" in MODULES
    assert importlib.import_module("gateway").__version__
