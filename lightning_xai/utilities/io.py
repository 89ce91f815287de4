"""Atomic file writes: a crash never leaves a half-written file under the final name."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import BinaryIO

__all__ = ["atomic_save", "atomic_write", "file_mode", "remove_stale_temporaries"]

_TMP_SUFFIX = ".tmp"


def file_mode() -> int:
    """The permission bits a new file gets under the process umask (``0o644`` for the usual
    umask ``022``), as Lightning's own checkpoints and event files get them.

    Example:
        >>> import os
        >>> old = os.umask(0o022)
        >>> oct(file_mode())
        '0o644'
        >>> _ = os.umask(old)
    """
    mask = os.umask(0)
    os.umask(mask)
    return 0o666 & ~mask


def remove_stale_temporaries(directory: str | os.PathLike[str]) -> list[Path]:
    """Delete the temporary files (``.<name>.<random>.tmp``) that interrupted atomic writes left
    anywhere under ``directory``; return what was removed. Final files are never touched.

    Example:
        >>> import tempfile, pathlib
        >>> d = pathlib.Path(tempfile.mkdtemp())
        >>> _ = (d / ".a.pt.x1y2.tmp").write_bytes(b"half"), (d / "a.pt").write_bytes(b"ok")
        >>> [p.name for p in remove_stale_temporaries(d)], sorted(p.name for p in d.iterdir())
        (['.a.pt.x1y2.tmp'], ['a.pt'])
    """
    root = Path(directory)
    if not root.is_dir():
        return []
    removed = []
    for path in root.rglob(f".*{_TMP_SUFFIX}"):
        if path.is_file() and path.name.count(".") >= 3:
            try:
                path.unlink()
            except FileNotFoundError:  # another process cleaned it
                continue
            removed.append(path)
    return removed


def atomic_save(path: str | os.PathLike[str], writer: Callable[[BinaryIO], None]) -> Path:
    """Call ``writer`` on a temporary file next to ``path``, then rename it into place.

    The rename is atomic on POSIX and Windows, so readers see either the old file or the new
    one, never a partial write. On error the temporary file is removed and ``path`` is untouched;
    a crash can leave the temporary file, which :func:`remove_stale_temporaries` clears at the
    next start. The file gets the permissions of :func:`file_mode` (the umask is respected).

    Example:
        >>> import tempfile, pathlib
        >>> d = pathlib.Path(tempfile.mkdtemp())
        >>> atomic_save(d / "a.bin", lambda f: f.write(b"abc")).read_bytes()
        b'abc'
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=_TMP_SUFFIX)
    try:
        os.fchmod(fd, file_mode())  # mkstemp creates 0600 whatever the umask says
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
