"""Model ids the server answers to, and what a requested id asks for.

The served model's id is its catalog name when it has one (the bundled model:
``smollm2-135m-instruct``), ollama's name for an ollama model (``qwen2.5-coder:0.5b``), else
the GGUF's file stem (a split model's without ``-00001-of-00003``). A request names:

- ``ID``: plain decoding (unless the body's ``localpref`` object says otherwise); an ollama
  model's id without its tag ``:latest`` too, as ollama takes it;
- ``ID:PRESET``: the recommended steering toward that preference (``ID:base`` is plain
  decoding, and another method's name alone is refused: it names no preference);
- ``ID:METHOD:PRESET``: that method with the papers' settings.

PRESET may be a built-in name or URL-encoded free text (``ID:explain%20like%20I%27m%205``).
A requested id is only ever compared with the served id: it never names a file.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from urllib.parse import unquote

from localpref.catalog import load_catalog
from localpref.errors import LocalprefError, SettingsError
from localpref.methods import method_named
from localpref.models import (
    BUNDLED_MODEL_NAME,
    bundled_model_path,
    find_stored,
    parse_model_spec,
    pattern_matches,
)
from localpref.models.spec import same_name_folder
from localpref.models.stores import DEFAULT_TAG
from localpref.presets import PRESETS
from localpref.request import lone_surrogate
from localpref.split_files import model_stem


class UnknownModelError(LocalprefError):
    """A request named a model id this server does not serve (a 404)."""


@dataclass(frozen=True)
class RequestedSteering:
    """What a model id asks for: a method name (None: recommended) and a preference."""

    method: str | None = None
    preference: str | None = None


def served_model_id(spec: str | None, path: Path) -> str:
    """The id of the model loaded from ``--model spec`` (resolved to ``path``): a folder's
    own model (``resolve_model``'s folder of the name) is named by its file, not by the
    catalog or store model the name would be."""
    folder = same_name_folder(spec)
    if folder is not None and path.parent == folder:
        return model_stem(path.name)
    parsed = parse_model_spec(spec)
    if parsed.kind == "bundled":
        return BUNDLED_MODEL_NAME
    if parsed.entry is not None:
        return parsed.entry.name
    if parsed.kind == "store" and parsed.store == "ollama":  # its file is a digest's blob
        assert parsed.name is not None
        return find_stored(parsed.store, parsed.name).name
    try:
        if path.resolve() == bundled_model_path().resolve():
            return BUNDLED_MODEL_NAME
    except LocalprefError:
        pass
    if parsed.kind == "hub":
        for entry in load_catalog():
            if entry.repo == parsed.repo and pattern_matches(path.name, entry.file):
                return entry.name
    return model_stem(path.name)


def listed_ids(served_id: str) -> list[str]:
    """Every id ``/v1/models`` lists: the model, then ``ID:PRESET`` for each built-in preset."""
    return [served_id, *(f"{served_id}:{name}" for name in PRESETS)]


def _untagged(served_id: str) -> str | None:
    """``NAME`` for an ollama id ``NAME:latest`` (ollama's default tag), else None."""
    name, _, tag = served_id.rpartition(":")
    return name if name and tag == DEFAULT_TAG else None


def parse_model_id(requested: str, served_id: str) -> RequestedSteering:
    """What ``requested`` asks of the served model; ``UnknownModelError`` for another model,
    ``SettingsError`` for an empty preference or method, or an id that is not valid
    Unicode."""
    if lone_surrogate(requested) is not None:
        raise SettingsError("The model id is not valid Unicode text (it holds a lone "
                            "surrogate).", param="model")
    if requested == served_id or requested == _untagged(served_id):
        return RequestedSteering()
    prefix = served_id + ":"
    if not requested.startswith(prefix):
        raise UnknownModelError(f"The model '{requested}' does not exist; this server serves "
                                f"'{served_id}' (see /v1/models).")
    rest = requested[len(prefix):]
    method: str | None = None
    if ":" in rest:
        method, rest = rest.split(":", 1)
        method = _decoded(method, requested)
        if not method.strip():
            raise SettingsError(f"The model id '{requested}' has an empty method.", param="model")
    preference = _decoded(rest, requested)
    if not preference.strip():
        raise SettingsError(f"The model id '{requested}' has an empty preference.", param="model")
    named = method_named(preference) if method is None else None
    if named == "base":  # ID:base is plain decoding, as ID is
        return RequestedSteering(method="base")
    if named is not None:
        raise SettingsError(f"The model id '{requested}' names the method {named} and no "
                            f"preference; use {served_id}:{named}:PREFERENCE, or "
                            f"{served_id}:PREFERENCE for the recommended steering.",
                            param="model")
    return RequestedSteering(method=method, preference=preference)


def _decoded(part: str, requested: str) -> str:
    """A part of a model id, percent-decoded; bytes that are not UTF-8 text (``%FF``, an
    encoded lone surrogate) are one sentence, not replacement characters the model reads."""
    try:
        return unquote(part, errors="strict")
    except UnicodeDecodeError:
        raise SettingsError(f"The model id '{requested}' has percent-encoded bytes that are not "
                            "UTF-8 text; encode the text as UTF-8.", param="model") from None


def path_is_utf8(raw_path: bytes | None) -> bool:
    """Whether a request's raw path, percent-decoded, is UTF-8 text (the server reads the path
    with the bytes that are not as U+FFFD, which would then name a model id of its own)."""
    if raw_path is None:
        return True
    try:
        unquote(raw_path.decode("ascii"), errors="strict")
    except UnicodeDecodeError:
        return False
    return True
