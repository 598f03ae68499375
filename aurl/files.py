"""Writing files safely: a failed write is one WriteError naming the path, files change by rename (never
half-written in place), and one process at a time writes to a run directory or prepared dataset."""

from __future__ import annotations

import fcntl
import os
import socket
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from aurl.errors import AurlError, BusyError, WriteError

LOCK_FILE = ".aurl.lock"


@contextmanager
def writing(path: Path) -> Iterator[None]:
    """Turn an OSError under it into a WriteError naming `path` (a write() error carries no file name)."""
    try:
        yield
    except OSError as err:
        raise WriteError(path, err) from err


def temporary(path: Path) -> Path:
    """Where `path` is written before its rename: hidden, beside it, with its suffix (writers go by it)."""
    return path.with_name(f".{path.stem}.tmp{path.suffix}")


def write_together(writes: dict[Path, Callable[[Path], object]]) -> None:
    """Call each write(temporary path), then rename every file into place, so that files which belong
    together (a dataset's tokens and manifest) change together. A failed write removes the temporary files
    and leaves the earlier files as they were."""
    staged: list[tuple[Path, Path]] = []
    try:
        for path, write in writes.items():
            staged.append((temporary(path), path))
            with writing(path):
                write(temporary(path))
        for tmp, path in staged:
            with writing(path):
                os.replace(tmp, path)
    finally:
        for tmp, _ in staged:
            tmp.unlink(missing_ok=True)


class FolderLock:
    """One writer per folder: an flock on FOLDER/.aurl.lock, which the kernel releases when its process
    ends however it ends, so a lock is never stale; the file says who holds it. A file left behind by a
    killed process is taken over with a note. Creates the folder, and removes it again if nothing else was
    written in it."""

    def __init__(self, folder: Path, option: str, log: Callable[[str], None] = print):
        self.folder, self.option, self.log = Path(folder), option, log
        self.path = self.folder / LOCK_FILE
        self.fd = -1
        self.created: list[Path] = []

    def __enter__(self) -> FolderLock:
        if self.folder.exists() and not self.folder.is_dir():
            raise AurlError(f"{self.folder}: exists and is not a folder; choose another {self.option}")
        self.created = [p for p in (self.folder, *self.folder.parents) if not p.exists()]
        with writing(self.folder):
            self.folder.mkdir(parents=True, exist_ok=True)
            while self.fd < 0:
                self.fd = self._open()
            previous = os.pread(self.fd, 1024, 0).decode(errors="replace").strip()
            if previous:
                self.log(f"note: {self.folder}: taking over from {previous}, which ended without releasing it")
            os.ftruncate(self.fd, 0)
            since = time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime())
            os.pwrite(self.fd, f"pid {os.getpid()} on {socket.gethostname()} since {since}\n".encode(), 0)
        return self

    def _open(self) -> int:
        """A descriptor holding the lock, or -1 when the file was released and removed while it was opened."""
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 1024, 0).decode(errors="replace").strip() or "another process"
            os.close(fd)
            raise BusyError(
                f"{self.folder}: in use by {holder} (an aurl process writing there); "
                f"wait for it to end or choose another {self.option}"
            ) from None
        try:
            current = os.stat(self.path).st_ino == os.fstat(fd).st_ino
        except FileNotFoundError:
            current = False
        if not current:
            os.close(fd)
            return -1
        return fd

    def __exit__(self, *exc: object) -> None:
        self.path.unlink(missing_ok=True)  # before the release: a waiting opener then sees a fresh file
        os.close(self.fd)
        self.fd = -1
        for folder in self.created:  # deepest first: nothing written, nothing left behind
            try:
                folder.rmdir()
            except OSError:
                break
