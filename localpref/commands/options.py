"""Command-line options shared by the sub-commands, each declared once."""

from __future__ import annotations

import argparse
import contextlib
import sys
import threading
import typing
import warnings
from dataclasses import dataclass
from typing import Any

from localpref.commands.showing import with_settings
from localpref.engine import MAX_LANES, MAX_THREADS, MIN_CONTEXT
from localpref.errors import LocalprefWarning, SettingsError, warning_line
from localpref.examples import like_sentence
from localpref.methods import (
    METHODS,
    RECOMMENDED,
    ContrastFamily,
    Method,
    Sampling,
    recommended_method,
    resolve_method,
    setting_fields,
    setting_kind,
)
from localpref.models.bundled import BUNDLED_MODEL_NAME
from localpref.numbers import number
from localpref.presets import opposite_text
from localpref.weights import parse_preference_items, weighted_lanes, weighted_method


@dataclass(frozen=True)
class MethodFlag:
    """A method setting as a command-line flag: the flag, the dataclass field it sets, the
    value's type and the help."""

    flag: str
    field: str
    kind: type
    help: str


def method_flags() -> list[MethodFlag]:
    """Every setting of every method in ``methods.METHODS`` as a flag, by one rule: the field's
    name with ``_`` as ``-`` (``kl_budget`` is ``--kl-budget``; a bool is ``--name`` /
    ``--no-name``). The help is the field's ``metadata["help"]`` after the titles of the
    methods that have it (``Contrastive, Amulet, PAD: ...``); ``metadata={"flag": False}``
    keeps a field off the command line. Own settings come first, then the shared controls."""
    found: dict[str, tuple[type, str]] = {}
    owners: dict[str, list[str]] = {}
    shared: dict[str, bool] = {}
    for method_class in METHODS.values():
        hints = typing.get_type_hints(method_class)
        for item in setting_fields(method_class):
            if not item.metadata.get("flag", True):
                continue
            owners.setdefault(item.name, []).append(method_class.title or method_class.name)
            if item.name not in found:
                kind, _ = setting_kind(hints.get(item.name, str))
                found[item.name] = kind, item.metadata.get("help") or item.name.replace("_", " ")
                shared[item.name] = item.kw_only is True
    return [MethodFlag("--" + name.replace("_", "-"), name, kind,
                       f"{', '.join(owners[name])}: {text}")
            for name, (kind, text) in sorted(found.items(), key=lambda entry: shared[entry[0]])]


def strength_help() -> str:
    """``--strength``'s help: what the strength knob is for each method that has one."""
    knobs = ", ".join(f"{cls.title or cls.name}'s {cls.strength_name}"
                      for cls in METHODS.values() if issubclass(cls, ContrastFamily))
    return f"the method's one strength knob: {knobs} (overrides those)"


def model_name(text: str) -> str:
    """A ``--model`` or ``NAME`` value: an empty one (a script's unset ``$MODEL``) would
    silently be the bundled model, so it is refused (leaving ``--model`` out, or naming the
    bundled model, asks for that)."""
    if not text.strip():
        raise argparse.ArgumentTypeError(f"an empty model name; give a path or a name (the "
                                         f"bundled model is {BUNDLED_MODEL_NAME})")
    return text


def file_pattern(text: str) -> str:
    """A ``--file`` value: an empty one was silently no pattern at all."""
    if not text.strip():
        raise argparse.ArgumentTypeError("an empty file pattern; give a glob such as "
                                         "'*Q4_K_M.gguf', or leave --file out")
    return text


def add_model_options(parser: argparse.ArgumentParser) -> None:
    """--model and how it is loaded: --gpu-layers, --threads and --ctx, the same flags on every
    command that loads a model (``load_settings`` reads them)."""
    parser.add_argument(
        "--model",
        default=None,
        type=model_name,
        help="a GGUF path, a catalog name, REPO[:PATTERN] on the Hugging Face Hub, or "
        "ollama:NAME / lmstudio:PATTERN (default: the bundled SmolLM2-135M-Instruct)",
    )
    parser.add_argument(
        "--gpu-layers",
        type=int,
        default=0,
        metavar="N",
        help="layers to offload to the GPU (-1: all; default 0)",
    )
    parser.add_argument(
        "--threads",
        type=int,
        default=None,
        metavar="N",
        help="llama.cpp threads (default: the cores this process may use)",
    )
    parser.add_argument(
        "--ctx",
        type=int,
        default=None,
        metavar="N",
        help="tokens of one conversation's window (default: the model's, at most 2048)",
    )


def load_settings(args: argparse.Namespace) -> dict[str, Any]:
    """``n_gpu_layers``, ``n_threads`` and ``n_ctx`` of ``localpref.load`` from the flags of
    ``add_model_options``, checked (a bad value is one sentence)."""
    threads, ctx = getattr(args, "threads", None), getattr(args, "ctx", None)
    if threads is not None and not 1 <= threads <= MAX_THREADS:
        raise SettingsError(f"--threads must be from 1 to {MAX_THREADS}, llama.cpp's most "
                            f"(got {threads}).")
    if ctx is not None and ctx < MIN_CONTEXT:
        raise SettingsError(f"--ctx must be {MIN_CONTEXT} or more (got {ctx}).")
    gpu_layers = getattr(args, "gpu_layers", 0)
    if gpu_layers < -1:
        raise SettingsError(f"--gpu-layers must be 0 or more, or -1 for all (got {gpu_layers}).")
    return {"n_gpu_layers": gpu_layers, "n_threads": threads, "n_ctx": ctx}


def add_preference_options(parser: argparse.ArgumentParser) -> None:
    """--preference (repeatable) and --system-prompt."""
    parser.add_argument(
        "--preference",
        "-p",
        action="append",
        default=None,
        metavar="TEXT[=WEIGHT]",
        help="a built-in preference (concise, verbose, creative, uplifting, "
        "formal, pleasant, humorous, harmless) or any text; repeat to combine; TEXT=NUMBER "
        "weighs it (-p concise=1 -p uplifting=0.4: one lane per preference)",
    )
    add_avoid_option(parser)
    add_like_option(parser)
    parser.add_argument(
        "--opposite", action=argparse.BooleanOptionalAction, default=None,
        help="put the opposites of the built-in preferences (concise: verbose, creative: "
        "conventional and predictable, ...) into the base lane when no --avoid is given, so "
        "steering contrasts with the opposite (default: the steering's own choice, off "
        "unless this model's calibration chose it)")
    parser.add_argument(
        "--system-prompt",
        default=None,
        help="the neutral system prompt (default: 'You are a helpful assistant.')",
    )


def add_avoid_option(parser: argparse.ArgumentParser) -> None:
    """--avoid (repeatable): what steering pushes away from (through the base lane)."""
    parser.add_argument(
        "--avoid",
        action="append",
        default=None,
        metavar="TEXT",
        help="a built-in preference or any text to steer away from (it goes into the base "
        "lane's prompt, as a negative prompt); repeat to combine; two-lane methods only",
    )


def add_like_option(parser: argparse.ArgumentParser) -> None:
    """--like FILE (repeatable): a text in the wanted style, one example per file."""
    parser.add_argument(
        "--like",
        action="append",
        default=None,
        metavar="FILE",
        help="a text file in the style you want (one example per file; repeat for more): "
        "the examples go into the preference lane's prompt and steering pulls toward them",
    )


#: The largest example file read (``--like``): far more than any limit of tokens allows.
MAX_LIKE_FILE_BYTES = 8 * 2**20


def like_from_args(args: argparse.Namespace) -> list[str] | None:
    """The examples of ``--like``: each file's text (one sentence for a file that cannot be
    read, is not UTF-8 or is empty)."""
    paths = getattr(args, "like", None)
    if not paths:
        return None
    examples = []
    for name in paths:
        try:
            with open(name, "rb") as handle:  # read up to the limit: a device has no size
                data = handle.read(MAX_LIKE_FILE_BYTES + 1)
            if len(data) > MAX_LIKE_FILE_BYTES:
                raise SettingsError(f"The example file {name} is over "
                                    f"{MAX_LIKE_FILE_BYTES // 2**20} MiB; an example is a text "
                                    "of at most a few thousand tokens.")
            text = data.decode("utf-8-sig")  # a byte-order mark is not text
        except UnicodeDecodeError:
            raise SettingsError(f"The example file {name} is not UTF-8 text.") from None
        except OSError as error:
            reason = error.strerror or type(error).__name__
            raise SettingsError(f"Cannot read the example file {name}: {reason}.") from None
        if not text.strip():
            raise SettingsError(f"The example file {name} is empty.")
        examples.append(text)
    return examples


def add_method_options(parser: argparse.ArgumentParser, *, single: bool = True) -> None:
    """--method (or nothing, for commands that take --methods) and every method setting."""
    if single:
        parser.add_argument(
            "--method",
            "-m",
            default=None,
            help=f"one of {', '.join([*METHODS, RECOMMENDED])} (default: the recommended "
            "steering, named in the output; a method named without settings is the papers'; "
            "pad without --reward-model uses the prompt-contrast reward)",
        )
    parser.add_argument(
        "--paper", action="store_true",
        help="the papers' settings for every method (greedy unless --temperature is given)")
    group = parser.add_argument_group("method settings", _recommended_defaults())
    group.add_argument("--strength", type=number, default=None, help=strength_help())
    for flag in method_flags():
        if flag.kind is bool:
            group.add_argument(flag.flag, dest=flag.field, action=argparse.BooleanOptionalAction,
                               default=None, help=flag.help)
        else:
            kind = number if flag.kind is float else flag.kind
            group.add_argument(flag.flag, dest=flag.field, type=kind, default=None,
                               help=flag.help)


def _recommended_defaults() -> str:
    """The method settings' note: a flag's default is its method's, and the recommended
    steering (no method named) has settings of its own, which the flags' defaults are not."""
    method = recommended_method()
    settings = ", ".join(f"{name.replace('_', ' ')} {value:g}" if isinstance(value, float)
                         else f"{name.replace('_', ' ')} {value}"
                         for name, value in method.settings().items()
                         if name in ("contrast", "tau", "end_tokens"))
    return (f"Each default below is its method's own (the papers'). Without a method named, "
            f"the recommended steering runs: {method.title} with {settings} (or the setting "
            "`localpref calibrate` chose for the model).")


def add_sampling_options(parser: argparse.ArgumentParser, *, max_tokens: int = 256) -> None:
    """Sampling flags, --max-tokens, --seed and --stop."""
    group = parser.add_argument_group("sampling")
    group.add_argument("--temperature", type=number, default=0.0, help="0 is greedy (default)")
    group.add_argument("--top-p", type=number, default=1.0)
    group.add_argument("--top-k", type=int, default=0, help="0 is off (default)")
    group.add_argument("--min-p", type=number, default=0.0)
    group.add_argument("--repeat-penalty", type=number, default=1.0,
                       help="penalise recently used tokens (1.0 is off; llama.cpp semantics)")
    group.add_argument("--presence-penalty", type=number, default=0.0,
                       help="lower every token the answer has written (-2 to 2; OpenAI's)")
    group.add_argument("--frequency-penalty", type=number, default=0.0,
                       help="lower every token by how often the answer has written it (-2 to 2; "
                            "OpenAI's)")
    group.add_argument("--seed", type=int, default=None,
                       help="a whole number, 0 or more, for repeatable sampling (default: random)")
    group.add_argument("--max-tokens", type=int, default=max_tokens)
    group.add_argument("--stop", action="append", default=None, type=stop_string,
                       help="a stop string (repeatable)")


def stop_string(text: str) -> str:
    """A ``--stop`` value: an empty one (a script's unset ``$STOP``) stops nothing, so it is
    refused rather than silently ignored (a space or a newline is a stop string)."""
    if not text:
        raise argparse.ArgumentTypeError("an empty stop string stops nothing; give the text "
                                         "to stop at")
    return text


def comma_list(text: str) -> list[str]:
    """The non-empty, stripped items of a comma-separated option (``"a, b,"`` -> a, b)."""
    return [item.strip() for item in text.split(",") if item.strip()]


def method_settings(args: argparse.Namespace) -> dict[str, Any]:
    """The method settings given on the command line (unset ones left out)."""
    return {
        flag.field: getattr(args, flag.field)
        for flag in method_flags()
        if getattr(args, flag.field, None) is not None
    }


def method_from_args(args: argparse.Namespace, name: str | None = None) -> Method:
    """The method named by --method (or ``name``) with the settings given, validated;
    ``--strength`` applies to the methods that have one (Base and Pref do not)."""
    name = name or getattr(args, "method", None)
    if getattr(args, "paper", False):
        method = paper_method(name, **method_settings(args))
    else:
        method = resolve_method(name, **method_settings(args))
    strength = getattr(args, "strength", None)
    if strength is not None and isinstance(method, ContrastFamily):
        method = method.with_strength_set_by(strength, "--strength")
    return method


def check_settings_taken(args: argparse.Namespace, methods: list[Method],
                         columns: list[str] | None = None) -> None:
    """One sentence for a method setting that none of ``methods`` reads (``--reward-model``
    with amulet was silently ignored): a flag given is a flag that does something.
    ``columns`` names them in the sentence where they are more than ``methods`` (an
    evaluation's beam or calibrated columns, which take no method settings)."""
    shown = columns if columns is not None else [method.name for method in methods]
    names = ", ".join(shown)
    if len(shown) > 1:
        nobody = f"none of the methods {names} takes it"
    elif "method" in vars(args) and args.method is None:  # --method left out
        nobody = f"the recommended steering ({names}) does not take it; name --method"
    else:
        nobody = f"the method {names} does not take it"
    for flag in method_flags():
        if getattr(args, flag.field, None) is None:
            continue
        if not any(flag.field in {f.name for f in setting_fields(type(method))}
                   for method in methods):
            owners = flag.help.split(":", 1)[0]
            raise SettingsError(f"{flag.flag} is a setting of {owners}; {nobody}.")
    if getattr(args, "strength", None) is not None and not any(
            isinstance(method, ContrastFamily) for method in methods):
        raise SettingsError(f"--strength sets a steering method's strength; {nobody}.")


def paper_method(name: str | None, **settings: Any) -> Method:
    """The papers' settings of the method named (the recommended one's method if None), with
    the settings given on top; ``methods.paper_method`` when the library has it."""
    from localpref import methods

    if name is None or name.strip().lower() == RECOMMENDED:
        name = recommended_method().name
    helper = getattr(methods, "paper_method", None)
    if helper is None:
        return resolve_method(name, **settings)
    return with_settings(resolve_method(helper(name)), settings)


def sampling_kwargs(args: argparse.Namespace) -> dict[str, Any]:
    """Keyword arguments of ``Model.generate`` from the sampling flags, validated."""
    from localpref.token_bias import checked_penalty

    sampling_from_args(args)
    for name in ("presence_penalty", "frequency_penalty"):
        checked_penalty(getattr(args, name), name)
    return {
        "repeat_penalty": args.repeat_penalty,
        "presence_penalty": args.presence_penalty,
        "frequency_penalty": args.frequency_penalty,
        "temperature": args.temperature,
        "top_p": args.top_p,
        "top_k": args.top_k,
        "min_p": args.min_p,
        "seed": args.seed,
        "max_tokens": args.max_tokens,
        "stop": args.stop,
    }


def sampling_from_args(args: argparse.Namespace) -> Sampling:
    """The ``Sampling`` of the sampling flags, validated (``--repeat-penalty`` included;
    commands without that flag get 1.0, off)."""
    return Sampling(temperature=args.temperature, top_p=args.top_p, top_k=args.top_k,
                    min_p=args.min_p, repeat_penalty=getattr(args, "repeat_penalty", 1.0))


def preference_from_args(args: argparse.Namespace) -> Any:
    """The preference of ``--preference``: the texts, or ``Weights`` when any is
    ``TEXT=NUMBER`` (``localpref.weights.parse_preference_items``)."""
    return parse_preference_items(getattr(args, "preference", None))


def lanes_needed(methods: list[Method], preference: Any, like: list[str] | None = None) -> int:
    """Lanes the methods decode together for this preference and examples (weights add
    lanes); one sentence when a llama.cpp context cannot hold them (``engine.MAX_LANES``)."""
    found = weighted_lanes(preference, like_sentence(like or ()))
    needed = sum(len(weighted_method(method, found).lanes) for method in methods)
    if needed > MAX_LANES:
        raise SettingsError(f"This needs {needed} lanes at once, more than a llama.cpp context "
                            f"holds ({MAX_LANES}); give fewer weighted preferences or methods.")
    return needed


#: The most requests at once a command takes: two lanes each within the lanes one llama.cpp
#: context holds (``engine.MAX_LANES``, 256; a step's rows are within its batch of 512).
MAX_PARALLEL = MAX_LANES // 2


def check_parallel(parallel: int) -> None:
    """One sentence unless ``--parallel`` is from 1 to ``MAX_PARALLEL``."""
    if not 1 <= parallel <= MAX_PARALLEL:
        raise SettingsError(f"--parallel must be from 1 to {MAX_PARALLEL} (two lanes each, "
                            f"of the {MAX_LANES} a llama.cpp context holds) (got {parallel}).")


def load_model(args: argparse.Namespace, **kwargs: Any) -> Any:
    """Load the model named by --model (progress on stderr if it must be downloaded) with the
    flags of ``add_model_options``; ``kwargs`` give the command's own defaults (a flag given
    on the command line wins)."""
    from localpref.api import load

    if getattr(args, "system_prompt", None) is not None:  # '' is none, as in the API
        kwargs["system_prompt"] = args.system_prompt
    given = {key: value for key, value in load_settings(args).items() if value is not None}
    with warnings.catch_warnings(), compile_notice():
        warnings.simplefilter("ignore", LocalprefWarning)  # said below, as one line
        model = load(args.model, **{**kwargs, **given})
    tell_notices(model)
    return model


#: How long the kernels' warm-up may take before a command says it is compiling them.
COMPILE_NOTICE_SECONDS = 3.0


@contextlib.contextmanager
def compile_notice(stream: typing.TextIO | None = None,
                   warmed_for: typing.Callable[[], float | None] | None = None,
                   ) -> typing.Iterator[None]:
    """Say once on ``stream`` (stderr) that the kernels are being compiled, when a model's
    load has been warming them up for :data:`COMPILE_NOTICE_SECONDS` (the first run after an
    install sat silent for about a minute, and looked hung). ``warmed_for``:
    ``localpref.warmup.warming_for`` unless given."""
    if warmed_for is None:
        from localpref.warmup import warming_for as warmed_for

    done = threading.Event()

    def watch() -> None:
        while not done.wait(0.25):
            seconds = warmed_for()
            if seconds is None or seconds < COMPILE_NOTICE_SECONDS:
                continue
            print("localpref: compiling the steering kernels (the first run after an install "
                  "only; about a minute)...", file=stream or sys.stderr, flush=True)
            return

    watcher = threading.Thread(target=watch, name="compile-notice", daemon=True)
    watcher.start()
    try:
        yield
    finally:
        done.set()


def steering_flags_given(args: argparse.Namespace) -> list[str]:
    """The flags of the steering methods' settings that were given (``--strength`` first)."""
    given = [flag.flag for flag in method_flags() if getattr(args, flag.field, None) is not None]
    return (["--strength"] if getattr(args, "strength", None) is not None else []) + given


def tell_unsteered(named: typing.Sequence[str | None], preference: Any, avoid: Any,
                   like: Any, *, opposite: bool | None = None,
                   settings: typing.Sequence[str] = ()) -> None:
    """One line on stderr when a steering method (or ``--opposite``, or a steering setting
    such as ``--strength``: ``settings``) is named and nothing is given to steer by: the answer
    is then plain decoding (``base``), which would otherwise go unsaid."""
    steering = [name for name in named if name and name.split(":")[0].strip() != "base"]
    if steering and not (preference or avoid or like):
        print(f"localpref: nothing to steer toward (no --preference, --avoid or --like), so "
              f"{', '.join(steering)} {'writes' if len(steering) == 1 else 'write'} plain "
              "decoding (base).", file=sys.stderr)
    elif settings and not any(named) and not (preference or avoid or like):
        print(f"localpref: nothing to steer toward (no --preference, --avoid or --like), so "
              f"{', '.join(settings)} {'sets' if len(settings) == 1 else 'set'} nothing: plain "
              "decoding (base).", file=sys.stderr)
    elif opposite and not (preference or avoid or like):
        print("localpref: nothing to steer toward (no --preference, --avoid or --like), so "
              "--opposite has no preference to take the opposite of: plain decoding (base).",
              file=sys.stderr)
    elif opposite and avoid:
        print("localpref: --opposite adds nothing here: the base lane reads the --avoid text "
              "(an avoid given wins over the opposites).", file=sys.stderr)
    elif opposite and preference and opposite_text(preference) is None:
        print("localpref: --opposite adds nothing here: none of these preferences has an "
              "opposite to read (only built-in ones do, but harmless, and weighted only above "
              "0), so the base lane stays neutral.", file=sys.stderr)
    elif (preference or like) and named and all(
            name and name.split(":")[0].strip() == "base" for name in named):  # the reference
        print("localpref: base is plain decoding, the reference: it does not read "
              "--preference or --like (give another --method to steer).", file=sys.stderr)


def tell_notices(model: Any) -> None:
    """Each of the model's notices (no chat template...) as one line on stderr."""
    for notice in model.notices:
        print(warning_line(notice), file=sys.stderr)
