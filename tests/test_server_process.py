"""`localpref serve` as a process: it binds before loading (/health 503), prints its one line,
and Ctrl-C or SIGTERM ends it with code 0 after the streams in flight got their text and
[DONE]. Also: the library never imports the web stack, and the loaded server's objects are kept
out of garbage collections."""

from __future__ import annotations

import gc
import http.client
import json
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
import weakref
from pathlib import Path
from typing import Any

import pytest
from server_helpers import request

from localpref.errors import SettingsError
from localpref.server.run import keep_out_of_collections

ROOT = Path(__file__).resolve().parent.parent
LISTENING = re.compile(r"listening on (http://127\.0\.0\.1:\d+/v1)$")
SERVING = re.compile(r"^localpref: serving smollm2-135m-instruct at (http://127\.0\.0\.1:(\d+)/v1)$")


def start(*flags: str, api_key: str | None = None,
          extra_env: dict[str, str] | None = None, **popen: Any) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": str(ROOT), **(extra_env or {})}
    env.pop("LOCALPREF_API_KEY", None)
    if api_key is not None:
        env["LOCALPREF_API_KEY"] = api_key
    return subprocess.Popen([sys.executable, "-m", "localpref.cli", "serve", "--port", "0",
                             "--parallel", "1", *flags], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=env, cwd=ROOT, **popen)


def listening_url(process: subprocess.Popen) -> str:
    line = process.stderr.readline().strip()
    match = LISTENING.search(line)
    assert match, line
    return match.group(1)


def test_the_library_never_imports_the_web_stack() -> None:
    code = ("import sys, localpref, localpref.cli; localpref.cli.build_parser(); "
            "print(sorted(m for m in ('fastapi', 'uvicorn', 'starlette', 'localpref.server') "
            "if m in sys.modules))")
    output = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            check=True, cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert output.stdout.strip() == "[]"


class SilentHub:
    """A Hugging Face Hub that takes every connection and answers none: a model download
    that waits (for the client's timeout) until ``close`` drops them all."""

    def __init__(self) -> None:
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self.listener.getsockname()[1]}"
        self.held: list[socket.socket] = []
        threading.Thread(target=self._take, daemon=True).start()

    def _take(self) -> None:
        while True:
            try:
                self.held.append(self.listener.accept()[0])
            except OSError:  # closed
                return

    def close(self) -> None:
        self.listener.close()
        for connection in self.held:
            connection.close()


@pytest.mark.parametrize("ending", ["failed load", "ctrl-c"])
def test_health_is_503_while_the_model_loads(ending: str) -> None:
    hub = SilentHub()  # the download waits on it: a load that takes its time
    process = start("--model", "acme/tiny-GGUF:*.gguf",
                    extra_env={"HF_ENDPOINT": hub.url, "HF_HUB_OFFLINE": "0"})
    try:
        url = listening_url(process)
        health = request(url.removesuffix("/v1"), "GET", "/health")
        assert (health.status, health.json()) == (503, {"status": "loading"})
        assert int(health.headers["retry-after"]) > 0
        models = request(url, "GET", "/models")
        assert models.status == 503 and models.json()["error"]["code"] == "model_loading"
        if ending == "failed load":
            hub.close()
            out, err = process.communicate(timeout=120)
            assert process.returncode == 2
            last = err.strip().splitlines()[-1]
            assert last == (f"localpref: Cannot reach the Hugging Face Hub at {hub.url} to "
                            "download acme/tiny-GGUF (no network?).")
        else:
            process.send_signal(signal.SIGINT)
            out, err = process.communicate(timeout=120)
            assert process.returncode == 0
        assert out == "" and "Traceback" not in err
    finally:
        hub.close()
        if process.poll() is None:
            process.kill()
            process.wait()


@pytest.mark.parametrize("stop", [signal.SIGTERM, signal.SIGHUP])
def test_sigterm_or_sighup_ends_streams_with_their_text_then_done_and_exits_0(stop) -> None:
    """SIGHUP (the terminal or SSH session closed) killed the server at once: streams cut
    without a finish or ``[DONE]``, a waiting client's connection dropped, exit 129."""
    process = start(api_key="from-the-environment")
    try:
        listening_url(process)
        line = process.stdout.readline().rstrip("\n")
        match = SERVING.match(line)
        assert match, line
        url, port = match.group(1), int(match.group(2))
        health = request(url.removesuffix("/v1"), "GET", "/health")
        assert (health.status, health.json()) == (200, {"status": "ok"})
        assert request(url, "GET", "/models").status == 401  # LOCALPREF_API_KEY is the key
        connection = http.client.HTTPConnection("127.0.0.1", port, timeout=300)
        connection.request("POST", "/v1/chat/completions", body=json.dumps({
            "model": "smollm2-135m-instruct:amulet:verbose", "stream": True, "max_tokens": 500,
            "messages": [{"role": "user", "content": "Write a long story about a fox."}]}),
            headers={"Content-Type": "application/json",
                     "Authorization": "Bearer from-the-environment"})
        response = connection.getresponse()
        assert response.status == 200
        assert response.getheader("content-type").startswith("text/event-stream")
        frames: list[str] = []
        text = ""
        while not text:  # read until the first piece of text has arrived
            frame = response.readline().decode().strip()
            if frame.startswith("data: {"):
                frames.append(frame)
                text += json.loads(frame[6:])["choices"][0]["delta"].get("content") or ""
        queued: list = [None, None]  # both lanes are the story's: these wait in the queue
        sent = [threading.Event(), threading.Event()]

        def ask(index: int) -> None:
            waiting = http.client.HTTPConnection("127.0.0.1", port, timeout=300)
            waiting.request("POST", "/v1/chat/completions", body=json.dumps({
                "model": "smollm2-135m-instruct", "stream": index == 1, "max_tokens": 8,
                "messages": [{"role": "user", "content": "What is the capital of France?"}]}),
                headers={"Content-Type": "application/json",
                         "Authorization": "Bearer from-the-environment"})
            sent[index].set()
            answer = waiting.getresponse()
            queued[index] = (answer.status, answer.getheader("Retry-After"),
                             json.loads(answer.read()))

        askers = [threading.Thread(target=ask, args=(index,)) for index in range(2)]
        for asker in askers:
            asker.start()
        assert all(event.wait(60) for event in sent)
        time.sleep(0.5)  # sent: the server reads them from its socket and queues them
        process.send_signal(stop)
        rest = [line.decode().strip() for line in response]
        frames += [line for line in rest if line]
        assert frames[-1] == "data: [DONE]"
        chunks = [json.loads(frame[6:]) for frame in frames[:-1]]
        finish = chunks[-1]
        assert finish["choices"][0]["finish_reason"] == "length"  # cut short, not ended
        assert finish["localpref"]["stats"]["stop_reason"] == "cancelled"
        written = "".join(c["choices"][0]["delta"].get("content") or "" for c in chunks)
        assert written.startswith(text) and finish["localpref"]["stats"]["n_tokens"] < 500
        for asker in askers:
            asker.join(120)
        for status, retry_after, body in queued:  # never an empty 200 taken as the answer
            assert (status, body["error"]["code"]) == (503, "shutting_down") and retry_after
            assert body["error"]["message"] == "The server is shutting down."
        out, err = process.communicate(timeout=120)
        assert process.returncode == 0, err
        assert out == "" and "Traceback" not in err
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()


@pytest.mark.parametrize(("flags", "sentence"), [
    (["--parallel", "0"], "--parallel must be from 1 to 128 (two lanes each, of the "
                          "256 a llama.cpp context holds) (got 0)."),
    (["--parallel", "1000"], "--parallel must be from 1 to 128 (two lanes each, of the "
                             "256 a llama.cpp context holds) (got 1000)."),
    (["--port", "70000"], "--port must be between 0 and 65535 (got 70000)."),
    (["--threads", "0"], "--threads must be from 1 to 512, llama.cpp's most (got 0)."),
    (["--api-key", ""], "The API key (--api-key or $LOCALPREF_API_KEY) is empty; give one, or "
                        "leave it out to serve without a key."),
    # a key read from a file ends in a newline: taken, and every request was then a 401
    (["--api-key", "key\n"], "The API key (--api-key or $LOCALPREF_API_KEY) holds a space, a "
                             "line break or a control character, which no client sends in its "
                             "Authorization header; remove it."),
    (["--host", "bogus..host", "--api-key", "k"], "Cannot listen on host 'bogus..host': it is "
                                                  "not a valid host name."),  # (a traceback)
    # accepted, a path or a missing scheme could never match a browser's Origin
    (["--cors-origin", "http://a.example/app"], "--cors-origin takes an origin such as "
     "http://localhost:3000 (a scheme, a host and a port where it is not the default, nothing "
     "after; null for file:// pages), or *; not 'http://a.example/app'."),
    (["--cors-origin", "localhost:3000"], "--cors-origin takes an origin such as "
     "http://localhost:3000 (a scheme, a host and a port where it is not the default, nothing "
     "after; null for file:// pages), or *; not 'localhost:3000'."),
    (["--cors-origin", "http://[::1"], "--cors-origin takes an origin such as "
     "http://localhost:3000 (a scheme, a host and a port where it is not the default, nothing "
     "after; null for file:// pages), or *; not 'http://[::1'."),  # (was a traceback)
])
def test_bad_flags_exit_2_with_one_sentence(capsys, flags, sentence) -> None:
    from localpref.cli import main

    assert main(["serve", *flags]) == 2
    assert capsys.readouterr().err == f"localpref: {sentence}\n"


def test_a_port_in_use_exits_2_with_one_sentence(capsys) -> None:
    import socket

    from localpref.cli import main

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        assert main(["serve", "--port", str(port)]) == 2
        assert capsys.readouterr().err == (
            f"localpref: Cannot listen on 127.0.0.1:{port}: Address already in use.\n")
        # what the flags allow is warned of once the address is bound, not before a failure
        assert main(["serve", "--port", str(port), "--cors-origin", "*"]) == 2
    assert capsys.readouterr().err == (
        f"localpref: Cannot listen on 127.0.0.1:{port}: Address already in use.\n")


def test_the_loaded_server_keeps_its_objects_out_of_collections_but_collects_new_cycles(
) -> None:
    class Node:
        def __init__(self) -> None:
            self.other: Node | None = None

    loaded = Node()
    loaded.other = loaded  # a cycle alive at load time: the collector's walk would visit it
    frozen_before = gc.get_freeze_count()
    try:
        keep_out_of_collections()
        assert gc.get_freeze_count() > frozen_before
        assert not any(thing is loaded for thing in gc.get_objects())
        made_later = Node()
        made_later.other = made_later
        watch = weakref.ref(made_later)
        del made_later
        assert watch() is not None  # only a collection frees a cycle
        gc.collect()
        assert watch() is None  # a request's garbage is still collected
    finally:
        gc.unfreeze()


def _ask(url: str, system: str, question: str, tokens: int) -> tuple[list[float], int]:
    answer = request(url, "POST", "/chat/completions", body={
        "model": "smollm2-135m-instruct", "max_tokens": tokens, "logprobs": True,
        "messages": [{"role": "system", "content": system},
                     {"role": "user", "content": question}]}).json()
    return ([entry["logprob"] for entry in answer["choices"][0]["logprobs"]["content"]],
            answer["usage"]["prompt_tokens_details"]["cached_tokens"])


def test_without_the_prompt_cache_an_answer_does_not_depend_on_what_was_served_before() -> None:
    """A long prompt's cells, computed by llama.cpp's tiled attention (64 rows or more), would
    be reused by the next prompt that starts the same way and round its logits differently;
    --no-prompt-cache evaluates every prompt whole."""
    system = "You are a helpful assistant who answers in plain words."
    process = start("--no-prompt-cache")
    try:
        listening_url(process)
        url = SERVING.match(process.stdout.readline().rstrip("\n")).group(1)
        fresh, cached = _ask(url, system, "Describe rain.", 8)
        assert cached == 0
        _ask(url, system, "Tell me about " + "rivers, seas and lakes, " * 20, 2)  # 100+ rows
        again, cached = _ask(url, system, "Describe rain.", 8)
        assert cached == 0 and again == fresh
    finally:
        process.send_signal(signal.SIGTERM)
        process.wait(60)


def test_a_cors_origin_is_written_as_browsers_send_it() -> None:
    """``http://a.example/``, copied from the address bar, was taken as given and never
    matched the ``Origin`` a browser sends (no slash, lower case, no default port)."""
    from localpref.server.guards import checked_origin

    assert checked_origin(" HTTP://A.example/ ") == "http://a.example"
    assert checked_origin("https://x.example:443") == "https://x.example"
    assert checked_origin("http://localhost:3000") == "http://localhost:3000"
    assert checked_origin("http://[::1]:8080") == "http://[::1]:8080"
    assert checked_origin("*") == "*"
    assert checked_origin("null") == "null"  # a file:// page's, a sandboxed frame's
    assert checked_origin("http://a.example:08080") == "http://a.example:8080"
    assert checked_origin("http://a.example:") == "http://a.example"
    assert checked_origin("http://[2001:DB8::1]:3000") == "http://[2001:db8::1]:3000"
    for not_ipv6 in ("http://[::1]]", "http://[v1.fe]"):  # rewritten into another host
        with pytest.raises(SettingsError, match="for an IPv6 address"):
            checked_origin(not_ipv6)


def test_a_server_started_with_sighup_ignored_outlives_one() -> None:
    """Under nohup (SIGHUP ignored from the start) the server's SIGHUP handler replaced the
    ignore, and closing the terminal stopped the server nohup was there to keep."""
    process = start(preexec_fn=lambda: signal.signal(signal.SIGHUP, signal.SIG_IGN))
    try:
        listening_url(process)
        url = SERVING.match(process.stdout.readline().rstrip("\n")).group(1)
        process.send_signal(signal.SIGHUP)
        time.sleep(1)
        assert process.poll() is None
        assert request(url.removesuffix("/v1"), "GET", "/health").status == 200
    finally:
        process.send_signal(signal.SIGTERM)
        process.communicate(timeout=120)
    assert process.returncode == 0


@pytest.mark.parametrize(("flags", "warned"), [
    (("--host", "0.0.0.0"), True), (("--host", "0.0.0.0", "--api-key", "k"), False),
    (("--host", "localhost"), False)])
def test_serving_beyond_this_machine_without_a_key_is_warned_of(flags, warned) -> None:
    """docs/server.md, "Safety": another address needs a key; without one, a line says so
    (the model here does not exist, so the server ends after binding)."""
    process = start(*flags, "--model", "/nonexistent/model.gguf")
    _, err = process.communicate(timeout=120)
    assert process.returncode == 2
    warning = ("localpref: warning: serving on 0.0.0.0 without an API key: anyone who can "
               "reach this address can use the model; give --api-key KEY (or "
               "$LOCALPREF_API_KEY).")
    assert (err.splitlines()[0] == warning) is warned
    assert err.strip().endswith("Model file /nonexistent/model.gguf does not exist.")


@pytest.mark.parametrize(("flags", "warned"), [
    (("--cors-origin", "*"), "*"), (("--cors-origin", "*", "--api-key", "k"), None),
    (("--cors-origin", "null"), "null"), (("--cors-origin", "http://localhost:3000"), None)])
def test_any_origin_without_a_key_is_warned_of(flags, warned) -> None:
    """``--cors-origin *`` lets every web page the user opens call the model, and so does
    ``null``, which any page can send from a sandboxed frame."""
    process = start(*flags, "--model", "/nonexistent/model.gguf")
    _, err = process.communicate(timeout=120)
    assert process.returncode == 2
    warning = (f"localpref: warning: --cors-origin {warned} without an API key: any web page "
               "open in a browser on this machine can use the model; name the page's origin, "
               "or give --api-key KEY (or $LOCALPREF_API_KEY).")
    assert (err.splitlines()[0] == warning) is (warned is not None)
