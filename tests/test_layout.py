"""The package's import graph: the engine never reaches MLflow, and no new import circle appears."""

import ast
import subprocess
import sys
from pathlib import Path

import pytest

import tripwire
from tripwire.config import parse_config
from tripwire.engine import Engine
from tripwire.reference import ReferenceError

PACKAGE = Path(tripwire.__file__).parent


def module_name(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imported_modules(path: Path, known: set[str]) -> set[str]:
    """Every tripwire module ``path`` imports, at the top or inside a function; not the type-checking-only ones."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            node.body = []
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
            names.update(f"{node.module}.{alias.name}" for alias in node.names)  # `from tripwire import demo`
    return names & known


def import_graph() -> dict[str, set[str]]:
    files = {module_name(path): path for path in PACKAGE.rglob("*.py")}
    return {name: imported_modules(path, set(files)) - {name} for name, path in files.items()}


def circles(graph: dict[str, set[str]]) -> list[set[str]]:
    """The strongly connected components of more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    found: list[set[str]] = []

    def visit(module: str) -> None:
        index[module] = low[module] = len(index)
        stack.append(module)
        for other in graph[module]:
            if other not in index:
                visit(other)
                low[module] = min(low[module], low[other])
            elif other in stack:
                low[module] = min(low[module], index[other])
        if low[module] == index[module]:
            component = set()
            while True:
                member = stack.pop()
                component.add(member)
                if member == module:
                    break
            if len(component) > 1:
                found.append(component)

    for module in graph:
        if module not in index:
            visit(module)
    return found


def test_the_graph_sees_lazy_imports():
    graph = import_graph()
    assert "tripwire.tracking" in graph["tripwire.cli.replay"]  # imported inside a function
    assert "tripwire.demo" in graph["tripwire.cli.demo"]  # `from tripwire import demo`
    assert "tripwire.engine" not in graph["tripwire.tracking"]  # only under TYPE_CHECKING


def test_no_import_circle():
    # (config.py parses [capacity], [retrain] and [sinks] with modules that build on config_values' parsers)
    assert circles(import_graph()) == []


def test_engine_and_reference_never_import_tracking():
    graph = import_graph()
    assert "tripwire.tracking" not in graph["tripwire.engine"] | graph["tripwire.reference"]


def test_building_an_engine_loads_neither_tracking_nor_mlflow():
    script = """
import sys
from tripwire.config import parse_config
from tripwire.engine import Engine
from tripwire.reference import ReferenceError
try:
    Engine(parse_config({"models": [{"name": "fuel", "reference": "models:/fuel@champion"}]}))
except ReferenceError:
    print(" ".join(sorted(sys.modules)))
"""
    loaded = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True).stdout.split()
    assert "tripwire.engine" in loaded  # refused, and printed what it had imported
    assert not [name for name in loaded if name == "tripwire.tracking" or name.split(".")[0] == "mlflow"]


@pytest.mark.parametrize("uri", ["runs:/0123abcd", "models:/fuel@champion", "models:/fuel/3"])
def test_an_unresolved_mlflow_reference_is_a_clear_error_not_a_download(uri):
    config = parse_config({"models": [{"name": "fuel", "reference": uri}]})
    with pytest.raises(ReferenceError, match=f"^{uri}: an MLflow reference reached the engine unresolved; "
                                             r"resolve it first with tripwire.tracking.resolve_config\(config\)"):
        Engine(config)
