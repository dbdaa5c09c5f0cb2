"""scripts/gpu-probe.py: each step of loading and decoding in its own process, on the bundled
model (CPU here; the GPU machine runs the same steps with every layer offloaded), a crash
contained to its step, and the scripts' argument handling."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PROBE = ROOT / "scripts" / "gpu-probe.py"
CHECK = ROOT / "scripts" / "gpu-check.sh"
ALWAYS = ["raw-load", "raw-context", "raw-decode", "raw-callback",
          "lp-load", "lp-decode", "lp-warmup", "lp-generate"]


def _probe(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """The probe with 4 lanes of 512 cells (the GPU machine's default is 16 of 4096)."""
    return subprocess.run([sys.executable, str(PROBE), "--lanes", "4", "--cells", "512", *args],
                          capture_output=True, text=True, check=False, timeout=600, env=env)


def test_every_step_passes_on_the_bundled_model(bundled_path: Path) -> None:
    done = _probe("--model", str(bundled_path), "--gpu-layers", "0", "--json")
    assert done.returncode == 0, done.stderr
    outcomes = json.loads(done.stdout)
    assert [o["step"] for o in outcomes] == ALWAYS  # the fallbacks run only after a failure
    assert all(o["ok"] and o["exit"] == 0 for o in outcomes)
    said = {o["step"]: o["said"] for o in outcomes}
    assert said["raw-load"] == "loaded, 134515008 weights"
    assert said["lp-load"] == said["raw-load"]
    # Four sequences holding the same prompt and fed the same token: the same next token.
    for step in ("raw-decode", "raw-callback", "lp-decode"):
        argmax = json.loads(said[step].split("argmax ")[1].split("]")[0] + "]")
        assert len(argmax) == 4 and len(set(argmax)) == 1, said[step]
    assert said["raw-decode"].endswith("all finite: True")
    assert said["raw-callback"] == said["raw-decode"]
    assert said["lp-generate"].startswith("generated ")
    assert 1 <= int(said["lp-generate"].split()[1]) <= 8


def test_a_crash_ends_its_step_alone_with_its_stack(bundled_path: Path,
                                                    tmp_path: Path) -> None:
    """A segfault in one step (planted through sitecustomize in the children) is that step's
    failure, with faulthandler's Python stack; the other steps still run."""
    (tmp_path / "sitecustomize.py").write_text(
        "import ctypes, sys\n"
        "if 'raw-context' in sys.argv:\n"
        "    ctypes.string_at(0)\n")
    env = {**os.environ, "PYTHONPATH": str(tmp_path)}
    done = _probe("--model", str(bundled_path), "--gpu-layers", "0", "--json", env=env)
    assert done.returncode == 1
    outcomes = {o["step"]: o for o in json.loads(done.stdout)}
    crashed = outcomes["raw-context"]
    assert not crashed["ok"] and crashed["exit"] == -11
    assert "Segmentation fault" in crashed["said"] and "sitecustomize" in crashed["said"]
    assert all(o["ok"] for name, o in outcomes.items() if name != "raw-context")
    # raw-decode passed, so its fallbacks were not needed.
    assert not {"raw-fa-auto", "raw-unified", "raw-small"} & set(outcomes)


def test_a_failed_decode_runs_the_fallbacks(tmp_path: Path) -> None:
    broken = tmp_path / "broken.gguf"
    broken.write_bytes(b"GGUF" + b"\x00" * 64)
    done = _probe("--model", str(broken), "--gpu-layers", "0", "--json", "--timeout", "120")
    assert done.returncode == 1
    outcomes = {o["step"]: o for o in json.loads(done.stdout)}
    assert set(outcomes) == set(ALWAYS) | {"raw-fa-auto", "raw-unified", "raw-small"}
    assert not any(o["ok"] for o in outcomes.values())
    assert "returned NULL" in outcomes["raw-load"]["said"]
    assert outcomes["raw-load"]["exit"] == 1


def test_the_probe_refuses_bad_arguments(tmp_path: Path) -> None:
    missing = _probe("--model", str(tmp_path / "none.gguf"))
    assert missing.returncode == 2 and "no model file" in missing.stderr
    (tmp_path / "m.gguf").write_bytes(b"x")
    zero = _probe("--model", str(tmp_path / "m.gguf"), "--timeout", "0")
    assert zero.returncode == 2 and "--timeout must be more than 0" in zero.stderr
    no_lanes = _probe("--model", str(tmp_path / "m.gguf"), "--lanes", "0")
    assert no_lanes.returncode == 2 and "--lanes must be 1 or more" in no_lanes.stderr


def test_the_check_script_refuses_bad_arguments(tmp_path: Path) -> None:
    for args, said in (([], "usage: scripts/gpu-check.sh"),
                       ([str(tmp_path), "bench"], "unknown part 'bench'"),
                       ([str(tmp_path), "run", "extra"], "usage: scripts/gpu-check.sh")):
        done = subprocess.run(["bash", str(CHECK), *args], capture_output=True, text=True,
                              check=False)
        assert done.returncode == 2 and said in done.stderr
