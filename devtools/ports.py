"""Free loopback ports, and stopping the processes that listen on them."""

from __future__ import annotations

import contextlib
import random
import signal
import socket
import subprocess
import time
from collections.abc import Iterable
from pathlib import Path

# Where the kernel takes the local ports of outgoing connections from: a port chosen
# there may be taken by one (a client's, a broker's to another) before its server binds.
EPHEMERAL_RANGE_FILE = Path("/proc/sys/net/ipv4/ip_local_port_range")
LINUX_EPHEMERAL = (32768, 60999)  # the kernel's default, where the file cannot be read
# Below it lie the ports well-known servers listen on (PostgreSQL's, Kafka's, 8000s);
# taken only when the ephemeral range leaves nothing above it.
FLOOR = 10000
LOWEST_UNPRIVILEGED = 1024
HIGHEST = 65535


def free_port() -> int:
    return free_ports(1)[0]


def free_ports(count: int) -> list[int]:
    """`count` distinct ports free on loopback now, outside the kernel's ephemeral range
    (`choosable`). Probed together, each held until all are chosen: probed one after
    another, the same port may be chosen twice (two services of a pipeline given one
    port: the second cannot bind)."""
    candidates = [port for ports in choosable(ephemeral_range()) for port in ports]
    random.shuffle(candidates)  # tests run side by side: each its own ports, mostly
    with contextlib.ExitStack() as probes:
        chosen: list[int] = []
        for port in candidates:
            if len(chosen) == count:
                break
            probe = probes.enter_context(socket.socket(socket.AF_INET, socket.SOCK_STREAM))
            try:
                probe.bind(("127.0.0.1", port))
            except OSError:  # in use
                continue
            chosen.append(port)
        if len(chosen) < count:
            raise RuntimeError(f"fewer than {count} free ports outside the ephemeral range")
        return chosen


def ephemeral_range(file: Path = EPHEMERAL_RANGE_FILE) -> tuple[int, int]:
    """The kernel's range of ports for outgoing connections (first, last)."""
    try:
        first, last = file.read_text().split()
        return int(first), int(last)
    except (OSError, ValueError):
        return LINUX_EPHEMERAL


def choosable(ephemeral: tuple[int, int]) -> list[range]:
    """The ports a server's port may be chosen from: unprivileged, outside `ephemeral`,
    from FLOOR up; from 1024 up where nothing is left above FLOOR."""
    first, last = ephemeral
    for floor in (FLOOR, LOWEST_UNPRIVILEGED):
        ranges = [ports for ports in (range(floor, min(first, HIGHEST + 1)),
                                      range(max(last + 1, floor), HIGHEST + 1)) if ports]
        if ranges:
            return ranges
    raise RuntimeError(f"the ephemeral range {first}-{last} leaves no port to choose")


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
