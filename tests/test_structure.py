"""The import structure between the top-level packages, as a maintainer reads it.

What ships (protocol/, bridge/, terminal/, the field tool posflash/, the back end gateway/) never depends on the simulator,
by any means: no import, no string handed to importlib, no module path in a string. protocol/ is
pure and depends on none of the others; what ships on the POS (terminal/) does not depend on the
cashier PC's bridge, the field engineer's tool or the provider's gateway.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
SHIPPED = ("protocol", "local_storage", "bridge", "terminal", "posflash", "gateway")
TOP_LEVEL = ("protocol", "local_storage", "bridge", "terminal", "posflash", "gateway", "firmware_sim", "reconcile", "bench", "tests")
# Who may import whom (besides itself). Anything not listed is a structural regression.
ALLOWED = {
    "protocol": set(),
    # The rules for files a process keeps on its own disk, shared by the bridge and the POS
    # (protocol/ is sans-I/O, and neither end may import the other).
    "local_storage": {"protocol"},
    "bridge": {"protocol", "local_storage"},
    "terminal": {"protocol", "local_storage"},
    "posflash": {"protocol", "local_storage", "bridge", "terminal"},
    # The provider's back end: the POS talks to it over HTTPS and never imports it. From terminal/ it
    # uses only the outcome vocabulary both ends share, from local_storage/ only the whole-or-nothing
    # file writes (bills, exports) and how a daemon stops on a signal, not the journal rules (NARROW below).
    "gateway": {"protocol", "terminal", "local_storage"},
}
# Where a package may reach into an allowed one only through named modules.
NARROW = {("gateway", "terminal"): {"terminal.channels.base"},
          ("gateway", "local_storage"): {"local_storage.atomic_file", "local_storage.private_files",
                                         "local_storage.stop_signals"}}
# Named exceptions, each with the reason it exists and the condition that removes it. None today: the
# codec shims in terminal/channels went when the sandbox began importing gateway.channels (issue 17).
EXCEPTIONS: dict[str, set[str]] = {}


def _sources(package: str) -> list[Path]:
    return sorted((ROOT / package).rglob("*.py"))


def _docstring_nodes(tree: ast.AST) -> set[int]:
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)):
            body = node.body
            if body and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant):
                found.add(id(body[0].value))
    return found


def _called_name(call: ast.Call) -> str:
    func = call.func
    return func.attr if isinstance(func, ast.Attribute) else func.id if isinstance(func, ast.Name) else ""


def _own_module(call: ast.Call, package: str) -> bool:
    """import_module of a literal (or an f-string's literal head) inside the same package only."""
    if not call.args:
        return False
    arg = call.args[0]
    head = arg.value if isinstance(arg, ast.Constant) else (
        arg.values[0].value if isinstance(arg, ast.JoinedStr) and arg.values and isinstance(arg.values[0], ast.Constant) else None)
    return isinstance(head, str) and head.startswith(f"{package}.")


def _imports(tree: ast.AST) -> list[tuple[int, str]]:
    out = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            out.append((node.lineno, node.module))
    return out


@pytest.mark.parametrize("package", SHIPPED)
def test_nothing_that_ships_reaches_the_simulator(package: str) -> None:
    offences = []
    for path in _sources(package):
        tree = ast.parse(path.read_text(encoding="utf-8"), str(path))
        docstrings = _docstring_nodes(tree)
        where = path.relative_to(ROOT)
        for line, module in _imports(tree):
            if module.split(".")[0] == "firmware_sim":
                offences.append(f"{where}:{line} imports {module}")
        for node in ast.walk(tree):
            if isinstance(node, ast.Name) and node.id == "__import__":
                offences.append(f"{where}:{node.lineno} calls __import__")
            if isinstance(node, ast.Call) and _called_name(node) == "import_module" and not _own_module(node, package):
                offences.append(f"{where}:{node.lineno} loads a module by a name that is not {package}'s own")
            if (isinstance(node, ast.Constant) and isinstance(node.value, str) and id(node) not in docstrings
                    and "firmware_sim" in node.value):
                offences.append(f"{where}:{node.lineno} names firmware_sim in a string")
    assert offences == []


@pytest.mark.parametrize("package", SHIPPED)
def test_top_level_packages_depend_only_downwards(package: str) -> None:
    offences = []
    for path in _sources(package):
        tree = ast.parse(path.read_text(encoding="utf-8"), str(path))
        where = path.relative_to(ROOT).as_posix()
        for line, module in _imports(tree):
            top = module.split(".")[0]
            if module in EXCEPTIONS.get(where, ()):
                continue
            narrow = NARROW.get((package, top))
            if top in TOP_LEVEL and top != package and (top not in ALLOWED[package] or (narrow and module not in narrow)):
                offences.append(f"{where}:{line} imports {module}")
    assert offences == []


def test_the_pos_holds_no_channel_codec() -> None:
    """The channels' wire formats (and their signing) live in the gateway only: the POS's channels
    package is the outcome vocabulary, nothing that could speak to WeChat Pay or Alipay."""
    assert sorted(p.name for p in (ROOT / "terminal" / "channels").glob("*.py")) == ["__init__.py", "base.py"]


def test_the_check_would_see_a_string_import() -> None:
    """The rules above read strings and loader calls too: the loader this layout replaced is caught."""
    tree = ast.parse('LINK_HOST = "firmware_sim.devicehost:attach_service"\n'
                     'attach = importlib.import_module(LINK_HOST.partition(":")[0])\n')
    assert any(isinstance(n, ast.Constant) and "firmware_sim" in str(n.value) and id(n) not in _docstring_nodes(tree)
               for n in ast.walk(tree))
    calls = [n for n in ast.walk(tree) if isinstance(n, ast.Call) and _called_name(n) == "import_module"]
    assert calls and not _own_module(calls[0], "terminal")
