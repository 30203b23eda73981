"""Where a long phase is and when it will end, written once for every phase that reports it: pre-training's steps
(callbacks.ProgressReport), a run's GLUE fine-tunes and a sweep's runs.

On a terminal it is a bar (tqdm, which Lightning already brings). In a file or a pipe, the log someone follows with
`tail -f`, it is one plain line whenever 5% more is done or a minute has passed since the last line, whichever
comes first, with the same figures, the time so far and the estimated end:

    [pretrain] electra: step 10/20 (50%), loss 31.13, 583 tokens/s, 18s so far, ETA 18s (04:28:01)

So a phase that takes minutes prints about twenty lines, and one that takes days prints one a minute.
"""

from __future__ import annotations

import os
import sys
import time
from datetime import datetime, timedelta
from typing import Callable, Sequence, TextIO

EVERY_S = 60.0  # in a file: a line at least this often while updates come...
EVERY_FRACTION = 0.05  # ...and at least at every 5% of the total
BAR_EVERY_S = 0.5  # on a terminal: the bar redraws at most twice a second


def duration(seconds: float) -> str:
    """45s, 3m05s, 2h03m, 1d04h."""
    s = int(round(seconds))
    if s < 60:
        return f"{s}s"
    if s < 3600:
        return f"{s // 60}m{s % 60:02d}s"
    if s < 86400:
        return f"{s // 3600}h{s % 3600 // 60:02d}m"
    return f"{s // 86400}d{s % 86400 // 3600:02d}h"


class Progress:
    """Progress of one phase towards `total` (steps, fine-tunes, runs), from `start` (what a resumed phase had done).

    Callers call `update(done, figures)` (figures: short strings, "loss 2.31") as often as they like: it draws or
    prints only when due, and `due(done)` says so beforehand, so a figure that costs something (a loss read from a
    GPU waits for the device) is computed only then. `close()` prints the last line. `enabled=False` (a distributed
    launch's other ranks) does nothing. `clock` is for tests; `bar` forces a bar (True) or lines (False), whatever
    `stream` is.
    """

    def __init__(self, label: str, total: int, unit: str = "", start: int = 0, stream: TextIO | None = None,
                 bar: bool | None = None, enabled: bool = True, every_s: float | None = None,
                 every_fraction: float | None = None, clock: Callable[[], float] = time.monotonic):
        self.label, self.total, self.unit, self.start = label, max(int(total), 0), unit, int(start)
        self.stream, self.enabled, self.clock = stream or sys.stdout, enabled, clock
        self.every_s = EVERY_S if every_s is None else every_s
        self.every_fraction = EVERY_FRACTION if every_fraction is None else every_fraction
        self.t0 = self.last_t = clock()
        self.done = self.last_done = self.start
        self.closed = False
        self.bar = None
        if enabled and (self.stream.isatty() if bar is None else bar):
            from tqdm import tqdm

            try:  # a terminal that reports no size (some pseudo-terminals) would get no bar at all: give it 100 x 24
                sized = os.get_terminal_size(self.stream.fileno()).columns > 0
            except (AttributeError, OSError, ValueError):
                sized = False
            self.bar = tqdm(total=self.total, initial=self.start, desc=label, unit=f" {unit}" if unit else "it",
                            file=self.stream, dynamic_ncols=sized, ncols=None if sized else 100,
                            nrows=None if sized else 24, leave=True)

    def due(self, done: int) -> bool:
        """Whether `update(done)` would draw or print now."""
        if not self.enabled or self.closed:
            return False
        if done >= self.total and self.last_done < self.total:
            return True
        since = self.clock() - self.last_t
        if self.bar is not None:
            return since >= BAR_EVERY_S
        return done > self.last_done and (since >= self.every_s
                                          or done - self.last_done >= self.every_fraction * self.total)

    def rate(self, done: int | None = None) -> float | None:
        """Units a second since the phase started (or resumed); None before the first."""
        done = self.done if done is None else done
        elapsed = self.clock() - self.t0
        return (done - self.start) / elapsed if done > self.start and elapsed > 0 else None

    def eta(self, done: int | None = None) -> float | None:
        """Seconds left at the rate so far; None before the first unit."""
        done = self.done if done is None else done
        rate = self.rate(done)
        return max(self.total - done, 0) / rate if rate else None

    def line(self, done: int, figures: Sequence[str] = ()) -> str:
        """The plain line: what is done of what, the figures, the time so far and the estimated end."""
        pct = f" ({100 * done / self.total:.0f}%)" if self.total else ""
        unit = f"{self.unit} " if self.unit else ""
        parts = [f"{self.label}: {unit}{done:,}/{self.total:,}{pct}"]
        parts += list(figures)
        parts.append(f"{duration(self.clock() - self.t0)} so far")
        eta = self.eta(done)
        if done >= self.total:
            parts.append("done")
        elif eta is not None:
            end = datetime.now() + timedelta(seconds=eta)
            parts.append(f"ETA {duration(eta)} ({end:%H:%M:%S}" + ("" if end.date() == datetime.now().date()
                                                                       else f" on {end:%Y-%m-%d}") + ")")
        else:
            parts.append("ETA unknown yet")
        return ", ".join(parts)

    def update(self, done: int, figures: Sequence[str] = (), force: bool = False) -> bool:
        """Note `done`; draws the bar or prints a line if one is due (or `force`). Returns whether it did."""
        if not self.enabled or self.closed:
            return False
        if not (force or self.due(done)):
            self.done = done
            return False
        self.done = done
        if self.bar is not None:
            self.bar.n = done
            self.bar.set_postfix_str(", ".join(figures), refresh=False)
            self.bar.refresh()
        else:
            print(self.line(done, figures), file=self.stream, flush=True)
        self.last_t, self.last_done = self.clock(), done
        return True

    def close(self, figures: Sequence[str] = ()) -> None:
        """The last line (unless the last one printed already said as much), or the bar closed."""
        if not self.enabled or self.closed:
            return
        if self.bar is not None:
            if figures or self.bar.n != self.done:
                self.update(self.done, figures, force=True)
            self.bar.close()
        elif self.done != self.last_done:
            print(self.line(self.done, figures), file=self.stream, flush=True)
        self.closed = True
