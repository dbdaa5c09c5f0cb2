"""``localpref models list|pull|path|remove``: the bundled model, the catalog, the HF cache, and
the models ollama and LM Studio already keep (listed and used in place)."""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Callable
from typing import Any, TextIO

from localpref import models
from localpref.calibration.record import calibration_state
from localpref.commands.options import file_pattern, model_name
from localpref.commands.showing import check_stdout_open
from localpref.errors import ModelError
from localpref.gguf_header import read_gguf_header
from localpref.models.spec import STORE_TOOLS, parse_model_spec


def add_model_options(parser: argparse.ArgumentParser) -> None:
    """``--model`` and ``--gpu-layers`` (from ``commands.options``) plus ``--file PATTERN``.

    ``--file`` lands in ``args.model_file``: the ``filename`` of :func:`models.resolve_model`.
    """
    from localpref.commands.options import add_model_options as add_model_and_gpu_options

    add_model_and_gpu_options(parser)
    parser.add_argument(
        "--file",
        dest="model_file",
        metavar="PATTERN",
        default=None,
        type=file_pattern,
        help="which GGUF of a Hub repo, as a glob such as '*Q4_K_M.gguf'",
    )


def add_parser(subparsers: Any) -> None:
    """Register ``models`` and its four sub-commands."""
    parser = subparsers.add_parser(
        "models",
        help="list, download, locate or remove GGUF models",
        description="The bundled model, the catalog of known models, and the Hugging Face cache.",
    )
    parser.set_defaults(func=lambda args: _help(parser))
    actions = parser.add_subparsers(dest="models_command", metavar="ACTION")

    listing = actions.add_parser(
        "list", help="bundled, catalog and downloaded models, and ollama's and LM Studio's")
    listing.add_argument("--verbose", "-v", action="store_true", help="show GGUF header facts")
    listing.add_argument("--json", action="store_true", help="print one JSON object")
    listing.set_defaults(func=run_list)

    hub_name = "a catalog name or ORG/NAME[:PATTERN]"
    for action, help_text, name_help, handler in (
        ("pull", "download a model into the Hugging Face cache", hub_name, run_pull),
        ("path", "print the local file of a model (never downloads)", hub_name, run_path),
        ("remove", "delete a downloaded model from the Hugging Face cache", hub_name, run_remove),
    ):
        command = actions.add_parser(action, help=help_text)
        command.add_argument("name", metavar="NAME", type=model_name, help=name_help)
        command.add_argument(
            "--file", dest="model_file", metavar="PATTERN", type=file_pattern,
            help="which GGUF, e.g. '*Q4_K_M.gguf'")
        command.set_defaults(func=handler)


def _help(parser: argparse.ArgumentParser) -> int:
    """``localpref models`` alone: the actions, on stderr (a usage error, exit code 2; a
    script reading stdout gets nothing it could take for a listing)."""
    parser.print_help(sys.stderr)
    return 2


# --------------------------------------------------------------------------------------------


def collect_listing(verbose: bool = False) -> dict[str, Any]:
    """Everything ``models list`` shows, as one JSON-ready dict."""
    cache = models.hf_cache_dir()
    bundled: dict[str, Any] = {"name": models.BUNDLED_MODEL_NAME, "path": None, "size": None}
    try:
        bundled_path = models.bundled_model_path()
        bundled.update(path=str(bundled_path), size=bundled_path.stat().st_size,
                       calibration=calibration_state(bundled_path))
        if verbose:
            bundled["header"] = _header(bundled_path)
    except ModelError as error:
        bundled["error"] = str(error)
    catalog = models.catalog_with_status(cache)
    problems: list[str] = []  # folders that cannot be read: their models are left out
    downloaded = [item.to_dict() for item in models.cached_models(cache, problems=problems)]
    if verbose:
        for item in downloaded:
            item["header"] = _header(item["path"])
    ollama = [item.to_dict() for item in models.ollama_models(problems=problems)]
    lmstudio = [item.to_dict() for item in models.lmstudio_models(problems=problems)]
    for item in [*downloaded, *ollama, *lmstudio]:
        item["calibration"] = calibration_state(item["path"])
    if verbose:
        for item in [*ollama, *lmstudio]:
            item["header"] = _header(item["path"])
    return {
        "bundled": bundled,
        "catalog": catalog,
        "downloaded": downloaded,
        "cache_dir": str(cache),
        "offline": models.hub_offline(),
        "ollama": {"dir": str(models.ollama_dir()), "models": ollama},
        "lmstudio": {"dirs": [str(path) for path in models.lmstudio_dirs()], "models": lmstudio},
        "problems": problems,
    }


def _header(path: Any) -> dict[str, Any]:
    """Header facts of a local file, or its problem as ``{"error": ...}``."""
    try:
        return read_gguf_header(path).summary()
    except ModelError as error:
        return {"error": str(error)}


def run_list(args: argparse.Namespace) -> int:
    """``models list``."""
    check_stdout_open()
    listing = collect_listing(verbose=args.verbose)
    if args.json:
        print(json.dumps(listing, indent=2))
        return 0
    out = sys.stdout
    bundled = listing["bundled"]
    print("Bundled", file=out)
    if bundled["path"]:
        size = models.format_size(bundled["size"])
        print(f"  {bundled['name']:<26} {size:>9}  {bundled['path']}", file=out)
        print(f"      steering: {bundled['calibration']['text']}", file=out)
        _print_header(bundled.get("header"), out)
    else:
        print(f"  {bundled['name']:<26} missing: {bundled['error']}", file=out)
    print("\nCatalog (sizes approximate; * = downloaded)", file=out)
    for row in listing["catalog"]:
        mark = "*" if row["downloaded"] else " "
        where = "bundled" if row["bundled"] else f"{row['repo']}:{row['file']}"
        size = (
            f"~{row['size_mb']} MB" if row["size_mb"] < 1000 else f"~{row['size_mb'] / 1000:.1f} GB"
        )
        print(f"{mark} {row['name']:<26} {size:>9}  {where}  [{row['licence']}]", file=out)
        if args.verbose:
            system = "system role" if row["has_system_role"] else "no system role"
            print(f"      {row['params']} {row['quant']}, {system}; {row['notes']}", file=out)
    print(f"\nDownloaded (Hugging Face cache: {listing['cache_dir']})", file=out)
    if not listing["downloaded"]:
        print("  nothing yet: `localpref models pull NAME` downloads a catalog model", file=out)
    for item in listing["downloaded"]:
        size = models.format_size(item["size"])
        print(f"  {item['spec']:<50} {size:>9}  {item['path']}", file=out)
        print(f"      steering: {item['calibration']['text']}", file=out)
        _print_header(item.get("header"), out)
    stores = (("ollama", listing["ollama"]["dir"]),
              ("lmstudio", " and ".join(listing["lmstudio"]["dirs"])))
    for store, where in stores:
        print(f"\n{STORE_TOOLS[store]} ({where}; used in place)", file=out)
        if not listing[store]["models"]:
            print("  none found", file=out)
        for item in listing[store]["models"]:
            size = models.format_size(item["size"])
            print(f"  {item['spec']:<50} {size:>9}  {item['path']}", file=out)
            print(f"      steering: {item['calibration']['text']}", file=out)
            _print_header(item.get("header"), out)
    if listing["problems"]:
        print("\nNot read, or cannot be used (left out)", file=out)
        for problem in listing["problems"]:
            print(f"  {problem}", file=out)
    return 0


def _print_header(header: dict[str, Any] | None, out: TextIO) -> None:
    """Two indented lines of GGUF facts (``--verbose``)."""
    if not header:
        return
    if "error" in header:
        print(f"      header: {header['error']}", file=out)
        return
    system = {True: "yes", False: "no", None: "unknown"}[header["has_system_role"]]
    print(
        f"      GGUF v{header['version']}, {header['architecture']}, {header['file_type'] or '?'}, "
        f"vocabulary {_shown(header['vocab_size'])}, {header['tensor_count']} tensors, "
        f"{_shown(header['block_count'])} layers, context {_shown(header['context_length'])}",
        file=out,
    )
    print(
        f"      name {_shown(header['name'], repr)}, chat template "
        f"{'yes' if header['has_chat_template'] else 'no'}, system role {system}",
        file=out,
    )


def _shown(value: Any, form: Callable[[Any], str] = str) -> str:
    """A header value as the listing shows it: ``?`` for one the file does not give."""
    return "?" if value is None else form(value)


class ProgressBar:
    """A download progress line on a stream (redrawn in place on a terminal)."""

    def __init__(self, label: str, stream: TextIO | None = None, interval: float = 0.1) -> None:
        self.label = label
        self.stream = stream or sys.stderr
        self.interval = interval
        self.tty = bool(getattr(self.stream, "isatty", lambda: False)())
        self.last_draw = 0.0
        self.last_quarter = -1
        self.drawn = False

    def __call__(self, done: int, total: int) -> None:
        """Report ``done`` of ``total`` bytes (total 0: unknown)."""
        now = time.monotonic()
        finished = bool(total) and done >= total
        if self.tty:
            if not finished and now - self.last_draw < self.interval:
                return
            self.last_draw = now
            self.stream.write("\r" + self._line(done, total))
            self.stream.flush()
            self.drawn = True
            return
        quarter = int(4 * done / total) if total else -1
        if quarter > self.last_quarter:
            self.last_quarter = quarter
            self.stream.write(self._line(done, total) + "\n")
            self.stream.flush()

    def _line(self, done: int, total: int) -> str:
        """``label  45.2 MB / 98.4 MB  46%`` (with a bar when total is known)."""
        if not total:
            return f"{self.label}  {models.format_size(done)}"
        fraction = min(max(done / total, 0.0), 1.0)
        bar = "#" * int(fraction * 24)
        sizes = f"{models.format_size(done)} / {models.format_size(total)}"
        return f"{self.label}  [{bar:<24}] {sizes}  {fraction:4.0%}"

    def finish(self) -> None:
        """End the line drawn in place."""
        if self.tty and self.drawn:
            self.stream.write("\n")
            self.stream.flush()


def run_pull(args: argparse.Namespace) -> int:
    """``models pull REPO [--file PATTERN]``: download (or find in the cache) and print the path."""
    bar = ProgressBar(f"Downloading {args.name}")
    try:
        path = models.resolve_model(args.name, filename=args.model_file, progress=bar,
                                    stores_first=False)
    finally:
        bar.finish()
    kept_elsewhere = _not_pulled(args.name)
    if kept_elsewhere:
        print(f"localpref: nothing to download: {kept_elsewhere}.", file=sys.stderr)
    print(path)
    return 0


def _not_pulled(name: str) -> str | None:
    """Why a model that ``models pull`` found is not a download of its own (a store's model,
    the bundled one, a local file), or None for a Hub model (downloaded, or in the cache)."""
    spec = parse_model_spec(name)
    if spec.kind == "store":
        return f"{spec.display} is {STORE_TOOLS[str(spec.store)]}'s, and read where it is"
    if spec.kind == "bundled":
        return "the bundled model is installed with localpref"
    if spec.kind == "path":
        return f"{name} is a local path"
    return None


def run_path(args: argparse.Namespace) -> int:
    """``models path NAME``: the local file, never a download."""
    check_stdout_open()  # (a script's p=$(...) read an empty path from exit 0)
    print(models.resolve_model(args.name, filename=args.model_file, download=False))
    return 0


def run_remove(args: argparse.Namespace) -> int:
    """``models remove NAME``: delete from the Hugging Face cache."""
    removed = models.remove_model(args.name, filename=args.model_file)
    for path in removed:
        print(f"removed {path}")
    return 0
