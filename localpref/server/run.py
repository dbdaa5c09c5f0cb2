"""Starting and stopping ``localpref serve``.

The socket is bound first, so ``/health`` answers 503 while the model loads (in a thread);
once it is loaded one line goes to stdout: ``localpref: serving NAME at http://HOST:PORT/v1``.
Ctrl-C, SIGTERM or SIGHUP stops accepting connections, cancels the generations in flight
(each stream still gets its text so far and ``data: [DONE]``), waits for their responses,
frees the model and returns 0.
"""

from __future__ import annotations

import contextlib
import gc
import signal
import socket
import sys
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import uvicorn

from localpref.api import Model
from localpref.errors import SettingsError
from localpref.server.app import create_app
from localpref.server.guards import is_loopback_host
from localpref.server.state import ServerState


@dataclass(frozen=True)
class ServeSettings:
    """What ``localpref serve`` was asked for."""

    host: str = "127.0.0.1"
    port: int = 8765
    api_key: str | None = None
    cors_origins: tuple[str, ...] = ()
    #: lines for stderr once the address is bound (warnings of what the flags allow: said
    #: before a bind that failed, they were noise beside its sentence)
    bound_notices: tuple[str, ...] = ()


def bind_socket(host: str, port: int) -> socket.socket:
    """A listening TCP socket on ``host:port`` (port 0: a free one); one sentence on failure."""
    try:
        family, kind, proto, _, address = socket.getaddrinfo(
            host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)[0]
    except socket.gaierror as error:
        raise SettingsError(f"Cannot listen on host {host!r}: {error.strerror}.") from None
    except UnicodeError:  # an empty or over-long label ("a..b"): the IDNA codec refuses it
        raise SettingsError(f"Cannot listen on host {host!r}: it is not a valid host "
                            "name.") from None
    sock = socket.socket(family, kind, proto)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(address)
        sock.listen(128)
    except OSError as error:
        sock.close()
        raise SettingsError(f"Cannot listen on {host}:{port}: {error.strerror}.") from None
    sock.set_inheritable(True)
    return sock


def base_url(sock: socket.socket) -> str:
    """``http://HOST:PORT/v1`` of a bound socket (IPv6 hosts in brackets)."""
    host, port = sock.getsockname()[:2]
    shown = f"[{host}]" if ":" in host else host
    return f"http://{shown}:{port}/v1"


#: What stops a server as Ctrl-C does: SIGTERM (kill, systemd) and, where there is one, SIGHUP
#: (the terminal or SSH session it ran in closed; by default the process died at once and the
#: clients' answers were cut without a word).
STOPPING_SIGNALS = (signal.SIGINT, signal.SIGTERM,
                    *((signal.SIGHUP,) if hasattr(signal, "SIGHUP") else ()))


class LocalprefServer(uvicorn.Server):
    """uvicorn's server, whose Ctrl-C / SIGTERM / SIGHUP also cancels the generations in
    flight and which returns normally (exit 0) instead of re-raising the signal afterwards."""

    def __init__(self, config: uvicorn.Config, state: ServerState) -> None:
        super().__init__(config)
        self.state = state

    def stop(self) -> None:
        """Stop accepting, cancel what runs; safe from a signal handler or any thread."""
        self.state.shutdown()
        self.should_exit = True

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        if threading.current_thread() is not threading.main_thread():
            yield
            return

        def handle(sig: int, frame: object) -> None:
            if self.should_exit and sig == signal.SIGINT:
                self.force_exit = True
            self.stop()

        # (a SIGHUP ignored as the server started, under nohup, stays ignored: nohup is how
        # a server outlives the terminal it was started in)
        previous = {sig: signal.signal(sig, handle) for sig in STOPPING_SIGNALS
                    if sig in (signal.SIGINT, signal.SIGTERM)
                    or signal.getsignal(sig) is not signal.SIG_IGN}
        try:
            yield
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)


def make_server(sock: socket.socket, state: ServerState, settings: ServeSettings,
                log_level: str = "warning") -> LocalprefServer:
    """The uvicorn server for ``state`` on the bound ``sock``."""
    app = create_app(state, api_key=settings.api_key, cors_origins=settings.cors_origins,
                     check_host=is_loopback_host(sock.getsockname()[0]))
    config = uvicorn.Config(app, log_level=log_level, access_log=False, lifespan="off",
                            timeout_graceful_shutdown=30)
    return LocalprefServer(config, state)


def keep_out_of_collections() -> None:
    """Move every object alive now (the loaded model, the web stack, the compiled kernels:
    about 160,000 tracked objects) out of the garbage collector's reach for good
    (``gc.freeze``). A full collection otherwise walks them all while holding the GIL: one
    in 20 s of two streams stopped both for 47 ms. After the freeze it walks only what
    requests made (docs/performance.md, "A graph per run of streams, the exponential in
    fused multiply-adds, garbage collections")."""
    gc.collect()
    gc.freeze()


def serve(settings: ServeSettings, load: Callable[[], tuple[Model, str]]) -> int:
    """Bind, load with ``load()`` (-> model and its id) while answering 503, serve until
    Ctrl-C or SIGTERM; return 0. A model that fails to load raises its ``LocalprefError``."""
    sock = bind_socket(settings.host, settings.port)
    url = base_url(sock)
    state = ServerState()
    server = make_server(sock, state, settings)
    failure: list[BaseException] = []

    def loader() -> None:
        try:
            model, model_id = load()
        except BaseException as error:  # noqa: BLE001 - reported by the main thread
            failure.append(error)
            server.should_exit = True
            return
        if state.closing:
            model.close()
            return
        keep_out_of_collections()
        state.set_model(model, model_id)
        print(f"localpref: serving {model_id} at {url}", flush=True)

    for notice in settings.bound_notices:
        print(notice, file=sys.stderr)
    print(f"localpref: loading the model; listening on {url}", file=sys.stderr, flush=True)
    thread = threading.Thread(target=loader, name="localpref-load", daemon=True)
    thread.start()
    try:
        server.run(sockets=[sock])
    finally:
        state.shutdown()
        # A load still running (a download, a file that blocks) is not waited for: the thread
        # closes the model itself if it ever finishes, and dies with the process otherwise.
        thread.join(timeout=0 if state.model is None else None)
        state.wait_for_jobs()
        if state.model is not None:
            state.model.close()
        sock.close()
    if failure:
        raise failure[0]
    return 0
