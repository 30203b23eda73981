"""The suite's messages, one mechanism: `logger(tag)` is the standard logger `lightning_electra.<tag>`, and its
records read as one plain line each, `[tag] message` (`[tag] warning: message` for a warning), so a log followed with
`tail -f` reads as a sweep's story. Information and warnings go to standard output, errors to standard error, each
to the stream in place when the record is written (pytest's capture, a parallel child's pipe).

Long phases report through lightning_electra/progress.py, which draws a bar on a terminal and writes such lines in a
file. Silence or redirect the suite as any Python logger: `logging.getLogger("lightning_electra").setLevel(...)`.
"""

from __future__ import annotations

import logging
import sys

ROOT = "lightning_electra"


class _Lines(logging.Handler):
    """`[tag] message`, on the stream of the moment, flushed at once."""

    def emit(self, record: logging.LogRecord) -> None:
        try:
            tag = record.name.removeprefix(ROOT + ".")
            warning = "warning: " if record.levelno == logging.WARNING else ""
            stream = sys.stderr if record.levelno >= logging.ERROR else sys.stdout
            stream.write(f"[{tag}] {warning}{record.getMessage()}\n")
            stream.flush()
        except Exception:  # a closed stream must not stop a run
            self.handleError(record)


_root = logging.getLogger(ROOT)
if not any(isinstance(h, _Lines) for h in _root.handlers):
    _root.addHandler(_Lines())
    _root.setLevel(logging.INFO)
    _root.propagate = False  # one line per message, whatever the application configures above


def logger(tag: str) -> logging.Logger:
    """The logger whose lines read `[tag] ...` (e.g. logger("sweep"))."""
    return logging.getLogger(f"{ROOT}.{tag}")
