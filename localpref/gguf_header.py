"""Read and check a GGUF file's header before llama.cpp ever sees the file.

Only the header, the metadata key/value section and the tensor descriptions are read, through a
read-only memory map with plain ``struct``: the tensor data is never touched, so checking a
multi-gigabyte file costs a few milliseconds. The vocabulary lives in the metadata as arrays of
strings; those arrays are skipped (their length is all that is kept) without building Python
objects for their elements.

Anything wrong (not a GGUF, a version llama.cpp cannot read, a truncated file, a corrupt header)
raises :class:`~localpref.errors.ModelError` with one sentence naming the file, so a corrupt
download never reaches llama.cpp and never crashes the process.
"""

from __future__ import annotations

import mmap
import os
import re
import struct
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from localpref.errors import ModelError
from localpref.paths import expanded
from localpref.split_files import check_parts, is_later_part

#: The four bytes every GGUF file starts with.
GGUF_MAGIC = b"GGUF"
#: GGUF versions the llama.cpp in llama-cpp-python 0.3.x reads (version 1 support was removed).
SUPPORTED_VERSIONS = (2, 3)
#: Tensor data alignment when the file does not set ``general.alignment``.
DEFAULT_ALIGNMENT = 32

# Metadata value types (gguf.h: enum gguf_type).
_UINT8, _INT8, _UINT16, _INT16, _UINT32, _INT32, _FLOAT32, _BOOL, _STRING, _ARRAY = range(10)
_UINT64, _INT64, _FLOAT64 = 10, 11, 12

#: struct format of each fixed-size metadata value type.
_SCALAR_FORMATS: dict[int, struct.Struct] = {
    _UINT8: struct.Struct("<B"),
    _INT8: struct.Struct("<b"),
    _UINT16: struct.Struct("<H"),
    _INT16: struct.Struct("<h"),
    _UINT32: struct.Struct("<I"),
    _INT32: struct.Struct("<i"),
    _FLOAT32: struct.Struct("<f"),
    _BOOL: struct.Struct("<?"),
    _UINT64: struct.Struct("<Q"),
    _INT64: struct.Struct("<q"),
    _FLOAT64: struct.Struct("<d"),
}

_U32 = struct.Struct("<I")
_U64 = struct.Struct("<Q")

#: ggml tensor types: id -> (name, elements per block, bytes per block). From ggml.h / gguf-py.
GGML_TYPES: dict[int, tuple[str, int, int]] = {
    0: ("F32", 1, 4),
    1: ("F16", 1, 2),
    2: ("Q4_0", 32, 18),
    3: ("Q4_1", 32, 20),
    6: ("Q5_0", 32, 22),
    7: ("Q5_1", 32, 24),
    8: ("Q8_0", 32, 34),
    9: ("Q8_1", 32, 40),
    10: ("Q2_K", 256, 84),
    11: ("Q3_K", 256, 110),
    12: ("Q4_K", 256, 144),
    13: ("Q5_K", 256, 176),
    14: ("Q6_K", 256, 210),
    15: ("Q8_K", 256, 292),
    16: ("IQ2_XXS", 256, 66),
    17: ("IQ2_XS", 256, 74),
    18: ("IQ3_XXS", 256, 98),
    19: ("IQ1_S", 256, 50),
    20: ("IQ4_NL", 32, 18),
    21: ("IQ3_S", 256, 110),
    22: ("IQ2_S", 256, 82),
    23: ("IQ4_XS", 256, 136),
    24: ("I8", 1, 1),
    25: ("I16", 1, 2),
    26: ("I32", 1, 4),
    27: ("I64", 1, 8),
    28: ("F64", 1, 8),
    29: ("IQ1_M", 256, 56),
    30: ("BF16", 1, 2),
    34: ("TQ1_0", 256, 54),
    35: ("TQ2_0", 256, 66),
    39: ("MXFP4", 32, 17),
}

#: llama.cpp's ``general.file_type`` (enum llama_ftype) -> the quantization name users know.
FILE_TYPES: dict[int, str] = {
    0: "F32",
    1: "F16",
    2: "Q4_0",
    3: "Q4_1",
    7: "Q8_0",
    8: "Q5_0",
    9: "Q5_1",
    10: "Q2_K",
    11: "Q3_K_S",
    12: "Q3_K_M",
    13: "Q3_K_L",
    14: "Q4_K_S",
    15: "Q4_K_M",
    16: "Q5_K_S",
    17: "Q5_K_M",
    18: "Q6_K",
    19: "IQ2_XXS",
    20: "IQ2_XS",
    21: "Q2_K_S",
    22: "IQ3_XS",
    23: "IQ3_XXS",
    24: "IQ1_S",
    25: "IQ4_NL",
    26: "IQ3_S",
    27: "IQ3_M",
    28: "IQ2_S",
    29: "IQ2_M",
    30: "IQ4_XS",
    31: "IQ1_M",
    32: "BF16",
    36: "TQ1_0",
    37: "TQ2_0",
    38: "MXFP4_MOE",
}

#: A template that prints each message's role verbatim (ChatML-style) accepts any role.
_GENERIC_ROLE = re.compile(r"\{\{[^}]*(\[\s*['\"]role['\"]\s*\]|\.role\b)[^}]*\}\}")

#: Sanity limits: a header claiming more than this is corrupt, not merely large.
_MAX_COUNT = 1 << 24
#: A string claiming more bytes than this is corrupt (a chat template or a token is kilobytes),
#: not the end of a truncated file.
_MAX_STRING = 1 << 30
#: Strings longer than this are not kept in ``GGUFInfo.metadata`` (only the chat template is).
_MAX_KEPT_STRING = 512


@dataclass(frozen=True)
class GGUFInfo:
    """What a GGUF file's header says about the model inside it.

    ``magic_ok`` is always True on a returned object (a bad magic raises); it is kept so the
    facts can be shown as they were checked. Fields the file does not record are None.
    """

    path: Path
    magic_ok: bool
    version: int
    file_size: int
    #: the model's tensors: every part's for a split model (its ``split.tensors.count``)
    tensor_count: int
    metadata_count: int
    architecture: str | None
    name: str | None
    vocab_size: int | None
    file_type: str | None
    tokenizer_model: str | None
    context_length: int | None
    embedding_length: int | None
    block_count: int | None
    head_count: int | None
    head_count_kv: int | None
    key_length: int | None
    value_length: int | None
    has_chat_template: bool
    has_system_role: bool | None
    alignment: int
    data_offset: int
    expected_size: int | None
    metadata: dict[str, Any] = field(default_factory=dict, repr=False, compare=False)

    def kv_bytes_per_token(self, bytes_per_element: int = 2) -> int | None:
        """Bytes of K and V cache one token needs across all layers (f16 cache by default).

        None when the header lacks the layer count or the attention shape.
        """
        if not self.block_count or not self.head_count_kv:
            return None
        head_dim = None
        if self.embedding_length and self.head_count:
            head_dim = self.embedding_length // self.head_count
        key = self.key_length or head_dim
        value = self.value_length or head_dim
        if not key or not value:
            return None
        return self.block_count * self.head_count_kv * (key + value) * bytes_per_element

    def summary(self) -> dict[str, Any]:
        """The facts as a JSON-ready dict (no raw metadata)."""
        facts = asdict(self)
        facts.pop("metadata")
        facts["path"] = str(self.path)
        return facts


def read_gguf_header(path: str | os.PathLike[str]) -> GGUFInfo:
    """Read and validate the header of the GGUF file at ``path``.

    Checks the magic, the version (2 or 3), the integrity of every metadata entry and tensor
    description, that the file is long enough for the tensors it describes, and that it names
    an architecture. Raises :class:`ModelError` with one sentence naming the file otherwise.
    """
    file_path = expanded(path)
    try:
        if file_path.exists() and not file_path.is_file() and not file_path.is_dir():
            # opening a named pipe waits for a writer: say what it is instead
            raise ModelError(f"{file_path} is not a regular file (a pipe, socket or device), "
                             "so not a GGUF file.")
        with open(file_path, "rb") as handle:
            size = os.fstat(handle.fileno()).st_size
            if size < 4:
                head = handle.read(4)
                if GGUF_MAGIC.startswith(head) and head:
                    raise ModelError(f"{file_path} is truncated: it ends inside the GGUF header.")
                raise ModelError(f"{file_path} is not a GGUF file (bad magic).")
            with mmap.mmap(handle.fileno(), 0, access=mmap.ACCESS_READ) as buffer:
                return _parse(file_path, buffer, size)
    except FileNotFoundError:
        raise ModelError(f"Model file {file_path} does not exist.") from None
    except IsADirectoryError:
        raise ModelError(f"{file_path} is a directory, not a GGUF file.") from None
    except PermissionError:
        raise ModelError(f"Cannot read {file_path}: permission denied.") from None
    except (OSError, ValueError) as error:
        raise ModelError(f"Cannot read {file_path}: {error}.") from None


class _Truncated(Exception):
    """Internal: the header runs past the end of the file."""


class _Corrupt(Exception):
    """Internal: the header holds a value no valid GGUF can hold."""


class _Reader:
    """A cursor over the mapped file that turns short reads into :class:`_Truncated`."""

    def __init__(self, buffer: mmap.mmap, size: int) -> None:
        self.buffer = buffer
        self.size = size
        self.pos = 0

    def take(self, fmt: struct.Struct) -> Any:
        """Unpack one value of ``fmt`` at the cursor and advance past it."""
        if self.pos + fmt.size > self.size:
            raise _Truncated
        (value,) = fmt.unpack_from(self.buffer, self.pos)
        self.pos += fmt.size
        return value

    def count(self) -> int:
        """A uint64 element count, refused when implausibly large."""
        value = self.take(_U64)
        if value > _MAX_COUNT:
            raise _Corrupt(f"a count of {value}")
        return int(value)

    def string(self, keep: bool = True) -> str | None:
        """A GGUF string (uint64 length + UTF-8 bytes); None when ``keep`` is False."""
        length = self.take(_U64)
        if length > _MAX_STRING:
            raise _Corrupt(f"a string of {length} bytes")
        end = self.pos + length
        if end > self.size:
            raise _Truncated
        text = None
        if keep:
            text = bytes(self.buffer[self.pos : end]).decode("utf-8", errors="replace")
        self.pos = end
        return text

    def skip(self, n_bytes: int) -> None:
        """Advance ``n_bytes``."""
        self.pos += n_bytes
        if self.pos > self.size:
            raise _Truncated

    def skip_strings(self, n: int) -> None:
        """Skip ``n`` consecutive GGUF strings (the vocabulary) without decoding them."""
        unpack = _U64.unpack_from
        buffer, pos, size = self.buffer, self.pos, self.size
        try:
            for _ in range(n):
                length = unpack(buffer, pos)[0]
                if length > _MAX_STRING:
                    raise _Corrupt(f"a string of {length} bytes")
                pos += 8 + length
        except struct.error:
            raise _Truncated from None
        if pos > size:
            raise _Truncated
        self.pos = pos


def _read_value(reader: _Reader, value_type: int, keep_long: bool) -> Any:
    """Read one metadata value; arrays come back as ``_ArrayInfo``."""
    fmt = _SCALAR_FORMATS.get(value_type)
    if fmt is not None:
        return reader.take(fmt)
    if value_type == _STRING:
        length = reader.take(_U64)
        reader.pos -= 8
        return reader.string(keep=keep_long or length <= _MAX_KEPT_STRING)
    if value_type == _ARRAY:
        element_type = reader.take(_U32)
        n = reader.count()
        _skip_array(reader, element_type, n)
        return _ArrayInfo(element_type, n)
    raise _Corrupt(f"unknown value type {value_type}")


def _skip_array(reader: _Reader, element_type: int, n: int) -> None:
    """Skip the ``n`` elements of an array of ``element_type``."""
    fmt = _SCALAR_FORMATS.get(element_type)
    if fmt is not None:
        reader.skip(fmt.size * n)
    elif element_type == _STRING:
        reader.skip_strings(n)
    elif element_type == _ARRAY:
        for _ in range(n):
            inner_type = reader.take(_U32)
            _skip_array(reader, inner_type, reader.count())
    else:
        raise _Corrupt(f"unknown array element type {element_type}")


@dataclass(frozen=True)
class _ArrayInfo:
    """An array value in the metadata, reduced to its element type and length."""

    element_type: int
    length: int


def _parse(path: Path, buffer: mmap.mmap, size: int) -> GGUFInfo:
    """Parse the mapped file; translate internal failures to one-sentence ModelErrors."""
    if buffer[:4] != GGUF_MAGIC:
        head = bytes(buffer[:64])
        if head.startswith(b"version https://git-lfs"):
            raise ModelError(
                f"{path} is not a GGUF file (bad magic): it is a Git LFS pointer, "
                "download the real file."
            )
        raise ModelError(f"{path} is not a GGUF file (bad magic).")
    reader = _Reader(buffer, size)
    reader.pos = 4
    try:
        version = reader.take(_U32)
        if version not in SUPPORTED_VERSIONS:
            if struct.unpack("<I", struct.pack(">I", version))[0] in SUPPORTED_VERSIONS:
                raise ModelError(
                    f"{path} is a big-endian GGUF file, which llama.cpp here cannot read."
                )
            raise ModelError(
                f"{path} has unsupported GGUF version {version} "
                f"(llama.cpp reads versions {SUPPORTED_VERSIONS[0]} and {SUPPORTED_VERSIONS[1]})."
            )
        tensor_count = reader.count()
        kv_count = reader.count()
        metadata: dict[str, Any] = {}
        for _ in range(kv_count):
            key = reader.string()
            value_type = reader.take(_U32)
            assert key is not None
            metadata[key] = _read_value(
                reader, value_type, keep_long=key == "tokenizer.chat_template"
            )
        alignment = metadata.get("general.alignment", DEFAULT_ALIGNMENT)
        if not isinstance(alignment, int) or alignment <= 0 or alignment & (alignment - 1):
            raise _Corrupt(f"general.alignment {alignment!r}")
        data_end: int | None = 0
        for _ in range(tensor_count):
            reader.string(keep=False)
            n_dims = reader.take(_U32)
            if n_dims > 8:
                raise _Corrupt(f"a tensor with {n_dims} dimensions")
            elements = 1
            for _ in range(n_dims):
                elements *= reader.take(_U64)
            tensor_type = reader.take(_U32)
            offset = reader.take(_U64)
            spec = GGML_TYPES.get(tensor_type)
            if spec is None or data_end is None:
                data_end = None  # an unknown tensor type: its size cannot be checked
                continue
            _, block, type_size = spec
            data_end = max(data_end, offset + (elements // block) * type_size)
        data_offset = -(-reader.pos // alignment) * alignment
    except _Truncated:
        raise ModelError(f"{path} is truncated: it ends inside the GGUF header.") from None
    except (_Corrupt, UnicodeDecodeError) as error:
        raise ModelError(f"{path} has a corrupt GGUF header ({error}).") from None

    expected_size = None if data_end is None else data_offset + data_end
    if expected_size is not None and tensor_count and size < expected_size:
        raise ModelError(
            f"{path} is truncated: its tensors need {expected_size} bytes but the file has {size}."
        )
    return _info(path, version, size, tensor_count, metadata, alignment, data_offset, expected_size)


def _whole_model_tensors(metadata: dict[str, Any], in_this_file: int) -> int:
    """The tensors of the whole model: a split model's first part says how many all its parts
    hold (``split.tensors.count``, written by llama.cpp's gguf-split)."""
    total = metadata.get("split.tensors.count")
    if isinstance(total, int) and not isinstance(total, bool) and total >= in_this_file:
        return total
    return in_this_file


def _info(
    path: Path,
    version: int,
    size: int,
    tensor_count: int,
    metadata: dict[str, Any],
    alignment: int,
    data_offset: int,
    expected_size: int | None,
) -> GGUFInfo:
    """Assemble a :class:`GGUFInfo` from the parsed metadata."""
    architecture = metadata.get("general.architecture")
    if not isinstance(architecture, str) or not architecture:
        if is_later_part(Path(path).name):
            check_parts(Path(path))  # says which part to give instead
        raise ModelError(f"{path} has no general.architecture key, so llama.cpp cannot load it.")

    def number(key: str) -> int | None:
        value = metadata.get(f"{architecture}.{key}")
        if isinstance(value, _ArrayInfo):  # per-layer values (e.g. head_count_kv): not a scalar
            return None
        return (
            int(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else None
        )

    tokens = metadata.get("tokenizer.ggml.tokens")
    vocab_size = tokens.length if isinstance(tokens, _ArrayInfo) else number("vocab_size")
    raw_template = metadata.get("tokenizer.chat_template")
    template = raw_template if isinstance(raw_template, str) and raw_template.strip() else None
    file_type = metadata.get("general.file_type")
    name = metadata.get("general.name")
    tokenizer_model = metadata.get("tokenizer.ggml.model")
    kept = {k: v for k, v in metadata.items() if not isinstance(v, _ArrayInfo)}
    kept.update({f"{k}.length": v.length for k, v in metadata.items() if isinstance(v, _ArrayInfo)})
    head_count = number("attention.head_count")
    return GGUFInfo(
        path=path,
        magic_ok=True,
        version=version,
        file_size=size,
        tensor_count=_whole_model_tensors(metadata, tensor_count),
        metadata_count=len(metadata),
        architecture=architecture,
        name=name if isinstance(name, str) else None,
        vocab_size=vocab_size,
        file_type=FILE_TYPES.get(file_type) if isinstance(file_type, int) else None,
        tokenizer_model=tokenizer_model if isinstance(tokenizer_model, str) else None,
        context_length=number("context_length"),
        embedding_length=number("embedding_length"),
        block_count=number("block_count"),
        head_count=head_count,
        head_count_kv=number("attention.head_count_kv") or head_count,
        key_length=number("attention.key_length"),
        value_length=number("attention.value_length"),
        has_chat_template=template is not None,
        has_system_role=None if template is None else template_has_system_role(template),
        alignment=alignment,
        data_offset=data_offset,
        expected_size=expected_size,
        metadata=kept,
    )


def template_has_system_role(template: str) -> bool:
    """Whether a chat template renders a system message as its own turn (a cheap heuristic).

    False when the template refuses a system role ("System role not supported"), folds it into
    the first user message (Gemma's ``first_user_prefix``), or neither names a system role nor
    prints message roles generically (``'<|im_start|>' + message['role']``).
    """
    lowered = template.lower()
    if "system role not supported" in lowered or "first_user_prefix" in lowered:
        return False
    return "system" in lowered or _GENERIC_ROLE.search(template) is not None
