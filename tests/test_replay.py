"""Replay mode: the CLI over JSON-lines files, byte-for-byte deterministic, batch ids from 0,
multi-input routing by "topic", dead letters instead of crashes."""

from __future__ import annotations

import io
import os
import subprocess
import sys
from pathlib import Path

import orjson
import pytest

from weir.service.codec import decode_values
from weir.service.commands import PIPELINES
from weir.service.replay import load_query, replay
from weir.tables.stream import read

T0 = 1_700_000_000_000  # 2023-11-14T22:13:20Z
MIN = 60_000


def _lines(rows: list[object]) -> bytes:
    return b"".join(orjson.dumps(r) + b"\n" for r in rows)


def test_cli_is_deterministic_and_numbers_batches(tmp_path: Path) -> None:
    rows = [
        {"value": "a b a"},
        {"value": "b"},
        "not an object",
        {"value": "c"},
    ]
    src = tmp_path / "in.jsonl"
    src.write_bytes(_lines(rows) + b"{broken\n")
    outs = []
    for n in range(2):
        out = tmp_path / f"out{n}.jsonl"
        proc = subprocess.run(
            [sys.executable, "-m", "weir.service.cli", "replay", "word_count", "--input", str(src)]
            + ["--output", str(out), "--batch-size", "2"],
            capture_output=True,
            text=True,
        )
        assert proc.returncode == 0, proc.stderr
        outs.append(out.read_bytes())
    assert outs[0] == outs[1]
    got = [orjson.loads(line) for line in outs[0].splitlines()]
    assert got == [
        {"batch_id": 0, "word": "a", "count": 2},
        {"batch_id": 0, "word": "b", "count": 2},
        {"batch_id": 1, "word": "c", "count": 1},
    ]
    dead = [
        orjson.loads(x)
        for x in (tmp_path / "out0.jsonl.dead-letters.jsonl").read_bytes().splitlines()
    ]
    assert [d["line"] for d in dead] == [3, 5]
    assert "expected an object" in dead[0]["error"] and "not JSON" in dead[1]["error"]


def test_unknown_pipeline_is_one_readable_line(tmp_path: Path) -> None:
    src = tmp_path / "in.jsonl"
    src.write_bytes(b"{}\n")
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "weir.service.cli",
            "replay",
            "no_such_pipeline",
            "--input",
            str(src),
        ]
        + ["--output", str(tmp_path / "o.jsonl")],
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 1
    assert proc.stderr.count("\n") == 1 and "no pipeline 'no_such_pipeline'" in proc.stderr


def test_replay_loads_a_users_own_module_from_pythonpath(tmp_path: Path) -> None:
    """`weir replay mypipeline:query` imports the user's module as named (it used to look for
    weir.agents.mypipeline); a bare shipped name still finds weir.agents."""
    (tmp_path / "mypipeline.py").write_text(
        "from weir import read\nquery = read('in').filter(lambda r: r['n'] > 1).query()\n"
    )
    src = tmp_path / "in.jsonl"
    src.write_bytes(_lines([{"n": 1}, {"n": 2}, {"n": 3}]))
    env = {**os.environ, "PYTHONPATH": str(tmp_path)}
    for spec, want in (("mypipeline:query", [2, 3]), ("mypipeline", [2, 3])):
        out = tmp_path / "out.jsonl"
        proc = subprocess.run(
            [sys.executable, "-m", "weir.service.cli", "replay", spec, "--input", str(src)]
            + ["--output", str(out)],
            capture_output=True,
            text=True,
            env=env,
        )
        assert proc.returncode == 0, proc.stderr
        assert [orjson.loads(x)["n"] for x in out.read_bytes().splitlines()] == want
    assert load_query("word_count", PIPELINES).node is not None  # shipped, by bare name


def test_replay_takes_what_weir_worker_takes_from_the_current_directory(tmp_path: Path) -> None:
    """`weir replay mine:app.<agent>`, `mine:<agent function>` and `mine:app` (one agent) run
    an agent of a user's App; a module in the current directory is found without
    PYTHONPATH, as `python -m` finds it."""
    (tmp_path / "dash.py").write_text(
        "from weir import App\n"
        "app = App('dash')\n"
        "clicks = app.topic('clicks')\n"
        "@app.agent(clicks)\n"
        "def views(s):\n"
        "    return s.filter(lambda r: r['n'] > 1).query()\n"
        "@app.agent(clicks, name='everything')\n"
        "def copy(s):\n"
        "    return s.query()\n"
        "solo = App('solo')\n"
        "@solo.agent(solo.topic('clicks'))\n"
        "def only(s):\n"
        "    return s.filter(lambda r: r['n'] == 3).query()\n"
    )
    src = tmp_path / "in.jsonl"
    src.write_bytes(_lines([{"n": 1}, {"n": 2}, {"n": 3}]))
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}

    weir = str(Path(sys.executable).parent / "weir")  # the console script, not python -m

    def run(spec: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [weir, "replay", spec, "--input", str(src)] + ["--output", str(tmp_path / "out.jsonl")],
            capture_output=True,
            text=True,
            env=env,
            cwd=tmp_path,
        )

    for spec, want in (
        ("dash:app.views", [2, 3]),
        ("dash:views", [2, 3]),
        ("dash:app.everything", [1, 2, 3]),
        ("dash:solo", [3]),
    ):
        proc = run(spec)
        assert proc.returncode == 0, (spec, proc.stderr)
        out = (tmp_path / "out.jsonl").read_bytes().splitlines()
        assert [orjson.loads(x)["n"] for x in out] == want, spec
    proc = run("dash:app")
    assert proc.returncode == 1 and proc.stderr.count("\n") == 1
    assert "has 2 agents: name one as dash:app.<agent> (agents: everything, views)" in proc.stderr


def test_multi_input_routing_and_no_data_batches() -> None:
    a = read("a").with_watermark("ts", "1 minute")
    b = read("b").with_watermark("ts", "1 minute")
    q = a.union(b).drop_duplicates(["id", "ts"]).query("append")
    rows = [
        {"topic": "a", "id": 1, "ts": T0},
        {"topic": "b", "id": 1, "ts": T0},
        {"topic": "b", "id": 2, "ts": T0 + 5 * MIN},
        {"topic": "zzz", "id": 3, "ts": T0},
    ]
    for no_data, batches, second in ((False, 2, 1), (True, 3, 2)):
        out, dead = io.BytesIO(), io.BytesIO()
        stats = replay(
            q, io.BytesIO(_lines(rows)), out, batch_size=2, no_data_batches=no_data, dead=dead
        )
        got = [orjson.loads(x) for x in out.getvalue().splitlines()]
        assert [(r["batch_id"], r["id"]) for r in got] == [(0, 1), (second, 2)]
        assert got[0]["ts"] == "2023-11-14T22:13:20Z"
        assert "topic" not in got[0]
        assert stats.dead_letters == 1 and b"zzz" in dead.getvalue()
        assert stats.batches == batches


def test_decode_values_keeps_order_and_explains_each_bad_value() -> None:
    good = [b'{"a": 1}', b'{"a": 2}\n']
    assert decode_values(good) == ([{"a": 1}, {"a": 2}], [])
    rows, errors = decode_values([b'{"a": 1}', None, b"[1]", b"1, 2", b"{bad", b"  ", b'{"a": 3}'])
    assert rows == [{"a": 1}, {"a": 3}]
    assert [i for i, _ in errors] == [1, 2, 3, 4, 5]
    assert errors[0][1] == "record has no value"
    assert "expected an object" in errors[1][1] and "not JSON" in errors[2][1]
    assert decode_values([]) == ([], [])


def test_worker_takes_what_replay_takes(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """`weir worker` / `weir run` load an App, one agent of it (`app.<agent>` or the agent's
    function) or a shipped pipeline by name; a bare query is refused in one line."""
    from weir.service.commands import load_app

    (tmp_path / "shop.py").write_text(
        "from weir import App, read\n"
        "app = App('shop')\n"
        "@app.agent(app.topic('a'))\n"
        "def first(s):\n"
        "    return s.query()\n"
        "@app.agent(app.topic('b'))\n"
        "def second(s):\n"
        "    return s.query()\n"
        "query = read('a').query()\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    assert list(load_app("shop:app").agents) == ["first", "second"]
    assert list(load_app("shop:app.second").agents) == ["second"]
    assert list(load_app("shop:first").agents) == ["first"]
    assert list(load_app("order_matching").agents) == ["matched", "unmatched"]
    with pytest.raises(SystemExit, match="not a weir App or agent"):
        load_app("shop:query")
