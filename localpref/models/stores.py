"""GGUF models already on disk in other tools' stores: ollama's and LM Studio's.

- **ollama** keeps its models under ``$OLLAMA_MODELS``, else ``~/.ollama/models``. A model is a
  manifest, ``manifests/REGISTRY/NAMESPACE/NAME/TAG`` (JSON, an OCI image manifest), whose
  layer of media type ``application/vnd.ollama.image.model`` names its weights by digest
  (``sha256:<hex>``); the weights are the GGUF file ``blobs/sha256-<hex>``. ollama names a model
  ``NAME:TAG`` in its own library (``registry.ollama.ai/library``),
  ``NAMESPACE/NAME:TAG`` elsewhere on that registry, and ``REGISTRY/NAMESPACE/NAME:TAG`` on
  another one (``hf.co/ORG/REPO:Q4_K_M``); ``--model ollama:NAME[:TAG]`` takes the same
  names, the tag ``latest`` by default.
- **LM Studio** keeps plain GGUF files below ``~/.lmstudio/models`` (and, in older versions,
  ``~/.cache/lm-studio/models``), as ``PUBLISHER/REPO/FILE.gguf``; ``--model lmstudio:PATTERN``
  picks the one whose path or file name matches a case-insensitive glob (a pattern without
  ``*?[`` matches anywhere in the path). Vision projectors (``mmproj-*.gguf``) are not models.

Files are used in place, read-only, never copied. A store that does not exist holds nothing (no
error); a name found in no store is one sentence listing what the store has.
"""

from __future__ import annotations

import errno
import json
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from localpref.errors import ModelError
from localpref.gguf_header import GGUF_MAGIC
from localpref.models.spec import pattern_matches
from localpref.models.walk import files_below
from localpref.paths import expanded
from localpref.split_files import check_parts, is_later_part, part_paths, split_part

OLLAMA_MODEL_LAYER = "application/vnd.ollama.image.model"
#: a LoRA adapter ollama applies over the model's weights: without it the model is another
OLLAMA_ADAPTER_LAYER = "application/vnd.ollama.image.adapter"
OLLAMA_REGISTRY = "registry.ollama.ai"
OLLAMA_LIBRARY = "library"
DEFAULT_TAG = "latest"
#: how the sentence for a folder that cannot be read begins (``_note_unreadable``)
UNREADABLE_FOLDER = "The folder "


@dataclass(frozen=True)
class StoredModel:
    """One GGUF file in a store: ``spec`` is what ``--model`` takes to use it."""

    store: str
    name: str
    path: Path
    size: int

    @property
    def spec(self) -> str:
        return f"{self.store}:{self.name}"

    def to_dict(self) -> dict[str, Any]:
        return {"store": self.store, "name": self.name, "spec": self.spec,
                "path": str(self.path), "size": self.size}


def ollama_dir() -> Path:
    """ollama's model store: ``$OLLAMA_MODELS``, else ``~/.ollama/models`` (read when called)."""
    configured = os.environ.get("OLLAMA_MODELS")
    return expanded(configured) if configured else Path.home() / ".ollama" / "models"


def lmstudio_dirs() -> list[Path]:
    """LM Studio's model folders, the current one first (read when called)."""
    home = Path.home()
    return [home / ".lmstudio" / "models", home / ".cache" / "lm-studio" / "models"]


def ollama_name(registry: str, namespace: str, name: str, tag: str) -> str:
    """The name ollama shows for a manifest: ``NAME:TAG`` in its library, longer elsewhere."""
    if registry == OLLAMA_REGISTRY:
        prefix = "" if namespace == OLLAMA_LIBRARY else f"{namespace}/"
        return f"{prefix}{name}:{tag}"
    return f"{registry}/{namespace}/{name}:{tag}"


def ollama_models(root: Path | None = None, *,
                  problems: list[str] | None = None,
                  unusable: dict[str, str] | None = None) -> list[StoredModel]:
    """Every ollama model whose manifest names a GGUF blob that is there, sorted by name; a
    folder of manifests that cannot be read, and a model that cannot be used (``unusable``:
    its name and why), is a sentence in ``problems`` (one the user sees in ``ollama list`` is
    not silently left out)."""
    root = ollama_dir() if root is None else root
    found = []
    for name, manifest in _ollama_manifests(root, problems):
        blob, why = _ollama_blob_or_why(root, manifest)
        if blob is not None:
            found.append(StoredModel("ollama", name, blob, blob.stat().st_size))
            continue
        sentence = f"The ollama model {name} cannot be used: {why}."
        if problems is not None:
            problems.append(sentence)
        if unusable is not None:
            unusable[name] = sentence
    return sorted(found, key=lambda model: model.name)


def _ollama_manifests(root: Path, problems: list[str] | None = None,
                      ) -> Iterator[tuple[str, Path]]:
    """Every manifest of the store (``REGISTRY/NAMESPACE/NAME/TAG``), with the name ollama
    shows for it."""
    manifests = root / "manifests"
    found = [path for path in _files_below(manifests, problems)
             if len(path.relative_to(manifests).parts) == 4]
    for manifest in found:
        yield ollama_name(*manifest.relative_to(manifests).parts), manifest


def _ollama_layers(manifest: Path) -> tuple[list[Any] | None, str]:
    """A manifest's layers, or None and why not (the end of a sentence)."""
    try:
        data = manifest.read_bytes()
    except OSError as error:  # (a permission, not its content: said as what it is)
        return None, f"its manifest {manifest} cannot be read ({error.strerror or error})"
    try:
        layers = json.loads(data.decode("utf-8")).get("layers") or []
    except (UnicodeDecodeError, ValueError, AttributeError):
        layers = None
    if not isinstance(layers, list):  # (not JSON, not an object, or layers not a list)
        return None, f"its manifest {manifest} cannot be read as ollama writes it"
    return layers, ""


def _layer_blob(root: Path, layer: Any) -> Path | None:
    """The file of the blob a manifest's layer names (None: no valid digest). Both parts of
    ``ALGORITHM:HEX`` are a file name's: ``../x:y`` would lead out of the blobs folder."""
    digest = str(layer.get("digest", "")) if isinstance(layer, dict) else ""
    algorithm, _, value = digest.partition(":")
    if not (algorithm.isascii() and algorithm.isalnum() and value.isascii()
            and value.isalnum()):
        return None
    return root / "blobs" / f"{algorithm}-{value}"


def _ollama_blob_or_why(root: Path, manifest: Path) -> tuple[Path | None, str]:
    """The GGUF blob a manifest names, or None and why not (the end of a sentence)."""
    layers, why = _ollama_layers(manifest)
    if layers is None:
        return None, why
    if any(isinstance(layer, dict) and layer.get("mediaType") == OLLAMA_ADAPTER_LAYER
           for layer in layers):
        return None, ("it carries an adapter (LoRA) that ollama applies over its weights, "
                      "which localpref does not apply")
    for layer in layers:
        if not isinstance(layer, dict) or layer.get("mediaType") != OLLAMA_MODEL_LAYER:
            continue
        blob = _layer_blob(root, layer)
        if blob is None:
            return None, f"its manifest {manifest} names no valid model blob"
        try:
            is_file = blob.is_file()
        except OSError as error:  # (the blobs folder's permissions)
            return None, f"its model blob {blob} cannot be read ({error.strerror or error})"
        if not is_file:
            return None, f"its model blob {blob.name} is missing (`ollama pull` it again)"
        try:
            with blob.open("rb") as file:
                magic = file.read(len(GGUF_MAGIC))
        except OSError as error:
            return None, f"its model blob {blob} cannot be read ({error.strerror or error})"
        # listed, it failed on use ("bad magic"); the first bytes of one are a truncated
        # GGUF, which the header's reader says
        if not magic or not GGUF_MAGIC.startswith(magic):
            return None, f"its model blob {blob.name} is not a GGUF file"
        return blob, ""
    return None, "its manifest has no model layer (nothing localpref can load)"


def lmstudio_models(roots: list[Path] | None = None, *,
                    problems: list[str] | None = None,
                    unusable: dict[str, str] | None = None) -> list[StoredModel]:
    """Every GGUF file below LM Studio's folders (vision projectors left out), by name; a
    folder that cannot be read, or a model that cannot be used (``unusable``: its name and
    why), is a sentence in ``problems``."""
    # a file is listed once per name: both of LM Studio's folders may be one (a link), and a
    # second name linked to a listed file is a name the user sees and gives
    found: dict[tuple[str, Path], StoredModel] = {}
    said: set[str] = set()  # an unusable file is said once, whichever folder shows it

    def cannot_use(name: str, file: str, why: str) -> None:
        sentence = f"The LM Studio model {name} cannot be used: {why}"
        if problems is not None and file not in said:
            problems.append(sentence)
        said.add(file)
        if unusable is not None:  # a name in both folders: the first one's, as listed
            unusable.setdefault(name, sentence)

    for root in lmstudio_dirs() if roots is None else roots:
        if not _is_folder(root, problems):
            continue
        for path in _gguf_files_below(root, problems):
            if (path.name.lower().startswith("mmproj")
                    or is_later_part(path.name)):  # a split model is its first part
                continue
            name = path.relative_to(root).as_posix()
            # the entry itself, where its folder really is (seen through both folders: once)
            entry = os.path.join(os.path.realpath(path.parent), path.name)
            try:
                is_file = path.is_file()
            except OSError as error:  # its folder can be listed, not entered
                cannot_use(name, entry, f"{path} cannot be read ({error.strerror or error}).")
                continue
            if not is_file:
                if path.is_symlink():  # its file removed from under it, or a loop
                    cannot_use(name, entry, f"{_broken_link_why(path)}.")
                continue
            resolved = path.resolve()
            parts, why = _parts_or_why(path)
            if why is not None:  # listed, it failed on use: the file, whatever links to it
                cannot_use(name, str(resolved), why)
                continue
            size = sum(part.stat().st_size for part in parts)
            found.setdefault((name, resolved), StoredModel("lmstudio", name, path, size))
    return sorted(found.values(), key=lambda model: model.name)


def store_links_to(files: list[Path], roots: list[Path] | None = None) -> list[str]:
    """The ``--model`` specs of the stores' models that are links to one of ``files`` (where
    they lead, links followed): what LM Studio's "import as a link" leaves in its folders
    (``roots``: LM Studio's, default its own), and an ollama blob a user linked to a file
    kept elsewhere."""
    targets = {os.path.realpath(file) for file in files}
    specs = []
    for root in lmstudio_dirs() if roots is None else roots:
        if not _is_folder(root):
            continue
        for path in _gguf_files_below(root):
            # (realpath, not resolve: a loop of links is a path, not an error)
            if _is_link(path) and os.path.realpath(path) in targets:
                specs.append(f"lmstudio:{path.relative_to(root).as_posix()}")
    root = ollama_dir()  # every layer of every manifest: ollama uses what localpref cannot
    for name, manifest in _ollama_manifests(root):
        blobs = [_layer_blob(root, layer) for layer in _ollama_layers(manifest)[0] or []]
        if any(blob is not None and _is_link(blob) and os.path.realpath(blob) in targets
               for blob in blobs):
            specs.append(f"ollama:{name}")
    return sorted(set(specs))


def _is_folder(path: Path, problems: list[str] | None = None) -> bool:
    """Whether ``path`` is a folder; one that cannot be looked at (a parent's permissions)
    is not, and is said in ``problems`` (``_note_unreadable``)."""
    try:
        return path.is_dir()
    except OSError as error:
        _note_unreadable(error, problems)
        return False


def _is_link(path: Path) -> bool:
    """Whether ``path`` is a symbolic link (one that cannot be looked at is not)."""
    try:
        return path.is_symlink()
    except OSError:
        return False


def _broken_link_why(path: Path) -> str:
    """Why a link in a store leads to no file, as the end of a sentence."""
    try:
        path.stat()
    except OSError as error:
        if error.errno == errno.ELOOP:
            return "it is a loop of links"
        return f"it links to {os.readlink(path)}, which is not there"
    return f"it links to {os.readlink(path)}, which is not a file"


def _parts_or_why(path: Path) -> tuple[list[Path], str | None]:
    """A stored GGUF's parts (``[path]`` for one file), or why it cannot be loaded as far as
    that is seen without reading its header (a split model's part missing, a file this user
    cannot read, a file that is not a GGUF file at all), as a sentence."""
    try:
        parts = check_parts(path)
        with path.open("rb") as file:
            magic = file.read(len(GGUF_MAGIC))
    except ModelError as error:
        return [], str(error)
    except OSError as error:
        return [], f"{path} cannot be read ({error.strerror or error})."
    # (as an ollama blob's: the first bytes of one are a truncated GGUF, which loading says)
    if not magic or not GGUF_MAGIC.startswith(magic):
        return [], f"{path} is not a GGUF file (it does not begin as one)."
    return parts, None


def _gguf_files_below(root: Path, problems: list[str] | None = None) -> list[Path]:
    """Every ``*.gguf`` below ``root``, sorted (``_files_below``)."""
    return [path for path in _files_below(root, problems)
            if path.name.lower().endswith(".gguf")]


def _files_below(root: Path, problems: list[str] | None = None) -> list[Path]:
    """Every file below ``root``, sorted, linked folders followed (``walk.files_below``). A
    folder that cannot be read is left out, with a sentence in ``problems`` saying so."""

    return files_below(root, lambda error: _note_unreadable(error, problems),
                       follow_links=True)


def _note_unreadable(error: OSError, problems: list[str] | None) -> None:
    """The sentence in ``problems`` for a folder that cannot be read (``error``'s)."""
    if problems is None:
        return
    # named where it is, once (both of LM Studio's folders may be one, through a link)
    sentence = (f"{UNREADABLE_FOLDER}{os.path.realpath(error.filename)} cannot be read "
                f"({error.strerror or error}).")
    if sentence not in problems:
        problems.append(sentence)


def stored_models(*, problems: list[str] | None = None) -> list[StoredModel]:
    """Every model of every store on this machine (folders that cannot be read: sentences in
    ``problems``)."""
    return [*ollama_models(problems=problems), *lmstudio_models(problems=problems)]


def resolve_stored(store: str, name: str) -> Path:
    """The file of ``--model STORE:NAME``, in place; ``ModelError`` (one sentence) otherwise."""
    return find_stored(store, name).path


def find_stored(store: str, name: str) -> StoredModel:
    """The model ``--model STORE:NAME`` names (its name as the store shows it, its file);
    ``ModelError`` (one sentence) when there is none or several."""
    if not name:
        raise ModelError(f"Give a model after '{store}:', e.g. "
                         f"{'ollama:llama3.2' if store == 'ollama' else 'lmstudio:qwen2.5'}.")
    if store == "ollama":
        return _find_ollama(name)
    return _find_lmstudio(name)


def _ollama_wanted(name: str) -> str:
    """An ollama name as its manifest's path gives it: the tag ``latest`` by default, without
    ollama's own registry and library."""
    wanted = name if ":" in name.rsplit("/", 1)[-1] else f"{name}:{DEFAULT_TAG}"
    if wanted.lower().startswith(f"{OLLAMA_REGISTRY}/"):
        wanted = wanted[len(OLLAMA_REGISTRY) + 1:]
    if wanted.lower().startswith(f"{OLLAMA_LIBRARY}/"):
        wanted = wanted[len(OLLAMA_LIBRARY) + 1:]
    return wanted


def _find_ollama(name: str) -> StoredModel:
    wanted = _ollama_wanted(name)
    root = ollama_dir()
    problems: list[str] = []
    unusable: dict[str, str] = {}
    available = ollama_models(root, problems=problems, unusable=unusable)
    matches = _named(available, wanted)
    if len(matches) > 1:  # names that differ only in case: ollama keeps them apart
        raise ModelError(f"ollama:{wanted} matches {len(matches)} ollama models "
                         f"({', '.join(model.name for model in matches)}); give the name as "
                         "`models list` shows it.")
    if matches:
        return matches[0]
    for shown, manifest in _ollama_manifests(root):
        if shown.lower() == wanted.lower():
            _, why = _ollama_blob_or_why(root, manifest)
            raise ModelError(f"The ollama model {wanted} cannot be used: {why}.")
    raise ModelError(f"No ollama model {wanted} in {root}; {_what_is_there(available, root)}"
                     f"{_unread(problems, unusable)}.")


def _named(available: list[StoredModel], name: str) -> list[StoredModel]:
    """The models called ``name`` as written, else whatever its case."""
    return ([model for model in available if model.name == name]
            or [model for model in available if model.name.lower() == name.lower()])


def _find_lmstudio(pattern: str) -> StoredModel:
    problems: list[str] = []
    unusable: dict[str, str] = {}
    available = lmstudio_models(problems=problems, unusable=unusable)
    named = _named(available, pattern)
    if len(named) > 1:  # the same name in both folders, or names that differ only in case
        listed = ", ".join(str(model.path) for model in named)
        raise ModelError(f"lmstudio:{pattern} names {len(named)} files ({listed}); give the "
                         "path of the one to use.")
    if named:  # a name as `models list` shows it, brackets and all
        return named[0]
    glob = pattern if any(character in pattern for character in "*?[") else f"*{pattern}*"
    matches = [model for model in available if pattern_matches(model.name, glob)]
    # the models it names that cannot be used count too: one of them may be the one meant
    broken = [name for name in unusable
              if name.lower() == pattern.lower() or pattern_matches(name, glob)]
    if len(matches) == 1 and not broken:
        return matches[0]
    folders = " or ".join(str(root) for root in lmstudio_dirs())
    if matches and broken:
        names = sorted([model.name for model in matches] + broken)
        raise ModelError(f"'{pattern}' matches {len(names)} LM Studio models "
                         f"({', '.join(names)}; {unusable[broken[0]][:1].lower()}"
                         f"{unusable[broken[0]][1:].rstrip('.')}); give a pattern that matches "
                         "one of them.")
    if matches:
        names = [model.name for model in matches]
        if len(set(names)) < len(names):  # one name in both of LM Studio's folders
            listed = ", ".join(str(model.path) for model in matches)
            raise ModelError(f"'{pattern}' matches {len(matches)} LM Studio files ({listed}); "
                             "give the path of the one to use.")
        raise ModelError(f"'{pattern}' matches {len(matches)} LM Studio models "
                         f"({', '.join(names)}); give a pattern that matches one of them.")
    if broken:  # what it names is there, and cannot be used
        raise ModelError(unusable[broken[0]])
    later = _later_part_sentence(pattern, glob)
    if later is not None:
        raise ModelError(later)
    raise ModelError(f"No LM Studio model matches '{pattern}' in {folders}; "
                     f"{_what_is_there(available, None)}{_unread(problems, unusable)}.")


def _later_part_sentence(pattern: str, glob: str) -> str | None:
    """What to say when ``pattern`` matches only a later part of a split model (a split
    model is listed, and named, by its first part), else None."""
    for root in lmstudio_dirs():
        if not _is_folder(root):
            continue
        for path in _gguf_files_below(root):
            part = split_part(path.name)
            name = path.relative_to(root).as_posix()
            if (part is None or part[0] == 1
                    or not (name.lower() == pattern.lower() or pattern_matches(name, glob))):
                continue
            first = part_paths(path)[0]
            where = (f"give its first part: lmstudio:{first.relative_to(root).as_posix()}"
                     if os.path.isfile(first) else
                     f"its first part, {first.name}, is not beside it in {path.parent}")
            return f"{path.name} is part {part[0]} of {part[1]} of a split model; {where}."
    return None


def stored_elsewhere(text: str, pattern: str | None = None) -> list[StoredModel]:
    """The models another tool keeps under the name a user typed without ``ollama:`` or
    ``lmstudio:`` (an ollama ``NAME[:TAG]``, an LM Studio ``PUBLISHER/REPO`` folder, path or
    file name): ollama's when it has any (several: names that differ only in case), else LM
    Studio's (several: files in both of its folders, or in several of its folders). With
    ``pattern`` (``text`` is a Hub ``ORG/NAME[:PATTERN]``) an LM Studio file is looked for in
    the folder ``ORG/NAME`` and must match the pattern. Only for a hint: a name without a
    store's prefix never loads a store's file."""
    wanted = _ollama_wanted(text.strip())
    found = _named(ollama_models(), wanted)
    if found:
        return found
    typed = text.strip() if pattern is None else text.strip().split(":", 1)[0]  # ORG/NAME
    needle = typed.strip("/").lower()
    if not needle:
        return []
    return [model for model in lmstudio_models()
            if (needle in (model.name.lower(), model.path.name.lower())
                or model.name.lower().startswith(needle + "/"))
            and (pattern is None or pattern_matches(model.path.name, pattern))]


def _unread(problems: list[str], unusable: dict[str, str]) -> str:
    """The not-found sentence's last words: the folders that could not be read, and the
    names of the models that cannot be used (why, for each: ``models list``; their whole
    sentences made one of a few kilobytes)."""
    said = "".join(f"; {problem[:1].lower()}{problem[1:].rstrip('.')}" for problem in problems
                   if problem.startswith(UNREADABLE_FOLDER))
    if unusable:
        said += f"; it cannot use {', '.join(unusable)} (`localpref models list` says why)"
    return said


def _what_is_there(available: list[StoredModel], root: Path | None) -> str:
    """The end of a not-found sentence: the models the store has, or that it has none."""
    if available:
        return "it has " + ", ".join(model.name for model in available)
    if root is None:
        return "it has no models"
    try:
        root.stat()
    except (FileNotFoundError, NotADirectoryError):
        return "that folder does not exist"
    except OSError:  # (its permissions: the walk's sentence, after this one, says so)
        return "it has no models"
    if not root.is_dir():
        return "that is a file, not a folder"
    return "it has no models"
