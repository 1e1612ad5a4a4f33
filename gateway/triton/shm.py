"""System shared memory between the gateway and a Triton on the same host.

Sending a 600 KB image tensor over gRPC costs both processes more CPU than a null model's inference:
HTTP/2 framing, flow control and two copies. When Triton can open this host's ``/dev/shm`` (the embedded
local Triton, a sidecar in the same pod, a compose service sharing the gateway's IPC namespace), each
request's tensor is written into a region registered with Triton once, and the request names the region
instead of carrying the bytes. Whether Triton can is found out by trying: if registering is refused, the
gateway says so once and sends bytes over gRPC, as it does for tensors larger than a region and while
every region is in use.

Triton forgets registrations when it restarts; an inference that names a forgotten region fails, is sent
again as bytes, and the regions are registered again before the next use.

A process killed outright (SIGKILL, the OOM killer) cannot unregister its regions: Triton keeps them mapped.
Their files go with multiprocessing's resource tracker, or stay in ``/dev/shm`` when it died too. So each
process holds a lock on its regions' files while they live, and after registering its own (which shows that
Triton's ``/dev/shm`` is this one), sweeps away the gateway regions Triton holds whose file is gone or whose
lock nobody holds. The kernel drops a killed process's locks, whatever PID namespace it ran in. A process
that creates its regions also removes the region files nobody holds any more (its killed predecessors',
when Triton died with them and holds nothing), except files younger than ``RECLAIM_AFTER_S``: a sibling
worker starting at the same moment may not have locked its own yet.
"""

from __future__ import annotations

import fcntl
import logging
import os
import secrets
import time
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from multiprocessing.shared_memory import SharedMemory

logger = logging.getLogger(__name__)

#: Registers one region with Triton: (region name, key under /dev/shm, size in bytes).
Register = Callable[[str, str, int], Awaitable[None]]
#: Unregisters one region from Triton by name.
Unregister = Callable[[str], Awaitable[None]]
#: The names of every system shared-memory region Triton holds.
Registered = Callable[[], Awaitable[Iterable[str]]]

PREFIX = "carbon-gateway-inputs-"
#: Region files younger than this are left alone by ``reclaim_files``: their owner may be about to lock them.
RECLAIM_AFTER_S = 30.0
SHM_DIR = "/dev/shm"


@dataclass(frozen=True)
class Region:
    name: str  # what requests and Triton call it
    memory: SharedMemory

    @property
    def key(self) -> str:
        """The POSIX shared-memory key Triton opens (``/dev/shm/<name>``)."""
        return "/" + self.memory.name


class SharedInputs:
    """``slots`` regions of ``region_bytes`` each, one request's input at a time in each.

    States: ``unregistered`` (registered before the first use, and again after Triton forgot them),
    ``registered``, ``refused`` (Triton cannot open them: never tried again).
    """

    def __init__(self, slots: int, region_bytes: int):
        reclaim_files()
        prefix = f"{PREFIX}{os.getpid()}-{secrets.token_hex(4)}"
        self.region_bytes = region_bytes
        self._regions = [Region(f"{prefix}-{i}", _create(f"{prefix}-{i}", region_bytes)) for i in range(slots)]
        self._locks = [_hold(region.name) for region in self._regions]  # released by close, or by dying
        self._free = list(range(slots))
        self.state = "unregistered"
        self.sent = 0  # requests whose tensor went through a region

    @property
    def regions(self) -> tuple[Region, ...]:
        return tuple(self._regions)

    async def ensure_registered(self, register: Register, sweep: Callable[[set[str]], Awaitable[object]] | None = None
                                ) -> bool:
        """Register every region unless that is done or was refused; whether requests may use them.

        ``sweep``, once they are registered, is handed their names: see ``sweep_orphans``.
        """
        if self.state == "unregistered":
            self.state = "registering"  # requests meanwhile send bytes
            try:
                for region in self._regions:
                    await register(region.name, region.key, self.region_bytes)
            except Exception as exc:  # noqa: BLE001 - any refusal means: bytes over gRPC
                logger.info("Triton cannot open this host's shared memory (%s): tensors go over gRPC", exc)
                await self.close(None)
                return False
            self.state = "registered"
            logger.info("tensors go to Triton through %d shared-memory regions of %d bytes",
                        len(self._regions), self.region_bytes)
            if sweep is not None:
                try:
                    await sweep({region.name for region in self._regions})
                except Exception as exc:  # noqa: BLE001 - tidying up must never stop serving
                    logger.warning("sweeping shared-memory regions of dead gateway processes failed: %s", exc)
        return self.state == "registered"

    def acquire(self, nbytes: int) -> tuple[int, Region] | None:
        """A free region holding ``nbytes``, or None (not registered, too large, or all in use)."""
        if self.state != "registered" or nbytes > self.region_bytes or not self._free:
            return None
        slot = self._free.pop()
        return slot, self._regions[slot]

    def release(self, slot: int) -> None:
        self._free.append(slot)

    def forgotten(self) -> None:
        """Triton no longer knows the regions (it restarted): register them again before the next use."""
        if self.state == "registered":
            logger.warning("Triton forgot the shared-memory regions (restarted?): registering them again")
            self.state = "unregistered"

    async def close(self, unregister: Unregister | None) -> None:
        """Unregister (when Triton is still there) and remove every region; requests then send bytes."""
        if unregister is not None and self.state == "registered":
            for region in self._regions:
                try:
                    await unregister(region.name)
                except Exception as exc:  # noqa: BLE001 - Triton may be gone already; the files go regardless
                    logger.debug("unregistering %s: %s", region.name, exc)
        self.state = "refused"
        for fd in self._locks:
            os.close(fd)
        for region in self._regions:
            region.memory.close()
            try:
                region.memory.unlink()
            except FileNotFoundError:
                pass
        self._regions, self._free, self._locks = [], [], []


async def sweep_orphans(registered: Registered, unregister: Unregister, ours: set[str]) -> list[str]:
    """Unregister and remove the gateway regions Triton holds whose owner is gone; their names.

    Call it only once this process's regions are registered: that shows Triton opens this ``/dev/shm``, so
    every region it holds had its file here, and a live owner's file is here, locked.
    """
    swept = []
    for name in await registered():
        if name.startswith(PREFIX) and name not in ours and _orphaned(name):
            await unregister(name)
            try:
                os.unlink(_file(name))
            except FileNotFoundError:
                pass
            swept.append(name)
    if swept:
        logger.warning("removed %d shared-memory regions left registered by gateway processes that died: %s",
                       len(swept), ", ".join(sorted(swept)))
    return swept


def reclaim_files(now: float | None = None) -> list[str]:
    """Remove the region files of gateway processes that are gone (unlocked, and older than ``RECLAIM_AFTER_S``);
    their names. Triton, if it still holds them, is told by ``sweep_orphans``."""
    now = time.time() if now is None else now
    removed: list[str] = []
    try:
        names = [name for name in os.listdir(SHM_DIR) if name.startswith(PREFIX)]
    except OSError:
        return removed
    for name in names:
        try:
            if now - os.stat(_file(name)).st_mtime < RECLAIM_AFTER_S or not _orphaned(name):
                continue
            os.unlink(_file(name))
        except OSError:  # gone meanwhile, or not ours to remove
            continue
        removed.append(name)
    if removed:
        logger.warning("removed %d shared-memory files of gateway processes that died", len(removed))
    return removed


def _hold(name: str) -> int:
    """Lock a region's file for as long as this process lives (or until the descriptor is closed)."""
    fd = os.open(_file(name), os.O_RDONLY)
    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    return fd


def _orphaned(name: str) -> bool:
    """Whether region ``name``'s file is gone (a live owner unregisters before it unlinks) or unlocked."""
    try:
        fd = os.open(_file(name), os.O_RDONLY)
    except FileNotFoundError:
        return True
    except OSError:  # not ours to open: not ours to judge
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return False  # its owner lives
    finally:
        os.close(fd)  # and with it the lock, if we took it
    return True


def _create(name: str, size: int) -> SharedMemory:
    """A region that the gateway's group may open too: a Triton sidecar runs as another user of that group."""
    memory = SharedMemory(name=name, create=True, size=size)
    os.chmod(_file(name), 0o660)
    return memory


def _file(name: str) -> str:
    """Where POSIX shared memory ``name`` lives on Linux."""
    return f"{SHM_DIR}/{name}"
