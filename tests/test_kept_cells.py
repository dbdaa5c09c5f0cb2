"""A finished request's cells stay in its lane's stream for the next request that starts the
same way (a server's clients send the same system prompt, and a chat's next turn whole): the
bundled model through real llama.cpp, the prefill counted, the logits and answers bit for bit
those of a fresh evaluation, and the cached tokens in the server's usage."""

from __future__ import annotations

import threading
from pathlib import Path

import llama_cpp
import numpy as np
from server_helpers import MODEL_ID, running_server, sdk_client

from localpref import Amulet, Base
from localpref.api import Model
from localpref.engine import REUSE_FAR_STREAM, Context

SYSTEM = "You are a helpful gardening assistant who answers in plain words."


def _target(model: Model, question: str) -> list[int]:
    messages = [{"role": "system", "content": SYSTEM}, {"role": "user", "content": question}]
    return model.prompts.lane_tokens(messages, None)


def _fresh_logits(model: Model, target: list[int]) -> np.ndarray:
    context = Context(model.context.model, n_ctx=256, max_lanes=1, n_threads=2)
    try:
        lane = context.open_lane()
        context.prefill([lane], [target])
        return context.logits(0).copy()
    finally:
        context.close()


def _common(first: list[int], second: list[int]) -> int:
    return next((i for i, (a, b) in enumerate(zip(first, second, strict=False)) if a != b),
                min(len(first), len(second)))


def test_a_kept_lane_serves_the_next_prompt_that_starts_the_same_way(model: Model) -> None:
    first = _target(model, "How do I keep basil alive?")
    second = _target(model, "Which herbs grow in shade?")
    shared = _common(first, second)
    assert 10 < shared < len(second) - 1
    context = Context(model.context.model, n_ctx=256, max_lanes=2, n_threads=2)
    try:
        lane = context.open_lane(first)
        context.prefill([lane], [first])
        context.step([lane], [int(np.argmax(context.logits(0)))])
        answered = list(lane.tokens)
        context.close_lane(lane, keep=True)
        assert llama_cpp.llama_memory_seq_pos_max(context.memory, lane.seq_id) == \
            len(answered) - 1

        reused = context.open_lane(second)
        assert reused.seq_id == lane.seq_id and reused.tokens == answered
        evaluated = context.prefill([reused], [second])
        assert evaluated == len(second) - shared
        assert reused.tokens == second
        assert np.array_equal(context.logits(0), _fresh_logits(model, second))
    finally:
        context.close()


def test_a_lane_beside_a_running_one_stays_next_to_it_unless_a_far_stream_keeps_much_more(
        model: Model) -> None:
    """Beside a running lane a new lane takes the next stream (a decode's attention spans
    the streams from its lowest to its highest), unless a stream further off keeps
    REUSE_FAR_STREAM more tokens of its prompt: a conversation sent whole again. With nothing
    running, a lane takes the stream that kept most of its prompt."""
    short = _target(model, "How do I keep basil alive?")
    story = model.vocabulary.tokenize("Tell me about rivers and the sea. " * 12, add_special=True)
    assert len(story) > REUSE_FAR_STREAM + 8 and _common(short, story) == 0
    context = Context(model.context.model, n_ctx=256, max_lanes=3, n_threads=2)
    try:
        low, middle, high = context.open_lanes([short, None, story])
        assert (low.seq_id, middle.seq_id, high.seq_id) == (0, 1, 2)
        context.prefill([low, middle, high], [short, short, story])
        for lane in (low, middle, high):
            context.close_lane(lane, keep=True)

        again = context.open_lane(story + story[1:9])  # nothing runs: where its cells are
        assert again.seq_id == 2 and again.tokens == story
        assert context.prefill([again], [story + story[1:9]]) == 8
        unrelated = context.open_lane(model.vocabulary.tokenize("Once upon", add_special=True))
        assert unrelated.seq_id == 1 and unrelated.tokens == []  # next to it, not 0
        context.close_lane(unrelated)
        context.close_lane(again, keep=True)

        running = context.open_lane(short)
        assert running.seq_id == 0 and running.tokens == short
        far = context.open_lane(story)  # stream 1 is next to it, but 2 keeps the story
        assert far.seq_id == 2 and far.tokens[:len(story)] == story
        close = context.open_lane(short)  # the only free stream
        assert close.seq_id == 1 and close.tokens == []  # it kept nothing
    finally:
        context.close()


def test_steered_requests_leave_each_kind_of_prompt_where_the_next_requests_find_it(
        bundled_path: Path) -> None:
    """Two steered requests opened together take a block of four streams, their preference
    lanes side by side and their plain lanes side by side, so two Base requests after them
    find their prompt's head in two adjacent streams, as after two Base requests."""
    model = Model(bundled_path, n_ctx=256, max_lanes=4, n_threads=2, keep_cells=True)
    try:
        def together(preference: str | None, questions: list[str]) -> list[int]:
            cached: list[int] = [0] * len(questions)

            def ask(index: int) -> None:
                messages = [{"role": "system", "content": SYSTEM},
                            {"role": "user", "content": questions[index]}]
                result = model.generate(messages, preference=preference,
                                        method=Amulet() if preference else Base(),
                                        max_tokens=4)
                cached[index] = result.stats["cached_tokens"]
            threads = [threading.Thread(target=ask, args=(i,)) for i in range(len(questions))]
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join()
            return cached

        questions = ["How do I keep basil alive?", "Which herbs grow in shade?"]
        together(None, questions)
        after_base = together(None, ["When do I sow peas?", "Is mint invasive?"])
        together("concise", questions)
        after_steered = together(None, ["When do I sow peas?", "Is mint invasive?"])
        head = _common(_target(model, "When do I sow peas?"), _target(model, "Is mint invasive?"))
        assert after_base == after_steered
        assert min(after_steered) >= head > 10
    finally:
        model.close()


def test_a_lane_opened_without_a_prefix_or_whose_cache_does_not_match_starts_empty(
        model: Model) -> None:
    first = _target(model, "How do I keep basil alive?")
    context = Context(model.context.model, n_ctx=256, max_lanes=1, n_threads=2)
    try:
        lane = context.open_lane(first)
        context.prefill([lane], [first])
        context.close_lane(lane, keep=True)
        plain = context.open_lane()  # beams, the judge, the exactness bench
        assert plain.tokens == []
        assert llama_cpp.llama_memory_seq_pos_max(context.memory, plain.seq_id) == -1

        context.prefill([plain], [first])
        plain.tokens.append(first[0])  # the list says more than the cache holds
        context.close_lane(plain, keep=True)
        again = context.open_lane(first)
        assert again.tokens == []
        assert llama_cpp.llama_memory_seq_pos_max(context.memory, again.seq_id) == -1
    finally:
        context.close()


def test_requests_with_one_system_prompt_reuse_it_and_answer_as_a_fresh_model(
        bundled_path: Path) -> None:
    """Twelve requests, three times the lanes there are, sent at once after a first one:
    those that find a finished request's stream evaluate only what their prompt does not share
    with it (none evaluates more than fresh), and every answer is token for token that of a
    fresh model."""
    questions = [f"Name {word} herb for a sunny window." for word in
                 ("a", "one", "a green", "a dry", "a rare", "a cheap", "a common", "a tall",
                  "a soft", "a bitter", "a sweet", "a wild")]
    system = [{"role": "system", "content": SYSTEM}]

    def ask(model: Model, question: str, method) -> object:  # noqa: ANN001
        return model.generate(system + [{"role": "user", "content": question}],
                              preference="concise", method=method, max_tokens=4,
                              ignore_eos=True)

    methods = [Base() if i % 2 else Amulet() for i in range(len(questions))]
    fresh = []
    for question, method in zip(questions, methods, strict=True):
        with Model(bundled_path, max_lanes=2, n_ctx=256) as alone:
            fresh.append(ask(alone, question, method))
    with Model(bundled_path, max_lanes=4, n_ctx=256, max_queued=len(questions),
               keep_cells=True) as shared:
        first = ask(shared, questions[0], methods[0])
        assert first.tokens == fresh[0].tokens
        results: list = [None] * len(questions)

        def worker(index: int) -> None:
            results[index] = ask(shared, questions[index], methods[index])

        threads = [threading.Thread(target=worker, args=(i,)) for i in range(len(questions))]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(300)
    for together, alone in zip(results, fresh, strict=True):
        assert together.tokens == alone.tokens and together.text == alone.text
        assert together.stats["prefill_tokens"] <= alone.stats["prefill_tokens"]
    reused = [r for r, a in zip(results, fresh, strict=True)
              if r.stats["prefill_tokens"] < a.stats["prefill_tokens"]]
    assert len(reused) >= len(questions) // 2


def test_a_conversation_sent_whole_again_reports_its_turns_as_cached_tokens(
        bundled_path: Path) -> None:
    """Over HTTP with the openai SDK, a model that keeps cells as ``localpref serve``'s does:
    turn 2 of a conversation (turn 1 and its answer sent again, as every OpenAI client does)
    finds turn 1 in the cache, and usage says how much; a model that does not finds none."""
    with Model(bundled_path, max_lanes=2, n_ctx=512, keep_cells=True) as model, \
            running_server(model) as server:
        first, second = _two_turns(sdk_client(server.url))
    assert first.usage.prompt_tokens_details.cached_tokens < first.usage.prompt_tokens
    cached = second.usage.prompt_tokens_details.cached_tokens
    assert first.usage.prompt_tokens <= cached < second.usage.prompt_tokens
    stats = second.model_extra["localpref"]["stats"]
    assert stats["cached_tokens"] == cached
    assert stats["prefill_tokens"] == second.usage.prompt_tokens - cached

    with Model(bundled_path, max_lanes=2, n_ctx=512) as model, running_server(model) as server:
        _, again = _two_turns(sdk_client(server.url))
    assert again.usage.prompt_tokens_details.cached_tokens == 0
    assert again.choices[0].message.content == second.choices[0].message.content


def _two_turns(client):  # noqa: ANN001, ANN202
    first_turn = [{"role": "system", "content": SYSTEM},
                  {"role": "user", "content": "How do I keep basil alive?"}]
    first = client.chat.completions.create(model=MODEL_ID, messages=first_turn, max_tokens=8)
    second_turn = first_turn + [{"role": "assistant", "content": first.choices[0].message.content},
                                {"role": "user", "content": "And mint?"}]
    second = client.chat.completions.create(model=MODEL_ID, messages=second_turn,
                                            max_tokens=8)
    return first, second
