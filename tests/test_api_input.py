"""The Python API as a program calls it, on the bundled model: a wrong type for any keyword is
one ``SettingsError`` sentence (never Python's own TypeError or AttributeError from deep
inside), one method is a comparison of one, and ``close()`` from another thread cancels."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest

from localpref.api import Chat, Model
from localpref.errors import ModelError, SettingsError

PROMPT = "How do I keep basil alive?"


@pytest.mark.parametrize(("settings", "words"), [
    ({"avoid": 5}, "Avoid is a text or a list of texts"),
    ({"avoid": {"verbose": 1, "formal": 0}}, "it takes no weights"),
    ({"ignore_eos": "no"}, "ignore_eos must be true or false (got 'no')"),
    ({"trace": "no"}, "trace must be true or false"),
    ({"score_lanes": 2}, "score_lanes must be true or false"),
])
def test_a_keyword_of_the_wrong_type_is_one_sentence(model: Model, settings, words) -> None:
    with pytest.raises(SettingsError) as refused:
        model.generate(PROMPT, max_tokens=2, **settings)
    assert words in str(refused.value) and "\n" not in str(refused.value)


def test_a_chat_and_the_model_check_their_own_arguments(model: Model,
                                                        bundled_path: Path) -> None:
    for bad in ([5], "hello", 5, [("role", "user"), ("content", "x")]):
        with pytest.raises(SettingsError, match="message"):
            model.chat(messages=bad)
    chat = model.chat(messages=[{"role": "system", "content": "Be brief."}], max_tokens=2)
    for bad in (5, None, ["hi"]):
        with pytest.raises(SettingsError, match=r"^A message is a text \(got "):
            chat.send(bad)
    assert chat.messages == [{"role": "system", "content": "Be brief."}]  # nothing added
    with pytest.raises(SettingsError, match="trim_history must be true or false"):
        Chat(model, trim_history="x")
    with Model(bundled_path, max_lanes=2, n_ctx=256) as closed:
        pass
    with pytest.raises(ModelError, match="^The model is closed; load it again to use it.$"):
        closed.chat()
    with pytest.raises(SettingsError, match="The system prompt must be a text"):
        model.lane_prompts(PROMPT, system_prompt=5)
    for settings in ({"system_prompt": 5}, {"system_prompt": None}, {"keep_cells": "x"}):
        with pytest.raises(SettingsError):  # refused before anything is loaded
            Model(bundled_path, **settings)


def test_one_method_is_a_comparison_of_one(model: Model) -> None:
    for method in ("base", model.compare(PROMPT, ["base"], max_tokens=4).run()[0].stats[
            "method"]):
        results = model.compare(PROMPT, method, max_tokens=4).run()
        assert len(results) == 1
        assert results[0].tokens == model.generate(PROMPT, method="base", max_tokens=4).tokens


def test_closing_a_stream_another_thread_reads_cancels_it(model: Model) -> None:
    stream = model.stream(PROMPT, max_tokens=200, ignore_eos=True)
    pieces: list[str] = []
    first = threading.Event()
    errors: list[BaseException] = []

    def read() -> None:
        try:
            for piece in stream:
                pieces.append(piece)
                first.set()
        except BaseException as error:  # noqa: BLE001 - the test reports it
            errors.append(error)

    reader = threading.Thread(target=read)
    reader.start()
    assert first.wait(60)
    stream.close()  # from this thread, while the reader is inside the generator
    reader.join(60)
    assert not reader.is_alive() and not errors
    assert stream.result.stats["stop_reason"] == "cancelled"
    assert stream.result.text == "".join(pieces) and len(stream.result.tokens) < 200


def test_a_comparison_run_then_cancelled_keeps_what_each_method_wrote(model: Model) -> None:
    """``run()`` yields nothing; cancelled from another thread, each result kept an empty
    text (what had been yielded) where it had written tokens: ``compare`` printed empty
    columns after Ctrl-C. Each keeps the start of its whole answer (greedy)."""
    whole = model.compare(PROMPT, ["base", "pref"], preference="concise", max_tokens=60,
                          ignore_eos=True).run()
    comparison = model.compare(PROMPT, ["base", "pref"], preference="concise", max_tokens=60,
                               ignore_eos=True)

    def cancel_once_written() -> None:
        while min(stats.get("n_tokens", 0) for stats in comparison.track_stats) < 5:
            threading.Event().wait(0.01)
        comparison.cancel()

    canceller = threading.Thread(target=cancel_once_written)
    canceller.start()
    cut = comparison.run()
    canceller.join(60)
    for result, full in zip(cut, whole, strict=True):
        assert result.stats["stop_reason"] == "cancelled"
        assert 5 <= len(result.tokens) < 60 and result.stats["n_tokens"] == len(result.tokens)
        assert result.tokens == full.tokens[:len(result.tokens)]
        assert result.text and full.text.startswith(result.text)


def test_a_stream_cancelled_before_its_first_piece_keeps_no_text_and_no_rate(
        model: Model) -> None:
    """Cancelled before its first piece was read: no token kept, so no tokens/s either (the
    command line said "0 tokens · 1931.6 tokens/s", the rate of the tokens dropped)."""
    stream = model.stream(PROMPT, max_tokens=200, ignore_eos=True).start()
    while stream.stats.get("n_tokens", 0) < 3:
        threading.Event().wait(0.01)
    stream.cancel()
    assert list(stream) == []
    result = stream.result
    assert result.text == "" and result.tokens == [] and result.stats["n_tokens"] == 0
    assert result.stats["tokens_per_s"] == 0.0 and result.stats["stop_reason"] == "cancelled"
