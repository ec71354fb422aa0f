"""Free loopback ports, and stopping the processes that listen on them."""

from __future__ import annotations

import signal
import socket
import subprocess
import time


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


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
