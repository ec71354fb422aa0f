"""Free loopback ports, and stopping the processes that listen on them."""

from __future__ import annotations

import contextlib
import signal
import socket
import subprocess
import time
from collections.abc import Iterable


def free_port() -> int:
    return free_ports(1)[0]


def free_ports(count: int) -> list[int]:
    """`count` distinct ports free on loopback now. Probed together, each held until all
    are chosen: probed one after another, the system may hand out the same port twice
    (two services of a pipeline given one port: the second cannot bind)."""
    with contextlib.ExitStack() as probes:
        chosen: list[int] = []
        for _ in range(count):
            probe = probes.enter_context(socket.socket(socket.AF_INET, socket.SOCK_STREAM))
            probe.bind(("127.0.0.1", 0))
            chosen.append(probe.getsockname()[1])
        return chosen


def free_ports_by_name(names: Iterable[str]) -> dict[str, int]:
    """A distinct free port for each of `names` (see free_ports)."""
    names = list(names)
    return dict(zip(names, free_ports(len(names)), strict=True))


def wait_for_port(port: int, *, timeout: float, host: str = "127.0.0.1") -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with socket.create_connection((host, port), timeout=0.5):
                return True
        except OSError:
            time.sleep(0.1)
    return False


def terminate(process: subprocess.Popen[bytes], timeout: float,
              signum: signal.Signals = signal.SIGTERM) -> int:
    """Ask a process to stop; SIGKILL it if it has not within `timeout` seconds."""
    if process.poll() is None:
        process.send_signal(signum)
    try:
        return process.wait(timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        return process.wait()


def wait_for_http(url: str, process: subprocess.Popen[bytes] | None, *, timeout: float,
                  what: str, log_file: object, pause: float = 0.1) -> bool:
    """Poll `url` until it answers 200 (True) or `timeout` passes (False); a process
    that exits meanwhile is an error naming its log."""
    import httpx

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process is not None and process.poll() is not None:
            raise RuntimeError(f"{what} exited with {process.returncode}; see {log_file}")
        try:
            if httpx.get(url, timeout=1.0).status_code == 200:
                return True
        except httpx.HTTPError:
            pass
        time.sleep(pause)
    return False
