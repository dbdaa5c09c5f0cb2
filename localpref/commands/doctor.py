"""``localpref doctor``: the llama.cpp build, threads, the model file and the memory it needs."""

from __future__ import annotations

import argparse
import importlib.metadata
import json
import os
import platform
import shutil
import sys
from pathlib import Path
from typing import Any

from localpref import models
from localpref.api import DEFAULT_CONTEXT, DEFAULT_LANES
from localpref.calibration.record import calibration_state
from localpref.commands.models import add_model_options
from localpref.commands.options import load_settings
from localpref.commands.showing import check_stdout_open
from localpref.engine import MAX_LANES, available_cores, loading_problem, window_problem
from localpref.errors import ModelError
from localpref.gguf_header import read_gguf_header
from localpref.models.bundled import display_name
from localpref.prompts import no_template_notice
from localpref.split_files import check_parts

#: How to rebuild llama-cpp-python with GPU offload, per backend.
REBUILD_HINTS = {
    "cuda": 'CMAKE_ARGS="-DGGML_CUDA=on" pip install --force-reinstall --no-cache-dir '
    "llama-cpp-python==0.3.36",
    "metal": 'CMAKE_ARGS="-DGGML_METAL=on" pip install --force-reinstall --no-cache-dir '
    "llama-cpp-python==0.3.36",
    "vulkan": 'CMAKE_ARGS="-DGGML_VULKAN=on" pip install --force-reinstall --no-cache-dir '
    "llama-cpp-python==0.3.36",
}


def add_parser(subparsers: Any) -> None:
    """Register ``doctor``."""
    parser = subparsers.add_parser(
        "doctor",
        help="check the llama.cpp build, threads, the model and the memory it needs",
        description="Report the llama.cpp build (CPU features, GPU offload), the threads used, "
        "the model file's GGUF header, and an estimate of the memory the model needs.",
    )
    add_model_options(parser)
    parser.add_argument(
        "--lanes", type=int, default=DEFAULT_LANES, metavar="N",
        help=f"lanes the memory estimate counts, each with a KV stream of --ctx cells (default "
        f"{DEFAULT_LANES}, as generate and chat load; serve has 2 x --parallel)"
    )
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    parser.set_defaults(func=run)


def system_memory() -> dict[str, int | None]:
    """Total and available RAM in bytes (None where the platform does not say)."""
    total = available = None
    try:
        with open("/proc/meminfo", encoding="ascii") as handle:
            fields = {
                line.split(":")[0]: int(line.split()[1]) * 1024
                for line in handle
                if line.split()[1:2] and line.split()[1].isdigit()
            }
        total, available = fields.get("MemTotal"), fields.get("MemAvailable")
    except (OSError, ValueError, IndexError):
        try:
            total = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
        except (AttributeError, ValueError, OSError):
            total = None
    return {"total_bytes": total, "available_bytes": available}


def llama_build() -> dict[str, Any]:
    """What the installed llama.cpp was compiled with."""
    from localpref.llama_library import llama_cpp

    info = llama_cpp.llama_print_system_info()
    text = info.decode("utf-8", "replace") if isinstance(info, bytes) else str(info)
    features = []
    for part in text.split("|"):
        name, _, value = part.partition("=")
        if value.strip() == "1":
            features.append(name.split(":")[-1].strip())
    return {
        "llama_cpp_python": getattr(llama_cpp, "__version__", "unknown"),
        "system_info": text.strip(" |"),
        "cpu_features": features,
        "gpu_offload": bool(llama_cpp.llama_supports_gpu_offload()),
        "mmap": bool(llama_cpp.llama_supports_mmap()),
        "mlock": bool(llama_cpp.llama_supports_mlock()),
        "max_devices": int(llama_cpp.llama_max_devices()),
    }


def _version(distribution: str) -> str:
    """An installed distribution's version, or "not installed"."""
    try:
        return importlib.metadata.version(distribution)
    except importlib.metadata.PackageNotFoundError:
        return "not installed"


def _gpu_hint() -> str | None:
    """The rebuild command that fits this machine's GPU, if one is visible."""
    if shutil.which("nvidia-smi"):
        return REBUILD_HINTS["cuda"]
    if platform.system() == "Darwin" and platform.machine() == "arm64":
        return REBUILD_HINTS["metal"]
    if shutil.which("vulkaninfo"):
        return REBUILD_HINTS["vulkan"]
    return None


def collect(args: argparse.Namespace) -> dict[str, Any]:
    """Everything doctor reports, as one JSON-ready dict."""
    threads = load_settings(args)["n_threads"]  # a bad --threads or --ctx: one sentence
    problems: list[str] = []
    warnings_found: list[str] = []  # the model works, but the user should know
    hints: list[str] = []
    build = llama_build()
    report: dict[str, Any] = {
        "localpref": _version("localpref"),
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "llama_cpp_python": build["llama_cpp_python"],
        "llama_cpp": build,
        "threads": threads or available_cores(),  # what localpref uses for n_threads
        "cpu_count": os.cpu_count(),
        "system_memory": system_memory(),
        "huggingface": {
            "cache_dir": str(models.hf_cache_dir()),
            "endpoint": models.hub_endpoint(),
            "offline": models.hub_offline(),
            "huggingface_hub": _version("huggingface-hub"),
        },
    }
    bundled: dict[str, Any]
    try:
        bundled_path = models.bundled_model_path()
        bundled = {"path": str(bundled_path), "header": read_gguf_header(bundled_path).summary()}
    except ModelError as error:
        bundled = {"path": None, "error": str(error)}
        problems.append(str(error))
    report["bundled_model"] = bundled

    if not 1 <= args.lanes <= MAX_LANES:  # what a context holds (``Model`` refuses more)
        raise ModelError(f"--lanes must be from 1 to {MAX_LANES} (got {args.lanes}).")
    model: dict[str, Any] = {"spec": args.model or models.BUNDLED_MODEL_NAME, "path": None}
    path: Path | None = Path(bundled["path"]) if bundled.get("path") else None
    problem: str | None = None  # why llama.cpp cannot load the model
    try:
        if args.model is not None or args.model_file is not None:
            path = models.resolve_model(args.model, filename=args.model_file, download=False)
        if path is not None:
            info = read_gguf_header(path)
            parts = check_parts(path)  # a split model: every part, all there
            problem = loading_problem(path, info)
    except ModelError as error:  # the text report says it alone (exit 2); JSON holds it
        model["error"] = str(error)
        problems.append(str(error))
        path = None
    memory = None
    if path is not None:  # its header read, its parts there
        model.update(path=str(path), header=info.summary(),
                     size_bytes=sum(part.stat().st_size for part in parts),
                     calibration=calibration_state(path))
        if problem is not None:
            problems.append(problem)
        if not info.has_chat_template:
            warnings_found.append(no_template_notice(info.name or path.stem))
    if path is not None and problem is None:  # what a model llama.cpp cannot load needs: moot
        n_ctx = args.ctx or min(DEFAULT_CONTEXT, info.context_length or DEFAULT_CONTEXT)
        too_wide = window_problem(n_ctx, info.context_length,
                                  display_name(path, info.name or path.stem))
        if too_wide is not None:  # every command that loads it refuses this window
            problems.append(too_wide)
        memory = models.memory_estimate(
            info,
            n_ctx=n_ctx,
            n_gpu_layers=args.gpu_layers,
            n_seq=args.lanes,
            gpu_offload=build["gpu_offload"],
            later_parts_bytes=sum(part.stat().st_size for part in parts[1:]),
        )
        available = report["system_memory"]["available_bytes"]
        memory["fits_in_available_ram"] = (
            None if available is None else memory["ram_bytes"] <= available
        )
        if available is not None and memory["ram_bytes"] > available:
            problems.append(
                f"The model needs about {models.format_size(memory['ram_bytes'])} of RAM but "
                f"only {models.format_size(available)} is available."
            )
    report["model"] = model
    report["memory"] = memory
    if args.gpu_layers and not build["gpu_offload"]:
        problems.append(
            "This llama-cpp-python was built without GPU offload, so --gpu-layers is ignored."
        )
    hint = _gpu_hint()
    if not build["gpu_offload"] and hint:
        hints.append(f"A GPU is visible: rebuild llama-cpp-python for it with {hint}")
    report["problems"] = problems
    report["warnings"] = warnings_found
    report["hints"] = hints
    return report


def _known(value: Any) -> str:
    """A header fact as printed: ``?`` where the file does not say."""
    return "?" if value is None else str(value)


def run(args: argparse.Namespace) -> int:
    """``localpref doctor [--model M] [--gpu-layers N] [--threads N] [--ctx N] [--json]``
    (``--ctx``: one lane's window in the memory estimate, as ``load`` chooses it by default:
    the model's trained context, at most ``DEFAULT_CONTEXT``)."""
    check_stdout_open()
    report = collect(args)
    model_error = report["model"].get("error")
    if args.json:
        print(json.dumps(report, indent=2))
        return 2 if model_error else 1 if report["problems"] else 0
    if model_error:
        raise ModelError(model_error)
    build = report["llama_cpp"]
    print(f"localpref {report['localpref']}, Python {report['python']}, {report['platform']}")
    print(f"llama-cpp-python {report['llama_cpp_python']}")
    print(f"  CPU features: {', '.join(build['cpu_features']) or 'none reported'}")
    print(f"  GPU offload: {'yes' if build['gpu_offload'] else 'no (CPU-only build)'}")
    print(f"threads: {report['threads']} of {report['cpu_count']} cores")
    ram = report["system_memory"]
    if ram["total_bytes"]:
        available = ram["available_bytes"]
        extra = f", {models.format_size(available)} available" if available else ""
        print(f"memory: {models.format_size(ram['total_bytes'])} total{extra}")
    hf = report["huggingface"]
    offline = " (offline)" if hf["offline"] else ""
    print(f"Hugging Face cache: {hf['cache_dir']}{offline}")
    model = report["model"]
    print(f"model: {model['spec']}")
    if model["path"]:
        header = model["header"]
        print(f"  file: {model['path']} ({models.format_size(model['size_bytes'])})")
        print(
            f"  GGUF v{header['version']}, {header['architecture']}, {header['file_type'] or '?'}, "
            f"vocabulary {_known(header['vocab_size'])}, {_known(header['block_count'])} layers, "
            f"trained context {_known(header['context_length'])}"
        )
        print(f"  steering: {model['calibration']['text']}")
    memory = report["memory"]
    if memory:
        print(
            f"memory needed at n_ctx={memory['n_ctx']} a lane, {memory['n_seq']} lanes: about "
            f"{models.format_size(memory['total_bytes'])} (weights "
            f"{models.format_size(memory['weights_bytes'])} + KV cache "
            f"{models.format_size(memory['kv_cache_bytes'])})"
        )
        if memory["gpu_layers"]:
            print(
                f"  with {memory['gpu_layers']}/{memory['layers']} layers on the GPU: "
                f"{models.format_size(memory['vram_bytes'])} VRAM, "
                f"{models.format_size(memory['ram_bytes'])} RAM"
            )
    for problem in report["problems"]:
        print(f"problem: {problem}")
    for warning in report["warnings"]:
        print(f"warning: {warning}")
    for hint in report["hints"]:
        print(f"hint: {hint}")
    return 1 if report["problems"] else 0
