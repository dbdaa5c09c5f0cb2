"""Which keywords llama-cpp-python's JSON-schema converter (0.3.36) reads in each place of a
schema, and the constraints it would leave out there.

The converter (``SchemaConverter.visit``) writes each schema by the first rule of these that
applies: ``$ref``; ``oneOf`` or ``anyOf``; a list of types; ``const``; ``enum``; an object's
``properties`` (or ``additionalProperties`` other than true); ``allOf``, merged as objects; an
array's ``items`` or ``prefixItems``; a string's ``pattern``; its ``format`` (``uuid``,
``date``, ``time``, ``date-time``); its ``minLength`` / ``maxLength``; then the type alone.
What the chosen rule does not read is not in the grammar, and nothing said so: beside a
``pattern`` a ``maxLength`` bound nothing, ``required`` naming no property was dropped, and a
list of types dropped every other keyword (``{"type": ["object", "null"], "properties": ...}``
allowed any object, ``{"type": ["string", "null"], "enum": [...]}`` any string). So:

- ``split_type_lists`` rewrites a list of types as an ``anyOf`` of one schema per type, each
  with the keywords that apply to that type (an ``enum`` or ``const`` beside the list keeps its
  values of those types instead), and ``unwrap_single_all_of`` an ``allOf`` of one schema as
  that schema;
- ``left_out`` lists the constraints the converter would still leave out, each with where it
  is, so that the schema is refused by name (``localpref.grammar.json_grammar``).

A keyword that applies only to other types than a rule writes (``properties`` beside a
``pattern``) constrains nothing there, as in JSON Schema, and is not listed; nor is ``type``
beside a rule that writes values of their own (``enum``, ``const``, ``$ref``, ``anyOf``).
"""

from __future__ import annotations

from typing import Any

from localpref.errors import SettingsError
from localpref.schema_checks import reference_target, subschemas

#: The keywords that constrain a value of one type only, by type.
STRING_KEYWORDS = frozenset({"minLength", "maxLength", "pattern", "format"})
ARRAY_KEYWORDS = frozenset({"items", "prefixItems", "minItems", "maxItems"})
OBJECT_KEYWORDS = frozenset({"properties", "required", "additionalProperties"})
#: The keywords that constrain a value of any type.
ANY_TYPE_KEYWORDS = frozenset({"enum", "const", "anyOf", "oneOf", "allOf", "$ref"})
_BY_TYPE = {"string": STRING_KEYWORDS, "array": ARRAY_KEYWORDS, "object": OBJECT_KEYWORDS}
#: Every keyword above, and ``type``: what is not one of these annotates (title, description).
CONSTRAINING_KEYWORDS = (STRING_KEYWORDS | ARRAY_KEYWORDS | OBJECT_KEYWORDS | ANY_TYPE_KEYWORDS
                         | {"type"})
#: The formats the converter writes a rule for (any other is an annotation).
WRITTEN_FORMATS = frozenset({"uuid", "uuid1", "uuid2", "uuid3", "uuid4", "uuid5", "date",
                             "time", "date-time"})


def _is_of_type(value: Any, type_name: str) -> bool:
    """Whether a JSON value is of a JSON Schema type (1.0 is an integer, true is not)."""
    if type_name == "integer":
        return (isinstance(value, int) and not isinstance(value, bool)) or (
            isinstance(value, float) and value.is_integer())
    kinds: dict[str, Any] = {"null": type(None), "boolean": bool, "string": str, "array": list,
                             "object": dict, "number": (int, float)}
    kind = kinds.get(type_name)
    if kind is None:
        return True  # an unknown type name: the converter refuses it itself
    return isinstance(value, kind) and (type_name == "boolean" or not isinstance(value, bool))


def split_type_lists(schema: dict[str, Any]) -> list[str]:
    """Rewrite, in place, every place whose ``type`` is a list (or an ``enum``/``const``
    beside a type) so that the converter reads all of it (see the module's docstring); the
    places split into an ``anyOf``, for ``as_written``. A ``SettingsError`` names an ``enum``
    or ``const`` that holds no value of its type.

    Not the items of an ``allOf`` nor the schemas they refer to: the converter merges those
    as objects, reading only their properties, which a split would hide in an ``anyOf``."""
    merged = _merged(schema)
    split = []
    for subschema, where in subschemas(schema):
        types = subschema.get("type")
        if isinstance(types, list) and len(types) == 1:
            subschema["type"] = types = types[0]
        if isinstance(types, str):
            types = [types]
        if not isinstance(types, list):
            continue
        at = f" (at {where})" if where else ""
        if "enum" in subschema and isinstance(subschema["enum"], list):
            kept = [value for value in subschema["enum"]
                    if any(_is_of_type(value, name) for name in types)]
            if not kept:
                raise SettingsError(f"The JSON schema's 'enum'{at} holds no value of its "
                                    "'type', so no answer could match it.")
            subschema["enum"] = kept
            del subschema["type"]
        elif "const" in subschema:
            if not any(_is_of_type(subschema["const"], name) for name in types):
                raise SettingsError(f"The JSON schema's 'const'{at} is not of its 'type', so "
                                    "no answer could match it.")
            del subschema["type"]
        elif (len(types) > 1 and not {"$ref", "anyOf", "oneOf"} & subschema.keys()
              and id(subschema) not in merged):
            choices = [{"type": name, **{keyword: value for keyword, value in subschema.items()
                                         if keyword in _BY_TYPE.get(name, ())}}
                       for name in types]
            for keyword in [*STRING_KEYWORDS, *ARRAY_KEYWORDS, *OBJECT_KEYWORDS, "type"]:
                subschema.pop(keyword, None)
            subschema["anyOf"] = choices
            split.append(where)
    return split


def as_written(found: list[tuple[str, str]], split: list[str]) -> list[tuple[str, str]]:
    """``left_out``'s places as the caller's schema has them: a choice that
    ``split_type_lists`` made (``properties.o.anyOf[0]``) is the place it was split from."""
    written = []
    for keyword, where in found:
        for place in split:
            prefix = f"{place}.anyOf[" if place else "anyOf["
            if where.startswith(prefix):
                rest = where[where.index("]", len(prefix)) + 1:].lstrip(".")
                where = f"{place}.{rest}" if place and rest else place or rest
                break
        written.append((keyword, where))
    return list(dict.fromkeys(written))


def _merge_items(schema: dict[str, Any]) -> list[dict[str, Any]]:
    """What the converter merges as objects, as written: every ``allOf`` item and its
    ``anyOf`` choices."""
    return [choice for subschema, _ in subschemas(schema) for item in subschema.get("allOf", [])
            for choice in [item, *item.get("anyOf", [])]]


def _merged(schema: dict[str, Any]) -> set[int]:
    """The ids of the schemas the converter merges as objects: ``_merge_items`` and the
    schemas their ``$ref`` names."""
    return {id(merged) for item in _merge_items(schema)
            for merged in (item, _resolved(schema, item))}


def unwrap_single_all_of(schema: dict[str, Any]) -> None:
    """Rewrite, in place, an ``allOf`` of one schema with nothing but annotations beside it
    as that schema. Pydantic 1 wraps a field's ``$ref`` so to give it a description
    (``{"allOf": [{"$ref": "#/$defs/Color"}], "description": ...}``), and the converter merges
    an ``allOf`` as objects: an enum behind it was written as ``{}``."""
    for subschema, _ in subschemas(schema):
        items = subschema.get("allOf")
        if (isinstance(items, list) and len(items) == 1 and isinstance(items[0], dict)
                and not (subschema.keys() - {"allOf"}) & CONSTRAINING_KEYWORDS):
            del subschema["allOf"]
            subschema.update(items[0])


def left_out(schema: dict[str, Any]) -> list[tuple[str, str]]:
    """The constraints the converter would leave out of ``schema``'s grammar (after
    ``split_type_lists``), each with where it is, in the schema's order."""
    found: list[tuple[str, str]] = []
    items = {id(item) for item in _merge_items(schema)}
    merged_only = _merged(schema) - _referenced_outside(schema, items)
    for subschema, where in subschemas(schema):
        rule = found_rule(subschema)
        if id(subschema) not in items | merged_only:  # (read by the merge, weighed below)
            found += [(keyword, where) for keyword in _left_out_here(subschema, rule)]
        if rule == frozenset({"allOf"}):
            found += _left_out_of_merge(schema, subschema, where)
        elif rule == OBJECT_KEYWORDS:
            properties = subschema.get("properties") or {}
            if any(name not in properties for name in subschema.get("required", [])):
                found.append(("required", where))
    return list(dict.fromkeys(found))


def found_rule(subschema: dict[str, Any]) -> frozenset[str]:
    """The keywords the converter's rule for ``subschema`` reads (empty: the type alone)."""
    kind = subschema.get("type")
    if "$ref" in subschema:
        return frozenset({"$ref"})
    if isinstance(kind, list) and not {"oneOf", "anyOf"} & subschema.keys():
        return frozenset()  # the converter writes the bare types, reading nothing beside
    if "oneOf" in subschema:
        return frozenset({"oneOf"})
    if "anyOf" in subschema:
        return frozenset({"anyOf"})
    for keyword in ("const", "enum"):
        if keyword in subschema:
            return frozenset({keyword})
    if kind in (None, "object") and ("properties" in subschema or (
            "additionalProperties" in subschema
            and subschema["additionalProperties"] is not True)):
        return OBJECT_KEYWORDS
    if kind in (None, "object") and "allOf" in subschema:
        return frozenset({"allOf"})
    if kind in (None, "array") and ("items" in subschema or "prefixItems" in subschema):
        if isinstance(subschema.get("items"), dict) and subschema["items"]:
            return frozenset({"items", "minItems", "maxItems"})
        return frozenset({"items", "prefixItems"})  # a tuple: exactly its items
    if kind in (None, "string") and "pattern" in subschema:
        return frozenset({"pattern", "format"})
    if kind in (None, "string") and subschema.get("format") in WRITTEN_FORMATS:
        return frozenset({"format"})
    if kind == "string":
        return STRING_KEYWORDS - {"pattern"}
    return frozenset({"format"})  # (an annotation wherever no rule writes it)


def _writes_types(subschema: dict[str, Any], rule: frozenset[str]) -> frozenset[str] | None:
    """The types the rule writes values of, None for any type."""
    if rule & {"$ref", "oneOf", "anyOf", "const", "enum"}:
        return None
    if rule == OBJECT_KEYWORDS or rule == frozenset({"allOf"}):
        return frozenset({"object"})
    if rule & ARRAY_KEYWORDS:
        return frozenset({"array"})
    if rule & {"pattern", "minLength"} or subschema.get("format") in WRITTEN_FORMATS:
        return frozenset({"string"})
    kind = subschema.get("type")
    return frozenset({kind}) if isinstance(kind, str) else None


def _left_out_here(subschema: dict[str, Any], rule: frozenset[str]) -> list[str]:
    """The constraints of ``subschema`` itself that its rule (``found_rule``) does not read,
    among those that apply to the types it writes."""
    types = _writes_types(subschema, rule)
    applying = set(ANY_TYPE_KEYWORDS)
    for name, keywords in _BY_TYPE.items():
        if types is None or name in types:
            applying |= keywords
    applying -= {"format"}  # an annotation where it is not written
    if rule == frozenset({"allOf"}):
        applying -= OBJECT_KEYWORDS  # (``required`` is weighed with the merge)
    if rule == frozenset({"items", "prefixItems"}):  # a tuple writes exactly its items
        count = len(subschema.get("prefixItems") or subschema.get("items") or [])
        if subschema.get("minItems", 0) <= count:
            applying.discard("minItems")
        if subschema.get("maxItems", count) >= count:
            applying.discard("maxItems")
    return [keyword for keyword, value in subschema.items()
            if keyword in applying and keyword not in rule and not _no_constraint(keyword, value)]


def _no_constraint(keyword: str, value: Any) -> bool:
    """Whether a keyword's value allows everything (``required: []``, ``minLength: 0``)."""
    return (value in (True, {}) if keyword in ("additionalProperties", "items")
            else value == [] if keyword == "required"
            else value == 0 if keyword in ("minLength", "minItems") else False)


def _left_out_of_merge(schema: dict[str, Any], subschema: dict[str, Any],
                       where: str) -> list[tuple[str, str]]:
    """What the converter leaves out of an ``allOf`` it merges: it writes an object with
    every property of every item (each item's ``$ref`` followed, an item's ``anyOf`` choices
    optional), so an item's other constraints, and a name ``required`` that no item defines,
    are not written."""
    found: list[tuple[str, str]] = []
    items = [(item, f"{where}.allOf[{index}]" if where else f"allOf[{index}]")
             for index, item in enumerate(subschema.get("allOf", []))]
    defined: set[str] = set()
    for item, _ in items:
        for choice in [item, *item.get("anyOf", [])]:
            defined |= set(_resolved(schema, choice).get("properties", {}))
    if any(name not in defined for name in subschema.get("required", [])):
        found.append(("required", where))
    for item, place in items:
        resolved = _resolved(schema, item)
        kind = resolved.get("type")
        if not (kind in (None, "object") or (isinstance(kind, list) and "object" in kind)):
            found.append(("type", place))
        found += [(keyword, place) for keyword in resolved
                  if keyword in STRING_KEYWORDS | ARRAY_KEYWORDS | {"enum", "const", "oneOf",
                                                                     "allOf"}]
        if any(name not in defined for name in resolved.get("required", [])):
            found.append(("required", place))
        for number, choice in enumerate(item.get("anyOf", [])):  # (merged as optional)
            if _resolved(schema, choice).get("required"):
                found.append(("required", f"{place}.anyOf[{number}]"))
    return found


def _referenced_outside(schema: dict[str, Any], items: set[int]) -> set[int]:
    """The ids of the schemas a ``$ref`` names from outside the ``allOf`` items ``items``."""
    return {id(_resolved(schema, subschema)) for subschema, _ in subschemas(schema)
            if "$ref" in subschema and id(subschema) not in items}


def _resolved(schema: dict[str, Any], item: dict[str, Any]) -> dict[str, Any]:
    """An ``allOf`` item as the converter merges it: the schema its ``$ref`` names, if any."""
    reference = item.get("$ref")
    target = reference_target(schema, reference) if isinstance(reference, str) else None
    return target if isinstance(target, dict) else item
