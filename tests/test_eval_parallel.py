"""`localpref eval --parallel N`: several answers at once on the one model, the same rows."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from localpref.cli import main
from localpref.errors import PromptTooLongError
from localpref.evaluation.parallel import answers_as_they_finish, local_generations
from localpref.evaluation.records import read_rows
from localpref.request import Request

QUESTIONS = ["Name a colour.", "How do I boil an egg?", "Why is the sky blue?",
             "What is a prime number?", "Give me a tip for sleeping well."]


@pytest.fixture()
def dataset_file(tmp_path: Path) -> Path:
    path = tmp_path / "five.json"
    path.write_text(json.dumps([{"prompt": q} for q in QUESTIONS]), encoding="utf-8")
    return path


def grid(dataset: Path, out: Path, *extra: str) -> list[str]:
    return ["eval", "--dataset", str(dataset), "--methods", "base,pref,recommended",
            "--preferences", "concise,uplifting", "--prompts", "library", "--max-tokens", "10",
            "--ctx", "512", "--bootstrap", "100", "--threads", "1", "--out", str(out),
            "--no-progress", *extra]


def answers(out: Path) -> dict[tuple[str, str, int], list[int]]:
    return {(r["method"], r["preference"], r["position"]): r["tokens"]
            for r in read_rows(out / "generations.jsonl")}


def test_parallel_answers_equal_the_one_at_a_time_answers_and_resume(
        capsys: pytest.CaptureFixture[str], dataset_file: Path, tmp_path: Path) -> None:
    # 5 prompts x (base once, pref and recommended per preference) = 25 answers, 3 at a time:
    # several times what the 6 lanes hold
    assert main(grid(dataset_file, tmp_path / "one")) == 0
    capsys.readouterr()
    assert main(grid(dataset_file, tmp_path / "three", "--parallel", "3")) == 0
    assert "25 new answers" in capsys.readouterr().err
    sequential, parallel = answers(tmp_path / "one"), answers(tmp_path / "three")
    assert len(parallel) == 30 and all(parallel.values())  # Base's answer in both preferences
    assert parallel == sequential
    assert main(grid(dataset_file, tmp_path / "three", "--parallel", "3")) == 0
    assert "0 new answers" in capsys.readouterr().err


def test_parallel_generations_yield_every_request_with_its_own_answer(model) -> None:
    requests = [Request(q, method="pref", preference="concise", max_tokens=6)
                for q in QUESTIONS * 2]
    alone = {id(r): model.submit(r).run()[0].tokens for r in requests}
    found = list(local_generations(model, 4)(requests))
    assert sorted(map(id, (r for r, _ in found))) == sorted(map(id, requests))
    for request, result in found:
        assert result.tokens == alone[id(request)]


def test_an_error_is_the_requests_value_and_the_others_still_answer(model) -> None:
    too_long = Request("word " * 5000, max_tokens=4)
    fine = Request("Name a colour.", max_tokens=4)
    found = dict((id(r), v) for r, v in local_generations(model, 2)([too_long, fine]))
    assert isinstance(found[id(too_long)], PromptTooLongError)
    assert "5021 tokens long" in str(found[id(too_long)])
    assert found[id(fine)].tokens


@pytest.mark.parametrize(("extra", "message"), [
    (["--parallel", "0"], "--parallel must be from 1 to 128"),
    (["--parallel", "257"], "--parallel must be from 1 to 128"),
    (["--parallel", "2", "--ray"], "--parallel is for this machine"),
])
def test_a_bad_parallel_is_one_sentence(capsys: pytest.CaptureFixture[str],
                                        dataset_file: Path, tmp_path: Path,
                                        extra: list[str], message: str) -> None:
    assert main(grid(dataset_file, tmp_path / "out", *extra)) == 2
    stderr = capsys.readouterr().err
    assert message in stderr and stderr.count("\n") == 1
    assert not (tmp_path / "out").exists()


class Recording:
    """The model, remembering every generation it was asked for (to read their ends)."""

    def __init__(self, model) -> None:
        self.model = model
        #: (request, generation) in the order the pool's threads submitted them (any order)
        self.generations = []

    def submit(self, request):
        generation = self.model.submit(request)
        self.generations.append((request, generation))
        return generation


def test_leaving_early_cancels_what_is_in_flight(model) -> None:
    recording = Recording(model)
    short = Request("Name a colour.", max_tokens=2)
    long = [Request("Tell me a long story.", max_tokens=2000, ignore_eos=True)
            for _ in range(2)]
    answers = answers_as_they_finish(recording, [short, *long], 3)
    first_request, first = next(answers)
    answers.close()
    assert first_request is short and first.tokens
    ends = [g.results[0].stats["stop_reason"] for r, g in recording.generations if r is not short]
    assert ends == ["cancelled", "cancelled"]
    assert model.scheduler.running == 0 and model.scheduler.queued == 0
