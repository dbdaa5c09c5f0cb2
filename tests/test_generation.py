"""End-to-end generation on the bundled model through real llama.cpp: every method, the
contract's stats, seeds, stops, cancelling, comparisons and chats."""

from __future__ import annotations

import threading

import pytest

import localpref
from localpref import PAD, Amulet, Base, Contrastive, Pref
from localpref.api import Model

PROMPT = "How do I keep basil alive?"
STATS_KEYS = {"n_tokens", "prefill_ms", "decode_ms", "tokens_per_s", "steer_ms_per_token",
              "stop_reason"}


@pytest.mark.parametrize("method", ["base", "pref", "contrastive", "amulet", "pad"])
def test_every_method_generates_with_contract_stats(model: Model, method: str) -> None:
    result = model.generate(PROMPT, preference="concise", method=method, max_tokens=12)
    assert result.text.strip()
    assert 1 <= len(result.tokens) <= 12
    assert STATS_KEYS <= set(result.stats)
    assert result.stats["n_tokens"] == len(result.tokens)
    assert result.stats["tokens_per_s"] > 0
    assert result.stats["stop_reason"] in {"eos", "length"}
    assert result.stats["method"].split(" ")[0] == method
    assert model.vocabulary.detokenize(result.tokens) == result.text


def test_pad_without_reward_model_says_it_uses_the_prompt_contrast(model: Model) -> None:
    result = model.generate(PROMPT, preference="concise", method="pad", max_tokens=4)
    assert result.stats["method"] == "pad (prompt-contrast reward)"


def test_no_preference_means_plain_decoding(model: Model) -> None:
    steered = model.generate(PROMPT, method="amulet", max_tokens=16)
    plain = model.generate(PROMPT, method="base", max_tokens=16)
    assert steered.stats["method"] == "base"
    assert steered.tokens == plain.tokens


def test_zero_strength_methods_equal_the_preference_lane(model: Model) -> None:
    """With r = 0, alpha = 0 or w = 0 every two-lane method reduces to Pref (greedy)."""
    pref = model.generate(PROMPT, preference="verbose", method=Pref(), max_tokens=24).tokens
    for method in (Contrastive(ratio=0.0), Amulet(alpha=0.0), PAD(weight=0.0)):
        tokens = model.generate(PROMPT, preference="verbose", method=method, max_tokens=24).tokens
        assert tokens == pref, method


def test_steering_changes_the_answer(model: Model) -> None:
    pref = model.generate(PROMPT, preference="concise", method="pref", max_tokens=24).tokens
    amulet = model.generate(PROMPT, preference="concise", method="amulet", max_tokens=24).tokens
    assert amulet != pref


def test_amulet_exact_form_and_loop_choose_the_same_tokens(model: Model) -> None:
    exact = model.generate(PROMPT, preference="uplifting", method=Amulet(alpha=1.0),
                           max_tokens=24)
    loop = model.generate(PROMPT, preference="uplifting", method=Amulet(alpha=1.0, exact=False),
                          max_tokens=24)
    assert exact.tokens == loop.tokens
    assert loop.stats["method"] == "amulet (loop)"


def test_ignore_eos_generates_exactly_max_tokens(model: Model) -> None:
    result = model.generate("Say hi.", preference="concise", method="amulet", max_tokens=40,
                            ignore_eos=True)
    assert len(result.tokens) == 40
    assert result.stats["stop_reason"] == "length"


def test_a_seed_fixes_sampled_output(model: Model) -> None:
    def sample(seed: int) -> list[int]:
        return model.generate(PROMPT, preference="creative", method="amulet", max_tokens=24,
                              temperature=1.0, top_p=0.95, seed=seed).tokens

    first = sample(7)
    assert sample(7) == first
    assert any(sample(seed) != first for seed in (8, 9, 10))


def test_a_cut_inside_a_character_drops_its_bytes_instead_of_writing_u_fffd(
        model: Model) -> None:
    """🌻 is three tokens of the bundled model (four UTF-8 bytes): an answer cut after one or
    two of them has written no character yet, so it ends with nothing, not U+FFFD."""
    prompt = "Reply with only this emoji: 🌻"
    whole = model.generate(prompt, method="base", max_tokens=3)
    assert whole.text == "🌻" and len(whole.tokens) == 3
    for cut in (1, 2):
        partial = model.generate(prompt, method="base", max_tokens=cut)
        assert partial.tokens == whole.tokens[:cut]
        assert partial.text == "" and partial.stats["stop_reason"] == "length"
        assert list(model.stream(prompt, method="base", max_tokens=cut)) == []


def test_stop_string_ends_the_answer_before_it(model: Model) -> None:
    result = model.generate("Count from 1 to 20, separated by commas.", method="base",
                            max_tokens=80, stop=["7"])
    assert result.stats["stop_reason"] == "stop"
    assert "7" not in result.text
    assert "6" in result.text


def test_stream_pieces_join_to_the_result(model: Model) -> None:
    generation = model.stream(PROMPT, preference="verbose", method="pad", max_tokens=30)
    pieces = list(generation)
    assert len(pieces) > 1
    assert "".join(pieces) == generation.result.text


def test_closing_a_stream_cancels_and_keeps_the_partial_answer(model: Model) -> None:
    generation = model.stream("Write a long story about a dragon.", preference="verbose",
                              method="amulet", max_tokens=200, ignore_eos=True)
    shown = [next(generation) for _ in range(5)]
    generation.close()
    result = generation.result
    assert result.stats["stop_reason"] == "cancelled"
    assert result.text == "".join(shown)
    assert result.stats["n_tokens"] < 200
    # The model is free again: the lock and the lanes were given back.
    assert model.generate("Hi", method="base", max_tokens=2).tokens


def test_cancel_from_another_thread_ends_the_answer_at_the_next_step(model: Model) -> None:
    generation = model.stream("Write a long story about a dragon.", preference="verbose",
                              method="amulet", max_tokens=200, ignore_eos=True)
    shown = [next(generation) for _ in range(3)]
    worker = threading.Thread(target=generation.cancel)
    worker.start()
    worker.join()
    shown += list(generation)  # at most the piece of the step under way
    result = generation.result
    assert result.stats["stop_reason"] == "cancelled"
    assert result.text == "".join(shown)
    assert len(result.tokens) <= 4


def test_cancel_before_the_prefill_ends_it_with_nothing_written(model: Model) -> None:
    generation = model.stream("Write a long story about a dragon.", method="amulet",
                              max_tokens=50)
    generation.cancel()
    assert list(generation) == []
    assert generation.result.stats["stop_reason"] == "cancelled"
    assert generation.result.text == "" and generation.result.tokens == []
    assert model.generate("Hi", method="base", max_tokens=2).tokens  # lanes given back


def test_compare_decodes_methods_together_with_the_same_answers(model: Model) -> None:
    methods = [Base(), Pref(), Amulet(), PAD()]
    together = model.compare(PROMPT, methods, preference="concise", max_tokens=20).run()
    alone = [model.generate(PROMPT, preference="concise", method=m, max_tokens=20)
             for m in methods]
    assert [r.tokens for r in together] == [r.tokens for r in alone]
    assert [r.stats["method"] for r in together] == [r.stats["method"] for r in alone]


def test_compare_evaluates_the_shared_prompt_once(model: Model) -> None:
    one = model.generate(PROMPT, preference="concise", method="pref", max_tokens=1)
    many = model.compare(PROMPT, [Pref(), Pref(), Pref()], preference="concise",
                         max_tokens=1).run()
    # Each extra lane only evaluates its last prompt token; the rest is copied.
    assert many[0].stats["prefill_tokens"] == one.stats["prefill_tokens"] + 2


def test_chat_evaluates_only_the_new_tokens_of_a_turn(model: Model) -> None:
    chat = model.chat(preference="concise", method="amulet", max_tokens=16)
    first = chat.send("Name a herb.")
    second = chat.send("Name another one.")
    assert len(chat.messages) == 4
    assert chat.messages[1] == {"role": "assistant", "content": first.text}
    assert second.stats["n_prompt_tokens"] > first.stats["n_prompt_tokens"]
    # The history is in the cache: far fewer tokens are evaluated than the prompt holds.
    assert second.stats["prefill_tokens"] < second.stats["n_prompt_tokens"]
    new_message_tokens = len(model.vocabulary.tokenize("Name another one.", add_special=False))
    assert second.stats["prefill_tokens"] <= 2 * (new_message_tokens + 16 + 12)
    chat.close()


def test_chat_answer_matches_a_fresh_generation_of_the_same_history(model: Model) -> None:
    chat = model.chat(preference="concise", method="contrastive", max_tokens=12)
    chat.send("Name a herb.")
    second = chat.send("And a spice?")
    fresh = model.generate(chat.messages[:-1], preference="concise", method="contrastive",
                           max_tokens=12)
    assert second.tokens == fresh.tokens
    chat.close()


def test_cancelled_chat_answer_is_kept_as_partial(model: Model) -> None:
    chat = model.chat(preference="verbose", method="base", max_tokens=200)
    generation = chat.stream("Tell me a long story.")
    shown = "".join(next(generation) for _ in range(3))
    generation.close()
    assert chat.messages[-1] == {"role": "assistant", "content": shown}
    chat.close()


def test_a_stream_left_with_break_ends_at_once_with_the_partial_answer_kept(
        model: Model) -> None:
    """A ``for`` loop left with ``break`` drops the stream unread: it ends then, as if
    closed, not whenever the cycle collector runs (which is kept off here). The chat takes
    its next turn at once, after the partial answer; a model's stream gives its lanes back."""
    import gc

    gc.collect()
    gc.disable()
    try:
        chat = model.chat(preference="verbose", method="base", max_tokens=200)
        shown = ""
        for piece in chat.stream("Tell me a long story."):
            shown += piece
            if len(shown) > 5:
                break
        reply = chat.send("Name a fruit.", max_tokens=4)
        assert chat.messages[-4:] == [
            {"role": "user", "content": "Tell me a long story."},
            {"role": "assistant", "content": shown},
            {"role": "user", "content": "Name a fruit."},
            {"role": "assistant", "content": reply.text}]
        chat.close()
        small = _one_lane_copy(model)
        try:
            for _ in small.stream("Write a long story.", max_tokens=200, ignore_eos=True):
                break
            assert small.generate("Hi", method="base", max_tokens=2).tokens  # no BusyError
        finally:
            small.close()
    finally:
        gc.enable()


def _one_lane_copy(model: Model) -> Model:
    """The same model file with one lane and no queue: a request waiting is a BusyError."""
    return localpref.load(model.path, max_lanes=1, max_queued=0, n_ctx=512, n_threads=2)


def test_several_preferences_combine(model: Model) -> None:
    result = model.generate(PROMPT, preference=["concise", "formal"], method="amulet",
                            max_tokens=4)
    assert result.stats["preference"] == "concise + formal"


def test_load_without_arguments_gives_the_bundled_model() -> None:
    with localpref.load() as loaded:
        assert loaded.vocabulary.size == 49152
        assert loaded.generate("Hi", method="base", max_tokens=3).tokens


@pytest.mark.parametrize("method", ["base", "amulet", "pad"])
def test_repeat_penalty_discourages_repeating_tokens(model: Model, method: str) -> None:
    prompt = "Repeat the word 'basil' thirty times."
    plain = model.generate(prompt, preference="concise", method=method, max_tokens=40,
                           ignore_eos=True)
    penalised = model.generate(prompt, preference="concise", method=method, max_tokens=40,
                               ignore_eos=True, repeat_penalty=1.5)
    assert penalised.tokens != plain.tokens
    assert len(set(penalised.tokens)) > len(set(plain.tokens))


def test_repeat_penalty_one_changes_nothing(model: Model) -> None:
    plain = model.generate(PROMPT, preference="concise", method="amulet", max_tokens=16)
    same = model.generate(PROMPT, preference="concise", method="amulet", max_tokens=16,
                          repeat_penalty=1.0)
    assert same.tokens == plain.tokens


def test_an_answer_stops_at_the_end_of_the_lane_window(bundled_path) -> None:  # noqa: ANN001
    with Model(bundled_path, n_ctx=64, max_lanes=2) as small:
        prompt_tokens = small.count_tokens("Hi")
        result = small.generate("Hi", method="base", max_tokens=500, ignore_eos=True)
    assert result.stats["stop_reason"] == "length"
    assert len(result.tokens) == 64 - prompt_tokens  # the prompt and the answer fill it


def test_pad_prompt_contrast_over_the_whole_vocabulary_equals_contrastive(model: Model) -> None:
    """Without a reward model PAD scores z_pref + w (lsK(z_pref) - lsK(z_base)): with K = V
    that is Contrastive with ratio w, so the greedy answers agree (and steer toward the
    preference, not away from it)."""
    whole = PAD(weight=2.0, candidates=model.vocabulary.size)
    pad = model.generate(PROMPT, preference="concise", method=whole, max_tokens=16)
    contrastive = model.generate(PROMPT, preference="concise", method=Contrastive(ratio=2.0),
                                 max_tokens=16)
    assert pad.tokens == contrastive.tokens
