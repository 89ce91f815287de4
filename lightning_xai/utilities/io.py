"""Atomic file writes: a crash never leaves a half-written file under the final name."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import BinaryIO

__all__ = ["atomic_save", "atomic_write"]


def atomic_save(path: str | os.PathLike[str], writer: Callable[[BinaryIO], None]) -> Path:
    """Call ``writer`` on a temporary file next to ``path``, then rename it into place.

    The rename is atomic on POSIX and Windows, so readers see either the old file or the new
    one, never a partial write. On error the temporary file is removed and ``path`` is untouched.

    Example:
        >>> import tempfile, pathlib
        >>> d = pathlib.Path(tempfile.mkdtemp())
        >>> atomic_save(d / "a.bin", lambda f: f.write(b"abc")).read_bytes()
        b'abc'
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            writer(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    return path


def atomic_write(path: str | os.PathLike[str], data: bytes | str) -> Path:
    """Write ``data`` (``str`` is UTF-8 encoded) to ``path`` atomically.

    Example:
        >>> import tempfile, pathlib
        >>> p = atomic_write(pathlib.Path(tempfile.mkdtemp()) / "x" / "note.md", "# hi")
        >>> p.read_text()
        '# hi'
    """
    payload = data.encode("utf-8") if isinstance(data, str) else bytes(data)
    return atomic_save(path, lambda f: f.write(payload))
