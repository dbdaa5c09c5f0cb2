"""Which JSON schemas become a grammar: a constraint the converter would drop is refused by
name and place; annotations and unknown formats are not constraints."""

from __future__ import annotations

import pytest

from localpref.errors import SettingsError
from localpref.grammar import (
    UNENFORCED_KEYWORDS,
    grammar_depth,
    json_grammar,
    unenforced_keywords,
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
