"""Models that think before answering are asked to answer at once: through their template's
``enable_thinking`` where it reads one, else by closing the thoughts its header opens
(docs/models.md, "Models that think")."""

from __future__ import annotations

from pathlib import Path

import pytest

from localpref.api import Model
from localpref.prompts import CHATML_TEMPLATE, ChatTemplate, closed_thought
from localpref.synthetic import SyntheticShape, write_synthetic_llama

#: The tail of Qwen3's template as published (GLM's and Qwen3.5's read the same variable):
#: thinking off, the answer's empty thoughts are written into the prompt.
QWEN3_LIKE = (
    "{%- for message in messages %}{{- '<|im_start|>' + message.role + '\\n' + message.content"
    " + '<|im_end|>\\n' }}{%- endfor %}"
    "{%- if add_generation_prompt %}{{- '<|im_start|>assistant\\n' }}"
    "{%- if enable_thinking is defined and enable_thinking is false %}"
    "{{- '<think>\\n\\n</think>\\n\\n' }}{%- endif %}{%- endif %}"
)
#: As DeepSeek-R1's distills' template ends: every answer starts inside its thoughts.
R1_LIKE = (
    "{{ bos_token }}{%- for message in messages %}"
    "{%- if message['role'] == 'user' %}{{ '<｜User｜>' + message['content'] }}"
    "{%- elif message['role'] == 'assistant' %}{{ '<｜Assistant｜>' + message['content'] }}"
    "{%- else %}{{ message['content'] }}{%- endif %}{%- endfor %}"
    "{%- if add_generation_prompt %}{{ '<｜Assistant｜><think>\\n' }}{%- endif %}"
)
HI = [{"role": "user", "content": "Hi"}]


def test_a_thinking_template_is_rendered_with_thinking_off() -> None:
    rendered = ChatTemplate(QWEN3_LIKE).render(HI)
    assert rendered == ("<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n"
                        "<think>\n\n</think>\n\n")
    # a history's answers are rendered as they were; only the new answer's thoughts are empty
    history = [*HI, {"role": "assistant", "content": "Hello."}, {"role": "user", "content": "Bye"}]
    assert ChatTemplate(QWEN3_LIKE).render(history).count("<think>") == 1
    # a template that reads no such variable renders as it always did
    assert ChatTemplate(CHATML_TEMPLATE).render(HI) == (
        "<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n")


@pytest.mark.parametrize(("source", "opens"), [
    (QWEN3_LIKE, False),  # thinking off: its thoughts are closed before the answer
    (R1_LIKE, True),  # (and closed by render)
    (CHATML_TEMPLATE, False),
    (None, False),  # the plain format of a model without a template
    ("{{ raise_exception('no') }}", False),  # a template that refuses everything
])
def test_a_template_that_leaves_thoughts_open_is_told_apart(source: str | None,
                                                            opens: bool) -> None:
    assert ChatTemplate(source).opens_thought is opens


@pytest.fixture(scope="module")
def thinking_ggufs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("thinking")
    return {name: write_synthetic_llama(folder / f"{name}.gguf", SyntheticShape(vocab_size=512),
                                        chat_template=source)
            for name, source in (("qwen3", QWEN3_LIKE), ("r1", R1_LIKE))}


@pytest.mark.parametrize(("name", "tail"), [
    # thinking off through the template's own variable
    ("qwen3", "Hi<|im_end|>\n<|im_start|>assistant\n<think>\n\n</think>\n\n"),
    # a header that always opens its thoughts: closed empty after it
    ("r1", "Hi<｜Assistant｜><think>\n\n</think>\n\n"),
])
def test_a_thinking_model_answers_at_once_on_every_lane(thinking_ggufs: dict[str, Path],
                                                         name: str, tail: str) -> None:
    with Model(thinking_ggufs[name], n_ctx=256, max_lanes=2) as model:
        assert model.notices == []
        for preference in (None, "concise"):  # the base lane and the preference lane
            assert model.prompts.lane_text(HI, preference).endswith(tail)
        tokens = model.prompts.lane_tokens(HI, None)
        assert model.prompts.model.vocabulary.detokenize(tokens).endswith(
            "<think>\n\n</think>\n\n")  # (the template's markup tokenized as markup)
        answer = model.generate("Hi", method="amulet", preference="concise", max_tokens=3,
                                ignore_eos=True)
        assert len(answer.tokens) == 3


@pytest.mark.parametrize(("rendered", "closed"), [
    ("A<think>\n", "A<think>\n\n</think>\n\n"),
    ("A<think>", "A<think>\n\n</think>\n\n"),
    ("<think>x</think>B<think>\n\n", "<think>x</think>B<think>\n\n</think>\n\n"),
    ("A<think>\nLet me", "A<think>\nLet me\n\n\n</think>\n\n"),  # what the header began
])
def test_an_open_thought_is_closed_after_what_the_header_wrote(rendered: str,
                                                               closed: str) -> None:
    assert closed_thought(rendered) == closed
