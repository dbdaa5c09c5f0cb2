"""Model ids, error mapping and SSE framing of the server, without starting one."""

from __future__ import annotations

import asyncio
import json
import shutil
from pathlib import Path

import pytest

from localpref.decoding import Result
from localpref.errors import BusyError, ModelError, PromptTooLongError, SettingsError
from localpref.server import completions
from localpref.server.errors import from_library
from localpref.server.ids import (
    RequestedSteering,
    UnknownModelError,
    listed_ids,
    parse_model_id,
    served_model_id,
)
from localpref.server.jobs import GenerationJob
from localpref.server.streaming import frame, piece_frames, sse_choices, sse_events

ID = "smollm2-135m-instruct"


@pytest.mark.parametrize(("requested", "expected"), [
    (ID, RequestedSteering()),
    (f"{ID}:concise", RequestedSteering(None, "concise")),
    (f"{ID}:pad:uplifting", RequestedSteering("pad", "uplifting")),
    (f"{ID}:amulet:be%20brief%3A%20one%20line", RequestedSteering("amulet", "be brief: one line")),
    (f"{ID}:a%3Ab", RequestedSteering(None, "a:b")),
    (f"{ID}:base", RequestedSteering("base")), (f"{ID}:Base", RequestedSteering("base")),
    (f"{ID}:plain", RequestedSteering(None, "plain")),  # an alias is a word a user may mean
    (f"{ID}:base:concise", RequestedSteering("base", "concise")),
    (f"{ID}:padded", RequestedSteering(None, "padded")),
])
def test_model_ids_parse_to_a_method_and_a_preference(requested, expected) -> None:
    assert parse_model_id(requested, ID) == expected


@pytest.mark.parametrize(("requested", "error"), [
    ("gpt-4o", UnknownModelError), (f"{ID}x:concise", UnknownModelError),
    ("/etc/passwd", UnknownModelError), (f"{ID}:", SettingsError),
    (f"{ID}:%20%20", SettingsError), (f"{ID}::concise", SettingsError),
    # bytes that are not UTF-8 were replacement characters the model read as the preference
    (f"{ID}:%FF", SettingsError), (f"{ID}:amulet:%ED%A0%80", SettingsError),
    (f"{ID}:%FF:concise", SettingsError),
    # a method's name with no preference (it was steered toward as the preference "pad")
    (f"{ID}:pad", SettingsError), (f"{ID}:Amulet", SettingsError),
    (f"{ID}:recommended", SettingsError), (f"{ID}:pref", SettingsError),
])
def test_other_models_and_empty_parts_are_refused(requested, error) -> None:
    with pytest.raises(error):
        parse_model_id(requested, ID)


def test_an_ollama_model_answers_to_its_name_without_the_default_tag() -> None:
    assert parse_model_id("tiny", "tiny:latest") == RequestedSteering()
    assert parse_model_id("tiny:latest:concise", "tiny:latest") == RequestedSteering(None,
                                                                                    "concise")
    for other in ("tiny:concise", "tin", "tiny:q4"):  # another tag is another model
        with pytest.raises(UnknownModelError):
            parse_model_id(other, "tiny:latest")
    with pytest.raises(UnknownModelError):  # only ollama's default tag may be left out
        parse_model_id("tiny", "tiny:q4")


def test_served_id_is_the_catalog_name_or_the_file_stem(bundled_path: Path,
                                                         tmp_path: Path) -> None:
    assert served_model_id(None, bundled_path) == ID
    assert served_model_id(str(bundled_path), bundled_path) == ID
    copy = tmp_path / "my-model.Q4_1.gguf"
    shutil.copyfile(bundled_path, copy)
    assert served_model_id(str(copy), copy) == "my-model.Q4_1"
    assert listed_ids(ID)[:3] == [ID, f"{ID}:creative", f"{ID}:verbose"]


def test_a_folder_s_own_model_is_named_by_its_file(bundled_path: Path, tmp_path: Path,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    """A folder here named like a catalog or store model serves its own file when that
    model is not on this machine: it was named as the catalog model, and an ``ollama:x``
    folder's was a "No ollama model" refusal after the load."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("OLLAMA_MODELS", str(tmp_path / "no-ollama"))
    for name in ("smollm2-1.7b-instruct", "ollama:x"):
        (tmp_path / name).mkdir()
        (tmp_path / name / "own.Q4.gguf").symlink_to(bundled_path)
        assert served_model_id(name, tmp_path / name / "own.Q4.gguf") == "own.Q4"
    assert served_model_id("smollm2-1.7b-instruct", tmp_path / "cached.gguf") == (
        "smollm2-1.7b-instruct")  # (the catalog model itself, found in the cache)


def test_library_errors_map_to_statuses() -> None:
    busy = from_library(BusyError("Too many requests are waiting."))
    assert (busy.status, busy.code, busy.headers["Retry-After"]) == (503, "queue_full", "2")
    assert from_library(PromptTooLongError("The prompt is 9 tokens long.")).status == 400
    engine = from_library(ModelError("All 8 lanes of the context are in use."))
    assert engine.status == 500 and engine.code == "model_error"  # never blames the client
    crash = from_library(RuntimeError("secret internals"))
    assert crash.status == 500 and "secret" not in crash.message


async def test_an_error_after_the_stream_began_is_a_data_error_then_done() -> None:
    job = GenerationJob(lambda: None, asyncio.get_running_loop())  # never begun
    await job.events.put(("error", SettingsError("Something went wrong.")))
    frames = [frame async for frame in sse_events(job, ("piece", "Hel"), model=ID, avoid=None,
                                                 include_usage=True)]
    assert frames[-1] == b"data: [DONE]\n\n"
    chunks = [json.loads(frame[6:]) for frame in frames[:-1]]
    assert chunks[0]["choices"][0]["delta"] == {"role": "assistant", "content": ""}
    assert chunks[1]["choices"][0]["delta"] == {"content": "Hel"}
    assert chunks[2] == {"error": {"message": "Something went wrong.", "type":
                                   "invalid_request_error", "param": None,
                                   "code": "invalid_value"}}
    assert job.cancelled


async def test_a_finished_stream_ends_with_finish_reason_usage_then_done() -> None:
    job = GenerationJob(lambda: None, asyncio.get_running_loop())
    result = Result(text="Hi.", tokens=[1, 2], stats={"stop_reason": "length",
                                                      "n_prompt_tokens": 7, "method": "base",
                                                      "cached_tokens": 5})
    await job.events.put(("done", result))
    frames = [frame async for frame in sse_events(job, ("piece", "Hi."), model=ID, avoid=None,
                                                 include_usage=True)]
    chunks = [json.loads(frame[6:]) for frame in frames[:-1]]
    assert chunks[2]["choices"][0]["finish_reason"] == "length"
    assert chunks[2]["localpref"]["method"] == "base"
    assert chunks[3]["choices"] == []
    assert chunks[3]["usage"] == {"prompt_tokens": 7, "completion_tokens": 2, "total_tokens": 9,
                                  "prompt_tokens_details": {"cached_tokens": 5}}


async def test_pieces_read_together_are_one_frame_and_the_end_follows_them() -> None:
    """The loop reads a stream's pieces a few milliseconds apart in one drain
    (``jobs.LoopWaker``): they go out as one content chunk, in order, then the end."""
    job = GenerationJob(lambda: None, asyncio.get_running_loop())
    for piece in [" wor", "ld", "!"]:
        await job.events.put(("piece", piece))
    result = Result(text="Hello world!", tokens=[1, 2, 3, 4], stats={"stop_reason": "eos"})
    await job.events.put(("done", result))
    await job.events.put(("piece", "never read"))  # nothing after the end is sent
    frames = [frame async for frame in sse_events(job, ("piece", "Hello"), model=ID,
                                                 avoid=None, include_usage=False)]
    chunks = [json.loads(frame[6:]) for frame in frames[:-1]]
    assert [c["choices"][0]["delta"] for c in chunks[:2]] == [
        {"role": "assistant", "content": ""}, {"content": "Hello world!"}]
    assert chunks[2]["choices"][0]["finish_reason"] == "stop" and len(chunks) == 3
    assert frames[-1] == b"data: [DONE]\n\n"


async def test_choices_read_together_are_one_frame_each_and_the_usage_counts_the_prompt_once(
        ) -> None:
    """``n`` > 1 streamed: what the loop read in one drain goes out as one frame a choice,
    in each choice's order, a choice's end after its text; usage after the last end."""
    events: asyncio.Queue = asyncio.Queue()
    done = [Result(text=text, tokens=[1] * size, stats={"stop_reason": "eos",
                                                         "n_prompt_tokens": 7})
            for text, size in (("Hello world", 3), ("Hi!", 2))]
    for item in [(1, ("piece", "!")), (0, ("piece", " wor")), (0, ("piece", "ld")),
                 (1, ("done", done[1])), (0, ("done", done[0]))]:
        events.put_nowait(item)
    closed: list[bool] = []
    frames = [frame async for frame in sse_choices(
        events, (0, ("piece", "Hello")), 2, model=ID, avoid=None, include_usage=True,
        on_close=lambda: closed.append(True))]
    chunks = [json.loads(frame[6:]) for frame in frames[:-1]]
    shown = [(c["choices"][0]["index"], c["choices"][0]["delta"], c["choices"][0]["finish_reason"])
             if c["choices"] else c["usage"]["completion_tokens"] for c in chunks]
    assert shown == [(0, {"role": "assistant", "content": ""}, None),
                     (1, {"role": "assistant", "content": ""}, None),
                     (1, {"content": "!"}, None), (1, {}, "stop"),
                     (0, {"content": "Hello world"}, None), (0, {}, "stop"), 5]
    assert chunks[-1]["usage"]["prompt_tokens"] == 7 and closed == [True]
    assert frames[-1] == b"data: [DONE]\n\n"


@pytest.mark.parametrize("shape", [completions.CHAT, completions.TEXT])
def test_a_piece_frame_is_the_chunk_frame_byte_for_byte(shape: completions.Shape) -> None:
    # a model id a client sent with the placeholder in it: the text is still placed right
    common = {"model": f"{ID}:be brief \x00piece\x00", "ident": shape.new_id(),
              "created": 1764892800, "shape": shape}
    piece_frame = piece_frames(**common)
    for text in ["Hel", "", ' "quoted" \\ back', "line\nbreak\ttab", "caf\u00e9 \u2603 \U0001f33f",
                 "\x00piece\x00", "\x01\x1f control", "</script>"]:
        assert piece_frame(text) == frame(completions.chunk(**common, delta={"content": text}))
        assert json.loads(piece_frame(text)[6:])["choices"][0][
            "delta" if shape.chat else "text"] == ({"content": text} if shape.chat else text)
