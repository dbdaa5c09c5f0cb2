"""Split GGUF files: one model in parts named ``NAME-00001-of-00003.gguf`` and so on (what
llama.cpp's ``gguf-split`` writes, and how large models, and some small ones, are published).
llama.cpp loads every part from the first one's path, so the first part stands for the model:
listings and patterns skip the later parts, a download fetches them all, and a missing part is
said before llama.cpp tries."""

from __future__ import annotations

import re
from pathlib import Path

from localpref.errors import ModelError

_PART = re.compile(r"-(\d{5})-of-(\d{5})\.gguf$", re.IGNORECASE)


def split_part(name: str) -> tuple[int, int] | None:
    """(part, parts) of a split GGUF's file name (``x-00002-of-00003.gguf``: (2, 3)), or None
    for a file that is not a part."""
    found = _PART.search(name)
    if found is None:
        return None
    part, parts = int(found.group(1)), int(found.group(2))
    return (part, parts) if 1 <= part <= parts else None


def is_later_part(name: str) -> bool:
    """Whether a file is a part of a split GGUF other than the first (loaded with it)."""
    part = split_part(name)
    return part is not None and part[0] > 1


def part_names(name: str) -> list[str]:
    """Every part's file name of the split GGUF ``name`` is a part of (``[name]`` for a file
    that is not a part), in order."""
    found = _PART.search(name)
    part = split_part(name)
    if found is None or part is None:
        return [name]
    stem = name[:found.start()]
    return [f"{stem}-{index:05d}-of-{part[1]:05d}.gguf" for index in range(1, part[1] + 1)]


def model_stem(name: str) -> str:
    """The model's name from its (first) file's: the stem without the part numbering
    (``smol-00001-of-00003.gguf``: ``smol``; ``smol.gguf``: ``smol``)."""
    found = _PART.search(name)
    if found is not None and split_part(name) is not None:
        return name[:found.start()]
    return Path(name).stem


def part_paths(path: Path) -> list[Path]:
    """The paths of every part of the split GGUF ``path`` is a part of, beside it (``[path]``
    for a file that is not a part)."""
    return [path.with_name(name) for name in part_names(path.name)]


def check_parts(path: Path) -> list[Path]:
    """All the parts of the model at ``path`` (just ``[path]`` for one file), after checking
    that ``path`` is the first part and the others lie beside it; one sentence otherwise."""
    part = split_part(path.name)
    if part is None:
        return [path]
    parts = part_paths(path)
    if part[0] != 1:
        if not parts[0].is_file():  # (naming a file that is not there sent the user to it)
            raise ModelError(f"{path.name} is part {part[0]} of {part[1]} of a split model, "
                             f"and its first part, {parts[0].name}, is not beside it in "
                             f"{path.parent}; llama.cpp loads a split model from its first "
                             "part, with every part beside it.")
        raise ModelError(f"{path.name} is part {part[0]} of {part[1]} of a split model; give "
                         f"its first part, {parts[0].name}.")
    missing = [p.name for p in parts if not p.is_file()]
    if missing:
        raise ModelError(f"{path.name} is the first of {part[1]} parts of a split model, and "
                         f"{', '.join(missing)} {'is' if len(missing) == 1 else 'are'} not "
                         f"beside it in {path.parent}.")
    return parts
