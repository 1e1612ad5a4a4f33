"""gRPC calls written frame by frame over HTTP/2 (the ``h2`` library), as a hostile client would send them.

A stock gRPC client sends whole messages; these send a message's length prefix and then as much of it as
asked, and stop: an oversized message, or one that stalls just short of its end. Each call has a connection
of its own and obeys HTTP/2 flow control, so the server reads exactly what its windows allow.
"""

from __future__ import annotations

import asyncio
import contextlib
from dataclasses import dataclass, field

import h2.config
import h2.connection
import h2.events
import h2.exceptions

INFER_PATH = "/inference.GRPCInferenceService/ModelInfer"
CHUNK = 16 * 1024


def _text(value: str | bytes) -> str:
    return value.decode() if isinstance(value, bytes) else value


@dataclass
class PartialCall:
    """One call: what was sent of its message, and how the server ended it, if it did."""

    writer: asyncio.StreamWriter
    reader: asyncio.StreamReader
    connection: h2.connection.H2Connection
    stream_id: int
    sent: int = 0
    grpc_status: int | None = None  # from the server's trailers (or a trailers-only answer)
    grpc_message: str = ""
    reset: bool = False  # the server reset the stream or closed the connection
    headers: dict[str, str] = field(default_factory=dict)

    @property
    def ended(self) -> bool:
        return self.grpc_status is not None or self.reset

    def _handle(self, events: list[h2.events.Event]) -> None:
        for event in events:
            if isinstance(event, (h2.events.ResponseReceived, h2.events.TrailersReceived)):
                headers = {_text(k): _text(v) for k, v in event.headers}
                self.headers.update(headers)
                if "grpc-status" in headers:
                    self.grpc_status = int(headers["grpc-status"])
                    self.grpc_message = headers.get("grpc-message", "")
            elif isinstance(event, (h2.events.StreamReset, h2.events.ConnectionTerminated)):
                self.reset = True

    async def _read(self, timeout_s: float) -> bool:
        """Read what the server sent within ``timeout_s``; False when nothing came."""
        try:
            data = await asyncio.wait_for(self.reader.read(65536), timeout_s)
        except TimeoutError:
            return False
        if not data:
            self.reset = True
            return False
        try:
            self._handle(self.connection.receive_data(data))
        except h2.exceptions.ProtocolError:
            self.reset = True
        self.writer.write(self.connection.data_to_send())
        await self.writer.drain()
        return True

    async def settle(self, timeout_s: float = 1.0) -> None:
        """Take in whatever the server says for up to ``timeout_s``."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout_s
        while not self.ended and loop.time() < deadline and await self._read(max(0.0, deadline - loop.time())):
            pass

    async def close(self) -> None:
        self.writer.close()
        with contextlib.suppress(OSError):
            await self.writer.wait_closed()


async def idle_connection(host: str, port: int) -> PartialCall:
    """An HTTP/2 connection that makes no call: ``ended`` once the server closes it."""
    reader, writer = await asyncio.open_connection(host, port)
    connection = h2.connection.H2Connection(h2.config.H2Configuration(client_side=True, header_encoding="utf-8"))
    connection.initiate_connection()
    writer.write(connection.data_to_send())
    await writer.drain()
    call = PartialCall(writer, reader, connection, stream_id=0)
    await call.settle(0.05)
    return call


async def partial_call(host: str, port: int, declared_bytes: int, send_bytes: int, *, path: str = INFER_PATH,
                       stall_timeout_s: float = 10.0) -> PartialCall:
    """Open a call on a connection of its own, announce a message of ``declared_bytes`` and send ``send_bytes``
    of it (or less, if the server ends the call first or stops granting window for ``stall_timeout_s``)."""
    reader, writer = await asyncio.open_connection(host, port)
    connection = h2.connection.H2Connection(h2.config.H2Configuration(client_side=True, header_encoding="utf-8"))
    connection.initiate_connection()
    stream_id = connection.get_next_available_stream_id()
    connection.send_headers(stream_id, [(":method", "POST"), (":scheme", "http"), (":path", path),
                                        (":authority", f"{host}:{port}"), ("content-type", "application/grpc"),
                                        ("te", "trailers")])
    writer.write(connection.data_to_send())
    call = PartialCall(writer, reader, connection, stream_id)
    pending = b"\x00" + declared_bytes.to_bytes(4, "big")  # uncompressed, then the length
    remaining = send_bytes
    while not call.ended and (pending or remaining):
        if not pending:
            pending, remaining = bytes(min(CHUNK, remaining)), remaining - min(CHUNK, remaining)
        window = min(connection.local_flow_control_window(stream_id), connection.max_outbound_frame_size)
        if window <= 0:
            if not await call._read(stall_timeout_s):
                break  # the server grants nothing more
            continue
        piece, pending = pending[:window], pending[window:]
        connection.send_data(stream_id, piece)
        call.sent += len(piece)
        writer.write(connection.data_to_send())
        await writer.drain()
    await call.settle(0.05)
    return call
