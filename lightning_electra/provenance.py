"""Where a result came from: the command that made it, the commit, the hardware."""

from __future__ import annotations

import os
import platform
import shlex
import subprocess

from lightning_electra.io import ROOT


def command_line(argv: list[str]) -> str:
    """`python -m lightning_electra ARGV` as a user would type it again, DATA_DIR included (for provenance)."""
    command = " ".join(shlex.quote(a) for a in ["python", "-m", "lightning_electra", *argv])
    return f"DATA_DIR={shlex.quote(os.environ['DATA_DIR'])} {command}" if os.environ.get("DATA_DIR") else command


def git_commit() -> str:
    try:
        commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True,
                                check=True).stdout.strip()
        # reports are outputs the suite itself rewrites: a changed report does not make the code dirty
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no", "--", ".",
                                ":!analysis/reports"], cwd=ROOT, capture_output=True, text=True).stdout.strip()
        return commit + ("-dirty" if dirty else "")
    except (OSError, subprocess.CalledProcessError):
        return os.environ.get("GIT_COMMIT", "unknown")


def usable_cores() -> int:
    """The cores this process may run on (a container's or taskset's share, not the machine's count)."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)


def hardware() -> str:
    import torch

    if torch.cuda.is_available():
        return f"{torch.cuda.device_count()} x {torch.cuda.get_device_name(0)}"
    return f"CPU ({platform.processor() or platform.machine()}, {os.cpu_count()} cores, torch threads " \
           f"{torch.get_num_threads()})"
