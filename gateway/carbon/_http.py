"""The HTTP plumbing every provider shares: timeouts, retries with jittered backoff, ``Retry-After``.

Only the background monitor calls these, so a slow or rate-limiting provider delays the next
value, never a request.
"""

from __future__ import annotations

import asyncio
import email.utils
import logging
import random
import time
from collections.abc import Mapping
from typing import Any, TypeVar

import httpx
import orjson
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from .base import CarbonSourceError

logger = logging.getLogger(__name__)

_Model = TypeVar("_Model", bound=BaseModel)

#: Statuses worth asking again for; anything else in 4xx is our mistake and will not heal.
RETRYABLE_STATUSES = frozenset({408, 429, 500, 502, 503, 504})
#: Bodies up to this size are parsed on the event loop (tens of microseconds); larger ones in a thread.
PARSE_INLINE_BYTES = 64 * 1024


class HttpStatusError(CarbonSourceError):
    """The provider answered with an error status that retrying will not fix (or no longer fixed)."""

    def __init__(self, message: str, *, status_code: int, retry_after: float | None = None):
        super().__init__(message, retry_after=retry_after)
        self.status_code = status_code


class HttpSettings(BaseModel):
    """How hard a provider is tried before a poll counts as failed."""

    model_config = ConfigDict(extra="forbid")

    timeout_s: float = Field(default=10.0, gt=0, description="Connect/read timeout of one attempt.")
    attempts: int = Field(default=3, ge=1, le=10, description="Tries per poll, the first included.")
    backoff_s: float = Field(default=1.0, ge=0, description="Base of the exponential backoff.")
    backoff_max_s: float = Field(default=30.0, ge=0, description="Cap of one backoff sleep.")
    max_body_bytes: int = Field(default=4 * 1024 * 1024, ge=1024, description="Longest response body read; a "
                                "longer one is refused while it streams in, before it can fill memory.")
    max_retry_after_s: float = Field(
        default=60.0, ge=0,
        description="Longest 429 Retry-After waited out inside one poll; longer ones end the poll and "
                    "postpone the next.")


def parse_retry_after(value: str | None, now: float | None = None) -> float | None:
    """Seconds to wait from a ``Retry-After`` header (delta-seconds or HTTP-date), or None."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        moment = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if moment is None:
        return None
    return max(moment.timestamp() - (time.time() if now is None else now), 0.0)


def backoff_delay(attempt: int, settings: HttpSettings, rng: random.Random | None = None) -> float:
    """"Full jitter" backoff: uniform in [0, min(cap, base * 2**attempt)], so clients spread out."""
    ceiling = min(settings.backoff_max_s, settings.backoff_s * (2 ** attempt))
    return (rng or random).uniform(0, ceiling)


class JsonHttpClient:
    """GETs JSON with retries; every failure surfaces as ``CarbonSourceError``.

    The message names the URL path and status but never the request headers, which may hold secrets.
    """

    def __init__(self, base_url: str, settings: HttpSettings, *, headers: Mapping[str, str] | None = None,
                 provider: str = "carbon"):
        self.settings = settings
        self.provider = provider
        self._client = httpx.AsyncClient(base_url=base_url.rstrip("/"), headers=dict(headers or {}),
                                         timeout=settings.timeout_s, follow_redirects=True)

    async def get_json(self, path: str, *, params: Mapping[str, Any] | None = None,
                       headers: Mapping[str, str] | None = None, auth: httpx.Auth | None = None) -> Any:
        body = await self.get(path, params=params, headers=headers, auth=auth)
        if not body.strip():
            raise CarbonSourceError(f"{self.provider}: empty body from {path}")
        try:
            # A large document takes milliseconds to parse: not on the event loop, where requests wait.
            if len(body) <= PARSE_INLINE_BYTES:
                return orjson.loads(body)
            return await asyncio.to_thread(orjson.loads, body)
        except ValueError as exc:
            raise CarbonSourceError(f"{self.provider}: malformed JSON from {path}: {exc}") from exc

    async def _read(self, response: httpx.Response, path: str) -> bytes:
        """The body, refused (``CarbonSourceError``) as soon as it passes ``max_body_bytes``."""
        limit = self.settings.max_body_bytes
        declared = response.headers.get("content-length", "")
        if declared.isdigit() and int(declared) > limit:
            raise CarbonSourceError(f"{self.provider}: {path}: a body of {declared} bytes is over the "
                                    f"{limit}-byte limit; refused")
        chunks, size = [], 0
        async for chunk in response.aiter_bytes():
            size += len(chunk)
            if size > limit:
                raise CarbonSourceError(f"{self.provider}: {path}: the body passed the {limit}-byte limit; refused")
            chunks.append(chunk)
        return b"".join(chunks)

    async def get(self, path: str, *, params: Mapping[str, Any] | None = None,
                  headers: Mapping[str, str] | None = None, auth: httpx.Auth | None = None) -> bytes:
        """The body of a successful response to GET ``path``, after up to ``attempts`` tries."""
        settings = self.settings
        problem = "no attempt made"
        for attempt in range(settings.attempts):
            delay: float | None = None
            try:
                async with self._client.stream("GET", path, params=params, headers=headers,
                                               auth=auth if auth is not None else httpx.USE_CLIENT_DEFAULT) as response:
                    if response.is_success:
                        return await self._read(response, path)
            except httpx.TimeoutException:
                problem = f"timed out after {settings.timeout_s:g} s"
            except httpx.HTTPError as exc:
                problem = f"{type(exc).__name__}: {exc}"
            else:
                problem = f"HTTP {response.status_code}"
                if response.status_code not in RETRYABLE_STATUSES:
                    raise HttpStatusError(f"{self.provider}: {path}: {problem}", status_code=response.status_code)
                retry_after = parse_retry_after(response.headers.get("retry-after"))
                if retry_after is not None:
                    if retry_after > settings.max_retry_after_s:
                        raise HttpStatusError(f"{self.provider}: {path}: {problem}, retry after {retry_after:g} s",
                                              status_code=response.status_code, retry_after=retry_after)
                    delay = retry_after
            if attempt + 1 < settings.attempts:
                delay = backoff_delay(attempt, settings) if delay is None else delay
                logger.debug("%s: %s: %s; retrying in %.2f s", self.provider, path, problem, delay)
                await asyncio.sleep(delay)
        raise CarbonSourceError(f"{self.provider}: {path}: {problem} ({settings.attempts} attempts)")

    async def aclose(self) -> None:
        await self._client.aclose()


def parse_payload(model: type[_Model], payload: Any, provider: str, what: str) -> _Model:
    """``payload`` validated as ``model``; a garbage or partial payload is a ``CarbonSourceError``."""
    try:
        return model.model_validate(payload)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(part) for part in first["loc"]) or "payload"
        raise CarbonSourceError(f"{provider}: unexpected {what} payload: {where}: {first['msg']}") from exc
