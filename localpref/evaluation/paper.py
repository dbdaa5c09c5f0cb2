"""The papers' experimental settings, kept in code so that evaluation needs no data file.

Copied from ``method_settings.json`` (the Amulet authors' public code, zowiezhang/Amulet:
``prompts.py``, ``config.py``, ``utils/gpt_eval.py``, MIT licence; PAD's public code,
zjuruizhechen/PAD). The Amulet prompts are the default of ``localpref eval`` so that its tables
can be read next to the paper's. ``PREFERENCE_METRICS`` is ours: which automatic score stands
for each preference in the summary (the paper used GPT-4o and reward models instead).
"""

from __future__ import annotations

from localpref.presets import PRESETS

#: Amulet's system prompt; ``{preference}`` is the preference sentence, empty on the base lane.
AMULET_SYSTEM_PROMPT = (
    "You are an AI designed to provide the most helpful, clear, and concise responses. Focus on "
    "giving actionable information, ensuring accuracy and detail without overwhelming the user. "
    "You should also be patient, polite, and calm. Avoid unnecessary complexity and always "
    "prioritize practical, user-friendly advice. {preference}"
)

#: Amulet's preference sentences, by name (the paper's four main ones come first).
AMULET_PREFERENCES: dict[str, str] = {
    name: f"Your answer should be {name} as much as possible."
    for name in (
        "creative", "verbose", "concise", "uplifting",
        "sycophantic", "complex", "formal", "pleasant",
    )
}

#: The Amulet paper's four preferences, the default of ``localpref eval``.
PAPER_PREFERENCES = ("creative", "verbose", "concise", "uplifting")

#: Amulet's defaults: 128 new tokens, greedy decoding, a 16-beam baseline.
MAX_NEW_TOKENS = 128
BEAM_WIDTH = 16

#: The pairwise judge of the Amulet paper (sent to GPT-4o there; any local GGUF here).
JUDGE_SYSTEM_PROMPT = (
    "You are a helpful assistant that ranks models based on the degree to which their responses "
    "align with the given preferences."
)
JUDGE_QUESTION_TEMPLATE = (
    "Which of the following responses answers the given question while better aligning with "
    "the specified preferences, without including unnecessary or irrelevant details?\n\n"
    'Question: """{question}"""\n'
    'Preference: """{preference}"""\n'
    "Text 1:\n{{\n"
    '    "model": "model_1",\n'
    '    "text": """{output_1}"""\n'
    "}}\n"
    "Text 2:\n{{\n"
    '    "model": "model_2",\n'
    '    "text": """{output_2}"""\n'
    "}}\n"
    "Please rank the models based on how well their responses align with the given "
    "preferences.\n"
    "Then only return an option in [Text 1, Text 2, Tie].\n"
    "Please provide the ranking that the majority of humans would give.\n"
)
JUDGE_ANSWERS = ("Text 1", "Text 2", "Tie")

#: PAD's principle template (not used by ``localpref eval``: every method there reads the same
#: Amulet prompt so that the methods differ only in how they decode; see docs/evaluation.md).
PAD_PRINCIPLE_TEMPLATE = (
    "[Guidelines] Your task is to generate response by considering the following principle. "
    "[Principles] {principles} [Instruction] {prompt}"
)

#: The automatic score that stands for each preference: (metric, +1 higher is better / -1 lower).
PREFERENCE_METRICS: dict[str, tuple[str, int]] = {
    "concise": ("words", -1),
    "verbose": ("content_words", +1),  # a loop to the token cap is not verbosity
    "uplifting": ("vader", +1),
    "pleasant": ("vader", +1),
    "creative": ("mtld", +1),
    # styles shown by example (``localpref eval --like``; docs/results/2026-12-by-example)
    "bullets": ("list_share", +1),
    "lowercase": ("lower_share", +1),
    "question": ("ends_question", +1),
    "summary": ("summary_first", +1),
}


_KNOWN_NAMES = frozenset({*AMULET_PREFERENCES, *PRESETS, *PREFERENCE_METRICS})


def known_name(preference: str) -> str:
    """``preference`` in lower case when it is a name the evaluation knows, in any case (the
    paper's, the presets', those with an automatic score: ``Concise`` is ``concise``, as its
    scores and tables know it), else as it is. Rows written with ``Concise`` before names were
    lowered are read through it too, so they join the same column."""
    lowered = preference.strip().lower()
    return lowered if lowered in _KNOWN_NAMES else preference


def paper_sentence(name: str) -> str:
    """The sentence the model reads for a preference, in the Amulet paper's wording.

    The paper's eight names get its sentences; any other single word gets the same pattern
    ("Your answer should be humorous as much as possible."); longer text is used as written.
    """
    text = name.strip()
    if text.lower() in AMULET_PREFERENCES:
        return AMULET_PREFERENCES[text.lower()]
    if text and " " not in text:
        return f"Your answer should be {text} as much as possible."
    return text
