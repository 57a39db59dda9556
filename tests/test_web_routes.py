"""The streaming page's routes over real HTTP: GET / serves the page, GET /static/<name> its
files (the page's drawing in a real browser: tests/test_web_ui.py)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from tests.test_http import _FixedStatus, fetch, raw_request
from weir.service import http as weir_http
from weir.service.http import WebServer

WEB = Path(__file__).resolve().parents[1] / "weir" / "service" / "web"


@pytest.mark.asyncio
async def test_root_serves_the_page_and_static_its_files() -> None:
    server = WebServer(_FixedStatus(), 0)
    await server.start()
    try:
        page = await fetch(server.url + "/")
        assert page.status == 200
        assert page.headers["Content-Type"] == "text/html; charset=utf-8"
        assert page.body == (WEB / "index.html").read_bytes()
        # Everything the page loads comes from /static/ on the worker itself.
        loaded = re.findall(r'(?:src|href)="([^"]+)"', page.text)
        assert loaded == [
            "data:,",
            "/static/uPlot.min.css",
            "/static/style.css",
            "/static/uPlot.iife.min.js",
            "/static/app.js",
        ]
        types = {
            "uPlot.min.css": "text/css; charset=utf-8",
            "style.css": "text/css; charset=utf-8",
            "uPlot.iife.min.js": "text/javascript; charset=utf-8",
            "app.js": "text/javascript; charset=utf-8",
            "index.html": "text/html; charset=utf-8",
            "uPlot.LICENSE.txt": "text/plain; charset=utf-8",
        }
        for name, content_type in types.items():
            r = await fetch(f"{server.url}/static/{name}")
            assert (r.status, r.headers["Content-Type"]) == (200, content_type), name
            assert r.body == (WEB / name).read_bytes(), name
        head = await fetch(server.url + "/static/app.js", method="HEAD")
        size = str((WEB / "app.js").stat().st_size)
        assert (head.status, head.body, head.headers["Content-Length"]) == (200, b"", size)
        assert (
            b"/*! https://github.com/leeoniya/uPlot (v1.6.32) */"
            in (await fetch(server.url + "/static/uPlot.iife.min.js")).body
        )
        assert (await fetch(server.url + "/static/app.js", method="POST")).status == 405
    finally:
        await server.stop()


@pytest.mark.asyncio
async def test_static_serves_no_other_file() -> None:
    server = WebServer(_FixedStatus(), 0)
    await server.start()
    try:
        for path in (
            "/static/",
            "/static/nope.js",
            "/static/web",
            "/static/web/app.js",
            "/static/../http.py",
            "/static/../web/app.js",
            "/static/..%2Fhttp.py",
            "/static/%2e%2e/http.py",
            "/static//etc/passwd",
            "/static/__init__.py",
            "/index.html",
            "/static/app.js/",
        ):
            # raw bytes: urllib would resolve the dots before sending
            reply = await raw_request(server.port, f"GET {path} HTTP/1.1\r\n\r\n".encode())
            assert reply.startswith(b"HTTP/1.1 404 "), path
            assert reply.endswith(b"\r\n\r\nnot found\n"), path
        assert (await fetch(server.url + "/healthz")).status == 200
    finally:
        await server.stop()


@pytest.mark.asyncio
async def test_static_serves_the_pages_suffixes_only(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "extra.js").write_text("let x = 1;\n")
    (tmp_path / "stray.py").write_text("SECRET = 1\n")
    (tmp_path / "notes").write_text("no suffix\n")
    monkeypatch.setattr(weir_http, "_WEB", tmp_path)
    server = WebServer(_FixedStatus(), 0)
    await server.start()
    try:
        assert (await fetch(server.url + "/static/extra.js")).body == b"let x = 1;\n"
        assert (await fetch(server.url + "/static/stray.py")).status == 404
        assert (await fetch(server.url + "/static/notes")).status == 404
        assert (await fetch(server.url + "/")).status == 404  # this folder has no index.html
    finally:
        await server.stop()
