"""The error tree: every class has its own code and an HTTP status, and one handler serves any subclass."""

import httpx
from fastapi import FastAPI

from gateway import errors
from gateway.rest.errors import install_error_handlers


def every_error() -> list[type[errors.GatewayError]]:
    found, stack = [], [errors.GatewayError]
    while stack:
        cls = stack.pop()
        found.append(cls)
        stack.extend(cls.__subclasses__())
    return found


def test_codes_are_unique_and_statuses_are_http_errors():
    classes = [cls for cls in every_error() if cls.__module__ == "gateway.errors"]
    assert len(classes) >= 25
    codes = [cls.code for cls in classes]
    assert len(codes) == len(set(codes)), sorted(c for c in codes if codes.count(c) > 1)
    assert all(400 <= cls.status < 600 for cls in classes)
    triton_says_the_client_is_wrong = (errors.InvalidTensor, errors.UnknownVersion)
    assert all(issubclass(cls, errors.RequestError) == (cls.status < 500) for cls in classes
               if cls not in triton_says_the_client_is_wrong and not issubclass(cls, errors.ReloadRejected))


def test_the_docstring_draws_every_class():
    drawn = errors.__doc__ or ""
    missing = [cls.__name__ for cls in every_error()
               if cls.__module__ == "gateway.errors" and cls.__name__ not in drawn]
    assert not missing


async def test_a_new_subclass_needs_no_mapping_to_be_answered():
    class TeapotError(errors.RequestError):
        code, status = "teapot", 418
        headers = (("X-Brew", "no"),)

    app = FastAPI()
    install_error_handlers(app)

    @app.get("/brew")
    async def brew() -> None:
        raise TeapotError("short and stout")

    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://test") as client:
        response = await client.get("/brew")
    assert response.status_code == 418 and response.headers["x-brew"] == "no"
    assert response.json() == {"error": "teapot", "detail": "short and stout"}
