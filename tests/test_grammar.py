"""Which JSON schemas become a grammar: a constraint the converter would drop is refused by
name and place; annotations and unknown formats are not constraints."""

from __future__ import annotations

import numpy as np
import pytest
from llama_cpp.llama_grammar import JSON_GBNF

from localpref.decoding import Generation
from localpref.errors import SettingsError
from localpref.grammar import GrammarMask, grammar_depth, json_grammar
from localpref.request import Request
from localpref.schema_branches import as_written, left_out, split_type_lists
from localpref.schema_checks import (
    UNENFORCED_KEYWORDS,
    looping_reference,
    prepared,
    repetition_problem,
    shape_problem,
    unenforced_keywords,
    unwritable_literals,
)

NAME = {"type": "string", "title": "Name", "description": "a name", "format": "email"}


@pytest.mark.parametrize(("schema", "found"), [
    ({"type": "integer", "minimum": 5}, ("minimum", "")),
    ({"type": "object", "properties": {"age": {"type": "number", "exclusiveMaximum": 9}}},
     ("exclusiveMaximum", "properties.age")),
    ({"type": "array", "items": {"anyOf": [NAME, {"type": "string", "not": {"const": "x"}}]}},
     ("not", "items.anyOf[1]")),
    ({"$defs": {"tag": {"type": "array", "uniqueItems": True}},
      "type": "object", "properties": {"tags": {"$ref": "#/$defs/tag"}}},
     ("uniqueItems", "$defs.tag")),
    ({"type": "object", "additionalProperties": {"type": "object", "minProperties": 1}},
     ("minProperties", "additionalProperties")),
    ({"type": "array", "prefixItems": [NAME, {"type": "integer", "multipleOf": 2}]},
     ("multipleOf", "prefixItems[1]")),
])
def test_a_constraint_the_grammar_would_drop_is_found_where_it_is(schema, found) -> None:
    assert unenforced_keywords(schema) == [found]
    with pytest.raises(SettingsError, match=f"^The JSON schema uses '{found[0]}'"):
        json_grammar(schema)


def test_every_constraint_the_grammar_would_drop_is_named_at_once() -> None:
    """Pydantic's ``Field(ge=0, le=150)`` writes two: both are named, so that removing one
    does not meet a second refusal."""
    schema = {"type": "object", "minProperties": 1, "properties": {
        "age": {"type": "integer", "minimum": 0, "maximum": 150},
        "tags": {"type": "array", "uniqueItems": True}}}
    assert unenforced_keywords(schema) == [("minProperties", ""), ("minimum", "properties.age"),
                                           ("maximum", "properties.age"),
                                           ("uniqueItems", "properties.tags")]
    with pytest.raises(SettingsError) as refused:
        json_grammar(schema)
    assert str(refused.value) == (
        "The JSON schema uses 'minProperties'; 'minimum' and 'maximum' (at properties.age); "
        "'uniqueItems' (at properties.tags), which localpref cannot enforce while it writes; "
        "remove them and check those constraints on the answer.")


def test_names_and_annotations_are_not_constraints() -> None:
    # a property may be called "minimum"; title, description, format and default annotate
    schema = {"type": "object", "title": "T", "properties": {
        "minimum": {"type": "integer", "default": 3}, "name": NAME,
        "tags": {"type": "array", "items": NAME, "minItems": 1, "maxItems": 3}},
        "required": ["minimum"], "additionalProperties": False}
    assert unenforced_keywords(schema) == []
    grammar = json_grammar(schema)
    assert "minimum" in grammar and "root ::=" in grammar
    assert {"minimum", "maximum", "not", "if"} <= UNENFORCED_KEYWORDS


def test_a_grammars_depth_counts_groups_only() -> None:
    """Parentheses inside literals, character classes (escaped or not) and comments are not
    groups; the converter nests one group per optional character of a maxLength."""
    assert grammar_depth('root ::= "(" [)(\\]] "\\"(" # (((\n x ::= (a (b) (c (d)))') == 3
    assert grammar_depth(json_grammar({"type": "string", "maxLength": 7})) == 7
    assert grammar_depth(json_grammar({"type": "string", "pattern": "^a{0,12}$"})) == 12
    assert grammar_depth(json_grammar()) <= 2


def _allowed_after(model, grammar: str, text: str) -> np.ndarray:
    """Which tokens ``grammar`` allows after the tokens of ``text``."""
    vocabulary = model.vocabulary
    mask = GrammarMask(grammar, vocabulary.pointer, vocabulary.size)
    try:
        for token in vocabulary.tokenize(text, add_special=False):
            mask.allow()
            mask.accept(token)
        return mask.allow().copy()
    finally:
        mask.close()


@pytest.mark.parametrize(("schema", "opened"), [
    ({"type": "object", "properties": {"poem": {"type": "string"}}}, '{"poem": "Snow'),
    ({"type": "object", "properties": {"code": {"type": "string", "pattern": "^a.*$"}}},
     '{"code": "a'),
])
def test_a_schema_string_never_takes_a_raw_control_character_or_a_bare_quote_in_a_pattern(
        model, schema, opened) -> None:
    """The converter's string character allowed a raw newline or tab (JSON forbids them
    inside a string): half of Qwen's poems under a schema ended 'stop' and did not parse.
    A pattern's '.' allowed a quote too, which ended the string early."""
    allowed = _allowed_after(model, json_grammar(schema), opened)
    vocabulary = model.vocabulary
    controls = [token for token in range(vocabulary.size)
                if any(byte < 0x20 or byte == 0x7F for byte in vocabulary.piece(token))]
    assert len(controls) > 100  # newlines, tabs, indentation runs
    assert not allowed[controls].any()
    (letter,) = vocabulary.tokenize("x", add_special=False)
    (escape,) = vocabulary.tokenize("\\", add_special=False)
    assert allowed[letter] and allowed[escape] == ("pattern" not in str(schema))
    if "pattern" not in str(schema):  # inside the string, as llama.cpp's JSON grammar allows
        inside = [token for token in range(vocabulary.size) if b'"' not in
                  vocabulary.piece(token)]
        assert np.array_equal(allowed[inside], _allowed_after(model, JSON_GBNF, opened)[inside])


@pytest.mark.parametrize(("schema", "where"), [
    ({"enum": ['say "hi"', "bye"]}, "'enum'"),
    ({"type": "object", "properties": {"mood": {"const": "tab\there"}}},
     "'const' (at properties.mood)"),
    ({"type": "object", "properties": {"back\\slash": {"type": "string"}}}, "'properties'"),
])
def test_an_enum_const_or_name_the_converter_would_write_wrong_is_refused(schema,
                                                                          where) -> None:
    """The converter copies a literal's JSON text without doubling its backslashes: a quote
    ended the grammar's literal early, a tab became a raw tab in the answer."""
    with pytest.raises(SettingsError) as refused:
        json_grammar(schema)
    assert str(refused.value) == (
        f"The JSON schema's {where} holds a text with a quote, a backslash or a control "
        "character, which localpref's grammar converter cannot write; use plain texts there.")
    assert unwritable_literals({"enum": ["café", 3, None, ["ok"]]}) == []


#: A ``$ref`` that leads back to itself before any value (llama.cpp refused the grammar as
#: left recursive, and the server named no field).
LOOPING = ("The JSON schema's $ref {} leads back to itself before any value is written "
           "(through $ref, anyOf, oneOf or allOf only), so no answer could begin; put the "
           "reference inside a value, such as an object's property or an array's items.")


@pytest.mark.parametrize(("schema", "sentence"), [
    ({"type": "object", "properties": [1]},
     "The JSON schema's 'properties' must be an object (got a list)."),
    ({"type": "string", "minLength": "3"},
     "The JSON schema's 'minLength' must be a whole number, 0 or more (got a text)."),
    ({"type": "object", "properties": {"a": {"type": "array", "items": 5}}},
     "The JSON schema's 'items' (at properties.a) must be a schema object, a list of them or "
     "true/false (got a number)."),
    ({"type": "array", "items": False},
     "The JSON schema's 'items': false allows no item at all; give the items' schema, or "
     "prefixItems before it."),
    ({"type": "object", "properties": {"a": "string"}},
     "The JSON schema's property 'a' (at properties) must be a schema object (got a text)."),
    ({"type": "object", "required": "a"},
     "The JSON schema's 'required' must be a list of property names (got a text)."),
    ({"anyOf": [{"type": "string"}, True]},
     "The JSON schema's 'anyOf' must be a list of schemas (objects), not empty (got a list)."),
    ({"$defs": {"a": {"$ref": "#/$defs/b"}}, "$ref": "#/$defs/a"},
     "The JSON schema's $ref '#/$defs/b' (at $defs.a) names nothing in it."),
    ({"$ref": "#/$defs/Nope"}, "The JSON schema's $ref '#/$defs/Nope' names nothing in it."),
    ({"type": "object", "properties": {"a": {"$ref": "https://example.com/s.json"}}},
     "The JSON schema's $ref 'https://example.com/s.json' (at properties.a) is not inside the "
     "schema; localpref follows only references such as '#/$defs/name'."),
    ({"type": "array", "items": {"$ref": "#"}},
     "The JSON schema's $ref '#' (at items) refers to the whole schema, which localpref cannot "
     "follow; put that schema in $defs and refer to it as '#/$defs/name'."),
    ({"$defs": {"a/b": {"type": "string"}}, "$ref": "#/$defs/a~0b"},
     "The JSON schema's $ref '#/$defs/a~0b' names nothing in it."),
    ({"type": "string", "minLength": 10_001},
     "The JSON schema's 'minLength' is 10,001, more than the 10,000 localpref's grammar "
     "writes; lower it and check the length on the answer."),
    ({"type": "object", "properties": {"a": {"type": "array", "items": {"type": "integer"},
                                             "maxItems": 10**30}}},
     "The JSON schema's 'maxItems' (at properties.a) is "
     "1,000,000,000,000,000,000,000,000,000,000, more than the 10,000 localpref's grammar "
     "writes; lower it and check the length on the answer."),
    ({"type": "object", "properties": {f"p{n}": {"type": "string", "minLength": 9_000}
                                       for n in range(111)} | {
        "code": {"type": ["string", "null"], "pattern": "^[ab]{9000}-[0-9]{1_000}$"}}},
     "The JSON schema's lengths and counts (minLength, maxLength, minItems, maxItems, a "
     "pattern's {n,m}) add up to 1,009,000 repetitions, more than the 1,000,000 localpref's "
     "grammar writes; lower them and check the lengths on the answer."),
    ({"type": ["string"] * 3, "minLength": 9000},  # the converter wrote the copies out
     "The JSON schema's 'type' must be a type name or a list of different ones (got a list)."),
    ({"$ref": "#/$defs/x", "$defs": {"x": {"$ref": "#/$defs/x"}}}, LOOPING.format(
        "'#/$defs/x' (at $defs.x)")),
    ({"$defs": {"x": {"anyOf": [{"$ref": "#/$defs/x"}, {"type": "string"}]}},
      "$ref": "#/$defs/x"}, LOOPING.format("'#/$defs/x' (at $defs.x.anyOf[0])")),
    ({"$defs": {"x": {"allOf": [{"$ref": "#/$defs/x"}]}}, "type": "object",
      "properties": {"a": {"$ref": "#/$defs/x"}}},
     LOOPING.format("'#/$defs/x' (at $defs.x.allOf[0])")),
    ({"$defs": {"x": {"oneOf": [{"$ref": "#/$defs/y"}]},
                "y": {"anyOf": [{"type": "null"}, {"$ref": "#/$defs/x"}]}}},
     LOOPING.format("'#/$defs/x' (at $defs.y.anyOf[1])")),
])
def test_a_keyword_of_the_wrong_kind_or_a_lost_ref_is_one_sentence(schema, sentence) -> None:
    """The converter answered these with Python's own errors ("'list' object has no attribute
    'items'", "'#/$defs/b'")."""
    assert shape_problem(schema) == sentence
    with pytest.raises(SettingsError) as refused:
        json_grammar(schema)
    assert str(refused.value) == sentence


def _takes(model, grammar: str, text: str) -> bool:
    """Whether ``grammar`` allows every token of ``text``, one after the other."""
    vocabulary = model.vocabulary
    mask = GrammarMask(grammar, vocabulary.pointer, vocabulary.size)
    try:
        for token in vocabulary.tokenize(text, add_special=False):
            if not mask.allow()[token]:
                return False
            mask.accept(token)
        return True
    finally:
        mask.close()


def test_a_date_format_takes_the_dates_a_calendar_has_and_no_other(model) -> None:
    """The converter's ``date`` took any month's 31st and year 0000: "2023-02-30" was
    written with finish_reason stop, and pydantic refused the answer ("outside expected
    range"). Now a text is taken exactly when ``datetime.date`` reads it, in a
    ``date-time`` too."""
    import datetime

    def is_a_date(text: str) -> bool:
        try:
            datetime.date.fromisoformat(text)
        except ValueError:
            return False
        return True

    dated = json_grammar({"type": "string", "format": "date"})
    timed = json_grammar({"type": "string", "format": "date-time"})
    for year in ("0000", "0001", "0004", "0100", "0400", "1900", "2000", "2023", "2024",
                 "2100", "9999"):
        for month, day in (("02", "28"), ("02", "29"), ("02", "30"), ("04", "30"),
                           ("04", "31"), ("06", "31"), ("11", "30"), ("12", "31"),
                           ("01", "00"), ("00", "10"), ("13", "01"), ("01", "32")):
            text = f"{year}-{month}-{day}"
            assert _takes(model, dated, f'"{text}"') is is_a_date(text), text
            assert _takes(model, timed, f'"{text}T10:20:30Z"') is is_a_date(text), text


def test_references_the_converter_would_miss_are_followed(model) -> None:
    """pydantic's self-referencing model puts ``$ref`` beside ``$defs`` at the top, whose
    references the converter then never resolved ("llama.cpp's converter says:
    '#/$defs/Node'"); a name with ``/`` or ``~`` is escaped in a reference (``~1``, ``~0``,
    RFC 6901), which the converter read as written (refused as naming nothing)."""
    tree = {"$defs": {"Node": {"type": "object", "properties": {
        "v": {"type": "integer"}, "kids": {"type": "array", "items": {"$ref": "#/$defs/Node"}}},
        "required": ["v", "kids"]}}, "$ref": "#/$defs/Node", "title": "Node"}
    assert shape_problem(tree) is None
    grammar = json_grammar(tree)
    assert _takes(model, grammar, '{"v": 1, "kids": [{"v": 2, "kids": []}]}')
    assert not _takes(model, grammar, '{"v": 1, "kids": [{"v": "two"')
    assert not _takes(model, grammar, '[')
    escaped = {"$defs": {"a/b": {"enum": ["x", "y"]}, "c~d e": {"type": "integer"}},
               "type": "object", "required": ["a", "b"],
               "properties": {"a": {"$ref": "#/$defs/a~1b"}, "b": {"$ref": "#/$defs/c~0d%20e"}}}
    grammar = json_grammar(escaped)
    assert _takes(model, grammar, '{"a": "y", "b": 3}')
    assert not _takes(model, grammar, '{"a": "z"')
    assert not _takes(model, grammar, '{"a": "x", "b": "3"')
    assert escaped["properties"]["a"] == {"$ref": "#/$defs/a~1b"}  # the caller's, as it was
    merged = {"$defs": {"A": {"type": "object", "properties": {"a": {"type": "integer"}},
                              "required": ["a"]}},
              "type": "object",
              "allOf": [{"$ref": "#/$defs/A", "properties": {"b": {"type": "string"}}}]}
    grammar = json_grammar(merged)  # an allOf item's $ref stays: its properties stay required
    assert _takes(model, grammar, '{"a": 5}')
    assert not _takes(model, grammar, '{}')
    merged["allOf"] = [{"anyOf": [{"$ref": "#/$defs/A",
                                   "properties": {"x": {"$ref": "#/$defs/A"}}}]}]
    merged["$defs"]["A"]["required"] = []  # (an anyOf choice's required is merged as optional)
    grammar = json_grammar(merged)  # nor an anyOf choice inside one: A's properties are read
    assert _takes(model, grammar, '{"a": 5}')
    assert not _takes(model, grammar, '{"x": {')


ANY_OF = "The JSON schema's 'anyOf' (at {}) must be a list of schemas (objects), not empty"


@pytest.mark.parametrize(("schema", "sentence"), [
    ({"$ref": "#/foo", "foo": {"anyOf": [1]}}, ANY_OF.format("foo") + " (got a list)."),
    ({"$ref": "#/foo", "foo": {"anyOf": "abc"}}, ANY_OF.format("foo") + " (got a text)."),
    ({"$defs": {"anyOf": {"type": "string"}}, "$ref": "#/$defs"},
     ANY_OF.format("$defs") + " (got an object)."),
    ({"$ref": "#/foo", "foo": {"type": "string", "maxLength": 100_000_000}},
     "The JSON schema's 'maxLength' (at foo) is 100,000,000, more than the 10,000 "
     "localpref's grammar writes; lower it and check the length on the answer."),
    ({"$ref": "#/foo", "foo": {"type": "integer", "minimum": 3}},
     "The JSON schema uses 'minimum' (at foo), which localpref cannot enforce while it "
     "writes; remove it and check that constraint on the answer."),
    ({"$ref": "#/a/b", "a": {"b": {"$ref": "#/a/b"}}}, LOOPING.format("'#/a/b' (at a.b)")),
])
def test_a_place_a_reference_names_outside_the_schemas_is_checked_too(schema,
                                                                       sentence) -> None:
    """The converter follows a ``$ref`` to any place (``#/foo``), where no check looked: what
    was not a schema there raised Python's AttributeError, and a count or a constraint there
    was written out or dropped unchecked."""
    with pytest.raises(SettingsError) as refused:
        json_grammar(schema)
    assert str(refused.value) == sentence


def test_a_long_chain_of_references_is_walked_without_recursion() -> None:
    """600 definitions each choosing the next (or null): no loop, and no RecursionError from
    the walk (it was one, raised raw)."""
    chain = {f"d{n}": {"anyOf": [{"$ref": f"#/$defs/d{n + 1}"}, {"type": "null"}]}
             for n in range(600)}
    schema = {"$defs": chain | {"d600": {"type": "string"}}, "$ref": "#/$defs/d0"}
    assert looping_reference(schema) is None
    chain["d599"]["anyOf"][0]["$ref"] = "#/$defs/d0"
    assert looping_reference(schema) == ("#/$defs/d0", "$defs.d599.anyOf[0]")


@pytest.mark.parametrize("schema", [
    {"type": "integer", "maxLength": 20_000},
    {"type": "object", "properties": {"a": {"type": "string"}}, "maxItems": 100_000},
    {"anyOf": [{"type": "string", "maxLength": 800}, {"type": "integer", "maxLength": 20_000}]},
])
def test_a_count_where_it_constrains_nothing_is_not_counted(schema) -> None:
    """The converter reads lengths on strings and item counts beside an items schema only."""
    assert repetition_problem(schema) is None
    assert "root ::=" in json_grammar(schema)


def test_each_reference_names_a_rule_of_its_own(model) -> None:
    """The converter named a reference's rule by its last name: two ending alike shared the
    first's rule (a text taken for a number, or a left-recursive grammar llama.cpp refused),
    and a recursive one named ``a_b`` referred to a rule that did not exist."""
    shadowed = {"type": "object", "required": ["a", "b"], "$defs": {"a": {"type": "integer"}},
                "properties": {"a": {"type": "string", "minLength": 3},
                               "b": {"$ref": "#/$defs/a"}}}
    grammar = json_grammar(shadowed)
    assert _takes(model, grammar, '{"a": "abc", "b": 5}')
    assert not _takes(model, grammar, '{"a": "abc", "b": "')
    same_name = {"$ref": "#/$defs/q",
                 "$defs": {"q": {"type": "object", "properties": {"v": {
                     "$ref": "#/definitions/q"}}}},
                 "definitions": {"q": {"anyOf": [{"$ref": "#/$defs/q"}, {"type": "null"}]}}}
    assert _takes(model, json_grammar(same_name), '{"v": {"v": null}}')
    underscored = {"$defs": {"a_b": {"type": "object", "properties": {
        "n": {"$ref": "#/$defs/a_b"}}}}, "$ref": "#/$defs/a_b"}
    assert _takes(model, json_grammar(underscored), '{"n": {"n": {}}}')
    named_like_ours = {"type": "object", "properties": {"ref-1": {"$ref": "#/$defs/string"}},
                       "required": ["ref-1"], "$defs": {"string": {"type": "integer"}}}
    grammar = json_grammar(named_like_ours)
    assert _takes(model, grammar, '{"ref-1": 7}')
    assert not _takes(model, grammar, '{"ref-1": "')
    # a property "ref" whose choices are the converter's rules ref-0, ref-1 (pydantic's
    # ``ref: int | Annotated[str, Field(max_length=4)]`` beside a nested model)
    choices = {"type": "object", "required": ["ref", "item"], "properties": {
        "ref": {"anyOf": [{"type": "integer"}, {"type": "string", "maxLength": 4}]},
        "item": {"$ref": "#/$defs/Item"}},
        "$defs": {"Item": {"type": "object", "properties": {"qty": {"type": "integer"}},
                           "required": ["qty"]}}}
    grammar = json_grammar(choices)
    assert _takes(model, grammar, '{"ref": 7, "item": {"qty": 3}}')
    assert not _takes(model, grammar, '{"ref": 7, "item": "')


def test_a_schema_nested_hundreds_deep_is_one_sentence() -> None:
    deep: dict = {"type": "string"}
    for _ in range(600):
        deep = {"type": "array", "items": deep}
    with pytest.raises(SettingsError) as refused:
        json_grammar(deep)
    assert str(refused.value).startswith("The JSON schema nests too deep for localpref's ")


def test_answers_to_alternatives_emoji_and_any_values_are_json_that_validates(model) -> None:
    """Three ways an answer that followed the grammar was not what the schema asks: a
    pattern's top-level alternatives let the string end without its quote
    (``{"zip": "12345$``), an enum of emoji let the answer write anything but them (the
    converter's surrogate escapes, two code points to llama.cpp), and pydantic's ``Any``
    (annotations alone) was refused as an unrecognized schema."""
    zip_code = json_grammar({"type": "object", "required": ["zip"], "properties": {
        "zip": {"type": "string", "pattern": r"^\d{5}$|^\d{5}-\d{4}$"}}})
    assert _takes(model, zip_code, '{"zip": "12345"}')
    assert _takes(model, zip_code, '{"zip": "12345-6789"}')
    assert not _takes(model, zip_code, '{"zip": "12345$')
    reaction = json_grammar({"type": "object", "required": ["r"], "properties": {
        "r": {"type": "string", "enum": ["\N{THUMBS UP SIGN}", "great \N{THUMBS DOWN SIGN}"]}}})
    assert "\\U0001F44D" in reaction and "\\ud83d" not in reaction
    assert _takes(model, reaction, '{"r": "\N{THUMBS UP SIGN}"}')
    assert _takes(model, reaction, '{"r": "great \N{THUMBS DOWN SIGN}"}')
    assert not _takes(model, reaction, '{"r": "x')
    emoji = json_grammar({"type": "string", "pattern": "^[\U0001F600-\U0001F64F]+$"})
    assert _takes(model, emoji, '"\U0001F600\U0001F642"') and not _takes(model, emoji, '"a')
    anything = {"type": "object", "required": ["name", "payload"], "properties": {
        "name": {"type": "string"}, "payload": {"title": "Payload", "description": "free"}}}
    grammar = json_grammar(anything)
    for payload in ('3', '"s"', '{"k": [1, null]}', 'true'):
        assert _takes(model, grammar, f'{{"name": "a", "payload": {payload}}}'), payload
    assert anything["properties"]["payload"] == {"title": "Payload", "description": "free"}
    assert json_grammar({"description": "anything"}) == JSON_GBNF  # as {} at the top
    assert json_grammar(True) == JSON_GBNF  # (as {}: an answer is an object, as OpenAI's)
    with pytest.raises(SettingsError, match="^The JSON schema false lets no answer through; "):
        json_grammar(False)  # (it said "must be an object" though false is a schema)
    rest = json_grammar({"type": "array", "prefixItems": [{"type": "integer"}],
                         "items": {"description": "the rest"}})  # as items {}: refused
    assert _takes(model, rest, "[1]")
    escaped = json_grammar({"type": "string", "pattern": r"^\u0041{2}$|^b$"})
    assert _takes(model, escaped, '"AA"') and _takes(model, escaped, '"b"')
    assert not _takes(model, escaped, '"A"')


def test_a_reference_inside_a_value_is_not_a_loop(model) -> None:
    """A schema reached again only inside a property or an item begins with the value's own
    ``{`` or ``[``: the grammar is not left recursive, and llama.cpp takes it."""
    tree = {"$defs": {"t": {"anyOf": [{"type": "null"}, {"type": "object", "properties": {
        "kids": {"type": "array", "items": {"$ref": "#/$defs/t"}}}, "required": ["kids"]}]}},
        "$ref": "#/$defs/t"}
    assert looping_reference(tree) is None
    grammar = json_grammar(tree)
    assert _takes(model, grammar, '{"kids": [null, {"kids": []}]}')
    assert not _takes(model, grammar, '{"kids": [1')
    at_the_limit = json_grammar({"type": "string", "minLength": 10_000})
    assert at_the_limit.count("char") > 10_000


def test_a_schema_of_the_right_shape_has_no_problem() -> None:
    schema = {"$defs": {"tag": {"type": "string", "enum": ["a", "b"]}}, "type": "object",
              "properties": {"tags": {"type": "array", "items": {"$ref": "#/$defs/tag"},
                                      "minItems": 1, "maxItems": 3},
                             "note": {"anyOf": [{"type": "string"}, {"type": "null"}]}},
              "required": ["tags"], "additionalProperties": False}
    assert shape_problem(schema) is None
    assert "tag" in json_grammar(schema)


NOT_IN_JSON = r'"\\\x00-\x1F\x7F'


@pytest.mark.parametrize(("pattern", "anchored"), [
    (r"\d{3}", r"^([0-9]{3})$"),
    (r"^\d{3}", r"^([0-9]{3})$"),
    (r"\d{3}$", r"^([0-9]{3})$"),
    (r"^[a-z]{3}$", r"^[a-z]{3}$"),  # as it was
    ("a\\$", "^(a[$])$"),  # an escaped dollar is a character, not the anchor
    (r"^[\w.-]+@\w+\s\.$", r"^[0-9A-Za-z_.-]+@[0-9A-Za-z_]+ [.]$"),  # classes within too
    (r"^\d{3}\-[\^\-\.]\/$", r"^[0-9]{3}[\x2D][\x5E\x2D.][/]$"),  # escapes the grammar reads
    (r"^\([0-9]\)\u00e9$", r"^\([0-9]\)[\U000000E9]$"),  # escapes it reads as they are
    # a \uXXXX as one character (the converter split "\u004" "1" before a | or a count,
    # a grammar llama.cpp refused), a surrogate pair as the character it stands for
    (r"\u0041|b", r"^([\U00000041]|b)$"), (r"^\ud83d\udc4d+$", r"^[\U0001F44D]+$"),
    (r"[\u0041-\u005A]", r"^([\U00000041-\U0000005A])$"),
    (r"(?:ab)+", r"^((ab)+)$"),  # a group that captures nothing: a group
    (r"[]a]", r"^([\x5Da])$"),  # a class's first ']' is a character
    # a negated class leaves out what a JSON string cannot hold raw, and \s every space
    (r"[^@]+", rf"^([^{NOT_IN_JSON}@]+)$"),
    (r"[^]a]", rf"^([^{NOT_IN_JSON}\x5Da])$"),
    (r"^[^\s]$", rf"^[^{NOT_IN_JSON} \t\n\r\x0B\x0C\u00A0\u1680\u2000-\u200A\u2028\u2029"
                  r"\u202F\u205F\u3000\uFEFF]$"),
    (r"^\D$", rf"^[^0-9{NOT_IN_JSON}]$"),
    (r"\x41+[\x61-\x7A]", r"^([\x41]+[\x61-\x7A])$"),  # a character by its code
    # alternatives at the top level: a whole match of one, each one's anchors left out (the
    # converter wrote the string's quotes beside the first and the last alone)
    (r"^\d{5}$|^\d{5}-\d{4}$", r"^([0-9]{5}|[0-9]{5}-[0-9]{4})$"),
    ("^cat|dog$", "^(cat|dog)$"), ("a|b", "^(a|b)$"), ("^(a|b)$", "^(a|b)$"),
    ("^[a|b]$", "^[a|b]$"), (r"a\|b", r"^(a\|b)$"),
])
def test_a_pattern_is_written_as_a_whole_match_the_grammar_reads(pattern: str,
                                                                  anchored: str) -> None:
    schema = {"type": "object", "properties": {"code": {"type": "string", "pattern": pattern},
                                               "pattern": {"type": "string"}}}
    fixed = prepared(schema)
    assert fixed["properties"]["code"]["pattern"] == anchored
    assert fixed["properties"]["pattern"] == {"type": "string"}  # a property so named
    assert schema["properties"]["code"]["pattern"] == pattern  # the caller's is kept


@pytest.mark.parametrize(("pattern", "sentence"), [
    # a stray ']' or '}' made the converter loop for ever (a request froze the server)
    ("a]", "holds a ']' that closes no '['"), ("}", "holds a '}' that closes no '{'"),
    ("a)", "holds a ')' that closes no '('"), ("(a", "leaves a '[', '(' or '{' open"),
    # characters JSON writes escaped: the grammar wrote them raw, and the answer was not JSON
    (r'a\"b', "needs a character JSON writes escaped"), ('a"b', "needs a character JSON "),
    (r"a\\b", "needs a character JSON writes escaped"), (r"\n", "needs a character JSON "),
    (r"[\D]", "uses \\D, which localpref's grammar cannot write in a class"),
    (r"\bword\b", "uses \\b, which localpref's grammar cannot write"),  # a word's edge
    (r"\x22", "needs a character JSON writes escaped"), (r"\x4", "holds a \\x that two "),
    # the converter writes each repetition out: ten million took a minute and 1.8 GB
    ("^a{1,10001}$", "repeats a part {1,10001} times, more than the 10,000 localpref's "
                     "grammar writes; lower the count."),
    ("b{" + "9" * 5000 + "}", "repeats a part {99999999999999999999...} times, more than "),
    ("^[ab]{10_000_000}$", "repeats a part {10_000_000} times, more than "),  # int() reads it
    # a backslash by its code, and half a surrogate pair: a raw backslash, or bytes that are
    # not UTF-8, in the answer's string (not JSON)
    (r"^\u005C$", "needs a character JSON writes escaped"),
    (r"^[\x5C]$", "needs a character JSON writes escaped"),
    (r"^\ud83d$", "holds \\ud83d, half of a surrogate pair without the other half"),
])
def test_a_pattern_the_grammar_cannot_write_is_one_sentence_naming_where(
        pattern: str, sentence: str) -> None:
    schema = {"type": "object", "properties": {"code": {"type": "string", "pattern": pattern}}}
    with pytest.raises(SettingsError) as refused:
        json_grammar(schema)
    assert str(refused.value).startswith(
        f"The JSON schema's pattern (at properties.code) {sentence}")


def test_patterns_that_match_everything_and_open_items_constrain_nothing() -> None:
    """An empty pattern matches every text (it forced the empty one); items true or {} allow
    every item (the converter failed on both)."""
    for pattern in ("", "^", "$"):
        assert "pattern" not in prepared({"type": "string", "pattern": pattern})
    assert json_grammar({"type": "string", "pattern": ""}) == json_grammar({"type": "string"})
    for items in (True, {}):
        assert json_grammar({"type": "array", "items": items}) == json_grammar(
            {"type": "array"})
    # tuples, draft-07's and 2020-12's, as before
    assert json_grammar({"type": "array", "items": [{"type": "string"}, {"type": "integer"}]})
    assert json_grammar({"type": "array", "prefixItems": [{"type": "string"}], "items": False})


def test_pydantics_unanchored_pattern_gives_answers_that_match_it(model) -> None:
    """``Field(pattern=r"\\d{3}")``: refused before, as the converter wants ^...$."""
    import json
    import re

    schema = {"type": "object", "properties": {"code": {"type": "string", "pattern": r"\d{3}"}},
              "required": ["code"]}
    request = Request.make("Give me a code.", method="base", max_tokens=32).replace(
        grammar=json_grammar(schema))
    result = Generation(model.submit(request)).run()
    assert re.search(r"\d{3}", json.loads(result.text)["code"])
    email = {"type": "string", "pattern": r"^\w{2,6}@\w{2,6}\.com$"}
    request = Request.make("An email?", method="base", max_tokens=40).replace(
        grammar=json_grammar(email))
    result = Generation(model.submit(request)).run()
    assert re.fullmatch(r"\w{2,6}@\w{2,6}\.com", json.loads(result.text)), result.text


@pytest.mark.parametrize(("pattern", "sample"), [
    (r"\d{3}-\d{4}", "555-1234"), (r"^[\w.+-]+@[\w-]+\.[\w.]+$", "ann.lee@mail.co.uk"),
    (r"^\$\d+(\.\d{2})?$", "$12.50"), (r"^[A-Z]{2}\d{6}$", "AB123456"),
    (r"^\(\d{3}\) \d{3}-\d{4}$", "(555) 123-4567"), (r"^https?://[\w./-]+$", "https://a.b/c"),
    (r"\w+\s\w+", "two words"), (r"^[\^\-\]]+$", "^-]"), (r"^[^\s@]+@[^\s@]+$", "a@b"),
])
def test_common_patterns_make_grammars_that_take_what_they_match(model, pattern: str,
                                                               sample: str) -> None:
    """The converter copied ``\\d`` and ``\\.`` into the grammar, which llama.cpp refused
    ("The grammar does not parse"): pydantic's usual patterns could not be followed."""
    import re

    assert re.search(pattern, sample)
    grammar = json_grammar({"type": "string", "pattern": pattern})
    allowed = _allowed_after(model, grammar, '"' + sample)  # every token of it allowed
    [quote] = model.vocabulary.tokenize('"', add_special=False)
    assert allowed[quote]  # and the text may end there
    for raw in ("\n", "\\"):  # and never holds what JSON writes escaped
        assert not allowed[model.vocabulary.tokenize(raw, add_special=False)[0]]


@pytest.mark.parametrize(("schema", "found"), [
    # beside a pattern or a written format the converter reads neither length
    ({"type": "string", "pattern": "^[a-z]+$", "minLength": 20}, [("minLength", "")]),
    ({"type": "object", "properties": {"d": {"type": "string", "format": "date",
                                             "maxLength": 3}}},
     [("maxLength", "properties.d")]),
    # a required name that is not a property was dropped (even with additionalProperties false)
    ({"type": "object", "properties": {"a": {"type": "string"}}, "required": ["b"]},
     [("required", "")]),
    ({"type": "object", "required": ["a"]}, [("required", "")]),  # any object was written
    ({"type": "array", "minItems": 2}, [("minItems", "")]),
    ({"type": "array", "items": {}, "maxItems": 1}, [("maxItems", "")]),
    ({"type": "array", "prefixItems": [{"type": "integer"}], "items": {"type": "string"}},
     [("prefixItems", "")]),
    ({"type": "array", "prefixItems": [{"type": "integer"}], "minItems": 3}, [("minItems", "")]),
    ({"$defs": {"s": {"type": "string"}}, "type": "object",
      "properties": {"x": {"$ref": "#/$defs/s", "maxLength": 2}}},
     [("maxLength", "properties.x")]),
    ({"anyOf": [{"type": "object"}], "properties": {"a": {}}, "required": ["a"]},
     [("properties", ""), ("required", "")]),
    ({"oneOf": [{"type": "string"}], "anyOf": [{"type": "integer"}]}, [("anyOf", "")]),
    ({"type": "object", "properties": {"a": {"type": "integer"}}, "allOf": [{"required": ["a"]}]},
     [("allOf", "")]),
    # allOf is merged as objects: a string's keywords in it were dropped (the answer was {})
    ({"allOf": [{"type": "string"}, {"maxLength": 3}]},
     [("type", "allOf[0]"), ("maxLength", "allOf[1]")]),
    ({"allOf": [{"properties": {"a": {"type": "integer"}}, "required": ["a", "b"]}]},
     [("required", "allOf[0]")]),
    # the merge makes an anyOf choice's properties optional: {} was written
    ({"type": "object", "allOf": [{"anyOf": [
        {"properties": {"x": {"type": "integer"}}, "required": ["x"]},
        {"properties": {"y": {"type": "integer"}}, "required": ["y"]}]}]},
     [("required", "allOf[0].anyOf[0]"), ("required", "allOf[0].anyOf[1]")]),
    # a place the converter reads as a bare list of types, split for it, is named as written
    ({"type": "object", "properties": {"o": {"type": ["string", "null"], "pattern": "^[a-z]+$",
                                             "maxLength": 5}}},
     [("maxLength", "properties.o")]),
    ({"type": ["array", "null"], "items": {"type": "string", "format": "date",
                                           "minLength": 3}},
     [("minLength", "items")]),
    # a schema an allOf merges, named elsewhere too, cannot be split for both
    ({"$defs": {"A": {"type": ["object", "null"], "properties": {"a": {"type": "integer"}}}},
      "type": "object",
      "allOf": [{"$ref": "#/$defs/A"}, {"properties": {"p": {"$ref": "#/$defs/A"}}}]},
     [("properties", "$defs.A")]),
])
def test_a_constraint_the_converters_rule_would_not_read_is_refused_by_name(schema,
                                                                            found) -> None:
    fixed = prepared(schema)
    split = split_type_lists(fixed)
    assert as_written(left_out(fixed), split) == found
    with pytest.raises(SettingsError) as refused:
        json_grammar(schema)
    assert str(refused.value).startswith(f"The JSON schema's '{found[0][0]}'")
    assert "would not be enforced where" in str(refused.value)


@pytest.mark.parametrize("schema", [
    {"type": "array", "prefixItems": [{"type": "integer"}, {"type": "string"}],
     "items": False, "minItems": 2, "maxItems": 2},  # a tuple writes exactly its items
    {"type": "object", "additionalProperties": True, "required": []},
    {"type": "string", "minLength": 0, "format": "email"},  # an unwritten format annotates
    {"anyOf": [{"type": "string", "maxLength": 5}, {"type": "null"}], "default": None},
    {"type": "string", "pattern": "^a+$", "properties": {"a": {}}},  # not a string's keyword
    {"type": "string", "enum": ["x", "y"]},
    {"type": "object", "allOf": [{"properties": {"a": {"type": "integer"}},
                                  "required": ["a"]}], "required": ["a"]},
    {"type": ["object"], "properties": {"a": {"type": "integer"}}, "required": ["a"]},
])
def test_keywords_the_converter_reads_or_that_do_not_apply_are_not_refused(schema) -> None:
    fixed = prepared(schema)
    split_type_lists(fixed)
    assert left_out(fixed) == []
    assert "root ::=" in json_grammar(schema)


def test_a_list_of_types_keeps_each_types_keywords(model) -> None:
    """The converter wrote ``{"type": [...]}`` as the bare types, dropping every keyword
    beside it: OpenAI's strict schemas write a nullable field so."""
    nullable = json_grammar({"type": ["string", "null"], "maxLength": 3})
    assert _takes(model, nullable, '"ab"') and _takes(model, nullable, "null")
    assert not _takes(model, nullable, '"abcd"')
    record = json_grammar({"type": ["object", "null"], "properties": {
        "a": {"type": "integer"}}, "required": ["a"], "additionalProperties": False})
    assert _takes(model, record, '{"a": 1}') and _takes(model, record, "null")
    assert not _takes(model, record, "{}") and not _takes(model, record, '{"b"')
    choice = json_grammar({"type": ["string", "null"], "enum": ["a", "b", None, 3]})
    assert _takes(model, choice, '"a"') and _takes(model, choice, "null")
    assert not _takes(model, choice, '"c"') and not _takes(model, choice, "3")
    assert not _takes(model, json_grammar({"type": "string", "enum": ["x", 1]}), "1")
    schema = {"type": ["integer", "string"], "pattern": "^[0-9]$"}
    fixed = prepared(schema)
    split_type_lists(fixed)
    assert fixed == {"anyOf": [{"type": "integer"}, {"type": "string", "pattern": "^[0-9]$"}]}
    assert schema["type"] == ["integer", "string"]  # the caller's, as it was
    for bad, keyword in (({"type": "string", "enum": [1, None]}, "enum"),
                         ({"type": ["integer", "null"], "const": "x"}, "const")):
        with pytest.raises(SettingsError, match=f"^The JSON schema's '{keyword}' holds no|"
                                                f"^The JSON schema's '{keyword}' is not of"):
            json_grammar(bad)


def test_an_all_of_of_one_schema_is_that_schema(model) -> None:
    """Pydantic 1 wraps a described field's ``$ref`` in an ``allOf`` of one; the converter
    merges an ``allOf`` as objects, so an enum behind it was written as ``{}``."""
    schema = {"$defs": {"Color": {"enum": ["red", "blue"], "type": "string", "title": "Color"}},
              "type": "object", "required": ["color"],
              "properties": {"color": {"allOf": [{"$ref": "#/$defs/Color"}],
                                       "description": "the colour"}}}
    grammar = json_grammar(schema)
    assert _takes(model, grammar, '{"color": "red"}')
    assert not _takes(model, grammar, '{"color": {')
    assert not _takes(model, grammar, '{"color": "x')
    assert "allOf" in schema["properties"]["color"]  # the caller's, as it was


def test_a_list_of_types_in_what_an_all_of_merges_stays_an_object(model) -> None:
    """The converter merges an allOf's items (and what their $ref names) as objects, reading
    their properties: split into an anyOf, a required property could be left out, or the
    properties were lost."""
    inline = json_grammar({"type": "object", "allOf": [
        {"type": ["object", "null"], "properties": {"a": {"type": "integer"}},
         "required": ["a"]}]})
    referred = json_grammar({"type": "object", "allOf": [{"$ref": "#/$defs/A"}], "$defs": {
        "A": {"type": ["object", "null"], "properties": {"a": {"type": "integer"}},
              "required": ["a"]}}})
    for grammar in (inline, referred):
        assert _takes(model, grammar, '{"a": 1}')
        assert not _takes(model, grammar, "{}")
