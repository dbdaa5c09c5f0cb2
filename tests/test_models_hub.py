"""Downloads through huggingface_hub against a local stand-in for the Hub (127.0.0.1, no internet).

A threaded ``http.server`` answers what ``HfApi.model_info`` and ``hf_hub_download`` ask for:
``GET /api/models/ORG/NAME/revision/main?blobs=True`` (the file list with LFS SHA-256s) and
``HEAD``/``GET /ORG/NAME/resolve/main/FILE`` (``X-Repo-Commit``, ``ETag``, ``X-Linked-Etag``,
``Content-Length``, ``Range``). The files it serves are small GGUFs written with gguf's
GGUFWriter, so the real download path, progress, checksum and interruption handling run.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import signal
import socket
import subprocess
import sys
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import unquote, urlsplit

import gguf
import numpy as np
import pytest

from localpref import cli, models
from localpref.errors import ModelError
from localpref.gguf_header import read_gguf_header

COMMIT = "0123456789abcdef0123456789abcdef01234567"


def write_tiny_gguf(path: Path, *, rows: int = 512) -> bytes:
    """A valid little GGUF (one f32 tensor, a 4-token vocabulary, a ChatML template)."""
    writer = gguf.GGUFWriter(str(path), "llama")
    writer.add_name("tiny test model")
    writer.add_context_length(128)
    writer.add_embedding_length(8)
    writer.add_block_count(1)
    writer.add_head_count(2)
    writer.add_head_count_kv(1)
    writer.add_tokenizer_model("gpt2")
    writer.add_token_list(["<s>", "</s>", "a", "b"])
    writer.add_chat_template("{% for m in messages %}<|im_start|>{{ m['role'] }}{% endfor %}")
    writer.add_tensor("token_embd.weight", np.arange(rows * 8, dtype=np.float32).reshape(rows, 8))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return path.read_bytes()


@dataclass
class HubFile:
    """One file the fake Hub serves.

    ``mode``: "ok"; "cut" (the first GET stops halfway and the connection closes, a resume is
    answered 503: the server is gone); "flaky" (the first GET is cut, the resume succeeds).
    ``declared_sha256`` is what the Hub claims (defaults to the real one).
    """

    content: bytes
    declared_sha256: str | None = None
    mode: str = "ok"
    gets: int = 0

    @property
    def sha256(self) -> str:
        """The SHA-256 the Hub records for this file."""
        return self.declared_sha256 or hashlib.sha256(self.content).hexdigest()

    @property
    def git_oid(self) -> str:
        """Git's blob id of the content (what a real ETag would be for a non-LFS file)."""
        header = f"blob {len(self.content)}\0".encode()
        return hashlib.sha1(header + self.content).hexdigest()


@dataclass
class FakeHub:
    """The repositories served, and every request received (method, path, Range header)."""

    url: str = ""
    repos: dict[str, dict[str, HubFile]] = field(default_factory=dict)
    requests: list[tuple[str, str, str | None]] = field(default_factory=list)

    def add(self, repo: str, name: str, content: bytes, **options: object) -> HubFile:
        """Serve ``content`` as ``repo``/``name``."""
        hub_file = HubFile(content, **options)  # type: ignore[arg-type]
        self.repos.setdefault(repo, {})[name] = hub_file
        return hub_file

    def file_requests(self) -> list[tuple[str, str, str | None]]:
        """Requests for file contents or metadata (``/resolve/``)."""
        return [r for r in self.requests if "/resolve/" in r[1]]


class _Handler(BaseHTTPRequestHandler):
    """Answers the few Hub routes huggingface_hub uses for a single-file download."""

    protocol_version = "HTTP/1.1"
    server: _Server

    def log_message(self, format: str, *args: object) -> None:  # noqa: A002
        """Keep the test output quiet."""

    def do_HEAD(self) -> None:  # noqa: N802
        """File metadata."""
        self._serve(body=False)

    def do_GET(self) -> None:  # noqa: N802
        """File contents or the repo's file list."""
        self._serve(body=True)

    def _start(self, status: int, headers: dict[str, str], length: int) -> None:
        """Send the status line and headers of a response with ``length`` bytes of body."""
        self.send_response(status)
        for key, value in headers.items():
            self.send_header(key, value)
        self.send_header("Content-Length", str(length))
        self.end_headers()

    def _reply(self, status: int, headers: dict[str, str], body: bytes = b"") -> None:
        """A whole response (headers only for HEAD)."""
        self._start(status, headers, len(body))
        if self.command != "HEAD":
            self.wfile.write(body)

    def _error(self, status: int, code: str | None, message: str) -> None:
        """An error the way the Hub sends it (``X-Error-Code`` drives huggingface_hub)."""
        headers = {"Content-Type": "application/json", "X-Repo-Commit": COMMIT}
        if code:
            headers["X-Error-Code"] = code
            headers["X-Error-Message"] = message
        self._reply(status, headers, json.dumps({"error": message}).encode())

    def _serve(self, body: bool) -> None:
        """Route one request."""
        hub = self.server.hub
        path = unquote(urlsplit(self.path).path)
        hub.requests.append((self.command, path, self.headers.get("Range")))
        info = re.fullmatch(r"/api/models/([^/]+/[^/]+)(?:/revision/([^/]+))?", path)
        if info:
            repo = hub.repos.get(info.group(1))
            if repo is None:
                self._error(404, "RepoNotFound", "Repository not found")
                return
            siblings = [
                {
                    "rfilename": name,
                    "size": len(item.content),
                    "blobId": item.git_oid,
                    "lfs": {"sha256": item.sha256, "size": len(item.content), "pointerSize": 134},
                }
                for name, item in repo.items()
            ]
            data = {"id": info.group(1), "sha": COMMIT, "private": False, "siblings": siblings}
            self._reply(200, {"Content-Type": "application/json"}, json.dumps(data).encode())
            return
        resolve = re.fullmatch(r"/([^/]+/[^/]+)/resolve/([^/]+)/(.+)", path)
        if not resolve:
            self._error(404, None, "Not found")
            return
        repo = hub.repos.get(resolve.group(1))
        if repo is None:
            self._error(404, "RepoNotFound", "Repository not found")
            return
        item = repo.get(resolve.group(3))
        if item is None:
            self._error(404, "EntryNotFound", "Entry not found")
            return
        headers = {
            "X-Repo-Commit": COMMIT,
            "ETag": f'"{item.git_oid}"',
            "X-Linked-Etag": f'"{item.sha256}"',
            "X-Linked-Size": str(len(item.content)),
            "Accept-Ranges": "bytes",
            "Content-Type": "application/octet-stream",
        }
        if not body:  # HEAD: the headers a GET would send, no body
            self._start(200, headers, len(item.content))
            return
        item.gets += 1
        start = 0
        range_header = self.headers.get("Range")
        if range_header:
            if item.mode == "cut":
                self._error(503, None, "Service unavailable")
                return
            start = int(re.fullmatch(r"bytes=(\d+)-", range_header).group(1))  # type: ignore[union-attr]
        data = item.content[start:]
        if start:
            headers["Content-Range"] = f"bytes {start}-{len(item.content) - 1}/{len(item.content)}"
        self._start(206 if start else 200, headers, len(data))
        if item.mode in ("cut", "flaky") and item.gets == 1:
            self.wfile.write(data[: len(data) // 2])
            self.wfile.flush()
            self.close_connection = True
            self.connection.shutdown(socket.SHUT_RDWR)
            return
        self.wfile.write(data)


class _Server(ThreadingHTTPServer):
    """A threaded HTTP server carrying its FakeHub."""

    daemon_threads = True
    hub: FakeHub


def point_hub_at(monkeypatch: pytest.MonkeyPatch, url: str) -> None:
    """What setting ``HF_ENDPOINT=url`` before starting Python does.

    huggingface_hub copies HF_ENDPOINT into its constants at import time (ENDPOINT and the
    resolve-URL template); localpref reads the variable when called. Both are set, so nothing
    in a test ever reaches the real Hub.
    """
    import huggingface_hub.constants as constants

    monkeypatch.setenv("HF_ENDPOINT", url)
    monkeypatch.setattr(constants, "ENDPOINT", url)
    template = url + "/{repo_id}/resolve/{revision}/{filename}"
    monkeypatch.setattr(constants, "HUGGINGFACE_CO_URL_TEMPLATE", template)


@pytest.fixture
def hub_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An empty HF cache in tmp_path, online mode, nothing from the user's environment."""
    import huggingface_hub.constants as constants

    cache = tmp_path / "hf-cache"
    monkeypatch.setenv("HF_HUB_CACHE", str(cache))
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf-home"))
    for variable in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE", "HF_TOKEN", "HUGGINGFACE_HUB_CACHE"):
        monkeypatch.delenv(variable, raising=False)
    monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    # Small chunks, so even a small file reports progress several times.
    monkeypatch.setattr(constants, "DOWNLOAD_CHUNK_SIZE", 1024)
    return cache


@pytest.fixture
def fake_hub(hub_env: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeHub]:
    """A running fake Hub; ``HF_ENDPOINT`` (and huggingface_hub's import-time copy) point to it."""

    server = _Server(("127.0.0.1", 0), _Handler)
    hub = FakeHub(url=f"http://127.0.0.1:{server.server_address[1]}")
    server.hub = hub
    thread = threading.Thread(
        target=server.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True
    )
    thread.start()
    point_hub_at(monkeypatch, hub.url)
    try:
        yield hub
    finally:
        server.shutdown()
        server.server_close()


@pytest.fixture
def tiny(tmp_path: Path) -> bytes:
    """The bytes of a small valid GGUF (about 17 KB)."""
    return write_tiny_gguf(tmp_path / "tiny.gguf")


def write_catalog(path: Path, *, file: str, sha256: str) -> Path:
    """A one-entry catalog ``pinned`` -> ``org/pinned:FILE`` pinned to ``sha256``."""
    path.write_text(
        "[[model]]\n"
        'name = "pinned"\nrepo = "org/pinned"\nparams = "1M"\nquant = "F32"\nsize_mb = 1\n'
        'licence = "MIT"\nfamily = "tiny"\nhas_system_role = true\nchat_template = "ChatML"\n'
        f'context_length = 128\nfile = "{file}"\nsha256 = "{sha256}"\n'
    )
    return path


def _leftovers(cache: Path) -> list[Path]:
    """Blobs, partial downloads and snapshot files left in the cache."""
    return [
        p
        for p in cache.rglob("*")
        if (p.is_file() or p.is_symlink())
        and (".incomplete" in p.name or "blobs" in p.parts or "snapshots" in p.parts)
    ]


def test_download_reports_progress_checks_and_lands_in_the_cache(
    fake_hub: FakeHub, hub_env: Path, tiny: bytes
) -> None:
    fake_hub.add("org/tiny-GGUF", "tiny-Q4_1.gguf", tiny)
    fake_hub.add("org/tiny-GGUF", "tiny-Q8_0.gguf", tiny + b"")
    fake_hub.add("org/tiny-GGUF", "README.md", b"# tiny\n")
    calls: list[tuple[int, int]] = []

    path = models.resolve_model(
        "org/tiny-GGUF", filename="*Q4_1.gguf", progress=lambda d, t: calls.append((d, t))
    )

    assert path.read_bytes() == tiny
    snapshot = hub_env / "models--org--tiny-GGUF" / "snapshots" / COMMIT
    assert path == snapshot / "tiny-Q4_1.gguf"
    assert (hub_env / "models--org--tiny-GGUF" / "refs" / "main").read_text() == COMMIT
    assert path.resolve().name == hashlib.sha256(tiny).hexdigest()  # blob named by LFS SHA-256
    assert len(calls) >= 5
    done = [d for d, _ in calls]
    assert done == sorted(done) and done[-1] == len(tiny)
    assert all(total == len(tiny) for _, total in calls)
    assert read_gguf_header(path).name == "tiny test model"

    # The second time, the cache answers: no request at all reaches the Hub.
    before = len(fake_hub.requests)
    assert models.resolve_model("org/tiny-GGUF:*q4_1.gguf") == path
    assert len(fake_hub.requests) == before


def test_a_split_model_is_its_first_part_and_comes_down_whole(
    fake_hub: FakeHub, hub_env: Path, tiny: bytes
) -> None:
    """A repo publishing a model in two parts, beside a single-file quant: the pattern matches
    the model once (not once a part), every part is downloaded, checked and listed as one
    model, and removing it removes every part."""
    second = b"the second part's tensors" * 100
    fake_hub.add("org/split-GGUF", "Q4_1/tiny-Q4_1-00001-of-00002.gguf", tiny)
    fake_hub.add("org/split-GGUF", "Q4_1/tiny-Q4_1-00002-of-00002.gguf", second)
    fake_hub.add("org/split-GGUF", "tiny-Q8_0.gguf", tiny + b"")

    path = models.resolve_model("org/split-GGUF:*Q4_1*")
    snapshot = hub_env / "models--org--split-GGUF" / "snapshots" / COMMIT
    assert path == snapshot / "Q4_1" / "tiny-Q4_1-00001-of-00002.gguf"
    assert path.read_bytes() == tiny
    assert path.with_name("tiny-Q4_1-00002-of-00002.gguf").read_bytes() == second
    before = len(fake_hub.requests)
    assert models.resolve_model("org/split-GGUF:*Q4_1*") == path  # from the cache
    assert len(fake_hub.requests) == before
    listed = [(e.filename, e.size) for e in models.cached_models()
              if e.repo == "org/split-GGUF"]
    assert listed == [("Q4_1/tiny-Q4_1-00001-of-00002.gguf", len(tiny) + len(second))]

    fake_hub.add("org/torn-GGUF", "tiny-00001-of-00002.gguf", tiny)
    with pytest.raises(ModelError) as torn:
        models.resolve_model("org/torn-GGUF")
    assert str(torn.value) == ("tiny-00001-of-00002.gguf is the first part of a split model, "
                               "and org/torn-GGUF on the Hugging Face Hub lacks "
                               "tiny-00002-of-00002.gguf.")

    removed = models.remove_model("org/split-GGUF:*Q4_1*")
    assert sorted(p.name for p in removed) == ["tiny-Q4_1-00001-of-00002.gguf",
                                                "tiny-Q4_1-00002-of-00002.gguf"]
    assert not path.exists() and not path.with_name("tiny-Q4_1-00002-of-00002.gguf").exists()


def test_checksum_mismatch_is_refused_and_nothing_is_kept(
    fake_hub: FakeHub, hub_env: Path, tiny: bytes
) -> None:
    fake_hub.add("org/bad", "model.gguf", tiny, declared_sha256="ab" * 32)
    with pytest.raises(ModelError, match=r"corrupt \(SHA-256 .* instead of abababababab") as caught:
        models.resolve_model("org/bad:model.gguf")
    assert "model.gguf" in str(caught.value)
    assert _leftovers(hub_env) == []


def test_catalog_pin_differing_from_the_hub_is_refused_before_downloading(
    fake_hub: FakeHub, hub_env: Path, tiny: bytes, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    fake_hub.add("org/pinned", "pinned-Q4_1.gguf", tiny)
    catalog = write_catalog(tmp_path / "catalog.toml", file="*Q4_1.gguf", sha256="cd" * 32)
    monkeypatch.setenv("LOCALPREF_CATALOG", str(catalog))
    with pytest.raises(ModelError, match="differs from the one the catalog pins"):
        models.resolve_model("pinned")
    assert fake_hub.file_requests() == []
    assert _leftovers(hub_env) == []


def test_catalog_name_downloads_its_pattern(
    fake_hub: FakeHub, hub_env: Path, tiny: bytes, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    fake_hub.add("org/pinned", "pinned-Q4_1.gguf", tiny)
    fake_hub.add("org/pinned", "pinned-Q8_0.gguf", tiny)
    sha = hashlib.sha256(tiny).hexdigest()
    catalog = write_catalog(tmp_path / "catalog.toml", file="*q4_1.gguf", sha256=sha)
    monkeypatch.setenv("LOCALPREF_CATALOG", str(catalog))
    path = models.resolve_model("pinned")
    assert path.name == "pinned-Q4_1.gguf"
    assert models.resolve_model("pinned", download=False) == path


def test_interrupted_download_leaves_no_partial_file(
    fake_hub: FakeHub, hub_env: Path, tiny: bytes
) -> None:
    fake_hub.add("org/cut", "cut.gguf", tiny, mode="cut")
    with pytest.raises(ModelError, match="interrupted; nothing was kept"):
        models.resolve_model("org/cut")
    assert _leftovers(hub_env) == []
    assert not (hub_env / "models--org--cut" / "snapshots" / COMMIT / "cut.gguf").exists()


def test_progress_callback_can_cancel_and_nothing_is_kept(
    fake_hub: FakeHub, hub_env: Path, tiny: bytes
) -> None:
    fake_hub.add("org/stop", "stop.gguf", tiny)
    calls: list[int] = []

    def stop_at_the_third_chunk(done: int, total: int) -> None:
        calls.append(done)
        if len(calls) == 3:
            raise models.DownloadCancelled("stop")

    with pytest.raises(
        models.DownloadCancelled,
        match=r"^The download of stop\.gguf from org/stop was cancelled; nothing was kept\.$",
    ):
        models.resolve_model("org/stop", progress=stop_at_the_third_chunk)
    assert len(calls) == 3 and calls[-1] < len(tiny)
    assert _leftovers(hub_env) == []
    assert models.resolve_model("org/stop").read_bytes() == tiny  # a later try starts afresh


def test_a_download_cut_once_is_resumed_and_still_checked(
    fake_hub: FakeHub, hub_env: Path, tiny: bytes
) -> None:
    served = fake_hub.add("org/flaky", "flaky.gguf", tiny, mode="flaky")
    path = models.resolve_model("org/flaky")
    assert path.read_bytes() == tiny
    assert served.gets == 2
    assert any(r[2] and r[2].startswith("bytes=") for r in fake_hub.file_requests())


def test_missing_repo_missing_file_and_patterns(
    fake_hub: FakeHub, hub_env: Path, tiny: bytes
) -> None:
    fake_hub.add("org/many", "m-Q4_1.gguf", tiny)
    fake_hub.add("org/many", "m-Q8_0.gguf", tiny)
    with pytest.raises(
        ModelError, match=r"^The repository org/nothing was not found on the Hugging Face Hub"
    ):
        models.resolve_model("org/nothing")
    with pytest.raises(
        ModelError, match=r"No GGUF file of org/many matches '\*Q5_K_M.gguf' \(it has m-Q4_1"
    ):
        models.resolve_model("org/many", filename="*Q5_K_M.gguf")
    with pytest.raises(
        ModelError, match=r"matches 2 files of org/many on the Hub \(m-Q4_1.gguf, m-Q8_0.gguf\)"
    ):
        models.resolve_model("org/many")
    assert _leftovers(hub_env) == []


def test_file_vanishing_between_listing_and_download(
    fake_hub: FakeHub, hub_env: Path, tiny: bytes
) -> None:
    """The listing names a file the resolve endpoint no longer has: EntryNotFound, one sentence."""
    fake_hub.add("org/gone", "gone.gguf", tiny)
    original = fake_hub.repos["org/gone"]

    class Vanishing(dict):  # the listing sees the file, /resolve/ does not
        def get(self, key: str, default: object = None) -> object:
            return None

    fake_hub.repos["org/gone"] = Vanishing(original)  # type: ignore[assignment]
    with pytest.raises(
        ModelError,
        match=r"^The file gone.gguf was not found in org/gone on the Hugging Face Hub\.$",
    ):
        models.resolve_model("org/gone")


def test_no_network(hub_env: Path, monkeypatch: pytest.MonkeyPatch) -> None:

    with socket.socket() as probe:  # a port nothing listens on
        probe.bind(("127.0.0.1", 0))
        closed = f"http://127.0.0.1:{probe.getsockname()[1]}"
    point_hub_at(monkeypatch, closed)
    with pytest.raises(
        ModelError,
        match=r"^Cannot reach the Hugging Face Hub at http://127\.0\.0\.1:\d+ .*\(no network\?\)",
    ):
        models.resolve_model("org/anything:*.gguf")


def test_offline_mode_never_calls_the_hub(
    fake_hub: FakeHub, hub_env: Path, tiny: bytes, monkeypatch: pytest.MonkeyPatch
) -> None:
    fake_hub.add("org/tiny", "tiny.gguf", tiny)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(ModelError, match="HF_HUB_OFFLINE is set"):
        models.resolve_model("org/tiny")
    assert fake_hub.requests == []


def test_full_disk_is_refused_before_downloading(
    fake_hub: FakeHub, hub_env: Path, tiny: bytes, monkeypatch: pytest.MonkeyPatch
) -> None:
    import shutil
    from collections import namedtuple

    fake_hub.add("org/big", "big.gguf", tiny)
    usage = namedtuple("usage", "total used free")
    monkeypatch.setattr(shutil, "disk_usage", lambda path: usage(10**6, 10**6 - 100, 100))
    with pytest.raises(
        ModelError,
        match=r"^Not enough disk space for big.gguf: it needs 1\d\.\d KB but .* has 100 B free\.$",
    ):
        models.resolve_model("org/big")
    assert fake_hub.file_requests() == []
    assert _leftovers(hub_env) == []


@pytest.mark.skipif(not hasattr(signal, "SIGXFSZ"), reason="needs POSIX file-size limits")
def test_disk_filling_up_mid_download_keeps_nothing(
    fake_hub: FakeHub, hub_env: Path, tiny: bytes
) -> None:
    """A real write failure: the process may not write files over 4 KB (RLIMIT_FSIZE), as on a
    full disk; the pull runs in a subprocess that starts with HF_ENDPOINT set."""
    fake_hub.add("org/fill", "fill.gguf", tiny)
    code = (
        "import resource, signal, sys\n"
        "signal.signal(signal.SIGXFSZ, signal.SIG_IGN)\n"
        "hard = resource.getrlimit(resource.RLIMIT_FSIZE)[1]\n"
        "resource.setrlimit(resource.RLIMIT_FSIZE, (4096, hard))\n"
        "from localpref import cli\n"
        "sys.exit(cli.main(['models', 'pull', 'org/fill']))\n"
    )
    env = {**os.environ, "PYTHONDONTWRITEBYTECODE": "1"}
    done = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 2, done.stderr
    assert "localpref: The disk filled up while downloading fill.gguf from org/fill" in done.stderr
    assert "Traceback" not in done.stderr
    assert _leftovers(hub_env) == []


def test_pull_command_shows_progress_and_prints_the_path(
    fake_hub: FakeHub, hub_env: Path, tiny: bytes, capsys: pytest.CaptureFixture[str]
) -> None:
    fake_hub.add("org/tiny", "tiny-Q4_1.gguf", tiny)
    assert cli.main(["models", "pull", "org/tiny", "--file", "*Q4_1.gguf"]) == 0
    out, err = capsys.readouterr()
    assert Path(out.strip()).read_bytes() == tiny
    assert "Downloading org/tiny" in err and "100%" in err

    assert cli.main(["models", "list", "--json"]) == 0
    listing = json.loads(capsys.readouterr().out)
    assert [d["spec"] for d in listing["downloaded"]] == ["org/tiny:tiny-Q4_1.gguf"]
    assert listing["downloaded"][0]["size"] == len(tiny)

    assert cli.main(["models", "remove", "org/tiny:*Q4_1.gguf"]) == 0
    assert "removed" in capsys.readouterr().out
    assert _leftovers(hub_env) == []


def test_bad_pull_is_one_line_and_exit_2(
    fake_hub: FakeHub, capsys: pytest.CaptureFixture[str]
) -> None:
    assert cli.main(["models", "pull", "org/does-not-exist"]) == 2
    out, err = capsys.readouterr()
    assert out == ""
    lines = [line for line in err.splitlines() if line.strip() and "Downloading" not in line]
    assert lines == [
        "localpref: The repository org/does-not-exist was not found on the Hugging Face Hub "
        "(or it is private)."
    ]
    assert "Traceback" not in err
