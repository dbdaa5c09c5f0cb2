"""Automatic scores of one answer, each a small class: what it measures and where it misleads.

A scorer's ``score(text, tokens)`` returns a dict of named metrics (floats; NaN when the metric
is undefined for that text, and NaN values are left out of means). Metrics and the preference
they stand for (``paper.PREFERENCE_METRICS``):

- ``words`` / ``content_words`` / ``tokens`` (:class:`LengthScorer`): concise (``words``,
  lower) and verbose (``content_words``, higher);
- ``vader`` (:class:`SentimentScorer`): uplifting and pleasant (higher);
- ``distinct1`` / ``distinct2`` / ``mtld`` (:class:`DiversityScorer`): creative (higher);
- ``list_share`` / ``lower_share`` / ``ends_question`` / ``summary_first``
  (:class:`StyleScorer`): the example styles bullets, lowercase, question, summary (higher).

The pairwise LLM judge compares two answers, so it lives in ``judge.py``.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from typing import ClassVar

from localpref.errors import LocalprefError

_WORD = re.compile(r"[^\W_]+(?:['’][^\W_]+)*", re.UNICODE)


def words_of(text: str) -> list[str]:
    """Lower-cased words: runs of letters and digits, inner apostrophes kept ("don't")."""
    return [word.lower() for word in _WORD.findall(text)]


#: Where one sentence ends: after ., ! or ? and a space, or at a line break.
_SENTENCE_END = re.compile(r"(?<=[.!?])\s+|\n+")


def content_words_of(text: str) -> int:
    """The words of the answer's distinct sentences: a sentence (or line) that repeats an
    earlier one word for word (case and punctuation aside) adds nothing.

    ``sum over distinct sentences s of len(words_of(s))``, sentences split after ., ! or ? and
    a space, and at line breaks. A small model decoding greedily often falls into a loop ("I
    am a student of the university." fifty times to the token cap); a word count calls that
    the most verbose answer of all, this counts it once. A loop that is not sentence-shaped
    (a phrase repeated without a stop) is still counted in full.
    """
    seen: set[tuple[str, ...]] = set()
    total = 0
    for sentence in _SENTENCE_END.split(text):
        words = tuple(words_of(sentence))
        if words and words not in seen:
            seen.add(words)
            total += len(words)
    return total


class Scorer:
    """A scorer: ``name`` (for ``--scorers``), the ``metrics`` it returns, and ``score``."""

    name: ClassVar[str] = ""
    metrics: ClassVar[tuple[str, ...]] = ()

    def score(self, text: str, tokens: Sequence[int] = ()) -> dict[str, float]:
        raise NotImplementedError


class LengthScorer(Scorer):
    """Length of the answer in words, in the words of its distinct sentences, and in model
    tokens.

    ``words`` stands for *concise* (shorter is better: a loop is long), ``content_words``
    (``content_words_of``) for *verbose* (longer is better: a sentence said again is not more
    said). Limits: length is not quality; an answer cut at ``--max-tokens`` cannot grow
    further, so *verbose* saturates at the cap (the paper's 128 tokens), and an empty answer
    is perfectly "concise". Token counts depend on the model's tokenizer: compare them within
    one model only.
    """

    name = "length"
    metrics = ("words", "content_words", "tokens")

    def score(self, text: str, tokens: Sequence[int] = ()) -> dict[str, float]:
        return {"words": float(len(words_of(text))),
                "content_words": float(content_words_of(text)), "tokens": float(len(tokens))}


class SentimentScorer(Scorer):
    """VADER compound sentiment, from -1 (very negative) to +1 (very positive).

    Stands for *uplifting* and *pleasant*. VADER (Hutto and Gilbert, 2014) is a lexicon and
    rules tuned on social-media English: it rewards positive words and exclamation marks, does
    not read sarcasm or context, knows nothing beyond English, and its compound score saturates
    near +-1 on long texts with many sentiment words.
    """

    name = "sentiment"
    metrics = ("vader",)

    def __init__(self) -> None:
        from vaderSentiment.vaderSentiment import SentimentIntensityAnalyzer

        self._analyzer = SentimentIntensityAnalyzer()

    def score(self, text: str, tokens: Sequence[int] = ()) -> dict[str, float]:
        return {"vader": float(self._analyzer.polarity_scores(text)["compound"])}


class DiversityScorer(Scorer):
    """Lexical diversity: distinct-1, distinct-2 (Li et al., 2016) and MTLD (McCarthy and
    Jarvis, 2010).

    Stands for *creative*, as a proxy: varied wording, not original ideas. distinct-n is the
    share of unique n-grams among all n-grams of the answer; it falls as a text grows, so it
    favours short answers. MTLD is the mean length of the word runs over which the type-token
    ratio stays above 0.72 (forward and backward passes averaged, the last partial run
    counted as a fraction); it is much less sensitive to length but unreliable below about
    50 words. Undefined values are NaN: distinct-n of a text with no n-gram, and MTLD of a
    text with fewer than 10 words or with no repeated word at all (no run ever ends).
    """

    name = "diversity"
    metrics = ("distinct1", "distinct2", "mtld")

    #: The type-token ratio at which an MTLD run ends (the authors' value).
    threshold = 0.72
    #: Fewer words than this give NaN for MTLD.
    min_words = 10

    def score(self, text: str, tokens: Sequence[int] = ()) -> dict[str, float]:
        words = words_of(text)
        return {
            "distinct1": distinct_n(words, 1),
            "distinct2": distinct_n(words, 2),
            "mtld": mtld(words, self.threshold) if len(words) >= self.min_words else math.nan,
        }


def distinct_n(words: Sequence[str], n: int) -> float:
    """Unique n-grams / all n-grams of one text (NaN when it has no n-gram)."""
    grams = [tuple(words[i : i + n]) for i in range(len(words) - n + 1)]
    return len(set(grams)) / len(grams) if grams else math.nan


def _mtld_factors(words: Sequence[str], threshold: float) -> float:
    """Number of MTLD runs in one direction, the unfinished last run counted as a fraction."""
    factors = 0.0
    types: set[str] = set()
    count = 0
    ratio = 1.0
    for word in words:
        count += 1
        types.add(word)
        ratio = len(types) / count
        if ratio <= threshold:
            factors += 1.0
            types, count, ratio = set(), 0, 1.0
    if count:
        factors += (1.0 - ratio) / (1.0 - threshold)
    return factors


def mtld(words: Sequence[str], threshold: float = 0.72) -> float:
    """MTLD: words / runs, averaged over a forward and a backward pass (NaN if no run ends).

    McCarthy and Jarvis (2010): a run ends when the type-token ratio of the words read since
    the last end falls to ``threshold``; the remainder adds ``(1 - ttr) / (1 - threshold)``.
    """
    values = []
    for sequence in (list(words), list(reversed(words))):
        factors = _mtld_factors(sequence, threshold)
        if factors <= 0:
            return math.nan
        values.append(len(sequence) / factors)
    return sum(values) / len(values)


_LIST_ITEM = re.compile(r"^\s*(?:[-*\u2022+]|\d+[.)])\s+\S")
_SENTENCE_END = re.compile(r"[.!?]")


class StyleScorer(Scorer):
    """Styles a simple rule detects (the evaluation of preferences by example):

    - ``list_share``: the share of non-empty lines that are list items (``-``, ``*``, ``•``,
      ``+`` or ``1.`` / ``1)`` then text); stands for *bullets*;
    - ``lower_share``: the share of letters that are lower case; stands for *lowercase*;
    - ``ends_question``: 1 when the answer's last sentence is a question (its text ends in
      ``?``), else 0; stands for *question* (a question to the reader at the end);
    - ``summary_first``: 1 when the answer opens with a one-line summary (a first line of at
      most 20 words that is one sentence, followed by more lines), else 0; stands for
      *summary*.

    Limits: surface form only. A list of one word per line counts as a list; a question
    quoted at the end counts as asking the reader; an answer cut at ``--max-tokens`` rarely
    ends with a question, so compare ``ends_question`` at one length only. NaN for an empty
    answer (and ``lower_share`` for one without letters).
    """

    name = "style"
    metrics = ("list_share", "lower_share", "ends_question", "summary_first")

    #: The longest first line that counts as a one-line summary, in words.
    summary_words = 20

    def score(self, text: str, tokens: Sequence[int] = ()) -> dict[str, float]:
        lines = [line for line in text.strip().splitlines() if line.strip()]
        if not lines:
            return dict.fromkeys(self.metrics, math.nan)
        letters = [c for c in text if c.isalpha()]
        lower = sum(1 for c in letters if c.islower()) / len(letters) if letters else math.nan
        first = lines[0].strip()
        one_sentence = len(_SENTENCE_END.findall(first.rstrip(".!?:"))) == 0
        summary = (len(lines) > 1 and len(words_of(first)) <= self.summary_words
                   and one_sentence and not _LIST_ITEM.match(first))
        return {
            "list_share": sum(1 for line in lines if _LIST_ITEM.match(line)) / len(lines),
            "lower_share": lower,
            "ends_question": 1.0 if text.rstrip().rstrip("\"')*_ ").endswith("?") else 0.0,
            "summary_first": 1.0 if summary else 0.0,
        }


#: Scorer names accepted by ``--scorers`` (the judge is added by ``--judge``).
SCORERS: dict[str, type[Scorer]] = {
    "length": LengthScorer,
    "sentiment": SentimentScorer,
    "diversity": DiversityScorer,
    "style": StyleScorer,
}
_ALIASES = {"vader": "sentiment", "words": "length", "content_words": "length",
            "mtld": "diversity", "distinct": "diversity"}
#: The names ``--scorers`` takes besides the automatic ones.
JUDGE_NAME = "judge"


def scorer_names(spec: str | Sequence[str] | None) -> list[str]:
    """Checked scorer names from a comma list (None: every automatic scorer).

    ``judge`` is accepted here; it needs a judge model (``--judge``).
    """
    if spec is None:
        return list(SCORERS)
    items = spec.split(",") if isinstance(spec, str) else list(spec)
    names: list[str] = []
    for item in items:
        key = item.strip().lower()
        if not key:
            continue
        key = _ALIASES.get(key, key)
        if key not in SCORERS and key != JUDGE_NAME:
            known = ", ".join([*SCORERS, JUDGE_NAME])
            raise LocalprefError(f"Unknown scorer {item.strip()!r}; choose among {known}.")
        if key not in names:
            names.append(key)
    if not names:
        raise LocalprefError("Give at least one scorer.")
    return names


def make_scorers(names: Sequence[str]) -> list[Scorer]:
    """Scorer objects for the automatic names (``judge`` is skipped: it needs a model)."""
    return [SCORERS[name]() for name in names if name in SCORERS]


def score_text(scorers: Sequence[Scorer], text: str, tokens: Sequence[int]) -> dict[str, float]:
    """Every metric of every scorer for one answer."""
    metrics: dict[str, float] = {}
    for scorer in scorers:
        metrics.update(scorer.score(text, tokens))
    return metrics
