"""One process per run dir: an exclusive ``flock`` on ``<run_dir>/run.lock``.

The main rank takes the lock before it reads or writes anything in the run dir and holds it until the run
ends, so a second command on the same run (a sweep relaunched while the first is still going) stops with
one line naming the holder instead of interleaving writes. The kernel drops an ``flock`` when the holding
process dies, ``kill -9`` included, so a stale lock never blocks the next run.

The file stays in the run dir after the run: deleting it would let a waiting process lock the old,
unlinked file while a third one creates and locks a new one. ``--force`` therefore clears the run dir
around it. The file holds the holder's pid, host, command and start time, for the refusal message.
"""

from __future__ import annotations

import errno
import fcntl
import json
import os
import shlex
import socket
import sys

from mixbench.engine.report import now
from mixbench.errors import RunDirError

LOCK_NAME = "run.lock"


def lock_path(run_dir: str) -> str:
    return os.path.join(run_dir, LOCK_NAME)


class RunLock:
    """An exclusive, non-blocking lock on one run dir, held from :meth:`acquire` to :meth:`release`."""

    def __init__(self, run_dir: str):
        self.run_dir = run_dir
        self.path = lock_path(run_dir)
        self._fd: int | None = None

    def acquire(self) -> None:
        """Take the lock (creating the run dir and the lock file when needed).

        Raises:
            RunDirError: another process holds the lock (the message names it), or the run dir cannot be
                written.
        """
        try:
            os.makedirs(self.run_dir, exist_ok=True)
            # no O_TRUNC: a refused process must leave the holder's description intact
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as exc:
            raise RunDirError(f"run dir {self.run_dir} cannot be written ({exc.strerror}: {self.path})") from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            os.close(fd)
            if exc.errno not in (errno.EWOULDBLOCK, errno.EACCES):
                raise RunDirError(f"run dir {self.run_dir}: cannot lock {LOCK_NAME} ({exc.strerror})") from None
            raise RunDirError(f"run dir {self.run_dir} is in use by {describe(read_holder(self.path))}; "
                              "wait for it to end, or stop it, then rerun") from None
        self._fd = fd
        holder = {"pid": os.getpid(), "host": socket.gethostname(), "command": shlex.join(sys.argv),
                  "started": now()}
        try:
            os.ftruncate(fd, 0)
            os.pwrite(fd, (json.dumps(holder) + "\n").encode(), 0)
        except OSError:
            pass  # the description is only for the message of a refused process; the lock itself is held

    def release(self) -> None:
        if self._fd is not None:
            fcntl.flock(self._fd, fcntl.LOCK_UN)
            os.close(self._fd)
            self._fd = None


def read_holder(path: str) -> dict:
    """What the holder wrote into the lock file (empty when it is unreadable or not written yet)."""
    try:
        with open(path, encoding="utf-8") as f:
            data = json.loads(f.read() or "{}")
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def describe(holder: dict) -> str:
    """``pid 123 on host (started ..., command: ...)``, or ``another process`` when nothing is known."""
    if not holder.get("pid"):
        return "another process"
    text = (f"pid {holder['pid']} on {holder.get('host', '?')} (started {holder.get('started', '?')}, "
            f"command: {holder.get('command', '?')})")
    if holder.get("host") == socket.gethostname() and not _alive(int(holder["pid"])):
        # forked children (data-loader workers) share the lock and outlive a killed holder by a few seconds
        text += ", which has ended; its child processes still hold the lock and exit within seconds"
    return text


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process
        return True
    return True
