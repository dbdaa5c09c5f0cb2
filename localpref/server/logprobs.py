"""``logprobs`` of an answer in OpenAI's shapes, from the per-token trace.

Each token's log-probability is the trace's ``logprob``: under the steered distribution the
token was drawn from, at temperature 1, after every mask (repetition penalty, end rule,
plausibility, PAD's top-K, the grammar), before temperature, top-k, top-p and min-p. The
alternatives are the trace's ``top_logprobs`` of the same distribution. Only the tokens that
wrote the answer's text have an entry: not those of a stop string cut from it.

- chat (``choices[i].logprobs``): ``{"content": [{token, logprob, bytes, top_logprobs}],
  "refusal": None}``, ``top_logprobs`` a list of ``{token, logprob, bytes}``;
- text completions (legacy): ``{"tokens", "token_logprobs", "top_logprobs", "text_offset"}``,
  ``top_logprobs`` one ``{token: logprob}`` per token.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from localpref.decoding import Result
from localpref.engine import Vocabulary
from localpref.server.completions import Shape
from localpref.server.translate import GenerationArgs


def _entry(vocabulary: Vocabulary, token: int, logprob: float, *,
           alternative: bool = False) -> dict[str, Any]:
    raw = vocabulary.piece(token, special=alternative)
    return {"token": raw.decode("utf-8", errors="replace"), "logprob": logprob,
            "bytes": list(raw)}


def _legacy_text(raw: bytes) -> str:
    """A token's text in the legacy shape, which has no ``bytes``: a token that is part of a
    character (byte-level vocabularies split an emoji over two or three) is ``bytes:`` and
    its bytes escaped, as OpenAI writes it (``bytes:\\xf0\\x9f``), so that two such tokens
    are not one U+FFFD key of a ``top_logprobs`` object, where the later overwrote the
    earlier."""
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        return "bytes:" + raw.decode("utf-8", errors="backslashreplace")


def _alternative(vocabulary: Vocabulary, token: int) -> str:
    """An alternative's text, a control token's written out (``<|im_end|>``, as llama-server
    shows it): an end token among the alternatives is not an empty string, and two control
    tokens are not one key of a legacy ``top_logprobs`` object. (A chosen token is the text it
    wrote: a control token drawn mid-answer under ``ignore_eos`` wrote none.)"""
    return _legacy_text(vocabulary.piece(token, special=True))


def answer_records(result: Result) -> list[dict[str, Any]]:
    """The trace's records of the tokens that wrote the answer's text: a stop string's tokens
    (traced with an empty piece: their text was cut) are not part of it. An empty piece
    before a written one stays (the first bytes of a character that the next token ends)."""
    records = result.trace or []
    written = [index for index, record in enumerate(records) if record["piece"]]
    return records[: written[-1] + 1] if written else []


def chat_logprobs(result: Result, vocabulary: Vocabulary) -> dict[str, Any]:
    """The chat shape of ``result``'s trace (which must have been recorded)."""
    content = []
    for record in answer_records(result):
        entry = _entry(vocabulary, record["token"], record["logprob"])
        entry["top_logprobs"] = [_entry(vocabulary, int(token), logprob, alternative=True)
                                 for token, logprob in record.get("top_logprobs", [])]
        content.append(entry)
    return {"content": content, "refusal": None}


def legacy_logprobs(result: Result, vocabulary: Vocabulary, top_n: int) -> dict[str, Any]:
    """The text-completion shape of ``result``'s trace."""
    tokens, logprobs, tops, offsets = [], [], [], []
    offset = 0
    for record in answer_records(result):
        tokens.append(_legacy_text(vocabulary.piece(record["token"])))
        logprobs.append(record["logprob"])
        tops.append({_alternative(vocabulary, int(token)): logprob
                     for token, logprob in record.get("top_logprobs", [])})
        offsets.append(offset)
        offset += len(record["piece"])
    return {"tokens": tokens, "token_logprobs": logprobs,
            "top_logprobs": tops if top_n else None, "text_offset": offsets}


def answer_logprobs(args: GenerationArgs, vocabulary: Vocabulary,
                    shape: Shape) -> Callable[[Result], Any] | None:
    """How an answer's ``logprobs`` are built from its result (None: not asked for)."""
    if not args.logprobs:
        return None
    if shape.chat:
        return lambda result: chat_logprobs(result, vocabulary)
    return lambda result: legacy_logprobs(result, vocabulary, args.top_logprobs)
