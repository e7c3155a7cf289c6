"""Reading and writing files: UTF-8 text reads that fail in one line, and atomic writes (unique temp
file, fsync, rename, fsync of the directory) with their clean-up."""
from __future__ import annotations

import errno
import os
import shutil
import tempfile
from pathlib import Path
from typing import BinaryIO, Callable

from rlsmooth.errors import ConfigError, UserError, one_line

TEMP_SUFFIX = ".tmp"


def read_text(path: str | Path, what: str = "file") -> str:
    """A UTF-8 text file's contents; a missing, unreadable or undecodable file raises ConfigError."""
    path = Path(path)
    try:
        return path.read_bytes().decode("utf-8")
    except FileNotFoundError:
        raise ConfigError(f"{what} not found: {path}") from None
    except IsADirectoryError:
        raise ConfigError(f"{what} {path} is a directory") from None
    except OSError as exc:
        raise ConfigError(f"cannot read {what} {path}: {exc.strerror or exc}") from None
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{what} {path} is not UTF-8 text (byte {exc.start})") from None


def _umask() -> int:
    mask = os.umask(0)   # reading the umask means setting it; put it straight back
    os.umask(mask)
    return mask


def atomic_write(path: str | Path, write: Callable[[BinaryIO], None]) -> None:
    """Replace ``path`` with what ``write(file)`` writes, or leave it as it was.

    A kill at any moment leaves either the old or the new file, plus at worst a
    ``<name>.*.tmp`` file that :func:`remove_temp_files` deletes.  A failed write (disk full,
    read-only, gone) raises UserError with one line; the temp file is removed.
    """
    path = Path(path)
    try:
        fd, tmp = tempfile.mkstemp(prefix=path.name + ".", suffix=TEMP_SUFFIX, dir=path.parent)
    except OSError as exc:
        raise UserError(f"cannot write {path}: {write_failure(exc, path.parent)}") from None
    try:
        os.fchmod(fd, 0o666 & ~_umask())   # mkstemp makes 0600: give it the mode a plain write would have
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
        _fsync_directory(path.parent)
    except (OSError, RuntimeError) as exc:   # torch's zip writer reports a full disk as RuntimeError
        Path(tmp).unlink(missing_ok=True)
        raise UserError(f"cannot write {path}: {write_failure(exc, path.parent)}") from None
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


FULL_BELOW = 64 * 2**20
"""A write that fails without an OS error code (torch's zip writer says ``unexpected pos ...`` when the
disk fills) on a file system with less free space than this is reported as a full disk."""


def write_failure(exc: BaseException, directory: Path) -> str:
    """Why a write failed, in words a user can act on: no space left (and how much is free), a
    read-only file system, a directory that is gone, no permission; else the error's own words."""
    code = exc.errno if isinstance(exc, OSError) else None
    words = os.strerror(code) if code else None
    if code == errno.ENOENT or not directory.is_dir():
        return f"{words or 'No such file or directory'} (the directory {directory} is gone)"
    if code in (errno.EROFS, errno.EACCES, errno.EPERM):
        return f"{words} ({directory})"
    try:
        free = shutil.disk_usage(directory).free
    except OSError:
        free = None
    if code in (errno.ENOSPC, errno.EDQUOT) or (code is None and free is not None and free < FULL_BELOW):
        left = f" ({free:,} bytes free on that file system)" if free is not None else ""
        return f"{words or os.strerror(errno.ENOSPC)}{left}"
    return exc.strerror if isinstance(exc, OSError) and exc.strerror else one_line(exc)


def atomic_write_text(path: str | Path, text: str) -> None:
    atomic_write(path, lambda f: f.write(text.encode("utf-8")))


def remove_temp_files(directory: str | Path) -> list[Path]:
    """Delete temp files that killed writes left in ``directory`` (only while no other writer runs)."""
    removed = []
    for tmp in Path(directory).glob(f"*.*{TEMP_SUFFIX}"):
        if tmp.is_file():
            tmp.unlink(missing_ok=True)
            removed.append(tmp)
    return removed


def _fsync_directory(directory: Path) -> None:
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)
