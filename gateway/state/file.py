"""``state.url: file://PATH``: the fleet's state in one JSON file, shared by the worker processes of one host.

Every exchange reads the file, adds the delta and writes it back under an exclusive ``flock`` on a sidecar
lock file (``PATH.lock``), so the workers of a gateway never lose each other's counts. The new contents go to
a temporary file in the same directory, are synced to disk and renamed over the old file (and the rename
synced): a crash leaves the previous state or the new one, never half of either, and readers (``load``) need
no lock. All of it runs in a
worker thread, off the event loop.

A file is only as shared as its filesystem: replicas on several hosts need ``redis://``. A network
filesystem's ``flock`` may not lock across hosts at all.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import os
import tempfile
import time
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ValidationError

from .base import StateStoreError
from .models import RETENTION_S, StateDelta, StateSnapshot, period_id

SCHEME = "file://"


class _Account(BaseModel):
    period_start: float
    period_end: float
    served: float = 0.0
    error_sum: float = 0.0
    co2_g: float = 0.0
    by_model: dict[str, float] = {}


class _Writer(BaseModel):
    sequence: int  # the last delta applied from this writer
    at: float  # when: writers silent for the retention are forgotten


class _Deployment(BaseModel):
    """One ``state.key``: its accounts by ``period_id``, its history buckets, and its writers' last deltas."""

    accounts: dict[str, _Account] = {}
    intensity: dict[int, float] = {}
    requests: dict[int, float] = {}
    writers: dict[str, _Writer] = {}

    def first_time(self, delta: StateDelta, now: float) -> bool:
        """Whether ``delta`` is new (and, if it has a writer, record it as applied)."""
        if delta.writer is None:
            return True
        last = self.writers.get(delta.writer)
        if last is not None and last.sequence >= delta.sequence:
            return False
        self.writers[delta.writer] = _Writer(sequence=delta.sequence, at=now)
        return True

    def snapshot(self, period_start: float, buckets: Iterable[int]) -> StateSnapshot:
        """The account of ``period_start`` (zeros if there is none) and the values of ``buckets`` there are."""
        account = self.accounts.get(period_id(period_start)) or _Account(period_start=period_start,
                                                                         period_end=period_start)
        chosen = list(buckets)
        return StateSnapshot(period_start=period_start, served=account.served, error_sum=account.error_sum,
                             co2_g=account.co2_g, by_model=dict(account.by_model),
                             intensity={b: self.intensity[b] for b in chosen if b in self.intensity},
                             requests={b: self.requests[b] for b in chosen if b in self.requests})


class StateDocument(BaseModel):
    """The file: every deployment that shares it, by key (``MemoryStore`` holds one in memory)."""

    version: Literal[1] = 1
    deployments: dict[str, _Deployment] = {}

    def apply(self, delta: StateDelta, now: float) -> StateSnapshot:
        deployment = self.deployments.setdefault(delta.key, _Deployment())
        buckets = sorted({*delta.intensity, *delta.requests})
        if not deployment.first_time(delta, now):  # a copy of one applied already: the totals only
            return deployment.snapshot(delta.period_start, buckets)
        name = period_id(delta.period_start)
        account = deployment.accounts.setdefault(
            name, _Account(period_start=delta.period_start, period_end=delta.period_end))
        account.period_end = delta.period_end
        account.served += delta.served
        account.error_sum += delta.error_sum
        account.co2_g += delta.co2_g
        for model, count in delta.by_model.items():
            account.by_model[model] = account.by_model.get(model, 0.0) + count
        deployment.intensity.update(delta.intensity)
        for bucket, count in delta.requests.items():
            deployment.requests[bucket] = deployment.requests.get(bucket, 0.0) + count
        return deployment.snapshot(delta.period_start, buckets)

    def load(self, key: str, period_start: float, since: float) -> StateSnapshot:
        """The account of ``period_start`` and the history from ``since`` on, for a process starting."""
        deployment = self.deployments.get(key, _Deployment())
        buckets = sorted(b for b in {*deployment.intensity, *deployment.requests} if b >= since)
        return deployment.snapshot(period_start, buckets)

    def prune(self, now: float) -> None:
        """Forget buckets, ended accounts and silent writers older than the retention."""
        horizon = now - RETENTION_S
        for deployment in self.deployments.values():
            for name in [n for n, a in deployment.accounts.items() if a.period_end < horizon]:
                del deployment.accounts[name]
            for writer in [w for w, last in deployment.writers.items() if last.at < horizon]:
                del deployment.writers[writer]
            for history in (deployment.intensity, deployment.requests):
                for bucket in [b for b in history if b < horizon]:
                    del history[bucket]


def path_of(url: str) -> Path:
    """The path of a ``file://`` URL; a relative one (``file://var/state.json``) is relative to the working
    directory, an absolute one has three slashes (``file:///var/lib/carbon-gateway/state.json``)."""
    if not url.startswith(SCHEME):
        raise ValueError(f"a file store's URL starts with {SCHEME}, not {url!r}")
    path = url[len(SCHEME):]
    if not path or path.endswith("/"):
        raise ValueError(f"{url!r} names no file: file://var/state/policy-state.json (relative to the working "
                         "directory) or file:///var/lib/carbon-gateway/policy-state.json (absolute)")
    return Path(path)


class FileStore:
    """The state of every process on this host in one JSON file (see the module's docstring)."""

    name = "file"

    def __init__(self, path: Path | str, *, lock_timeout_s: float = 10.0, clock: Callable[[], float] = time.time):
        self.path = Path(path).absolute()
        self.lock_path = self.path.with_name(self.path.name + ".lock")
        self.url = f"{SCHEME}{self.path}"
        self.lock_timeout_s = lock_timeout_s
        self._clock = clock

    @classmethod
    def check_url(cls, url: str) -> None:
        path_of(url)

    @classmethod
    def from_url(cls, url: str) -> FileStore:
        return cls(path_of(url))

    def __repr__(self) -> str:
        return f"FileStore({str(self.path)!r})"

    async def exchange(self, delta: StateDelta) -> StateSnapshot:
        return await asyncio.to_thread(self._exchange, delta)

    async def load(self, key: str, period_start: float, since: float) -> StateSnapshot:
        return await asyncio.to_thread(self._load, key, period_start, since)

    async def close(self) -> None:
        return None

    # --- in the worker thread -------------------------------------------------------------------------------

    def _exchange(self, delta: StateDelta) -> StateSnapshot:
        with self._failures("cannot update"), self._locked():
            document, now = self._read(), self._clock()
            snapshot = document.apply(delta, now)
            document.prune(now)
            self._write(document)
        return snapshot

    def _load(self, key: str, period_start: float, since: float) -> StateSnapshot:
        with self._failures("cannot read"):
            return self._read().load(key, period_start, since)

    @contextlib.contextmanager
    def _failures(self, doing: str) -> Iterator[None]:
        try:
            yield
        except OSError as exc:
            raise StateStoreError(f"file store {self.path}: {doing} it: {exc.strerror or exc}") from exc

    @contextlib.contextmanager
    def _locked(self) -> Iterator[None]:
        """The exclusive lock on ``PATH.lock``, waited for at most ``lock_timeout_s``."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        descriptor = os.open(self.lock_path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            deadline, pause = time.monotonic() + self.lock_timeout_s, 0.001
            while True:
                try:
                    fcntl.flock(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    break
                except BlockingIOError:
                    if time.monotonic() > deadline:
                        raise StateStoreError(f"file store {self.path}: another process has held "
                                              f"{self.lock_path.name} for over {self.lock_timeout_s:g} s") from None
                    time.sleep(pause)
                    pause = min(pause * 2, 0.02)
            yield
        finally:
            os.close(descriptor)  # closing the descriptor releases the lock

    def _read(self) -> StateDocument:
        try:
            text = self.path.read_bytes()
        except FileNotFoundError:
            return StateDocument()
        try:
            return StateDocument.model_validate_json(text)
        except ValidationError as exc:
            first = exc.errors()[0]
            where = ".".join(str(part) for part in first["loc"]) or "document"
            raise StateStoreError(f"file store {self.path}: not a policy-state file ({where}: {first['msg']}); "
                                  "move it away to start afresh") from exc

    def _write(self, document: StateDocument) -> None:
        descriptor, temporary = tempfile.mkstemp(prefix=f".{self.path.name}.", suffix=".tmp", dir=self.path.parent)
        try:
            with os.fdopen(descriptor, "wb") as file:
                file.write(document.model_dump_json().encode())
                file.flush()
                os.fsync(file.fileno())
            os.replace(temporary, self.path)
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(temporary)
            raise
        directory = os.open(self.path.parent, os.O_RDONLY)
        try:
            os.fsync(directory)  # the rename itself, on disk
        finally:
            os.close(directory)
