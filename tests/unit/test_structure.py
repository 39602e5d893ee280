"""The shape of the code: module and function sizes, options never passed through the process
environment, and a public surface that is exactly what the README and docs use."""

from __future__ import annotations

import ast
import re
from collections.abc import Iterator

import pytest

from ops.localfleet import REPO_ROOT

PACKAGES = ("tasks", "producer", "workers", "ops")
MAX_MODULE_LINES = 400
MAX_FUNCTION_LINES = 50

# Known offenders under workers/, which is being rewritten in parallel. The coordinator empties
# these lists after merging; an entry that no longer offends fails the test, so none goes stale.
KNOWN_LONG_FUNCTIONS: set[tuple[str, str]] = set()
KNOWN_ENVIRON_USERS: set[str] = {
    # Not an option passed between qfleet parts: huggingface_hub reads only its environment.
    "workers/knowledge/embedder_build.py",
}


def _modules() -> Iterator[tuple[str, ast.Module, str]]:
    for package in PACKAGES:
        for path in sorted((REPO_ROOT / package).rglob("*.py")):
            source = path.read_text(encoding="utf-8")
            yield path.relative_to(REPO_ROOT).as_posix(), ast.parse(source), source


def _long_functions() -> set[tuple[str, str]]:
    found = set()
    for name, tree, _ in _modules():
        for node in ast.walk(tree):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                length = (node.end_lineno or node.lineno) - node.lineno + 1
                if length > MAX_FUNCTION_LINES:
                    found.add((name, node.name))
    return found


def test_no_module_is_over_400_lines() -> None:
    sizes = {name: source.count("\n") for name, _, source in _modules()}

    assert {n: s for n, s in sizes.items() if s > MAX_MODULE_LINES} == {}


def test_no_function_is_over_50_lines() -> None:
    found = _long_functions()

    assert found - KNOWN_LONG_FUNCTIONS == set(), "split these functions"
    assert KNOWN_LONG_FUNCTIONS - found == set(), "no longer too long: drop from the allow-list"


_ENVIRON_WRITES = {"setdefault", "update", "pop", "popitem", "clear", "__setitem__"}


def _environ_uses(tree: ast.Module) -> Iterator[tuple[int, str]]:
    """(line, "write" | "read KEY") for each use of the process environment that passes a value.

    Handing the whole environment on to a child process (`dict(os.environ)`) passes nothing of
    ours; reading the XDG base directories follows a platform convention, not an option.
    """
    parents = {child: node for node in ast.walk(tree) for child in ast.iter_child_nodes(node)}
    for node in ast.walk(tree):
        if isinstance(node, ast.Attribute) and node.attr in ("putenv", "unsetenv"):
            yield node.lineno, "write"
        elif isinstance(node, ast.Attribute) and node.attr == "getenv":
            yield node.lineno, "read"
        elif isinstance(node, ast.Attribute) and node.attr == "environ":
            use = _environ_use(node, parents)
            if use is not None:
                yield node.lineno, use


def _environ_use(node: ast.Attribute, parents: dict[ast.AST, ast.AST]) -> str | None:
    parent = parents.get(node)
    if isinstance(parent, ast.Subscript):
        store = isinstance(parent.ctx, ast.Store | ast.Del)
        return "write" if store else _read(parent.slice)
    if isinstance(parent, ast.Attribute):
        if parent.attr in _ENVIRON_WRITES:
            return "write"
        call = parents.get(parent)
        if parent.attr == "get" and isinstance(call, ast.Call) and call.args:
            return _read(call.args[0])
    return None


def _read(key: ast.expr) -> str | None:
    if isinstance(key, ast.Constant) and str(key.value).startswith("XDG_"):
        return None
    return "read"


def test_no_module_passes_options_through_the_process_environment() -> None:
    # Options come from Settings (pydantic-settings reads QFLEET_*); ops/ scripts may read.
    found: dict[str, list[str]] = {}
    for name, tree, _ in _modules():
        for line, use in _environ_uses(tree):
            if use == "read" and name.startswith("ops/"):
                continue
            found.setdefault(name, []).append(f"{use} at line {line}")

    assert {n: u for n, u in found.items() if n not in KNOWN_ENVIRON_USERS} == {}
    assert KNOWN_ENVIRON_USERS - set(found) == set(), "no longer offends: drop from the allow-list"


def test_the_environ_check_sees_reads_and_writes() -> None:
    source = (
        "import os\nos.environ['A'] = '1'\nos.environ.setdefault('B', '1')\n"
        "x = os.environ.get('QFLEET_X')\ny = os.getenv('Y')\nz = dict(os.environ)\n"
        "c = os.environ.get('XDG_CACHE_HOME')\n"
    )

    uses = list(_environ_uses(ast.parse(source)))

    assert sorted(uses) == [(2, "write"), (3, "write"), (4, "read"), (5, "read")]


# --- the public surface -------------------------------------------------------------------------

DOCS = [REPO_ROOT / "README.md", *sorted((REPO_ROOT / "docs").glob("*.md"))]
_FROM_QFLEET = re.compile(r"^\s*from qfleet import ([\w, ()]+)$", re.MULTILINE)


def _docs_text() -> str:
    return "\n".join(path.read_text(encoding="utf-8") for path in DOCS)


def test_qfleet_exports_what_its_packages_export() -> None:
    import qfleet
    import qfleet.producer
    import qfleet.tasks

    assert sorted(qfleet.__all__) == sorted({*qfleet.tasks.__all__, *qfleet.producer.__all__})


@pytest.mark.parametrize("package", ["qfleet", "qfleet.tasks", "qfleet.producer"])
def test_every_exported_name_exists_and_the_docs_use_it(package: str) -> None:
    module = __import__(package, fromlist=["__all__"])
    text = _docs_text()

    missing = [name for name in module.__all__ if not hasattr(module, name)]
    undocumented = [name for name in module.__all__ if f"`{name}" not in text]

    assert (missing, undocumented) == ([], [])


def test_the_docs_import_only_what_qfleet_exports() -> None:
    import qfleet

    imported = {
        name.strip(" ()")
        for match in _FROM_QFLEET.finditer(_docs_text())
        for name in match.group(1).split(",")
    }

    assert imported
    assert imported - set(qfleet.__all__) == set()


def test_docs_python_snippets_import_from_the_namespace() -> None:
    # Never from the repository's folders directly (`from producer.client import ...`).
    bare = re.compile(r"^\s*(from|import) (tasks|producer|workers)\b", re.MULTILINE)

    assert [p.name for p in DOCS if bare.search(p.read_text(encoding="utf-8"))] == []


def test_the_module_map_in_architecture_names_real_files() -> None:
    text = (REPO_ROOT / "docs" / "architecture.md").read_text(encoding="utf-8")
    named = set(re.findall(r"`((?:tasks|producer|workers|ops|qfleet)/[\w/]+(?:\.py)?)`", text))

    assert named
    assert sorted(n for n in named if not (REPO_ROOT / n).exists()) == []
