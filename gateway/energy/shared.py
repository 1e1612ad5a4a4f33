"""One meter for several worker processes: workers stream their spans to the sampler's process.

Each worker's ``SpanReporter`` holds a Unix stream connection to the ``SpanListener`` beside the
parent's ``EnergyAccountant``: JSON lines of span begins and ends one way, receipts of measured
joules the other.
"""

from __future__ import annotations

import asyncio
import functools
import itertools
import logging
import os
import selectors
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, cast

import orjson

from ..pool import ModelSpec
from ..metrics.sink import MetricsSink, NullSink
from .accounting import EnergyAccountant, Receipts, Span

logger = logging.getLogger(__name__)


class SpanReporter:
    """A worker's ``SpanRecorder``: streams each span's begin and end to the ``SpanListener`` of the process
    that owns the meter, one JSON line per event over a Unix stream connection.

    Writes go through an asyncio transport, so they never block the event loop and are never lost while
    the listener keeps up; only when it is gone, or ``max_buffer_bytes`` are waiting for it, is an event
    dropped and counted (its request's energy then counts as idle).
    """

    def __init__(self, socket_path: str, meter: str, clock: Callable[[], float] = time.monotonic,
                 max_buffer_bytes: int = 1 << 20, sink: MetricsSink | None = None):
        self.socket_path = socket_path
        self.sink: MetricsSink = sink or NullSink()
        self.max_buffer_bytes = max_buffer_bytes
        self._meter = meter
        self._clock = clock
        self._tokens = itertools.count()
        self._transport: asyncio.WriteTransport | None = None
        self._receipts = Receipts()

    @property
    def name(self) -> str:
        return self._meter

    @property
    def healthy(self) -> bool:
        return self._transport is not None and not self._transport.is_closing()

    async def open(self) -> None:
        try:
            self._transport, _ = await asyncio.get_running_loop().create_unix_connection(
                lambda: _ReceiptProtocol(self._receipts), self.socket_path)
        except OSError as exc:
            logger.error("energy sampler unreachable at %s (%s): this worker's requests count as idle energy",
                         self.socket_path, exc)

    def begin(self, model: ModelSpec, items: int, intensity: float | None, receipt: bool = False) -> int:
        token = next(self._tokens)
        event = {"op": "begin", "token": token, "model": model.name, "weight": model.energy_mj * items,
                 "intensity": intensity, "at": self._clock()}
        if receipt and self.healthy:
            self._receipts.expect(token)
            event["receipt"] = True
        if not self._send(event) and receipt:
            self._receipts.resolve(token, None)  # the sampler will never know this span: answer at once
        return token

    async def receipt(self, token: int, timeout_s: float) -> float | None:
        return await self._receipts.wait(token, timeout_s)

    def end(self, token: int) -> None:
        self._send({"op": "end", "token": token, "at": self._clock()})

    def _send(self, event: dict[str, Any]) -> bool:
        transport = self._transport
        if transport is None or transport.is_closing() or transport.get_write_buffer_size() > self.max_buffer_bytes:
            self.sink.dropped_span()
            return False
        transport.write(orjson.dumps(event, option=orjson.OPT_APPEND_NEWLINE))
        return True

    async def aclose(self) -> None:
        if self._transport is not None:
            self._transport.close()


class _ReceiptProtocol(asyncio.Protocol):
    """A reporter's side of the connection: the sampler sends back ``{"token", "joules"}`` receipts."""

    def __init__(self, receipts: Receipts):
        self._receipts = receipts
        self._pending = b""

    def data_received(self, data: bytes) -> None:
        *lines, self._pending = (self._pending + data).split(b"\n")
        for line in lines:
            try:
                message = orjson.loads(line)
                token, joules = int(message["token"]), message["joules"]
                joules = None if joules is None else float(joules)
            except (orjson.JSONDecodeError, KeyError, TypeError, ValueError):
                continue  # a receipt lost: that request answers with the estimate
            self._receipts.resolve(token, joules)


@dataclass
class _Worker:
    """One reporter's connection: its unparsed bytes, and its spans still open."""

    number: int
    connection: socket.socket
    pending: bytes = b""
    open_tokens: set[int] = field(default_factory=set)

    def send_receipt(self, token: int, joules: float | None) -> None:
        """From the sampler thread; a full or closed connection loses the receipt (the request times out)."""
        try:
            self.connection.send(orjson.dumps({"token": token, "joules": joules}, option=orjson.OPT_APPEND_NEWLINE))
        except OSError:
            pass


class SpanListener:
    """Accepts ``SpanReporter`` connections on a Unix socket and opens and closes their spans in ``accountant``.

    One thread serves every connection. A connection that closes (its worker exited or crashed) has its
    open spans closed then, so that no span outlives its worker.
    """

    MAX_LINE = 1 << 16

    def __init__(self, accountant: EnergyAccountant, socket_path: str):
        self.accountant = accountant
        self.socket_path = socket_path
        self._server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self._server.bind(socket_path)
        self._server.listen(64)
        self._server.setblocking(False)
        self._selector = selectors.DefaultSelector()
        self._selector.register(self._server, selectors.EVENT_READ)
        self._numbers = itertools.count()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="energy-span-listener", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            for key, _ in self._selector.select(timeout=0.2):
                if key.data is None:
                    self._accept()
                else:
                    self._read(cast(socket.socket, key.fileobj), key.data)  # only sockets are registered

    def _accept(self) -> None:
        try:
            connection, _ = self._server.accept()
        except BlockingIOError:
            return
        connection.setblocking(False)
        self._selector.register(connection, selectors.EVENT_READ, _Worker(next(self._numbers), connection))

    def _read(self, connection: socket.socket, worker: _Worker) -> None:
        try:
            chunk = connection.recv(1 << 16)
        except BlockingIOError:
            return
        except OSError:
            chunk = b""
        if not chunk:
            self._hang_up(connection, worker)
            return
        *lines, worker.pending = (worker.pending + chunk).split(b"\n")
        for line in lines:
            self.handle(worker, line)
        if len(worker.pending) > self.MAX_LINE:
            logger.warning("span stream from worker %d sent %d bytes without a newline: dropped",
                           worker.number, len(worker.pending))
            worker.pending = b""

    def handle(self, worker: _Worker, line: bytes) -> None:
        try:
            event = orjson.loads(line)
            token = int(event["token"])
            if event["op"] == "begin":
                intensity = None if event["intensity"] is None else float(event["intensity"])
                on_final = functools.partial(worker.send_receipt, token) if event.get("receipt") else None
                span = Span(str(event["model"]), float(event["weight"]), intensity, float(event["at"]),
                            on_final=on_final)
                self.accountant.open_span((worker.number, token), span)
                worker.open_tokens.add(token)
            else:
                self.accountant.close_span((worker.number, token), float(event["at"]))
                worker.open_tokens.discard(token)
        except (orjson.JSONDecodeError, KeyError, TypeError, ValueError) as exc:
            logger.warning("malformed span event from worker %d ignored: %s", worker.number, exc)

    def _hang_up(self, connection: socket.socket, worker: _Worker) -> None:
        self._selector.unregister(connection)
        connection.close()
        if worker.open_tokens:
            logger.warning("worker %d disconnected with %d request(s) in flight: their spans end now",
                           worker.number, len(worker.open_tokens))
            for token in worker.open_tokens:
                self.accountant.close_span((worker.number, token))

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout=5)
        for key in list(self._selector.get_map().values()):
            cast(socket.socket, key.fileobj).close()
        self._selector.close()
        try:
            os.unlink(self.socket_path)
        except FileNotFoundError:
            pass
