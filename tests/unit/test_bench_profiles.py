"""How the benches read a py-spy profile (bench/e2e_probes.py): py-spy calls a thread busy
when /proc says it is runnable, so a thread woken only to wait again, or waiting for one
of the two cores, fills samples it used no CPU for; each thread's samples are weighed by
the CPU /proc/<pid>/task says it used over the same window."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from bench.e2e_probes import cpu_between, spy_command, task_cpu_seconds, thread_of, top_frames

LOOP = "thread (101): MainThread;run (asyncio/base_events.py:1)"
STORE = "thread (202): Thread-1;_connection_worker_thread (aiosqlite/core.py:59)"


def _raw(tmp_path: Path, lines: list[str]) -> Path:
    path = tmp_path / "profile.txt"
    path.write_text("\n".join(lines) + "\n")
    return path


def _share(lines: list[str], frame: str) -> float:
    [line] = [line for line in lines if line.endswith(f"  {frame}")]
    return float(line.split("%")[0])


def test_a_threads_cpu_is_read_after_its_name_whatever_the_name_holds() -> None:
    ticks = os.sysconf("SC_CLK_TCK")
    stat = f"4242 (a (b) c) S 1 2 3 4 5 6 7 8 9 10 {3 * ticks} {ticks} 0 0 20 0 1 0"
    assert task_cpu_seconds(stat) == pytest.approx(4.0)


@pytest.mark.parametrize(("root", "thread"), [
    ("thread (27953): Thread-7 (_connection_worker_thread)",
     (27953, "Thread-7 (_connection_worker_thread)")),
    ("thread (0x6D31)", (0x6D31, "")),
    ("run (asyncio/base_events.py:1)", None),
])
def test_a_samples_thread_is_its_root_frames_id_and_name(
        root: str, thread: tuple[int, str] | None) -> None:
    assert thread_of(root) == thread


def test_a_thread_started_within_the_window_counts_from_nothing() -> None:
    before = {1: ("MainThread", 2.0)}
    after = {1: ("MainThread", 2.5), 2: ("Thread-1", 0.25)}
    assert cpu_between(before, after) == {1: ("MainThread", 0.5), 2: ("Thread-1", 0.25)}


def test_each_threads_samples_count_for_the_cpu_it_used(tmp_path: Path) -> None:
    """Half the samples in the store's thread, waiting on its queue, but 1% of the CPU:
    its frame gets 1% of the process's CPU, not half of the samples."""
    raw = _raw(tmp_path, [f"{LOOP} 50", f"{STORE} 50"])
    cpu = {101: ("MainThread", 0.99), 202: ("Thread-1", 0.01)}
    weighed = top_frames(raw, cpu=cpu)
    assert _share(weighed, "run (asyncio/base_events.py:1)") == pytest.approx(99.0)
    assert _share(weighed, "_connection_worker_thread (aiosqlite/core.py:59)") == (
        pytest.approx(1.0))
    by_samples = top_frames(raw)
    assert _share(by_samples, "_connection_worker_thread (aiosqlite/core.py:59)") == (
        pytest.approx(50.0))


def test_the_threads_are_listed_with_their_cpu_beside_their_samples(tmp_path: Path) -> None:
    raw = _raw(tmp_path, [f"{LOOP} 50", f"{STORE} 50"])
    lines = top_frames(raw, cpu={101: ("python", 0.99), 202: ("python", 0.01),
                                 303: ("python", 0.0)})
    [store] = [line for line in lines if "Thread-1" in line]
    assert "CPU   0.01 s (  1.0%)" in store and "samples     50 ( 50.0%)" in store
    assert not [line for line in lines if " 303 " in line]


def test_waiting_in_a_selector_is_no_sample_and_its_cpu_goes_to_the_rest(
        tmp_path: Path) -> None:
    raw = _raw(tmp_path, [f"{LOOP} 10",
                          "thread (101): MainThread;select (selectors.py:468) 90"])
    lines = top_frames(raw, cpu={101: ("MainThread", 0.5)})
    assert _share(lines, "run (asyncio/base_events.py:1)") == pytest.approx(100.0)
    assert not [line for line in lines if "select (selectors.py" in line]


def test_samples_without_threads_are_shares_of_the_samples(tmp_path: Path) -> None:
    raw = _raw(tmp_path, ["run (asyncio/base_events.py:1) 3", "f (services/x.py:2) 1"])
    lines = top_frames(raw, cpu={101: ("MainThread", 1.0)})
    assert "  (samples without thread ids: not weighed)" in lines
    assert _share(lines, "run (asyncio/base_events.py:1)") == pytest.approx(75.0)


def test_the_profile_roots_samples_at_threads_and_pauses_only_when_asked() -> None:
    command = spy_command(Path("py-spy"), 7, 8.4, 100, "raw", Path("out.txt"))
    assert "--threads" in command and "--nonblocking" in command
    assert command[command.index("--duration") + 1] == "8"
    assert "--nonblocking" not in spy_command(Path("py-spy"), 7, 8, 100, "raw",
                                              Path("out.txt"), blocking=True)
