"""Progress for humans: one permanent line per trial event, and on a TTY a live status line.

Without a TTY (``ray job submit`` logs, CI, pipes) only the permanent lines are written, one
per trial start and end, so a job log reads as a plain history. On a TTY the last line of the
terminal is a status line, redrawn on every event and once a second:
``[3/10 done · 2 running · 1 failed · 1:42 elapsed · ETA ~2:30] now: tiny tp1 | c8``.

ETA: the wall time so far ÷ the trials finished in this run × the trials left (the rate at
which trials have been finishing, parallelism included); shown once a trial has finished. All writes go through one
lock, so the ticker thread never interleaves with an event line.
"""

from __future__ import annotations

import threading
import time
from typing import IO


class Progress:
    def __init__(self, total: int, out: IO[str], tty: bool | None = None, interval_s: float = 1.0):
        self.total, self.out = total, out
        self.tty = bool(out.isatty()) if tty is None else tty
        self.done = self.failed = 0
        self.running: dict[str, str] = {}          # trial id → label of its load point
        self.started = time.monotonic()
        self._lock = threading.Lock()
        self._shown = False
        self._stop = threading.Event()
        self._ticker: threading.Thread | None = None
        self.interval_s = interval_s

    # -- events ---------------------------------------------------------------------------
    def start(self, trial_id: str, label: str) -> None:
        with self._lock:
            self.running[trial_id] = label
        self._ensure_ticker()

    def end(self, trial_id: str, ok: bool) -> None:
        with self._lock:
            self.running.pop(trial_id, None)
            self.done += 1
            self.failed += 0 if ok else 1

    def say(self, line: str) -> None:
        """A permanent line; on a TTY the status line is redrawn below it."""
        with self._lock:
            if self.tty and self._shown:
                self.out.write("\r\x1b[K")
            self.out.write(line + "\n")
            if self.tty:
                self._draw()
            self.out.flush()

    def close(self) -> None:
        self._stop.set()
        with self._lock:
            if self.tty and self._shown:
                self.out.write("\r\x1b[K")
                self.out.flush()
                self._shown = False

    # -- status line ------------------------------------------------------------------------
    def status(self, now: float | None = None) -> str:
        elapsed = (now if now is not None else time.monotonic()) - self.started
        parts = [f"{self.done}/{self.total} done", f"{len(self.running)} running"]
        if self.failed:
            parts.append(f"{self.failed} failed")
        parts.append(f"{_clock(elapsed)} elapsed")
        left = self.total - self.done
        if self.done and left > 0:
            eta = elapsed / self.done * left
            parts.append(f"ETA ~{_clock(eta)}")
        line = "[" + " · ".join(parts) + "]"
        if self.running:
            line += " now: " + ", ".join(list(self.running.values())[:2])
        return line

    def _draw(self) -> None:
        self.out.write("\r\x1b[K" + self.status()[:200])
        self._shown = True

    def _ensure_ticker(self) -> None:
        if not self.tty or self._ticker is not None:
            return
        def tick() -> None:
            while not self._stop.wait(self.interval_s):
                with self._lock:
                    self._draw()
                    self.out.flush()
        self._ticker = threading.Thread(target=tick, name="runner-progress", daemon=True)
        self._ticker.start()


def _clock(s: float) -> str:
    """h:mm:ss or m:ss, to the nearest second (a difference of two monotonic readings can fall
    a hair short of the whole second it stands for)."""
    s = round(max(s, 0.0))
    return f"{s // 3600}:{s % 3600 // 60:02d}:{s % 60:02d}" if s >= 3600 else f"{s // 60}:{s % 60:02d}"
