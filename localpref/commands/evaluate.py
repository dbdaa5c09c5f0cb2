"""``localpref eval``: the papers' grid of methods x preferences on a prompt set, scored.

``localpref eval --dataset FILE [--limit N] [--methods ...] [--preferences ...] [--out DIR]``
runs (or resumes) the grid and writes generations.jsonl, scores.jsonl, summary.md and charts;
``localpref eval merge DIR... --out DIR`` joins the folders of split runs (``--shard I/N``).
``--sweep strength=V1,V2,...`` repeats each two-lane method over its strengths
(``localpref/evaluation/sweep.py``) and adds the Pareto plots and the sweep section
(``localpref/evaluation/pareto.py``).
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import os
import sys
from pathlib import Path
from statistics import median
from typing import Any

from localpref.commands.batch import add_ray_options, check_ray_options, ray_notices_dropped
from localpref.commands.interrupt import (
    Termination,
    interrupt_once,
    say_stopped,
    terminate_as_exit,
)
from localpref.commands.options import (
    add_avoid_option,
    add_like_option,
    add_method_options,
    add_model_options,
    check_parallel,
    check_settings_taken,
    comma_list,
    like_from_args,
    method_settings,
    sampling_from_args,
)
from localpref.commands.showing import avoid_from_args
from localpref.errors import LocalprefError, SettingsError
from localpref.numbers import number
from localpref.request import check_not_avoided

DEFAULT_METHODS = "base,pref,contrastive,amulet,pad"
DEFAULT_PREFERENCES = "creative,verbose,concise,uplifting"
#: Generations each Ray actor decodes at once with ``--ray``.
RAY_PARALLEL = 4


def add_parser(subparsers: Any) -> None:
    """Register ``eval`` and ``eval merge``."""
    parser = subparsers.add_parser(
        "eval",
        help="run the papers' method x preference grid on a prompt set and score it",
        description="Generate an answer for every prompt x method x preference of a prompt set "
        "(--dataset FILE: a JSON list of prompts, such as the papers' sets), score them, and "
        "write generations.jsonl, scores.jsonl, summary.md and PNG charts into --out. An "
        "interrupted run resumes where it stopped. `localpref eval merge DIR... --out DIR` "
        "joins split runs.",
    )
    parser.add_argument("--dataset", metavar="FILE", default=None,
                        help="the prompts: a JSON list of rows, or JSON Lines (a row a "
                        "line), each a text or an object with a 'question' or 'prompt' text")
    parser.add_argument("--limit", type=int, default=None, metavar="N",
                        help="use the first N prompts (default: all)")
    parser.add_argument("--methods", default=DEFAULT_METHODS,
                        help=f"comma-separated: base, pref, recommended, calibrated (the "
                        "model's `localpref calibrate` setting for each preference, with its "
                        "opposite where chosen), contrastive, amulet, pad, beamN (default "
                        f"{DEFAULT_METHODS})")
    parser.add_argument("--preferences", default=None,
                        help=f"comma-separated names or texts (default {DEFAULT_PREFERENCES}, "
                        "or none with --like)")
    parser.add_argument("--preference", action="append", default=None, metavar="TEXT",
                        help="one more preference, taken whole (a text with commas); repeat "
                        "for more")
    add_avoid_option(parser)
    add_like_option(parser)
    parser.add_argument("--like-name", default=None, metavar="NAME",
                        help="the name of the --like examples in the tables (default: the "
                        "folder of the first file); bullets, lowercase, question and summary "
                        "are scored by the style scorer")
    parser.add_argument("--prompts", choices=("paper", "library"), default="paper",
                        help="paper: the Amulet paper's system prompt and preference sentences "
                        "(default); library: localpref's neutral prompt and presets")
    parser.add_argument("--scorers", default=None,
                        help="comma-separated: length, sentiment, diversity, style, judge "
                        "(default: the first four, and judge with --judge)")
    parser.add_argument("--judge", metavar="MODEL", default=None,
                        help="a GGUF (path, catalog name or Hub repo) judging the reference "
                        "against each method with the paper's question")
    parser.add_argument("--reference", default=None,
                        help="the method the win/tie/lose tables compare (one of --methods; "
                        "default amulet)")
    parser.add_argument("--out", metavar="DIR", default="eval-out",
                        help="output folder (default ./eval-out)")
    parser.add_argument("--sweep", metavar="[METHOD.]PARAM=V1,V2", action="append", default=None,
                        help="run each two-lane method (contrastive, amulet, pad) once per "
                        "value of its strength (or tau, kl_budget), e.g. strength=0.5,1,2; "
                        "prefix a method to give it its own values (pad.strength=0.5,1); "
                        "repeatable. Base and Pref run once; every row gets both fluency "
                        "numbers; the summary adds a sweep section and pareto-*.png")
    parser.add_argument("--fluency-budget", dest="fluency_budget", type=number, default=0.5,
                        metavar="NATS", help="sweep summary: the best setting per method is "
                        "the best whose fluency is at most NATS below Pref's (default 0.5)")
    parser.add_argument("--score-lanes", dest="score_lanes", action="store_true",
                        help="decode both lanes for every method, so Base and Pref get a "
                        "fluency under the base lane too (on with --sweep); the summary's "
                        "'Against Pref' fluency needs it")
    parser.add_argument("--shard", metavar="I/N", default=None,
                        help="run only the I-th of N slices of the prompts (1-based); merge "
                        "the folders with `localpref eval merge`")
    parser.add_argument("--parallel", type=int, default=1, metavar="N",
                        help="answers written at once on the loaded model, in one batched "
                        "decode (default 1; the same answers, sooner, on a model whose lanes "
                        "are bit-exact beside others: see 'localpref bench --exactness')")
    add_model_options(parser)
    add_ray_options(parser, what="the grid's generations (each actor decodes "
                    f"{RAY_PARALLEL} at once)")
    add_method_options(parser, single=False)
    parser.add_argument("--length-penalty", dest="length_penalty", type=number, default=None,
                        help="beamN: hypothesis score = log-prob / length**P (default 1.0, the "
                        "transformers default the Amulet authors ran; 0 = plain log-prob)")
    sampling = parser.add_argument_group("decoding")
    sampling.add_argument("--max-tokens", type=int, default=128,
                          help="new tokens per answer (default 128, the papers')")
    sampling.add_argument("--temperature", type=number, default=0.0,
                          help="0 is greedy, as in the papers (default)")
    sampling.add_argument("--top-p", type=number, default=1.0)
    sampling.add_argument("--top-k", type=int, default=0)
    sampling.add_argument("--min-p", type=number, default=0.0)
    sampling.add_argument("--seed", type=int, default=0)
    parser.add_argument("--bootstrap", type=int, default=2000, metavar="N",
                        help="bootstrap resamples for the 95%% intervals (default 2000; 40 or "
                             "more)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar on stderr")
    parser.set_defaults(func=run_eval)

    actions = parser.add_subparsers(dest="eval_command", metavar="merge")
    merge = actions.add_parser(
        "merge", help="join the output folders of split runs and summarise them",
        description="Join the rows of several eval output folders (each once) into --out and "
        "write its summary and charts.",
    )
    merge.add_argument("folders", nargs="+", metavar="DIR", help="eval output folders")
    merge.add_argument("--out", dest="merge_out", metavar="DIR", required=True,
                       help="the merged folder (may be one of the inputs)")
    merge.add_argument("--reference", dest="merge_reference", default=None,
                       help="the method the win/tie/lose tables compare (default amulet)")
    merge.add_argument("--bootstrap", dest="merge_bootstrap", type=int, default=2000,
                       metavar="N", help="bootstrap resamples (default 2000; 40 or more)")
    merge.add_argument("--fluency-budget", dest="merge_fluency_budget", type=number,
                       default=0.5, metavar="NATS",
                       help="sweep summary: fluency budget against Pref (default 0.5)")
    merge.set_defaults(func=run_merge)


def parse_shard(text: str | None) -> tuple[int, int]:
    """``"2/4"`` -> (2, 4); None -> (1, 1)."""
    if text is None:
        return 1, 1
    index, _, count = text.partition("/")
    if not (index.strip().isdigit() and count.strip().isdigit()):
        raise SettingsError(f"--shard must look like I/N, e.g. 1/2 (got {text!r}).")
    i, n = int(index), int(count)
    if n < 1 or not 1 <= i <= n:
        raise SettingsError(f"--shard I/N needs 1 <= I <= N (got {text!r}).")
    return i, n


def run_eval(args: argparse.Namespace) -> int:
    """``_run_eval``; a run refused before it wrote anything leaves no output folder it made,
    nor the folders above it that it made (an empty one with a lock file in it was left for a
    model refused as uncalibrated)."""
    from localpref.evaluation.records import missing_folders, remove_unused_folders

    made = missing_folders(Path(args.out)) if args.out.strip() else []
    try:
        return _run_eval(args)
    except LocalprefError:
        remove_unused_folders(made)
        raise


def _run_eval(args: argparse.Namespace) -> int:
    """Check every input, load the model(s), run or resume the grid, print the main table."""
    from localpref.evaluation import (
        Evaluation,
        GridConfig,
        load_dataset,
        make_scorers,
        method_specs,
        preference_specs,
        scorer_names,
    )
    from localpref.evaluation.parallel import local_generations
    from localpref.evaluation.report import DEFAULT_REFERENCE
    from localpref.evaluation.specs import PreferenceSpec
    from localpref.evaluation.sweep import expand, parse_sweep
    from localpref.evaluation.tables import bootstrap_resamples_error
    from localpref.examples import like_sentence
    from localpref.methods import Method

    if args.dataset is None:
        raise LocalprefError("Give a prompt file with --dataset FILE.")
    if args.limit is not None and args.limit < 1:
        raise SettingsError(f"--limit must be 1 or more (got {args.limit}).")
    if args.max_tokens < 1:
        raise SettingsError(f"--max-tokens must be 1 or more (got {args.max_tokens}).")
    too_few = bootstrap_resamples_error(args.bootstrap)
    if too_few is not None:
        raise SettingsError(too_few)
    check_ray_options(args)
    shard = parse_shard(args.shard)
    names = scorer_names(args.scorers)
    if "judge" in names and args.judge is None:
        raise LocalprefError("The judge scorer needs a judge model: give --judge MODEL.")
    if args.judge is not None and args.scorers is not None and "judge" not in names:
        names.append("judge")
    sampling = sampling_from_args(args)
    settings = method_settings(args)
    if args.strength is not None:
        settings["strength"] = args.strength
    if args.length_penalty is not None:
        settings["length_penalty"] = args.length_penalty
    avoid = avoid_from_args(args)
    methods = method_specs(comma_list(args.methods), paper=args.paper, **settings)
    check_settings_taken(args, [spec.decoder for spec in methods if not spec.calibrated
                                and isinstance(spec.decoder, Method)],
                         columns=[spec.name for spec in methods])
    if avoid and not any(len(getattr(m.decoder, "lanes", ())) == 2
                         and "base" in m.decoder.lanes for m in methods):  # type: ignore[union-attr]
        raise SettingsError("--avoid steers away through the base lane; add a method that "
                            "contrasts with it (contrastive, amulet, pad or recommended).")
    sweeps = [parse_sweep(text) for text in args.sweep or []]
    methods = expand(methods, sweeps)
    if sweeps and args.judge is not None:
        raise SettingsError("--sweep and --judge cannot be combined; judge a chosen setting "
                            "in a run of its own.")
    if args.preferences is not None and not comma_list(args.preferences):
        raise SettingsError("--preferences names no preference; give one or more, separated "
                            "by commas, or leave it out for the default four.")
    named = [*comma_list(args.preferences or ""), *(args.preference or [])]
    if not named and not args.like:
        named = comma_list(DEFAULT_PREFERENCES)
    preferences = preference_specs(named, args.prompts) if named else []
    for spec in preferences:  # (the paper's sentence is not the library's the request checks)
        check_not_avoided(spec.name, avoid)
        check_not_avoided(spec.sentence, avoid)
    examples = like_from_args(args)
    if examples:  # Pref reads the examples in its prompt; the steering contrasts with base
        name = (args.like_name or Path(args.like[0]).resolve().parent.name).strip() or "like"
        if any(spec.name.lower() == name.lower() for spec in preferences):
            # (one name, two columns' rows: the tables would read them as one)
            raise SettingsError(f"The examples are named {name!r}, as a listed preference is; "
                                "give --like-name another name.")
        preferences.append(PreferenceSpec(name, str(like_sentence(examples)),
                                          examples=tuple(examples)))
    reference = (args.reference or DEFAULT_REFERENCE).strip().lower()
    if args.reference is not None and reference not in {m.name for m in methods}:
        raise SettingsError(f"--reference {args.reference.strip()} is not among the methods "
                            f"({', '.join(m.name for m in methods)}).")
    dataset = load_dataset(args.dataset).limited(args.limit).shard(*shard)
    config = GridConfig(dataset=dataset, methods=methods, preferences=preferences,
                        prompts=args.prompts, max_tokens=args.max_tokens, seed=args.seed,
                        sampling=sampling, reference=reference,
                        resamples=args.bootstrap, score_lanes=bool(sweeps) or args.score_lanes,
                        fluency_budget=args.fluency_budget,
                        avoid=tuple(avoid) if avoid else None)
    if args.judge is not None and config.reference not in {m.name for m in methods}:
        raise SettingsError(f"The judge compares {config.reference} with each method; add it "
                            "to --methods or choose --reference.")
    scorers = make_scorers(names)
    judge_path = None
    if args.judge is not None:
        from localpref.models import resolve_model

        if not args.judge.strip():
            raise SettingsError("--judge needs a model: a GGUF path or a model name.")
        judge_path = resolve_model(args.judge)  # fails now, before any generation

    from localpref.commands.options import load_model
    from localpref.evaluation.grid import check_not_busy
    from localpref.evaluation.records import make_output_folder

    check_parallel(args.parallel)
    if args.parallel > 1 and args.ray is not None:
        raise SettingsError("--parallel is for this machine; with --ray each actor decodes "
                            f"{RAY_PARALLEL} at once.")
    if not args.out.strip():
        raise SettingsError("--out needs a folder name.")
    make_output_folder(Path(args.out))  # before the model loads: a bad --out fails at once
    check_not_busy(Path(args.out))  # (and one another run writes)
    model = load_model(args, system_prompt=config.system_prompt,
                       max_lanes=max(4, 2 * args.parallel), max_queued=max(16, args.parallel))
    judge = None
    if judge_path is not None:
        judge = _judge_factory(model, judge_path, args)
    termination = Termination()  # (the one the handler sets is bound below)
    try:
        with contextlib.ExitStack() as stack:
            # SIGTERM (kill, systemd, a CI timeout) stops the run as Ctrl-C does, exit code
            # 143, through the finally blocks that stop a local Ray (by default Python died at
            # once), while Ray starts too
            termination = stack.enter_context(terminate_as_exit())
            generations, chunk = None, 64
            if args.ray is not None:
                stack.enter_context(ray_notices_dropped())
                pool = stack.enter_context(ray_pool(args, config.system_prompt))
                generations = functools.partial(pool.map, method="generate")
                chunk = 4 * args.ray_actors * RAY_PARALLEL
            elif args.parallel > 1:
                generations, chunk = local_generations(model, args.parallel), 4 * args.parallel
            evaluation = Evaluation(config, model, Path(args.out), scorers, judge=judge,
                                    progress=not args.no_progress, generations=generations,
                                    chunk=chunk)
            if args.ray is None:  # with Ray, Ctrl-C is pressed until Ray lets one through
                stack.enter_context(interrupt_once())
            summary = evaluation.run()
    except (KeyboardInterrupt, SystemExit) as stop:
        # (Ray's wait turns a SIGTERM's SystemExit(143) into SystemExit(1))
        code = termination.exit_code_of(stop)
        if code is None:
            raise
        say_stopped(f"the finished answers are kept in {args.out}; run the same command "
                    "to continue")
        model.close()
        if args.ray is not None:
            # Ray stopped, the model closed: only the interpreter's own exit is left, which
            # Ray's threads crashed after an interrupted start (as in ``batch``)
            sys.stdout.flush()
            os._exit(code)
        return code
    print(_main_table(summary))
    extra = f", {evaluation.judged} judged pairs" if judge_path is not None else ""
    if evaluation.failed:
        extra += (f", {evaluation.failed} failed (see summary.md; the same command tries them "
                  "again)")
    answers = "answer" if evaluation.generated == 1 else "answers"
    print(f"{evaluation.generated} new {answers}{extra}; summary in {summary}", file=sys.stderr)
    from localpref.evaluation.judge import LOW_COVERAGE

    if evaluation.judge_coverages and median(evaluation.judge_coverages) < LOW_COVERAGE:
        print(f"localpref: warning: the judge put a median {median(evaluation.judge_coverages):.2g}"
              " of its probability on answering the question at all (\"Text 1\", \"Text 2\" "
              "or \"Tie\"), so its verdicts say little; use a stronger instruction model with "
              "--judge.", file=sys.stderr)
    return 0


def ray_pool(args: argparse.Namespace, system_prompt: str) -> Any:
    """The Ray actors of ``--ray``, each with the model loaded with ``system_prompt``."""
    from localpref.batches.ray_runner import RayPool, RaySettings
    from localpref.commands.options import load_settings

    loading = load_settings(args)
    return RayPool(RaySettings(
        address=args.ray or None, actors=args.ray_actors, cpus_per_actor=args.ray_cpus_per_actor,
        parallel=RAY_PARALLEL, model=args.model, system_prompt=system_prompt, **loading))


def _judge_factory(model: Any, path: Path, args: argparse.Namespace) -> Any:
    """The judge, loaded when the first pair needs it (the model under test if it is the same
    file); a load failure is one sentence, and the rows already written stay."""
    from localpref.evaluation.grid import LazyJudge

    def make() -> Any:
        from localpref.api import Model
        from localpref.evaluation import PairwiseJudge

        if Path(path).resolve() == Path(model.path).resolve():
            return PairwiseJudge(model)
        judge_model = Model(path, n_gpu_layers=args.gpu_layers, max_lanes=3,
                            n_threads=args.threads)
        return PairwiseJudge(judge_model)

    return LazyJudge(Path(path).name, make)


def _main_table(summary: Path) -> str:
    """The "Preference scores" section of a summary, for the terminal."""
    text = summary.read_text(encoding="utf-8")
    start = text.find("## Preference scores")
    end = text.find("\n## ", start + 1)
    return text[start:end].strip() if start >= 0 else text


def run_merge(args: argparse.Namespace) -> int:
    """``localpref eval merge DIR... --out DIR``."""
    from localpref.evaluation import make_scorers, merge_outputs, scorer_names

    summary = merge_outputs(args.folders, args.merge_out,
                            scorers=make_scorers(scorer_names(None)),
                            reference=(args.merge_reference.strip().lower()
                                       if args.merge_reference is not None else None),
                            resamples=args.merge_bootstrap,
                            fluency_budget=args.merge_fluency_budget)
    print(_main_table(summary))
    count = len(args.folders)
    print(f"merged {count} folder{'' if count == 1 else 's'}; summary in {summary}",
          file=sys.stderr)
    return 0
