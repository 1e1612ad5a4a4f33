"""Every error the gateway raises on purpose, in one tree.

Each class carries a stable ``code`` (what clients and logs see) and the HTTP ``status`` the API
answers with, so one handler (``gateway.rest.errors``) serves them all and a new subclass needs no
mapping. The core raises these without knowing about HTTP; the status is just a class attribute.

    GatewayError                       500 gateway_error
    ├── RequestError                   400 invalid_request      what the client sent is wrong
    │   ├── MissingFile                400 missing_file
    │   ├── InvalidMultipart           400 invalid_multipart    a form starlette refuses (too many parts, ...)
    │   ├── InvalidJson                400 invalid_json
    │   ├── InvalidTensorRequest       400 invalid_tensor_request
    │   ├── Unauthorized               401 unauthorized
    │   ├── AdminDisabled              403 admin_disabled
    │   ├── TooManyAttempts            429 too_many_attempts    failed admin attempts, for a while
    │   ├── UnknownModel               404 unknown_model
    │   ├── InvalidVersion             400 invalid_version      a model version that is not a plain number
    │   ├── RequestTimeout             408 request_timeout      the body did not arrive in time
    │   ├── PayloadTooLarge            413 payload_too_large
    │   ├── Overloaded                 429 overloaded           every request slot is taken: retry shortly
    │   ├── UnsupportedMediaType       415 unsupported_media_type
    │   ├── ImageError                 422 invalid_image        corrupt or truncated
    │   │   ├── EmptyImage             400 empty_body
    │   │   ├── ImageTooLarge          413 image_too_large      pixels, or a decompression bomb
    │   │   └── UnsupportedImage       415 unsupported_image
    │   ├── NoEligibleModel            422 no_eligible_model
    │   └── ClientClosedRequest        499 client_closed_request the client hung up before its request was read
    ├── TritonError                    502 triton_error         the inference server failed
    │   ├── InvalidTensor              400 invalid_tensor       Triton refused the inputs
    │   ├── UnknownVersion             404 unknown_version      Triton has no such version of the model
    │   ├── TritonUnavailable          503 triton_unavailable
    │   ├── ModelNotReady              503 model_not_ready
    │   └── ImageModelNotReady         503 image_model_not_ready triton.image_model names no model Triton has
    ├── CarbonSourceError              502 carbon_source_error  a provider gave no usable value
    ├── MeterError                     503 meter_error          the energy meter cannot be read
    ├── StateStoreError                503 state_store_unavailable the policy's shared state cannot be read or written
    ├── ReloadRejected                 422 pool_rejected        a new pool was refused; the old one serves
    ├── ShuttingDown                   503 shutting_down        the drain's deadline passed with the request running
    └── ConfigError                    500 invalid_config       configuration that cannot be used
        ├── PoolError                  500 invalid_pool
        ├── LabelsError                500 invalid_labels
        ├── BuildError                 500 build_failed
        └── TritonServerError          500 triton_server_failed the local tritonserver would not start

``ConfigError`` is also a ``ValueError``, as configuration problems were before the tree existed.
"""

from __future__ import annotations

from typing import ClassVar


class GatewayError(Exception):
    """The root: ``code`` and ``status`` are class-level; ``headers`` go on the HTTP answer."""

    code: ClassVar[str] = "gateway_error"
    status: ClassVar[int] = 500
    headers: ClassVar[tuple[tuple[str, str], ...]] = ()

    @property
    def detail(self) -> str:
        return str(self) or self.code


# --- the client's fault ------------------------------------------------------------------------


class RequestError(GatewayError):
    code, status = "invalid_request", 400


class MissingFile(RequestError):
    code = "missing_file"


class InvalidMultipart(RequestError):
    code = "invalid_multipart"


class InvalidJson(RequestError):
    code = "invalid_json"


class InvalidTensorRequest(RequestError):
    code = "invalid_tensor_request"


class Unauthorized(RequestError):
    code, status = "unauthorized", 401
    headers = (("WWW-Authenticate", "Bearer"),)


class AdminDisabled(RequestError):
    code, status = "admin_disabled", 403


class TooManyAttempts(RequestError):
    code, status = "too_many_attempts", 429
    headers = (("Retry-After", "60"),)


class UnknownModel(RequestError):
    code, status = "unknown_model", 404


class InvalidVersion(RequestError):
    code = "invalid_version"


class RequestTimeout(RequestError):
    code, status = "request_timeout", 408
    headers = (("Connection", "close"),)


class PayloadTooLarge(RequestError):
    code, status = "payload_too_large", 413
    headers = (("Connection", "close"),)  # the rest of the body is not read: the connection cannot be reused


class UnsupportedMediaType(RequestError):
    code, status = "unsupported_media_type", 415


class ImageError(RequestError):
    """The upload is not an image this gateway can classify."""

    code, status = "invalid_image", 422


class EmptyImage(ImageError):
    code, status = "empty_body", 400


class Overloaded(RequestError):
    code, status = "overloaded", 429
    headers = (("Retry-After", "1"),)


class ImageTooLarge(ImageError):
    code, status = "image_too_large", 413


class UnsupportedImage(ImageError):
    code, status = "unsupported_image", 415


class NoEligibleModel(RequestError):
    """No model of the pool meets the request's constraints."""

    code, status = "no_eligible_model", 422


class ClientClosedRequest(RequestError):
    """The client went away mid-request: nginx's 499, nobody's error but the client's, and nobody to answer."""

    code, status = "client_closed_request", 499


# --- what the gateway depends on -----------------------------------------------------------------

RETRY_AFTER = (("Retry-After", "5"),)


class TritonError(GatewayError):
    code, status = "triton_error", 502


class InvalidTensor(TritonError):
    """Triton rejected the inputs (shape, datatype)."""

    code, status = "invalid_tensor", 400


class UnknownVersion(TritonError):
    """Triton has the model, but not the version a request named."""

    code, status = "unknown_version", 404


class TritonUnavailable(TritonError):
    """Triton cannot be reached or timed out."""

    code, status = "triton_unavailable", 503
    headers = RETRY_AFTER


class ModelNotReady(TritonError):
    """Triton is up but the model is not loaded or not ready."""

    code, status = "model_not_ready", 503
    headers = RETRY_AFTER


class ImageModelNotReady(TritonError):
    """The model that decodes uploads in Triton is missing: no pool model would do better, so no fallback."""

    code, status = "image_model_not_ready", 503
    headers = RETRY_AFTER


class CarbonSourceError(GatewayError):
    """A source could not produce a trustworthy reading (network, HTTP status, garbage payload).

    ``retry_after`` is set when the provider asked us to wait (HTTP 429 ``Retry-After``), in seconds.
    """

    code, status = "carbon_source_error", 502

    def __init__(self, message: str, *, retry_after: float | None = None):
        super().__init__(message)
        self.retry_after = retry_after


class MeterError(GatewayError):
    code, status = "meter_error", 503


class StateStoreError(GatewayError):
    """The store of the policy's fleet-wide state (``gateway.state``) failed: down, timed out, unreadable.

    The message names the store (never its credentials) and what went wrong.
    """

    code, status = "state_store_unavailable", 503
    headers = RETRY_AFTER


class ShuttingDown(GatewayError):
    code, status = "shutting_down", 503
    headers = (("Connection", "close"),)


class ReloadRejected(GatewayError):
    """The new pool was refused; the running pool is unchanged."""

    code, status = "pool_rejected", 422


# --- configuration -------------------------------------------------------------------------------


class ConfigError(GatewayError, ValueError):
    """Configuration that cannot be used; the message says which setting or file and why."""

    code = "invalid_config"


class PoolError(ConfigError):
    """A pool file that cannot be read or does not describe a usable pool."""

    code = "invalid_pool"


class LabelsError(ConfigError):
    code = "invalid_labels"


class BuildError(ConfigError):
    code = "build_failed"


class TritonServerError(ConfigError):
    code = "triton_server_failed"


def shorten(text: str, limit: int = 64) -> str:
    """``text`` as a message may quote what a client sent: at most ``limit`` characters, and how many were cut."""
    return text if len(text) <= limit else f"{text[:limit]}... ({len(text) - limit} more characters)"
