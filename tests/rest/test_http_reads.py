"""How the gateway's HTTP protocol reads a request body off the connection (``gateway.rest.httptools``)."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
import uvicorn
from uvicorn.server import ServerState

from gateway.rest.httptools import LimitedHttpToolsProtocol


class RecordingTransport(asyncio.Transport):
    """The transport side of a connection: records whether reading is paused, writes nowhere."""

    def __init__(self) -> None:
        super().__init__()
        self.paused = False
        self.pauses = 0

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return {"peername": ("127.0.0.1", 50000), "sockname": ("127.0.0.1", 8000)}.get(name, default)

    def pause_reading(self) -> None:
        self.paused, self.pauses = True, self.pauses + 1

    def resume_reading(self) -> None:
        self.paused = False

    def is_closing(self) -> bool:
        return False

    def write(self, data: bytes | bytearray | memoryview) -> None:
        pass

    def close(self) -> None:
        pass


async def never_reads(scope: Any, receive: Any, send: Any) -> None:
    await asyncio.Event().wait()


@pytest.fixture
async def connection():
    config = uvicorn.Config(never_reads, http=LimitedHttpToolsProtocol, lifespan="off", log_level="warning")
    config.load()
    protocol = LimitedHttpToolsProtocol(config=config, server_state=ServerState(), app_state={},
                                        _loop=asyncio.get_running_loop())
    transport = RecordingTransport()
    protocol.connection_made(transport)
    yield protocol, transport
    protocol.connection_lost(None)


def send_body(protocol: LimitedHttpToolsProtocol, size: int) -> None:
    protocol.data_received(b"POST /v2/models/auto/infer HTTP/1.1\r\nHost: gateway\r\n"
                           b"Content-Length: %d\r\n\r\n" % size)
    sent = 0
    while sent < size:  # in the pieces a loopback read hands over
        piece = min(64 * 1024, size - sent)
        protocol.data_received(b"\0" * piece)
        sent += piece


async def test_a_tensor_sized_body_is_read_without_pausing_the_connection(connection):
    """uvicorn's own protocol pauses past 64 KiB: a 600 KB tensor then takes ten rounds of pause and resume."""
    protocol, transport = connection
    send_body(protocol, 3 * 224 * 224 * 4 + 200)
    assert transport.pauses == 0


async def test_a_body_past_the_buffer_pauses_reading_until_the_app_takes_it(connection):
    protocol, transport = connection
    send_body(protocol, LimitedHttpToolsProtocol.body_buffer_bytes + 64 * 1024)
    assert transport.paused
