"""Memory of running processes for the benchmarks: VmRSS sampled in a thread, by phase,
and its summary (start, peak, steady, growth) side by side (bench/segmenter_memory.py)."""

from __future__ import annotations

import contextlib
import statistics
import threading
import time
from pathlib import Path

MIB = 1024


class RssTimeline:
    """VmRSS of some processes, sampled in a thread: (seconds, phase, KiB) per process."""

    def __init__(self, pids: dict[str, int], every: float = 0.5) -> None:
        self.pids = pids
        self.every = every
        self.phase = "start"
        self.samples: dict[str, list[tuple[float, str, int]]] = {name: [] for name in pids}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._began = time.monotonic()

    def _run(self) -> None:
        while not self._stop.wait(self.every):
            for name, pid in self.pids.items():
                with contextlib.suppress(OSError, ValueError):
                    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
                        if line.startswith("VmRSS:"):
                            self.samples[name].append((time.monotonic() - self._began,
                                                       self.phase, int(line.split()[1])))

    def __enter__(self) -> RssTimeline:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join()

    def of(self, name: str, phase: str | None = None) -> list[int]:
        return [kib for _, p, kib in self.samples[name] if phase is None or p == phase]


def summary(kib: list[int]) -> dict[str, float]:
    if not kib:
        return {}
    quarter = max(1, len(kib) // 4)
    return {"peak": max(kib) / MIB, "steady": statistics.median(kib[-max(1, len(kib) // 3):])
            / MIB, "growth": (statistics.mean(kib[-quarter:])
                              - statistics.mean(kib[quarter:2 * quarter] or kib)) / MIB}


def _measure(kib: list[int], what: str) -> float:
    if not kib:
        return 0.0
    return kib[0] / MIB if what == "first" else summary(kib)[what]


def report(rss: RssTimeline, figures: dict[str, float]) -> None:
    """The run's figures, then the segmenter's and the bare stage's RSS side by side."""
    for name, value in figures.items():
        print(f"{name:45s} {value:,.2f}" if isinstance(value, float) and value < 10
              else f"{name:45s} {value:,.0f}")
    print(f"\n{'RSS, MB':32s} {'segmenter':>10s} {'bare stage':>11s} {'ratio':>6s}")
    rows: list[tuple[str, str | None, str]] = [("at start (no ticket yet)", "start", "first")]
    rows += [(f"{phase}: {what}", phase, what)
             for phase in ("fill", "load") for what in ("peak", "steady", "growth")]
    rows.append(("overall peak", None, "peak"))
    for label, phase, what in rows:
        ours, bare = (_measure(rss.of(name, phase), what) for name in ("segmenter", "bare"))
        ratio = f"{ours / bare:6.1f}" if bare > 1 else "     -"
        print(f"{label:32s} {ours:10.0f} {bare:11.0f} {ratio}")
    samples = rss.samples["segmenter"]
    print("\nsegmenter RSS over time (s, phase, MB):")
    for at, phase, kib in samples[::max(1, len(samples) // 16)] + samples[-1:]:
        print(f"  {at:7.1f} {phase:6s} {kib / MIB:7.0f}")
