"""What ``localpref bench`` measures: the methods it knows, its defaults, and the validated
``BenchSettings``."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from localpref.errors import SettingsError
from localpref.methods import METHODS, Amulet, Method, recommended_method


def _bench_methods() -> dict[str, Callable[[], Method]]:
    """Every method of ``methods.METHODS`` at its defaults, Amulet's paper loop (the
    reference) after Amulet, and last the recommended steering (what every front end runs
    when no method is named)."""
    found: dict[str, Callable[[], Method]] = {}
    for name, method_class in METHODS.items():
        found[name] = method_class
        if method_class is Amulet:
            found["amulet_loop"] = lambda: Amulet(exact=False)
    found["recommended"] = recommended_method
    return found


#: Method names of the benchmark and how each is made (``amulet_loop`` is the paper's loop,
#: ``recommended`` the front ends' default).
BENCH_METHODS: dict[str, Callable[[], Method]] = _bench_methods()
#: Always measured: the ratios are taken against them.
REFERENCE_METHODS = ("base", "contrastive")
#: SmolLM2 / Llama-3 size, Qwen2.5, Gemma 3.
KERNEL_SIZES = (49152, 151936, 262144)
COMPARE_METHODS = ("base", "pref", "amulet", "pad")
#: The method of the concurrent-requests part.
CONCURRENT_METHOD = Amulet
DEFAULT_PROMPT = "How do I keep basil alive?"
DEFAULT_PREFERENCE = "concise"
CHAT_MESSAGE = "Give me one more tip about growing basil indoors."
#: The chat part measures turn 1 and this turn.
CHAT_TURNS = 10

Progress = Callable[[str], None]


@dataclass(frozen=True)
class BenchSettings:
    """What to measure, validated when made."""

    max_tokens: int = 96
    repeat: int = 3
    methods: tuple[str, ...] = tuple(BENCH_METHODS)
    prompt: str = DEFAULT_PROMPT
    preference: str = DEFAULT_PREFERENCE
    kernel_sizes: tuple[int, ...] = KERNEL_SIZES
    kernel_budget_s: float = 0.5
    chat_tokens: int = 24
    compare_methods: tuple[str, ...] = COMPARE_METHODS
    seed: int = 0
    #: numbers of concurrent requests to measure (``--concurrent 1,2,4``; empty: skipped)
    concurrent: tuple[int, ...] = ()

    def __post_init__(self) -> None:
        check_rate_tokens(self.max_tokens, "a run's")
        whole_number(self.max_tokens, 2, "--max-tokens")
        whole_number(self.repeat, 1, "--repeat")
        whole_number(self.chat_tokens, 1, "--chat-tokens")
        for name in (*self.methods, *self.compare_methods):
            if name not in BENCH_METHODS:
                raise SettingsError(
                    f"Unknown benchmark method {name!r}; choose among {', '.join(BENCH_METHODS)}."
                )
        if not self.methods:
            raise SettingsError("Give at least one method to benchmark.")
        for size in self.kernel_sizes:
            whole_number(size, 16, "a kernel vocabulary size")
            if size > MAX_KERNEL_SIZE:  # (a typo allocated 745 GiB after every run was made)
                raise SettingsError(f"A kernel vocabulary size goes up to {MAX_KERNEL_SIZE:,} "
                                    f"(got {size:,}); the largest vocabularies are about "
                                    "262,144.")
        for count in self.concurrent:
            whole_number(count, 1, "--concurrent")
        if not self.prompt.strip() or not self.preference.strip():
            raise SettingsError("The benchmark prompt and preference must not be empty.")

    @property
    def lanes_needed(self) -> int:
        """Lanes the model must hold at once (the comparison's, the concurrent requests',
        or two)."""
        compare = sum(len(BENCH_METHODS[name]().lanes) for name in self.compare_methods)
        concurrent = len(CONCURRENT_METHOD().lanes) * max(self.concurrent, default=0)
        return max(2, compare, concurrent)

    @property
    def measured_methods(self) -> tuple[str, ...]:
        """The methods asked for, plus the references the ratios need (in benchmark order)."""
        wanted = set(self.methods) | set(REFERENCE_METHODS)
        return tuple(name for name in BENCH_METHODS if name in wanted)


def check_rate_tokens(max_tokens: object, whose: str) -> None:
    """One sentence for ``--max-tokens 1``, where tokens/s, ratios and shares would be 0/0:
    ``whose`` tokens/s (a run's, a stream's) counts the tokens after the first."""
    if max_tokens == 1:
        raise SettingsError(f"--max-tokens must be 2 or more: {whose} tokens/s is measured "
                            "from its first token to its last (got 1).")


#: The largest vocabulary the kernel timings take (four times the largest one in use).
MAX_KERNEL_SIZE = 2**20


def whole_number(value: object, minimum: int, name: str) -> None:
    if not isinstance(value, int) or isinstance(value, bool) or value < minimum:
        raise SettingsError(f"{name} must be a whole number, {minimum} or more (got {value}).")
