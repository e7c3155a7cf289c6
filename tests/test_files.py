"""Files: atomic writes that leave the old file or the new one, reads that fail in one line."""
import errno
from pathlib import Path

import pytest

from rlsmooth.errors import ConfigError, UserError
from rlsmooth.files import atomic_write, atomic_write_text, read_text, remove_temp_files, write_failure


def test_atomic_write_replaces_or_keeps(tmp_path):
    path = tmp_path / "f.txt"
    atomic_write_text(path, "old")

    def fail(f):
        f.write(b"partial")
        raise OSError(errno.ENOSPC, "No space left on device")
    with pytest.raises(UserError, match="No space left on device"):
        atomic_write(path, fail)
    assert path.read_text() == "old" and not list(tmp_path.glob("*.tmp"))
    atomic_write_text(path, "new")
    assert path.read_text() == "new"


def test_temp_files_of_killed_writes_are_removed(tmp_path):
    (tmp_path / "config.yaml.abc.tmp").write_text("x")
    (tmp_path / "keep.txt").write_text("x")
    assert [p.name for p in remove_temp_files(tmp_path)] == ["config.yaml.abc.tmp"]
    assert [p.name for p in tmp_path.iterdir()] == ["keep.txt"]


def test_read_text_fails_in_one_line(tmp_path):
    with pytest.raises(ConfigError, match="config not found"):
        read_text(tmp_path / "missing.yaml", "config")
    (tmp_path / "bad").write_bytes(b"\xff\xfe")
    with pytest.raises(ConfigError, match="not UTF-8 text"):
        read_text(tmp_path / "bad")


def test_write_failures_say_what_to_do(tmp_path):
    assert "Read-only file system" in write_failure(OSError(errno.EROFS, "x"), tmp_path)
    assert "is gone" in write_failure(OSError(errno.ENOENT, "x"), tmp_path / "nope")
    assert "bytes free on that file system" in write_failure(OSError(errno.ENOSPC, "x"), tmp_path)
    assert write_failure(RuntimeError("boom"), tmp_path) == "boom"   # plenty of space: the error's own words
    assert write_failure(OSError(errno.EIO, "Input/output error"), Path(tmp_path)) == "Input/output error"


def test_atomic_writes_get_the_mode_a_plain_write_would(tmp_path):
    import os
    import stat
    from rlsmooth.files import atomic_write_text
    old = os.umask(0o022)
    try:
        atomic_write_text(tmp_path / "a.txt", "x")
        (tmp_path / "b.txt").write_text("x")
        assert stat.S_IMODE((tmp_path / "a.txt").stat().st_mode) == stat.S_IMODE((tmp_path / "b.txt").stat().st_mode) == 0o644
        os.umask(0o077)
        atomic_write_text(tmp_path / "c.txt", "x")
        assert stat.S_IMODE((tmp_path / "c.txt").stat().st_mode) == 0o600
    finally:
        os.umask(old)
