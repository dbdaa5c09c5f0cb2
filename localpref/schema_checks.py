"""What a JSON schema must be before llama-cpp-python's converter makes it a grammar.

The converter (``llama_cpp.llama_grammar.json_schema_to_gbnf``, 0.3.36) trusts the schema: a
keyword holding the wrong kind of value or a ``$ref`` to nothing made it raise Python's own
errors ("'list' object has no attribute 'items'"), and it leaves some constraints out of the
grammar. So a schema is checked first, and every problem is one sentence naming the keyword and
where it is (``properties.age``):

- ``shape_problem``: keywords whose value is of the wrong kind, ``$ref`` that is not inside
  the schema, names nothing there or leads back to itself before any value is written
  (``looping_reference``), counts the converter would write out past its limits
  (``repetition_problem``);
- ``unenforced_keywords``: constraints the grammar would not enforce (refused: an answer would
  be free to break them);
- ``unwritable_literals``: texts the converter cannot write into a grammar literal.

``prepared`` gives the schema as the converter can follow it: its patterns as
``schema_patterns`` writes them, ``items`` that allow anything left out.
"""

from __future__ import annotations

import copy
import re
from typing import Any
from urllib.parse import unquote

from localpref.errors import SettingsError
from localpref.schema_patterns import (
    MAX_REPETITIONS,
    MAX_TOTAL_REPETITIONS,
    PatternError,
    repetitions,
    writable,
)

#: Keywords that constrain a value and that llama-cpp-python's converter (0.3.36) leaves out
#: of the grammar: an answer would be free to break them, so a schema using one is refused.
#: (Annotations such as ``title``, ``description`` or ``format`` do not constrain, and an
#: unknown ``format`` is an annotation in JSON Schema 2020-12.)
UNENFORCED_KEYWORDS = frozenset({
    "minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum", "multipleOf",
    "uniqueItems", "contains", "minContains", "maxContains", "not", "if", "then", "else",
    "dependentRequired", "dependentSchemas", "dependencies", "patternProperties",
    "propertyNames", "minProperties", "maxProperties", "unevaluatedProperties",
    "unevaluatedItems",
})
#: Keywords that say what a value is for and constrain nothing: a schema holding these alone
#: takes any value.
ANNOTATIONS = frozenset({"title", "description", "default", "examples", "$comment",
                         "deprecated", "readOnly", "writeOnly"})
#: JSON's kinds of value, as schema types (``number`` takes the integers too).
JSON_TYPES = ("object", "array", "string", "number", "boolean", "null")
#: Keywords whose value is a schema, a list of schemas or a map of names to schemas.
_SUBSCHEMA_KEYWORDS = ("items", "additionalProperties", "prefixItems", "anyOf", "oneOf",
                       "allOf", "properties", "$defs", "definitions")


def subschemas(schema: Any, where: str = "") -> list[tuple[dict[str, Any], str]]:
    """``schema`` and each of its subschemas, with where it is (``properties.age``; "" at the
    top), depth first in the schema's order; then the schemas of the places its ``$ref``
    name outside them (``{"$ref": "#/foo", "foo": {...}}``: ``foo``, where the converter
    goes too), where their names joined by dots say."""
    found = _tree(schema, where)
    seen = {id(subschema) for subschema, _ in found}
    index = 0
    while index < len(found):
        reference = found[index][0].get("$ref")
        index += 1
        target = reference_target(schema, reference) if isinstance(reference, str) else None
        if isinstance(target, dict) and id(target) not in seen:
            more = [(subschema, place) for subschema, place in _tree(
                target, ".".join(_pointer_names(str(reference)))) if id(subschema) not in seen]
            found += more
            seen.update(id(subschema) for subschema, _ in more)
    return found


def _tree(schema: Any, where: str) -> list[tuple[dict[str, Any], str]]:
    """``schema`` and the subschemas its keywords hold, depth first (``subschemas``)."""
    if not isinstance(schema, dict):
        return []
    found = [(schema, where)]
    for keyword in _SUBSCHEMA_KEYWORDS:
        value = schema.get(keyword)
        if isinstance(value, dict) and keyword in ("properties", "$defs", "definitions"):
            children = [(f"{keyword}.{name}", child) for name, child in value.items()]
        elif isinstance(value, list):
            children = [(f"{keyword}[{index}]", child) for index, child in enumerate(value)]
        else:
            children = [(keyword, value)]
        for path, child in children:
            found += _tree(child, f"{where}.{path}" if where else path)
    return found


def unenforced_keywords(schema: Any, where: str = "") -> list[tuple[str, str]]:
    """Every keyword of :data:`UNENFORCED_KEYWORDS` in ``schema`` and its subschemas, each
    with where it is (``properties.age``; "" at the top), in the schema's order."""
    return [(keyword, place) for subschema, place in subschemas(schema, where)
            for keyword in subschema if keyword in UNENFORCED_KEYWORDS]


def _needs_escaping(value: Any) -> bool:
    """Whether JSON writes ``value`` (or a text inside it) with a backslash escape other than
    a non-ASCII ``\\uXXXX``: a quote, a backslash or a control character."""
    if isinstance(value, str):
        return any(char in '"\\' or ord(char) < 0x20 for char in value)
    if isinstance(value, dict):
        return any(_needs_escaping(key) or _needs_escaping(item) for key, item in value.items())
    if isinstance(value, list):
        return any(_needs_escaping(item) for item in value)
    return False


def unwritable_literals(schema: Any) -> list[tuple[str, str]]:
    """The ``enum``, ``const`` and property names of ``schema`` that the converter cannot
    write, each with where it is: it copies their JSON text into a grammar literal without
    doubling its backslashes, so ``"a\\"b"`` ends the literal early and ``"x\\ny"`` becomes
    a raw newline, which JSON forbids inside a string (llama-cpp-python 0.3.36)."""
    found = []
    for subschema, where in subschemas(schema):
        for keyword in ("enum", "const"):
            if keyword not in subschema:
                continue
            value = subschema[keyword]
            values = value if keyword == "enum" and isinstance(value, list) else [value]
            if any(_needs_escaping(item) for item in values):
                found.append((keyword, where))
        names = subschema.get("properties")
        if isinstance(names, dict) and any(_needs_escaping(name) for name in names):
            found.append(("properties", where))
    return found


def listed(found: list[tuple[str, str]]) -> str:
    """``'maximum' and 'minimum' (at properties.age)``: the keywords, grouped by place."""
    places: dict[str, list[str]] = {}
    for keyword, where in found:
        places.setdefault(where, []).append(f"'{keyword}'")
    parts = []
    for where, keywords in places.items():
        named = keywords[0] if len(keywords) == 1 else \
            ", ".join(keywords[:-1]) + f" and {keywords[-1]}"
        parts.append(f"{named} (at {where})" if where else named)
    return "; ".join(parts)


#: Keywords and the kinds of value they hold: a check and the words for it.
_KINDS: dict[str, tuple[Any, str]] = {
    **{keyword: (lambda v: isinstance(v, dict), "an object")
       for keyword in ("properties", "$defs", "definitions")},
    # (JSON Schema's true and false are schemas too; the converter reads them only as
    # additionalProperties)
    **{keyword: (lambda v: isinstance(v, list) and bool(v) and all(
        isinstance(i, dict) for i in v), "a list of schemas (objects), not empty")
       for keyword in ("anyOf", "oneOf", "allOf", "prefixItems")},
    "items": (lambda v: isinstance(v, dict | bool) or (isinstance(v, list) and all(
        isinstance(i, dict) for i in v)), "a schema object, a list of them or true/false"),
    "additionalProperties": (lambda v: isinstance(v, dict | bool),
                             "a schema (an object) or true/false"),
    "required": (lambda v: isinstance(v, list) and all(isinstance(i, str) for i in v),
                 "a list of property names"),
    "enum": (lambda v: isinstance(v, list) and bool(v), "a list of values, not empty"),
    # (a name twice in a list is not JSON Schema, and the converter writes it out twice)
    "type": (lambda v: isinstance(v, str) or (isinstance(v, list) and bool(v) and all(
        isinstance(i, str) for i in v) and len(set(v)) == len(v)),
        "a type name or a list of different ones"),
    **{keyword: (lambda v: isinstance(v, int) and not isinstance(v, bool) and v >= 0,
                 "a whole number, 0 or more")
       for keyword in ("minLength", "maxLength", "minItems", "maxItems")},
    "pattern": (lambda v: isinstance(v, str), "a text (a regular expression)"),
    "$ref": (lambda v: isinstance(v, str), "a text"),
}
#: Keywords whose schemas an answer starts with (no character of its own before them).
_CHOICES = ("anyOf", "oneOf", "allOf")
#: Where a kind's words name a value: ``a list`` for ``[1]``.
_VALUE_KINDS = ((bool, "true/false"), (int, "a number"), (float, "a number"), (str, "a text"),
                (list, "a list"), (dict, "an object"))


def _kind_of(value: Any) -> str:
    return next((name for kind, name in _VALUE_KINDS if isinstance(value, kind)), "null")


def _at(where: str) -> str:
    return f" (at {where})" if where else ""


def shape_problem(schema: dict[str, Any]) -> str | None:
    """The first keyword of ``schema`` or its subschemas holding the wrong kind of value, or
    a ``$ref`` the converter cannot follow, as one sentence; None when there is none."""
    for subschema, where in subschemas(schema):
        for keyword, value in subschema.items():
            check = _KINDS.get(keyword)
            if check is not None and not check[0](value):
                return (f"The JSON schema's '{keyword}'{_at(where)} must be {check[1]} "
                        f"(got {_kind_of(value)}).")
        properties = subschema.get("properties", {})
        for name, value in properties.items():
            if not isinstance(value, dict):
                place = f"{where}.properties" if where else "properties"
                return (f"The JSON schema's property '{name}'{_at(place)} must be a schema "
                        f"object (got {_kind_of(value)}).")
        if subschema.get("items") is False and "prefixItems" not in subschema:
            return (f"The JSON schema's 'items': false{_at(where)} allows no item at all; "
                    "give the items' schema, or prefixItems before it.")
        reference = subschema.get("$ref")
        if reference is not None and not _resolves(schema, reference):
            if reference in ("#", "#/"):
                return (f"The JSON schema's $ref '{reference}'{_at(where)} refers to the whole "
                        "schema, which localpref cannot follow; put that schema in $defs and "
                        "refer to it as '#/$defs/name'.")
            if not reference.startswith("#/"):
                return (f"The JSON schema's $ref '{reference}'{_at(where)} is not inside the "
                        "schema; localpref follows only references such as '#/$defs/name'.")
            return f"The JSON schema's $ref '{reference}'{_at(where)} names nothing in it."
    looping = looping_reference(schema)
    if looping is not None:
        reference, where = looping
        return (f"The JSON schema's $ref '{reference}'{_at(where)} leads back to itself "
                "before any value is written (through $ref, anyOf, oneOf or allOf only), so "
                "no answer could begin; put the reference inside a value, such as an "
                "object's property or an array's items.")
    return repetition_problem(schema)


def _types(subschema: dict[str, Any]) -> set[str]:
    """The type names ``subschema`` gives (none: any type)."""
    kind = subschema.get("type")
    return {kind} if isinstance(kind, str) else set(kind) if isinstance(kind, list) else set()


def written_counts(subschema: dict[str, Any]) -> list[tuple[str, int]]:
    """The counts of ``subschema`` that the converter writes out one repetition at a time,
    with their keywords: a string's ``minLength`` and ``maxLength``, ``minItems`` and
    ``maxItems`` beside an ``items`` schema (where they constrain nothing, none)."""
    types, items = _types(subschema), subschema.get("items")
    keywords = [*(("minLength", "maxLength") if "string" in types else ()),
                *(("minItems", "maxItems") if (not types or "array" in types)
                  and isinstance(items, dict) and items else ())]
    return [(keyword, subschema[keyword]) for keyword in keywords
            if isinstance(subschema.get(keyword), int)]


def repetition_problem(schema: dict[str, Any]) -> str | None:
    """The converter writes each repetition of a count out (a ``maxLength`` of ten million
    held a server's event loop for a minute): one count above :data:`MAX_REPETITIONS`, or
    all of them together (patterns' ``{n,m}`` too) above :data:`MAX_TOTAL_REPETITIONS`, as
    one sentence; None when they are within both. (A pattern's own count over the limit is
    named with the pattern, by ``prepared``.)"""
    total = 0
    for subschema, where in subschemas(schema):
        for keyword, value in written_counts(subschema):
            if value > MAX_REPETITIONS:
                return (f"The JSON schema's '{keyword}'{_at(where)} is {value:,}, more than "
                        f"the {MAX_REPETITIONS:,} localpref's grammar writes; lower it and "
                        "check the length on the answer.")
            total += value
        pattern = subschema.get("pattern")
        types = _types(subschema)
        if isinstance(pattern, str) and (not types or "string" in types):
            try:
                total += repetitions(pattern)
            except PatternError:
                pass  # named where it is by ``prepared``
    if total > MAX_TOTAL_REPETITIONS:
        return (f"The JSON schema's lengths and counts (minLength, maxLength, minItems, "
                f"maxItems, a pattern's {{n,m}}) add up to {total:,} repetitions, more than "
                f"the {MAX_TOTAL_REPETITIONS:,} localpref's grammar writes; lower them and "
                "check the lengths on the answer.")
    return None


def looping_reference(schema: dict[str, Any]) -> tuple[str, str] | None:
    """The first ``$ref`` (and where it is) from which ``$ref``, ``anyOf``, ``oneOf`` and
    ``allOf`` alone lead back to the same schema: a grammar rule that begins with itself,
    which llama.cpp refuses (left recursion); None when there is none. A reference inside a
    property or an item is not one: its value's ``{`` or ``[`` comes first. (A depth-first
    walk with its own stack: a chain of hundreds of references is not Python's recursion.)"""
    walked = subschemas(schema)
    places = {id(subschema): where for subschema, where in walked}
    finished: set[int] = set()
    for start, _ in walked:
        if id(start) in finished:
            continue
        # each entry: a schema on the path, and the schemas it leads to still to walk
        path: list[tuple[dict[str, Any], list[dict[str, Any]]]] = [(start, _leads_to(schema,
                                                                                    start))]
        on_path = {id(start)}
        while path:
            subschema, following = path[-1]
            if not following:
                path.pop()
                on_path.discard(id(subschema))
                finished.add(id(subschema))
                continue
            nxt = following.pop(0)
            if id(nxt) in on_path:  # (only a reference leads back: the rest is a tree)
                return str(subschema.get("$ref")), places.get(id(subschema), "")
            if id(nxt) not in finished:
                path.append((nxt, _leads_to(schema, nxt)))
                on_path.add(id(nxt))
    return None


def _leads_to(schema: dict[str, Any], subschema: dict[str, Any]) -> list[dict[str, Any]]:
    """The schemas an answer to ``subschema`` begins with: its ``$ref``'s target, then the
    items of its ``anyOf``, ``oneOf`` and ``allOf`` (what is not a schema left out)."""
    reference = subschema.get("$ref")
    target = reference_target(schema, reference) if isinstance(reference, str) else None
    choices = [item for keyword in _CHOICES if isinstance(subschema.get(keyword), list)
               for item in subschema[keyword] if isinstance(item, dict)]
    return ([target] if isinstance(target, dict) else []) + choices


def _resolves(schema: dict[str, Any], reference: str) -> bool:
    """Whether a ``#/a/b`` reference names a schema inside ``schema``."""
    return isinstance(reference_target(schema, reference), dict)


def reference_target(schema: dict[str, Any], reference: str) -> Any:
    """What a ``#/a/b`` reference names inside ``schema`` (None for another reference, or
    where a name is missing)."""
    if not reference.startswith("#/"):
        return None
    return _target(schema, _pointer_names(reference))


def _pointer_names(reference: str) -> list[str]:
    """The names a ``#/a/b`` reference walks, as JSON Pointer (RFC 6901) in a URI fragment
    reads them: each percent-decoded, then ``~1`` read as ``/`` and ``~0`` as ``~``."""
    return [unquote(name).replace("~1", "/").replace("~0", "~")
            for name in reference[2:].split("/")]


def _target(schema: dict[str, Any], names: list[str]) -> Any:
    """What ``names`` lead to inside ``schema`` (None where a name is missing)."""
    target: Any = schema
    for name in names:
        if not isinstance(target, dict) or name not in target:
            return None
        target = target[name]
    return target


def _followable_references(schema: dict[str, Any]) -> None:
    """Rewrite ``schema``'s ``$ref`` (in place) so that llama-cpp-python's converter follows
    them: it does not look inside a schema holding a ``$ref`` for the references there: a
    ``$ref`` beside keywords that hold references of their own (pydantic's top level,
    ``{"$defs": {... "$ref" ...}, "$ref": ...}``) becomes the one choice of an ``anyOf``,
    which the converter reads as it reads the ``$ref`` (nothing beside it enforced, as
    before). Not an item of ``allOf`` nor an item of such an item's ``anyOf``: the converter
    merges those itself, reading each one's ``$ref`` or else its own properties. (The names
    the references give their rules: ``name_references``.)"""
    walked = [subschema for subschema, _ in subschemas(schema)]
    merged = set()
    for subschema in walked:
        for item in subschema.get("allOf", []):
            merged.add(id(item))
            merged.update(id(choice) for choice in item.get("anyOf", []))
    for subschema in walked:
        if (isinstance(subschema.get("$ref"), str) and "anyOf" not in subschema
                and "oneOf" not in subschema and id(subschema) not in merged
                and any(_holds_reference(value) for keyword, value in subschema.items()
                        if keyword != "$ref")):
            subschema["anyOf"] = [{"$ref": subschema.pop("$ref")}]


def name_references(schema: dict[str, Any]) -> None:
    """Give the schema each ``$ref`` names a name of its own in ``$defs`` (in place), which
    the converter makes its rule's name. It names a reference's rule by the reference's last
    name as written: ``#/$defs/a~1b`` was looked up as ``a~1b``; two references ending in
    the same name (``#/$defs/q``, ``#/definitions/q``), or one ending in a property's name
    or a rule of its own (``string``), shared one rule, the wrong one for all but the first
    (a grammar that took a text for a number, or refused as left recursive); and a
    recursive one's rule was named with characters a rule name cannot hold (``a_b``), a rule
    that did not exist. The names are ``ref-1``, ``ref-2``..., with more ``r`` before them
    where a property's or a definition's name begins with ``ref`` (a property ``ref``'s
    choices are the converter's rules ``ref-0``, ``ref-1``...)."""
    written = {re.sub(r"[^A-Za-z0-9-]", "-", name) for subschema, _ in subschemas(schema)
               for keyword in ("properties", "$defs", "definitions")
               if isinstance(subschema.get(keyword), dict) for name in subschema[keyword]}
    stem = "ref"  # (the converter names a property's or a choice's rule NAME-..., so no
    while any(name.startswith(stem) for name in written):  # name may begin with the stem)
        stem = "r" + stem
    prefix = stem + "-"
    definitions = schema.get("$defs")
    aliases: dict[int, str] = {}
    for subschema, _ in subschemas(schema):
        reference = subschema.get("$ref")
        target = reference_target(schema, reference) if isinstance(reference, str) else None
        if not isinstance(target, dict) or target is definitions:
            continue  # (``#/$defs`` itself: left as it is, naming it in it would loop)
        if definitions is None:
            definitions = schema["$defs"] = {}
        alias = aliases.get(id(target))
        if alias is None:
            alias = aliases[id(target)] = f"{prefix}{len(aliases) + 1}"
            definitions[alias] = target
        subschema["$ref"] = f"#/$defs/{alias}"


def _holds_reference(value: Any) -> bool:
    """Whether a ``$ref`` is anywhere inside ``value``."""
    if isinstance(value, dict):
        return "$ref" in value or any(_holds_reference(child) for child in value.values())
    if isinstance(value, list):
        return any(_holds_reference(child) for child in value)
    return False


def prepared(schema: dict[str, Any]) -> dict[str, Any]:
    """A copy of ``schema`` as the converter can follow it (``schema`` is left as it is): a
    subschema holding only :data:`ANNOTATIONS` as any value,
    every ``pattern`` as ``schema_patterns.writable`` writes it (none where it matches every
    text), and ``items`` that allow any item (``true``, ``{}``) left out, which the converter
    reads as any item and otherwise fails on, and references rewritten where the converter
    would not follow them (``_followable_references``). A pattern that cannot be written is
    a ``SettingsError`` naming where it is."""
    copied = copy.deepcopy(schema)
    _followable_references(copied)
    for subschema, where in subschemas(copied):
        items = subschema.get("items")
        if isinstance(items, dict) and items.keys() <= ANNOTATIONS:
            items.clear()  # (any item: as ``{}``, beside prefixItems too)
        if where and subschema and subschema.keys() <= ANNOTATIONS:
            # pydantic's ``Any`` (``{"title": ..., "description": ...}``): any value, which
            # the converter refused as an unrecognized schema
            subschema.clear()
            subschema["anyOf"] = [{"type": kind} for kind in JSON_TYPES]
            continue
        if isinstance(subschema.get("pattern"), str):
            try:
                pattern = writable(subschema["pattern"])
            except PatternError as error:
                raise SettingsError(f"The JSON schema's pattern{_at(where)} {error}.") from None
            if pattern is None:
                del subschema["pattern"]
            else:
                subschema["pattern"] = pattern
        if subschema.get("items") in (True, {}) and "prefixItems" not in subschema:
            del subschema["items"]
    return copied
