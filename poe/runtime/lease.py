"""Client-id leases: at most one process at a time acts as a given client of a given cluster
on this host (issue #16).

Why: the replicas keep, per client id, the highest request id executed and a 64-id window
(the exactly-once rule of poe/_core/kv.pyx). Two processes acting as the same client id at
once hand out overlapping request ids: one's write is answered STALE (below the window) or
DUPLICATE (the same id), that is, not executed. ``poe client`` picks its default client id
among the ids no other process holds, and every ClientProcess (``poe client``, the ``poe
bench`` workers) holds the lease of each client id it acts as for its whole life.

How: a lease is an exclusive ``flock`` on ``<lock dir>/<cluster_id>/client-<id>.lock``; the
kernel drops it when its process ends, even by SIGKILL, so a crashed holder never blocks
anyone. The file also keeps the holder's pid (named in the error of the next process that
wants the id) and the highest request id handed out under the lease: the next holder starts
above it even if the wall clock has stepped back. Lock dir: ``$POE_LOCK_DIR``, else
``$XDG_RUNTIME_DIR/poe``, else ``<temp dir>/poe-<uid>`` (created mode 0700).

Limits: it serializes the processes of one host. Two hosts using one client id at the same
time are not detected here (give each host its own client ids); ``poe client`` reports such
a request's STALE or DUPLICATE answer as not executed (exit status 1), and no answer of one
message ever decides another: a replica's reply cache is bound to the message's signature
and every INFORM entry carries the message's tag (its signature's first 16 bytes), which
the client compares with its own (docs/architecture.md decision 5, docs/wire.md).

Must never: block (a held lease is an error at once), or leave a lease held by a process
that has ended.
"""
from __future__ import annotations

import fcntl
import os
import re
import stat
import tempfile
from collections.abc import Iterable
from pathlib import Path
from typing import Self

_SAFE = re.compile(r"[A-Za-z0-9_.-]{1,128}")


class ClientIdInUse(ValueError):
    """Another live process on this host holds the client id."""


def lock_dir() -> Path:
    explicit = os.environ.get("POE_LOCK_DIR")
    if explicit:
        return Path(explicit)
    runtime = os.environ.get("XDG_RUNTIME_DIR")
    if runtime and os.path.isdir(runtime):
        return Path(runtime) / "poe"
    return Path(tempfile.gettempdir()) / f"poe-{os.geteuid()}"


def _private_dir(path: Path) -> Path:
    try:
        path.mkdir(mode=0o700, parents=True, exist_ok=True)
        info = path.lstat()
    except OSError as exc:
        raise ValueError(f"client lease directory {path}: {exc.strerror} "
                         "(set POE_LOCK_DIR to a writable directory)") from None
    if not stat.S_ISDIR(info.st_mode) or info.st_uid != os.geteuid():
        raise ValueError(f"client lease directory {path} is not a directory of this user "
                         "(set POE_LOCK_DIR to one)")
    return path


class ClientLease:
    """The leases of client ids ``ids`` of cluster ``cluster_id``: all taken or none
    (ClientIdInUse naming the first one held elsewhere)."""

    def __init__(self, cluster_id: str, ids: Iterable[int]) -> None:
        if not _SAFE.fullmatch(cluster_id):
            raise ValueError(f"cluster id {cluster_id!r} cannot name a lock file")
        self.dir = _private_dir(_private_dir(lock_dir()) / cluster_id)
        self.fds: dict[int, int] = {}
        self.last_t: dict[int, int] = {}
        try:
            for cid in ids:
                self._take(cid)
        except BaseException:
            self.release()
            raise

    def _take(self, cid: int) -> None:
        path = self.dir / f"client-{cid}.lock"
        try:
            fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        except OSError as exc:
            raise ValueError(f"client lease {path}: {exc.strerror}") from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = self._read(fd)[0]
            os.close(fd)
            who = f" (pid {holder})" if holder else ""
            raise ClientIdInUse(f"client id {cid} is in use by another process on this "
                                f"host{who}") from None
        except OSError:
            os.close(fd)
            raise
        self.fds[cid] = fd
        self.last_t[cid] = self._read(fd)[1]
        self._write(fd, self.last_t[cid])

    @staticmethod
    def _read(fd: int) -> tuple[int, int]:
        """(pid, highest request id) recorded in a lock file; zeros when unreadable."""
        try:
            fields = os.pread(fd, 64, 0).split()
            return int(fields[0]), int(fields[1])
        except (OSError, ValueError, IndexError):
            return 0, 0

    @staticmethod
    def _write(fd: int, last_t: int) -> None:
        data = f"{os.getpid()} {last_t}\n".encode()
        try:
            os.ftruncate(fd, 0)
            os.pwrite(fd, data, 0)
        except OSError:
            pass                         # the lease itself (the flock) still holds

    def first_request_id(self, cid: int, now_us: int) -> int:
        """The first request id for ``cid``: the wall clock in microseconds, or above every
        id handed out under this lease before if the clock is behind it; recorded."""
        t = max(now_us, self.last_t.get(cid, 0) + 1)
        self.record(cid, t)
        return t

    def record(self, cid: int, last_t: int) -> None:
        """Note that request ids up to ``last_t`` of ``cid`` were handed out."""
        if last_t > self.last_t.get(cid, 0):
            self.last_t[cid] = last_t
            self._write(self.fds[cid], last_t)

    def release(self) -> None:
        for fd in self.fds.values():
            try:
                os.close(fd)                     # closing drops the flock
            except OSError:
                pass
        self.fds = {}

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *_exc) -> None:
        self.release()


def lease_first_free(cluster_id: str, candidates: Iterable[int]) -> tuple[int, ClientLease]:
    """The first client id of ``candidates`` no other process holds, with its lease;
    ClientIdInUse if every one is held."""
    tried: list[int] = []
    for cid in candidates:
        tried.append(cid)
        try:
            return cid, ClientLease(cluster_id, [cid])
        except ClientIdInUse as exc:
            if len(tried) == 1:
                first = exc
    if len(tried) == 1:
        raise first
    span = f"{min(tried)}..{max(tried)}" if tried else "-"
    raise ClientIdInUse(f"every client id ({span}) is in use by other processes on this host")
