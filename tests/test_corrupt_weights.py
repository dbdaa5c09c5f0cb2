"""A model file whose weights give no finite score (a corrupt download): one sentence, never a
token id of -1 handed to llama.cpp (which aborts the process)."""

from __future__ import annotations

from pathlib import Path

import gguf
import numpy as np
import pytest

from localpref import cli
from localpref.api import Model
from localpref.errors import ModelError
from localpref.synthetic import SyntheticShape, write_synthetic_llama

SENTENCE = "The model gave no finite score for any token; its file may be corrupt."


@pytest.fixture(scope="module")
def nan_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = write_synthetic_llama(tmp_path_factory.mktemp("nan") / "nan.gguf", SyntheticShape())
    reader = gguf.GGUFReader(str(path), "r+")
    norm = next(t for t in reader.tensors if t.name == "output_norm.weight")
    norm.data[:] = np.nan  # every logit NaN
    del reader
    return path


@pytest.mark.parametrize("steering", [{}, {"preference": "concise"},
                                      {"preference": "concise", "method": "pad"}])
def test_no_finite_score_is_a_model_error(nan_model: Path, steering: dict) -> None:
    model = Model(nan_model, n_ctx=256, max_lanes=2, n_threads=1)
    try:
        for _ in range(2):  # the process did not abort: the model answers the next call too
            with pytest.raises(ModelError, match=f"^{SENTENCE}$"):
                model.generate("Hi", max_tokens=4, **steering)
    finally:
        model.close()


def test_the_cli_says_it_in_one_sentence(nan_model: Path,
                                         capsys: pytest.CaptureFixture[str]) -> None:
    code = cli.main(["generate", "Hi", "--model", str(nan_model), "--max-tokens", "4",
                     "--threads", "1"])
    out, err = capsys.readouterr()
    assert code == 2 and out == ""
    assert err.strip().splitlines()[-1] == f"localpref: {SENTENCE}"
    assert "Traceback" not in err
