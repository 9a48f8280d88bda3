"""One writer per output folder: a lock file with its owner, a heartbeat and stale-lock takeover.

A run holds ``<output>/.sediment_xr/lock`` while it writes. The lock is a small JSON document
naming its owner (host, process id, a random token), when it was taken and when its owner
last said it was alive (a heartbeat rewritten every :data:`HEARTBEAT_SECONDS`).

A second run on the same output is refused while the lock is live. A lock is *stale*, and is
taken over, when its owner is gone: its process no longer exists on this host, or (for an
owner on another machine, e.g. a hub session on object storage) its heartbeat is older than
:data:`STALE_SECONDS`. Locally the lock is created with ``O_CREAT | O_EXCL``, so of two runs
starting at once exactly one gets it; a takeover renames the stale lock away first (an atomic
rename that only one contender wins) and then creates a fresh one the same way. On object
stores the lock is written, read back and checked for the owner's token (fsspec has no
exclusive create common to every store), which catches all but near-simultaneous starts; a
run checks that it still holds the lock before each stage and before marking the output
complete.
"""

from __future__ import annotations

import datetime as _dt
import json
import os
import posixpath
import secrets
import socket
import threading
from typing import Any

from sediment_xr.exceptions import OutputError

__all__ = ["HEARTBEAT_SECONDS", "STALE_SECONDS", "OutputLock"]

#: Seconds between heartbeats of a live lock.
HEARTBEAT_SECONDS = 30.0
#: A lock whose heartbeat is older than this is stale, whatever its host.
STALE_SECONDS = 300.0


def _now() -> _dt.datetime:
    return _dt.datetime.now(_dt.UTC)


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, owned by someone else
        return True
    return True


def _age_seconds(stamp: Any) -> float:
    try:
        then = _dt.datetime.fromisoformat(str(stamp))
    except (TypeError, ValueError):
        return float("inf")
    if then.tzinfo is None:  # written without a zone: take it as UTC
        then = then.replace(tzinfo=_dt.UTC)
    return (_now() - then).total_seconds()


def stale_reason(
    owner: dict[str, Any], *, stale_seconds: float = STALE_SECONDS, file_age: float = 0.0
) -> str:
    """Why a lock's owner is gone, or ``""`` when the lock is live.

    ``owner`` is the lock document (empty when it could not be read; then only the age of
    the file, ``file_age`` in seconds, can tell).
    """
    if not owner:
        if file_age > stale_seconds:
            return f"it cannot be read and was last written {file_age:.0f} s ago"
        return ""
    if owner.get("host") == socket.gethostname():
        pid = owner.get("pid")
        if isinstance(pid, int) and not _pid_alive(pid):
            return f"process {pid} on this host no longer exists"
    age = _age_seconds(owner.get("heartbeat", ""))
    if age > stale_seconds:
        return f"its last heartbeat was {age:.0f} s ago"
    return ""


class OutputLock:
    """The writer's lock of an output folder; use as a context manager.

    Parameters
    ----------
    out : sediment_xr.store.Output
        The output folder.
    heartbeat : float
        Seconds between heartbeats (0 disables the heartbeat thread).
    stale_seconds : float
        Age of the last heartbeat after which the lock is stale.
    """

    def __init__(
        self,
        out,
        *,
        heartbeat: float = HEARTBEAT_SECONDS,
        stale_seconds: float = STALE_SECONDS,
    ) -> None:
        self.out = out
        self.path = out.path(".sediment_xr", "lock")
        self.heartbeat = heartbeat
        self.stale_seconds = stale_seconds
        self.token = secrets.token_hex(8)
        self.taken_over: str = ""
        self.lost = False
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._local = "://" not in out.url

    # -- the lock document ----------------------------------------------------------------
    def _document(self, started: str | None = None) -> bytes:
        now = _now().isoformat(timespec="seconds")
        owner = {
            "host": socket.gethostname(),
            "pid": os.getpid(),
            "token": self.token,
            "started": started or now,
            "heartbeat": now,
        }
        return json.dumps(owner).encode()

    def read(self) -> dict[str, Any] | None:
        """The current lock's owner: None when there is no lock, ``{}`` when it is unreadable.

        Raises OSError when the storage cannot be asked (callers decide whether to retry).
        """
        fs = self.out.fs
        fs.invalidate_cache(self.path)
        try:
            raw = fs.cat(self.path)
        except FileNotFoundError:
            return None
        try:
            owner = json.loads(raw)
        except ValueError:
            return {}
        return owner if isinstance(owner, dict) else {}

    def _file_age(self) -> float:
        """Seconds since the lock file was last written (0 when unknown)."""
        try:
            modified = self.out.fs.modified(self.path)
        except (FileNotFoundError, NotImplementedError, OSError):
            return 0.0
        if modified.tzinfo is None:
            modified = modified.replace(tzinfo=_dt.UTC)
        return max(0.0, (_now() - modified).total_seconds())

    def _write(self, data: bytes) -> None:
        """Replace the lock document in one piece (readers never see half of it)."""
        if self._local:
            tmp = f"{self.path}.{self.token}.tmp"
            with open(tmp, "wb") as f:
                f.write(data)
            os.replace(tmp, self.path)
        else:  # object stores replace whole objects
            self.out.fs.pipe(self.path, data)

    def _create(self) -> bool:
        """Create the lock if there is none; True when this process now holds it."""
        fs = self.out.fs
        fs.makedirs(posixpath.dirname(self.path), exist_ok=True)
        if self._local:
            try:
                fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
            except FileExistsError:
                return False
            try:
                with os.fdopen(fd, "wb") as f:
                    f.write(self._document())
            except BaseException:  # e.g. disk full: leave no empty lock behind
                os.remove(self.path)
                raise
            return True
        fs.invalidate_cache(self.path)
        if fs.exists(self.path):
            return False
        fs.pipe(self.path, self._document())
        return (self.read() or {}).get("token") == self.token

    def _remove_stale(self, owner: dict[str, Any]) -> None:
        fs = self.out.fs
        if self._local:
            aside = f"{self.path}.stale-{self.token}"
            try:
                os.rename(self.path, aside)  # only one contender wins the rename
            except FileNotFoundError:
                return
            try:
                with open(aside, "rb") as f:
                    moved = json.loads(f.read() or b"{}")
            except (ValueError, OSError):
                moved = {}
            if not isinstance(moved, dict):
                moved = {}
            if moved.get("token") != owner.get("token"):
                # Another run took over in between: put its lock back (or leave ours out).
                try:
                    os.link(aside, self.path)
                except FileExistsError:
                    pass
            os.remove(aside)
            return
        current = self.read()  # object stores: remove only the lock judged stale
        if current is not None and current.get("token") == owner.get("token"):
            fs.rm(self.path)

    # -- acquire / release ----------------------------------------------------------------
    def acquire(self) -> None:
        """Take the lock, or take over a stale one; raise OutputError when it is live."""
        for _ in range(3):  # bounded: create, or remove a stale lock and create again
            if self._create():
                self._start_heartbeat()
                return
            owner = self.read()
            if owner is None:  # released in between
                continue
            reason = stale_reason(
                owner, stale_seconds=self.stale_seconds, file_age=self._file_age()
            )
            if not reason and not owner:
                raise OutputError(
                    f"the lock {self.out.url_of('.sediment_xr', 'lock')} cannot be read: another "
                    "run may be starting. Wait a minute and run again; if no run writes to this "
                    f"output, delete that file (it is taken over {self.stale_seconds:.0f} s "
                    "after it was written)."
                )
            if not reason:
                raise OutputError(
                    f"output {self.out.url} is being written by another sediment-xr run "
                    f"(pid {owner.get('pid')} on {owner.get('host')}, started "
                    f"{owner.get('started')}, alive at {owner.get('heartbeat')}). Wait for it "
                    "to finish, or choose another output folder."
                )
            self.taken_over = reason
            self._remove_stale(owner or {})
        raise OutputError(
            f"could not take the lock {self.out.url_of('.sediment_xr', 'lock')}: other runs "
            "keep taking it. Make sure only one run writes to this output, then run again."
        )

    def check(self) -> None:
        """Raise OutputError when this run no longer holds the lock (taken over meanwhile)."""
        try:
            owner = self.read()
        except OSError:
            return  # cannot ask now: the next check will
        if self.lost or owner is None or (owner and owner.get("token") != self.token):
            raise OutputError(
                f"this run lost the lock of {self.out.url}: it was silent for over "
                f"{self.stale_seconds:.0f} s (suspended?) and another run took the output "
                "over. Let that run finish, then run again to check the output."
            )

    def release(self) -> None:
        """Stop the heartbeat and remove the lock if this process still holds it."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=10)
        try:
            owner = self.read()
            if owner and owner.get("token") == self.token:
                self.out.fs.rm(self.path)
        except OSError:  # the lock stays; the next run sees its owner is gone
            pass

    def _start_heartbeat(self) -> None:
        if self.heartbeat <= 0:
            return
        started = (self.read() or {}).get("started")

        def beat() -> None:
            while not self._stop.wait(self.heartbeat):
                try:
                    owner = self.read()
                    if owner is None or (owner and owner.get("token") != self.token):
                        self.lost = True
                        return  # no longer ours: never overwrite another run's lock
                    self._write(self._document(started))
                except Exception:  # a missed beat only makes the lock look older; go on
                    continue

        self._thread = threading.Thread(target=beat, name="sediment-xr-lock", daemon=True)
        self._thread.start()

    def __enter__(self) -> OutputLock:
        self.acquire()
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()
