"""A real `chroma run` on loopback, for the latency benchmark and the tests (one copy of the code).

`start_chroma_server(path)` starts the `chroma` console script installed next to this Python, with
its data under `path` and its output in `path/server.log`, and returns once `heartbeat()` answers.
"""

from __future__ import annotations

import socket
import subprocess
import sys
import time
from pathlib import Path

HOST = "127.0.0.1"


def chroma_executable() -> str:
    """The `chroma` script of this environment (falls back to the one on PATH)."""
    local = Path(sys.executable).parent / "chroma"
    return str(local) if local.exists() else "chroma"


def free_port() -> int:
    with socket.socket() as s:
        s.bind((HOST, 0))
        return s.getsockname()[1]


def start_chroma_server(path: Path, timeout: float = 90.0) -> tuple[subprocess.Popen, str, int]:
    """`chroma run` serving `path` on a free loopback port; returns (process, host, port)."""
    import chromadb
    from chromadb.config import Settings as ChromaSettings

    port = free_port()
    path.mkdir(parents=True, exist_ok=True)
    log_path = path / "server.log"
    with open(log_path, "wb") as log:  # the child keeps its own descriptor
        proc = subprocess.Popen([chroma_executable(), "run", "--host", HOST, "--port", str(port),
                                 "--path", str(path)],
                                stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    deadline = time.monotonic() + timeout
    last: Exception | None = None
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"chroma run exited with {proc.returncode}: "
                               f"{log_path.read_text(errors='replace')[-2000:]}")
        try:
            chromadb.HttpClient(host=HOST, port=port,
                                settings=ChromaSettings(anonymized_telemetry=False)).heartbeat()
            return proc, HOST, port
        except Exception as exc:  # not up yet
            last = exc
            time.sleep(0.3)
    stop_process(proc)
    raise RuntimeError(f"chroma run did not answer within {timeout} s ({last!r}); see {log_path}")


def stop_process(proc: subprocess.Popen, timeout: float = 20.0) -> None:
    """SIGTERM, then SIGKILL if it has not exited within `timeout` seconds."""
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout)

