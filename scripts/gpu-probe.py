#!/usr/bin/env python3
"""Where a crash on a GPU machine happens: each step of loading and decoding, alone, in a fresh
process (``python -X faulthandler``), so that a segfault ends one step and the table shows the
first step that fails (scripts/gpu-check.sh runs this before its benchmarks).

    python scripts/gpu-probe.py --model PATH [--gpu-layers N] [--lanes L] [--cells C]
                                [--timeout S] [--json]

Steps, each doing everything the steps above it do (``raw-*``: llama-cpp-python alone, with
the parameters localpref's engine uses; ``lp-*``: localpref's own classes):

    raw-load      llama_backend_init, the model loaded (n_gpu_layers N, no extra buffer types)
    raw-context   a context: L sequences (default 16, as `bench --concurrent 8`) of C cells
                  (default 4096) each, flash attention on, kv_unified off
    raw-decode    8 prompt tokens on sequence 0, copied to the others, then one token for
                  each of the L sequences in one decode, the logits read
    raw-callback  raw-decode with a Python log callback set first (as the engine does)
    raw-fa-auto   raw-decode with flash attention left to llama.cpp (run when raw-decode fails)
    raw-unified   raw-decode with kv_unified on (run when raw-decode fails)
    raw-small     raw-decode with 2 sequences of 512 cells (run when raw-decode fails)
    lp-load       localpref.engine.LoadedModel
    lp-decode     a Context (L lanes of C cells), the lanes prefilled and stepped, logits read
    lp-warmup     lp-decode, then every hot-path kernel compiled (localpref.warmup)
    lp-generate   localpref.load(...).generate(...): 8 tokens, steered toward "concise"

Prints one line per step (ok, or the exit code and the last lines of its output) and exits 1
when a step fails. ``--step NAME`` runs one step in this process (what each child does).
"""

from __future__ import annotations

import argparse
import ctypes
import json
import subprocess
import sys
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path

PROMPT = [1, 2, 3, 4, 5, 6, 7, 8]

#: step -> the steps whose failure makes it worth running (empty: always run)
ONLY_AFTER_FAILURE = {"raw-fa-auto": "raw-decode", "raw-unified": "raw-decode",
                      "raw-small": "raw-decode"}


def _quiet_log(level: int, text: bytes, user_data: ctypes.c_void_p) -> None:
    """Errors only (ggml's level 4), as the engine's own callback does: a Python function that
    llama.cpp calls back into, which the lp-* steps then use through the engine itself."""
    if level == 4:
        sys.stderr.write(text.decode("utf-8", errors="replace"))


def _raw(model: Path, gpu_layers: int, lanes: int, cells: int, *, until: str,
         callback: bool = False, flash: str = "enabled", unified: bool = False) -> str:
    """llama-cpp-python alone, up to ``until`` ("load", "context" or "decode")."""
    import llama_cpp
    import numpy as np

    if callback:
        handler = llama_cpp.llama_log_callback(_quiet_log)
        _raw.handler = handler  # type: ignore[attr-defined]  # kept alive for the process
        llama_cpp.llama_log_set(handler, ctypes.c_void_p(0))
    llama_cpp.llama_backend_init()
    params = llama_cpp.llama_model_default_params()
    params.n_gpu_layers = gpu_layers
    params.use_extra_bufts = False
    handle = llama_cpp.llama_model_load_from_file(str(model).encode(), params)
    if not handle:
        raise SystemExit("llama_model_load_from_file returned NULL")
    if until == "load":
        return f"loaded, {llama_cpp.llama_model_n_params(handle)} weights"
    context_params = llama_cpp.llama_context_default_params()
    context_params.n_ctx = cells * lanes
    context_params.n_batch = context_params.n_ubatch = 512
    context_params.n_seq_max = lanes
    context_params.kv_unified = unified
    context_params.flash_attn_type = (llama_cpp.LLAMA_FLASH_ATTN_TYPE_ENABLED if flash == "enabled"
                                      else llama_cpp.LLAMA_FLASH_ATTN_TYPE_AUTO)
    context_params.no_perf = True
    context = llama_cpp.llama_init_from_model(handle, context_params)
    if not context:
        raise SystemExit("llama_init_from_model returned NULL")
    if until == "context":
        return "context made"
    vocab_size = llama_cpp.llama_vocab_n_tokens(llama_cpp.llama_model_get_vocab(handle))
    batch = llama_cpp.llama_batch_init(512, 0, 1)
    for i, token in enumerate(PROMPT):
        batch.token[i], batch.pos[i], batch.n_seq_id[i] = token, i, 1
        batch.seq_id[i][0], batch.logits[i] = 0, i == len(PROMPT) - 1
    batch.n_tokens = len(PROMPT)
    if llama_cpp.llama_decode(context, batch) != 0:
        raise SystemExit("the prompt's decode failed")
    first = np.ctypeslib.as_array(llama_cpp.llama_get_logits_ith(context, -1),
                                  shape=(vocab_size,)).copy()
    for lane in range(1, lanes):  # the other sequences share the prompt's cells
        llama_cpp.llama_memory_seq_cp(llama_cpp.llama_get_memory(context), 0, lane, -1, -1)
    for lane in range(lanes):
        batch.token[lane], batch.pos[lane], batch.n_seq_id[lane] = int(first.argmax()), 8, 1
        batch.seq_id[lane][0], batch.logits[lane] = lane, True
    batch.n_tokens = lanes
    if llama_cpp.llama_decode(context, batch) != 0:
        raise SystemExit("the step's decode failed")
    rows = [np.ctypeslib.as_array(llama_cpp.llama_get_logits_ith(context, lane),
                                  shape=(vocab_size,)).copy() for lane in range(lanes)]
    finite = all(np.isfinite(row).all() for row in rows)
    return (f"decoded; lanes' argmax {[int(row.argmax()) for row in rows]}, "
            f"all finite: {finite}")


def _localpref(model: Path, gpu_layers: int, lanes: int, cells: int, *, until: str) -> str:
    """localpref's classes, up to ``until`` ("load", "decode", "warmup" or "generate")."""
    from localpref.engine import Context, LoadedModel

    if until == "generate":
        import localpref

        steered = localpref.load(model, n_gpu_layers=gpu_layers, max_lanes=2)
        try:
            answer = steered.generate("Say hello.", preference="concise", max_tokens=8,
                                      temperature=0.0)
        finally:
            steered.close()
        return f"generated {len(answer.tokens)} tokens: {answer.text!r}"
    loaded = LoadedModel(model, n_gpu_layers=gpu_layers)
    if until == "load":
        return f"loaded, {loaded.n_params} weights"
    context = Context(loaded, n_ctx=cells, max_lanes=lanes)
    opened = [context.open_lane() for _ in range(lanes)]
    context.prefill(opened, [PROMPT] * lanes)
    context.step(opened, [PROMPT[0]] * lanes)
    argmax = [int(context.logits(i).argmax()) for i in range(lanes)]
    if until == "warmup":
        from localpref.warmup import warmup

        started = time.perf_counter()
        warmup()
        return f"decoded (argmax {argmax}); kernels loaded in {time.perf_counter() - started:.1f} s"
    return f"decoded; lanes' argmax {argmax}"


#: step -> what it runs, given (model, gpu layers, lanes, cells per lane)
STEPS: dict[str, Callable[..., str]] = {
    "raw-load": partial(_raw, until="load"),
    "raw-context": partial(_raw, until="context"),
    "raw-decode": partial(_raw, until="decode"),
    "raw-callback": partial(_raw, until="decode", callback=True),
    "raw-fa-auto": partial(_raw, until="decode", flash="auto"),
    "raw-unified": partial(_raw, until="decode", unified=True),
    "raw-small": lambda model, layers, lanes, cells: _raw(model, layers, 2, 512, until="decode"),
    "lp-load": partial(_localpref, until="load"),
    "lp-decode": partial(_localpref, until="decode"),
    "lp-warmup": partial(_localpref, until="warmup"),
    "lp-generate": partial(_localpref, until="generate"),
}


def run_step(name: str, args: argparse.Namespace) -> dict[str, object]:
    """One step in a fresh ``python -X faulthandler`` process: its outcome."""
    command = [sys.executable, "-X", "faulthandler", str(Path(__file__).resolve()),
               "--step", name, "--model", str(args.model), "--gpu-layers", str(args.gpu_layers),
               "--lanes", str(args.lanes), "--cells", str(args.cells)]
    started = time.perf_counter()
    try:
        finished = subprocess.run(command, capture_output=True, text=True,
                                  timeout=args.timeout, errors="replace")
    except subprocess.TimeoutExpired:
        return {"step": name, "ok": False, "exit": "timeout",
                "seconds": round(time.perf_counter() - started, 1), "said": ""}
    if finished.returncode == 0:  # the step's own one line (llama.cpp logs on stderr)
        said = (finished.stdout.strip().splitlines() or [""])[-1]
    else:  # faulthandler's stacks and llama.cpp's last words
        said = "\n".join((finished.stdout + finished.stderr).strip().splitlines()[-25:])
    return {"step": name, "ok": finished.returncode == 0, "exit": finished.returncode,
            "seconds": round(time.perf_counter() - started, 1), "said": said}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", required=True, type=Path, help="a GGUF file")
    parser.add_argument("--gpu-layers", type=int, default=-1,
                        help="layers on the GPU (default -1: all)")
    parser.add_argument("--lanes", type=int, default=16,
                        help="sequences in the context (default 16)")
    parser.add_argument("--cells", type=int, default=4096,
                        help="cells of each sequence (default 4096)")
    parser.add_argument("--timeout", type=float, default=120.0,
                        help="seconds each step may take (default 120)")
    parser.add_argument("--step", choices=sorted(STEPS), help="run this step here, alone")
    parser.add_argument("--json", action="store_true", help="the outcomes as JSON")
    args = parser.parse_args(argv)
    if not args.model.is_file():
        parser.error(f"no model file {args.model}")
    if args.timeout <= 0:
        parser.error("--timeout must be more than 0")
    if args.lanes < 1 or args.cells < 16:
        parser.error("--lanes must be 1 or more and --cells 16 or more")
    if args.step:
        print(STEPS[args.step](args.model, args.gpu_layers, args.lanes, args.cells), flush=True)
        return 0
    outcomes: list[dict[str, object]] = []
    for name in STEPS:
        needed = ONLY_AFTER_FAILURE.get(name)
        if needed and all(o["ok"] for o in outcomes if o["step"] == needed):
            continue
        outcome = run_step(name, args)
        outcomes.append(outcome)
        if not args.json:
            state = "ok" if outcome["ok"] else f"FAILED (exit {outcome['exit']})"
            print(f"{name:<13} {state:<18} {outcome['seconds']:6.1f} s  "
                  + str(outcome["said"]).replace("\n", "\n" + " " * 16), flush=True)
    if args.json:
        print(json.dumps(outcomes))
    return 0 if all(o["ok"] for o in outcomes) else 1


if __name__ == "__main__":
    sys.exit(main())
