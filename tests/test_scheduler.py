"""Many requests at once on the bundled model through real llama.cpp: every live request's
lanes in one decode per step, each answer bit-for-bit what it is alone; cancelling, prefill in
chunks between the others' tokens, admission by lanes, the queue, idle chats, errors, exit."""

from __future__ import annotations

import contextlib
import dataclasses
import json
import subprocess
import sys
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from localpref import PAD, Amulet, Base, BusyError, Contrastive, ModelError, Pref, SettingsError
from localpref.api import Model
from localpref.cli import main
from localpref.methods import Selector
from localpref.request import Request
from localpref.scheduler import GATHER_SECONDS

PROMPT = "How do I keep basil alive?"
LONG_STORY = "Write a long story about a dragon."

#: (prompt, preference, method) of four different requests.
MIXED = [
    (PROMPT, "concise", Amulet()),
    ("Name three rivers in Europe.", "verbose", PAD()),
    ("What is a good name for a cat?", "uplifting", Contrastive()),
    ("Why is the sky blue?", None, Base()),
]


def _alone(model: Model, prompt: str, preference: str | None, method, tokens: int):  # noqa: ANN001, ANN202
    return model.generate(prompt, preference=preference, method=method, max_tokens=tokens,
                          ignore_eos=True)


def test_concurrent_requests_answer_exactly_as_each_alone(model: Model) -> None:
    """Four threads, four methods and preferences, joining at different moments: every text
    and token list equals the same request run alone (greedy)."""
    tokens = 14
    alone = [_alone(model, p, pref, m, tokens) for p, pref, m in MIXED]
    results: list = [None] * len(MIXED)
    errors: list[BaseException] = []
    first_pieces = threading.Event()

    def worker(index: int) -> None:
        prompt, preference, method = MIXED[index]
        try:
            generation = model.stream(prompt, preference=preference, method=method,
                                      max_tokens=tokens, ignore_eos=True)
            for count, _ in enumerate(generation):
                if index == 0 and count == 2:
                    first_pieces.set()  # the others join while this one streams
            results[index] = generation.result
        except BaseException as error:  # noqa: BLE001 - re-raised in the test's thread
            errors.append(error)
            first_pieces.set()

    threads = [threading.Thread(target=worker, args=(0,))]
    threads[0].start()
    assert first_pieces.wait(120)
    for index in range(1, len(MIXED)):
        threads.append(threading.Thread(target=worker, args=(index,)))
        threads[-1].start()
    for thread in threads:
        thread.join(300)
    assert not errors
    for together, single in zip(results, alone, strict=True):
        assert together.tokens == single.tokens
        assert together.text == single.text
        assert together.stats["method"] == single.stats["method"]
    # They really shared decodes: some step held more lanes than one request has.
    assert max(r.stats["batch_lanes_mean"] for r in results) > 2
    assert all(r.stats["batch_lanes_mean"] >= r.stats["n_lanes"] for r in results)


def test_a_cancelled_request_keeps_its_partial_text_while_the_other_finishes(
        model: Model) -> None:
    other_alone = _alone(model, *MIXED[1], tokens=16)
    cancelled = model.stream(LONG_STORY, preference="verbose", method="amulet",
                             max_tokens=200, ignore_eos=True)
    other = model.stream(MIXED[1][0], preference=MIXED[1][1], method=MIXED[1][2],
                         max_tokens=16, ignore_eos=True)
    shown = [next(cancelled) for _ in range(3)]
    next(other)
    worker = threading.Thread(target=cancelled.cancel)
    worker.start()
    worker.join()
    shown += list(cancelled)  # nothing more once cancelled
    finished = other.run()
    assert cancelled.result.stats["stop_reason"] == "cancelled"
    assert cancelled.result.text == "".join(shown)
    assert len(cancelled.result.tokens) <= 4
    assert cancelled.result.stats["n_tokens"] == len(cancelled.result.tokens)
    assert finished.tokens == other_alone.tokens and finished.text == other_alone.text


@pytest.mark.parametrize("method", [Base(), Amulet()])
def test_a_short_request_is_prefilled_in_one_decode_before_its_first_token(
        model: Model, method) -> None:  # noqa: ANN001
    """A prompt under n_batch tokens costs one prefill decode per lane at most (the last
    tokens ride in it; two lanes share one while their rows stay under ROW_BY_ROW_LIMIT),
    then one decode per token after the first."""
    before = model.context.decodes
    result = model.generate(PROMPT, preference="concise", method=method, max_tokens=3,
                            ignore_eos=True)
    lanes = 1 if isinstance(method, Base) else 2
    assert 1 <= result.stats["prefill_chunks"] <= lanes
    assert model.context.decodes - before == result.stats["prefill_chunks"] + 2
    assert len(result.tokens) == 3


def _read_when_woken(generation, woken: threading.Semaphore, stop_after: int | None = None,
                     ) -> tuple[list[str], bool]:
    """Read a generation the way an event loop does: only on a wake-up, only while ready()."""
    pieces: list[str] = []
    while stop_after is None or len(pieces) < stop_after:
        assert woken.acquire(timeout=120)
        while generation.ready():
            try:
                pieces.append(next(generation))
            except StopIteration:
                return pieces, True
    return pieces, False


def test_a_reader_that_must_not_wait_is_woken_for_each_piece_and_the_end(
        model: Model) -> None:
    """``on_ready`` (an event loop's hook): called from the scheduler's thread for every piece
    and the end; reading only while ``ready()`` gives the whole answer, as a blocking read."""
    alone = _alone(model, PROMPT, "concise", Amulet(), 12)
    woken = threading.Semaphore(0)
    generation = model.stream(PROMPT, preference="concise", method=Amulet(), max_tokens=12,
                              ignore_eos=True)
    generation.on_ready(woken.release)
    assert not generation.ready() and not generation.ended  # next() would start and wait
    generation.start()
    pieces, finished = _read_when_woken(generation, woken)
    assert finished and generation.ended
    assert "".join(pieces) == alone.text and generation.result.tokens == alone.tokens

    cancelled = model.stream(LONG_STORY, preference="verbose", method=Amulet(), max_tokens=300,
                             ignore_eos=True)
    cancelled.on_ready(woken.release)
    cancelled.start()
    shown, finished = _read_when_woken(cancelled, woken, stop_after=2)
    assert not finished
    cancelled.cancel()  # from now on only the end makes it ready: the pieces are skipped
    while not cancelled.ready():
        assert woken.acquire(timeout=120)
    assert cancelled.ended
    with pytest.raises(StopIteration):
        next(cancelled)
    assert cancelled.result.stats["stop_reason"] == "cancelled"
    assert cancelled.result.text == "".join(shown) and len(cancelled.result.tokens) < 300

    never = model.stream(PROMPT, max_tokens=4)
    never.cancel()
    assert never.ready()  # cancelled before it started: it ends at once, nothing queued
    with pytest.raises(StopIteration):
        next(never)
    assert never.result.text == ""


def test_requests_sent_together_to_an_idle_model_start_together(bundled_path: Path) -> None:
    """An idle scheduler waits ``gather_s`` after its first request: a second one queued
    within it (not in the same round, as a server's parallel clients are parsed one after
    the other) is prefilled in the same decode; without the wait it is prefilled after the
    first one's. Both answer token for token as alone either way."""
    prompts = ["Name a herb.", "Name a tree."]
    with Model(bundled_path, max_lanes=4, n_ctx=256) as small:
        assert small.scheduler.gather_s == GATHER_SECONDS > 0
        alone = [_alone(small, p, None, Base(), 4) for p in prompts]
        prefills = {}
        for window in (10.0, 0.0):
            small.scheduler.gather_s = window
            seen = len(small.scheduler.events)
            first = small.stream(prompts[0], method=Base(), max_tokens=4, ignore_eos=True)
            first.start()
            if window:  # the second request comes later than one round would take
                time.sleep(0.2)
            else:  # ... and here after the first one's prefill
                deadline = time.monotonic() + 60
                while not any(e.kind == "prefill"
                              for e in list(small.scheduler.events)[seen:]):
                    assert time.monotonic() < deadline
                    time.sleep(0.001)
            second = small.stream(prompts[1], method=Base(), max_tokens=4, ignore_eos=True)
            second.start()
            if window:
                small.scheduler.wake()  # a close() or a later request would end it too
                small.scheduler.gather_s = 0.0  # the waiting thread reads it at its deadline
            results = [first.run(), second.run()]
            prefills[window] = [e for e in list(small.scheduler.events)[seen:]
                                if e.kind == "prefill"]
            for together, single in zip(results, alone, strict=True):
                assert together.tokens == single.tokens and together.text == single.text
    assert [len(e.jobs) for e in prefills[10.0]] == [2]
    assert [len(e.jobs) for e in prefills[0.0]] == [1, 1]


def test_a_long_prompt_is_prefilled_in_chunks_between_the_running_tokens(
        bundled_path: Path) -> None:
    with Model(bundled_path, max_lanes=4, n_ctx=1024, n_batch=64) as small:
        long_prompt = "Here is a list of herbs: " + ", ".join(
            f"herb number {i} is basil" for i in range(40)) + ". Which one is best?"
        assert small.count_tokens(long_prompt) > 3 * 64
        runner_alone = _alone(small, PROMPT, "concise", Amulet(), 40)
        joiner_alone = _alone(small, long_prompt, None, Base(), 4)
        runner = small.stream(PROMPT, preference="concise", method=Amulet(), max_tokens=40,
                              ignore_eos=True)
        next(runner)
        joiner = small.stream(long_prompt, method=Base(), max_tokens=4, ignore_eos=True)
        joined = joiner.run()
        ran = runner.run()
        events = list(small.scheduler.events)
    assert joined.tokens == joiner_alone.tokens
    assert ran.tokens == runner_alone.tokens
    assert joined.stats["prefill_chunks"] >= 4  # over three chunks of n_batch
    assert joined.stats["others_tokens_during_prefill"] >= 3
    # The event log: between the joiner's first and last prefill decode, steps of the runner.
    joiner_id = next(e.jobs[0] for e in reversed(events) if e.kind == "prefill" and e.final)
    chunks = [i for i, e in enumerate(events) if e.kind == "prefill" and e.jobs == (joiner_id,)]
    between = events[chunks[0] : chunks[-1]]
    steps = [e for e in between if e.kind == "step"]
    assert len(steps) >= len(chunks) - 1
    assert all(joiner_id not in e.jobs for e in steps)
    assert all(e.tokens <= 64 for e in events)  # never past n_batch tokens in one decode


def test_a_request_cancelled_during_its_prefill_stops_at_the_next_chunk(
        bundled_path: Path) -> None:
    """Alone, a long prompt is prefilled chunk after chunk in one round; a cancel between two
    chunks ended it only after the last (16-18 s for 1,500 tokens on one thread)."""
    with Model(bundled_path, max_lanes=2, n_ctx=2048, n_batch=32, n_threads=1) as small:
        long_prompt = "Here is a list of herbs: " + ", ".join(
            f"herb number {i} is basil" for i in range(120)) + ". Which one is best?"
        chunks = -(-small.count_tokens(long_prompt) // 32)
        assert chunks > 20
        generation = small.stream(long_prompt, method=Base(), max_tokens=4)
        seen = len(small.scheduler.events)
        generation.start()
        deadline = time.monotonic() + 60
        while not any(e.kind == "prefill" for e in list(small.scheduler.events)[seen:]):
            assert time.monotonic() < deadline
            time.sleep(0.001)
        generation.cancel()
        result = generation.run()
    assert result.stats["stop_reason"] == "cancelled" and result.tokens == []
    assert 1 <= result.stats["prefill_chunks"] <= 4 < chunks


def test_a_full_queue_gives_busy_error_and_waiting_requests_start_when_lanes_free(
        bundled_path: Path) -> None:
    with Model(bundled_path, max_lanes=2, n_ctx=512, max_queued=1) as small:
        alone = _alone(small, PROMPT, "concise", Pref(), 6)
        running = small.stream(LONG_STORY, preference="concise", method="amulet",
                               max_tokens=200, ignore_eos=True)
        next(running)  # holds both lanes
        waiting = small.stream(PROMPT, preference="concise", method=Pref(), max_tokens=6,
                               ignore_eos=True).start()
        assert small.scheduler.queued == 1
        third = small.stream(PROMPT, method="base", max_tokens=2)
        with pytest.raises(BusyError) as busy:
            next(third)
        message = str(busy.value)
        assert message.endswith(".") and "\n" not in message and "waiting" in message
        running.close()
        result = waiting.run()
    assert result.tokens == alone.tokens
    assert result.stats["queued_ms"] > 0
    assert running.result.stats["stop_reason"] == "cancelled"


def test_no_queue_refuses_only_a_request_that_would_wait(bundled_path: Path) -> None:
    """``max_queued=0``: a request the free lanes take runs; one that would wait is refused
    (it refused every request, an idle model's too)."""
    with Model(bundled_path, max_lanes=2, n_ctx=512, max_queued=0) as small:
        assert small.generate(PROMPT, method="base", max_tokens=3).stats["n_tokens"] == 3
        running = small.stream(LONG_STORY, preference="concise", method="amulet",
                               max_tokens=200, ignore_eos=True)
        next(running)  # holds both lanes
        with pytest.raises(BusyError, match="^Every lane of this model is busy"):
            next(small.stream(PROMPT, method="base", max_tokens=2))
        running.close()
        assert small.generate(PROMPT, method="base", max_tokens=3).stats["n_tokens"] == 3


def test_a_burst_of_as_many_requests_as_lanes_and_queue_hold_is_all_taken(
        bundled_path: Path) -> None:
    """Requests sent at once, before the scheduler's thread admits any, are not counted as
    waiting while free lanes can take them: lanes + max_queued are taken, the next is not."""
    prompts = ["Name a herb.", "Name a tree.", "Name a river."]
    with Model(bundled_path, max_lanes=2, n_ctx=512, max_queued=1) as small:
        alone = [small.generate(p, method="base", max_tokens=12, ignore_eos=True).tokens
                 for p in prompts]
        burst = [small.stream(p, method="base", max_tokens=12, ignore_eos=True).start()
                 for p in prompts]  # 2 lanes + 1 waiting
        with pytest.raises(BusyError, match="^1 requests are already waiting"):
            next(small.stream("Hi", method="base", max_tokens=2))
        results = [generation.run() for generation in burst]
    assert [result.tokens for result in results] == alone


@pytest.mark.parametrize(("settings", "message"), [
    ({"n_threads": -3}, "n_threads must be a whole number from 1 to 512 \\(llama.cpp's most\\), "
                        "or None"),
    ({"n_threads": 100_000}, "n_threads must be a whole number from 1 to 512"),
    ({"n_threads_batch": 0}, "n_threads_batch must be a whole number from 1 to 512"),
    ({"n_ctx": 8}, "n_ctx must be a whole number, 16 or more"),
    ({"n_ctx": "512"}, "n_ctx must be a whole number, 16 or more"),
    ({"n_gpu_layers": -2}, "n_gpu_layers must be a whole number, 0 or more, or -1"),
    ({"n_batch": 0}, "n_batch must be a whole number, 1 or more"),
    ({"n_threads": True}, "n_threads must be a whole number from 1 to 512"),
    ({"max_lanes": True}, "max_lanes must be a whole number from 1 to"),
    ({"max_queued": True}, "max_queued must be 0 or more \\(got True\\)"),
])
def test_a_bad_load_setting_is_one_sentence_before_anything_loads(bundled_path: Path, settings,
                                                                   message) -> None:  # noqa: ANN001
    with pytest.raises(SettingsError, match=f"^{message}"):
        Model(bundled_path, **settings)


def test_close_during_a_long_prefill_stops_it_at_the_next_chunk(bundled_path: Path) -> None:
    """``close()`` waited for every chunk of a long prompt's prefill (30 s for 3,600 tokens
    on one thread), where ``cancel()`` stops it at the next chunk."""
    model = Model(bundled_path, max_lanes=2, n_ctx=4096, n_batch=256, n_threads=1)
    prompt = "word " * 1800
    chunks = -(-model.count_tokens(prompt) // 256)
    generation = model.stream(prompt, method="base", max_tokens=4)
    reader = threading.Thread(target=lambda: list(generation))
    reader.start()
    time.sleep(0.5)  # (closed after a chunk or two, or while it waits: either way, early)
    model.close()
    reader.join(timeout=120)
    assert not reader.is_alive()
    result = generation.result
    assert result is not None and result.stats["stop_reason"] == "cancelled"
    assert result.stats["prefill_chunks"] < chunks - 1, (result.stats["prefill_chunks"], chunks)


def test_a_closed_model_refuses_every_use_in_one_sentence(bundled_path: Path) -> None:
    """After ``close()`` llama.cpp's vocabulary and context are freed: every use is a
    ModelError (reading them would crash the process), the model's name and path remain."""
    small = Model(bundled_path, max_lanes=2, n_ctx=256)
    chat = small.chat(max_tokens=2)
    small.close()
    small.close()  # twice is fine
    assert small.closed and small.name == "SmolLM2-135M-Instruct" and small.path == bundled_path
    uses = [lambda: small.generate("Hi", max_tokens=2), lambda: small.stream("Hi"),
            lambda: small.count_tokens("Hi"), lambda: small.vocabulary,
            lambda: small.compare("Hi", ["base", "pref"], preference="concise"),
            lambda: chat.send("Hi")]
    for use in uses:
        with pytest.raises(ModelError, match=r"^The model is closed; load it again"):
            use()


def test_a_request_needing_more_lanes_than_the_model_has_is_refused_at_once(
        bundled_path: Path) -> None:
    with Model(bundled_path, max_lanes=2, n_ctx=256) as small:
        with pytest.raises(SettingsError, match="lanes"):
            small.compare(PROMPT, [Amulet(), Pref()], preference="concise")
        assert small.scheduler.queued == 0


def test_an_idle_chat_gives_its_lanes_to_a_waiting_request_and_answers_right_after(
        bundled_path: Path) -> None:
    with Model(bundled_path, max_lanes=2, n_ctx=512) as small:
        chat = small.chat(preference="concise", method="contrastive", max_tokens=8)
        first = chat.send("Name a herb.")
        assert chat.holds_lanes
        other = small.generate(PROMPT, preference="concise", method="amulet", max_tokens=4)
        assert other.tokens and not chat.holds_lanes  # reclaimed for the waiting request
        second = chat.send("And a spice?")
        fresh = small.generate(chat.messages[:-1], preference="concise", method="contrastive",
                               max_tokens=8)
        chat.close()
    assert first.text
    assert second.tokens == fresh.tokens
    # the history was evaluated again, not read from a cache it no longer had
    assert second.stats["prefill_tokens"] >= second.stats["n_prompt_tokens"]


def test_a_chat_turn_with_other_lanes_takes_back_its_own_kept_ones(
        bundled_path: Path) -> None:
    """A chat keeps its turn's lanes for the next; a turn that reads other lanes (an avoid
    text added, a weighted preference dropped) waited for ever on a model whose lanes its
    own kept ones filled: they are given back, and each turn answers as its history alone,
    whichever lanes it kept."""
    weighted = {"preference": {"concise": 1, "formal": 0.5}}  # a lane each, and the base's
    with Model(bundled_path, max_lanes=4, n_ctx=512) as small:
        chat = small.chat(preference="concise", max_tokens=8)
        turns = [("Hi, I'm Bob.", weighted), ("Why?", {"avoid": "verbose"}), ("And?", {}),
                 ("Tell me more.", weighted)]
        finished: list[Any] = []

        def talk() -> None:
            finished.extend(chat.send(text, **settings) for text, settings in turns)

        runner = threading.Thread(target=talk, daemon=True)
        runner.start()
        runner.join(120)
        assert not runner.is_alive(), (small.scheduler.queued, small.scheduler.running)
        assert small.scheduler.queued == 0 and chat.holds_lanes
        for index, ((_, settings), answer) in enumerate(zip(turns, finished, strict=True)):
            history = chat.messages[:2 * index + 1]
            alone = small.generate(history, **({"preference": "concise"} | settings),
                                   max_tokens=8)
            assert answer.tokens == alone.tokens and answer.text, index
        chat.close()


def test_lanes_a_chat_turn_gives_back_count_as_free_for_the_requests_behind_it(
        bundled_path: Path) -> None:
    """With no queue, a request sent while a chat's turn waits to give back three stale
    lanes and open one was refused as if the turn took four (``BusyError``)."""
    with Model(bundled_path, max_lanes=4, n_ctx=512, max_queued=0) as small:
        chat = small.chat(preference="concise", max_tokens=4)
        chat.send("Hi", preference={"concise": 1, "formal": 0.5}, avoid="verbose")
        assert small.context.free_lanes == 0
        with small.scheduler.exclusive():  # both wait for the next round
            turn = chat.stream("Why?").start()
            other = small.stream("Hello there", max_tokens=4).start()
        answers = [turn.run(), other.run()]
        assert [answer.stats["stop_reason"] for answer in answers] == ["length", "length"]
        assert answers[1].tokens == small.generate("Hello there", max_tokens=4).tokens
        chat.close()


def test_lanes_an_idle_chat_keeps_count_as_free_with_no_queue(bundled_path: Path) -> None:
    """With no queue, a request sent while an idle chat kept every lane was refused
    (``BusyError``), though the admission takes an idle chat's lanes back; a second one sent
    while the first runs is still refused, and the chat's next turn evaluates again."""
    with Model(bundled_path, max_lanes=2, n_ctx=512, max_queued=0) as small:
        alone = small.generate("Hello there", max_tokens=4, ignore_eos=True).tokens
        chat = small.chat(preference="concise", max_tokens=4)
        first = chat.send("Hi")
        assert small.context.free_lanes == 0  # the idle chat keeps both lanes
        running = small.stream("Hello there", max_tokens=4, ignore_eos=True).start()
        with pytest.raises(BusyError, match="^Every lane of this model is busy"):
            small.stream(LONG_STORY, preference="concise", max_tokens=2).start()
        assert running.run().tokens == alone
        assert chat.send("Why?").stats["stop_reason"] in {"length", "eos"}
        assert first.text
        chat.close()


def test_a_chat_turn_queued_behind_a_request_that_takes_its_lanes_is_the_one_waiting(
        bundled_path: Path) -> None:
    """A request queued before an idle chat's next turn takes the chat's lanes back, so only
    the turn waits: with one place in the queue the turn was refused (``BusyError``), counted
    with the request as two waiting; a third request is refused."""
    with Model(bundled_path, max_lanes=2, n_ctx=512, max_queued=1) as small:
        alone = small.generate("Hello there", max_tokens=4, ignore_eos=True).tokens
        chat = small.chat(preference="concise", max_tokens=4)
        chat.send("Hi")
        with small.scheduler.exclusive():  # all three wait for the next round
            other = small.stream("Hello there", max_tokens=4, ignore_eos=True).start()
            turn = chat.stream("Why?").start()
            with pytest.raises(BusyError, match="^1 requests are already waiting"):
                small.stream("Hi", method="base", max_tokens=2).start()
        assert other.run().tokens == alone
        assert turn.run().stats["n_tokens"] >= 1
        chat.close()


class _Broken(Base):
    """A method whose pick fails (a bug in a user's method)."""

    def pick(self, selector: Selector, lane_logits: Sequence[np.ndarray]) -> int:
        raise RuntimeError("this method is broken")


def test_an_error_in_one_request_reaches_only_its_caller(model: Model) -> None:
    good_alone = _alone(model, PROMPT, "concise", Amulet(), 10)
    good = model.stream(PROMPT, preference="concise", method=Amulet(), max_tokens=10,
                        ignore_eos=True)
    next(good)
    broken = model.stream(PROMPT, preference="concise", method=_Broken(), max_tokens=10)
    with pytest.raises(RuntimeError, match="broken"):
        list(broken)
    assert broken.result.stats["stop_reason"] == "error"
    assert good.run().tokens == good_alone.tokens


def test_stats_are_per_request(model: Model) -> None:
    result = model.generate(PROMPT, preference="concise", method="amulet", max_tokens=6,
                            ignore_eos=True)
    stats = result.stats
    for key in ("queued_ms", "prefill_ms", "decode_ms", "tokens_per_s", "steer_ms_per_token",
                "llama_decode_ms", "batch_lanes_mean", "prefill_chunks"):
        assert stats[key] >= 0, key
    # the first token is the prefill's: five decodes between the first token and the sixth
    assert stats["tokens_per_s"] == pytest.approx(5 / (stats["decode_ms"] / 1000))
    one = model.generate(PROMPT, max_tokens=1, ignore_eos=True).stats
    assert one["n_tokens"] == 1 and one["tokens_per_s"] == 0.0
    assert stats["batch_lanes_mean"] == 2.0  # alone: its two lanes in every step
    laps = stats["steer_laps_ms"]
    assert sum(laps.values()) == pytest.approx(stats["steer_ms_per_token"] * 6, rel=0.05)


def test_a_request_is_one_frozen_validated_value() -> None:
    request = Request.make(PROMPT, preference="concise", method="amulet", temperature=0.5,
                           repeat_penalty=1.3, stop="x")
    assert request.messages == ({"role": "user", "content": PROMPT},)
    assert request.method == Amulet()
    assert request.sampling.repeat_penalty == 1.3 and request.stop == ("x",)
    with pytest.raises(dataclasses.FrozenInstanceError):
        request.max_tokens = 3  # type: ignore[misc]
    assert request.replace(temperature=0.0).sampling.temperature == 0.0
    assert Request.make(PROMPT).method.label == "amulet"  # the recommended steering
    for bad in ({"max_tokens": 0}, {"preference": " "}, {"avoid": ""}, {"top_p": -0.1},
                {"repeat_penalty": 0.0}):
        with pytest.raises(SettingsError):
            Request.make(PROMPT, **bad)


def test_repeat_penalty_from_the_command_line_reaches_the_sampler(
        model: Model, capsys: pytest.CaptureFixture[str]) -> None:
    prompt = "Repeat the word 'basil' thirty times."
    code = main(["generate", prompt, "--method", "base", "--max-tokens", "30",
                 "--ignore-eos", "--repeat-penalty", "1.5", "--json"])
    payload = json.loads(capsys.readouterr().out)
    assert code == 0
    assert payload["stats"]["settings"]["repeat_penalty"] == 1.5
    penalised = model.generate(prompt, method="base", max_tokens=30, ignore_eos=True,
                               repeat_penalty=1.5)
    assert payload["text"] == penalised.text
    code = main(["generate", prompt, "--method", "base", "--repeat-penalty", "0"])
    err = capsys.readouterr().err.strip()
    assert code == 2
    assert "repeat penalty" in err and len(err.splitlines()) == 1


EXIT_SCRIPT = """
import localpref
model = localpref.load()
print(model.generate("Hi", method="base", max_tokens=3).tokens)
left_running = model.stream("Write a long story.", method="base", max_tokens=500,
                            ignore_eos=True)
next(left_running)
print("done", flush=True)
"""


def test_a_script_that_never_closes_its_model_exits() -> None:
    done = subprocess.run([sys.executable, "-c", EXIT_SCRIPT], capture_output=True, text=True,
                          timeout=300, check=False)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip().endswith("done")


CLOSE_WHILE_TOKENIZING = """
import sys, threading, localpref
model = localpref.load(max_lanes=2)
document = "The quick brown fox jumps over the lazy dog. " * 4000
refused, started = [], threading.Event()
def tokenize_for_ever():
    while True:
        started.set()
        try:
            model.count_tokens("Summarise: " + document)
            model.generate("Summarise: " + document[:2000], method="base", max_tokens=1)
        except localpref.ModelError as error:
            refused.append(str(error))
            return
worker = threading.Thread(target=tokenize_for_ever, daemon=sys.argv[1] == "exit")
worker.start()
started.wait()
if sys.argv[1] == "close":
    model.close()
    worker.join()
    print(refused[0])
"""


@pytest.mark.parametrize("how", ["close", "exit"])
def test_closing_while_another_thread_tokenizes_waits_for_it(how: str) -> None:
    """``close()`` (or the exit's finalizer, under a daemon thread) freed the weights while
    another thread was inside llama.cpp's tokenizer: the process died of a segfault."""
    done = subprocess.run([sys.executable, "-c", CLOSE_WHILE_TOKENIZING, how],
                          capture_output=True, text=True, timeout=300, check=False)
    assert done.returncode == 0, done.stderr[-2000:]
    if how == "close":
        assert done.stdout.strip() == "The model is closed; load it again to use it."


READ_INSIDE_EXCLUSIVE_WHILE_ANOTHER_READS = """
import threading, localpref
model = localpref.load(max_lanes=2)
generation = model.stream("Write a long story about a cat.", max_tokens=200)
pieces, three = [], threading.Event()
def read():
    for piece in generation:
        pieces.append(piece)
        if len(pieces) == 3:
            three.set()
reader = threading.Thread(target=read)
reader.start()
three.wait()
with model.exclusive():
    try:
        next(generation)
    except localpref.ModelError as error:
        print(error)
reader.join()
print(generation.result.stats["stop_reason"])
model.close()
"""

GARBAGE_COLLECTED_IN_THE_DECODE_THREAD = """
import gc, threading, time, weakref, localpref
import localpref.engine as engine
model = localpref.load(max_lanes=2)
scheduler, real = model.scheduler, engine.llama_cpp.llama_token_to_piece
def collecting(*args):  # what a collection at an allocation of the step may do
    if scheduler.in_own_thread():
        gc.collect()
    return real(*args)
engine.llama_cpp.llama_token_to_piece = collecting
model.itself = model  # in a cycle: only the collector frees it
generation = model.stream("Write about zebras and quokkas.", max_tokens=60)
generation.start()
generation.itself = generation
freed = weakref.ref(model)
del model, generation
deadline = time.monotonic() + 60
while freed() is not None and time.monotonic() < deadline:
    time.sleep(0.05)
for thread in threading.enumerate():  # the shut-down, and the decode thread it stops
    if thread is not threading.main_thread():
        thread.join(60)
class Cycle: pass
cycle = Cycle(); cycle.me = cycle; gone = weakref.ref(cycle); del cycle
gc.collect()
print(freed() is None, gone() is None)
"""


COLLECTED_INSIDE_A_TOKENIZE = """
import gc, weakref, localpref
import localpref.engine as engine
model = localpref.load(max_lanes=2)
vocabulary, real = model.vocabulary, engine.llama_cpp.llama_tokenize
def collecting(*args):  # what a collection at an allocation inside the call may do
    gc.collect()
    return real(*args)
engine.llama_cpp.llama_tokenize = collecting
model.itself = model  # in a cycle: only the collector frees it
freed = weakref.ref(model)
del model
print(len(vocabulary.tokenize("hello world, a longer sentence", add_special=False)))
print(freed() is None)
"""


def test_a_model_collected_inside_a_tokenize_of_its_own_is_freed_after_it() -> None:
    """The finalizer ran inside the thread's call into the vocabulary and freed the weights
    under it: a segfault (a hang before the vocabulary waited for other threads only)."""
    done = subprocess.run([sys.executable, "-c", COLLECTED_INSIDE_A_TOKENIZE],
                          capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.split() == ["6", "True"]


def test_an_ended_generation_reads_inside_exclusive(model: Model) -> None:
    """A read inside the block is refused only where it would wait: one that has ended
    gives its pieces, its end (StopIteration) and its results as before."""
    unread = model.stream("Say hello.", method=Base(), max_tokens=6).start()
    read = model.stream("Say hello.", method=Base(), max_tokens=6)
    text = "".join(read)
    ran = model.compare("Say hello.", ["base"], max_tokens=6).start()
    deadline = time.monotonic() + 60
    while not (unread.ended and ran.ended) and time.monotonic() < deadline:
        time.sleep(0.01)
    with model.exclusive():
        assert "".join(unread) == text and unread.result.stats["stop_reason"] == "length"
        with pytest.raises(StopIteration):
            next(read)
        assert [result.text for result in ran.run()] == [text]


def test_a_running_answer_read_inside_exclusive_goes_on_after_the_block(model: Model) -> None:
    """Refused from inside the generator, the read cancelled the answer: after the block
    it gave nothing more and ended "cancelled"."""
    generation = model.stream("Write a long story about a cat.", method=Base(),
                              max_tokens=40, ignore_eos=True).start()
    first = next(generation)
    read_inside = ""
    with model.exclusive():
        with pytest.raises(ModelError, match="inside the model's exclusive"):
            while True:  # what was written before the block, then the sentence
                read_inside += next(generation)
    rest = "".join(generation)
    assert generation.result.stats["stop_reason"] == "length"
    assert generation.result.text == first + read_inside + rest
    assert len(generation.result.tokens) == 40


def test_a_read_inside_exclusive_while_another_thread_reads_is_one_sentence() -> None:
    """The second read waited for the first one's turn, which waited for a step that the
    block kept from coming: both threads hung for good."""
    # (a hang is what it guards against; 200 tokens took past 120 s on a loaded CI machine)
    done = subprocess.run([sys.executable, "-c", READ_INSIDE_EXCLUSIVE_WHILE_ANOTHER_READS],
                          capture_output=True, text=True, timeout=300, check=False)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.splitlines() == [
        "This thread is inside the model's exclusive() block, where nothing is decoded: read "
        "the answer after the block ends.", "length"]


def test_a_model_collected_in_its_decode_thread_is_shut_down_from_another() -> None:
    """The collector ran the model's finalizer inside the decode thread's step: closing
    the vocabulary there waited for that very step (and the collector, left "collecting",
    never ran again); before that, the weights were freed under the step (a segfault)."""
    done = subprocess.run([sys.executable, "-c", GARBAGE_COLLECTED_IN_THE_DECODE_THREAD],
                          capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.split() == ["True", "True"]


def test_the_concurrent_bench_reports_every_count(model: Model) -> None:
    from localpref.bench import BenchSettings, bench_concurrent

    settings = BenchSettings(max_tokens=2, repeat=1, concurrent=(1, 2))
    assert settings.lanes_needed >= 4
    table = bench_concurrent(model, settings, lambda message: None)
    assert set(table) == {"1", "2"}
    for row in table.values():
        assert set(row) == {"aggregate_tokens_per_s", "sequential_tokens_per_s", "speedup",
                            "ttft_ms"}
        assert row["aggregate_tokens_per_s"] > 0 and row["sequential_tokens_per_s"] > 0
        assert row["speedup"] == pytest.approx(
            row["aggregate_tokens_per_s"] / row["sequential_tokens_per_s"])
        assert row["ttft_ms"] > 0
    assert model.scheduler.running == 0 and model.scheduler.queued == 0  # all closed


def test_closing_a_request_that_waits_behind_another_ends_it_at_once(
        bundled_path: Path) -> None:
    with Model(bundled_path, max_lanes=2, n_ctx=512, max_queued=2) as small:
        running = small.stream(LONG_STORY, preference="concise", method="amulet",
                               max_tokens=200, ignore_eos=True)
        next(running)
        head = small.stream(PROMPT, preference="concise", method="amulet", max_tokens=2).start()
        behind = small.stream(PROMPT, method="base", max_tokens=2).start()
        assert small.scheduler.queued == 2
        behind.close()  # FIFO: it waits behind the head, yet it ends now
        assert behind.result.stats["stop_reason"] == "cancelled"
        assert behind.result.tokens == [] and small.scheduler.queued == 1
        running.close()
        assert head.run().stats["stop_reason"] == "length"


def test_many_times_the_capacity_submitted_in_one_round_all_answer_exactly(
        bundled_path: Path) -> None:
    """Twelve two-lane requests on four lanes, queued while the scheduler is held so that ONE
    round sees them all: it admits only the two that fit, the rest wait their turn (FIFO),
    and every answer equals the same request alone."""
    prompts = [f"Name {word} herb." for word in ("a", "one", "a green", "a dry", "a rare",
                                                "a cheap", "a common", "a tall", "a soft",
                                                "a bitter", "a sweet", "a wild")]
    with Model(bundled_path, max_lanes=4, n_ctx=256, max_queued=len(prompts)) as small:
        alone = [_alone(small, p, "concise", Amulet(), 3) for p in prompts]
        with small.scheduler.exclusive():
            generations = [small.stream(p, preference="concise", method=Amulet(),
                                        max_tokens=3, ignore_eos=True).start()
                           for p in prompts]
            assert small.scheduler.queued == len(prompts)
        results = [generation.run() for generation in generations]
        events = list(small.scheduler.events)
        assert small.scheduler.running == 0 and small.scheduler.queued == 0
    for together, single in zip(results, alone, strict=True):
        assert together.stats["stop_reason"] == "length"
        assert together.tokens == single.tokens and together.text == single.text
    assert max(e.tokens for e in events if e.kind == "step") <= 4  # never more than fit
    waited = [r.stats["queued_ms"] for r in results]
    assert all(w > 0 for w in waited[2:])


def test_requests_that_join_together_are_prefilled_in_one_decode_and_answer_as_alone(
        bundled_path: Path) -> None:
    """Two requests queued in one round, their rows under ROW_BY_ROW_LIMIT together: one
    prefill decode holds both (the second does not wait for the first's prefill and first
    step), and each answers token for token as alone."""
    prompts = ["Name a herb.", "Name a tree."]
    with Model(bundled_path, max_lanes=4, n_ctx=256) as small:
        alone = [_alone(small, p, None, Base(), 4) for p in prompts]
        seen = len(small.scheduler.events)
        before = small.context.decodes
        with small.scheduler.exclusive():
            generations = [small.stream(p, method=Base(), max_tokens=4, ignore_eos=True).start()
                           for p in prompts]
        results = [generation.run() for generation in generations]
        events = list(small.scheduler.events)[seen:]
        decodes = small.context.decodes - before
    prefills = [e for e in events if e.kind == "prefill"]
    assert len(prefills) == 1 and len(prefills[0].jobs) == 2 and prefills[0].final
    assert prefills[0].tokens == sum(r.stats["prefill_tokens"] for r in results)
    assert decodes == 1 + 3  # one prefill, then both requests' 3 steps together
    assert all(r.stats["prefill_chunks"] == 1 for r in results)
    for together, single in zip(results, alone, strict=True):
        assert together.tokens == single.tokens and together.text == single.text


def test_chats_whose_next_turns_wait_behind_a_request_give_it_their_lanes(
        bundled_path: Path) -> None:
    """Two chats hold all four lanes; a request needing two is queued, then both chats' next
    turns behind it. The head takes the lanes of the chats that wait behind it (they held
    them for turns that could not start before it: every one waited for ever), and every
    answer equals the same request alone."""
    with Model(bundled_path, max_lanes=4, n_ctx=512) as small:
        chats = [small.chat(preference="concise", method="amulet", max_tokens=6)
                 for _ in range(2)]
        for chat in chats:
            chat.send("Hi")
        assert all(chat.holds_lanes for chat in chats)
        with small.scheduler.exclusive():
            head = small.stream(PROMPT, preference="concise", method=Amulet(),
                                max_tokens=6).start()
            turns = [chat.stream("And?").start() for chat in chats]
            assert small.scheduler.queued == 3
        finished: list[Any] = []
        runner = threading.Thread(
            target=lambda: finished.extend([head.run(), *(turn.run() for turn in turns)]),
            daemon=True)
        runner.start()
        runner.join(120)
        assert not runner.is_alive(), (small.scheduler.queued, small.scheduler.running)
        alone_head = _alone(small, PROMPT, "concise", Amulet(), 6)
        alone_turns = [small.generate(chat.messages[:-1], preference="concise",
                                      method=Amulet(), max_tokens=6) for chat in chats]
    assert finished[0].tokens == alone_head.tokens
    for turn, alone in zip(finished[1:], alone_turns, strict=True):
        assert turn.tokens == alone.tokens and turn.text
        # its lanes were taken back: the history was evaluated again
        assert turn.stats["prefill_tokens"] >= turn.stats["n_prompt_tokens"]


def test_a_continuing_request_waits_past_max_queued_and_a_new_one_does_not(
        bundled_path: Path) -> None:
    """``start(continuing=True)``: a later part of a request already accepted (the server's
    later choices of ``n``) waits for lanes whatever ``max_queued``; a new request is refused."""
    with Model(bundled_path, max_lanes=2, n_ctx=256, max_queued=0, n_threads=1) as small:
        alone = small.generate("Hi", method="base", max_tokens=3).tokens
        holding = small.stream(PROMPT, preference="verbose", max_tokens=200,
                               ignore_eos=True).start()
        next(holding)  # it runs on both lanes
        with pytest.raises(BusyError, match=r"^Every lane of this model is busy"):
            small.stream("Hi", method="base", max_tokens=3).start()
        later = small.stream("Hi", method="base", max_tokens=3).start(continuing=True)
        assert small.scheduler.queued == 1
        holding.close()
        assert later.run().tokens == alone


def test_a_request_made_inside_exclusive_is_one_sentence(model: Model) -> None:
    """generate() inside the model's own exclusive() block waited for the block's end, which
    waited for the answer: it hung without a word. Queuing there stays fine (the requests
    start together when the block ends: test_mixed_step)."""
    refusals: list[str] = []

    def ask_inside() -> None:
        with model.exclusive():
            for ask in (lambda: model.generate("Hi", method=Base(), max_tokens=2),
                        lambda: model.stream("Hi", method=Base(), max_tokens=2).run()):
                with pytest.raises(ModelError) as refused:
                    ask()
                refusals.append(str(refused.value))

    asking = threading.Thread(target=ask_inside, daemon=True)
    asking.start()
    asking.join(120)  # (a hang guard: the refusals come within a tenth of a second)
    assert refusals == ["This thread is inside the model's exclusive() block, where nothing "
                        "is decoded: read the answer after the block ends."] * 2
    assert model.generate("Hi", method=Base(), max_tokens=2).tokens  # and after it, as usual


def test_closing_inside_exclusive_while_a_request_runs_returns(bundled_path: Path) -> None:
    """close() inside exclusive() waited for the decode thread, which waited for the block to
    end: it hung for good whenever a request was running."""
    small = Model(bundled_path, max_lanes=2, n_ctx=256)
    stream = small.stream("Tell me a long story.", method=Base(), max_tokens=500,
                          ignore_eos=True)
    pieces = iter(stream)
    next(pieces)  # writing
    closed = threading.Event()

    def close_inside() -> None:
        with small.exclusive():
            small.close()
            closed.set()

    closing = threading.Thread(target=close_inside, daemon=True)
    closing.start()
    closing.join(120)  # (a hang guard: it returns at once)
    assert closed.is_set() and small.closed
    assert list(pieces) is not None and stream.result is not None
    assert stream.result.stats["stop_reason"] == "cancelled"
    with pytest.raises(ModelError):
        small.generate("Hi", method=Base(), max_tokens=2)


def test_a_chat_refused_inside_exclusive_answers_right_after_it(model: Model) -> None:
    """A chat's turn refused inside exclusive() was queued first, so the chat stayed busy
    until the decode thread ended it: the next send() right after the block was a BusyError,
    and the refused turn left an empty answer in the history. It is refused before it is
    queued now."""
    chat = model.chat(max_tokens=3)
    try:
        for _ in range(3):
            with model.exclusive():
                for _ in range(2):  # and again inside: the same sentence
                    with pytest.raises(ModelError, match="inside the model's exclusive"):
                        chat.send("Hello")
            assert chat.messages == [] and model.scheduler.queued == 0
            answer = chat.send("Hello")  # at once after the block
            assert answer.tokens and chat.messages[-1]["content"] == answer.text
            chat.messages.clear()
    finally:
        chat.close()


def test_a_ctrl_c_ends_a_wait_for_exclusive_and_leaves_no_count(model: Model) -> None:
    """A first mend held a Ctrl-C through the whole wait for the lock: the caller could not
    be interrupted while another thread held the block. And a count left by a caller gone
    between its count and the lock (a Ctrl-C there) stopped every round for good."""
    import os
    import signal as signals

    holding, left = threading.Event(), threading.Event()

    def hold() -> None:
        with model.exclusive():
            holding.set()
            time.sleep(3)
        left.set()

    holder = threading.Thread(target=hold, daemon=True)
    holder.start()
    assert holding.wait(60)
    inherited = signals.signal(signals.SIGINT, signals.default_int_handler)
    timer = threading.Timer(0.2, os.kill, (os.getpid(), signals.SIGINT))  # as a terminal does
    try:
        timer.start()
        with pytest.raises(KeyboardInterrupt):
            with model.exclusive():
                pass
        assert not left.is_set()  # interrupted while the other thread still held the block
    finally:
        timer.cancel()
        signals.signal(signals.SIGINT, inherited)
    holder.join(60)
    model.scheduler._exclusive_waiting += 1  # a caller counted, then gone before the lock
    assert model.generate("Hi", method=Base(), max_tokens=2).tokens
    assert model.scheduler._exclusive_waiting == 0


def test_an_interrupt_read_as_exclusive_gets_the_lock_leaves_it_free(bundled_path: Path) -> None:
    """``_thread.interrupt_main`` only sets a flag: the wait for the lock went on, and the
    KeyboardInterrupt was raised the moment it was taken, before the block that releases
    it. The caller kept the lock, and every later request waited for good."""
    import _thread
    import signal as signals

    small = Model(bundled_path, max_lanes=2, n_ctx=256)
    answered: list[int] = []
    try:
        holding = threading.Event()

        def hold() -> None:
            with small.exclusive():
                holding.set()
                time.sleep(1)

        holder = threading.Thread(target=hold, daemon=True)
        holder.start()
        assert holding.wait(60)
        inherited = signals.signal(signals.SIGINT, signals.default_int_handler)
        timer = threading.Timer(0.1, _thread.interrupt_main)
        try:
            timer.start()
            with pytest.raises(KeyboardInterrupt):
                with small.exclusive():
                    pass
        finally:
            timer.cancel()
            signals.signal(signals.SIGINT, inherited)
        holder.join(60)
        later = threading.Thread(target=lambda: answered.extend(
            small.generate("Hi", method=Base(), max_tokens=2).tokens), daemon=True)
        later.start()
        later.join(60)
    finally:
        if not answered:  # the lock kept by this thread: let go of it, or close() waits
            with contextlib.suppress(RuntimeError):  # (not kept: nothing to let go of)
                small.scheduler._work.release()
        small.close()
    assert answered, "a request after the interrupted wait was never decoded"
    assert small.scheduler._exclusive_waiting == 0


def test_closing_after_a_ctrl_c_cut_the_threads_start_short_does_not_raise(
        bundled_path: Path) -> None:
    """A Ctrl-C inside ``Thread.start()`` (the first request's ``enqueue``) left a thread not
    marked started; closing the model then raised ``RuntimeError`` ("cannot join thread
    before it is started") where ``localpref bench`` was to exit 130."""
    small = Model(bundled_path, max_lanes=1, n_ctx=256, n_threads=1)
    never_started = threading.Thread(target=lambda: None, daemon=True)
    small.scheduler._thread = never_started  # what start() cut short leaves
    began = time.monotonic()
    small.close()
    assert time.monotonic() - began < 30  # (it gives up on the thread after a second)
    assert not never_started.is_alive()


_CLOSED_INSIDE_A_READ = """
import localpref
model = localpref.load(n_threads=1, n_ctx=256, max_lanes=1)
unended = model.vocabulary.reading()  # a read a Ctrl-C cut short: it never ends
unended.__enter__()
model.close()  # (handed to a thread of its own, which waits for that read)
print("closed")
"""


def test_a_process_whose_model_closed_inside_an_unended_read_still_exits() -> None:
    """``localpref bench`` stopped by Ctrl-C inside a vocabulary call hung at exit: the close,
    handed to a thread of its own, waited for the read for good, and the process for it."""
    run = subprocess.run([sys.executable, "-c", _CLOSED_INSIDE_A_READ], capture_output=True,
                         text=True, timeout=120)  # (seconds it takes; it hung for good)
    assert (run.returncode, run.stdout) == (0, "closed\n"), run.stderr
