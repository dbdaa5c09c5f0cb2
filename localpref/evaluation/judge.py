"""A pairwise LLM judge on a local GGUF, with the Amulet paper's win-rate question.

The paper asked GPT-4o which of two answers better follows the preference and parsed the
words it wrote ("Text 1", "Text 2" or "Tie"). Here the judge model reads the same system
prompt and question, and instead of generating we read its probability of writing each of
the three answers at the start of its reply: ``P(answer) = prod_j p(token_j | prompt,
token_<j)`` over the answer's tokens, renormalised over the three. This always gives an
answer, never has to parse free text, and keeps the judge's uncertainty. ``coverage`` (the
three probabilities before renormalising) says how much the judge meant to answer at all.

Each pair is judged in both orders (A as Text 1, then B as Text 1) and the two readings
averaged, which cancels the judge's position bias; the paper instead drew one order at random.

Limits: a small judge is a weak judge. The bundled 135M model barely reads the question and
mostly expresses position and length biases; use a stronger local model with ``--judge``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

from localpref.errors import PromptTooLongError
from localpref.evaluation.paper import (
    JUDGE_ANSWERS,
    JUDGE_QUESTION_TEMPLATE,
    JUDGE_SYSTEM_PROMPT,
)
from localpref.kernels.controls import token_logprob

#: Below this median coverage the judge's verdicts mean little, and the report and the
#: command say so: a judge that reads the question puts a share of its first words on the
#: three answers (Qwen2.5-Coder 0.5B Instruct: about 0.5; the bundled 135M model: about
#: 0.02), a base model almost none (Gemma 3 270M: about 3e-7).
LOW_COVERAGE = 0.01


@dataclass(frozen=True)
class Verdict:
    """A pair judged in both orders: the probabilities that A wins, ties, or B wins."""

    p_a: float
    p_tie: float
    p_b: float
    orders: tuple[dict[str, float], dict[str, float]]

    @property
    def outcome(self) -> str:
        """"win", "tie" or "lose" for A (:func:`outcome_of`)."""
        return outcome_of(self.p_a, self.p_tie, self.p_b)

    @property
    def coverage(self) -> float:
        """The judge's raw probability of writing one of the three answers, over both orders."""
        return coverage_of(self.orders)


def outcome_of(p_a: float, p_tie: float, p_b: float) -> str:
    """"win", "tie" or "lose" for A: the most probable of the three; "tie" where "Tie" is, or
    where A and B are equally probable (two identical answers, judged in both orders, always
    are), so that an exact split never counts for either side."""
    best = max(p_a, p_tie, p_b)
    if p_tie == best or math.isclose(p_a, p_b, rel_tol=1e-9, abs_tol=1e-12):
        return "tie"
    return "win" if p_a == best else "lose"


def coverage_of(orders: Sequence[dict[str, float]]) -> float:
    """The mean ``coverage`` of a verdict's readings: how much probability the judge put on
    "Text 1", "Text 2" and "Tie" at all before renormalising. Near zero, the judge was not
    answering the question, and its renormalised verdicts are noise."""
    return float(sum(order["coverage"] for order in orders) / len(orders))


class PairwiseJudge:
    """Asks a local model which of two answers better follows a preference.

    ``model`` is a :class:`localpref.Model`; it needs one free lane per answer option (3).
    """

    def __init__(
        self,
        model,  # noqa: ANN001 - localpref.api.Model (kept loose: no import cycle)
        *,
        system_prompt: str = JUDGE_SYSTEM_PROMPT,
        template: str = JUDGE_QUESTION_TEMPLATE,
        answers: Sequence[str] = JUDGE_ANSWERS,
    ) -> None:
        self.model = model
        self.system_prompt = system_prompt
        self.template = template
        self.answers = tuple(answers)

    @property
    def name(self) -> str:
        return str(self.model.name)

    def _prompt_tokens(self, question: str) -> tuple[list[int], list[list[int]]]:
        """Tokens of the judge's prompt and of each answer that may follow it. The question
        holds a data set's prompt and two generated answers: their control-token strings
        (``<|im_end|>``...) are broken (``PromptBuilder.neutralise``) so that they are read as
        text, never as the end of the judge's turn."""
        prompts = self.model.prompts
        messages = [{"role": "system", "content": self.system_prompt},
                    {"role": "user", "content": prompts.neutralise(question)}]
        text = prompts.lane_text(messages, None)
        prompt = prompts.tokenize(text)
        continuations = []
        for answer in self.answers:
            joined = prompts.tokenize(text + answer)
            if joined[: len(prompt)] == prompt and len(joined) > len(prompt):
                continuations.append(joined[len(prompt) :])
            else:
                continuations.append(
                    self.model.vocabulary.tokenize(answer, add_special=False)
                )
        return prompt, continuations

    def probabilities(
        self, question: str, preference: str, text_1: str, text_2: str
    ) -> dict[str, float]:
        """The judge's renormalised probability of each answer, and their raw ``coverage``."""
        filled = self.template.format(
            question=question, preference=preference, output_1=text_1, output_2=text_2
        )
        prompt, continuations = self._prompt_tokens(filled)
        with self.model.exclusive() as context:
            logprobs = _continuation_logprobs(context, prompt, continuations)
        top = max(logprobs)
        weights = [math.exp(value - top) for value in logprobs]
        total = sum(weights)
        result = {answer: weight / total for answer, weight in zip(self.answers, weights,
                                                                     strict=True)}
        result["coverage"] = float(sum(math.exp(value) for value in logprobs))
        return result

    def compare(self, question: str, preference: str, answer_a: str, answer_b: str) -> Verdict:
        """Judge A against B in both orders and average the two readings."""
        first = self.probabilities(question, preference, answer_a, answer_b)
        second = self.probabilities(question, preference, answer_b, answer_a)
        one, two, tie = self.answers
        return Verdict(
            p_a=(first[one] + second[two]) / 2,
            p_tie=(first[tie] + second[tie]) / 2,
            p_b=(first[two] + second[one]) / 2,
            orders=(first, second),
        )


def _continuation_logprobs(context, prompt: list[int],  # noqa: ANN001 - engine.Context
                           continuations: list[list[int]]) -> list[float]:
    """log P(continuation | prompt) of each continuation, each on its own lane."""
    longest = len(prompt) + max(len(c) for c in continuations)
    if longest >= context.n_ctx:
        raise PromptTooLongError(
            f"The judge's prompt is {longest} tokens long; its context holds "
            f"{context.n_ctx}."
        )
    logprobs = [0.0] * len(continuations)
    lanes = []
    try:
        lanes = context.open_lanes([None] * len(continuations))  # all or none
        context.prefill(lanes, [prompt] * len(lanes))
        outputs = {i: i for i in range(len(lanes))}
        for position in range(max(len(c) for c in continuations)):
            for i, tokens in enumerate(continuations):
                if position < len(tokens):
                    logprobs[i] += float(
                        token_logprob(context.logits(outputs[i]), tokens[position]))
            going = [i for i, tokens in enumerate(continuations)
                     if position + 1 < len(tokens)]
            if not going:
                break
            context.step([lanes[i] for i in going],
                         [continuations[i][position] for i in going])
            outputs = {i: k for k, i in enumerate(going)}
    finally:
        for lane in lanes:
            context.close_lane(lane)
    return logprobs
