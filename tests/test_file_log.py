"""The directory source's file log as checkpoint state: the entries a batch covers, and a log
rebuilt from a checkpoint's entries (lost, or written by another machine's run)."""

from __future__ import annotations

from pathlib import Path

from weir.service.sources.file_log import FileLog, LoggedFile, as_dict, from_dict


def entries() -> list[LoggedFile]:
    return [
        LoggedFile("a.json", 0, 10, 100, 1),
        LoggedFile("empty.json", 10, 0, 0, 1),
        LoggedFile("b.json", 10, 5, 50, 2),
        LoggedFile("c.json", 15, 20, 200, 3),
    ]


def test_covering_gives_the_files_with_rows_in_a_range(tmp_path: Path) -> None:
    log = FileLog(tmp_path)
    for e in entries():
        log.append(e)
    names = lambda a, b: [e.name for e in log.covering(a, b)]  # noqa: E731
    assert names(0, 10) == ["a.json"]
    assert names(9, 11) == ["a.json", "b.json"]
    assert names(10, 35) == ["b.json", "c.json"]
    assert names(35, 40) == [] and names(5, 5) == []
    assert all(from_dict(as_dict(e)) == e for e in entries())


def test_adopt_keeps_a_log_that_starts_with_the_checkpoint(tmp_path: Path) -> None:
    log = FileLog(tmp_path)
    for e in entries():
        log.append(e)
    with_rows = [e for e in entries() if e.rows]
    log.adopt(with_rows[:2])  # the checkpoint is behind: the local log keeps c.json
    assert log.end == 35 and "c.json" in log.names


def test_adopt_rebuilds_a_lost_or_different_log(tmp_path: Path) -> None:
    want = [e for e in entries() if e.rows][:2]
    lost = FileLog(tmp_path / "lost")
    lost.adopt(want)
    assert (lost.end, FileLog(tmp_path / "lost").end) == (15, 15)  # durable
    other = FileLog(tmp_path / "other")
    other.append(LoggedFile("z.json", 0, 7, 70, 9))  # this machine took another file first
    other.adopt(want)
    assert other.names == {"a.json", "b.json"} and other.at(12).name == "b.json"
