#!/bin/bash
# Build llama.cpp's own C++ server, `llama-server`, from the llama.cpp that the llama-cpp-python
# sdist vendors, for `localpref bench --server --baseline llama-server`: the same llama.cpp code
# as localpref's engine, without Python. CPU only, -march=native (GGML_NATIVE, as pip's build
# of llama-cpp-python), Release; tests, examples, the app and the web UI off (the UI is not
# downloaded either: the machine may be offline). Your own CMAKE_ARGS come last, so they win.
#
# The binary is kept once per machine and version, under
#   ${LOCALPREF_CACHE:-${XDG_CACHE_HOME:-~/.cache}/localpref}/llama-server/<version>/llama-server
# and a second run only prints that path. The sdist comes through pip (and so through its
# index or mirror): pip download --no-binary :all: --no-deps llama-cpp-python==<version>.
#
#   scripts/build-llama-server.sh [--version V] [--cache-dir DIR] [--jobs N] [--force]
#                                 [--print-path] [--dry-run]
#
# The last line on stdout is the binary's path. A build takes 10-20 minutes on 2 cores;
# run it under `nice` on a shared machine.
set -euo pipefail

VERSION=0.3.36  # llama-cpp-python's version in pyproject.toml
CACHE_DIR=${LOCALPREF_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/localpref}/llama-server
JOBS=$(nproc 2>/dev/null || echo 2)
FORCE=0
PRINT_PATH=0
DRY_RUN=0
PYTHON=${PYTHON:-}

usage() {
  sed -n '2,/^set -euo/p' "$0" | sed '$d' | sed 's/^# \{0,1\}//'
}

fail() {  # one plain sentence, exit 2 (bad arguments) as the CLI does
  echo "build-llama-server: $1" >&2
  exit 2
}

while [ $# -gt 0 ]; do
  case $1 in
    -h|--help) usage; exit 0 ;;
    --version|--cache-dir|--jobs)
      [ $# -ge 2 ] && [ -n "$2" ] || fail "$1 needs a value."
      case $1 in
        --version) VERSION=$2 ;;
        --cache-dir) CACHE_DIR=$2 ;;
        --jobs) JOBS=$2 ;;
      esac
      shift 2 ;;
    --force) FORCE=1; shift ;;
    --print-path) PRINT_PATH=1; shift ;;
    --dry-run) DRY_RUN=1; shift ;;
    *) fail "unknown argument '$1' (see --help)." ;;
  esac
done

[[ $VERSION =~ ^[0-9]+(\.[0-9]+)*$ ]] || fail "--version takes a version such as 0.3.36 (got '$VERSION')."
[[ $JOBS =~ ^[1-9][0-9]*$ ]] || fail "--jobs takes a whole number of 1 or more (got '$JOBS')."

TARGET=$CACHE_DIR/$VERSION/llama-server
CMAKE_FLAGS=(
  -DCMAKE_BUILD_TYPE=Release -DBUILD_SHARED_LIBS=OFF -DGGML_NATIVE=ON
  -DLLAMA_BUILD_COMMON=ON -DLLAMA_BUILD_TOOLS=ON -DLLAMA_BUILD_SERVER=ON
  -DLLAMA_BUILD_EXAMPLES=OFF -DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_APP=OFF
  -DLLAMA_BUILD_UI=OFF -DLLAMA_USE_PREBUILT_UI=OFF -DLLAMA_OPENSSL=OFF
)
# shellcheck disable=SC2206 - CMAKE_ARGS is a list of flags, split on spaces as pip does
EXTRA=(${CMAKE_ARGS:-})

if [ $PRINT_PATH = 1 ]; then
  echo "$TARGET"
  exit 0
fi
if [ $DRY_RUN = 1 ]; then
  echo "pip download --no-binary :all: --no-deps llama-cpp-python==$VERSION"
  echo "cmake -S <sdist>/vendor/llama.cpp -B <build> ${CMAKE_FLAGS[*]} ${EXTRA[*]:-}"
  echo "cmake --build <build> --target llama-server -j $JOBS"
  echo "$TARGET"
  exit 0
fi
if [ -x "$TARGET" ] && [ $FORCE = 0 ]; then
  echo "$TARGET"
  exit 0
fi

if [ -z "$PYTHON" ]; then
  ROOT=$(cd "$(dirname "$0")/.." && pwd)
  if [ -x "$ROOT/.venv/bin/python" ]; then PYTHON=$ROOT/.venv/bin/python; else PYTHON=python3; fi
fi
command -v cmake >/dev/null || fail "cmake is not installed."

WORK=$(mktemp -d "${TMPDIR:-/tmp}/llama-server-build.XXXXXX")
trap 'rm -rf "$WORK"' EXIT
echo "build-llama-server: fetching the llama-cpp-python $VERSION sdist" >&2
"$PYTHON" -m pip download --quiet --no-binary :all: --no-deps \
  "llama-cpp-python==$VERSION" -d "$WORK" >&2
tar -xzf "$WORK"/llama_cpp_python-"$VERSION".tar.gz -C "$WORK"
SOURCE=$WORK/llama_cpp_python-$VERSION/vendor/llama.cpp
[ -f "$SOURCE/CMakeLists.txt" ] || fail "the sdist has no vendored llama.cpp at $SOURCE."

GENERATOR=()
command -v ninja >/dev/null && GENERATOR=(-G Ninja)
echo "build-llama-server: configuring and building (-j $JOBS)" >&2
cmake -S "$SOURCE" -B "$WORK/build" "${GENERATOR[@]}" "${CMAKE_FLAGS[@]}" "${EXTRA[@]}" >&2
cmake --build "$WORK/build" --target llama-server -j "$JOBS" >&2

mkdir -p "$(dirname "$TARGET")"
cp "$WORK/build/bin/llama-server" "$TARGET.partial"
mv "$TARGET.partial" "$TARGET"  # whole or absent, for a second run
echo "$TARGET"
