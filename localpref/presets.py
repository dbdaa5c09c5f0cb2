"""Built-in preferences, and turning what the user typed into the sentence the model reads.

A preference is either a built-in name (``"concise"``) or free text ("explain like I'm new
to this"). Several preferences combine into one instruction: their sentences joined by spaces.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from localpref.errors import SettingsError

#: The library's neutral system prompt; the preference lane appends the preference to it.
DEFAULT_SYSTEM_PROMPT = "You are a helpful assistant."

#: Built-in preferences: name -> the sentence added to the system prompt. The first four are
#: the Amulet paper's; their wording here is ours (the paper's own is used for evaluation).
PRESETS: dict[str, str] = {
    "creative": "Your answer should be as creative and imaginative as possible.",
    "verbose": "Your answer should be as detailed and thorough as possible.",
    "concise": "Your answer should be as short and to the point as possible.",
    "uplifting": "Your answer should be as positive and uplifting as possible.",
    "formal": "Your answer should be written in a formal, professional tone.",
    "pleasant": "Your answer should be warm, friendly and pleasant to read.",
    "humorous": "Your answer should be humorous and witty.",
    "harmless": "Your answer should be harmless, safe and respectful.",
}

#: Each built-in preference's opposite: the sentence the base lane reads under ``opposite``
#: (the steering then contrasts the preference with its opposite rather than with nothing).
#: ``None``: no opposite worth steering away from (being harmful is not a style).
OPPOSITES: dict[str, str | None] = {
    "creative": "Your answer should be as conventional and predictable as possible.",
    "verbose": PRESETS["concise"],
    "concise": PRESETS["verbose"],
    "uplifting": "Your answer should be as bleak and gloomy as possible.",
    "formal": "Your answer should be written in a casual, informal tone.",
    "pleasant": "Your answer should be curt and cold.",
    "humorous": "Your answer should be dry and serious.",
    "harmless": None,
}

#: a text, several texts (joined into one lane), or texts with weights (``localpref.weights``)
PreferenceInput = str | Sequence[str] | Mapping[str, float] | None


def preference_sentences(preference: PreferenceInput, noun: str = "preference") -> list[str]:
    """The sentence of each preference, built-in names expanded; [] for no preference.

    An empty or whitespace-only preference is an error: it would silently mean "none".
    ``noun`` names the input in that error ("preference", or "avoid" for ``avoid_text``).
    """
    if preference is None:
        return []
    if not isinstance(preference, str | Sequence | Mapping) or isinstance(preference, bytes):
        raise SettingsError(f"The {noun} must be a text, a list of texts or texts with "
                            f"weights (got {type(preference).__name__}).", param=noun)
    items = [preference] if isinstance(preference, str) else list(preference)
    if not items:
        raise SettingsError(f"The {noun} list is empty; give at least one {noun}.", param=noun)
    sentences: list[str] = []
    given: dict[str, str] = {}  # each sentence (casefolded) -> the text that gave it
    for item in items:
        if not isinstance(item, str) or not item.strip():
            article = "An" if noun[0] in "aeiou" else "A"
            raise SettingsError(f"{article} {noun} must be a non-empty text, e.g. 'concise'.",
                                param=noun)
        text = item.strip()
        _refuse_a_written_weight(text, noun)
        sentence = PRESETS.get(text.lower(), text)
        earlier = given.get(sentence.casefold())
        if earlier is not None:  # the lane's system text would say it twice
            if earlier.casefold() == text.casefold():
                role = "as a preference" if noun == "preference" else "to avoid"
                message = f"{text!r} is given twice {role}; give each once."
            else:  # a built-in name and its own sentence
                role = "preferences" if noun == "preference" else "to avoid"
                message = f"{text!r} says what {earlier!r} says, both {role}; give one of them."
            raise SettingsError(message, param=noun)
        given[sentence.casefold()] = text
        sentences.append(sentence)
    return sentences


def _refuse_a_written_weight(text: str, noun: str) -> None:
    """A built-in preference's name, ``=`` and more (``concise=0.5``) is the command line's
    weight, which a text does not carry: the lane would read "concise=0.5" literally. As a
    preference it is one sentence (on the command line too); to avoid, only with a number
    after it (``verbose=high`` may be what a user wants avoided)."""
    name, equals, rest = text.partition("=")
    name = name.strip()
    if not equals or name.lower() not in PRESETS:
        return
    if noun == "preference":
        raise SettingsError(f"The preference {text!r} reads as a weight; give weights as a "
                            f"mapping (to the server, an object), e.g. {{{name!r}: 0.5}} (on "
                            f"the command line -p {name}=0.5), or the name alone.", param=noun)
    try:
        float(rest)
    except ValueError:
        return
    raise SettingsError(f"{noun.capitalize()} takes no weights ({text!r}); give the text "
                        f"alone, e.g. {name!r}.", param=noun)


def preference_text(preference: PreferenceInput, joiner: str = " ") -> str | None:
    """All preferences as one instruction (sentences joined by ``joiner``), or None."""
    sentences = preference_sentences(preference)
    return joiner.join(sentences) if sentences else None


def avoid_text(avoid: PreferenceInput) -> str | None:
    """What to steer away from, as one sentence (presets or free text, like a preference).

    It goes into the base lane's system prompt as a preference goes into the preference
    lane's (the negative prompt of classifier-free guidance); None for nothing to avoid.
    """
    sentences = preference_sentences(avoid, noun="avoid")
    return " ".join(sentences) if sentences else None


def preference_label(preference: PreferenceInput) -> str | None:
    """A short label for results: the names or texts the user gave, joined by ' + '."""
    if preference is None:
        return None
    if isinstance(preference, Mapping):  # weights: concise=1 + uplifting=0.4
        return " + ".join(f"{text.strip()}={weight:g}" for text, weight in preference.items())
    items = [preference] if isinstance(preference, str) else list(preference)
    return " + ".join(item.strip() for item in items)


def single_preset(preference: object) -> str | None:
    """The built-in preference's name when ``preference`` is exactly one (a name, a list of
    one name, or one name weighed above 0: ``{"concise": 1}`` is steered as ``"concise"``),
    else None (free text, several or none)."""
    if isinstance(preference, Mapping) and len(preference) == 1:
        ((preference, weight),) = preference.items()
        if not isinstance(weight, (int, float)) or weight <= 0:
            return None
    if isinstance(preference, (list, tuple)) and len(preference) == 1:
        preference = preference[0]
    if not isinstance(preference, str):
        return None
    name = preference.strip().lower()
    return name if name in PRESETS else None


def opposite_text(preference: object) -> str | None:
    """The opposites of the built-in preferences in ``preference``, joined like avoid.

    Free text (and a built-in preference without an opposite, harmless) adds nothing; None when
    nothing is left. A mapping of preferences to weights counts the names with weight > 0.
    """
    if preference is None:
        return None
    if isinstance(preference, str):
        names = [preference]
    elif isinstance(preference, Mapping):
        names = [name for name, weight in preference.items()
                 if isinstance(weight, (int, float)) and weight > 0]
    else:
        names = list(preference)  # type: ignore[call-overload]
    sentences = []
    for name in names:
        sentence = OPPOSITES.get(name.strip().lower()) if isinstance(name, str) else None
        if sentence is not None and sentence not in sentences:
            sentences.append(sentence)
    return " ".join(sentences) if sentences else None


def base_lane_text(preference: object, avoid: PreferenceInput, opposite: bool) -> str | None:
    """What a two-lane method's base lane adds to its system prompt: the avoid sentence when
    one is given (it always wins), else the preference's opposite under ``opposite``, else
    nothing (the neutral prompt)."""
    avoided = avoid_text(avoid)
    if avoided is not None:
        return avoided
    return opposite_text(preference) if opposite else None
