"""DESIGN.md section 3 layering, checked on the source: who may import what, and no cycles.

Direction, top to bottom: cli -> server -> app -> {web, proxy}; each face -> {http, grants (the
use cases)}; grants -> store; everything may use {oauth, tokens, config, errors}. Every import
counts, those inside functions ("lazy" ones) included.
"""

from __future__ import annotations

import ast
import importlib
import json
import subprocess
import sys
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[2] / "gateway"
MODULES = sorted(
    ".".join(p.relative_to(PACKAGE.parent).with_suffix("").parts).removesuffix(".__init__")
    for p in PACKAGE.rglob("*.py")
    if p.name != "__main__.py"
)
ENTRY = {"gateway.cli", "gateway.server", "gateway.app", "gateway.connections"}
FACES = {"gateway.web", "gateway.proxy"}
FORBIDDEN: dict[str, set[str]] = {
    "gateway.oauth": {"aiohttp", "asyncpg", "aiocache", "gateway.store", "gateway.grants"}
    | {"gateway.http"}
    | FACES
    | ENTRY,
    "gateway.tokens": {"aiohttp", "asyncpg", "aiocache", "gateway.store", "gateway.grants"}
    | {"gateway.http"}
    | FACES
    | ENTRY,
    "gateway.config": {"aiohttp", "asyncpg", "gateway.store", "gateway.grants", "gateway.http"}
    | FACES
    | ENTRY,
    "gateway.store": {"aiohttp", "gateway.grants", "gateway.http"} | FACES | ENTRY,
    "gateway.grants": {"aiohttp", "gateway.http"} | FACES | ENTRY,
    # Outgoing mail sits beside the use cases (they and handlers call its queue_mail); what a
    # message is stays pure.
    "gateway.mail": {"aiohttp", "gateway.grants", "gateway.http"} | FACES | ENTRY,
    "gateway.mail.message": {"asyncpg", "aiosmtplib", "gateway.store", "gateway.mail.sender"},
    # The back-channel logout sender: a background task beside the mail sender; it talks
    # HTTP to clients (aiohttp's client), never to the faces or their plumbing.
    "gateway.backchannel": {"asyncpg", "gateway.grants", "gateway.http"} | FACES | ENTRY,
    # The outbox senders' shared loop: asyncio, the errors and the wake-ups' connection.
    "gateway.outbox": {"aiohttp", "asyncpg", "gateway.grants", "gateway.http"} | FACES | ENTRY,
    # Rate-limit buckets (in the process, or in Redis through aiocache): called by the use
    # cases and by the token handler, so it stands beside store and imports neither.
    "gateway.ratelimit": {"aiohttp", "asyncpg", "gateway.store", "gateway.grants", "gateway.http"}
    | FACES
    | ENTRY,
    "gateway.ratelimit.bucket": {"aiocache", "redis"},
    "gateway.http": {"asyncpg", "gateway.store"} | FACES | ENTRY,
    "gateway.web": {"asyncpg", "gateway.store", "gateway.proxy"} | ENTRY,
    "gateway.proxy": {"asyncpg", "gateway.store", "gateway.web"} | ENTRY,
    "gateway.app": {"gateway.cli", "gateway.server"},
    # Templates and their messages: used by config (validation), http (pages) and the mail
    # sender, so it stands below all of them and imports none.
    "gateway.themes": {"aiohttp", "asyncpg", "aiocache", "gateway.store", "gateway.grants"}
    | {"gateway.http", "gateway.config", "gateway.oauth", "gateway.tokens"}
    | FACES
    | ENTRY,
}


def path_of(module: str) -> Path:
    relative = Path(*module.split("."))
    package = PACKAGE.parent / relative / "__init__.py"
    return package if package.exists() else PACKAGE.parent / relative.with_suffix(".py")


def imports_of(module: str) -> set[str]:
    """Every module ``module`` imports, at any depth of its code; ``from pkg import name``
    counts as ``pkg.name`` when that is a module."""
    names: set[str] = set()
    tree = ast.parse(path_of(module).read_text())
    package = module if path_of(module).name == "__init__.py" else module.rpartition(".")[0]
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = package.split(".")
                base = ".".join(parts[: len(parts) - node.level + 1] + ([base] if base else []))
            names.add(base)
            names.update(f"{base}.{alias.name}" for alias in node.names)
    return {n for n in names if n}


# Imports each module as the first of the package: no gateway module loaded before it (a cycle
# hidden by import order fails here), in one interpreter for all (third-party modules stay loaded).
_FIRST_IMPORTS = """
import importlib, json, sys, traceback
errors = {}
for module in sys.argv[1:]:
    for name in [n for n in sys.modules if n == "gateway" or n.startswith("gateway.")]:
        del sys.modules[name]
    try:
        importlib.import_module(module)
        errors[module] = ""
    except Exception:
        errors[module] = traceback.format_exc()
print(json.dumps(errors))
"""


@pytest.fixture(scope="module")
def first_imports() -> dict[str, str]:
    """Each module -> the traceback of importing it first ("" when it imports)."""
    result = subprocess.run(
        [sys.executable, "-c", _FIRST_IMPORTS, *MODULES],
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    errors: dict[str, str] = json.loads(result.stdout)
    return errors


def internal_imports(module: str) -> set[str]:
    return {n for n in imports_of(module) if n in MODULES and n != module}


def within(name: str, prefix: str) -> bool:
    return name == prefix or name.startswith(prefix + ".")


@pytest.mark.parametrize("layer", sorted(FORBIDDEN))
def test_layer_imports(layer: str) -> None:
    bad = [
        f"{module} imports {name}"
        for module in MODULES
        if within(module, layer)
        for name in imports_of(module)
        for forbidden in FORBIDDEN[layer]
        if within(name, forbidden) and not within(name, layer)
    ]
    assert not bad, "\n".join(sorted(bad))


def test_no_import_cycles() -> None:
    """No module reaches itself through imports (lazy ones included): Tarjan's strongly
    connected components over the package's import graph."""
    graph = {module: internal_imports(module) for module in MODULES}
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    cycles: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for target in graph[node]:
            if target not in index:
                visit(target)
                low[node] = min(low[node], low[target])
            elif target in on_stack:
                low[node] = min(low[node], index[target])
        if low[node] == index[node]:
            component = []
            while True:
                top = stack.pop()
                on_stack.discard(top)
                component.append(top)
                if top == node:
                    break
            if len(component) > 1:
                cycles.append(sorted(component))

    sys.setrecursionlimit(max(sys.getrecursionlimit(), 10_000))
    for module in MODULES:
        if module not in index:
            visit(module)
    assert not cycles, cycles


def test_the_checks_see_lazy_imports() -> None:
    """The graph includes an import written inside a function body (the kind that once hid a
    cycle between the proxy's forwarding and its WebSocket modules)."""
    source = "def f():\n    from gateway.proxy.websocket import proxy_websocket\n"
    names = {
        f"{node.module}.{alias.name}"
        for node in ast.walk(ast.parse(source))
        if isinstance(node, ast.ImportFrom) and node.module
        for alias in node.names
    }
    assert "gateway.proxy.websocket.proxy_websocket" in names
    assert "gateway.proxy.websocket" in internal_imports("gateway.proxy.forward")


def test_no_module_named_utils() -> None:
    assert not [p for p in PACKAGE.rglob("*.py") if p.stem in ("utils", "helpers", "misc")]


@pytest.mark.parametrize("module", MODULES)
def test_every_module_imports_on_its_own(module: str, first_imports: dict[str, str]) -> None:
    assert first_imports[module] == "", first_imports[module]


def test_modules_list_is_not_empty() -> None:
    assert "gateway.app" in MODULES
    assert "gateway.http.cookies" in MODULES
    assert importlib.import_module("gateway").__version__
