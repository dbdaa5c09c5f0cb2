"""GGUF header validation: real facts from the bundled model, one sentence for every bad file."""

from __future__ import annotations

import os
import struct
import threading
from pathlib import Path

import pytest

from localpref import models
from localpref.errors import ModelError
from localpref.gguf_header import read_gguf_header, template_has_system_role

#: Bytes of the bundled model that hold its whole header and metadata (the data starts later).
HEADER_BYTES = 2_000_000


@pytest.fixture(scope="module")
def bundled() -> Path:
    """The bundled SmolLM2-135M-Instruct GGUF."""
    return models.bundled_model_path()


@pytest.fixture(scope="module")
def head(bundled: Path) -> bytes:
    """The first 2 MB of the bundled model: header, metadata, tensor descriptions, some data."""
    with open(bundled, "rb") as handle:
        return handle.read(HEADER_BYTES)


def test_bundled_header_facts(bundled: Path) -> None:
    info = read_gguf_header(bundled)
    assert info.magic_ok
    assert info.version == 3
    assert info.architecture == "llama"
    assert info.vocab_size == 49152
    assert info.tensor_count == 272
    assert info.file_type == "Q4_1"
    assert info.file_size == bundled.stat().st_size == info.expected_size
    assert (info.block_count, info.embedding_length, info.head_count, info.head_count_kv) == (
        30,
        576,
        9,
        3,
    )
    assert info.context_length == 8192
    assert info.has_chat_template and info.has_system_role is True
    assert info.tokenizer_model == "gpt2"
    assert "SmolLM" in info.metadata["tokenizer.chat_template"]
    # 30 layers x 3 KV heads x (64 + 64) dims x 2 bytes (f16)
    assert info.kv_bytes_per_token() == 23040
    summary = info.summary()
    assert summary["path"] == str(bundled) and "metadata" not in summary


def test_text_file_is_not_gguf(tmp_path: Path) -> None:
    text = tmp_path / "notes.gguf"
    text.write_text("hello, I am not a model\n")
    with pytest.raises(ModelError, match=r"notes\.gguf is not a GGUF file \(bad magic\)\.$"):
        read_gguf_header(text)


def test_empty_file_is_not_gguf(tmp_path: Path) -> None:
    empty = tmp_path / "empty.gguf"
    empty.write_bytes(b"")
    with pytest.raises(ModelError, match=r"empty\.gguf is not a GGUF file \(bad magic\)"):
        read_gguf_header(empty)


def test_git_lfs_pointer_is_named(tmp_path: Path) -> None:
    pointer = tmp_path / "model.gguf"
    pointer.write_text("version https://git-lfs.github.com/spec/v1\noid sha256:abc\nsize 12\n")
    with pytest.raises(ModelError, match="bad magic.*Git LFS pointer"):
        read_gguf_header(pointer)


def test_truncated_inside_the_metadata(tmp_path: Path, head: bytes) -> None:
    cut = tmp_path / "cut-header.gguf"
    cut.write_bytes(head[:200_000])  # inside the vocabulary array
    with pytest.raises(ModelError, match=r"cut-header\.gguf is truncated: it ends inside the GGUF"):
        read_gguf_header(cut)


def test_truncated_tensor_data(tmp_path: Path, head: bytes, bundled: Path) -> None:
    cut = tmp_path / "cut-data.gguf"
    cut.write_bytes(head)
    expected = bundled.stat().st_size
    message = rf"cut-data\.gguf is truncated: its tensors need {expected} bytes but the file has "
    with pytest.raises(ModelError, match=message + str(HEADER_BYTES)):
        read_gguf_header(cut)


@pytest.mark.parametrize("version", [1, 4, 7])
def test_unsupported_version(tmp_path: Path, head: bytes, version: int) -> None:
    bad = tmp_path / f"v{version}.gguf"
    bad.write_bytes(head[:4] + struct.pack("<I", version) + head[8:])
    with pytest.raises(
        ModelError, match=rf"v{version}\.gguf has unsupported GGUF version {version}"
    ):
        read_gguf_header(bad)


def test_big_endian_file_is_named(tmp_path: Path, head: bytes) -> None:
    bad = tmp_path / "be.gguf"
    bad.write_bytes(head[:4] + struct.pack(">I", 3) + head[8:])
    with pytest.raises(ModelError, match=r"be\.gguf is a big-endian GGUF file"):
        read_gguf_header(bad)


def test_corrupt_value_type(tmp_path: Path, head: bytes) -> None:
    (key_length,) = struct.unpack_from("<Q", head, 24)  # the first metadata key
    type_offset = 32 + key_length
    data = bytearray(head)
    data[type_offset : type_offset + 4] = struct.pack("<I", 99)
    bad = tmp_path / "corrupt.gguf"
    bad.write_bytes(bytes(data))
    with pytest.raises(
        ModelError, match=r"corrupt\.gguf has a corrupt GGUF header \(unknown value"
    ):
        read_gguf_header(bad)


@pytest.mark.parametrize("where", ["key", "token"])
def test_a_string_longer_than_any_file_is_corrupt_not_truncated(tmp_path: Path, head: bytes,
                                                                where: str) -> None:
    """A flipped high byte of a string's length made a whole-size file "truncated"."""
    data = bytearray(head)
    if where == "key":
        offset = 24  # the first metadata key's length
    else:  # the first token of the vocabulary, a string among 49,152 skipped unread
        offset = head.index(b"tokenizer.ggml.tokens") + len("tokenizer.ggml.tokens") + 4 + 4 + 8
    data[offset + 6] = 0x7F
    bad = tmp_path / "flipped.gguf"
    bad.write_bytes(bytes(data))
    with pytest.raises(ModelError, match=r"flipped\.gguf has a corrupt GGUF header \(a string "
                                         r"of \d{17} bytes\)\.$"):
        read_gguf_header(bad)


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="named pipes are POSIX")
def test_a_named_pipe_is_refused_at_once_not_waited_on(tmp_path: Path) -> None:
    """Opening a FIFO for reading waits for a writer: the check must not open it."""
    pipe = tmp_path / "pipe.gguf"
    os.mkfifo(pipe)
    outcome: list[BaseException] = []
    reader = threading.Thread(target=lambda: outcome.append(_refusal(pipe)), daemon=True)
    reader.start()
    reader.join(timeout=30)
    assert not reader.is_alive(), "read_gguf_header waited on the pipe"
    assert str(outcome[0]) == (f"{pipe} is not a regular file (a pipe, socket or device), so "
                               "not a GGUF file.")


def _refusal(path: Path) -> BaseException:
    with pytest.raises(ModelError) as refused:
        read_gguf_header(path)
    return refused.value


def test_missing_file_and_directory(tmp_path: Path) -> None:
    with pytest.raises(ModelError, match=r"^Model file .*absent\.gguf does not exist\.$"):
        read_gguf_header(tmp_path / "absent.gguf")
    with pytest.raises(ModelError, match="is a directory, not a GGUF file"):
        read_gguf_header(tmp_path)


@pytest.mark.parametrize(
    ("template", "expected"),
    [
        ("{% for m in messages %}<|im_start|>{{ m['role'] }}\n{% endfor %}", True),
        ("<|start_header_id|>system<|end_header_id|>", True),
        ("{{ message.role }}", True),
        ("<start_of_turn>user\n{{ messages[0]['content'] }}", False),
        ("{% set first_user_prefix = messages[0]['content'] %}{% if 'system' %}", False),
        ("{{ raise_exception('System role not supported') }}", False),
    ],
)
def test_system_role_heuristic(template: str, expected: bool) -> None:
    assert template_has_system_role(template) is expected
