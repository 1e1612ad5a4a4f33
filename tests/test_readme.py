"""The README's "Try it" commands, pasted as a reader would: each code block run against a gateway on the ports
the README names (8080 and 8081), from a directory with ``../shared/data`` beside it."""

from __future__ import annotations

import re
import socket
import subprocess
import sys

import pytest

from gateway.testing.processes import GatewayProcess
from tests.support.data import PROJECT, SHARED_DATA

README = PROJECT / "README.md"
HTTP_PORT, GRPC_PORT = 8080, 8081


def try_it_blocks() -> list[tuple[str, str]]:
    """The fenced ``sh`` and ``python`` blocks of the README's "Try it" section, with their language."""
    text = README.read_text()
    section = text[text.index("## Try it"):text.index("\n## ", text.index("## Try it") + 1)]
    return re.findall(r"```(sh|python)\n(.*?)```", section, flags=re.S)


def _free(port: int) -> bool:
    with socket.socket() as probe:
        return probe.connect_ex(("127.0.0.1", port)) != 0


def test_the_readme_has_commands_to_try():
    languages = [language for language, _ in try_it_blocks()]
    assert languages.count("sh") >= 2 and languages.count("python") >= 2


def test_every_try_it_command_works_when_pasted(triton, model_repository, tmp_path):
    if not (_free(HTTP_PORT) and _free(GRPC_PORT)):
        pytest.skip(f"ports {HTTP_PORT} and {GRPC_PORT}, which the README's commands use, are taken here")
    checkout = tmp_path / "checkout"
    checkout.mkdir()
    (tmp_path / "shared").mkdir()
    (tmp_path / "shared" / "data").symlink_to(SHARED_DATA)
    outputs = []
    with GatewayProcess("--triton", triton.grpc_url, "--repository", str(model_repository), "--grpc-port",
                        str(GRPC_PORT), port=HTTP_PORT):
        for language, block in try_it_blocks():
            command = (["bash", "-euo", "pipefail", "-c", block] if language == "sh"
                       else [sys.executable, "-c", block])
            done = subprocess.run(command, cwd=checkout, capture_output=True, text=True, timeout=120)
            assert done.returncode == 0, f"{language} block failed ({done.returncode}):\n{block}\n{done.stderr}"
            outputs.append(done.stdout)
    printed = "\n".join(outputs)
    for expected in ('"predictions"', "x-model:", '"selected_by"', '"model_name"', "resnet"):
        assert expected in printed.lower(), f"{expected!r} not in what the commands printed"
