"""README "On call": a process whose stage ended for good exits 70 once shut down, even
when a SIGTERM (Kubernetes stopping the pod, bin/run stopping the pipeline) lands during
that shutdown: uvicorn raises a SIGTERM it caught again once shut down, and the process,
killed by it, exited 143, hiding that a stage ended (services/core/serve.py).

A process serves an app with serve.run, as a service does; its lifespan asks the exit a
stage's end asks (ServiceContext.stage_ended), then holds its shutdown until the test has
sent SIGTERM."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from pathlib import Path

from devtools import ports
from services.core import service_context

SERVED = """
import asyncio, sys
from contextlib import asynccontextmanager
from pathlib import Path

from fastapi import FastAPI

from services.core import serve, service_context
from services.core.settings import Settings

marks, port = Path(sys.argv[1]), int(sys.argv[2])


@asynccontextmanager
async def lifespan(app):
    service_context.of(app).stage_ended("metrics")
    yield
    (marks / "shutting-down").touch()
    while not (marks / "go-on").exists():
        await asyncio.sleep(0.05)


app = FastAPI(lifespan=lifespan)
service_context.install(app, Settings())
serve.run(app, Settings(), port=port)
"""

# A bound on the waits below, which end within a second or two.
WITHIN_SECONDS = 60.0


def test_a_sigterm_during_a_stage_ends_shutdown_keeps_its_exit_70(tmp_path: Path) -> None:
    [port] = ports.free_ports(1)
    process = subprocess.Popen([sys.executable, "-c", SERVED, str(tmp_path), str(port)],
                               cwd=Path(__file__).parents[2], stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + WITHIN_SECONDS
        while not (tmp_path / "shutting-down").exists():
            assert process.poll() is None, process.communicate()[1].decode()[-2000:]
            assert time.monotonic() < deadline, "the shutdown never began"
            time.sleep(0.05)
        process.send_signal(signal.SIGTERM)  # caught by uvicorn while it shuts down
        (tmp_path / "go-on").touch()
        _, errors = process.communicate(timeout=WITHIN_SECONDS)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    assert process.returncode == service_context.STAGE_ENDED_EXIT == 70, errors.decode()[-2000:]
    assert b"stage metrics ended for good" in errors


FAILING_START = """
import sys
from contextlib import asynccontextmanager

from fastapi import FastAPI

from services.core import serve, service_context
from services.core.settings import Settings


@asynccontextmanager
async def lifespan(app):
    raise RuntimeError("a part of the start failed")
    yield


app = FastAPI(lifespan=lifespan)
service_context.install(app, Settings())
serve.run(app, Settings(), port=int(sys.argv[1]))
"""


def test_a_start_that_fails_exits_3_with_one_traceback() -> None:
    """A lifespan's start that fails (not a mistake at_start refuses, not a stop) ends
    as uvicorn ends it, exit 3 and the failure's traceback, once: serve.Server runs
    uvicorn's start in a task of its own (to stop it on a signal), whose exit, raised
    there, was also logged as a task's exception never retrieved."""
    [port] = ports.free_ports(1)
    process = subprocess.run([sys.executable, "-X", "dev", "-c", FAILING_START, str(port)],
                             cwd=Path(__file__).parents[2], capture_output=True,
                             timeout=WITHIN_SECONDS)
    said = process.stderr.decode()
    assert process.returncode == 3, said[-2000:]
    assert said.count("RuntimeError: a part of the start failed") == 1, said[-4000:]
    assert "never retrieved" not in said, said[-4000:]
