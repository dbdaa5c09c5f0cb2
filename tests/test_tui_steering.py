"""The app's plain parts, without a screen or a model: settings form, streaming batches, keys."""

from __future__ import annotations

import dataclasses
import re
import shutil
import threading
import types
from dataclasses import dataclass, field
from pathlib import Path
from typing import ClassVar

import pytest
from method_helpers import Gentle, WiderContrastive

from localpref import PAD, Amulet, Contrastive, Sampling
from localpref.cli import build_parser
from localpref.commands.options import method_flags, method_from_args, strength_help
from localpref.evaluation.pareto import Point
from localpref.evaluation.specs import method_specs, sweepable_method_names
from localpref.evaluation.sweep import expand, parse_sweep
from localpref.methods import METHODS, Base
from tui import streaming
from tui.app import startup_steering, title_from
from tui.keys import APP_ACTIONS, COMPARE_ACTIONS, INPUT_ACTIONS
from tui.steering import (
    APP_METHOD_SETTINGS,
    LABEL_CHARACTERS,
    STRENGTH_FIELDS,
    Steering,
    method_fields,
    method_title,
    sampling_fields,
    steering_from_form,
    strength_field,
)
from tui.streaming import EngineUsers, pump


def test_every_setting_label_leaves_a_space_before_its_field():
    """"reward model GGUF" filled the label column and ran into its field's placeholder."""
    css = (Path(__file__).resolve().parent.parent / "tui" / "app.tcss").read_text()
    width = int(re.search(r"\.setting-label \{\s*width: (\d+);", css).group(1))
    specs = [spec for name in METHODS for spec in method_fields(name)] + sampling_fields()
    assert all(len(spec.label) < width for spec in specs if spec.kind is not bool), [
        spec.label for spec in specs if len(spec.label) >= width]


def test_method_fields_follow_the_dataclass_fields():
    for name, cls in METHODS.items():
        names = {spec.name for spec in method_fields(name)}
        assert names == {f.name for f in dataclasses.fields(cls) if f.init}
    amulet = {spec.name: spec for spec in method_fields("amulet")}
    assert amulet["eta"].kind is float and amulet["eta"].default == 10.0
    assert amulet["iterations"].kind is int and amulet["exact"].kind is bool
    assert amulet["lam"].label == "lambda"
    pad = {spec.name: spec for spec in method_fields("pad")}
    assert pad["reward_model"].optional and pad["reward_model"].kind is str
    sampling = [spec.name for spec in sampling_fields()]
    assert sampling[:-2] == [f.name for f in dataclasses.fields(Sampling)]
    assert sampling[-2:] == ["seed", "max_tokens"]


def test_a_field_added_to_a_method_appears_in_the_form(monkeypatch):
    @dataclass(frozen=True)
    class Softer(Base):
        strength: float = 1.5
        budget: float | None = field(default=None, metadata={"help": "nats per token"})

    monkeypatch.setitem(METHODS, "softer", Softer)
    specs = {spec.name: spec for spec in method_fields("softer")}
    assert specs["strength"].kind is float and specs["strength"].default == 1.5
    assert specs["budget"].optional and specs["budget"].help == "nats per token"
    steering, errors = steering_from_form([], "", "softer", {"strength": "2", "budget": ""}, {})
    assert errors == {} and steering is not None
    assert steering.method_object() == Softer(strength=2.0, budget=None)



def test_a_field_added_to_a_two_lane_method_reaches_the_flags_the_form_and_the_sweep(
    monkeypatch,
):
    monkeypatch.setitem(METHODS, "contrastive", WiderContrastive)
    # the command line: --spread, by the one rule, with the field's help
    parser = build_parser()
    args = parser.parse_args(["generate", "hi", "--method", "contrastive", "--spread", "0.25",
                              "--tau", "0.1"])
    assert method_from_args(args) == WiderContrastive(spread=0.25, tau=0.1)
    flags = {flag.flag: flag for flag in method_flags()}
    assert flags["--spread"].help == "Contrastive: how wide it reaches (default 1.0)"
    assert flags["--spread"].kind is float and flags["--spread"].field == "spread"
    # the app's form
    specs = {spec.name: spec for spec in method_fields("contrastive")}
    assert specs["spread"].kind is float and specs["spread"].default == 1.0
    assert specs["spread"].help == "how wide it reaches (default 1.0)"
    steering, errors = steering_from_form(["concise"], "", "contrastive", {"spread": "0.5"}, {})
    assert errors == {} and steering is not None
    assert steering.method_object() == WiderContrastive(spread=0.5)
    # the sweep: the setting reaches every swept method and tells its rows apart
    swept = expand(method_specs(["contrastive"], spread=0.5), [parse_sweep("strength=1,3")])
    assert [s.decoder for s in swept] == [WiderContrastive(ratio=1.0, spread=0.5),
                                          WiderContrastive(ratio=3.0, spread=0.5)]
    assert [s.key_settings() for s in swept] == [{"spread": 0.5}, {"spread": 0.5}]


def test_a_new_method_class_reaches_the_flags_the_form_and_the_sweep(monkeypatch):
    monkeypatch.setitem(METHODS, "gentle", Gentle)
    # the command line: its own flags (a bool as --name / --no-name), the shared controls,
    # --strength; a field marked {"flag": False} stays off it
    parser = build_parser()
    args = parser.parse_args(["generate", "hi", "--method", "gentle", "--push", "2", "--quiet",
                              "--tau", "0.1", "--end-tokens", "pref"])
    assert method_from_args(args) == Gentle(push=2.0, quiet=True, tau=0.1, end_tokens="pref")
    args = parser.parse_args(["generate", "hi", "--method", "gentle", "--no-quiet",
                              "--strength", "4"])
    assert method_from_args(args) == Gentle(push=4.0, quiet=False)
    flags = {flag.flag: flag for flag in method_flags()}
    assert "--internal" not in flags and flags["--quiet"].kind is bool
    assert flags["--tau"].help.startswith("Contrastive, Amulet, PAD, Gentle: drop tokens")
    assert "Gentle's push" in strength_help()
    with pytest.raises(SystemExit):
        parser.parse_args(["generate", "hi", "--internal", "4"])
    # the app's form: every field, the title, the strength knob
    assert [spec.name for spec in method_fields("gentle")] == [
        "push", "quiet", "internal", "tau", "kl_budget", "end_tokens"]
    assert method_title("gentle") == "Gentle" and strength_field("gentle") == "push"
    assert WiderContrastive.title == "Contrastive"  # the same method, one field more

    @dataclass(frozen=True)
    class Louder(Contrastive):
        name: ClassVar[str] = "louder"

    assert Louder.title == "louder"  # named anew: not titled "Contrastive"
    steering, errors = steering_from_form(["concise"], "", "gentle",
                                          {"push": "3", "quiet": True, "tau": "0.2"}, {})
    assert errors == {} and steering is not None
    assert steering.method_object() == Gentle(push=3.0, quiet=True, tau=0.2)
    assert steering.method_label == "gentle p=3 tau=0.2"  # its strength by its symbol
    # the sweep: listed among the sweepable methods, swept through its strength, and named by
    # its symbol in the sweep's tables
    assert sweepable_method_names() == ["contrastive", "amulet", "pad", "gentle"]
    swept = expand(method_specs(["base", "gentle"]), [parse_sweep("strength=0.5,3")])
    assert [(s.name, s.strength) for s in swept] == [
        ("base", None), ("gentle", 0.5), ("gentle", 3.0)]
    assert swept[1].decoder == Gentle(push=0.5)
    assert Point("gentle", "gentle", "strength", 0.5, 0.0, 0.0, 0.0).setting == "p=0.5"


def test_form_values_are_checked_by_the_library_with_its_sentences():
    steering, errors = steering_from_form(
        ["concise"], "", "amulet", {"eta": "0", "iterations": "2.5", "alpha": "x"},
        {"temperature": "-1", "top_p": "0.9", "max_tokens": "0"})
    assert steering is None
    assert errors["eta"] == "Eta must be greater than 0 (got 0.0)."
    assert errors["temperature"] == "Temperature must be 0 or more (got -1.0)."
    assert "whole number" in errors["iterations"] and "number" in errors["alpha"]
    assert "Max tokens" in errors["max_tokens"]
    assert "top_p" not in errors
    # past what the kernels take (a C integer): refused here, where an answer crashed the app
    steering, errors = steering_from_form(
        ["concise"], "", "amulet", {"iterations": "1e20"}, {"repeat_last_n": "1e20"})
    assert steering is None
    assert errors["iterations"].startswith("Iterations must be a whole number from 1 to 100000")
    assert errors["repeat_last_n"].startswith("Repeat_last_n must be from 1 to 1048576")


def test_a_reward_model_that_is_not_there_is_refused_by_the_form(bundled_path, tmp_path,
                                                                    monkeypatch):
    """A missing file was applied, then refused every message until the field was cleared;
    so were a file that is no GGUF model and an ollama name ollama does not have (app
    review). A Hub name is taken as the library takes it (downloaded when first used)."""
    missing = tmp_path / "rm.gguf"
    steering, errors = steering_from_form(["concise"], "", "pad",
                                          {"reward_model": str(missing)}, {})
    assert steering is None and errors == {"reward_model": (
        f"There is no reward model '{missing}': give a GGUF file's path, ollama:NAME, "
        "lmstudio:PATTERN or a Hugging Face repo (ORG/NAME:PATTERN), or leave it empty for "
        "the prompt-contrast reward.")}
    text = tmp_path / "text.gguf"
    text.write_text("hello")
    cut = tmp_path / "cut.gguf"
    cut.write_bytes(bundled_path.read_bytes()[:100_000])
    monkeypatch.setenv("OLLAMA_MODELS", str(tmp_path / "no-ollama"))
    folder = tmp_path / "folder"
    folder.mkdir()
    for name, unusable in (
            (folder, f"{folder} is a directory, not a GGUF file."),
            ("/dev/null", "/dev/null is not a regular file (a pipe, socket or device), so not "
                          "a GGUF file."),
            (text, f"{text} is not a GGUF file (bad magic)."),  # (was applied, then every
            (cut, f"{cut} is truncated: it ends inside the GGUF header."),  # message refused)
            ("ollama:some-model", "No ollama model some-model:latest in "
                                  f"{tmp_path / 'no-ollama'}; that folder does not exist.")):
        _, errors = steering_from_form(["concise"], "", "pad", {"reward_model": str(name)}, {})
        assert errors == {"reward_model": f"PAD cannot use this reward model: {unusable}"}
    first = tmp_path / "split-00001-of-00002.gguf"  # read again once its files change
    shutil.copyfile(bundled_path, first)
    _, errors = steering_from_form(["concise"], "", "pad", {"reward_model": str(first)}, {})
    assert errors["reward_model"].endswith("split-00002-of-00002.gguf is not beside it in "
                                           f"{tmp_path}.")
    (tmp_path / "split-00002-of-00002.gguf").write_bytes(b"the rest")
    assert steering_from_form(["concise"], "", "pad", {"reward_model": str(first)}, {})[1] == {}
    for name in ("org/none:*Q4_K_M.gguf", str(bundled_path)):
        steering, errors = steering_from_form(["concise"], "", "pad",
                                              {"reward_model": name}, {})
        assert errors == {} and steering.method_settings["pad"]["reward_model"] == name
    # saved, or in a profile, before the file went: left out, and said, the rest kept (the
    # sampling went back to the defaults with it, and nothing was said)
    saved, changed = Steering.read({
        "presets": ["concise"], "method": "pad", "sampling": {"temperature": 0.7, "seed": 42},
        "method_settings": {"pad": {"weight": 2.0, "reward_model": str(missing)}}})
    assert saved.method == "pad" and saved.method_settings["pad"] == {"weight": 2.0}
    assert saved.sampling == {"temperature": 0.7, "seed": 42}
    assert isinstance(saved.overrides()["method"], PAD)  # the app's PAD: prompt contrast
    assert saved.overrides()["method"].reward_model is None
    assert changed == [f"The saved reward model {str(missing)!r} is not there any more, so PAD "
                       "scores with the prompt-contrast reward."]
    assert Steering.from_dict({"method": "pad", "method_settings": {
        "pad": {"reward_model": str(missing)}}}) == dataclasses.replace(
            Steering(method="pad"), method_settings={**Steering().method_settings, "pad": {}})
    _, changed = Steering.read({"method": "pad", "method_settings": {
        "pad": {"reward_model": str(text)}}})
    assert changed == [f"The saved reward model {str(text)!r} cannot be used, so PAD scores "
                       f"with the prompt-contrast reward: {text} is not a GGUF file (bad magic)."]


def test_a_saved_setting_is_changed_only_where_that_lets_it_answer(tmp_path) -> None:
    """Diff review: the avoid text was left out with the sampling's reason; settings no
    reset could help were reset all the same, and the notice said so; another method's
    missing reward model was a notice at every start."""
    steering, changed = Steering.read({"presets": ["concise"], "method": "base",
                                       "avoid": "rude", "sampling": {"temperature": -1}})
    assert steering.avoid == "" and steering.sampling == {}
    assert changed[0].startswith("The saved avoid text 'rude' is left out: Avoid needs a "
                                 "two-lane method")
    assert changed[1] == ("The saved sampling settings are back to the app's defaults: "
                          "Temperature must be 0 or more (got -1).")
    saved = {"presets": ["concise"], "avoid": "concise", "method": "amulet",
             "method_settings": {"amulet": {"alpha": 0.7}}, "sampling": {"temperature": 0.3}}
    steering, changed = Steering.read(saved)
    assert changed == [] and steering.to_dict() == {**Steering().to_dict(), **saved,
                                                    "method_settings": {
                                                        **Steering().method_settings,
                                                        "amulet": {"alpha": 0.7}}}
    assert "is both a preference and what to avoid" in steering.problem_with(None)
    gone = str(tmp_path / "gone.gguf")
    steering, changed = Steering.read({"presets": ["concise"], "method": "amulet",
                                       "method_settings": {"pad": {"reward_model": gone}}})
    assert changed == [] and steering.method_settings["pad"] == {"reward_model": gone}


@pytest.mark.parametrize(("saved", "kept", "sentence"), [
    # a method setting the library refuses: that method's settings alone go back
    ({"method": "amulet", "method_settings": {"amulet": {"eta": -1}},
      "sampling": {"temperature": 0.5}},
     {"sampling": {"temperature": 0.5}},
     "The saved Amulet settings are back to the app's defaults: Eta must be greater than 0 "
     "(got -1)."),
    # a sampling value the library refuses: the sampling alone goes back
    ({"method": "contrastive", "method_settings": {"contrastive": {"ratio": 3.5}},
      "sampling": {"seed": -1, "temperature": 0.5}},
     {"sampling": {}, "method_settings": {"contrastive": {"ratio": 3.5}}},
     "The saved sampling settings are back to the app's defaults: The seed must be a whole "
     "number, 0 or more"),
    # an avoid text with a method that cannot take it: the avoid alone is left out
    ({"method": "pref", "avoid": "verbose", "sampling": {"temperature": 0.5}},
     {"avoid": "", "sampling": {"temperature": 0.5}},
     "The saved avoid text 'verbose' is left out: "),
])
def test_a_saved_setting_that_cannot_be_used_is_changed_alone_and_said(saved, kept, sentence):
    steering, changed = Steering.read({"presets": ["concise"], **saved})
    assert len(changed) == 1 and changed[0].startswith(sentence)
    assert steering.method == saved["method"] and steering.presets == ["concise"]
    for name, value in kept.items():
        if name == "method_settings":
            for method, settings in value.items():
                assert steering.method_settings[method] == settings
        else:
            assert getattr(steering, name) == value
    assert steering.problem_with(None) is None  # the next answer can use them
    assert Steering.read(steering.to_dict()) == (steering, [])  # and saved, they read clean


def test_valid_form_gives_the_overrides_a_chat_takes():
    steering, errors = steering_from_form(
        ["concise", "uplifting"], " in French ", "amulet", {"eta": "5", "exact": False},
        {"temperature": "0.7", "seed": "3", "max_tokens": "32"})
    assert errors == {} and steering is not None
    overrides = steering.overrides()
    assert overrides["preference"] == ["concise", "uplifting", "in French"]
    assert overrides["method"] == Amulet(eta=5.0, exact=False)
    assert (overrides["temperature"], overrides["seed"], overrides["max_tokens"]) == (0.7, 3, 32)
    assert Steering.from_dict(steering.to_dict()) == steering


def test_a_whole_number_is_kept_as_typed_or_refused() -> None:
    """A seed of 26 digits was read as a float and stored rounded (1e26 + 4764729344)."""
    big = "99999999999999999999999999"
    steering, errors = steering_from_form(["concise"], "", "amulet", {}, {"seed": big})
    assert errors == {} and steering.sampling["seed"] == int(big)
    for text, sentence in (("9" * 5000, "Seed has too many digits."),
                           ("²", "Seed must be a number (got '²')."),
                           ("+-5", "Seed must be a number (got '+-5')."),
                           ("2.5", "Seed must be a whole number (got '2.5').")):
        assert steering_from_form(["concise"], "", "amulet", {}, {"seed": text}) == (
            None, {"seed": sentence})
    steering, errors = steering_from_form(["concise"], "", "amulet", {}, {"seed": "1e3"})
    assert errors == {} and steering.sampling["seed"] == 1000


def test_a_number_is_ascii_digits_not_whatever_python_float_reads() -> None:
    """``1_0`` was taken as 10 and a full-width ``２`` as 2, without a word."""
    for text in ("1_0", "\uff12", "0x10", "1e", "."):
        assert steering_from_form(["concise"], "", "amulet", {}, {"temperature": text}) == (
            None, {"temperature": f"Temperature must be a number (got {text!r})."})
    for text, value in (("0.5", 0.5), (".5", 0.5), ("+1.", 1.0), ("5E-1", 0.5)):
        steering, errors = steering_from_form(["concise"], "", "amulet", {},
                                              {"temperature": text})
        assert errors == {} and steering.sampling["temperature"] == value
    _, errors = steering_from_form(["concise"], "", "amulet", {}, {"temperature": "nan"})
    assert "nan" in errors["temperature"] and "must be a number (got" not in errors["temperature"]


def test_a_negative_seed_is_refused_by_the_form_and_dropped_when_saved():
    """The form took -1 and every message was then refused by the library's rule."""
    steering, errors = steering_from_form(["concise"], "", "amulet", {}, {"seed": "-1"})
    assert steering is None
    assert errors["seed"].startswith("The seed must be a whole number, 0 or more")
    restored = Steering.from_dict({"presets": ["concise"], "sampling": {"seed": -1}})
    assert restored.sampling == {} and restored.overrides()["seed"] is None


def test_no_preference_means_base_and_bad_saved_settings_are_dropped():
    assert Steering(presets=[], custom="  ").method_label == "base"
    restored = Steering.from_dict({"method": "amulet", "presets": ["concise", "nope"],
                                   "method_settings": {"amulet": {"eta": -1, "gone": 1}},
                                   "sampling": {"temperature": 0.5, "unknown": 1}})
    assert restored.presets == ["concise"]
    # eta -1 is invalid: Amulet falls back to the app's defaults
    assert restored.method_settings["amulet"] == APP_METHOD_SETTINGS["amulet"]
    assert Steering.from_dict("garbage") == Steering()


def test_app_defaults_are_the_tuned_strengths_and_the_paper_preset_the_papers():
    steering = Steering()
    for name, field_name in STRENGTH_FIELDS.items():
        method = steering.method_object(name)
        assert getattr(method, field_name) == APP_METHOD_SETTINGS[name][field_name]
        assert method.strength == APP_METHOD_SETTINGS[name][field_name]
        assert method.tau == APP_METHOD_SETTINGS[name]["tau"] > 0  # plausibility on in the app
    paper = steering.with_paper_settings()
    assert paper.presets == steering.presets and paper.method == steering.method
    assert paper.method_object("amulet") == Amulet()  # alpha 2, lam 2, eta 10, T 60
    assert paper.method_object("amulet").effective_contrast == pytest.approx(4.6487, abs=1e-4)
    for name, cls in METHODS.items():
        method = paper.method_object(name)
        assert method == cls()
        assert getattr(method, "tau", 0.0) == 0.0 and getattr(method, "kl_budget", None) is None
    assert paper.sampling_values()["temperature"] == 0.0
    # saved and loaded again, the paper settings stay the paper's (not the app's defaults)
    assert Steering.from_dict(paper.to_dict()) == paper
    assert paper.with_app_settings().method_object() == steering.method_object()


def test_command_line_preference_and_method_override_saved_settings():
    steering, problems = startup_steering({"method": "pad", "presets": ["formal"]},
                                          ["Concise", "talk like a pirate"], "la")
    assert problems == []
    assert steering.presets == ["concise"] and steering.custom == "talk like a pirate"
    assert steering.method == "contrastive"
    _, problems = startup_steering(None, None, "nonsense")
    assert problems and "Unknown method" in problems[0]


def test_avoid_from_the_command_line_and_the_recommended_default():
    from localpref.methods import recommended_method

    steering, problems = startup_steering(None, None, None, ["verbose", "jargon"])
    assert problems == [] and steering.avoid == "verbose jargon"
    assert steering.overrides()["avoid"] == "verbose jargon"
    assert steering.overrides()["trace"] is True
    assert steering.method_object() == recommended_method() and steering.is_recommended
    recommended = recommended_method()
    assert steering.method_label.startswith(f"recommended: amulet k={recommended.contrast:g} "
                                            f"tau={recommended.tau:g}")
    # avoid alone (no preference) still steers: only neither means plain decoding
    assert Steering(presets=[], avoid="verbose").method_label.startswith("recommended")
    steering, problems = startup_steering({"method": "pad", "method_settings": {
        "pad": {"weight": 3.0}}}, None, "recommended")
    assert problems == [] and steering.is_recommended
    steering, problems = startup_steering(None, None, "pref", ["verbose"])
    assert steering.avoid == "" and "reads one lane" in problems[0]
    # saved with a method that cannot take it, the avoid is dropped and the method kept
    restored = Steering.from_dict({"method": "base", "avoid": "verbose"})
    assert restored.method == "base" and restored.avoid == ""
    assert Steering.from_dict(Steering(avoid="verbose").to_dict()).avoid == "verbose"


def test_pump_batches_pieces_saves_progress_and_stops_on_cancel(monkeypatch):
    clock = [0.0]  # seconds; each piece comes 1/64 s after the one before (exact in binary)
    monkeypatch.setattr(streaming, "time", types.SimpleNamespace(monotonic=lambda: clock[0]))

    def pieces(n, delay):
        for i in range(n):
            clock[0] += delay
            yield 0, f"t{i} "

    flushes: list[list[str]] = []
    saves: list[list[str]] = []
    texts = pump(pieces(200, 1 / 64), 1, cancel=threading.Event(), close=lambda: None,
                 flush=flushes.append, save=saves.append, flush_hz=4, save_interval=0.5)
    assert texts[0] == "".join(f"t{i} " for i in range(200))
    # batched: a flush each quarter of a second (16 pieces), then the last 8 pieces at the end
    assert [delta[0] for delta in flushes] == [
        "".join(f"t{i} " for i in range(start, min(start + 16, 200)))
        for start in range(0, 200, 16)]
    # the whole text so far every half second (32 pieces)
    assert saves == [["".join(f"t{i} " for i in range(end))] for end in range(32, 200, 32)]

    cancel, closed = threading.Event(), []

    def cancelling():
        for i, item in enumerate(pieces(100, 0)):
            if i == 10:
                cancel.set()
            yield item

    texts = pump(cancelling(), 1, cancel=cancel, close=lambda: closed.append(True),
                 flush=lambda deltas: None)
    assert closed == [True] and texts[0].count("t") == 11


def test_pump_keeps_compare_tracks_apart():
    items = [(0, "a"), (1, "x"), (0, "b"), (1, "y"), (1, "z")]
    flushes: list[list[str]] = []
    texts = pump(iter(items), 2, cancel=threading.Event(), close=lambda: None,
                 flush=flushes.append)
    assert texts == ["ab", "xyz"]
    assert ["".join(d[0] for d in flushes), "".join(d[1] for d in flushes)] == texts


def test_engine_users_wait_until_the_last_worker_is_done():
    users = EngineUsers()
    assert users.wait_idle(0)
    started, release = threading.Event(), threading.Event()

    def work():
        with users.using():
            started.set()
            release.wait()

    thread = threading.Thread(target=work)
    thread.start()
    started.wait()
    assert not users.wait_idle(0.01)
    release.set()
    assert users.wait_idle(5)
    thread.join()


def test_each_key_is_declared_once():
    for actions in (APP_ACTIONS, INPUT_ACTIONS, COMPARE_ACTIONS):
        keys = [key for action in actions for key in action.key.split(",")]
        assert len(keys) == len(set(keys))
        names = [action.action for action in actions]
        assert len(names) == len(set(names))
    quit_action = next(a for a in APP_ACTIONS if a.action == "quit")
    assert quit_action.key == "ctrl+q" and quit_action.priority


@pytest.mark.parametrize("text, title", [
    ("How do I keep basil alive?", "How do I keep basil alive?"),
    ("\n\n  first   line \nsecond", "first line"),
    ("x" * 80, "x" * 47 + "…"),
])
def test_conversation_title_comes_from_the_first_line(text, title):
    assert title_from(text) == title


def test_a_long_preference_is_shortened_where_it_is_shown():
    long = Steering.from_dict({"presets": ["concise"], "custom": "be very polite " * 2000})
    label = long.preference_label
    assert len(label) == LABEL_CHARACTERS and label.endswith("…")
    assert label.startswith("concise + be very polite")
    assert Steering.from_dict({"presets": ["concise"]}).preference_label == "concise"


def test_the_form_refuses_a_preference_that_is_also_avoided() -> None:
    """Applied, it made every message refused at send time (the panel took it)."""
    steering, errors = steering_from_form(["concise"], "", "amulet", {}, {}, avoid="Concise")
    assert steering is None
    assert errors == {"avoid": "'concise' is both a preference and what to avoid; steering "
                               "toward and away from the same thing changes nothing, so give "
                               "it as one of them."}
    steering, errors = steering_from_form(["concise"], "", "amulet", {}, {}, avoid="verbose")
    assert steering is not None and errors == {}


def test_a_custom_preference_of_spaces_alone_is_no_custom_preference() -> None:
    """Spaces alone were applied and saved as the custom preference (read as none)."""
    steering, errors = steering_from_form(["concise"], "   ", "amulet", {}, {})
    assert errors == {} and steering is not None and steering.custom == ""
    assert steering.preference_items == ["concise"]
