"""``localpref doctor``: real llama.cpp build facts, threads, the bundled header, memory."""

from __future__ import annotations

import json
import os
import re
import shutil
from pathlib import Path

import gguf
import llama_cpp
import pytest
from gguf_files import write_vocabulary_only_gguf

from localpref import cli, models
from localpref.api import Model
from localpref.errors import SettingsError
from localpref.gguf_header import read_gguf_header

#: The bundled model's f16 KV cache per token: 30 layers x 3 KV heads x (64 + 64) x 2 bytes.
KV_PER_TOKEN = 23040


@pytest.fixture(autouse=True)
def offline_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """An empty offline HF cache, so doctor never looks at the user's."""
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hub"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")


def run_json(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, dict]:
    """Run doctor with --json; return its exit code and report."""
    code = cli.main(["doctor", "--json", *argv])
    return code, json.loads(capsys.readouterr().out)


def test_doctor_json_reports_real_values(capsys: pytest.CaptureFixture[str]) -> None:
    code, report = run_json([], capsys)
    assert code == (1 if report["problems"] else 0)
    assert report["llama_cpp_python"] == llama_cpp.__version__ == "0.3.36"
    build = report["llama_cpp"]
    assert build["gpu_offload"] is bool(llama_cpp.llama_supports_gpu_offload())
    assert build["system_info"].startswith("CPU")
    assert set(build["cpu_features"]) <= set(build["system_info"].replace("=", " ").split())
    assert report["threads"] == len(os.sched_getaffinity(0))
    bundled = models.bundled_model_path()
    assert report["bundled_model"]["path"] == str(bundled)
    assert report["model"]["path"] == str(bundled)
    header = report["model"]["header"]
    assert (header["architecture"], header["vocab_size"], header["version"]) == ("llama", 49152, 3)
    memory = report["memory"]
    # load()'s defaults: a window of 2048 (the model was trained on 8192), 4 lanes, each lane
    # with a KV stream of its own
    assert memory["n_ctx"] == 2048 and memory["n_seq"] == 4
    assert memory["kv_bytes_per_token"] == KV_PER_TOKEN
    assert memory["kv_cache_bytes"] == KV_PER_TOKEN * 2048 * 4
    assert 0 < memory["weights_bytes"] <= bundled.stat().st_size
    assert memory["logits_bytes"] == 49152 * 4 * 4
    expected_total = memory["weights_bytes"] + memory["kv_cache_bytes"] + memory["logits_bytes"]
    assert memory["total_bytes"] == expected_total
    assert memory["ram_bytes"] == memory["total_bytes"] and memory["vram_bytes"] == 0
    assert report["huggingface"]["offline"] is True


def test_doctor_gpu_layers_and_context(capsys: pytest.CaptureFixture[str]) -> None:
    code, report = run_json(["--gpu-layers", "-1", "--ctx", "1024"], capsys)
    memory = report["memory"]
    assert memory["kv_cache_bytes"] == KV_PER_TOKEN * 1024 * 4
    assert memory["gpu_layers_requested"] == -1
    if report["llama_cpp"]["gpu_offload"]:
        assert memory["gpu_layers"] == 30 and memory["vram_bytes"] > 0
    else:
        assert memory["gpu_layers"] == 0 and memory["vram_bytes"] == 0
        assert any("without GPU offload" in p for p in report["problems"]) and code == 1


def test_a_window_past_the_trained_context_is_a_problem_as_loading_refuses_it(
        capsys: pytest.CaptureFixture[str]) -> None:
    """doctor passed --ctx 9000, which every command that loads the model refuses."""
    sentence = ("A window of 9000 tokens (--ctx, n_ctx) is more than SmolLM2-135M-Instruct "
                "was trained for (8192 tokens).")
    code, report = run_json(["--ctx", "9000"], capsys)
    assert code == 1 and sentence in report["problems"]
    code, report = run_json(["--ctx", "8192"], capsys)
    assert not any("was trained for" in p for p in report["problems"])
    with pytest.raises(SettingsError, match=re.escape(sentence)):
        Model(models.bundled_model_path(), n_ctx=9000, n_threads=1)


def test_the_estimate_counts_a_rounded_stream_per_lane(capsys: pytest.CaptureFixture[str]) -> None:
    """llama.cpp gives each lane a KV stream of the window rounded up to 256 cells."""
    _, report = run_json(["--ctx", "1000", "--lanes", "3"], capsys)
    memory = report["memory"]
    assert (memory["n_ctx"], memory["n_seq"]) == (1000, 3)
    assert memory["kv_cache_bytes"] == KV_PER_TOKEN * 1024 * 3


def test_memory_estimate_splits_offloaded_layers() -> None:
    info = read_gguf_header(models.bundled_model_path())
    half = models.memory_estimate(info, n_ctx=2048, n_gpu_layers=15, gpu_offload=True)
    assert half["gpu_layers"] == 15
    assert half["vram_bytes"] == int((half["weights_bytes"] + half["kv_cache_bytes"]) / 2)
    assert half["ram_bytes"] + half["vram_bytes"] == half["total_bytes"]
    cpu_only = models.memory_estimate(info, n_ctx=2048, n_gpu_layers=-1, gpu_offload=False)
    assert cpu_only["vram_bytes"] == 0 and cpu_only["total_bytes"] == half["total_bytes"]


def test_doctor_text_output(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["doctor"]) in (0, 1)
    out = capsys.readouterr().out
    assert "llama-cpp-python 0.3.36" in out and "GPU offload:" in out
    assert f"threads: {len(os.sched_getaffinity(0))} of" in out
    assert "vocabulary 49152" in out and "memory needed at n_ctx=2048 a lane, 4 lanes" in out


def test_doctor_with_a_model_that_is_not_there(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["doctor", "--model", "org/absent:*.gguf"]) == 2
    out, err = capsys.readouterr()
    assert out == "" and "Traceback" not in err
    assert err.strip().splitlines() == [
        "localpref: org/absent:*.gguf is not downloaded; "
        "run `localpref models pull 'org/absent:*.gguf'` first."
    ]


def test_a_bad_gpu_layer_count_is_one_sentence_as_everywhere(
        capsys: pytest.CaptureFixture[str]) -> None:
    for argv in (["doctor", "--gpu-layers", "-2"], ["generate", "Hi", "--gpu-layers", "-2"]):
        assert cli.main(argv) == 2
        out, err = capsys.readouterr()
        assert out == "" and err.strip() == (
            "localpref: --gpu-layers must be 0 or more, or -1 for all (got -2).")


def test_doctor_says_when_llama_cpp_cannot_load_the_model(
        bundled_path: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """An architecture llama.cpp does not know is a problem doctor finds (exit 1) before
    anything loads the model, with no memory estimate for it; a layer count the header does
    not give is "?", never "None"."""
    unknown = tmp_path / "unknown-architecture.gguf"
    shutil.copyfile(bundled_path, unknown)
    reader = gguf.GGUFReader(str(unknown), "r+")
    field = reader.fields["general.architecture"]
    field.parts[field.data[0]][:] = list(b"zzzzz")  # "llama", as long: its keys say llama.*
    del reader
    code, report = run_json(["--model", str(unknown)], capsys)
    reason = (f"llama.cpp could not load {unknown}: unknown model architecture: 'zzzzz' "
              f"(llama-cpp-python {llama_cpp.__version__}'s llama.cpp does not know it).")
    assert code == 1 and reason in report["problems"] and report["memory"] is None
    assert report["model"]["header"]["architecture"] == "zzzzz"
    assert cli.main(["doctor", "--model", str(unknown)]) == 1
    out = capsys.readouterr().out
    assert f"problem: {reason}" in out and "? layers, trained context ?" in out
    assert "memory needed" not in out and "None" not in out


def test_doctor_json_on_a_broken_file_is_still_a_report(
        bundled_path: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """doctor is what one runs on a broken model: --json prints the report with the
    model's sentence in it (exit 2, as the text report, which says the sentence alone)."""
    truncated = tmp_path / "truncated.gguf"
    truncated.write_bytes(bundled_path.read_bytes()[:1000])
    sentence = f"{truncated} is truncated: it ends inside the GGUF header."
    code, report = run_json(["--model", str(truncated)], capsys)
    assert code == 2 and report["model"]["error"] == sentence
    assert sentence in report["problems"] and report["memory"] is None
    assert report["model"]["path"] is None and report["llama_cpp_python"] == "0.3.36"
    assert cli.main(["doctor", "--model", str(truncated)]) == 2
    out, err = capsys.readouterr()
    assert out == "" and err.strip() == f"localpref: {sentence}"
    for lanes in ("0", "257"):  # (a llama.cpp context holds 256: Model refuses more)
        assert cli.main(["doctor", "--lanes", lanes]) == 2
        assert capsys.readouterr().err.strip() == (
            f"localpref: --lanes must be from 1 to 256 (got {lanes}).")



def test_a_vocabulary_only_gguf_is_a_problem_doctor_finds(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """llama.cpp's vocabulary-only load (what doctor asks before anything loads the weights)
    passes a GGUF of a tokenizer alone, whose real load then fails: doctor said nothing and
    exited 0."""
    path = write_vocabulary_only_gguf(tmp_path / "vocab-only.gguf")
    code, report = run_json(["--model", str(path)], capsys)
    reason = (f"{path} holds no weights (no tensors: a vocabulary-only GGUF, which llama.cpp "
              "loads for its tokenizer alone).")
    assert code == 1 and reason in report["problems"] and report["memory"] is None
    assert report["model"]["header"]["tensor_count"] == 0
    assert cli.main(["generate", "--model", str(path), "--threads", "1", "Hi"]) == 2
    assert "could not load" in capsys.readouterr().err  # what doctor foretold
