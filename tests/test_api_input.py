"""The Python API as a program calls it, on the bundled model: a wrong type for any keyword is
one ``SettingsError`` sentence (never Python's own TypeError or AttributeError from deep
inside), one method is a comparison of one, and ``close()`` from another thread cancels."""

from __future__ import annotations

import _thread
import re
import signal
import threading
import time
from pathlib import Path

import pytest

import localpref
from localpref.api import Chat, Model
from localpref.errors import BusyError, ModelError, SettingsError
from localpref.methods import PAD, Amulet
from localpref.request import Request

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


def test_compare_and_batch_check_their_argument_types(model: Model, tmp_path: Path) -> None:
    for methods, kind in ((5, "int"), ({"base": 1}, "dict")):
        with pytest.raises(SettingsError) as refused:
            model.compare(PROMPT, methods)
        assert str(refused.value) == ("The methods must be a list of names or method objects "
                                      f"(got {kind}).")
    with pytest.raises(SettingsError, match=r"^input_path must be a path \(a text or a Path\), "
                                            r"not int\.$"):
        localpref.batch(5, tmp_path / "out.jsonl", model=model)
    for count in ("4", True, 0):
        with pytest.raises(SettingsError) as refused:
            localpref.batch(tmp_path / "in.jsonl", tmp_path / "out.jsonl", model=model,
                            parallel=count)
        assert str(refused.value) == f"parallel must be a whole number, 1 or more (got {count!r})."
    with pytest.raises(SettingsError, match=r"^ray_cpus_per_actor must be a number above 0 "
                                            r"\(got '2'\)\.$"):
        localpref.batch(tmp_path / "in.jsonl", tmp_path / "out.jsonl", model=model, ray=True,
                        ray_cpus_per_actor="2")
    # sizing Ray's actors without Ray would run the file in one process, the sizes ignored
    for sizes, named in (({"ray_actors": 2}, "ray_actors sizes"),
                         ({"ray_actors": 7, "ray_cpus_per_actor": 3},
                          "ray_actors and ray_cpus_per_actor size")):
        with pytest.raises(SettingsError) as refused:
            localpref.batch(tmp_path / "in.jsonl", tmp_path / "out.jsonl", model=model,
                            **sizes)
        assert str(refused.value) == (f"{named} the Ray actors of ray; give ray=True too "
                                      "(or a cluster's address), or leave them out.")
    assert not (tmp_path / "out.jsonl").exists()
    # Ray settings no run could use: refused before the answers file's folder or lock is made
    # (a bad address and a loaded Model left the lock; '' started a local Ray; a loaded Model
    # was taken for a file already answered)
    source = tmp_path / "in.jsonl"
    source.write_text('{"custom_id": "a", "url": "/v1/chat/completions", "body": {}}\n',
                      encoding="utf-8")
    out = tmp_path / "new" / "out.jsonl"
    for ray, loaded, sentence in (
            ("", None, "ray='' is an empty address; give the cluster's address, or ray=True "
                       "for a local Ray."),
            (True, model, "With Ray, give the model as a path or a name every node can load, "
                          "not a loaded Model."),
            (":", None, "A Ray address is HOST:PORT"),
            (3, None, "ray must be True (a local Ray) or a cluster's address (got int).")):
        with pytest.raises(SettingsError) as refused:
            localpref.batch(source, out, model=loaded, ray=ray)
        assert str(refused.value).startswith(sentence)
        assert not out.parent.exists()


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


@pytest.mark.parametrize("kind", ["stream", "compare"])
@pytest.mark.parametrize("then", ["iterate", "run"])
def test_closing_between_a_readers_pieces_ends_it_with_its_results(model: Model, kind: str,
                                                                     then: str) -> None:
    """``close()`` from another thread while the reader was between pieces closed the
    generator there, and the reader's next read, during that close's wait for the end,
    raised "generator already executing" (``run()``) or ended with no result yet."""
    if kind == "stream":
        generation = model.stream(PROMPT, max_tokens=200, ignore_eos=True)
    else:
        generation = model.compare(PROMPT, ["base", "pref"], preference="concise",
                                   max_tokens=200, ignore_eos=True)
    first = next(generation)
    holding, release = threading.Event(), threading.Event()

    def hold() -> None:  # nothing is decoded: the close waits for the end meanwhile
        with model.exclusive():
            holding.set()
            release.wait(60)

    holder = threading.Thread(target=hold)
    holder.start()
    assert holding.wait(60)
    closer = threading.Thread(target=generation.close)
    closer.start()
    threading.Timer(0.3, release.set).start()  # after the read below has begun
    try:
        if then == "run":
            ended = generation.run()
            results = ended if isinstance(ended, list) else [ended]
        else:
            assert list(generation) == []
            results = ([generation.result] if kind == "stream" else generation.results)
    finally:
        release.set()
        closer.join(60)
        holder.join(60)
    assert results and all(r is not None and r.stats["stop_reason"] == "cancelled"
                           for r in results)
    shown = first if kind == "stream" else first[1]  # (run() keeps all the text written)
    assert any(r.text.startswith(shown) for r in results)


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


@pytest.mark.parametrize(("make", "words"), [
    (lambda: Amulet(exact="no"), "The setting exact must be true or false (got 'no')."),
    (lambda: PAD(reward_model=3), "The setting reward_model must be a text (got 3)."),
    (lambda: Amulet(end_tokens=1), "The setting end_tokens must be a text (got 1)."),
])
def test_a_method_setting_of_the_wrong_type_is_refused_when_made(make, words) -> None:
    """A flag given "no" read as true (the exact form ran), a model path given 3 failed only
    at the first answer."""
    with pytest.raises(SettingsError, match=f"^{re.escape(words)}$"):
        make()


def test_a_text_for_a_number_is_quoted_in_the_sentence(model: Model) -> None:
    with pytest.raises(SettingsError, match=re.escape("1 or more (got '3').")):
        model.generate(PROMPT, max_tokens="3")


def test_a_refused_or_unread_regeneration_leaves_the_history(model: Model) -> None:
    chat = model.chat(preference="concise", max_tokens=6)
    first = chat.send("Name a fruit.")
    before = (list(chat.messages), list(chat.results))
    with pytest.raises(SettingsError):
        chat.regenerate(max_tokens=0)
    assert (chat.messages, chat.results) == before
    unread = chat.regenerate()
    unread.close()  # never handed over: nothing was answered
    assert unread.result.stats["stop_reason"] == "cancelled"
    assert (chat.messages, chat.results) == before
    again = chat.regenerate().run()
    assert chat.messages[-1] == {"role": "assistant", "content": again.text}
    assert chat.results == [again] and again.tokens == first.tokens  # greedy: the same
    chat.close()


def test_a_regeneration_cancelled_while_it_waits_for_the_model_leaves_the_history(
        model: Model) -> None:
    """Started, then cancelled before the scheduler decoded it: its empty result replaced the
    last answer (the app's Ctrl+R then Esc lost the answer)."""
    chat = model.chat(max_tokens=6)
    chat.send("Name a fruit.")
    before = (list(chat.messages), list(chat.results))
    with model.exclusive():  # the scheduler waits
        waiting = chat.regenerate().start()
        waiting.cancel()
    assert list(waiting) == [] and waiting.result.wrote_nothing
    assert (chat.messages, chat.results) == before
    chat.close()


def test_a_chat_answers_one_turn_at_a_time_even_before_its_answer_is_read(
        model: Model) -> None:
    """A stream made and not read yet, then another turn: reading the first overwrote the
    second's exchange. The second turn now waits for the first to be read or closed; one
    dropped unread is closed with it."""
    chat = model.chat(preference="concise", max_tokens=6)
    fruit = chat.stream("Name a fruit.")
    with pytest.raises(BusyError, match="^This chat is already answering"):
        chat.send("Name a colour.")
    fruit_text = "".join(fruit)
    colour = chat.send("Name a colour.")
    assert [m["content"] for m in chat.messages] == [
        "Name a fruit.", fruit_text, "Name a colour.", colour.text]
    chat.stream("Name a tree.")  # dropped at once, never read
    chat.send("Name a river.")
    assert [m["content"] for m in chat.messages][-2] == "Name a river."
    assert len(chat.results) == 3 == len(chat.messages) // 2
    chat.close()


def test_two_threads_on_one_chat_never_answer_one_history_twice(model: Model) -> None:
    """Two threads asking at once could both be answered on the same history, and the second
    answer's turn then overwrote the first's (13 trials in 20 in a review); and a turn asked
    for as the last one ended, before it joined the history, read the history without it."""
    for _ in range(8):
        chat = model.chat(max_tokens=2)
        start = threading.Barrier(2)
        outcomes: dict[int, object] = {}

        def ask(index: int, chat=chat, start=start, outcomes=outcomes) -> None:
            start.wait()
            try:
                generation = chat.stream(f"Question {index}: say hi.")
                if index == 1:
                    time.sleep(0.5)  # read after the other's answer has ended
                outcomes[index] = generation.run().text
            except BusyError:
                outcomes[index] = BusyError

        threads = [threading.Thread(target=ask, args=(index,)) for index in range(2)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(60)
        assert sorted(map(str, outcomes.values())).count(str(BusyError)) == 1, outcomes
        (answered, text), = ((i, t) for i, t in outcomes.items() if t is not BusyError)
        assert chat.messages == [{"role": "user", "content": f"Question {answered}: say hi."},
                                 {"role": "assistant", "content": text}]
        chat.close()
    for _ in range(4):
        chat = model.chat(max_tokens=3)
        first = chat.stream("Name a fruit.")
        reader = threading.Thread(target=first.run)
        reader.start()
        while True:  # asked again and again as the first turn ends and joins the history
            try:
                second = chat.stream("Name a colour.")
            except BusyError:
                continue
            break
        second.run()
        reader.join(60)
        assert [m["content"] for m in chat.messages] == [
            "Name a fruit.", first.result.text, "Name a colour.", second.result.text]
        chat.close()


def test_a_stream_closed_before_it_is_read_runs_to_a_cancelled_result(model: Model) -> None:
    generation = model.stream(PROMPT, max_tokens=8)
    generation.close()
    result = generation.run()
    assert (result.text, result.tokens, result.stats["stop_reason"]) == ("", [], "cancelled")


def test_numpy_integers_are_whole_numbers_and_are_stored_as_python_ints(
        model: Model, bundled_path: Path) -> None:
    """A seed or a count taken from an array was refused with 'must be a whole number'
    (np.int64 is not an int), though top_k took it."""
    import numpy as np

    plain = model.generate(PROMPT, max_tokens=5, seed=3, temperature=0.8)
    from_numpy = model.generate(PROMPT, max_tokens=np.int64(5), seed=np.int64(3),
                                temperature=0.8)
    assert from_numpy.text == plain.text and len(from_numpy.tokens) == 5
    assert type(from_numpy.stats["settings"]["seed"]) is int
    with Model(bundled_path, max_lanes=np.int64(2), n_ctx=np.int32(256),
               n_threads=np.int64(1)) as small:
        assert small.context.max_lanes == 2 and type(small.context.max_lanes) is int
        assert small.generate(PROMPT, max_tokens=3).text == model.generate(
            PROMPT, max_tokens=3).text
    for bad in (np.float64(5.0), np.bool_(True), True):
        with pytest.raises(SettingsError, match="Max tokens must be a whole number"):
            model.generate(PROMPT, max_tokens=bad)


def test_a_chat_turn_may_change_the_system_prompt_and_an_unknown_setting_is_named(
        model: Model) -> None:
    """system_prompt for one turn was refused as 'Unknown chat setting' by a sentence that
    listed it among the known ones (it reached Request.make twice, and the TypeError was
    taken for an unknown keyword)."""
    chat, fresh = model.chat(max_tokens=12), model.chat(system_prompt="Answer in French.",
                                                        max_tokens=12)
    try:  # (a chat holds its lanes of the shared model until closed)
        french = chat.send("Say hello.", system_prompt="Answer in French.")
        assert french.text == fresh.send("Say hello.").text
        assert french.text.startswith("Bonjour")  # the default prompt's answer: "Hello!"
        plain = chat.send("Say hello again.")  # the next turn reads the chat's own prompt
        history = [{"role": "user", "content": "Say hello."},
                   {"role": "assistant", "content": french.text},
                   {"role": "user", "content": "Say hello again."}]
        assert plain.text == model.generate(history, max_tokens=12).text
        with pytest.raises(SettingsError) as refused:
            chat.send("Hi", colour="blue", temprature=0.5)
        message = str(refused.value)
        assert message.startswith("Unknown chat setting 'colour', 'temprature'; use one of ")
        assert "system_prompt" in message and "temperature" in message
        assert len(chat.messages) == 4  # the refused turn added nothing
    finally:
        chat.close()
        fresh.close()


def test_an_empty_reward_model_path_is_refused_not_read_as_none() -> None:
    for path in ("", "  "):
        with pytest.raises(SettingsError) as refused:
            PAD(reward_model=path)
        assert str(refused.value) == ("The reward model must be a GGUF path, or left out for "
                                      f"the prompt-contrast reward (got {path!r}).")
    assert PAD().lanes == ("pref", "base")
    assert PAD(reward_model="reward.gguf").lanes == ("pref", "reward")


def test_check_reads_a_reward_models_vocabulary_size_from_its_header(model, tmp_path) -> None:
    """Checked only when a message was sent: the app took such settings (at start, on a
    profile's load) and every message was then refused."""
    from localpref.synthetic import SyntheticShape, write_synthetic_llama

    other = write_synthetic_llama(tmp_path / "other.gguf", SyntheticShape(vocab_size=300))
    request = Request.make("Hi", preference="concise", method=PAD(reward_model=str(other)))
    with pytest.raises(SettingsError) as refused:
        model.check(request)
    assert str(refused.value) == (f"The reward model {other} has another vocabulary (300 "
                                  "tokens against 49152); PAD needs the same tokenizer.")
    assert refused.value.param == "reward_model"
    model.check(Request.make("Hi", preference="concise",  # not here yet: checked on load
                             method=PAD(reward_model="org/not-downloaded:*.gguf")))
    # a Path, as load() takes one (it was "must be a text"), and the same refusal from
    # generate(), before the reward model's weights load (it was a ModelError after)
    assert PAD(reward_model=other).reward_model == str(other)
    with pytest.raises(SettingsError) as refused_again:
        model.generate("Hi", preference="concise", method=PAD(reward_model=other),
                       max_tokens=2)
    assert str(refused_again.value) == str(refused.value)


def test_a_reward_model_with_as_many_tokens_but_other_texts_says_so(model, tmp_path) -> None:
    """The sizes agree, so the sentence names the texts (it gave "49152 tokens against
    49152" as the difference)."""
    from localpref.synthetic import SyntheticShape, write_synthetic_llama

    other = write_synthetic_llama(tmp_path / "same-size.gguf",
                                  SyntheticShape(vocab_size=model.vocabulary.size))
    with pytest.raises(ModelError) as refused:
        model.generate("Hi", preference="concise", method=PAD(reward_model=str(other)),
                       max_tokens=2)
    assert str(refused.value) == (
        f"The reward model {other} has another vocabulary (as many tokens, 49152, but other "
        "texts for them); PAD needs the same tokenizer.")


def test_a_reward_model_whose_tokenizer_differs_in_one_token_is_refused(tmp_path) -> None:
    """Only one token in 96 was compared: a tokenizer of the same size that differs
    elsewhere was taken, and PAD scored the policy's tokens as other words."""
    from localpref.synthetic import SyntheticShape, write_synthetic_llama

    shape = SyntheticShape(vocab_size=2048)
    policy = write_synthetic_llama(tmp_path / "policy.gguf", shape)
    same = write_synthetic_llama(tmp_path / "same.gguf", shape, seed=1)
    other = write_synthetic_llama(tmp_path / "other.gguf", shape, renamed={1001: "▁other"})
    with Model(policy, n_ctx=256, n_threads=1) as model:
        method = PAD(reward_model=same)
        assert model.generate("Hi", preference="concise", method=method,
                              max_tokens=2).stats["n_tokens"] >= 1
        with pytest.raises(ModelError) as refused:
            model.generate("Hi", preference="concise", method=PAD(reward_model=other),
                           max_tokens=2)
    assert str(refused.value) == (
        f"The reward model {other} has another vocabulary (as many tokens, 2048, but other "
        "texts for them); PAD needs the same tokenizer.")


@pytest.mark.parametrize(("path", "sentence"), [
    (None, "The model path must be a text or a Path (got None); "),
    (5, "The model path must be a text or a Path (got 5); "),
    (b"/models/x.gguf", "The model path must be a text or a Path (got b'/models/x.gguf'); "),
    ("", "The model path is empty; give a GGUF file's path"),  # was "Model file . does not"
    ("  ", "The model path is empty; give a GGUF file's path"),
])
def test_a_model_path_that_is_no_path_is_one_sentence(path, sentence) -> None:
    with pytest.raises(ModelError) as refused:  # was pathlib's TypeError
        Model(path)
    assert str(refused.value).startswith(sentence)


def test_submit_takes_requests_and_says_so(model: Model) -> None:
    for given, kind in ((5, "int"), ("Hi", "str"), ({"prompt": "Hi"}, "dict"),
                        ([5], "a list holding int"), ([None], "a list holding NoneType")):
        with pytest.raises(SettingsError) as refused:  # was "'int' object is not iterable"
            model.submit(given)
        assert str(refused.value) == ("submit takes a Request (Request.make(...)) or a list of "
                                      f"them (got {kind}).")
    for requests in ((Request.make("Hi", method="base", max_tokens=2),),
                     (Request.make(p, method="base", max_tokens=2) for p in ("Hi",))):
        assert model.submit(requests).run()[0].tokens  # a tuple, a generator


def test_an_interrupt_from_another_thread_stops_generate_at_its_next_step(
        model: Model) -> None:
    """``_thread.interrupt_main`` (a timer's KeyboardInterrupt) only sets a flag: ``generate``
    waited for its whole answer without looking at it. It now ends within a few steps, its
    lanes given back."""
    steps_before = model.scheduler.counters["step"]
    # Python's own Ctrl-C handler, whatever this process inherited (a job a shell started in
    # the background ignores SIGINT, and interrupt_main then does nothing)
    inherited = signal.signal(signal.SIGINT, signal.default_int_handler)
    timer = threading.Timer(0.3, _thread.interrupt_main)
    timer.start()
    try:
        with pytest.raises(KeyboardInterrupt):
            model.generate(PROMPT, method="base", max_tokens=600, ignore_eos=True)
    finally:
        timer.cancel()
        signal.signal(signal.SIGINT, inherited)
    # (the whole answer is 599 steps after the prefill's token; it was all written first)
    assert model.scheduler.counters["step"] - steps_before < 300
    assert model.scheduler.running == 0 and model.scheduler.queued == 0
    assert model.generate("Hi", method="base", max_tokens=2).tokens  # lanes given back


def test_a_stream_kept_in_a_name_ends_where_its_with_block_is_left(model: Model) -> None:
    """A loop left early with the generation still named wrote on to max_tokens (the
    README's "break ends the answer" held only for an unnamed one): ``with`` ends it."""
    with model.stream(PROMPT, max_tokens=200, ignore_eos=True) as answer:
        first = [next(answer), next(answer)]
    result = answer.result
    assert result is not None and result.stats["stop_reason"] == "cancelled"
    assert result.text.startswith("".join(first)) and len(result.tokens) < 200
    written = answer.stats["n_tokens"]
    assert model.generate(PROMPT, max_tokens=3).stats["n_tokens"] == 3  # the lanes are free
    assert answer.stats["n_tokens"] == written and answer.ended
