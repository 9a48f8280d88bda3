"""One writer per output folder: a lock changed only by compare-and-swap, judged by a counter.

A run holds ``<output>/.sediment_xr/lock`` while it writes. The lock is a small JSON document:
its owner (host, process id, a random ``token``), a ``generation`` (1 when created, one more
at each takeover) and a heartbeat counter ``beat`` that the owner increments every
:data:`HEARTBEAT_SECONDS`. It also holds the wall-clock times it was taken and last beaten,
for people reading it: no decision uses them, since the clocks of two hosts need not agree.

Every change of the document is conditional on the version its writer last saw, so no writer
overwrites a change it has not seen (a heartbeat never overwrites a takeover):

- local folders: created by hard-linking a complete temporary file (``os.link`` fails when
  the lock exists, so of two runs starting at once exactly one gets it, and no reader sees a
  half-written lock; without hard links, ``O_CREAT | O_EXCL``); replaced and removed under
  ``flock`` of the ``.sediment_xr`` folder after comparing its bytes (this host's processes,
  or a file system whose ``flock`` is shared between hosts, which not every NFS is);
- S3: created with ``If-None-Match: *`` (s3fs ``pipe_file(mode="create")``), replaced with
  ``If-Match: <ETag>`` and removed with a conditional delete (AWS S3 and moto honour all
  three; an S3-compatible store that ignores these headers gives none of these guarantees,
  and one that refuses conditional deletes has the lock compared, then deleted);
- other fsspec stores (GCS, Azure, memory): created with ``pipe_file(mode="create")`` and read
  back (atomic where the backend makes it so, e.g. gcsfs with ``ifGenerationMatch=0``;
  fsspec's default checks that the file is missing first, so two runs starting within the
  same instant can both believe they hold it), and replaced after reading it back (not
  atomic). Write such outputs from one run at a time.

A second run on the same output is refused while the lock is live. Its owner on this host is
alive while its process exists. An owner on another host is judged by watching its lock by
this host's monotonic clock: the run refuses as soon as the document changes (the owner is
beating), and takes the lock over when it did not change for :data:`STALE_SECONDS`. A
takeover writes ``generation + 1`` conditionally on the very document judged stale, so of
several contenders one wins, and an owner that was only suspended finds its next heartbeat
refused, stops, and fails its next :meth:`OutputLock.check`.

Fencing: the chunk tasks carry a :class:`LockFence` (the run's token and generation) and check
it before writing a chunk and before each completion mark, so a run that lost the lock (taken
over, or released when the run was stopped) cannot mark a chunk done. The check and the write
are two requests: a chunk write already past its check when a takeover happens still lands
(with the same config it writes the same bytes), but no mark follows a failed check.
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime as _dt
import fcntl
import json
import logging
import os
import posixpath
import secrets
import socket
import threading
import time
from collections.abc import Iterator, Mapping
from typing import Any

from sediment_xr.exceptions import OutputError

__all__ = ["HEARTBEAT_SECONDS", "STALE_SECONDS", "LockFence", "OutputLock", "stale_reason"]

#: Seconds between heartbeats of a live lock.
HEARTBEAT_SECONDS = 30.0
#: A lock of another host whose document did not change for this many seconds (watched by
#: this host's monotonic clock) is stale.
STALE_SECONDS = 300.0
#: Longest pause between two reads of a lock being watched.
WATCH_SECONDS = 5.0

_log = logging.getLogger("sediment_xr")


def _now() -> str:
    return _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds")


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, owned by someone else
        return True
    return True


def _parse(raw: bytes) -> dict[str, Any]:
    """The lock document, or ``{}`` when it is not a JSON object."""
    try:
        owner = json.loads(raw)
    except ValueError:
        return {}
    return owner if isinstance(owner, dict) else {}


def _generation(owner: Mapping[str, Any]) -> int:
    value = owner.get("generation")
    return value if isinstance(value, int) and not isinstance(value, bool) else 0


def _refused(err: OSError) -> bool:
    """Whether a store refused a conditional write (the condition did not hold)."""
    text = str(err).lower()
    return isinstance(err, FileExistsError) or any(
        word in text for word in ("pre-condition", "precondition", "conflict")
    )


def stale_reason(
    owner: Mapping[str, Any], *, stale_seconds: float | None = None, file_age: float = 0.0
) -> str:
    """Why a lock's owner is gone as far as this host can tell at once, or ``""``.

    Parameters
    ----------
    owner : mapping
        The lock document (empty when it cannot be read).
    stale_seconds : float, optional
        Age after which an unreadable lock file is stale (default :data:`STALE_SECONDS`).
    file_age : float
        Seconds since an unreadable local lock file was written, by this host's clock.

    Returns
    -------
    str
        The reason, or ``""``: the owner is alive, or is on another host (only watching its
        heartbeat tells, see :class:`OutputLock`).
    """
    limit = STALE_SECONDS if stale_seconds is None else stale_seconds
    if not owner:
        if file_age > limit:
            return f"it cannot be read and was last written {file_age:.0f} s ago"
        return ""
    pid = owner.get("pid")
    if owner.get("host") == socket.gethostname() and isinstance(pid, int):
        if not _pid_alive(pid):
            return f"process {pid} on this host no longer exists"
    return ""


class _Document:
    """The lock document on a store, read and changed by compare-and-swap (any fsspec store).

    A version is what a conditional change compares: here the bytes read, and the swap is a
    read followed by a write (not atomic; see the module's notes).
    """

    def __init__(self, fs: Any, path: str) -> None:
        self.fs = fs
        self.path = path

    def fetch(self) -> tuple[bytes, Any] | None:
        """The document's bytes and version, or None when there is no lock."""
        self.fs.invalidate_cache(self.path)
        try:
            raw = self.fs.cat_file(self.path)
        except FileNotFoundError:
            return None
        return raw, raw

    def create(self, data: bytes) -> Any | None:
        """Write the document if there is none: its version, or None when one exists."""
        self.fs.makedirs(posixpath.dirname(self.path), exist_ok=True)
        try:
            self.fs.pipe_file(self.path, data, mode="create")
        except TypeError:  # a backend without ``mode``: look, write, then read back
            self.fs.invalidate_cache(self.path)
            if self.fs.exists(self.path):
                return None
            self.fs.pipe_file(self.path, data)
        except OSError as err:
            if _refused(err):
                return None
            raise
        found = self.fetch()
        return found[1] if found is not None and found[0] == data else None

    def replace(self, version: Any, data: bytes) -> Any | None:
        """Write the document if its version is ``version``: the new version, or None."""
        found = self.fetch()
        if found is None or found[1] != version:
            return None
        self.fs.pipe_file(self.path, data)
        return data

    def delete(self, version: Any) -> bool:
        """Remove the document if its version is ``version``; whether it was removed."""
        found = self.fetch()
        if found is None or found[1] != version:
            return False
        self.fs.rm_file(self.path)
        return True


class _LocalDocument(_Document):
    """A lock file on a local disk: created by ``os.link``, changed under ``flock``."""

    @contextlib.contextmanager
    def _guard(self) -> Iterator[None]:
        fd = os.open(os.path.dirname(self.path), os.O_RDONLY)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)  # releases the flock

    def _temporary(self, data: bytes) -> str:
        tmp = f"{self.path}.{secrets.token_hex(6)}.tmp"
        try:
            with open(tmp, "wb") as f:
                f.write(data)
        except BaseException:  # e.g. disk full: leave no partial file behind
            with contextlib.suppress(OSError):
                os.remove(tmp)
            raise
        return tmp

    def fetch(self) -> tuple[bytes, Any] | None:
        try:
            with open(self.path, "rb") as f:
                raw = f.read()
        except FileNotFoundError:
            return None
        return raw, raw

    def create(self, data: bytes) -> Any | None:
        os.makedirs(os.path.dirname(self.path), exist_ok=True)
        tmp = self._temporary(data)
        try:
            os.link(tmp, self.path)  # fails when the lock exists: only one run creates it
        except FileExistsError:
            return None
        except OSError:  # no hard links here (some network or FUSE file systems)
            return self._create_exclusive(data)
        finally:
            os.remove(tmp)
        return data

    def _create_exclusive(self, data: bytes) -> Any | None:
        """``O_CREAT | O_EXCL``, then the content (a reader may see it empty for a moment)."""
        try:
            fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
        except FileExistsError:
            return None
        try:
            with os.fdopen(fd, "wb") as f:
                f.write(data)
        except BaseException:  # e.g. disk full: leave no empty lock behind
            os.remove(self.path)
            raise
        return data

    def replace(self, version: Any, data: bytes) -> Any | None:
        with self._guard():
            found = self.fetch()
            if found is None or found[1] != version:
                return None
            os.replace(self._temporary(data), self.path)
        return data

    def delete(self, version: Any) -> bool:
        with self._guard():
            found = self.fetch()
            if found is None or found[1] != version:
                return False
            os.remove(self.path)
        return True


class _S3Document(_Document):
    """A lock object on S3: versions are ETags; every change is a conditional request."""

    def fetch(self) -> tuple[bytes, Any] | None:
        self.fs.invalidate_cache(self.path)
        for _ in range(3):  # the read is conditional on the ETag of its HEAD: retry a change
            try:
                with self.fs.open(self.path, "rb") as f:
                    raw = f.read()
                    etag = f.details.get("ETag")
            except FileNotFoundError:
                return None
            except OSError as err:
                if _refused(err):
                    self.fs.invalidate_cache(self.path)
                    continue
                raise
            return raw, etag
        raise OSError(f"the lock {self.path} kept changing while it was read")

    def create(self, data: bytes) -> Any | None:
        try:
            reply = self.fs.pipe_file(self.path, data, mode="create")
        except OSError as err:
            if _refused(err):
                return None
            raise
        etag = (reply or {}).get("ETag")
        if etag is not None:
            return etag
        found = self.fetch()
        return found[1] if found is not None and found[0] == data else None

    def replace(self, version: Any, data: bytes) -> Any | None:
        try:
            reply = self.fs.pipe_file(self.path, data, IfMatch=version)
        except FileNotFoundError:
            return None
        except OSError as err:
            if _refused(err):
                return None
            raise
        self.fs.invalidate_cache(self.path)
        etag = (reply or {}).get("ETag")
        if etag is not None:
            return etag
        found = self.fetch()
        return found[1] if found is not None and found[0] == data else None

    def delete(self, version: Any) -> bool:
        bucket, key, _ = self.fs.split_path(self.path)
        try:
            self.fs.call_s3("delete_object", Bucket=bucket, Key=key, IfMatch=version)
        except FileNotFoundError:
            return False
        except OSError as err:
            if _refused(err):
                return False
            # A store without conditional deletes: compare, then delete.
            return super().delete(version)
        finally:
            self.fs.invalidate_cache(self.path)
        return True


def _document(out: Any) -> _Document:
    """How the lock document of output ``out`` is read and swapped on its store."""
    path = out.path(".sediment_xr", "lock")
    fs = out.fs
    if "://" not in out.url:
        return _LocalDocument(fs, path)
    protocols = fs.protocol if isinstance(fs.protocol, tuple | list) else (fs.protocol,)
    if {"s3", "s3a"} & set(protocols):
        return _S3Document(fs, path)
    return _Document(fs, path)


def _holder(owner: Mapping[str, Any] | None) -> str:
    if owner is None:
        return "no lock"
    if not owner:
        return "an unreadable lock"
    return f"generation {_generation(owner)} held by pid {owner.get('pid')} on {owner.get('host')}"


@dataclasses.dataclass(frozen=True)
class LockFence:
    """What a chunk task checks before it writes: its run still holds the output's lock.

    Picklable (it travels with the tasks to the workers).

    Parameters
    ----------
    url : str
        The output folder (path or fsspec URL).
    storage_options : mapping
        fsspec options of the output.
    token, generation
        The run's lock: its token and generation.
    """

    url: str
    storage_options: Mapping[str, Any] = dataclasses.field(default_factory=dict, repr=False)
    token: str = ""
    generation: int = 0

    def check(self, before: str = "writing") -> None:
        """Raise OutputError when the lock is not this run's any more.

        ``before`` names what the task was about to do, e.g. ``"marking chunk 3 done"``.
        """
        from sediment_xr.store import Output

        found = _document(Output(self.url, self.storage_options)).fetch()
        owner = None if found is None else _parse(found[0])
        if owner and owner.get("token") == self.token and _generation(owner) == self.generation:
            return
        raise OutputError(
            f"a task stopped before {before} in {self.url}: its run (lock generation "
            f"{self.generation}) no longer holds the output's lock, now {_holder(owner)}; the "
            "run was stopped or another run took the output over. Let the run holding the "
            "lock finish, then run the same command again to check the output."
        )


class OutputLock:
    """The writer's lock of an output folder; use as a context manager.

    Parameters
    ----------
    out : sediment_xr.store.Output
        The output folder.
    heartbeat : float, optional
        Seconds between heartbeats (0 disables the heartbeat thread); default
        :data:`HEARTBEAT_SECONDS`.
    stale_seconds : float, optional
        Seconds an unchanged lock of another host is watched before it is taken over;
        default :data:`STALE_SECONDS`.
    """

    def __init__(
        self,
        out: Any,
        *,
        heartbeat: float | None = None,
        stale_seconds: float | None = None,
    ) -> None:
        self.out = out
        self.path = out.path(".sediment_xr", "lock")
        self.heartbeat = HEARTBEAT_SECONDS if heartbeat is None else heartbeat
        self.stale_seconds = STALE_SECONDS if stale_seconds is None else stale_seconds
        self.token = secrets.token_hex(8)
        self.generation = 0
        self.beat = 0
        self.version: Any = None
        self.taken_over: str = ""
        self.lost = False
        self._store = _document(out)
        self._local = "://" not in out.url
        self._started = _now()
        self._stop = threading.Event()
        self._swap = threading.Lock()  # the heartbeat thread and release() take turns
        self._thread: threading.Thread | None = None

    # -- the lock document ----------------------------------------------------------------
    def _document(self) -> bytes:
        owner = {
            "host": socket.gethostname(),
            "pid": os.getpid(),
            "token": self.token,
            "generation": self.generation,
            "beat": self.beat,
            "started": self._started,
            "heartbeat": _now(),
        }
        return json.dumps(owner).encode()

    def _mine(self, owner: Mapping[str, Any] | None) -> bool:
        return bool(owner) and (
            owner.get("token") == self.token and _generation(owner) == self.generation
        )

    def read(self) -> dict[str, Any] | None:
        """The current lock's owner: None when there is no lock, ``{}`` when it is unreadable.

        Raises OSError when the storage cannot be asked (callers decide whether to retry).
        """
        found = self._store.fetch()
        return None if found is None else _parse(found[0])

    def fence(self) -> LockFence:
        """The fence of this run's chunk tasks (see :class:`LockFence`)."""
        return LockFence(self.out.url, dict(self.out.storage_options), self.token, self.generation)

    def _file_age(self) -> float:
        """Seconds since a local lock file was last written, by this host's clock (0 else)."""
        if not self._local:
            return 0.0
        try:
            return max(0.0, time.time() - os.stat(self.path).st_mtime)
        except OSError:
            return 0.0

    # -- judging a lock found in place -----------------------------------------------------
    def _busy(self, owner: Mapping[str, Any]) -> OutputError:
        if not owner:
            return OutputError(
                f"the lock {self.out.url_of('.sediment_xr', 'lock')} cannot be read: another "
                "run may be starting. Wait a minute and run again; if no run writes to this "
                f"output, delete that file (it is taken over {self.stale_seconds:.0f} s "
                "after it was written)."
            )
        return OutputError(
            f"output {self.out.url} is being written by another sediment-xr run "
            f"(pid {owner.get('pid')} on {owner.get('host')}, started {owner.get('started')}, "
            f"heartbeat {owner.get('beat')}). Wait for it to finish, or choose another output "
            "folder."
        )

    def _watch(self, owner: Mapping[str, Any], version: Any) -> str | None:
        """Watch a lock of another host: the stale reason, or None when it went away.

        Raises OutputError as soon as the document changes (its owner is alive).
        """
        _log.info(
            f"lock: {self.out.url} is held by pid {owner.get('pid')} on {owner.get('host')}; "
            f"watching its heartbeat for up to {self.stale_seconds:.0f} s"
        )
        start = time.monotonic()
        while (elapsed := time.monotonic() - start) < self.stale_seconds:
            time.sleep(min(WATCH_SECONDS, self.stale_seconds - elapsed))
            found = self._store.fetch()
            if found is None:
                return None
            if found[1] != version:
                raise self._busy(_parse(found[0]))
        return f"its heartbeat did not advance in {time.monotonic() - start:.0f} s"

    def _judge(self, owner: Mapping[str, Any], version: Any) -> str | None:
        """Why the lock found is stale; None when it went away; OutputError when it is live."""
        reason = stale_reason(owner, stale_seconds=self.stale_seconds, file_age=self._file_age())
        if reason:
            return reason
        same_host = owner.get("host") == socket.gethostname()
        if (same_host and isinstance(owner.get("pid"), int)) or (not owner and self._local):
            raise self._busy(owner)
        return self._watch(owner, version)

    # -- acquire / release ----------------------------------------------------------------
    def acquire(self) -> None:
        """Take the lock, or take over a stale one; raise OutputError when it is live."""
        for _ in range(5):  # bounded: other runs may take and release it meanwhile
            self.generation, self.beat = 1, 0
            version = self._store.create(self._document())
            if version is not None:
                self._hold(version, "")
                return
            found = self._store.fetch()
            if found is None:  # released in between
                continue
            owner = _parse(found[0])
            reason = self._judge(owner, found[1])
            if reason is None:
                continue
            self.generation, self.beat = _generation(owner) + 1, 0
            version = self._store.replace(found[1], self._document())
            if version is not None:  # None: another run took it over first
                self._hold(version, reason)
                return
        raise OutputError(
            f"could not take the lock {self.out.url_of('.sediment_xr', 'lock')}: other runs "
            "keep taking it. Make sure only one run writes to this output, then run again."
        )

    def _hold(self, version: Any, reason: str) -> None:
        self.version, self.taken_over, self.lost = version, reason, False
        self._stop.clear()
        self._start_heartbeat()

    def check(self) -> None:
        """Raise OutputError when this run no longer holds the lock (taken over meanwhile)."""
        try:
            owner = self.read()
        except OSError:
            return  # cannot ask now: the next check will
        if self.lost or not self._mine(owner):
            raise OutputError(
                f"this run lost the lock of {self.out.url}: it is now {_holder(owner)}, as "
                "another run took the output over while this one was silent (suspended?). "
                "Let that run finish, then run again to check the output."
            )

    def release(self) -> None:
        """Stop the heartbeat and remove the lock if this run still holds it."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=10)
        with self._swap:
            version, self.version = self.version, None
            if version is None:
                return
            try:
                if not self._store.delete(version):
                    found = self._store.fetch()  # e.g. a beat whose reply was lost
                    if found is not None and self._mine(_parse(found[0])):
                        self._store.delete(found[1])
            except OSError:  # the lock stays; the next run sees its owner is gone
                pass

    def _beat(self) -> None:
        """One heartbeat: the counter plus one, written only over this run's own document."""
        owner = self.read()
        if not self._mine(owner):
            self.lost = True  # no longer ours: never write over another run's lock
            return
        with self._swap:
            if self._stop.is_set() or self.version is None:
                return
            self.beat += 1
            version = self._store.replace(self.version, self._document())
            if version is not None:
                self.version = version
                return
            found = self._store.fetch()  # changed since our last write: still ours?
            if found is not None and self._mine(_parse(found[0])):
                self.version = found[1]
            else:
                self.lost = True

    def _start_heartbeat(self) -> None:
        if self.heartbeat <= 0:
            return

        def beat() -> None:
            while not self.lost and not self._stop.wait(self.heartbeat):
                try:
                    self._beat()
                except Exception:  # a missed beat only makes the lock look older; go on
                    continue

        self._thread = threading.Thread(target=beat, name="sediment-xr-lock", daemon=True)
        self._thread.start()

    def __enter__(self) -> OutputLock:
        self.acquire()
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()
