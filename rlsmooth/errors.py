"""Errors the user can act on: the CLI prints them as one readable line and exits with status 2."""
from __future__ import annotations

import os
import re

_ANSI = re.compile(r"\x1b\[[0-9;?]*[ -/]*[@-~]")


class UserError(Exception):
    """Bad input or an unusable file or directory: one line naming the problem, exit status 2."""


class ConfigError(UserError, ValueError):
    """A config, override or command-line value that cannot be used."""


def one_line(text: str) -> str:
    """``text`` without terminal escape codes, its whitespace (newlines included) collapsed: whole, never cut."""
    return " ".join(_ANSI.sub("", str(text)).split())


def os_error_line(exc: OSError) -> str:
    """'PATH: No space left on device' for an OS error (a bytes path decoded)."""
    where = os.fsdecode(exc.filename) if getattr(exc, "filename", None) else "file system"
    return f"{where}: {exc.strerror or exc}"
