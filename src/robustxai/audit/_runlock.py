"""The run lock: one writer per run directory at a time.

An audit (and ``robustxai report``) holds ``<run>/.robustxai.lock`` while it writes. The file is created
atomically (``O_CREAT | O_EXCL``, never through a link) and names its owner: process id, host, boot id and
start time. On systems with ``flock`` the owner also holds an advisory lock on the file, which the kernel
drops when the process dies, however it dies.

A second writer is refused with the owner named. A lock left by a process that no longer runs on this host
(killed, power cut) is taken over with a warning. A lock from another host is never taken over — robustxai
cannot tell whether that audit still runs — and the message says to remove the file by hand if it does not.
"""

from __future__ import annotations

import contextlib
import errno
import json
import logging
import os
import socket
import time
from pathlib import Path
from types import TracebackType

from robustxai._errors import RobustXAIError

try:
    import fcntl
except ImportError:  # pragma: no cover  (Windows: the pid check alone decides)
    fcntl = None  # type: ignore[assignment]

log = logging.getLogger(__name__)

LOCK_FILE = ".robustxai.lock"


class RunLockedError(RobustXAIError):
    """Another audit writes to the run directory (or may do so: a lock from another host)."""


def _boot_id() -> str:
    try:
        return Path("/proc/sys/kernel/random/boot_id").read_text().strip()
    except OSError:
        return ""


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # alive, owned by another user
        return True
    except (OverflowError, ValueError):
        return False
    return True


def _try_flock(fd: int) -> bool | None:
    """Take the advisory lock without waiting: True (got it), False (held elsewhere), None (unsupported)."""
    if fcntl is None:
        return None
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError as err:
        if err.errno in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
            return False
        return None  # e.g. ENOLCK / EOPNOTSUPP on some network file systems
    return True


class RunLock:
    """Hold ``<run_dir>/.robustxai.lock`` for the duration of a ``with`` block.

    Args:
        run_dir: The run directory (created if missing).

    Raises:
        RunLockedError: On entry, if another live process holds the lock, or a host other than this one does.
    """

    def __init__(self, run_dir: Path) -> None:
        self.path = Path(run_dir) / LOCK_FILE
        self.warning: str | None = None
        self._fd: int | None = None
        self._owner = {
            "pid": os.getpid(),
            "host": socket.gethostname(),
            "boot_id": _boot_id(),
            "started": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        }

    def __enter__(self) -> RunLock:
        try:
            self.acquire()
        except BaseException:  # e.g. Ctrl-C while the file is half-written: never leave it behind
            self.release()
            raise
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.release()

    def acquire(self) -> None:
        """Create the lock file, or take over a stale one; refuse a live or foreign owner."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        flags = os.O_RDWR | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0)
        for _ in range(5):  # a lock released or taken over between two steps: look again
            try:
                fd = self._fd = os.open(self.path, flags, 0o644)
            except FileExistsError:
                if self._take_over():
                    return
                continue
            self._own(fd)  # the owner is named before anyone can read the new file's flock as free
            _try_flock(fd)  # busy only while another process inspects it; the live pid still refuses it
            return
        raise RunLockedError(f"could not take the run lock {self.path}: it keeps changing hands")

    def _own(self, fd: int) -> None:
        self._fd = fd
        os.ftruncate(fd, 0)
        os.write(fd, (json.dumps(self._owner) + "\n").encode())
        os.fsync(fd)
        self._fd = fd

    def _take_over(self) -> bool:
        """Take the existing lock file if its owner is gone; False if it vanished (try again)."""
        if self.path.is_symlink():
            raise RobustXAIError(f"{self.path} is a symbolic link; remove it (robustxai never follows links)")
        try:
            fd = os.open(self.path, os.O_RDWR | getattr(os, "O_NOFOLLOW", 0))
        except FileNotFoundError:
            return False
        try:
            got = _try_flock(fd)
            owner = self._read(fd)
            same_file = os.path.exists(self.path) and os.stat(self.path).st_ino == os.fstat(fd).st_ino
            if not same_file:
                os.close(fd)
                return False
            self._refuse_unless_stale(owner, got)
        except BaseException:
            os.close(fd)
            raise
        self.warning = (
            f"took over the run lock of an audit that no longer runs (pid {owner.get('pid')} on "
            f"{owner.get('host')}, started {owner.get('started')}): {self.path}"
        )
        log.warning("%s", self.warning)
        self._own(fd)
        return True

    @staticmethod
    def _read(fd: int) -> dict[str, object]:
        raw = os.pread(fd, 4096, 0) if hasattr(os, "pread") else b""
        try:
            owner = json.loads(raw.decode("utf-8"))
        except (UnicodeDecodeError, ValueError):
            return {}
        return owner if isinstance(owner, dict) else {}

    def _refuse_unless_stale(self, owner: dict[str, object], flocked: bool | None) -> None:
        """Return if the owner is gone; raise :class:`RunLockedError` naming it otherwise."""
        pid, host = owner.get("pid"), owner.get("host")
        who = f"pid {pid} on host {host}, started {owner.get('started', '?')}"
        busy = f"run directory {self.path.parent} is in use by another audit"
        by_hand = f"if no audit is running there, remove {self.path} by hand"
        if not isinstance(pid, int) or not isinstance(host, str):
            if flocked is False:
                raise RunLockedError(f"{busy} ({self.path})")
            raise RunLockedError(f"the run lock {self.path} is unreadable (owner unknown); {by_hand}")
        if host != self._owner["host"]:
            raise RunLockedError(f"{busy} on another host ({who}); {by_hand}")
        if flocked is False:
            raise RunLockedError(f"{busy} ({who}); wait for it to finish or use another --out")
        other_boot = bool(owner.get("boot_id")) and owner.get("boot_id") != self._owner["boot_id"]
        if _pid_alive(pid) and pid != os.getpid() and not other_boot:
            raise RunLockedError(f"{busy} ({who}); {by_hand}")

    def release(self) -> None:
        """Remove the lock file (if it is still this process's) and drop the advisory lock."""
        if self._fd is None:
            return
        fd, self._fd = self._fd, None
        with contextlib.suppress(OSError):
            if os.stat(self.path).st_ino == os.fstat(fd).st_ino:
                os.unlink(self.path)
        os.close(fd)
