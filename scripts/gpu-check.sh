#!/usr/bin/env bash
# The whole GPU measurement in one command, on a machine with an NVIDIA GPU and no network,
# from the working tree alone (docs/performance.md, "GPU"):
#
#   scripts/gpu-check.sh OUTDIR [all|build|run]
#
# Stages, each timed with its own time budget (`timeout`), results in OUTDIR:
#   venv        a virtualenv (WORK/venv) that sees the machine's packages (numpy, numba, ...)
#   wheels      the carried pure-Python wheels (gpu-check/wheels) the machine lacks
#   build       llama-cpp-python 0.3.36 from gpu-check/llama_cpp_python-0.3.36.tar.gz (the slim
#               sdist of scripts/make-slim-sdist.py, unpacked in WORK/src) with the Makefile's LLAMA_CMAKE_ARGS plus
#               -DGGML_CUDA=on -DCMAKE_CUDA_ARCHITECTURES=90; the CMake build folder stays in
#               WORK, so running the script again resumes a build cut off by its budget
#   localpref   localpref itself, --no-deps (its own .pth when setuptools is missing)
#   doctor      localpref doctor --gpu-layers -1 --json on the first synthetic model
#   models      synthetic models written there (localpref.synthetic, random weights, Q4_0):
#               135m (the bundled SmolLM2-135M's shape: the bundled GGUF is 98 MB, over what a
#               run may carry) and 1b (1.2B parameters)
#   bench-S     localpref bench --gpu-layers -1 --json --concurrent 1,2,4,8 on shape S (every
#               method, kernels, chat, compare, 1/2/4/8 lanes in one decode, concurrent requests)
#   exactness-S localpref bench --exactness: each lane of 2, 4 and 8 lanes in one decode against
#               the same lane alone over 256 greedy steps (bit-exact, or the largest difference
#               and how often the greedy token differs)
# `build` runs venv..build, `run` the rest, `all` (default) both; a stage that is already done
# (the venv, llama-cpp-python built for this back-end, a model file, a result: handed back
# again) is not done again, so rerunning the same command continues where the last one stopped
# (on the same machine: WORK is an ignored folder of the working tree). The script stops itself
# GPU_CHECK_TOTAL_S seconds after it starts (default 570: inside the 10-minute limit of one call).
#
# Every localpref command runs under `python -X faulthandler` (a crash prints every thread's
# Python stack). After the first command that crashes, two stages look closer, once per call
# (in log.txt): `probe`, scripts/gpu-probe.py on the first synthetic model (each step of
# loading and decoding, llama-cpp-python alone and then localpref's classes, in its own
# process: the first step that fails), and `backtrace`, the crashed command once more under
# cuda-gdb (gdb on a CPU machine), when there is one, for the native stack. A call where
# nothing crashes spends no time on them.
#
# OUTDIR gets at most 7 files: stages.tsv (stage, budget s, seconds, exit code), log.txt (the
# machine, every stage's output, the summary), doctor.json, bench-135m.json, bench-1b.json,
# exactness-135m.json, exactness-1b.json. The summary is also printed at the end.
#
# CPU rehearsal (no GPU): GPU_CHECK_CUDA=0 builds without CUDA and scales the stages down
# (shapes 135m and tiny, 8 tokens, 1 repeat, 16 exactness steps, budgets for 2 cores).
# Other settings: GPU_CHECK_PYTHON (default python3), GPU_CHECK_WORK (default
# build/gpu-check: venv, CMake build folder, models), GPU_CHECK_FILES (default gpu-check),
# GPU_CHECK_SHAPES, GPU_CHECK_TOKENS, GPU_CHECK_REPEAT, GPU_CHECK_STEPS, GPU_CHECK_CONCURRENT,
# GPU_CHECK_TOTAL_S, GPU_CHECK_BUILD_S.
set -u

if [ $# -lt 1 ] || [ $# -gt 2 ]; then
    echo "usage: scripts/gpu-check.sh OUTDIR [all|build|run]" >&2
    exit 2
fi
WHAT=${2:-all}
case $WHAT in all|build|run) ;; *) echo "gpu-check: unknown part '$WHAT'" >&2; exit 2 ;; esac

REPO=$(cd "$(dirname "$0")/.." && pwd)
mkdir -p "$1" && OUT=$(cd "$1" && pwd)
CUDA=${GPU_CHECK_CUDA:-1}
PYTHON=${GPU_CHECK_PYTHON:-python3}
WORK=${GPU_CHECK_WORK:-$REPO/build/gpu-check}
FILES=${GPU_CHECK_FILES:-$REPO/gpu-check}
VENV=$WORK/venv
MODELS=$WORK/models
if [ "$CUDA" = 1 ]; then
    SHAPES=${GPU_CHECK_SHAPES:-135m 1b}; TOKENS=${GPU_CHECK_TOKENS:-96}
    REPEAT=${GPU_CHECK_REPEAT:-3}; STEPS=${GPU_CHECK_STEPS:-256}
    TOTAL_S=${GPU_CHECK_TOTAL_S:-570}; BUILD_S=${GPU_CHECK_BUILD_S:-540}
    BENCH_S=240; EXACT_S=120; MODELS_S=150; PROBE_S=120
else
    SHAPES=${GPU_CHECK_SHAPES:-135m tiny}; TOKENS=${GPU_CHECK_TOKENS:-8}
    REPEAT=${GPU_CHECK_REPEAT:-1}; STEPS=${GPU_CHECK_STEPS:-16}
    TOTAL_S=${GPU_CHECK_TOTAL_S:-5400}; BUILD_S=${GPU_CHECK_BUILD_S:-3600}
    BENCH_S=1200; EXACT_S=600; MODELS_S=600; PROBE_S=600
fi
CONCURRENT=${GPU_CHECK_CONCURRENT:-1,2,4,8}
SDIST=$FILES/llama_cpp_python-0.3.36.tar.gz
LOG=$OUT/log.txt
STAGES=$OUT/stages.tsv
STARTED=$(date +%s)
DEADLINE=$((STARTED + TOTAL_S))
export PYTHONUNBUFFERED=1
export REPO OUT CUDA PYTHON WORK FILES VENV MODELS SHAPES TOKENS REPEAT STEPS CONCURRENT SDIST LOG
mkdir -p "$WORK" "$MODELS"
[ -f "$STAGES" ] || printf 'stage\tbudget_s\tseconds\texit\n' > "$STAGES"

say() { echo "gpu-check: $*" | tee -a "$LOG"; }

# stage NAME BUDGET_S COMMAND...: run it under `timeout` (capped by the deadline), its output
# appended to log.txt, one line in stages.tsv; returns the command's exit code (124: timed out).
stage() {
    local name=$1 budget=$2; shift 2
    local left=$((DEADLINE - $(date +%s) - 5))
    if [ "$left" -lt "$budget" ]; then budget=$left; fi
    if [ "$budget" -lt 5 ]; then
        say "$name: skipped, no time left"
        printf '%s\t%s\t%s\t%s\n' "$name" 0 0 skipped >> "$STAGES"
        return 125
    fi
    say "$name: start (budget ${budget}s)"
    local begin end code
    begin=$(date +%s.%N)
    # The stage's shell functions reach the child shell through `export -f` (end of file).
    timeout --kill-after=10 "$budget" bash -c '"$@"' "$name" "$@" >> "$LOG" 2>&1
    code=$?
    end=$(date +%s.%N)
    local seconds
    seconds=$(awk -v a="$begin" -v b="$end" 'BEGIN { printf "%.1f", b - a }')
    printf '%s\t%s\t%s\t%s\n' "$name" "$budget" "$seconds" "$code" >> "$STAGES"
    say "$name: exit $code after ${seconds}s"
    return $code
}

# A command whose stdout is a JSON result file (stderr to the log).
to_json() { local target=$1; shift; "$@" > "$target"; }

# result NAME BUDGET_S COMMAND...: a stage whose stdout is OUTDIR/NAME.json. A result already
# made by an earlier call on this machine (WORK/results) is handed back again, not remade.
result() {
    local name=$1 budget=$2; shift 2
    local kept=$WORK/results/$name.json
    mkdir -p "$WORK/results"
    if [ -s "$kept" ]; then
        cp "$kept" "$OUT/$name.json"
        say "$name: result of an earlier call handed back"
        printf '%s\t%s\t%s\t%s\n' "$name" 0 0 reused >> "$STAGES"
        return 0
    fi
    stage "$name" "$budget" to_json "$OUT/$name.json" "$@"
    local code=$?
    # A crash (SIGSEGV 139, SIGABRT 134): where it happens, once per call.
    if { [ $code = 139 ] || [ $code = 134 ]; } && [ -z "${CRASH_SEEN:-}" ] &&
        [ "$1" = localpref ]; then
        CRASH_SEEN=1
        shift
        stage probe "$PROBE_S" probe "$MODELS/synthetic-${SHAPES%% *}-q4_0.gguf" 60
        stage backtrace 120 backtrace "$@"
    fi
    if "$PYTHON" -c 'import json, sys; json.load(open(sys.argv[1]))' "$OUT/$name.json" \
        2> /dev/null; then
        cp "$OUT/$name.json" "$kept"
    fi
    return $code
}

machine() {
    echo "date: $(date -u)"; echo "uname: $(uname -a)"
    echo "cores: $(nproc)"; echo "python: $("$PYTHON" --version 2>&1)"
    echo "cmake: $(cmake --version 2>&1 | head -1)"; echo "ninja: $(ninja --version 2>&1)"
    if [ "$CUDA" = 1 ]; then
        nvidia-smi 2>&1 || true
        nvcc --version 2>&1 | tail -2
    fi
    echo "GPU_CHECK_CUDA=$CUDA shapes=$SHAPES tokens=$TOKENS repeat=$REPEAT steps=$STEPS"
}

make_venv() {
    if [ ! -x "$VENV/bin/python" ]; then
        "$PYTHON" -m venv --system-site-packages "$VENV" ||
            "$PYTHON" -m venv --system-site-packages --without-pip "$VENV" || return 1
    fi
    # The packages of the Python that made the venv, even when that Python is a venv itself.
    local site
    site=$("$VENV/bin/python" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')
    "$PYTHON" -c 'import sysconfig
paths = sysconfig.get_paths()
print(paths["purelib"]); print(paths["platlib"])' > "$site/_gpu_check_parent.pth"
    "$VENV/bin/python" -m pip --version
    "$VENV/bin/python" -c 'import numpy, numba, jinja2, huggingface_hub; print("numpy",
numpy.__version__, "numba", numba.__version__)'
}

install_wheels() {
    local wheel module
    for wheel in "$FILES"/wheels/*.whl; do
        module=$(basename "$wheel"); module=${module%%-*}
        if "$VENV/bin/python" -c "import $module" 2>/dev/null; then
            echo "$module: present"
        else
            "$VENV/bin/python" -m pip install --no-index --no-deps --no-cache-dir "$wheel" ||
                return 1
        fi
    done
}

# The Makefile's LLAMA_CMAKE_ARGS, continuation lines joined, $(abspath X) made absolute.
makefile_cmake_args() {
    "$PYTHON" - "$REPO" <<'EOF'
import re, sys
from pathlib import Path
repo = Path(sys.argv[1])
text = (repo / "Makefile").read_text().replace("\\\n", " ")
match = re.search(r"^LLAMA_CMAKE_ARGS\s*:?=(.*)$", text, re.MULTILINE)
if not match:
    sys.exit("gpu-check: no LLAMA_CMAKE_ARGS in the Makefile")
print(re.sub(r"\$\(abspath ([^)]+)\)", lambda m: str(repo / m.group(1)), " ".join(match.group(1).split())))
EOF
}

# The installed llama-cpp-python, if it has this run's back-end (GPU offload when CUDA=1).
built() {
    "$VENV/bin/python" - "$CUDA" <<'EOF' 2>/dev/null
import sys
import llama_cpp
offload = bool(llama_cpp.llama_supports_gpu_offload())
sys.exit(0 if llama_cpp.__version__ == "0.3.36" and offload == (sys.argv[1] == "1") else 1)
EOF
}

build_llama() {
    local args
    args=$(makefile_cmake_args) || return 1
    if [ "$CUDA" = 1 ]; then
        if ! command -v nvcc > /dev/null && [ -x /usr/local/cuda/bin/nvcc ]; then
            export PATH=/usr/local/cuda/bin:$PATH
        fi
        args="$args -DGGML_CUDA=on -DCMAKE_CUDA_ARCHITECTURES=90"
    fi
    echo "CMAKE_ARGS=$args"
    # Unpacked to a fixed folder (pip would copy a tarball to a new temporary folder each time,
    # which the CMake cache of a resumed build refuses).
    if [ ! -f "$WORK/src/llama_cpp_python-0.3.36/pyproject.toml" ]; then
        mkdir -p "$WORK/src" && tar -xzf "$SDIST" -C "$WORK/src" || return 1
    fi
    CMAKE_ARGS="$args" CMAKE_BUILD_PARALLEL_LEVEL=$(nproc) \
        "$VENV/bin/python" -m pip install --no-deps --no-build-isolation --no-index \
        --no-cache-dir --force-reinstall -v --config-settings=build-dir="$WORK/cmake-build" \
        "$WORK/src/llama_cpp_python-0.3.36" > "$WORK/build.log" 2>&1
    local code=$?
    grep -E -i "error|warning: .*cuda" "$WORK/build.log" | head -40
    tail -n 25 "$WORK/build.log"
    [ $code = 0 ] && built && echo "llama-cpp-python 0.3.36 built (GGML_CUDA=$CUDA)"
}

install_localpref() {
    # A regular install needs setuptools 68 or later (no build isolation: no network), which a
    # bare Python 3.12 venv lacks: then a .pth file puts the working tree on the path, as an
    # editable install would.
    if "$VENV/bin/python" -m pip install --no-deps --no-build-isolation --no-index \
        --no-cache-dir "$REPO"; then
        echo "localpref installed"
    else
        local site
        site=$("$VENV/bin/python" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')
        echo "$REPO" > "$site/localpref-worktree.pth"
        echo "pip could not install localpref here (setuptools missing or older than 68):" \
            "it is imported from $REPO (localpref-worktree.pth)"
    fi
    # The server and the app (fastapi, uvicorn, textual) are not on the GPU machine; the CLI's
    # doctor and bench must not need them.
    (cd "$WORK" && "$VENV/bin/python" -m localpref.cli --help > /dev/null) &&
        (cd "$WORK" && "$VENV/bin/python" -c 'import sys, localpref, localpref.cli
print("localpref from", localpref.__file__)
for name in ("fastapi", "uvicorn", "starlette", "textual"):
    print(name, "imported" if name in sys.modules else "not imported")')
}

localpref() { (cd "$WORK" && "$VENV/bin/python" -X faulthandler -m localpref.cli "$@"); }

probe() {
    "$VENV/bin/python" "$REPO/scripts/gpu-probe.py" --model "$1" --gpu-layers -1 --timeout "$2"
}

# The native stack of a command that crashed: the command once more under a debugger.
backtrace() {
    local debugger
    debugger=$(command -v cuda-gdb || command -v gdb) || {
        echo "no cuda-gdb or gdb here: no native stack"; return 1; }
    (cd "$WORK" && LOCALPREF_DEBUG=1 "$debugger" -q -batch -ex run -ex bt \
        -ex "thread apply all bt 12" --args "$VENV/bin/python" -m localpref.cli "$@")
}

write_model() { (cd "$WORK" && "$VENV/bin/python" -m localpref.synthetic "$MODELS" --shape "$1"); }

summary() {
    "$VENV/bin/python" - "$OUT" <<'EOF'
import json, sys
from pathlib import Path
out = Path(sys.argv[1])
for path in sorted(out.glob("bench-*.json")):
    try:
        r = json.loads(path.read_text())
    except ValueError:
        print(f"{path.name}: no result"); continue
    print(f"{path.name}: {r['model']} V={r['vocab_size']} {r['model_size_mb']} MB, "
          f"{r['threads']} threads, {r['max_tokens']} tokens x {r['repeat']}")
    for name, m in r["methods"].items():
        print(f"  {name:<13} {m['tokens_per_s']:8.1f} tok/s  x base {m['ratio_to_base']:.2f}  "
              f"step {m['step_ms']:.2f} ms  steer {m['steer_ms_per_token']:.3f} ms "
              f"({m['steer_share'] * 100:.1f} %)")
    lanes = r["lanes"]
    print("  lanes: " + ", ".join(f"{k} {v:.2f} ms (x{lanes['cost_vs_1_lane'][k]:.2f})"
                                   for k, v in lanes["ms_per_step"].items()))
    for count, c in (r.get("concurrent") or {}).items():
        print(f"  concurrent {count}: {c['aggregate_tokens_per_s']:.1f} tok/s together, "
              f"{c['sequential_tokens_per_s']:.1f} one by one (x{c['speedup']:.2f}), "
              f"joiner's first token {c['ttft_ms']:.0f} ms")
for path in sorted(out.glob("exactness-*.json")):
    try:
        r = json.loads(path.read_text())
    except ValueError:
        print(f"{path.name}: no result"); continue
    cells = []
    for size, row in r["batches"].items():
        cells.append(f"{size} lanes " + ("bit-exact" if row["bit_exact"] else
                     f"max |diff| {row['max_abs_diff']:.3g}, greedy differs "
                     f"{row['greedy_disagreements']}/{int(size) * r['steps']}"))
    print(f"{path.name}: {r['model']}, {r['steps']} steps: " + "; ".join(cells))
EOF
}

run_build() {
    stage machine 30 machine
    stage venv 120 make_venv || return 1
    stage wheels 60 install_wheels || return 1
    if built; then
        say "build: llama-cpp-python 0.3.36 already built (GGML_CUDA=$CUDA)"
    else
        stage build "$BUILD_S" build_llama || return 1
    fi
}

run_measurements() {
    built || { say "llama-cpp-python is not built: run the build part first"; return 1; }
    stage localpref 120 install_localpref || return 1
    local shape first
    first=${SHAPES%% *}
    for shape in $SHAPES; do
        stage "model-$shape" "$MODELS_S" write_model "$shape" || return 1
    done
    result doctor 60 localpref doctor --gpu-layers -1 --json \
        --model "$MODELS/synthetic-$first-q4_0.gguf"
    # The larger model first: its figures are the targets (two lanes at most 1.2x one lane,
    # the recommended at least 0.8x Base, steering under 10 % of a step).
    local kernels="" order=""
    for shape in $SHAPES; do order="$shape $order"; done
    for shape in $order; do
        if [ "$shape" != "$first" ]; then kernels="--kernel-sizes 49152"; else kernels=""; fi
        # shellcheck disable=SC2086
        result "bench-$shape" "$BENCH_S" localpref bench --synthetic "$shape" \
            --synthetic-dir "$MODELS" --gpu-layers -1 --json --max-tokens "$TOKENS" \
            --repeat "$REPEAT" --concurrent "$CONCURRENT" $kernels
        result "exactness-$shape" "$EXACT_S" localpref bench --exactness --synthetic "$shape" \
            --synthetic-dir "$MODELS" --gpu-layers -1 --json --max-tokens "$STEPS"
    done
    summary 2>&1 | tee -a "$LOG"
}

export -f say machine make_venv install_wheels makefile_cmake_args built build_llama \
    install_localpref localpref write_model to_json probe backtrace
main() {
    say "$WHAT in $OUT (GPU_CHECK_CUDA=$CUDA, work folder $WORK)"
    [ -f "$SDIST" ] || { say "no $SDIST: run scripts/make-slim-sdist.py here first"; return 1; }
    local code=0
    if [ "$WHAT" != run ]; then run_build || code=1; fi
    if [ $code = 0 ] && [ "$WHAT" != build ]; then run_measurements || code=1; fi
    say "done in $(($(date +%s) - STARTED)) s, exit $code"
    column -t -s "$(printf '\t')" "$STAGES" 2>/dev/null || cat "$STAGES"
    return $code
}

# One call: bash has read the whole script before it runs (safe while the file is edited).
main; exit $?
