"""The distribution claims one import name, `weir`: installing it beside PyTables (import name
`tables`) or any package called `service` or `agents` breaks neither."""

from __future__ import annotations

import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def test_the_wheel_holds_only_the_weir_package(tmp_path: Path) -> None:
    # A copy, so no build/ folder of the checkout (possibly stale) goes into the wheel.
    src = tmp_path / "src"
    skip = shutil.ignore_patterns("__pycache__", "*.egg-info")
    shutil.copytree(REPO / "weir", src / "weir", ignore=skip)
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(REPO / name, src / name)
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--no-deps",
            "-q",
            "-w",
            str(tmp_path),
            str(src),
        ],
        check=True,
        capture_output=True,
        timeout=300,
    )
    (wheel,) = tmp_path.glob("weir-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    assert {n.split("/")[0] for n in names} == {"weir", wheel.name.split("-py")[0] + ".dist-info"}
    # the broker's Maven POM and log configuration travel with the code
    assert "weir/service/local/kafka-pom.xml" in names
    assert "weir/service/local/log4j2.properties" in names
    # and so does the streaming page with its vendored chart library
    web = {n.rpartition("/")[2] for n in names if n.startswith("weir/service/web/")}
    assert web == {p.name for p in (REPO / "weir" / "service" / "web").iterdir()}
    assert {"index.html", "app.js", "style.css", "uPlot.iife.min.js", "uPlot.LICENSE.txt"} <= web


def test_weir_imports_beside_packages_named_tables_service_and_agents(tmp_path: Path) -> None:
    for name in ("tables", "service", "agents"):
        (tmp_path / name).mkdir()
        (tmp_path / name / "__init__.py").write_text(f"WHO = 'the other {name}'\n")
    code = (
        "import tables, service, agents, weir\n"
        "from weir import App, Query, count, read, window\n"
        "import weir.tables.stream, weir.service.runtime.worker\n"
        "print(tables.WHO, service.WHO, agents.WHO, weir.tables.stream.__name__)\n"
    )
    proc = subprocess.run(
        [sys.executable, "-c", code],
        cwd=tmp_path,
        env={"PYTHONPATH": str(tmp_path), "PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.split() == [
        "the",
        "other",
        "tables",
        "the",
        "other",
        "service",
        "the",
        "other",
        "agents",
        "weir.tables.stream",
    ]
