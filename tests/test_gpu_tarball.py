"""scripts/make-slim-sdist.py: what the slim llama-cpp-python tarball of scripts/gpu-check.sh
keeps and drops (from a fake sdist of the real layout; nothing is compiled), and the carried
files in gpu-check/."""

from __future__ import annotations

import importlib.util
import io
import os
import subprocess
import sys
import tarfile
from pathlib import Path
from types import ModuleType

import pytest

ROOT = Path(__file__).resolve().parents[1]
MAKER = ROOT / "scripts" / "make-slim-sdist.py"
TOP = "llama_cpp_python-0.3.36"
#: What a build of libllama + libggml (CPU, CUDA) needs, as the real sdist lays it out.
KEPT = [
    "CMakeLists.txt", "pyproject.toml", "PKG-INFO", "README.md", "LICENSE.md",
    "llama_cpp/__init__.py", "llama_cpp/llama_cpp.py", "llama_cpp/server/app.py",
    "vendor/llama.cpp/CMakeLists.txt", "vendor/llama.cpp/LICENSE",
    "vendor/llama.cpp/cmake/build-info.cmake", "vendor/llama.cpp/include/llama.h",
    "vendor/llama.cpp/src/llama.cpp", "vendor/llama.cpp/src/models/llama.cpp",
    "vendor/llama.cpp/ggml/CMakeLists.txt", "vendor/llama.cpp/ggml/include/ggml.h",
    "vendor/llama.cpp/ggml/src/CMakeLists.txt", "vendor/llama.cpp/ggml/src/ggml.c",
    "vendor/llama.cpp/ggml/src/ggml-backend-reg.cpp",
    "vendor/llama.cpp/ggml/src/ggml-cpu/ggml-cpu.c",
    "vendor/llama.cpp/ggml/src/ggml-cpu/arch/x86/quants.c",
    "vendor/llama.cpp/ggml/src/ggml-cuda/CMakeLists.txt",
    "vendor/llama.cpp/ggml/src/ggml-cuda/mmq.cu",
    "vendor/llama.cpp/ggml/src/ggml-cuda/template-instances/mmq-instance-q4_0.cu",
    "vendor/llama.cpp/vendor/CMakeLists.txt", "vendor/llama.cpp/vendor/miniaudio/CMakeLists.txt",
    "vendor/llama.cpp/vendor/nlohmann/json.hpp", "vendor/llama.cpp/licenses/LICENSE-jsonhpp",
]
#: Vendored models, docs, tests, tools, other back-ends, git history.
DROPPED = [
    ".git/HEAD", ".github/workflows/build.yaml", "CHANGELOG.md", "docs/index.md",
    "docker/Dockerfile", "examples/high_level_api/server.py", "tests/test_llama.py",
    "llama_cpp/__pycache__/llama.cpython-312.pyc",
    "vendor/llama.cpp/models/ggml-vocab-llama-bpe.gguf", "vendor/llama.cpp/docs/build.md",
    "vendor/llama.cpp/tests/test-backend-ops.cpp", "vendor/llama.cpp/tools/mtmd/mtmd.cpp",
    "vendor/llama.cpp/common/common.cpp", "vendor/llama.cpp/gguf-py/gguf/gguf.py",
    "vendor/llama.cpp/examples/simple/simple.cpp", "vendor/llama.cpp/README.md",
    "vendor/llama.cpp/ggml/src/ggml-vulkan/ggml-vulkan.cpp",
    "vendor/llama.cpp/ggml/src/ggml-metal/ggml-metal.m",
    "vendor/llama.cpp/ggml/src/ggml-sycl/CMakeLists.txt",
    "vendor/llama.cpp/ggml/src/ggml-blas/ggml-blas.cpp",
    "vendor/llama.cpp/vendor/miniaudio/miniaudio.h",
]
BIG = "vendor/llama.cpp/models/ggml-vocab-llama-bpe.gguf"


def _maker() -> ModuleType:
    spec = importlib.util.spec_from_file_location("make_slim_sdist", MAKER)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _fake_sdist(path: Path) -> Path:
    """A gzip tarball with the real sdist's top folder and paths; the vendored model is 2 MB of
    incompressible bytes, every other file names itself."""
    with tarfile.open(path, "w:gz") as tar:
        for name in sorted(KEPT + DROPPED):
            data = os.urandom(2 * 2**20) if name == BIG else f"{name}\n".encode()
            info = tarfile.TarInfo(f"{TOP}/{name}")
            info.size, info.mtime, info.uid, info.uname = len(data), 1_667_952_000, 1000, "dev"
            tar.addfile(info, io.BytesIO(data))
    return path


def _run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, str(MAKER), *args], capture_output=True, text=True,
                          check=False)


def test_the_slim_tarball_keeps_what_the_build_needs(tmp_path: Path) -> None:
    sdist = _fake_sdist(tmp_path / f"{TOP}.tar.gz")
    done = _run("--sdist", str(sdist), "--out", str(tmp_path / "out"), "--no-wheels")
    assert done.returncode == 0, done.stderr
    slim = tmp_path / "out" / f"{TOP}.tar.gz"
    assert f"{len(KEPT)} members kept, {len(DROPPED)} dropped" in done.stdout
    with tarfile.open(slim) as tar:
        members = tar.getmembers()
        assert sorted(m.name for m in members) == sorted(f"{TOP}/{name}" for name in KEPT)
        for member in members:
            assert tar.extractfile(member).read() == f"{member.name[len(TOP) + 1:]}\n".encode()
            assert (member.uid, member.uname, member.mtime) == (0, "", 1_667_952_000)
    assert slim.stat().st_size < 64 * 1024 < sdist.stat().st_size  # the 2 MB model is gone
    again = _run("--sdist", str(sdist), "--out", str(tmp_path / "again"), "--no-wheels")
    assert again.returncode == 0
    assert (tmp_path / "again" / slim.name).read_bytes() == slim.read_bytes()  # deterministic


def test_a_tarball_over_the_limit_is_refused(tmp_path: Path) -> None:
    sdist = tmp_path / f"{TOP}.tar.gz"
    with tarfile.open(sdist, "w:gz") as tar:
        data = os.urandom(2 * 2**20)
        info = tarfile.TarInfo(f"{TOP}/llama_cpp/big.bin")
        info.size = len(data)
        tar.addfile(info, io.BytesIO(data))
    done = _run("--sdist", str(sdist), "--out", str(tmp_path / "out"), "--no-wheels",
                "--max-mib", "1")
    assert done.returncode == 1
    assert done.stderr.strip().endswith("is over 1 MiB.")


@pytest.mark.parametrize("name", KEPT)
def test_keep_rule_keeps(name: str) -> None:
    assert _maker().keep(f"{TOP}/{name}")


@pytest.mark.parametrize("name", DROPPED)
def test_keep_rule_drops(name: str) -> None:
    assert not _maker().keep(f"{TOP}/{name}")


def test_the_carried_files_fit_in_a_run() -> None:
    """gpu-check/ (committed): the slim tarball made by the maker, and the wheels; together
    with the tracked tree well under the 64 MiB a run to the GPU machine may carry."""
    maker = _maker()
    slim = ROOT / "gpu-check" / maker.SDIST_NAME
    wheels = sorted(path.name for path in (ROOT / "gpu-check" / "wheels").glob("*.whl"))
    assert [name.split("-")[0] for name in wheels] == ["diskcache", "gguf", "typing_extensions"]
    assert [f"{name.split('-')[0]}=={name.split('-')[1]}" for name in wheels] == sorted(
        maker.WHEELS)
    assert slim.stat().st_size < maker.SIZE_LIMIT
    with tarfile.open(slim) as tar:
        names = tar.getnames()
    assert all(name.startswith(f"{TOP}/") or name == TOP for name in names)
    assert all(maker.keep(name) for name in names)
    for needed in ("pyproject.toml", "llama_cpp/llama_cpp.py", "vendor/llama.cpp/src/llama.cpp",
                   "vendor/llama.cpp/ggml/src/ggml-cuda/CMakeLists.txt",
                   "vendor/llama.cpp/ggml/src/ggml-cpu/CMakeLists.txt"):
        assert f"{TOP}/{needed}" in names, needed
    tracked = subprocess.run(["git", "ls-files", "-z"], cwd=ROOT, capture_output=True,
                             check=True).stdout.decode().split("\0")
    size = sum((ROOT / name).stat().st_size for name in tracked if (ROOT / name).is_file())
    assert size < 32 * 2**20
