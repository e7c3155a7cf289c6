"""Errors the user can act on: the CLI prints them as one readable line and exits with status 2."""
from __future__ import annotations

import os
import re

# terminal escape sequences: CSI (colours, cursor), OSC (window title ...), and two-byte ESC commands
_ESCAPES = re.compile(r"\x1b\[[0-?]*[ -/]*[@-~]|\x1b\][^\x07\x1b]*(\x07|\x1b\\)?|\x1b[ -~]|\x9b[0-?]*[ -/]*[@-~]")
_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f]")


class UserError(Exception):
    """Bad input or an unusable file or directory: one line naming the problem, exit status 2."""


class ConfigError(UserError, ValueError):
    """A config, override or command-line value that cannot be used."""


def one_line(text: str) -> str:
    """``text`` without terminal escape sequences or any other control character, its whitespace
    (newlines included) collapsed: whole, never cut."""
    return " ".join(_CONTROL.sub("", _ESCAPES.sub("", str(text))).split())


def os_error_line(exc: OSError) -> str:
    """'PATH: No space left on device' for an OS error (a bytes path decoded)."""
    where = os.fsdecode(exc.filename) if getattr(exc, "filename", None) else "file system"
    return f"{where}: {exc.strerror or exc}"
