"""The method x preference x prompt grid: generate, score, judge, resume, shard.

Every result row has a key (dataset, prompt position and hash, method and the settings that
differ from their defaults, preference, prompts, model, sampling, max tokens, seed) and an id
hashed from it. A run first
reads what its output folder holds and only does the rows that are missing, so an interrupted
run continues where it stopped, and a run with other settings adds rows beside the old ones.
Rows are appended and flushed one by one (``records.RowWriter``).

The base method never reads the preference, so its answer to a prompt is generated once and
reused for every preference (the row says ``reused_from``).
"""

from __future__ import annotations

import dataclasses
import hashlib
import math
import shlex
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from localpref.errors import LocalprefError, PromptTooLongError, SettingsError
from localpref.evaluation.beam import BeamSearch, BeamSettings
from localpref.evaluation.datasets import Dataset, PromptRow
from localpref.evaluation.judge import PairwiseJudge, coverage_of
from localpref.evaluation.paper import (
    AMULET_SYSTEM_PROMPT,
    JUDGE_QUESTION_TEMPLATE,
    JUDGE_SYSTEM_PROMPT,
)
from localpref.evaluation.progress import Progress
from localpref.evaluation.records import (
    GENERATION_FIELDS,
    GENERATIONS,
    RUN_LOCK,
    SCORE_FIELDS,
    SCORES,
    RowWriter,
    check_output_folder,
    make_output_folder,
    read_rows,
    row_id,
)
from localpref.evaluation.report import DEFAULT_REFERENCE, write_report
from localpref.evaluation.scorers import Scorer, score_text
from localpref.evaluation.specs import (
    MethodSpec,
    PreferenceSpec,
    changed_fraction,
    non_default_fields,
)
from localpref.file_digest import file_digest
from localpref.file_lock import exclusive
from localpref.methods import Base, Sampling, recommended_method
from localpref.presets import DEFAULT_SYSTEM_PROMPT, opposite_text
from localpref.request import Request

PROMPT_MODES = ("paper", "library")


@dataclass
class GridConfig:
    """Everything that decides the rows of a run."""

    dataset: Dataset
    methods: list[MethodSpec]
    preferences: list[PreferenceSpec]
    prompts: str = "paper"
    max_tokens: int = 128
    seed: int | None = 0
    sampling: Sampling = field(default_factory=Sampling)
    reference: str = DEFAULT_REFERENCE
    resamples: int = 2000
    score_lanes: bool = False
    """Decode the lane a method does not read too, so every row has both fluency numbers
    (``--sweep`` turns it on; it is part of the row key when on)."""
    fluency_budget: float = 0.5
    """Sweep summary: nats per token a setting may lose against Pref's fluency."""
    avoid: tuple[str, ...] | None = None
    """What the two-lane methods with a base lane steer away from (``--avoid``); Base, Pref
    and beams, which have no base lane to contrast with, answer without it."""

    def __post_init__(self) -> None:
        if not (math.isfinite(self.fluency_budget) and self.fluency_budget >= 0):
            raise SettingsError(f"The fluency budget must be 0 or more nats (got "
                                f"{self.fluency_budget}).")
        if self.prompts not in PROMPT_MODES:
            raise SettingsError(f"Prompts must be one of {', '.join(PROMPT_MODES)}.")
        if not isinstance(self.max_tokens, int) or self.max_tokens < 1:
            raise SettingsError(f"max_tokens must be 1 or more (got {self.max_tokens}).")

    @property
    def system_prompt(self) -> str:
        """The system prompt the model must be loaded with for these prompts."""
        return AMULET_SYSTEM_PROMPT if self.prompts == "paper" else DEFAULT_SYSTEM_PROMPT


@dataclass(frozen=True)
class LazyJudge:
    """A judge loaded only when some pair is left to judge; ``name`` (e.g. the GGUF file name)
    is part of each judgement's key, so resuming needs no model."""

    name: str
    load: Callable[[], PairwiseJudge]


@dataclass(frozen=True)
class Item:
    """One cell of the grid: a prompt, a preference, a method."""

    prompt: PromptRow
    preference: PreferenceSpec
    method: MethodSpec


def _short_hash(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:12]


def _busy(out_dir: Path) -> LocalprefError:
    return LocalprefError(f"Another localpref eval is writing {out_dir}; wait for it to "
                          "finish (or stop it), or give another --out.")


def check_not_busy(out_dir: Path) -> None:
    """Raise the sentence ``Evaluation.run`` would when another run holds ``out_dir``: the
    command line asks before it loads the model, which takes seconds for nothing then."""
    with exclusive(out_dir / RUN_LOCK, busy=_busy(out_dir), what=str(out_dir)):
        pass


class Evaluation:
    """Runs a grid on a loaded model into ``out_dir``.

    ``model`` must have been loaded with ``config.system_prompt`` (``load_model`` does it);
    ``judge`` is a :class:`PairwiseJudge`, a :class:`LazyJudge`, or None for no judge.
    """

    def __init__(
        self,
        config: GridConfig,
        model,  # noqa: ANN001 - localpref.api.Model
        out_dir: str | Path,
        scorers: Sequence[Scorer],
        *,
        judge: PairwiseJudge | LazyJudge | None = None,
        progress: bool = True,
        generations: Callable[[list[Request]], Iterable[tuple[Request, Any]]] | None = None,
        chunk: int = 64,
    ) -> None:
        if model.system_prompt != config.system_prompt:
            raise SettingsError(
                f"The model was loaded with another system prompt than the {config.prompts} "
                "prompts need."
            )
        if judge is not None and config.reference not in {m.name for m in config.methods}:
            raise SettingsError(
                f"The judge compares {config.reference} with each method, but "
                f"{config.reference} is not among the methods."
            )
        calibrated = any(spec.calibrated for spec in config.methods)
        #: the model's calibration, which ``calibrated`` columns run (None without them, or
        #: when the calibration kept the uncalibrated default: they run that default then)
        self.calibration = model.calibration if calibrated else None
        #: when the model was calibrated (its record's time; also a record that kept the
        #: default), kept in a calibrated column's row keys
        self.calibrated_at: str | None = None
        if calibrated:
            record = model.calibration_record
            if record is None:
                raise SettingsError(f"{Path(model.path).name} is not calibrated, so there is "
                                    "no calibrated column to run: run `localpref calibrate "
                                    f"--model {shlex.quote(str(model.path))}` first.")
            self.calibrated_at = str(record.get("calibrated_at", ""))
        self.config = config
        self.model = model
        #: the model file's fingerprint, kept in every row beside the key's file name
        self.model_sha = file_digest(model.path, with_mtime=False)
        self.out_dir = Path(out_dir)
        check_output_folder(self.out_dir)
        self.scorers = list(scorers)
        self.metric_names = [m for s in self.scorers for m in s.metrics]
        if isinstance(judge, PairwiseJudge):
            loaded = judge
            judge = LazyJudge(loaded.name, lambda: loaded)
        self.judge = judge
        self.show_progress = progress
        #: Where the answers are generated, when not here: ``generations(requests)`` yields
        #: ``(request, result or LocalprefError)`` (``eval --ray``), ``chunk`` items at a time.
        self.generations = generations
        self.chunk = max(1, chunk)
        self._prefetched: dict[str, Any] = {}
        self._beam_contexts: dict[int, Any] = {}
        #: Generations made by this run (resumed rows excluded), for tests and the final note.
        self.generated = 0
        #: the grid's answers that failed (after ``run``; tried again by the next run)
        self.failed = 0
        self.judged = 0
        #: Each judged pair's coverage (``judge.coverage_of``), resumed ones included.
        self.judge_coverages: list[float] = []

    # -- keys ---------------------------------------------------------------------------------

    def key(self, item: Item, *, for_content: bool = False) -> dict[str, Any]:
        """The key of an item's row; with ``for_content``, of the answer it holds (the base
        method's answer does not depend on the preference)."""
        ignores_preference = isinstance(item.method.decoder, Base)
        preference = None if for_content and ignores_preference else item.preference
        key = {
            "dataset": self.config.dataset.name,
            "position": item.prompt.position,
            "prompt_sha": item.prompt.digest,
            "method": item.method.name,
            "settings": item.method.key_settings(),
            "preference": preference.name if preference else None,
            "preference_text": preference.sentence if preference else None,
            "prompts": self.config.prompts,
            "system_prompt_sha": _short_hash(self.config.system_prompt),
            "model": Path(self.model.path).name,
            "max_tokens": self.config.max_tokens,
            "seed": self.config.seed,
            "sampling": non_default_fields(self.config.sampling),
        }
        # Entries added later are present only when set, so older rows keep their keys.
        if item.method.sweep is not None:
            key["sweep"] = {item.method.sweep.parameter: item.method.sweep.value}
        if self.config.score_lanes:
            key["score_lanes"] = True
        avoid = self._avoid(item.method)
        if avoid:
            key["avoid"] = list(avoid)
        if item.method.calibrated and self.calibrated_at is not None:
            key["calibration"] = self.calibrated_at
        if preference is not None and preference.examples:
            key["examples_sha"] = _short_hash("\n\x00".join(preference.examples))
        return key

    def _avoid(self, method: MethodSpec) -> tuple[str, ...] | None:
        """What this method's base lane steers away from: its own ``avoid`` (a calibrated
        column's opposite), else the run's ``--avoid`` when it has a base lane to contrast."""
        if method.avoid is not None:
            return method.avoid
        lanes = getattr(method.decoder, "lanes", ())
        if self.config.avoid and len(lanes) == 2 and "base" in lanes:
            return tuple(self.config.avoid)
        return None

    def resolved(self, method: MethodSpec, preference: PreferenceSpec) -> MethodSpec:
        """``method`` for ``preference``. A ``calibrated`` column becomes the setting the
        model's calibration gives a request with this preference (a built-in preference's own,
        else the overall one; examples get the overall one), as a plain method the row key
        records, and, when the calibration chose the opposite and the run gives no
        ``--avoid``, the preference's opposite as its base lane's text: what the library
        runs for ``model.generate(prompt, preference=name)``; when the calibration kept the
        uncalibrated default, that default. Any other column as it is."""
        calibration = self.calibration
        if not method.calibrated:
            return method
        if calibration is None:
            return dataclasses.replace(method, decoder=dataclasses.replace(recommended_method()))
        name = None if preference.examples else preference.name
        # A copy, not the recommended steering's object: Model.submit applies no calibration
        # on top of it (methods.is_recommended).
        decoder = dataclasses.replace(calibration.method(name))
        avoid = None
        if not self.config.avoid and calibration.opposite(name):
            opposite = opposite_text(name)
            avoid = (opposite,) if opposite else None
        return dataclasses.replace(method, decoder=decoder, avoid=avoid)

    def items(self) -> list[Item]:
        """The grid in the order it runs: prompt, then preference, then method."""
        return [Item(prompt, preference, self.resolved(method, preference))
                for prompt in self.config.dataset.prompts
                for preference in self.config.preferences
                for method in self.config.methods]

    # -- running ------------------------------------------------------------------------------

    @property
    def open_beam_contexts(self) -> int:
        """The beam searches' contexts still open (none once ``run`` has returned)."""
        return len(self._beam_contexts)

    def run(self) -> Path:
        """Do every missing row, then write the summary and charts; return the summary path.
        One run at a time writes a folder (``.lock`` in it, ``file_lock.exclusive``): two
        runs on one ``--out`` generated every row twice and appended both."""
        make_output_folder(self.out_dir)
        with exclusive(self.out_dir / RUN_LOCK, busy=_busy(self.out_dir),
                       what=str(self.out_dir)):
            return self._run()

    def _run(self) -> Path:
        items = self.items()
        written = list(read_rows(self.out_dir / GENERATIONS, GENERATION_FIELDS))
        self._check_same_model(written)
        # A failed answer or judgement (a prompt too long for the window) is missing: the next
        # run tries it again (with a larger --ctx, say), and its new row, written after, wins.
        existing = {row["id"]: row for row in written if not row.get("error")}
        score_rows = list(read_rows(self.out_dir / SCORES, SCORE_FIELDS))
        metrics = {row["id"]: row.get("metrics") or {} for row in score_rows
                   if row.get("kind") == "metrics"}
        judgements = {row["id"]: row for row in score_rows
                      if row.get("kind") == "judge" and not row.get("error")}
        by_content: dict[str, dict[str, Any]] = {}
        for row in existing.values():  # (failed rows are not among them)
            if row.get("content_id"):
                by_content.setdefault(row["content_id"], row)
        pairs = self._pairs(items)
        progress = Progress(len(items) + len(pairs), enabled=self.show_progress)
        rows: dict[str, dict[str, Any]] = {}
        try:
            with RowWriter(self.out_dir / GENERATIONS) as generations, \
                    RowWriter(self.out_dir / SCORES) as scores:
                for item in self._prefetching(items, existing, by_content):
                    key = self.key(item)
                    identifier = row_id(key)
                    row = existing.get(identifier)
                    if row is None:
                        row = self._make_row(item, key, identifier, by_content)
                        generations.write(row)
                        if not row.get("error"):
                            by_content.setdefault(row["content_id"], row)
                        progress.advance(f"{item.method.name} · {item.preference.name} · "
                                         f"#{item.prompt.position}")
                    else:
                        progress.skip()
                    rows[identifier] = row
                    have = metrics.get(identifier, {})
                    if not row.get("error") and any(m not in have for m in self.metric_names):
                        values = {**have, **score_text(self.scorers, row["text"], row["tokens"])}
                        metrics[identifier] = values
                        scores.write({"id": identifier, "kind": "metrics", "metrics": values})
                self._judge_pairs(pairs, rows, judgements, scores, progress)
        finally:
            progress.close()
            for context in self._beam_contexts.values():
                context.close()
            self._beam_contexts.clear()
        grid_rows = [rows[i] for i in dict.fromkeys(row_id(self.key(it)) for it in items)]
        self.failed = sum(1 for row in grid_rows if row.get("error"))
        wanted = {row["id"] for row in grid_rows}
        grid_judgements = [j for j in judgements.values() if j.get("a") in wanted
                           and j.get("b") in wanted]
        return write_report(self.out_dir, grid_rows, metrics, grid_judgements,
                            reference=self.config.reference, resamples=self.config.resamples,
                            fluency_budget=self.config.fluency_budget)

    def _check_same_model(self, rows: Iterable[dict[str, Any]]) -> None:
        """Refuse an output folder holding answers of another file with this model's name: a
        row's key names the model by its file name only (so that a folder resumes after the
        file moves), and its ``model_sha`` tells two files of one name apart (rows written
        before it have none, and are taken as this model's)."""
        name = Path(self.model.path).name
        for row in rows:
            sha = row.get("model_sha")
            if sha and sha != self.model_sha and (row.get("key") or {}).get("model") == name:
                raise SettingsError(f"{self.out_dir} holds answers of another model file named "
                                    f"{name}; give another --out.")

    def _prefetching(self, items: list[Item], existing: dict[str, Any],
                     by_content: dict[str, dict[str, Any]]) -> Iterator[Item]:
        """``items`` in order; with ``generations``, each chunk's missing answers are generated
        there (all at once) before its items are yielded."""
        if self.generations is None:
            yield from items
            return
        for start in range(0, len(items), self.chunk):
            part = items[start:start + self.chunk]
            wanted: dict[int, str] = {}
            requests: list[Request] = []
            contents: set[str] = set()
            for item in part:
                content = row_id(self.key(item, for_content=True))
                if (row_id(self.key(item)) in existing or content in by_content
                        or content in contents or isinstance(item.method.decoder, BeamSettings)):
                    continue
                contents.add(content)
                request = self._request(item)
                wanted[id(request)] = content
                requests.append(request)
            if requests:
                for request, value in self.generations(requests):
                    self._prefetched[wanted[id(request)]] = value
            yield from part

    def _make_row(self, item: Item, key: dict[str, Any], identifier: str,
                  by_content: dict[str, dict[str, Any]]) -> dict[str, Any]:
        """Generate (or reuse) the answer of one item, as a row."""
        content_id = row_id(self.key(item, for_content=True))
        row: dict[str, Any] = {
            "id": identifier,
            "content_id": content_id,
            "key": key,
            "dataset": self.config.dataset.name,
            "position": item.prompt.position,
            "row_id": item.prompt.row_id,
            "prompt": item.prompt.text,
            "preference": item.preference.name,
            "preference_text": item.preference.sentence,
            "method": item.method.name,
            "settings": item.method.settings(),
            "model_sha": self.model_sha,
        }
        if item.method.strength is not None:
            row["strength"] = item.method.strength
        if item.method.sweep is not None:
            row["sweep"] = {"parameter": item.method.sweep.parameter,
                            "value": item.method.sweep.value}
        source = by_content.get(content_id)
        if source is not None:
            row.update(label=source.get("label"), text=source["text"], tokens=source["tokens"],
                       n_tokens=source.get("n_tokens"), tokens_per_s=source.get("tokens_per_s"),
                       stop_reason=source.get("stop_reason"), stats=source.get("stats"),
                       changed_fraction=source.get("changed_fraction"),
                       reused_from=source["id"])
            return row
        try:
            result = self._prefetched.pop(content_id, None) or self._generate(item)
            if isinstance(result, LocalprefError):  # raised where it was generated
                raise result
        except PromptTooLongError as error:
            row.update(text="", tokens=[], error=str(error))
            return row
        self.generated += 1
        stats = dict(result.stats)
        row.update(label=stats.get("method"), text=result.text, tokens=list(result.tokens),
                   n_tokens=stats.get("n_tokens"), tokens_per_s=stats.get("tokens_per_s"),
                   stop_reason=stats.get("stop_reason"), stats=stats,
                   changed_fraction=changed_fraction(item.method.decoder, stats))
        return row

    def _generate(self, item: Item):  # noqa: ANN202 - localpref.Result
        config = self.config
        decoder = item.method.decoder
        if isinstance(decoder, BeamSettings):
            prompts = self.model.prompts
            tokens = prompts.lane_tokens([{"role": "user", "content": item.prompt.text}],
                                         item.preference.sentence,
                                         examples=item.preference.examples)
            result = self._beam(decoder).run(tokens, config.max_tokens)
            result.stats.update(preference=item.preference.name, model=self.model.name,
                                seed=config.seed)
            return result
        return self.model.submit(self._request(item)).run()[0]

    def _request(self, item: Item) -> Request:
        """The ``Request`` of an item whose method is not a beam search."""
        config = self.config
        return Request(
            messages=({"role": "user", "content": item.prompt.text},),
            preference=None if item.preference.examples else item.preference.sentence,
            like=item.preference.examples, method=item.method.decoder,
            sampling=config.sampling, max_tokens=config.max_tokens, seed=config.seed,
            score_lanes=config.score_lanes,
            avoid=self._avoid(item.method),
        )

    def _beam(self, settings: BeamSettings) -> BeamSearch:
        """A beam search on its own context of ``width`` lanes over the same weights."""
        from localpref.engine import Context

        context = self._beam_contexts.get(settings.width)
        if context is None:
            prompts = self.model.prompts
            longest = max(
                len(prompts.lane_tokens([{"role": "user", "content": p.text}], s.sentence,
                                        examples=s.examples))
                for p in self.config.dataset.prompts for s in self.config.preferences
            )
            needed = longest + self.config.max_tokens + 2
            n_ctx = min(max(256, -(-needed // 256) * 256), max(self.model.n_ctx, 256))
            context = Context(self.model.weights, n_ctx=n_ctx,
                              max_lanes=settings.width, n_threads=self.model.n_threads)
            self._beam_contexts[settings.width] = context
        return BeamSearch(context, self.model.vocabulary, settings)

    # -- judging ------------------------------------------------------------------------------

    def _pairs(self, items: Sequence[Item]) -> list[tuple[Item, Item]]:
        """(reference item, other item) for every prompt and preference, if judging."""
        if self.judge is None:
            return []
        reference = self.config.reference
        pairs = []
        for item in items:
            if item.method.name == reference:
                for other in self.config.methods:
                    if other.name != reference:
                        pairs.append((item, Item(item.prompt, item.preference, other)))
        return pairs

    def _judge_pairs(self, pairs: Sequence[tuple[Item, Item]], rows: dict[str, dict[str, Any]],
                     judgements: dict[str, dict[str, Any]], scores: RowWriter,
                     progress: Progress) -> None:
        if self.judge is None:
            return
        judge: PairwiseJudge | None = None
        for first, second in pairs:
            row_a, row_b = rows[row_id(self.key(first))], rows[row_id(self.key(second))]
            key = {"a": row_a["id"], "b": row_b["id"], "judge": self.judge.name,
                   "template_sha": _short_hash(JUDGE_SYSTEM_PROMPT + JUDGE_QUESTION_TEMPLATE)}
            identifier = row_id(key)
            if identifier in judgements:
                if judgements[identifier].get("orders"):
                    self.judge_coverages.append(coverage_of(judgements[identifier]["orders"]))
                progress.skip()
                continue
            judgement: dict[str, Any] = {
                "id": identifier, "kind": "judge", "key": key, "judge": self.judge.name,
                "a": row_a["id"], "b": row_b["id"], "method_a": row_a["method"],
                "method_b": row_b["method"], "dataset": row_a["dataset"],
                "position": row_a["position"], "preference": row_a["preference"],
            }
            if row_a.get("error") or row_b.get("error"):
                judgement["error"] = "One of the two answers failed."
            else:
                if judge is None:
                    judge = self.judge.load()
                started = time.perf_counter()
                try:
                    verdict = judge.compare(row_a["prompt"], row_a["preference_text"],
                                            row_a["text"], row_b["text"])
                except PromptTooLongError as error:
                    judgement["error"] = str(error)
                else:
                    judgement.update(p_a=verdict.p_a, p_tie=verdict.p_tie, p_b=verdict.p_b,
                                     outcome=verdict.outcome, orders=list(verdict.orders),
                                     judge_ms=(time.perf_counter() - started) * 1000)
                    self.judged += 1
                    self.judge_coverages.append(verdict.coverage)
            scores.write(judgement)
            judgements[identifier] = judgement
            progress.advance(f"judge {row_a['method']} vs {row_b['method']}")
