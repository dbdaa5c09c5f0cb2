"""Answers that follow a grammar: llama.cpp's grammar sampler as a mask on the steered scores.

``json_grammar`` gives the GBNF text of a JSON answer (any object, or one following a JSON
schema, through llama-cpp-python's converter ``llama_cpp.llama_grammar.json_schema_to_gbnf``).
A ``GrammarMask`` is one answer's grammar state (llama.cpp's ``llama_sampler_init_grammar``):

1. ``allow()`` runs the sampler's apply over the whole vocabulary once per step and keeps which
   tokens the grammar allows next (the sampler sets the others' logits to -inf);
2. the method's selector applies ``mask_into`` last, after the end rule, the plausibility mask
   and PAD's top-K, just before sampling, so steering chooses among the allowed tokens;
3. ``accept(token)`` advances the grammar. Only an allowed token may reach it: llama.cpp
   aborts the process on a token its grammar rejects, so ``accept`` refuses one first
   (``Track`` falls back to the allowed token the first lane scores highest when every
   steered candidate was masked).
"""

from __future__ import annotations

import ctypes
import json
import math
import re
from typing import Any

import numpy as np

from localpref.errors import SettingsError
from localpref.llama_library import llama_cpp
from localpref.schema_branches import (
    as_written,
    left_out,
    split_type_lists,
    unwrap_single_all_of,
)
from localpref.schema_checks import (
    ANNOTATIONS,
    listed,
    name_references,
    prepared,
    shape_problem,
    unenforced_keywords,
    unwritable_literals,
)
from localpref.schema_patterns import joined_surrogates

#: llama.cpp's ``llama_token_data`` as a NumPy record (id, logit, p).
TOKEN_DATA = np.dtype([("id", np.int32), ("logit", np.float32), ("p", np.float32)])


#: A JSON string's unescaped character: neither a quote, a backslash nor a control character
#: (JSON forbids U+0000 to U+001F unescaped; llama.cpp's own JSON grammar also leaves out DEL).
JSON_STRING_CHAR = r'[^"\\\x7F\x00-\x1F]'


#: A UTF-16 surrogate pair as the converter writes a character outside the BMP in a literal
#: or a class (``json.dumps``' escapes), not after a backslash of its own.
_SURROGATE_PAIR = re.compile(r"(?<!\\)\\u(d[89ab][0-9a-f]{2})\\u(d[c-f][0-9a-f]{2})",
                             re.IGNORECASE)


def _whole_code_points(grammar: str) -> str:
    """The converter's grammar with each surrogate pair written as the one code point it
    stands for (``\\U0001F44D``): llama.cpp reads ``\\ud83d\\udc4d`` as two code points
    of their own, no text's, so an enum of emoji let the answer write anything but them
    (U+FFFD six times, not one of the values)."""
    def code_point(pair: re.Match[str]) -> str:
        return f"\\U{joined_surrogates(int(pair[1], 16), int(pair[2], 16)):08X}"
    return _SURROGATE_PAIR.sub(code_point, grammar)


def _json_safe_characters(grammar: str) -> str:
    """The converter's grammar with its ``char`` (a string's character) and ``dot`` (a
    pattern's ``.``) kept to :data:`JSON_STRING_CHAR`: they allowed control characters, and
    ``dot`` quotes and backslashes too, so a schema-following answer could hold a raw newline
    inside a string and not parse (``json_object``'s grammar, ``JSON_GBNF``, never did)."""
    lines = grammar.split("\n")
    for index, line in enumerate(lines):
        if line.startswith("char ::= [^\"\\\\] |"):
            lines[index] = line.replace('[^"\\\\]', JSON_STRING_CHAR, 1)
        elif line.startswith("dot ::= "):
            lines[index] = f"dot ::= {JSON_STRING_CHAR}"
    return "\n".join(lines)


#: A calendar date, ``YYYY-MM-DD`` (a schema's ``format: date``, and the date of a
#: ``date-time``), as GBNF: a day the month has (February's 29th in leap years only: a year
#: divisible by 4, and by 400 where it ends in 00) and a year from 0001 (the converter's rule
#: let any month have a 31st and any year be 0000, dates pydantic and ``datetime`` refuse).
CALENDAR_DATE = (
    '( [1-9] [0-9] [0-9] [0-9] | "0" [1-9] [0-9] [0-9] | "00" [1-9] [0-9] | "000" [1-9] ) "-" '
    '( ( "0" [13578] | "1" [02] ) "-" ( "0" [1-9] | [12] [0-9] | "3" [01] ) '
    '| ( "0" [469] | "11" ) "-" ( "0" [1-9] | [12] [0-9] | "30" ) '
    '| "02-" ( "0" [1-9] | "1" [0-9] | "2" [0-8] ) ) '
    '| ( [0-9] [0-9] ( "0" [48] | [2468] [048] | [13579] [26] ) '
    '| ( "0" [48] | [2468] [048] | [13579] [26] ) "00" ) "-02-29"'
)


def _calendar_dates(grammar: str) -> str:
    """The converter's grammar with its ``date`` rule (a name the converter keeps for it) as
    :data:`CALENDAR_DATE`: its own took ``2023-02-30``, which the answer then wrote with
    ``finish_reason: stop`` and no client could read as a date."""
    return "\n".join(f"date ::= {CALENDAR_DATE}" if line.startswith("date ::= ") else line
                     for line in grammar.split("\n"))


def json_grammar(schema: dict[str, Any] | bool | None = None) -> str:
    """The GBNF of a JSON answer: any JSON object without ``schema`` (and for ``true``, ``{}``
    or annotations alone, as OpenAI's answer is an object), else one that validates against
    it; an unusable schema is a ``SettingsError``, and so is one with a constraint
    the grammar would not enforce (:data:`UNENFORCED_KEYWORDS`, ``schema_branches.left_out``)
    or a grammar nested too deep for llama.cpp (``check_depth``)."""
    if (schema is None or schema is True
            or (isinstance(schema, dict) and schema.keys() <= ANNOTATIONS)):  # ({} too)
        return llama_cpp.llama_grammar.JSON_GBNF
    if schema is False:
        raise SettingsError("The JSON schema false lets no answer through; send a schema "
                            "object (or true, or {}, for any JSON object).")
    if not isinstance(schema, dict):
        raise SettingsError("The JSON schema must be an object.")
    try:
        return _checked_grammar(schema)
    except RecursionError:  # the checks walk a schema by recursion, and so does the converter
        raise SettingsError("The JSON schema nests too deep for localpref's grammar converter "
                            "(properties or items some hundreds of levels deep); flatten "
                            "it.") from None


def _checked_grammar(schema: dict[str, Any]) -> str:
    """``json_grammar`` of a schema object."""
    problem = shape_problem(schema)
    if problem is not None:
        raise SettingsError(problem)
    unenforced = unenforced_keywords(schema)
    if unenforced:
        these = "that constraint" if len(unenforced) == 1 else "those constraints"
        raise SettingsError(f"The JSON schema uses {listed(unenforced)}, which localpref "
                            f"cannot enforce while it writes; remove "
                            f"{'it' if len(unenforced) == 1 else 'them'} and check {these} "
                            "on the answer.")
    unwritable = unwritable_literals(schema)
    if unwritable:
        raise SettingsError(f"The JSON schema's {listed(unwritable)} holds a text with a "
                            "quote, a backslash or a control character, which localpref's "
                            "grammar converter cannot write; use plain texts there.")
    fixed = prepared(schema)
    unwrap_single_all_of(fixed)
    split = split_type_lists(fixed)
    unread = as_written(left_out(fixed), split)
    if unread:
        it = "it" if len(unread) == 1 else "them"
        raise SettingsError(
            f"The JSON schema's {listed(unread)} would not be enforced where "
            f"{'it stands' if len(unread) == 1 else 'they stand'}, as llama.cpp's grammar "
            "converter reads one rule in each place (a $ref, anyOf or oneOf before what is "
            "beside it, a pattern or format before the lengths, 'required' only among the "
            f"properties); remove {it} and check "
            f"{'that constraint' if len(unread) == 1 else 'those constraints'} on the answer.")
    name_references(fixed)
    text = json.dumps(fixed)
    try:
        grammar = _calendar_dates(_whole_code_points(_json_safe_characters(
            llama_cpp.llama_grammar.json_schema_to_gbnf(text))))
    except Exception as error:  # noqa: BLE001 - the converter raises bare assertions
        detail = str(error).strip().rstrip(".") or type(error).__name__
        raise SettingsError("localpref cannot follow this JSON schema (llama.cpp's converter "
                            f"says: {detail}).") from None
    check_depth(grammar)  # here, where a server names the field, not when the answer starts
    return grammar


#: The deepest nesting of groups a grammar may have. llama.cpp parses a group inside a group by
#: recursion: at 2,000 deep (a JSON schema's ``"maxLength": 2000``, which the converter writes
#: as optional characters nested one in the next) it refuses the grammar, and at 20,000 the
#: recursion overflows the stack and the whole process dies (a 200-byte request).
MAX_GRAMMAR_DEPTH = 1000


def grammar_depth(grammar: str) -> int:
    """How deep ``grammar``'s groups ``( ... )`` nest, outside its ``"..."`` literals and
    ``[...]`` character classes (whose brackets and quotes may be escaped) and comments."""
    depth = deepest = 0
    closing: str | None = None  # the end of the literal or class being read
    escaped = in_comment = False
    for char in grammar:
        if in_comment:
            in_comment = char != "\n"
        elif closing is not None:
            if escaped:
                escaped = False
            elif char == "\\":
                escaped = True
            elif char == closing:
                closing = None
        elif char in "\"[":
            closing = '"' if char == '"' else "]"
        elif char == "#":
            in_comment = True
        elif char == "(":
            depth += 1
            deepest = max(deepest, depth)
        elif char == ")":
            depth -= 1
    return deepest


def check_depth(grammar: str) -> None:
    """A ``SettingsError`` for a grammar nested deeper than :data:`MAX_GRAMMAR_DEPTH`."""
    depth = grammar_depth(grammar)
    if depth > MAX_GRAMMAR_DEPTH:
        raise SettingsError(
            f"The grammar nests {depth} groups deep and llama.cpp parses at most "
            f"{MAX_GRAMMAR_DEPTH}: a JSON schema's maxLength or maxItems, or a pattern's "
            "{n,m}, above about 1,000 does that; lower it.")


class GrammarMask:
    """One answer's grammar: which tokens it allows next, and its state as tokens come."""

    def __init__(self, grammar: str, vocab: Any, vocab_size: int, root: str = "root") -> None:
        """``vocab``: llama.cpp's vocabulary pointer (``Vocabulary.pointer``). A grammar
        nested deeper than :data:`MAX_GRAMMAR_DEPTH` is refused before llama.cpp sees it."""
        self.sampler = None  # ``close`` (and so ``__del__``) of one refused below
        check_depth(grammar)
        self.sampler = llama_cpp.llama_sampler_init_grammar(vocab, grammar.encode("utf-8"),
                                                            root.encode("utf-8"))
        if not self.sampler:
            raise SettingsError("The grammar does not parse (llama.cpp refused it).")
        self.data = np.zeros(vocab_size, dtype=TOKEN_DATA)
        self.data["id"] = np.arange(vocab_size, dtype=np.int32)
        self.array = llama_cpp.llama_token_data_array(
            data=self.data.ctypes.data_as(llama_cpp.llama_token_data_p), size=vocab_size,
            selected=-1, sorted=False)
        #: the tokens allowed at this step (``allow()``)
        self.allowed = np.zeros(vocab_size, dtype=bool)
        self.fresh = False  # ``allowed`` is the grammar's current state (no accept since)

    def allow(self) -> np.ndarray:
        """Which tokens the grammar allows next (a boolean array over the vocabulary)."""
        self.data["logit"] = 0.0
        self.array.size = self.data.shape[0]
        self.array.selected = -1
        self.array.sorted = False
        llama_cpp.llama_sampler_apply(self.sampler, ctypes.byref(self.array))
        order = self.data["id"][: self.array.size]
        allowed = np.zeros(self.data.shape[0], dtype=bool)
        allowed[order] = np.isfinite(self.data["logit"][: self.array.size])
        self.allowed = allowed
        self.fresh = True
        return allowed

    def mask_into(self, scores: np.ndarray, candidate_ids: np.ndarray | None = None) -> None:
        """Set the scores of disallowed tokens to -inf in place (``candidate_ids``: the ids
        of the scores' entries when they are a subset, PAD's candidates)."""
        allowed = self.allowed if candidate_ids is None else self.allowed[candidate_ids]
        scores[~allowed] = -math.inf

    def allows(self, token: int) -> bool:
        """Whether the grammar allows ``token`` now (``allow()`` ran since the last accept)."""
        return self.fresh and bool(self.allowed[token])

    def accept(self, token: int) -> None:
        """Advance the grammar by an allowed token (a disallowed one is refused here)."""
        if not self.allows(token):
            raise SettingsError(f"Token {token} is not allowed by the grammar here.")
        self.fresh = False
        llama_cpp.llama_sampler_accept(self.sampler, token)

    def close(self) -> None:
        if self.sampler:
            llama_cpp.llama_sampler_free(self.sampler)
            self.sampler = None

    def __del__(self) -> None:
        self.close()
