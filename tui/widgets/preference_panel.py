"""The preference panel: preferences, method, its settings, sampling, and named profiles.

Setting fields are built from the dataclass fields of the chosen method (``tui.steering``), so
a setting the library adds shows up here by itself. Every edit is checked at once and what is
wrong is shown under the form; Apply refuses invalid settings, and valid ones take effect on the
next answer.
"""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import Callable
from typing import Any

from textual import on
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.content import Content
from textual.message import Message
from textual.widget import Widget
from textual.widgets import Button, Checkbox, Input, Label, Select, SelectionList, Static
from textual.widgets.selection_list import Selection

from localpref import PRESETS, Method, SettingsError
from localpref.methods import METHODS, PAD, Amulet, ContrastFamily
from tui.keys import PANEL_ACTIONS, bindings
from tui.steering import (
    FieldSpec,
    Steering,
    method_fields,
    method_title,
    sampling_fields,
    steering_from_form,
    strength_field,
)
from tui.widgets.strength_slider import StrengthSlider
from tui.widgets.typing_order import OrderedInput

#: Where the user picks a method (issue 13's evaluation): the two-lane methods differ mainly by
#: their strength.
SAME_CONTRAST_NOTE = (
    "Contrastive and Amulet at the same strength are one distribution, and PAD with the "
    "plausibility mask keeps fewer than its candidates, so it is that contrast too: choosing "
    "among them is mostly choosing a strength.")


def field_widget_id(spec: FieldSpec) -> str:
    return f"{spec.group}-{spec.name}".replace("_", "-")


def field_row(spec: FieldSpec, value: Any) -> Widget:
    """The editor of one setting: a checkbox, or a label and a one-line input."""
    tooltip = spec.help or None
    if spec.kind is bool:
        return Checkbox(spec.label, bool(value), id=field_widget_id(spec), classes="setting",
                        tooltip=tooltip, compact=True)
    return Horizontal(
        Label(spec.label, classes="setting-label"),
        OrderedInput(spec.format(value), placeholder=spec.help, id=field_widget_id(spec),
                     classes="setting", tooltip=tooltip, compact=True),
        classes="setting-row",
    )


#: The stops of a preference's strength slider (its weight; 1 is the preference as it is).
WEIGHT_STOPS: tuple[float, ...] = (0.0, 0.25, 0.5, 0.75, 1.0, 1.5, 2.0, 3.0)

WEIGHTS_NOTE = ("Strength of each checked preference: all at 1 is one lane with every "
                "preference; any other weight gives each its own lane.")
EXAMPLES_NOTE = ("Answers you liked (Ctrl+O adds the last one: more like this); the preference "
                 "lane reads them and steering pulls toward their style.")


def slider_items(steering: Steering) -> list[str]:
    """The preferences that get a weight slider, in order: one a text (the free text may
    repeat a checked preset's name)."""
    return list(dict.fromkeys(steering.preference_items))


def weight_slider(item: str, weight: float) -> StrengthSlider:
    """The strength slider of one checked preference (its ``item`` is the preference)."""
    label = item if len(item) <= 18 else item[:17] + "…"
    slider = StrengthSlider(weight, label=label, stops=WEIGHT_STOPS, classes="weight-slider")
    slider.item = item  # type: ignore[attr-defined]
    return slider


def example_rows(examples: list[str]) -> list[Widget]:
    """Each example, shortened, with a button that removes it."""
    if not examples:
        return [Static("none yet", classes="help")]
    rows: list[Widget] = []
    for index, text in enumerate(examples):
        line = " ".join(text.split())
        shown = line if len(line) <= 60 else line[:59] + "…"
        rows.append(Horizontal(
            Static(f"{index + 1}. {shown}", classes="example-text", markup=False),
            Button("Remove", id=f"example-remove-{index}", classes="example-remove",
                   compact=True),
            classes="example-row"))
    return rows


def method_note(method: Method) -> str:
    """What the method does with these settings, in one line."""
    notes = []
    contrast = method.effective_contrast if isinstance(method, Amulet) else None
    if contrast is not None:
        notes.append(f"Exactly a contrast k = {contrast:.3g}.")
    elif isinstance(method, PAD):
        reward = method.reward_model
        notes.append(f"Reward model: {reward}." if reward else
                     "Reward: the prompt contrast (no trained reward model).")
    if isinstance(method, ContrastFamily) and contrast is None:
        notes.append(f"Strength {method.strength:.3g}.")
    return " ".join(notes)


def strength_note(method: Method | None) -> str:
    """What the slider shows beside its value: Amulet's equivalent alpha."""
    if not isinstance(method, Amulet):
        return ""
    return f"= alpha {method.effective_alpha:.3g}"


class PreferencePanel(VerticalScroll):
    """Edits a copy of the steering settings; Apply hands a valid copy to the app.

    The strength slider edits the chosen method's strength field; "Paper settings" (F7 while
    the panel has focus) applies the papers' exact settings, "Recommended" the app's tuned
    ones.
    """

    BINDINGS = bindings(PANEL_ACTIONS)

    class Applied(Message):
        """Valid settings the next answer should use."""

        def __init__(self, steering: Steering) -> None:
            super().__init__()
            self.steering = steering

    class ProfileRequest(Message):
        """Save, load or delete a named profile (the app owns the store)."""

        def __init__(self, action: str, name: str, steering: Steering | None = None) -> None:
            super().__init__()
            self.action = action
            self.name = name
            self.steering = steering

    def __init__(self, steering: Steering, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        #: The settings last applied (the form starts from them).
        self.applied = steering
        #: What is wrong with the form now, by field name ("" for the combination).
        self.errors: dict[str, str] = {}
        #: Why the model could not answer with valid settings (the app's check: examples'
        #: tokens, lanes), or None; Apply refuses what it names.
        self.checker: Callable[[Steering], str | None] | None = None
        self._method_shown: str | None = None
        #: One change of the weight sliders at a time (each awaits its removals and mounts,
        #: and the next one reads the sliders they leave)
        self._weights_changing = asyncio.Lock()

    def compose(self):  # noqa: ANN201 - Textual's ComposeResult
        steering = self.applied
        yield Label("Preferences", classes="section")
        yield SelectionList[str](
            *(Selection(name, name, name in steering.presets) for name in PRESETS),
            id="presets",
        )
        yield OrderedInput(steering.custom, placeholder="your own, e.g. explain like I'm new",
                           id="custom-preference", compact=True)
        yield Static(WEIGHTS_NOTE, classes="help")
        yield Vertical(*(weight_slider(item, steering.weights.get(item, 1.0))
                         for item in slider_items(steering)), id="weights")
        yield Label("Examples", classes="section")
        yield Static(EXAMPLES_NOTE, classes="help")
        yield Vertical(*example_rows(steering.examples), id="examples")
        yield Label("Avoid", classes="section")
        yield OrderedInput(steering.avoid, placeholder="steer away from, e.g. verbose or jargon",
                           id="avoid", compact=True,
                           tooltip="A built-in name or any text. It goes into the base lane's "
                           "prompt, so two-lane methods push away from it (not Base, Pref, or "
                           "PAD with a reward model).")
        yield Label("Method", classes="section")
        yield Select([(method_title(name), name) for name in METHODS],
                     value=steering.method, allow_blank=False, id="method", compact=True)
        yield Static("", id="method-note", classes="help", markup=False)
        yield Static(SAME_CONTRAST_NOTE, id="method-choice-note", classes="help")
        yield Horizontal(
            Button("Paper settings", id="preset-paper", compact=True,
                   tooltip="The papers' exact settings (F7): Amulet alpha 2, lambda 2, eta 10, "
                   "60 iterations; no plausibility mask, no KL budget; greedy"),
            Button("Recommended", id="preset-app", compact=True,
                   tooltip="The recommended steering, the same the command line and the API "
                   "use when no method is named (docs/steering.md)"),
            classes="buttons",
        )
        yield Vertical(id="method-settings")
        yield Label("Sampling", classes="section")
        values = steering.sampling_values()
        yield Vertical(*(field_row(spec, values[spec.name]) for spec in sampling_fields()),
                       id="sampling-settings")
        yield Static("", id="settings-errors", markup=False)
        yield Horizontal(
            Button("Apply", id="apply", variant="primary", compact=True),
            Button("Revert", id="revert", compact=True),
            classes="buttons",
        )
        yield Static("Applies to the next answer.", classes="help")
        yield Label("Profiles", classes="section")
        yield Select([], prompt="saved profiles", id="profile-select", compact=True)
        yield Horizontal(
            Button("Load", id="profile-load", compact=True),
            Button("Delete", id="profile-delete", compact=True),
            classes="buttons",
        )
        yield OrderedInput(placeholder="profile name, e.g. my writing style", id="profile-name",
                           compact=True)
        yield Button("Save as profile", id="profile-save", compact=True)

    async def on_mount(self) -> None:
        await self._show_method(self.applied.method, self.applied)

    # -- showing settings ----------------------------------------------------------------------

    async def _show_method(self, method: str, steering: Steering) -> None:
        """Rebuild the method's setting fields with ``steering``'s values for it."""
        container = self.query_one("#method-settings", Vertical)
        await container.remove_children()
        saved = steering.method_settings.get(method, {})
        rows: list[Widget] = [field_row(spec, saved.get(spec.name, spec.default))
                              for spec in method_fields(method)]
        method_class = METHODS[method]
        if issubclass(method_class, ContrastFamily):
            try:
                current = steering.method_object(method)
            except SettingsError:
                current = method_class()
            slider = StrengthSlider(current.strength,  # type: ignore[attr-defined]
                                    label=method_class.strength_name, id="strength-slider")
            slider.note = strength_note(current)
            rows.insert(0, slider)
        if rows:
            await container.mount_all(rows)
        self._method_shown = method
        self.validate()

    async def load(self, steering: Steering) -> None:
        """Show ``steering`` in the form (for a loaded profile or a palette change)."""
        self.applied = steering
        presets = self.query_one("#presets", SelectionList)
        with presets.prevent(SelectionList.SelectedChanged):
            presets.deselect_all()
            for name in steering.presets:
                presets.select(name)
        with self.prevent(Input.Changed):
            self.query_one("#custom-preference", Input).value = steering.custom
            self.query_one("#avoid", Input).value = steering.avoid
            values = steering.sampling_values()
            for spec in sampling_fields():
                self.query_one(f"#{field_widget_id(spec)}", Input).value = spec.format(
                    values[spec.name])
        select = self.query_one("#method", Select)
        with select.prevent(Select.Changed):
            select.value = steering.method
        await self._show_weights(steering)
        await self._show_examples(steering.examples)
        await self._show_method(steering.method, steering)

    async def _show_weights(self, steering: Steering | Callable[[], Steering], *,
                            keep_shown: bool = False) -> None:
        """One slider per checked preference of ``steering`` (or of what it gives once the
        previous change is done), in its order, a new one at its weight there. With
        ``keep_shown`` a slider already shown stays as it is, at the weight the user moved
        it to (a change rebuilt every slider from weights read before its own awaits, so a
        slider moved meanwhile went back); without, it is set to ``steering``'s weight."""
        async with self._weights_changing:
            wanted = steering() if callable(steering) else steering
            items = slider_items(wanted)
            container = self.query_one("#weights", Vertical)
            shown = {slider.item: slider  # type: ignore[attr-defined]
                     for slider in container.query(".weight-slider").results(StrengthSlider)}
            gone = [slider for item, slider in shown.items() if item not in items]
            if gone:
                await container.remove_children(gone)
            for index, item in enumerate(items):
                slider = shown.get(item)
                if slider is None:
                    slider = weight_slider(item, wanted.weights.get(item, 1.0))
                    await container.mount(slider, before=index
                                          if index < len(container.children) else None)
                    continue
                if not keep_shown:
                    slider.set_value(wanted.weights.get(item, 1.0))
                if container.children.index(slider) != index:
                    container.move_child(slider, before=index)

    async def set_examples(self, examples: list[str]) -> None:
        """The applied steering's examples are ``examples`` (one added with Ctrl+O, or one
        removed); the rest of the form keeps what was typed and not applied yet."""
        self.applied = dataclasses.replace(self.applied, examples=examples)
        await self._show_examples(examples)

    async def _show_examples(self, examples: list[str]) -> None:
        container = self.query_one("#examples", Vertical)
        await container.remove_children()
        await container.mount_all(example_rows(examples))

    def weights(self) -> dict[str, float]:
        """The weight each preference's slider holds."""
        return {slider.item: slider.value  # type: ignore[attr-defined]
                for slider in self.query(".weight-slider").results(StrengthSlider)}

    def set_profiles(self, names: list[str]) -> None:
        select = self.query_one("#profile-select", Select)
        current = select.value
        select.set_options([(Content(name), name) for name in names])  # names as typed
        if current in names:
            select.value = current

    # -- reading and checking ------------------------------------------------------------------

    def _raw(self, specs: list[FieldSpec]) -> dict[str, Any]:
        raw: dict[str, Any] = {}
        for spec in specs:
            matches = self.query(f"#{field_widget_id(spec)}")
            if matches:
                widget = matches.first()
                raw[spec.name] = widget.value  # type: ignore[attr-defined]
        return raw

    def read(self) -> tuple[Steering | None, dict[str, str]]:
        """The settings the form holds, or None and what is wrong."""
        method = self.query_one("#method", Select).value
        if not isinstance(method, str):
            method = self.applied.method
        return steering_from_form(
            list(self.query_one("#presets", SelectionList).selected),
            self.query_one("#custom-preference", Input).value,
            method,
            self._raw(method_fields(method)),
            self._raw(sampling_fields()),
            base=self.applied,
            avoid=self.query_one("#avoid", Input).value,
            weights=self.weights(),
        )

    def validate(self) -> Steering | None:
        """Check the form now: mark wrong fields and say why; the settings if all are valid."""
        steering, self.errors = self.read()
        for spec in [*method_fields(self._method_shown or self.applied.method),
                     *sampling_fields()]:
            for widget in self.query(f"#{field_widget_id(spec)}"):
                widget.set_class(spec.name in self.errors, "-invalid")
        self.query_one("#avoid", Input).set_class("avoid" in self.errors, "-invalid")
        self.query_one("#settings-errors", Static).update("\n".join(self.errors.values()))
        self._show_note(steering)
        self._sync_slider(steering)
        self._show_pending(steering)
        return steering

    def _show_pending(self, steering: Steering | None) -> None:
        """Mark Apply while the form holds what is not applied (a preference ticked and not
        applied changed nothing, and nothing said so)."""
        pending = steering is None or steering.effect() != self.applied.effect()
        for button in self.query("#apply").results(Button):
            button.label = "Apply •" if pending else "Apply"
            button.tooltip = ("The form holds changes that are not applied yet."
                              if pending else None)
            button.set_class(pending, "-pending")
            button.variant = "warning" if pending else "primary"

    def _sync_slider(self, steering: Steering | None) -> None:
        """Show the strength the form holds on the slider (when the form is valid)."""
        sliders = self.query("#strength-slider")
        if not sliders or steering is None:
            return
        try:
            method = steering.method_object()
        except SettingsError:
            return
        if not isinstance(method, ContrastFamily):
            return
        slider = sliders.first(StrengthSlider)
        slider.set_value(method.strength)
        slider.note = strength_note(method)

    def _show_note(self, steering: Steering | None) -> None:
        """One line on what the chosen method does with these settings."""
        note = ""
        if steering is not None:
            if steering.steers_nothing:
                note = "No preference chosen: every method decodes plainly (base)."
            else:
                try:
                    method = steering.method_object()
                except SettingsError:
                    method = None
                note = method_note(method) if method is not None else ""
                if steering.is_recommended:
                    note = f"The recommended steering. {note}"
        self.query_one("#method-note", Static).update(note)

    # -- events --------------------------------------------------------------------------------

    @on(Input.Changed)
    @on(Checkbox.Changed)
    @on(SelectionList.SelectedChanged)
    def _changed(self, event: Message) -> None:
        control = getattr(event, "control", None) or getattr(event, "input", None)
        if getattr(control, "id", None) == "profile-name":
            return
        self.validate()

    @on(Select.Changed, "#method")
    async def _method_changed(self, event: Select.Changed) -> None:
        if isinstance(event.value, str) and event.value != self._method_shown:
            await self._show_method(event.value, self.applied)

    @on(Button.Pressed, "#apply")
    @on(Input.Submitted)
    def apply(self, event: Message | None = None) -> bool:
        """Hand valid settings to the app; refuse invalid ones, saying why."""
        if isinstance(event, Input.Submitted) and event.input.id == "profile-name":
            return False
        steering = self.validate()
        if steering is None:
            self.app.notify("Settings not applied: " + " ".join(self.errors.values()),
                            severity="error", title="Invalid setting")
            return False
        problem = self.checker(steering) if self.checker is not None else None
        if problem is not None:  # (taken, every message was then refused)
            self.app.notify(f"Settings not applied: {problem}", severity="error",
                            title="Invalid setting")
            return False
        self.applied = steering
        self._show_pending(steering)
        self.post_message(self.Applied(steering))
        return True

    @on(SelectionList.SelectedChanged, "#presets")
    async def _preferences_changed(self) -> None:
        """A slider for each checked preference, at the weight its slider holds (or had when
        applied), whether or not the rest of the form is valid now (an invalid field took
        the applied sliders back, and a newly checked preference had none)."""
        await self._show_weights(self._chosen, keep_shown=True)
        self.validate()

    @on(Input.Changed, "#custom-preference")
    async def _own_preference_edited(self) -> None:
        """As ``_preferences_changed``; the slider of the text being edited keeps its weight
        (weights are kept by text: each key typed made a new preference, at 1). The sliders
        are read once the previous change is done, as there."""

        def chosen_now() -> Steering:
            chosen = self._chosen()
            shown = self.weights()
            edited = [item for item in shown if item not in PRESETS]
            typed = chosen.custom.strip()
            if edited and typed and typed not in PRESETS:
                chosen = dataclasses.replace(chosen, weights={**chosen.weights,
                                                              typed: shown[edited[0]]})
            return chosen

        await self._show_weights(chosen_now, keep_shown=True)
        self.validate()

    def _chosen(self) -> Steering:
        """The applied steering with the preferences, weights, avoid text and method the
        form holds, valid or not (the method's settings and sampling stay as applied): what
        the sliders show, and what Paper and Recommended settings start from when another
        field is invalid."""
        method = self.query_one("#method", Select).value
        return dataclasses.replace(
            self.applied, presets=list(self.query_one("#presets", SelectionList).selected),
            custom=self.query_one("#custom-preference", Input).value,
            avoid=self.query_one("#avoid", Input).value,
            weights={**self.applied.weights, **self.weights()},
            method=method if isinstance(method, str) else self.applied.method)

    @on(StrengthSlider.Changed, ".weight-slider")
    def _weight_moved(self) -> None:
        self.validate()

    @on(Button.Pressed, ".example-remove")
    async def _remove_example(self, event: Button.Pressed) -> None:
        """Drop one example from the applied steering and apply that alone: the rest of the
        form keeps what was typed and not applied yet."""
        index = int(str(event.button.id).rsplit("-", 1)[1])
        examples = [e for i, e in enumerate(self.applied.examples) if i != index]
        await self.set_examples(examples)
        self.post_message(self.Applied(self.applied))
        self.app.notify(f"Example {index + 1} removed; {len(examples)} left.")

    @on(StrengthSlider.Changed, "#strength-slider")
    def _slider_moved(self, event: StrengthSlider.Changed) -> None:
        """Write the slider's value into the method's strength field (which validates)."""
        method = self._method_shown or self.applied.method
        name = strength_field(method)
        if name is None:
            return
        spec = next(spec for spec in method_fields(method) if spec.name == name)
        self.query_one(f"#{field_widget_id(spec)}", Input).value = spec.format(event.value)

    async def action_paper_settings(self) -> None:
        """Apply the papers' exact settings to the chosen method (preferences kept)."""
        await self._preset(lambda steering: steering.with_paper_settings(), "paper")

    @on(Button.Pressed, "#preset-paper")
    async def _paper_button(self) -> None:
        await self.action_paper_settings()

    @on(Button.Pressed, "#preset-app")
    async def _app_button(self) -> None:
        await self._preset(lambda steering: steering.with_app_settings(), "recommended")

    async def _preset(self, change: Any, name: str) -> None:
        current, _ = self.read()
        steering = change(current or self._chosen())
        await self.load(steering)
        if self.apply():
            self.app.notify(f"{name.capitalize()} settings applied: "
                            f"{steering.method_label}.")

    @on(Button.Pressed, "#revert")
    async def _revert(self) -> None:
        await self.load(self.applied)

    @on(Button.Pressed, "#profile-save")
    @on(Input.Submitted, "#profile-name")
    def _save_profile(self) -> None:
        name = self.query_one("#profile-name", Input).value.strip()
        steering = self.validate()
        if not name:
            self.app.notify("Give the profile a name first.", severity="warning")
        elif steering is None:
            self.app.notify("Fix the settings before saving them: "
                            + " ".join(self.errors.values()), severity="error")
        else:
            self.post_message(self.ProfileRequest("save", name, steering))

    @on(Button.Pressed, "#profile-load")
    @on(Button.Pressed, "#profile-delete")
    def _profile_button(self, event: Button.Pressed) -> None:
        name = self.query_one("#profile-select", Select).value
        if not isinstance(name, str):
            self.app.notify("Choose a saved profile first.", severity="warning")
            return
        action = "load" if event.button.id == "profile-load" else "delete"
        self.post_message(self.ProfileRequest(action, name))
