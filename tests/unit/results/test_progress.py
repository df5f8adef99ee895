"""The progress display: plain lines without a TTY, a redrawn status line with one; ETA arithmetic."""

import io
import re
import time

from runner.results.progress import Progress


def test_without_a_tty_only_permanent_lines_are_written():
    out = io.StringIO()
    p = Progress(3, out, tty=False)
    p.start("a", "tiny tp1 | c1")
    p.say("▶ a started")
    p.end("a", ok=True)
    p.say("✔ a COMPLETED")
    p.close()
    assert out.getvalue() == "▶ a started\n✔ a COMPLETED\n"
    assert p._ticker is None                    # no thread without a TTY


def test_status_line_counts_and_eta():
    p = Progress(10, io.StringIO(), tty=False)
    t0 = p.started
    assert p.status(t0 + 5) == "[0/10 done · 0 running · 0:05 elapsed]"
    for i in range(4):
        p.start(str(i), f"m tp1 | c{i}")
    p.end("0", ok=True)
    p.end("1", ok=False)
    # 2 done in 100 s → 50 s per trial; 8 left → 400 s
    assert p.status(t0 + 100) == ("[2/10 done · 2 running · 1 failed · 1:40 elapsed · ETA ~6:40] "
                                  "now: m tp1 | c2, m tp1 | c3")
    q = Progress(1, io.StringIO(), tty=False)
    assert q.status(q.started + 3725) == "[0/1 done · 0 running · 1:02:05 elapsed]"
    q.started = 6779.11672739872  # (started + 3725) - started == 3724.999999999999 in floating point
    assert q.status(q.started + 3725) == "[0/1 done · 0 running · 1:02:05 elapsed]"


def test_on_a_tty_the_status_line_is_redrawn_under_each_event_and_cleared_at_the_end():
    out = io.StringIO()
    p = Progress(2, out, tty=True, interval_s=0.05)
    p.start("a", "tiny tp1 | c8")
    p.say("▶ a started")
    deadline = time.monotonic() + 30             # the ticker redraws meanwhile: wait for two ticks, however
    while out.getvalue().count("[0/2 done") < 3 and time.monotonic() < deadline:  # busy the machine
        time.sleep(0.01)
    p.end("a", ok=True)
    p.say("✔ a COMPLETED")
    p.close()
    text = out.getvalue()
    assert "▶ a started\n\r\x1b[K[0/2 done · 1 running" in text    # the event line, the status line under it
    assert "now: tiny tp1 | c8" in text
    assert "\r\x1b[K✔ a COMPLETED\n\r\x1b[K[1/2 done · 0 running" in text
    assert text.count("[0/2 done") >= 3          # event draw + at least two ticks
    assert text.endswith("\r\x1b[K")             # the status line is gone when the run ends
    # without the status-line draws (a tick may come before the first event), the permanent lines alone
    assert re.sub(r"\r\x1b\[K(\[[^\r\n]*)?", "", text) == "▶ a started\n✔ a COMPLETED\n"
