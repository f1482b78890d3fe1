"""The protocol package stays sans-IO: no module under poe/protocol/ (or poe/baselines/, the
baseline protocols behind the same interface) imports IO, clocks,
randomness, threads, processes, logging or the transport, and its poe imports come only from
the kernels (poe._core), the crypto interface (poe.crypto.base / statements / errors) and
poe.protocol / poe.baselines themselves. Checked statically with ``ast``, so imports inside functions and
``from x import y`` forms are caught too."""
from __future__ import annotations

import ast
from pathlib import Path

import pytest

import poe.protocol

PROTOCOL_DIR = Path(poe.protocol.__file__).resolve().parent
BASELINES_DIR = PROTOCOL_DIR.parent / "baselines"

FORBIDDEN = {
    "socket", "time", "random", "secrets", "os", "io", "pathlib", "threading", "asyncio",
    "select", "selectors", "subprocess", "signal", "datetime", "tempfile", "shutil", "logging",
    "zmq", "importlib", "multiprocessing", "concurrent",
}
FORBIDDEN_CALLS = {"__import__", "open", "exec", "eval", "compile", "input", "print"}
POE_ALLOWED = ("poe._core", "poe.crypto.base", "poe.crypto.statements", "poe.crypto.errors",
               "poe.protocol", "poe.baselines")


def _package_of(path: Path) -> str:
    rel = path.relative_to(PROTOCOL_DIR.parent.parent).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] == "__init__":
        parts.pop()
    else:
        parts.pop()                       # the module's own name: keep its package
    return ".".join(parts)


def imported_modules(source: str, package: str) -> list[tuple[int, str]]:
    """(line, absolute module name) for every import in ``source``; ``from a import b``
    yields ``a.b`` (b may be a submodule), relative imports are resolved in ``package``."""
    found = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parent = package.split(".")
                parent = parent[:len(parent) - (node.level - 1)]
                base = ".".join(parent + ([base] if base else []))
            found.append((node.lineno, base))
            found += [(node.lineno, f"{base}.{alias.name}") for alias in node.names
                      if alias.name != "*"]
    return found


def _poe_allowed(name: str) -> bool:
    """An allowed module, something inside one, or a package on the way to one."""
    return any(name == a or name.startswith(a + ".") or a.startswith(name + ".")
               for a in POE_ALLOWED)


def violations(source: str, package: str) -> list[str]:
    bad = []
    for line, name in imported_modules(source, package):
        top = name.split(".")[0]
        if top in FORBIDDEN:
            bad.append(f"line {line}: imports {name}")
        elif top == "poe" and not _poe_allowed(name):
            bad.append(f"line {line}: imports {name}")
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) \
                and node.func.id in FORBIDDEN_CALLS:
            bad.append(f"line {node.lineno}: calls {node.func.id}()")
    return bad


def protocol_modules() -> list[Path]:
    return sorted(PROTOCOL_DIR.rglob("*.py")) + sorted(BASELINES_DIR.rglob("*.py"))


def test_the_scan_covers_the_protocol_package():
    names = {p.relative_to(PROTOCOL_DIR.parent).as_posix() for p in protocol_modules()}
    assert {"protocol/actions.py", "protocol/config.py", "protocol/poe/replica.py",
            "protocol/poe/client.py", "baselines/pbft/replica.py",
            "baselines/pbft/client.py"} <= names


@pytest.mark.parametrize("path", protocol_modules(),
                         ids=lambda p: p.relative_to(PROTOCOL_DIR.parent).as_posix())
def test_protocol_module_is_sans_io(path):
    assert violations(path.read_text(encoding="utf-8"), _package_of(path)) == []


@pytest.mark.parametrize("source,package", [
    ("import time", "poe.protocol.poe"),
    ("from os import path", "poe.protocol"),
    ("import os.path as p", "poe.protocol"),
    ("def f():\n    import random\n", "poe.protocol.poe"),
    ("from poe.sim import cluster", "poe.protocol"),
    ("from poe import runtime", "poe.protocol"),
    ("from poe.crypto import bls", "poe.protocol"),
    ("from poe.crypto.fake import FakeCrypto", "poe.protocol"),
    ("import poe.protocolx", "poe.protocol"),
    ("from poe.cli.main import main", "poe.protocol"),
    ("from ... import transport", "poe.protocol.poe"),
    ("from ...storage import log", "poe.protocol.poe"),
    ("x = __import__('socket')", "poe.protocol"),
    ("with open('f') as f: pass", "poe.protocol"),
])
def test_the_checker_catches_forbidden_imports(source, package):
    assert violations(source, package)


@pytest.mark.parametrize("source,package", [
    ("from poe._core import codec", "poe.protocol.poe"),
    ("from poe._core.codec import Batch", "poe.protocol.poe"),
    ("from poe.crypto.base import CryptoSuite", "poe.protocol.poe"),
    ("from poe.crypto import statements, errors", "poe.protocol"),
    ("from . import checkpoint", "poe.protocol.poe"),
    ("from ..actions import Send", "poe.protocol.poe"),
    ("from collections import Counter\nfrom dataclasses import dataclass", "poe.protocol"),
])
def test_the_checker_allows_the_permitted_imports(source, package):
    assert violations(source, package) == []
