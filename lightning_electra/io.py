"""Files written whole and read back safely.

Every file and directory the suite writes goes through `atomic`: it is written under a temporary name beside its
final one and renamed into place, so a kill, a full disk or a read-only folder never leaves a half-written file that
a later run would read as complete, nor a stray temporary one.
"""

from __future__ import annotations

import contextlib
import errno
import functools
import hashlib
import json
import os
import shutil
from pathlib import Path
from typing import Any, Iterator

from lightning_electra.errors import SuiteError

ROOT = Path(__file__).resolve().parent.parent


class WriteError(SuiteError, OSError):
    """A file that could not be written, with which file, why, and that nothing half-written was left."""


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    else:  # nothing there, or a file where a folder of the path should be (then the write's own error says so)
        with contextlib.suppress(FileNotFoundError, NotADirectoryError):
            path.unlink()


@contextlib.contextmanager
def atomic(path: Path | str, keep_existing: bool = False) -> Iterator[Path]:
    """Yields a temporary path beside `path` to write a file or a directory at; once the block ends, renames it into
    place (replacing what was there, or, with `keep_existing`, discarding the new one when another process got there
    first). On an error the temporary path is removed, and a failed write is a WriteError naming the file."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        if not keep_existing:  # one writer: what a killed write left (with several, a temp may be another's)
            for stale in path.parent.glob(f".{path.name}.tmp*"):
                _remove(stale)
        yield tmp
        if path.exists() and keep_existing:
            _remove(tmp)
        else:
            if path.is_dir() and not path.is_symlink():
                shutil.rmtree(path)
            os.replace(tmp, path)
    except BaseException as err:
        _remove(tmp)
        if isinstance(err, OSError) and not isinstance(err, WriteError):
            cause = {errno.ENOSPC: "the disk is full", errno.EROFS: "the file system is read-only",
                     errno.EACCES: "permission denied", errno.EDQUOT: "the disk quota is exceeded"}.get(
                err.errno, err.strerror or type(err).__name__)
            raise WriteError(err.errno, f"Could not write {path}: {cause}. Nothing half-written was left; free the "
                             "space or pick a writable place (results_dir=..., data.cache_dir=...) and run the same "
                             "command again.") from None
        raise


class UnreadableFile(SuiteError, ValueError):
    """A file that cannot be read as what it should be (truncated, damaged, or another kind of file)."""


def load_torch(path: Path | str, **kwargs) -> Any:
    """torch.load of a file the suite wrote, weights only (tensors, numbers, strings: all its checkpoints hold, and
    nothing that runs code); a damaged or foreign file is an UnreadableFile naming it, in one line."""
    import torch

    try:
        return torch.load(path, map_location="cpu", weights_only=True, **kwargs)
    except Exception as err:  # torch raises several types for a damaged file
        first = (str(err).strip().splitlines() or [""])[0][:200]
        raise UnreadableFile(f"{path} cannot be read ({type(err).__name__}: {first}): it is truncated, damaged or "
                             "not a checkpoint of this suite") from None


def atomic_write_text(path: Path | str, text: str) -> None:
    with atomic(path) as tmp:
        tmp.write_text(text)


def write_json(path: Path | str, data: Any) -> None:
    atomic_write_text(path, json.dumps(data, indent=1, default=str))


def file_digest(path: Path) -> str:
    """A short sha256 of a file's contents (cached per path, size and modification time)."""
    stat = path.stat()
    return _file_digest(path.resolve(), stat.st_size, stat.st_mtime_ns)


@functools.lru_cache(maxsize=256)
def _file_digest(path: Path, size: int, mtime_ns: int) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()[:16]
