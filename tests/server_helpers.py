"""Helpers of the server tests: a real server in this process on 127.0.0.1, the openai SDK's
client for it, and raw HTTP. ``tests/conftest.py`` loads this module as a plugin, so its
fixtures (``server``, ``client``) serve every test module that asks for them."""

from __future__ import annotations

import contextlib
import http.client
import json
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import openai
import pytest

from localpref.api import Model
from localpref.server.run import ServeSettings, base_url, bind_socket, make_server
from localpref.server.state import ServerState

MODEL_ID = "smollm2-135m-instruct"
PROMPT = "How do I keep basil alive?"


@dataclass
class RunningServer:
    url: str  # http://127.0.0.1:PORT/v1
    state: ServerState

    @property
    def port(self) -> int:
        return int(urlsplit(self.url).port or 0)


@contextlib.contextmanager
def running_server(model: Model | None, **settings: Any) -> Iterator[RunningServer]:
    """A real uvicorn server for ``model`` (None: still loading) on a free port of
    127.0.0.1, stopped afterwards."""
    sock = bind_socket("127.0.0.1", 0)
    state = ServerState()
    if model is not None:
        state.set_model(model, MODEL_ID)
    server = make_server(sock, state, ServeSettings(port=0, **settings))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 60
    while not server.started and thread.is_alive() and time.monotonic() < deadline:
        time.sleep(0.02)
    assert server.started, "the server did not start"
    try:
        yield RunningServer(base_url(sock), state)
    finally:
        server.stop()
        thread.join(60)
        state.wait_for_jobs()
        sock.close()


def sdk_client(url: str, api_key: str = "unused", **options: Any) -> openai.OpenAI:
    """The openai SDK's client for a test server: no retries (a test sees every answer as
    the server gave it), a generous timeout for a loaded machine."""
    return openai.OpenAI(base_url=url, api_key=api_key, **{"max_retries": 0, "timeout": 600,
                                                           **options})


@pytest.fixture(scope="module")
def server(model: Model) -> Iterator[RunningServer]:
    """A real server for the bundled model, shared by the tests of one module."""
    with running_server(model) as running:
        yield running


@pytest.fixture(scope="module")
def client(server: RunningServer) -> openai.OpenAI:
    """The openai SDK's client for the module's ``server``."""
    return sdk_client(server.url)


def user(text: str = PROMPT) -> list[dict[str, str]]:
    """A conversation of one user message."""
    return [{"role": "user", "content": text}]


@dataclass
class Answer:
    status: int
    headers: dict[str, str]
    text: str

    def json(self) -> Any:
        return json.loads(self.text)


def request(url: str, method: str = "GET", path: str = "", *, body: Any = None,
            raw: bytes | None = None, headers: dict[str, str] | None = None) -> Answer:
    """One HTTP request to ``url + path`` with http.client (so any Host header can be sent)."""
    parts = urlsplit(url + path)
    connection = http.client.HTTPConnection(parts.hostname, parts.port, timeout=300)
    sent = dict(headers or {})
    data = raw
    if body is not None:
        data = json.dumps(body).encode()
        sent.setdefault("Content-Type", "application/json")
    skip_host = any(name.lower() == "host" for name in sent)
    connection.putrequest(method, parts.path or "/", skip_host=skip_host)
    for name, value in sent.items():
        connection.putheader(name, value)
    if data is not None:
        connection.putheader("Content-Length", str(len(data)))
    connection.endheaders(data)
    response = connection.getresponse()
    text = response.read().decode()
    connection.close()
    return Answer(response.status, {k.lower(): v for k, v in response.getheaders()}, text)


def assert_error_shape(answer: Answer, status: int) -> dict[str, Any]:
    """The answer has ``status`` and the OpenAI error shape; returns its ``error`` object."""
    assert answer.status == status, answer.text
    assert answer.headers["content-type"].startswith("application/json")
    error = answer.json()["error"]
    assert set(error) == {"message", "type", "param", "code"}
    assert isinstance(error["message"], str) and error["message"]
    assert "Traceback" not in answer.text
    return error
