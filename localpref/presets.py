"""Built-in preferences, and turning what the user typed into the sentence the model reads.

A preference is either a built-in name (``"concise"``) or free text ("explain like I'm new
to this"). Several preferences combine into one instruction: their sentences joined by spaces.
"""

from __future__ import annotations

from collections.abc import Sequence

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

PreferenceInput = str | Sequence[str] | None


def preference_sentences(preference: PreferenceInput, noun: str = "preference") -> list[str]:
    """The sentence of each preference, built-in names expanded; [] for no preference.

    An empty or whitespace-only preference is an error: it would silently mean "none".
    ``noun`` names the input in that error ("preference", or "avoid" for ``avoid_text``).
    """
    if preference is None:
        return []
    items = [preference] if isinstance(preference, str) else list(preference)
    if not items:
        raise SettingsError(f"The {noun} list is empty; give at least one {noun}.")
    sentences = []
    for item in items:
        if not isinstance(item, str) or not item.strip():
            article = "An" if noun[0] in "aeiou" else "A"
            raise SettingsError(f"{article} {noun} must be a non-empty text, e.g. 'concise'.")
        text = item.strip()
        sentences.append(PRESETS.get(text.lower(), text))
    return sentences


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
    items = [preference] if isinstance(preference, str) else list(preference)
    return " + ".join(item.strip() for item in items)
