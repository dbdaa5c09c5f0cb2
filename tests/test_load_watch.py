"""What a model load says: llama.cpp's reason for a failed load in one sentence, and Ctrl-C
during a load stops it (Python raises KeyboardInterrupt inside llama.cpp's callbacks, where
ctypes would print and drop it, and the load would go on)."""

from __future__ import annotations

import os
import shutil
import signal
from pathlib import Path

import gguf
import pytest

from localpref import cli
from localpref.engine import LoadedModel
from localpref.interrupt_hold import interrupt_held
from localpref.llama_log import loading


def test_ctrl_c_during_a_load_stops_it_and_reaches_the_caller(
        bundled_path: Path, capfd: pytest.CaptureFixture[str]) -> None:
    """A timer's handler (run by Python inside llama.cpp's callbacks) presses Ctrl-C once the
    load has begun, as a user would: the load stops and KeyboardInterrupt reaches the
    caller; before, it was printed and dropped, and the load went on."""
    pressed: list[bool] = []

    def press(signum: int, frame: object) -> None:
        if loading() and not pressed:
            pressed.append(True)
            os.kill(os.getpid(), signal.SIGINT)


    # Python's own Ctrl-C handler, as in a terminal (a background run inherits SIGINT ignored)
    interactive = signal.signal(signal.SIGINT, signal.default_int_handler)
    previous = signal.signal(signal.SIGALRM, press)
    signal.setitimer(signal.ITIMER_REAL, 0.0005, 0.0005)
    try:
        with pytest.raises(KeyboardInterrupt):
            LoadedModel(bundled_path)
        assert signal.getsignal(signal.SIGINT) is signal.default_int_handler  # put back
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)
        signal.signal(signal.SIGINT, interactive)
    assert pressed and not loading()
    assert "Exception ignored" not in capfd.readouterr().err
    again = LoadedModel(bundled_path)  # the next load is not taken for interrupted
    assert again.n_params > 0
    again.close()


def test_a_load_llama_cpp_refuses_says_its_reason_in_one_sentence(
        bundled_path: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    unknown = tmp_path / "unknown-architecture.gguf"
    shutil.copyfile(bundled_path, unknown)
    reader = gguf.GGUFReader(str(unknown), "r+")
    field = reader.fields["general.architecture"]
    field.parts[field.data[0]][:] = list(b"zzzzz")  # "llama", as long
    del reader
    code = cli.main(["generate", "Hi", "--model", str(unknown), "--threads", "1"])
    out, err = capsys.readouterr()
    assert code == 2 and out == ""
    assert err.strip().splitlines() == [
        f"localpref: llama.cpp could not load {unknown}: unknown model architecture: 'zzzzz' "
        "(llama-cpp-python 0.3.36's llama.cpp does not know it)."]


def test_a_held_ctrl_c_comes_once_the_block_is_left() -> None:
    """Inside ``interrupt_held`` (creating a context, initialising llama.cpp: calls that log as
    they go) a Ctrl-C is marked, not raised; it reaches the caller as the block ends, and the
    handler that was in place is back."""
    interactive = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        with pytest.raises(KeyboardInterrupt):
            with interrupt_held() as held:
                os.kill(os.getpid(), signal.SIGINT)
                for _ in range(1000):  # Python runs the handler here: it only marks
                    pass
                assert held.interrupted
                reached = True
        assert reached and signal.getsignal(signal.SIGINT) is signal.default_int_handler
        with interrupt_held() as held:  # none came: nothing is raised
            pass
        assert not held.interrupted
        signal.signal(signal.SIGINT, signal.SIG_IGN)  # ignored stays ignored
        with interrupt_held() as held:
            os.kill(os.getpid(), signal.SIGINT)
        assert not held.interrupted
        signal.signal(signal.SIGINT, signal.default_int_handler)
        with pytest.raises(KeyboardInterrupt) as caught:  # a block that fails keeps it too
            with interrupt_held():
                os.kill(os.getpid(), signal.SIGINT)
                raise FileNotFoundError("the block's own error")
        assert isinstance(caught.value.__context__, FileNotFoundError)
    finally:
        signal.signal(signal.SIGINT, interactive)


def test_a_sigterm_during_a_load_stops_it_and_exits_143(
        bundled_path: Path, capfd: pytest.CaptureFixture[str]) -> None:
    """Under ``terminate_as_exit`` (bench, batch) a SIGTERM landing in a load's callbacks was
    dropped by ctypes: the load went on (or failed as a corrupt file) and, the handler being
    spent, SIGTERM was ignored for good. It is held like Ctrl-C and becomes the exit."""
    from localpref.commands.interrupt import TERMINATED_EXIT, terminate_as_exit

    sent: list[bool] = []

    def terminate(signum: int, frame: object) -> None:
        if loading() and not sent:
            sent.append(True)
            os.kill(os.getpid(), signal.SIGTERM)

    before = signal.getsignal(signal.SIGTERM)
    previous = signal.signal(signal.SIGALRM, terminate)
    signal.setitimer(signal.ITIMER_REAL, 0.0005, 0.0005)
    try:
        with pytest.raises(SystemExit) as stopped, terminate_as_exit():
            LoadedModel(bundled_path)
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)
        signal.signal(signal.SIGINT, signal.default_int_handler)
        signal.signal(signal.SIGTERM, before)
    assert sent and not loading() and stopped.value.code == TERMINATED_EXIT
    assert "Exception ignored" not in capfd.readouterr().err


def test_a_held_sigterm_comes_once_the_block_is_left_and_only_when_python_handles_it() -> None:
    before = signal.getsignal(signal.SIGTERM)

    def exit_(signum: int, frame: object) -> None:
        raise SystemExit(143)

    signal.signal(signal.SIGTERM, exit_)
    try:
        with pytest.raises(SystemExit):
            with interrupt_held() as held:
                os.kill(os.getpid(), signal.SIGTERM)
                for _ in range(1000):  # the handler runs here: it only marks
                    pass
                assert held.interrupted and held.signals == [signal.SIGTERM]
        assert signal.getsignal(signal.SIGTERM) is exit_
        signal.signal(signal.SIGTERM, signal.SIG_IGN)  # not Python's: left as it is
        with interrupt_held() as held:
            os.kill(os.getpid(), signal.SIGTERM)
        assert not held.interrupted and signal.getsignal(signal.SIGTERM) is signal.SIG_IGN
    finally:
        signal.signal(signal.SIGTERM, before)


def test_a_ctrl_c_while_amulets_kernel_compiles_is_not_dropped(monkeypatch) -> None:
    """Every command builds an Amulet for its help; the first call of its kernel compiles it
    or loads it through llvmlite's callbacks, where ctypes dropped a Ctrl-C ("Exception
    ignored on calling ctypes callback function") and a batch run in its first second went on
    to the end. Here the kernel's stand-in takes the Ctrl-C inside a C library's callback."""
    import ctypes

    from localpref import methods

    libc = ctypes.CDLL(None)
    compare = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.c_void_p, ctypes.c_void_p)

    def in_a_callback(*_: object) -> float:
        def interrupted(a: int, b: int) -> int:
            signal.raise_signal(signal.SIGINT)  # arrives while C code calls back
            for _ in range(1000):  # (Python runs the handler here, inside the callback)
                pass
            return 0
        values = (ctypes.c_int * 2)(2, 1)
        libc.qsort(values, 2, ctypes.sizeof(ctypes.c_int), compare(interrupted))
        return 0.25

    monkeypatch.setattr(methods.kernels, "amulet_contrast", in_a_callback)
    interactive = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        with pytest.raises(KeyboardInterrupt):
            methods._amulet_contrast.__wrapped__(2.0, 2.0, 10.0, 61)
    finally:
        signal.signal(signal.SIGINT, interactive)
