"""The papers' settings for every method (``--paper``) and the recommended steering."""

from __future__ import annotations

import pytest

import localpref
from localpref import PAD, Amulet, Base, Contrastive, Pref
from localpref.errors import SettingsError
from localpref.methods import paper_method, recommended_method, resolve_method


@pytest.mark.parametrize(("name", "expected"), [
    ("base", Base()), ("pref", Pref()), ("contrastive", Contrastive(ratio=2.0)),
    ("la", Contrastive()),
    ("amulet", Amulet(alpha=2.0, lam=2.0, eta=10.0, iterations=60)),
    ("pad", PAD(weight=1.0, candidates=10)), ("recommended", Amulet()), (None, Amulet()),
])
def test_paper_method_gives_the_papers_settings(name, expected) -> None:  # noqa: ANN001
    method = paper_method(name)
    assert method == expected
    if hasattr(method, "tau"):
        assert method.tau == 0.0 and method.kl_budget is None
        assert method.end_tokens == "contrast"


def test_paper_method_refuses_what_is_not_a_name_in_one_sentence() -> None:
    """``paper_method(5)`` raised AttributeError ('int' object has no attribute 'strip')."""
    for value in (5, Amulet(), ["amulet"]):
        with pytest.raises(SettingsError) as refused:
            paper_method(value)  # type: ignore[arg-type]
        assert str(refused.value) == f"A method for paper_method must be a name, not {value!r}."


def test_paper_method_refuses_an_unknown_name() -> None:
    with pytest.raises(SettingsError, match="Unknown method"):
        paper_method("beam")


def test_a_method_named_without_settings_is_the_papers() -> None:
    for name in ("contrastive", "amulet", "pad"):
        assert resolve_method(name) == paper_method(name)


@pytest.mark.parametrize("wrong", ["concise", 3, Amulet()])
def test_recommended_method_given_no_model_is_one_sentence(wrong) -> None:
    with pytest.raises(SettingsError) as caught:
        recommended_method(wrong)
    assert str(caught.value) == ("recommended_method takes a loaded model (localpref.load) or "
                                 f"None, not {type(wrong).__name__}.")


def test_no_method_named_is_the_recommended_steering() -> None:
    assert resolve_method(None) == recommended_method() == resolve_method("recommended")
    assert localpref.recommended_method() == recommended_method()
