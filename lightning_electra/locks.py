"""One process at a time for what it writes: a lock file naming its holder."""

from __future__ import annotations

import contextlib
import json
import os
import platform
import sys
from datetime import datetime, timezone
from pathlib import Path
from typing import Iterator

from lightning_electra.errors import SuiteError
from lightning_electra.log import logger

log = logger("lock")


class LockedError(SuiteError, RuntimeError):
    """Another live process holds the lock on what this one would write."""


@contextlib.contextmanager
def held_lock(path: Path | str, what: str) -> Iterator[None]:
    """One process at a time for `what` (e.g. a sweep's results directory): a lock file naming its holder (process
    id, host, command), taken atomically; the lock of a process that has died is taken over, with a note."""
    path = Path(path)
    holder = {"pid": os.getpid(), "host": platform.node(), "command": " ".join(sys.argv),
              "since": datetime.now(timezone.utc).isoformat(timespec="seconds")}
    path.parent.mkdir(parents=True, exist_ok=True)
    for _ in range(2):
        try:
            with open(path, "x") as f:  # O_EXCL: of two processes starting at once, one gets it
                json.dump(holder, f)
            break
        except FileExistsError:
            other = _read_holder(path)
            if other.get("host") == holder["host"] and not _alive(other.get("pid")):
                log.info(f"taking over {path}: its holder, process {other.get('pid')}, is gone")
                path.unlink(missing_ok=True)
                continue
            raise LockedError(f"{what} is in use by process {other.get('pid')} on {other.get('host')} since "
                              f"{other.get('since')} ({other.get('command')}): two at once would train the same runs "
                              f"twice. Wait for it to end, or stop it; if it is gone, delete {path}.") from None
    try:
        yield
    finally:
        if _read_holder(path).get("pid") == holder["pid"]:
            path.unlink(missing_ok=True)


def _read_holder(path: Path) -> dict:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return {}


def _alive(pid) -> bool:
    try:
        os.kill(int(pid), 0)
    except (TypeError, ValueError, ProcessLookupError):
        return False
    except PermissionError:  # it exists, another user's
        return True
    return True
