"""The engine on real llama.cpp: batched lanes, prefix sharing, tokens, templates."""

from __future__ import annotations

import codecs
import ctypes
import math

import llama_cpp
import numpy as np
import pytest

from localpref.api import Model
from localpref.engine import (
    ROW_BY_ROW_LIMIT,
    SHARED_PREFIX_COPY,
    Context,
    PrefillStopped,
    Vocabulary,
    step_rows,
    stream_runs,
)
from localpref.errors import SettingsError, TemplateError
from localpref.prompts import CHATML_TEMPLATE, ChatTemplate, PromptBuilder, system_text


def _lane_logits(context: Context, targets: list[list[int]], steps: list[int]) -> list[np.ndarray]:
    """Prefill the targets as lanes of one batch, step them, return copies of the logits."""
    lanes = [context.open_lane() for _ in targets]
    try:
        context.prefill(lanes, targets)
        for token in steps:
            context.step(lanes, [token] * len(lanes))
        return [context.logits(i).copy() for i in range(len(lanes))]
    finally:
        for lane in lanes:
            context.close_lane(lane)


def _held_logits(context: Context, lanes: list, targets: list[list[int]]) -> list[np.ndarray]:
    """After a prefill: every lane holds its whole target (tokens and cache); its logits."""
    for lane, target in zip(lanes, targets, strict=True):
        assert lane.tokens == target
        assert llama_cpp.llama_memory_seq_pos_max(context.memory, lane.seq_id) == \
            len(target) - 1
    return [context.logits(i).copy() for i in range(len(lanes))]


def _equal_alone(context: Context, targets: list[list[int]],
                 together: list[np.ndarray]) -> bool:
    """Each lane's logits bit-for-bit those of its target prefilled alone."""
    alone = [_lane_logits(context, [target], [])[0] for target in targets]
    return all(np.array_equal(a, b) for a, b in zip(together, alone, strict=True))


def test_lanes_decoded_in_one_batch_match_separate_decodes(model: Model) -> None:
    prompts = model.prompts
    messages = [{"role": "user", "content": "How do I keep basil alive?"}]
    pref = prompts.lane_tokens(messages, "Be concise.")
    base = prompts.lane_tokens(messages, None)
    steps = model.vocabulary.tokenize(" Water it often", add_special=False)
    together = _lane_logits(model.context, [pref, base], steps)
    alone = [_lane_logits(model.context, [target], steps)[0] for target in (pref, base)]
    for batched, single in zip(together, alone, strict=True):
        # bit for bit: llama.cpp's CPU kernels treat the rows of a batch independently, and
        # each lane's cells are in the order of its positions (see Context)
        assert np.array_equal(batched, single)
    # The lanes really differ: the preference changes the next-token distribution.
    assert np.max(np.abs(together[0] - together[1])) > 0.1


def test_a_long_shared_prefix_is_copied_not_evaluated_again(model: Model) -> None:
    """From SHARED_PREFIX_COPY tokens a prefix the lanes share is evaluated in the first lane
    and copied to the others' streams (a decode more); the logits are each lane's alone."""
    prompts = model.prompts
    question = "Tell me about the history of the river stone bridge in our old town. " * 3
    target = prompts.lane_tokens([{"role": "user", "content": question}], None)
    assert len(target) - 1 >= SHARED_PREFIX_COPY
    context = model.context
    lanes = [context.open_lane() for _ in range(3)]
    try:
        before = context.decodes
        evaluated = context.prefill(lanes, [target] * 3)
        assert context.decodes - before == 2  # the first lane's rows; the last tokens
        together = _held_logits(context, lanes, [target] * 3)
    finally:
        for lane in lanes:
            context.close_lane(lane)
    assert evaluated == len(target) + 2
    assert _equal_alone(context, [target] * 3, together)


def test_a_prompt_costs_ceil_n_over_n_batch_decodes_and_its_logits_do_not_move(
        model: Model) -> None:
    """The last prompt token rides in the last chunk when together they stay row by row
    (under ROW_BY_ROW_LIMIT rows), not in a decode of its own: n new tokens cost
    ceil(n / n_batch) decodes, and the logits are those of the separate decodes."""
    words = model.vocabulary.tokenize(" river stone" * 120, add_special=True)
    for n_batch in (32, 512):
        context = Context(model.context.model, n_ctx=512, max_lanes=2, n_batch=n_batch,
                          n_threads=2)
        try:
            for length in (2, 31, 32, 33, 40, 63, 64, 65, 100, 200):
                lane = context.open_lane()
                before = context.decodes
                assert context.prefill([lane], [words[:length]]) == length
                decodes = context.decodes - before
                assert lane.tokens == words[:length]
                assert llama_cpp.llama_memory_seq_pos_max(context.memory, lane.seq_id) == \
                    length - 1
                joined = context.logits(0).copy()
                context.close_lane(lane)
                if length >= ROW_BY_ROW_LIMIT and n_batch >= ROW_BY_ROW_LIMIT:
                    # a tiled chunk and the last token alone, as before: nothing moves
                    assert decodes == math.ceil((length - 1) / n_batch) + 1
                    continue
                assert decodes == math.ceil(length / n_batch)
                # the old way: every token but the last, then the last one in a decode alone
                lane = context.open_lane()
                context.prefill([lane], [words[: length - 1]])
                context.step([lane], [words[length - 1]])
                assert np.array_equal(context.logits(0), joined)
                context.close_lane(lane)
        finally:
            context.close()


def test_two_lanes_sharing_a_short_prefix_are_prefilled_in_one_decode(model: Model) -> None:
    """A prefix under SHARED_PREFIX_COPY tokens is evaluated in each lane's own stream, in
    the same decode (a row of several sequences needs llama.cpp's unified cache)."""
    prompts = model.prompts
    messages = [{"role": "user", "content": "How do I keep basil alive?"}]
    pref = prompts.lane_tokens(messages, "Be concise.")
    base = prompts.lane_tokens(messages, None)
    shared = next(i for i, (a, b) in enumerate(zip(pref, base, strict=False)) if a != b)
    assert 4 < shared < SHARED_PREFIX_COPY
    context = model.context
    lanes = [context.open_lane() for _ in range(2)]
    try:
        before = context.decodes
        assert context.prefill(lanes, [pref, base]) == len(pref) + len(base)
        assert context.decodes - before == 1
        together = _held_logits(context, lanes, [pref, base])
    finally:
        for lane in lanes:
            context.close_lane(lane)
    assert _equal_alone(context, [pref, base], together)


def test_a_lane_takes_a_prefix_from_a_lane_that_took_it_from_a_third(model: Model) -> None:
    """Cells kept, copied and evaluated for several lanes in one prefill: A holds a cached
    head, B shares more with A, C shares still more with B; every lane's logits are those of
    its prompt prefilled alone, and its cache holds its whole prompt."""
    words = model.vocabulary.tokenize(" river stone" * 30, add_special=True)
    other = model.vocabulary.tokenize(" basil mint thyme sage" * 5, add_special=False)
    first = words[:30]
    second = words[:15] + other[:10]
    third = words[:15] + other[:5] + other[12:20]
    context = model.context
    lanes = [context.open_lane() for _ in range(3)]
    try:
        context.prefill(lanes[:1], [words[:11]])  # A's cached head
        before = context.decodes
        evaluated = context.prefill(lanes, [first, second, third])
        assert context.decodes - before == 1
        # A: 19 new tokens; B and C copy A's cached head (C through B) and evaluate the rest
        # in their own streams (under SHARED_PREFIX_COPY beyond the head: in the same decode)
        shared = next(i for i, (a, b) in enumerate(zip(second, third, strict=False)) if a != b)
        assert 20 <= shared < 11 + SHARED_PREFIX_COPY
        assert evaluated == (30 - 11) + (25 - 11) + (len(third) - 11)
        together = _held_logits(context, lanes, [first, second, third])
    finally:
        for lane in lanes:
            context.close_lane(lane)
    assert _equal_alone(context, [first, second, third], together)


def test_end_of_generation_tokens_include_the_chat_end_token(model: Model) -> None:
    vocabulary = model.vocabulary
    im_end = vocabulary.tokenize("<|im_end|>", add_special=False)
    assert len(im_end) == 1
    assert vocabulary.is_end_of_generation(im_end[0])
    assert vocabulary.is_end_of_generation(vocabulary.eos_id)
    assert not vocabulary.is_end_of_generation(vocabulary.tokenize("Hi", add_special=False)[0])


def test_long_pieces_are_not_dropped(model: Model) -> None:
    vocabulary = model.vocabulary
    longest = max(range(vocabulary.size), key=lambda t: len(vocabulary.token_text(t)))
    piece = vocabulary.piece(longest)
    assert len(piece) > 32
    text = piece.decode("utf-8")
    assert vocabulary.detokenize(vocabulary.tokenize(text, add_special=False)) == text


def test_incremental_utf8_decoding_of_split_characters(model: Model) -> None:
    vocabulary = model.vocabulary
    text = "Café 😀 日本語 naïve"
    tokens = vocabulary.tokenize(text, add_special=False)
    pieces = [vocabulary.piece(token) for token in tokens]
    # Some character is split across tokens: a piece alone is not valid UTF-8.
    assert any(_invalid_utf8(piece) for piece in pieces)
    decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
    streamed = "".join(decoder.decode(piece) for piece in pieces) + decoder.decode(b"", True)
    assert streamed == text
    assert "\ufffd" not in streamed


def _invalid_utf8(data: bytes) -> bool:
    try:
        data.decode("utf-8")
    except UnicodeDecodeError:
        return True
    return False


def test_rendering_uses_the_gguf_template_with_generation_prompt(model: Model) -> None:
    builder = model.prompts
    text = builder.lane_text([{"role": "user", "content": "Hi"}], "Be brief.")
    assert "You are a helpful assistant. Be brief." in text
    assert text.rstrip().endswith("<|im_start|>assistant")


GEMMA_LIKE = (
    "{{ bos_token }}{% if messages[0]['role'] == 'system' %}"
    "{{ raise_exception('System role not supported') }}{% endif %}"
    "{% for message in messages %}<start_of_turn>{{ message['role'] }}\n"
    "{{ message['content'] }}<end_of_turn>\n{% endfor %}"
    "{% if add_generation_prompt %}<start_of_turn>model\n{% endif %}"
)


def test_template_without_system_role_gets_the_system_text_in_the_first_user_message() -> None:
    template = ChatTemplate(GEMMA_LIKE, bos_token="<bos>")
    assert not template.has_system_role
    rendered = template.render_with_system(
        "You are a helpful assistant. Be brief.", [{"role": "user", "content": "Hi"}]
    )
    assert rendered == (
        "<bos><start_of_turn>user\nYou are a helpful assistant. Be brief.\n\nHi<end_of_turn>\n"
        "<start_of_turn>model\n"
    )


#: Gemma 3's template as published: a system text goes in front of the first user turn.
GEMMA_3 = (
    "{{ bos_token }}{%- if messages[0]['role'] == 'system' -%}"
    "{%- set first_user_prefix = messages[0]['content'] + '\\n\\n' -%}"
    "{%- set loop_messages = messages[1:] -%}{%- else -%}{%- set first_user_prefix = '' -%}"
    "{%- set loop_messages = messages -%}{%- endif -%}"
    "{%- for message in loop_messages -%}"
    "{%- set role = 'model' if message['role'] == 'assistant' else message['role'] -%}"
    "{{ '<start_of_turn>' + role + '\\n' + (first_user_prefix if loop.first else '') }}"
    "{{ message['content'] + '<end_of_turn>\\n' }}"
    "{%- endfor -%}{%- if add_generation_prompt -%}{{ '<start_of_turn>model\\n' }}{%- endif -%}"
)
#: As Qwen3's template does: a conversation without a user message is refused.
NEEDS_A_USER = (
    "{%- if not (messages | selectattr('role', 'equalto', 'user') | list) -%}"
    "{{ raise_exception('No user query found in messages.') }}{%- endif -%}"
    "{%- for m in messages -%}{{ '<|im_start|>' + m['role'] + '\\n' + m['content'] }}"
    "{{ '<|im_end|>\\n' }}{%- endfor -%}"
    "{%- if add_generation_prompt -%}{{ '<|im_start|>assistant\\n' }}{%- endif -%}"
)


FOLDED = ("<bos><start_of_turn>user\nList three colours.\n\nHi<end_of_turn>\n"
          "<start_of_turn>model\n")


@pytest.mark.parametrize(("source", "rendered", "with_a_user"), [
    (GEMMA_LIKE, "<bos><start_of_turn>user\nList three colours.<end_of_turn>\n"
                 "<start_of_turn>model\n", FOLDED),
    (GEMMA_3, "<bos><start_of_turn>user\nList three colours.<end_of_turn>\n"
              "<start_of_turn>model\n", FOLDED),
    (NEEDS_A_USER, "<|im_start|>user\nList three colours.<|im_end|>\n<|im_start|>assistant\n",
     "<|im_start|>system\nList three colours.<|im_end|>\n<|im_start|>user\nHi<|im_end|>\n"
     "<|im_start|>assistant\n"),
])
def test_a_system_text_alone_is_the_user_turn_under_any_template(
        source: str, rendered: str, with_a_user: str) -> None:
    """A conversation of a system message alone (a client that puts the whole task there):
    Gemma 3's template would render no text of it, Qwen3's would refuse it."""
    template = ChatTemplate(source, bos_token="<bos>")
    assert template.render_with_system("List three colours.", []) == rendered
    # with a user message, the system text stays where the template puts it
    assert template.render_with_system(
        "List three colours.", [{"role": "user", "content": "Hi"}]) == with_a_user


def test_a_system_message_alone_is_answered_and_nothing_at_all_is_refused(model: Model) -> None:
    task = [{"role": "system", "content": "List three colours, comma separated."}]
    text = model.prompts.lane_text(task, None)
    assert text.endswith("<|im_start|>user\nList three colours, comma separated.<|im_end|>\n"
                         "<|im_start|>assistant\n")
    answer = model.generate(task, max_tokens=12)
    assert answer.tokens and answer.text.strip()
    for nothing in ([{"role": "assistant", "content": "Hello."}],
                    [{"role": "system", "content": "  "}]):
        with pytest.raises(SettingsError, match=r"^The conversation has no user message \(nor "
                           r"a system message to answer\)\.$"):
            model.generate(nothing, max_tokens=2)


def test_template_that_fails_to_render_raises_one_sentence() -> None:
    template = ChatTemplate("{{ messages[5]['content'] }}")
    with pytest.raises(TemplateError):
        template.render([{"role": "user", "content": "Hi"}])


def test_paper_system_prompt_gets_the_preference_in_its_slot() -> None:
    paper = "Be helpful. {preference}"
    assert system_text(paper, "Be concise.") == "Be helpful. Be concise."
    assert system_text(paper, None) == "Be helpful."
    assert system_text("Be helpful.", "Be concise.") == "Be helpful. Be concise."


#: As SmolLM2's and Qwen2.5's templates do: a conversation without a system message gets one.
WRITES_AN_IDENTITY = (
    "{% if messages[0]['role'] != 'system' %}<|im_start|>system\nYou are Bot.<|im_end|>\n"
    "{% endif %}" + CHATML_TEMPLATE
)


@pytest.mark.parametrize(("source", "identity"), [
    (WRITES_AN_IDENTITY, "You are Bot."), (CHATML_TEMPLATE, ""), (GEMMA_3, ""),
    (GEMMA_LIKE, ""), (None, "")])
def test_without_a_system_prompt_the_lanes_differ_by_the_sentence_alone(
        source: str | None, identity: str, model: Model) -> None:
    """With no system prompt the base lane read the template's own identity and the
    preference lane the sentence alone (contrasting "You are Bot." with "Be brief.")."""
    template = ChatTemplate(source)
    assert template.default_system == identity
    builder = PromptBuilder(model.weights, "")
    builder.template = template
    user = [{"role": "user", "content": "Hi"}]
    for system in ("", "{preference}"):  # (a slot alone leaves the base lane none either)
        base = builder.lane_text(user, None, system_prompt=system)
        steered = builder.lane_text(user, "Be brief.", system_prompt=system)
        if identity:
            assert steered == base.replace(identity, f"{identity} Be brief.", 1)
        else:
            assert steered == template.render_with_system("Be brief.", user)


def test_an_empty_system_prompt_gives_the_preference_lane_the_template_s_identity(
        model: Model) -> None:
    builder = PromptBuilder(model.weights, "")
    identity = "You are a helpful AI assistant named SmolLM, trained by Hugging Face"
    assert builder.template.default_system == identity
    for messages in ([{"role": "user", "content": "Hi"}],
                     [{"role": "system", "content": ""}, {"role": "user", "content": "Hi"}]):
        base = builder.lane_text(messages, None)
        assert builder.lane_text(messages, "Be brief.") == base.replace(  # (a period ends it)
            identity, f"{identity}. Be brief.", 1)
    # a system prompt given (and no system message) is the lanes' own, as before
    assert builder.lane_text(messages[1:], "Be brief.", system_prompt="Be kind.") == (
        base.replace(identity, "Be kind. Be brief.", 1))


def test_every_system_message_reaches_the_one_system_turn(model: Model) -> None:
    """Clients send a second system message (a RAG context, a developer note) anywhere in
    the conversation; a template has one system turn, so they are joined there, in order."""
    builder = PromptBuilder(model.weights, "You are a helpful assistant.")
    messages = [{"role": "system", "content": "Be kind."},
                {"role": "user", "content": "Hi"},
                {"role": "system", "content": "The secret word is PINEAPPLE."},
                {"role": "user", "content": "The word?"}]
    joined = [{"role": "system", "content": "Be kind.\n\nThe secret word is PINEAPPLE."},
              {"role": "user", "content": "Hi"}, {"role": "user", "content": "The word?"}]
    for preference in (None, "Be concise."):
        assert builder.lane_text(messages, preference) == builder.lane_text(joined, preference)
        assert builder.lane_tokens(messages, preference) == builder.lane_tokens(joined,
                                                                                 preference)
    assert "Be kind.\n\nThe secret word is PINEAPPLE. Be concise." in builder.lane_text(
        messages, "Be concise.")


def test_a_template_that_starts_with_bos_does_not_get_a_second_one(model: Model) -> None:
    builder = PromptBuilder(model.weights, "You are a helpful assistant.")
    text = builder.lane_text([{"role": "user", "content": "Hi"}], None)
    bos = model.vocabulary.bos_id
    assert text.startswith(model.vocabulary.token_text(bos))
    tokens = builder.tokenize(text)
    assert tokens[0] == bos and tokens[1] != bos


# -- cells given up while other lanes live -------------------------------------------------------


def _greedy_logits(context: Context, lane, steps: int) -> list[np.ndarray]:
    """Greedy-decode ``steps`` tokens on a prefilled lane; copies of the logits before each."""
    seen = []
    for _ in range(steps):
        logits = context.logits(0).copy()
        seen.append(logits)
        context.step([lane], [int(np.argmax(logits))])
    return seen


def test_a_lane_continuing_after_another_closes_decodes_bit_for_bit_as_alone(
        model: Model) -> None:
    """Closing a lane must not let a live lane's next tokens land behind its earlier cells."""
    vocabulary = model.vocabulary
    first = vocabulary.tokenize("The quick brown fox jumps over the lazy dog. " * 6,
                                add_special=True)
    second = vocabulary.tokenize("Once upon a time there lived a king who " * 3,
                                 add_special=True)
    target = vocabulary.tokenize("Write a short poem about the sea and the wind",
                                 add_special=True)
    weights = model.context.model

    alone = Context(weights, n_ctx=256, max_lanes=3, n_threads=2)
    lane = alone.open_lane()
    alone.prefill([lane], [target])
    reference = _greedy_logits(alone, lane, 10)
    alone.close()

    shared = Context(weights, n_ctx=256, max_lanes=3, n_threads=2)
    early, middle, late = (shared.open_lane() for _ in range(3))
    shared.prefill([early], [first])
    shared.prefill([middle], [second])
    shared.prefill([late], [target])
    shared.close_lane(early)  # its cells sit before the live lanes' cells
    continued = _greedy_logits(shared, late, 10)
    assert all(np.array_equal(a, b) for a, b in zip(continued, reference, strict=True))

    shared.close_lane(middle)
    shared.close_lane(late)
    for seq_id in range(shared.max_lanes):
        assert llama_cpp.llama_memory_seq_pos_max(shared.memory, seq_id) == -1
    shared.close()


@pytest.mark.parametrize(("seq_ids", "order", "runs_as_given", "runs_sorted"), [
    ([0, 1, 2, 3], [0, 1, 2, 3], 1, 1),
    ([2, 3, 0, 1], [2, 3, 0, 1], 2, 1),
    ([3, 2, 1, 0], [3, 2, 1, 0], 4, 1),
    ([5, 0, 1, 4], [1, 2, 3, 0], 3, 2),  # a gap (streams 2, 3) still splits the step
    ([7], [0], 1, 1),
    ([], [], 0, 0),
])
def test_a_step_goes_to_llama_cpp_in_ascending_streams(seq_ids, order, runs_as_given,
                                                       runs_sorted) -> None:  # noqa: ANN001
    assert step_rows(seq_ids) == order
    assert stream_runs(seq_ids) == runs_as_given
    assert stream_runs([seq_ids[i] for i in order]) == runs_sorted


def test_lanes_stepped_in_any_order_get_their_own_logits_bit_for_bit(model: Model) -> None:
    """Rows sorted by stream for llama.cpp: ``logits(i)`` is still the ``i``-th lane's, each
    equal to the same lane stepped alone."""
    vocabulary = model.vocabulary
    targets = [vocabulary.tokenize(text, add_special=True) for text in
               ("Tell me about rivers", "Why is the sky blue?", "Name three birds",
                "Write one line about tea")]
    steps = vocabulary.tokenize(" and then", add_special=False)
    alone = [_lane_logits(model.context, [target], steps)[0] for target in targets]

    context = Context(model.context.model, n_ctx=256, max_lanes=5, n_threads=2)
    lanes = [context.open_lane() for _ in range(5)]
    spare = lanes.pop(1)  # stream 1 stays empty: a gap
    for lane, target in zip(lanes, targets, strict=True):
        context.prefill([lane], [target])
    given = [3, 0, 2, 1]  # streams 4, 0, 3, 2: the order requests might come in
    for token in steps:
        context.step([lanes[i] for i in given], [token] * len(given))
    assert context.last_decode_streams == (0, 2, 3, 4)
    assert stream_runs(context.last_decode_streams) == 2
    for output, lane_index in enumerate(given):
        assert np.array_equal(context.logits(output), alone[lane_index]), lane_index
    with pytest.raises(ValueError, match="one token per lane"):
        context.step([lanes[0], lanes[1]], [steps[0]])
    context.close_lane(spare)
    context.close()


def test_a_lane_given_up_frees_its_cells_at_once(model: Model) -> None:
    """Each lane has a stream of its own: its window is whole whatever the others hold, and
    the cells of a lane given up are free for the next lane at once."""
    vocabulary = model.vocabulary
    context = Context(model.context.model, n_ctx=256, max_lanes=2, n_threads=2)
    assert llama_cpp.llama_n_ctx_seq(context.handle) == 256
    assert llama_cpp.llama_n_ctx(context.handle) == 512
    words = vocabulary.tokenize(" apple" * 400, add_special=False)
    kept, given_up = context.open_lane(), context.open_lane()
    context.prefill([given_up], [words[:250]])
    context.prefill([kept], [words[:200]])  # shares 200 tokens with the other lane
    assert llama_cpp.llama_memory_seq_pos_max(context.memory, kept.seq_id) == 199
    context.close_lane(given_up)
    assert llama_cpp.llama_memory_seq_pos_max(context.memory, given_up.seq_id) == -1
    replacement = context.open_lane()  # the freed stream holds its whole window again
    context.prefill([replacement], [words[100:355]])
    assert llama_cpp.llama_memory_seq_pos_max(context.memory, replacement.seq_id) == 254
    context.step([kept, replacement], [words[0], words[1]])
    assert len(kept.tokens) == 201 and len(replacement.tokens) == 256
    context.close()


def test_a_stopped_prefill_keeps_what_it_evaluated_and_resumes_from_there(model: Model) -> None:
    vocabulary = model.vocabulary
    target = vocabulary.tokenize("A long prompt about rivers and mountains. " * 20,
                                 add_special=True)
    weights = model.context.model
    clean = Context(weights, n_ctx=512, max_lanes=1, n_batch=64, n_threads=2)
    lane = clean.open_lane()
    assert clean.prefill([lane], [target]) == len(target)
    expected = clean.logits(0).copy()
    clean.close()

    context = Context(weights, n_ctx=512, max_lanes=1, n_batch=64, n_threads=2)
    lane = context.open_lane()
    asked = []
    with pytest.raises(PrefillStopped) as stopped:
        context.prefill([lane], [target], should_stop=lambda: asked.append(1) or len(asked) > 2)
    assert stopped.value.evaluated == 2 * 64  # two chunks of n_batch before the stop
    assert lane.tokens == target[:128]
    assert llama_cpp.llama_memory_seq_pos_max(context.memory, lane.seq_id) == 127
    assert context.prefill([lane], [target]) == len(target) - 128  # only the rest
    assert np.array_equal(context.logits(0), expected)
    context.close()


def test_pieces_read_from_many_threads_at_once_are_each_their_own_token(model: Model) -> None:
    """``piece`` is read by the scheduler's thread, the server's and a batch's threads at
    once: no thread may read another's bytes (they shared one buffer: " for" + "ception"
    came out as " forception" in an answer's logprobs)."""
    import threading

    tokens = list(range(0, model.vocabulary.size, 7))
    expected = [model.vocabulary.piece(token) for token in tokens]
    vocabulary = Vocabulary(model.weights.handle)  # its pieces not yet read: every thread
    wrong: list[tuple[int, bytes]] = []            # calls llama.cpp for some of them

    def read(offset: int) -> None:
        for round_ in range(3):
            order = tokens[offset:] + tokens[:offset] if round_ % 2 else tokens[::-1]
            for token in order:
                piece = vocabulary.piece(token)
                if piece != expected[token // 7]:
                    wrong.append((token, piece))

    threads = [threading.Thread(target=read, args=(offset * 97,)) for offset in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert wrong == []


def test_a_token_s_piece_is_kept_apart_for_text_and_for_markup(model: Model) -> None:
    """Pieces are read once and kept (``Vocabulary.piece``): a control token is nothing as
    text and its markup with ``special``, whichever is asked first; every piece read again
    is the same bytes as llama.cpp's own."""
    vocabulary = Vocabulary(model.weights.handle)
    im_end = vocabulary.tokenize("<|im_end|>", add_special=False)[0]
    assert vocabulary.piece(im_end, special=True) == b"<|im_end|>"
    assert vocabulary.piece(im_end) == b""
    assert vocabulary.piece(im_end, special=True) == b"<|im_end|>"
    other = Vocabulary(model.weights.handle)
    assert other.piece(im_end) == b""
    assert other.piece(im_end, special=True) == b"<|im_end|>"
    buffer = ctypes.create_string_buffer(512)
    vocab = llama_cpp.llama_model_get_vocab(model.weights.handle)
    for token in range(0, vocabulary.size, 101):
        size = llama_cpp.llama_token_to_piece(vocab, token, buffer, len(buffer), 0, False)
        assert vocabulary.piece(token) == buffer.raw[:size]
        assert vocabulary.piece(token) == buffer.raw[:size]
