"""The house checks run with the tests, so CI enforces them: ruff lint, ruff format, mypy."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize(
    "command",
    [
        ["ruff", "check", "radis_mlx", "tests", "scripts"],
        ["ruff", "format", "--check", "radis_mlx", "tests", "scripts"],
        ["mypy", "radis_mlx"],
    ],
    ids=["ruff-check", "ruff-format", "mypy"],
)
def test_clean(command):
    result = subprocess.run([sys.executable, "-m", *command], cwd=REPO, capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


PACKAGE = REPO / "radis_mlx"
# Edges the layout forbids (docs/ARCHITECTURE.md, ../shared/architecture.json): part → parts it never imports.
FORBIDDEN = {
    "schemas": {"engines", "api", "pool"},
    "generation": {"engines", "api", "schemas", "pool"},
    "engines": {"schemas", "api", "pool"},
    "pool": {"api", "schemas"},
    "store": {"engines", "api", "pool", "schemas"},
}


def _module_name(path: Path, root: Path = REPO) -> str:
    parts = path.relative_to(root).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imports(path: Path, modules: set[str], root: Path = REPO) -> set[str]:
    """Every radis_mlx module a file imports, at module level or inside functions (lazy imports too)."""
    name = _module_name(path, root)
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:  # relative: up from this file's package
                parents = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*parents, base]).strip(".")
            for alias in node.names:  # `from package import module` imports the module
                found.add(f"{base}.{alias.name}" if f"{base}.{alias.name}" in modules else base)
    return {m for m in found if m in modules}


def _graph() -> dict[str, set[str]]:
    files = sorted(PACKAGE.rglob("*.py"))
    modules = {_module_name(f) for f in files}
    return {_module_name(f): _imports(f, modules) for f in files}


def _part(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else ""


def test_no_forbidden_imports_between_the_layers():
    broken = [
        f"{module} imports {target}"
        for module, targets in _graph().items()
        for target in targets
        if _part(target) in FORBIDDEN.get(_part(module), set())
    ]
    assert broken == []


def test_no_import_cycles():
    graph = _graph()
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    cycles: list[list[str]] = []

    def visit(node: str) -> None:  # Tarjan's strongly connected components
        index[node] = low[node] = len(index)
        stack.append(node)
        for target in graph[node]:
            if target not in index:
                visit(target)
                low[node] = min(low[node], low[target])
            elif target in stack:
                low[node] = min(low[node], index[target])
        if low[node] == index[node]:
            component = []
            while True:
                top = stack.pop()
                component.append(top)
                if top == node:
                    break
            if len(component) > 1:
                cycles.append(sorted(component))

    for node in graph:
        if node not in index:
            visit(node)
    assert cycles == []


def test_modules_stay_small_and_the_root_holds_only_the_app_config_and_errors():
    long = [
        f"{f.relative_to(REPO)}: {n}"
        for f in PACKAGE.rglob("*.py")
        if (n := len(f.read_text().splitlines())) > 340  # "~300"
    ]
    assert long == []
    root = sorted(f.name for f in PACKAGE.glob("*.py"))
    assert root == ["__init__.py", "__main__.py", "app.py", "config.py", "errors.py"]


def test_the_walker_sees_lazy_imports(tmp_path):
    """The checks would catch a forbidden edge hidden in a function, as the lazy engine imports are."""
    fake = tmp_path / "radis_mlx" / "schemas" / "bad.py"
    fake.parent.mkdir(parents=True)
    fake.write_text(
        "def f():\n    from radis_mlx.engines import base\n    from radis_mlx.api.sse import sse\n"
    )
    modules = {"radis_mlx.engines.base", "radis_mlx.api.sse", "radis_mlx.schemas.bad"}
    assert _imports(fake, modules, root=tmp_path) == {"radis_mlx.engines.base", "radis_mlx.api.sse"}
