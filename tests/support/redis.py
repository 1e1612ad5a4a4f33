"""A real ``redis-server`` for the tests of the Redis state store: no persistence, its files in a directory of
the test's, on a free port of 127.0.0.1; killed, frozen and restarted on demand."""

from __future__ import annotations

import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path

from gateway.testing.processes import free_port

#: Why the Redis tests skip where there is no server to run (``make debian`` installs it).
MISSING = "no `redis-server` on PATH (Debian's redis-server package; `make debian` installs it)"


def redis_binary() -> str | None:
    return shutil.which("redis-server")


class RedisServer:
    """``redis-server --port N --save '' --appendonly no --dir DIRECTORY``; a context manager that starts it and
    waits for PING, and stops it on exit. ``kill`` and ``start`` again keep the port (and so the URL)."""

    def __init__(self, directory: Path, port: int | None = None):
        binary = redis_binary()
        if binary is None:
            raise RuntimeError(MISSING)
        self.binary = binary
        self.directory = Path(directory)
        self.port = port or free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.log_file = self.directory / "redis-server.log"
        self._process: subprocess.Popen[bytes] | None = None

    def __enter__(self) -> RedisServer:
        self.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    @property
    def process(self) -> subprocess.Popen[bytes]:
        if self._process is None:
            raise RuntimeError("redis-server was not started")
        return self._process

    def start(self, timeout_s: float = 10.0) -> None:
        """Start the server and return once it answers PING."""
        self.directory.mkdir(parents=True, exist_ok=True)
        command = [self.binary, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
                   "--dir", str(self.directory), "--daemonize", "no"]
        with open(self.log_file, "ab") as log:
            self._process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT,
                                             stdin=subprocess.DEVNULL)
        deadline = time.monotonic() + timeout_s
        while not self.ping():
            if self.process.poll() is not None:
                raise RuntimeError(f"redis-server exited with {self.process.returncode}:\n{self.output()[-2000:]}")
            if time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"redis-server did not answer PING within {timeout_s:g} s:\n"
                                   f"{self.output()[-2000:]}")
            time.sleep(0.05)

    def ping(self, timeout_s: float = 0.5) -> bool:
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=timeout_s) as connection:
                connection.sendall(b"PING\r\n")
                return connection.recv(64).startswith(b"+PONG")
        except OSError:
            return False

    def kill(self) -> None:
        """SIGKILL: the server vanishes mid-whatever, as when its node dies."""
        if self._process is not None and self._process.poll() is None:
            self._process.kill()
            self._process.wait()

    def freeze(self) -> None:
        """SIGSTOP: connections stay open and nothing answers."""
        self.process.send_signal(signal.SIGSTOP)

    def thaw(self) -> None:
        self.process.send_signal(signal.SIGCONT)

    def stop(self, timeout_s: float = 10.0) -> None:
        if self._process is None or self._process.poll() is not None:
            return
        self._process.send_signal(signal.SIGCONT)  # a frozen server cannot act on SIGTERM
        self._process.terminate()
        try:
            self._process.wait(timeout_s)
        except subprocess.TimeoutExpired:
            self._process.kill()
            self._process.wait()

    def output(self) -> str:
        return self.log_file.read_text(errors="replace") if self.log_file.exists() else ""
