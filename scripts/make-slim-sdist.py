#!/usr/bin/env python3
"""Make the slim llama-cpp-python source tarball (and the small wheels) that
``scripts/gpu-check.sh`` builds and installs on a machine without network.

The PyPI sdist of llama-cpp-python 0.3.36 is ~77 MB (vendored model vocabularies, docs, tests,
tools, a .git folder and every ggml back-end); a run on the GPU machine may carry 64 MiB in all.
This keeps only what ``pip install`` needs to build libllama and libggml with the CPU and CUDA
back-ends under the Makefile's LLAMA_CMAKE_ARGS (no llama-common, no mtmd, no tools): the
package's Python code and build files, and llama.cpp's build files, include/, src/, ggml/
without the other back-ends, and vendor/ without miniaudio's header (only mtmd includes it).

    python scripts/make-slim-sdist.py                    # downloads the sdist and the wheels
    python scripts/make-slim-sdist.py --sdist FILE.tar.gz --no-wheels --out DIR

Output (default ``gpu-check/``, ignored by git, carried to the GPU machine):
``llama_cpp_python-0.3.36.tar.gz`` (same top folder and name as the sdist, so pip builds it
like the original) and ``wheels/`` (pure-Python wheels localpref and llama-cpp-python import
that the GPU machine lacks). The tarball is deterministic: same input, same bytes.
"""

from __future__ import annotations

import argparse
import gzip
import io
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path, PurePosixPath

VERSION = "0.3.36"
SDIST_NAME = f"llama_cpp_python-{VERSION}.tar.gz"
#: The size the slim tarball must stay under: the run carries 64 MiB in all, the working tree
#: and the wheels included.
SIZE_LIMIT = 32 * 1024 * 1024
#: Pure-Python wheels the GPU machine lacks (it has numpy, numba, jinja2, huggingface-hub,
#: pyyaml, requests, tqdm): gguf for localpref.synthetic, diskcache for ``import llama_cpp``,
#: typing_extensions in case huggingface-hub did not bring it.
WHEELS = ("gguf==0.19.0", "diskcache==5.6.3", "typing_extensions==4.16.0")

#: Kept at the top of the sdist (a folder keeps everything under it).
KEEP_TOP = {"CMakeLists.txt", "pyproject.toml", "PKG-INFO", "README.md", "LICENSE.md", "llama_cpp"}
#: Kept under vendor/llama.cpp/.
KEEP_LLAMA = {"CMakeLists.txt", "LICENSE", "cmake", "include", "src", "ggml", "vendor", "licenses"}
#: ggml back-ends (folders ggml/src/ggml-NAME) that are built; the others are dropped.
KEEP_BACKENDS = {"ggml-cpu", "ggml-cuda"}
#: Files dropped although their folder is kept (relative to vendor/llama.cpp/).
DROP_FILES = {"vendor/miniaudio/miniaudio.h"}


def keep(name: str) -> bool:
    """Whether an sdist member (path with the top folder) belongs in the slim tarball."""
    parts = PurePosixPath(name).parts[1:]
    if not parts:
        return True  # the top folder itself
    if ".git" in parts or "__pycache__" in parts:
        return False
    if parts[0] != "vendor":
        return parts[0] in KEEP_TOP
    if len(parts) == 1:
        return True
    if parts[1] != "llama.cpp":
        return False
    inner = parts[2:]
    if not inner:
        return True
    if inner[0] not in KEEP_LLAMA or "/".join(inner) in DROP_FILES:
        return False
    backend = inner[2:3]
    if inner[:2] == ("ggml", "src") and len(inner) > 3 and backend[0].startswith("ggml-"):
        return backend[0] in KEEP_BACKENDS
    return True


def slim(source: Path, target: Path) -> tuple[int, int]:
    """Write the kept members of ``source`` to ``target`` (gzip, no timestamps in the gzip
    header, owners cleared); return (members kept, members dropped)."""
    kept = dropped = 0
    target.parent.mkdir(parents=True, exist_ok=True)
    partial = target.with_name(f".{target.name}.partial")
    with (
        tarfile.open(source, "r:gz") as tar_in,
        open(partial, "wb") as raw,
        gzip.GzipFile(filename="", mode="wb", fileobj=raw, mtime=0, compresslevel=9) as zipped,
        tarfile.open(fileobj=zipped, mode="w", format=tarfile.PAX_FORMAT) as tar_out,
    ):
        for member in tar_in:
            if not keep(member.name):
                dropped += 1
                continue
            member.uid = member.gid = 0
            member.uname = member.gname = ""
            data = tar_in.extractfile(member) if member.isfile() else None
            tar_out.addfile(member, io.BytesIO(data.read()) if data else None)
            kept += 1
    partial.replace(target)
    return kept, dropped


def download(what: list[str], folder: Path, *, source: bool) -> None:
    """``pip download`` into ``folder`` (the sdist: ``--no-binary :all:``; wheels: only
    pure-Python ones)."""
    kind = ["--no-binary", ":all:"] if source else ["--only-binary", ":all:"]
    subprocess.run([sys.executable, "-m", "pip", "download", "--quiet", "--no-deps", *kind,
                    "-d", str(folder), *what], check=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sdist", type=Path, default=None,
                        help=f"the PyPI {SDIST_NAME} (default: download it with pip)")
    parser.add_argument("--out", type=Path, default=Path("gpu-check"),
                        help="output folder (default gpu-check/)")
    parser.add_argument("--no-wheels", action="store_true", help="do not download the wheels")
    parser.add_argument("--max-mib", type=float, default=SIZE_LIMIT / 2**20,
                        help=f"refuse a tarball over this size (default {SIZE_LIMIT // 2**20})")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as scratch:
        source = args.sdist
        if source is None:
            download([f"llama-cpp-python=={VERSION}"], Path(scratch), source=True)
            source = Path(scratch) / SDIST_NAME
        target = args.out / SDIST_NAME
        kept, dropped = slim(source, target)
    size = target.stat().st_size
    print(f"{target}: {size / 2**20:.1f} MiB ({kept} members kept, {dropped} dropped)")
    if size > args.max_mib * 2**20:
        print(f"make-slim-sdist: {target} is over {args.max_mib:g} MiB.", file=sys.stderr)
        return 1
    if not args.no_wheels:
        wheels = args.out / "wheels"
        download(list(WHEELS), wheels, source=False)
        print(f"{wheels}: {', '.join(sorted(path.name for path in wheels.glob('*.whl')))}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
