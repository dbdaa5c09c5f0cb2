"""`localpref batch` on one machine: the same answers as `localpref serve` for the same bodies
(real HTTP, the openai SDK), error lines with the server's status and message, the file format,
resume and the command line."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import openai
import pytest
from batch_helpers import (
    CHAT,
    TEXT,
    chat,
    essentials,
    line,
    mixed_lines,
    read_answers,
    write_batch,
)
from server_helpers import MODEL_ID, request, running_server, sdk_client

import localpref
from localpref.api import Model
from localpref.batches.lines import (
    DIGEST_ID,
    BatchFileError,
    BatchLine,
    answer_line,
    lanes_bound,
    parse_lines,
    read_lines,
    request_id,
)
from localpref.batches.output import AnswerFile
from localpref.batches.ray_runner import check_reachable
from localpref.batches.recorder import Recorder
from localpref.bench.batch_files import bench_batch, format_batch
from localpref.cli import main
from localpref.errors import ModelError


def served_answer(client: openai.OpenAI, url: str, item: dict) -> dict:
    """What the server answers to one batch line: status and JSON body, as a batch line."""
    body = item["body"]
    if item["url"] not in (CHAT, TEXT) or item["method"] != "POST":
        raw = request(url, item["method"], item["url"].removeprefix("/v1"), body=body)
        status, payload = raw.status, raw.json()
    else:
        fields = dict(body)
        try:
            if item["url"] == TEXT:
                answer = client.completions.with_raw_response.create(
                    model=fields.pop("model"), prompt=fields.pop("prompt"), extra_body=fields)
            else:
                answer = client.chat.completions.with_raw_response.create(
                    model=fields.pop("model"), messages=fields.pop("messages"),
                    extra_body=fields)
            status, payload = answer.status_code, answer.http_response.json()
        except openai.APIStatusError as error:
            status, payload = error.status_code, error.response.json()
    error = None
    if status != 200:
        error = {"code": payload["error"]["code"], "message": payload["error"]["message"]}
    return {"custom_id": item["custom_id"], "response": {"status_code": status, "body": payload},
            "error": error}


def test_a_mixed_file_is_answered_exactly_as_the_server_answers_each_body(batch_model, tmp_path):
    items = mixed_lines()
    with running_server(batch_model) as server:
        client = sdk_client(server.url)
        expected = [served_answer(client, server.url, item) for item in items]
    source = write_batch(tmp_path / "in.jsonl", items)
    summary = localpref.batch(source, tmp_path / "out.jsonl", model=batch_model, parallel=4,
                              progress=False)
    answers = read_answers(tmp_path / "out.jsonl")
    assert [a["custom_id"] for a in answers] == [item["custom_id"] for item in items]
    assert [essentials(a) for a in answers] == [essentials(e) for e in expected]
    bad = [item["custom_id"] for item in items if item["custom_id"].startswith("bad-")]
    assert summary.done == len(items) and summary.failed == len(bad) and summary.skipped == 0
    statuses = {a["custom_id"]: a["response"]["status_code"] for a in answers}
    assert {statuses[name] for name in bad} == {400, 404, 405}
    assert statuses["bad-model"] == 404 and statuses["bad-method"] == 405
    objects = {a["custom_id"]: a["response"]["body"].get("object") for a in answers}
    assert objects["text-1"] == "text_completion" and objects["plain-1"] == "chat.completion"
    by_id = {a["custom_id"]: a["response"]["body"] for a in answers}
    assert by_id["logprobs-1"]["choices"][0]["logprobs"]["content"]
    assert by_id["text-steered"]["choices"][0]["logprobs"]["tokens"]
    assert [c["index"] for c in by_id["n-choices"]["choices"]] == [0, 1, 2]
    good = [a for a in answers if a["response"]["status_code"] == 200]
    assert summary.tokens == sum(a["response"]["body"]["usage"]["completion_tokens"]
                                 for a in good) > 0
    for answer in answers:
        assert answer["id"].startswith("batch_req_")
        assert answer["response"]["request_id"].startswith("req_")
        assert (answer["error"] is None) == (answer["response"]["status_code"] == 200)
    ids = [a["id"] for a in answers] + [a["response"]["request_id"] for a in answers]
    assert len(set(ids)) == len(ids)


def test_a_line_without_a_url_or_an_object_body_is_an_error_line(batch_model, tmp_path):
    items = [{"custom_id": "no-url", "body": chat("Hi", tokens=3)},
             line("fine", chat("Hi", tokens=3)), line("list-body", ["Hi"]),
             line("null-body", None), {"custom_id": "no-body", "url": "/v1/chat/completions"}]
    source = write_batch(tmp_path / "in.jsonl", items)
    summary = localpref.batch(source, tmp_path / "out.jsonl", model=batch_model, progress=False)
    no_url, fine, *no_object = read_answers(tmp_path / "out.jsonl")
    assert (summary.done, summary.failed) == (5, 4)
    for answer in no_object:  # not a field of a body that is not there
        assert answer["response"]["status_code"] == 400
        assert answer["response"]["body"]["error"]["message"] == (
            "The request body must be a JSON object.")
    assert no_url["response"]["status_code"] == 400
    error = no_url["response"]["body"]["error"]
    assert error["param"] == "url" and "/v1/chat/completions" in error["message"]
    assert no_url["error"]["message"] == error["message"]
    assert fine["response"]["body"]["choices"][0]["message"]["content"] == batch_model.generate(
        "Hi", max_tokens=3).text


def test_a_body_over_the_servers_limit_gets_the_servers_413(batch_model, tmp_path):
    """The server refuses a body over 1 MiB before reading it; a batch line is answered as
    the server would answer its body, not tokenized at length for a 400."""
    items = [line("huge", chat("x " * 600_000, tokens=3)), line("fine", chat("Hi", tokens=3)),
             line("just-under", chat("y" * ((1 << 20) - 200), tokens=3))]
    source = write_batch(tmp_path / "in.jsonl", items)
    localpref.batch(source, tmp_path / "out.jsonl", model=batch_model, progress=False)
    huge, fine, under = read_answers(tmp_path / "out.jsonl")
    assert huge["response"]["status_code"] == 413
    assert huge["response"]["body"]["error"]["code"] == "request_too_large"
    assert huge["error"]["message"] == "The request body is over 1024 KiB."
    assert fine["response"]["status_code"] == 200
    assert under["response"]["status_code"] == 400  # weighed, then too long for the window
    assert under["response"]["body"]["error"]["code"] == "context_length_exceeded"
    assert under["response"]["body"]["error"]["param"] == "messages"


def test_the_prompt_too_long_among_several_is_named_by_its_index(batch_model, tmp_path):
    """As the server names it: prompt[1], not prompt."""
    body = {"model": MODEL_ID, "prompt": ["Hi", "word " * (batch_model.n_ctx + 20)],
            "max_tokens": 2}
    source = write_batch(tmp_path / "in.jsonl", [line("two", body, url=TEXT)])
    localpref.batch(source, tmp_path / "out.jsonl", model=batch_model, progress=False)
    (answer,) = read_answers(tmp_path / "out.jsonl")
    error = answer["response"]["body"]["error"]
    assert (answer["response"]["status_code"], error["code"], error["param"]) == (
        400, "context_length_exceeded", "prompt[1]")


def test_a_lone_surrogate_in_a_body_is_a_400_line_not_a_crash(batch_model, tmp_path):
    """Weighing the body encoded it as UTF-8, which a lone surrogate cannot be: a 500 line
    and a traceback, retried at every run. It is the server's 400 now, said once."""
    items = [line("bad", chat("Hi \ud800")), line("fine", chat("Hi", tokens=3))]
    source = write_batch(tmp_path / "in.jsonl", items)
    summary = localpref.batch(source, tmp_path / "out.jsonl", model=batch_model, progress=False)
    bad, fine = read_answers(tmp_path / "out.jsonl")
    assert (bad["response"]["status_code"], fine["response"]["status_code"]) == (400, 200)
    assert bad["error"]["message"] == ("The message is not valid Unicode text: it holds a lone "
                                       "surrogate (U+D800); send UTF-8 text.")
    assert summary.failed == 1


def test_rerunning_skips_answered_lines_and_unordered_keeps_finishing_order(batch_model, tmp_path):
    items = [line("one", chat("Name a fruit.", tokens=4)),
             line("two", chat("Name a tree.", tokens=4)),
             line("three", chat("Hi", model="not-served"))]
    source = write_batch(tmp_path / "in.jsonl", items)
    out = tmp_path / "out.jsonl"
    # A run that answered "two" and was stopped while writing "one": half a line at the end.
    part = write_batch(tmp_path / "part.jsonl", items[1:2])
    first = localpref.batch(part, out, model=batch_model, progress=False)
    assert first.done == 1
    kept = out.read_text(encoding="utf-8")
    out.write_text(kept + '{"id": "batch_req_cut", "custom_id": "one", "resp',
                   encoding="utf-8")
    summary = localpref.batch(source, out, model=batch_model, parallel=2, progress=False,
                              unordered=True)
    assert (summary.done, summary.skipped, summary.failed) == (2, 1, 1)
    answers = read_answers(out)
    assert answers[0] == json.loads(kept)  # the line written before is kept as it was
    assert sorted(a["custom_id"] for a in answers) == ["one", "three", "two"]
    again = localpref.batch(source, out, model=batch_model, progress=False)
    assert (again.done, again.skipped) == (0, 3)
    assert [a["custom_id"] for a in read_answers(out)] == ["one", "two", "three"]


def test_an_answer_to_an_edited_or_another_files_line_is_refused_not_taken(batch_model,
                                                                           tmp_path) -> None:
    """Resuming matched answers by custom_id alone: a file B whose 'request-1' asked another
    question got file A's answer, '0 done, 2 answered before', exit 0. An error line whose
    request was since fixed is answered again."""
    out = tmp_path / "out.jsonl"
    fruit, broken = line("request-1", chat("Name a fruit.", tokens=4)), \
        line("request-2", chat("Hi", model="not-served"))
    first = localpref.batch(write_batch(tmp_path / "a.jsonl", [fruit, broken]), out,
                            model=batch_model, progress=False)
    assert (first.done, first.failed) == (2, 1)
    written = out.read_bytes()
    for answer, item in zip(read_answers(out), [fruit, broken], strict=True):
        (parsed,) = parse_lines(json.dumps(item))
        assert answer["response"]["request_id"] == request_id(parsed)
        assert DIGEST_ID.fullmatch(answer["response"]["request_id"])
    other = write_batch(tmp_path / "b.jsonl", [line("request-1", chat("Name a tree.",
                                                                      tokens=4)), broken])
    with pytest.raises(BatchFileError) as refused:
        localpref.batch(other, out, model=batch_model, progress=False)
    assert str(refused.value) == (
        f"{out} holds answers to other requests under 1 of this file's custom_ids "
        "('request-1'): those lines changed since they were answered, or the answers are "
        "another file's; give another --out, or delete those answers from it to answer the "
        "lines again.")
    assert out.read_bytes() == written  # nothing cut, nothing added
    fixed = write_batch(tmp_path / "c.jsonl", [fruit, line("request-2", chat("Hi", tokens=2))])
    again = localpref.batch(fixed, out, model=batch_model, progress=False)
    assert (again.done, again.skipped, again.failed) == (1, 1, 0)
    answers = read_answers(out)
    assert [a["custom_id"] for a in answers] == ["request-1", "request-2"]
    assert answers[0] == json.loads(written.splitlines()[0])
    assert answers[1]["response"]["status_code"] == 200


def test_a_loaded_model_with_a_small_queue_answers_a_parallel_far_above_it(bundled_path,
                                                                            tmp_path) -> None:
    """parallel=40 on a loaded Model of 4 lanes and a queue of 16 turned 38 of 60 lines into
    503 queue_full error lines: the batch is the model's own client and now waits."""
    items = [line(f"n{i}", chat(f"Name a colour ({i}).", tokens=3)) for i in range(12)]
    source = write_batch(tmp_path / "in.jsonl", items)
    with Model(bundled_path, max_lanes=2, max_queued=1, n_ctx=512) as small:
        crowded = localpref.batch(source, tmp_path / "crowded.jsonl", model=small, parallel=8,
                                  progress=False)
        alone = localpref.batch(source, tmp_path / "alone.jsonl", model=small, parallel=1,
                                progress=False)
    assert (crowded.done, crowded.failed) == (12, 0) == (alone.done, alone.failed)
    texts = {path: [a["response"]["body"]["choices"][0]["message"]["content"]
                    for a in read_answers(tmp_path / path)] for path in ("crowded.jsonl",
                                                                         "alone.jsonl")}
    assert texts["crowded.jsonl"] == texts["alone.jsonl"] and all(texts["alone.jsonl"])


def test_an_edited_line_whose_new_answer_is_a_retried_error_is_answered_again(
        tmp_path) -> None:
    """The newest line of a custom_id decides: an older final 404 counted it answered for
    good though its edited request's newer line was a too_many_lanes to retry."""
    def request(model: str) -> BatchLine:
        (parsed,) = parse_lines(json.dumps(line("r2", chat("Hi", model=model))))
        return parsed

    old, new = request("not-served"), request("another")
    out = tmp_path / "out.jsonl"
    out.write_text(
        json.dumps(answer_line(old, 404, {"error": {"code": "model_not_found",
                                                    "message": "no"}})) + "\n"
        + json.dumps(answer_line(new, 400, {"error": {"code": "too_many_lanes",
                                                      "message": "m"}})) + "\n",
        encoding="utf-8")
    recorder = Recorder([new], out, progress=False)
    assert [pending.custom_id for pending in recorder.pending] == ["r2"]
    recorder.close()


def test_an_idle_chat_keeping_every_lane_is_no_wait_and_no_503(bundled_path,
                                                                tmp_path) -> None:
    """A batch waits while the queue holds work that will end; with nothing running and an
    idle chat keeping every lane of a model that queues nothing, it waited forever, then
    answered the line 503. The queue now takes the idle chat's lanes as free, as the
    admission does: the line is answered."""
    source = write_batch(tmp_path / "in.jsonl", [line("one", chat("Hi", tokens=2))])
    with Model(bundled_path, max_lanes=2, max_queued=0, n_ctx=512) as small:
        idle = small.chat(preference="concise", max_tokens=2)
        idle.send("Hi")
        try:
            summary = localpref.batch(source, tmp_path / "out.jsonl", model=small,
                                      progress=False)
        finally:
            idle.close()
    (answer,) = read_answers(tmp_path / "out.jsonl")
    assert (summary.done, summary.failed) == (1, 0)
    assert answer["response"]["status_code"] == 200
    assert answer["response"]["body"]["usage"]["completion_tokens"] >= 1


def test_answers_written_before_request_ids_were_digests_still_count(batch_model,
                                                                     tmp_path) -> None:
    out = tmp_path / "out.jsonl"
    old = {"id": "batch_req_x", "custom_id": "one", "response": {
        "status_code": 200, "request_id": "req_" + "0" * 32, "body": {}}, "error": None}
    out.write_text(json.dumps(old) + "\n", encoding="utf-8")
    source = write_batch(tmp_path / "in.jsonl", [line("one", chat("Name a fruit.", tokens=4))])
    summary = localpref.batch(source, out, model=batch_model, progress=False)
    assert (summary.done, summary.skipped) == (0, 1)


def test_repeated_custom_ids_are_one_sentence_naming_both_lines() -> None:
    text = "\n".join(json.dumps(line(name, chat("Hi"))) for name in ("a", "b", "a"))
    with pytest.raises(BatchFileError, match=r"^The custom_id 'a' is on lines 1 and 3 of x; "):
        parse_lines(text, name="x")


@pytest.mark.parametrize(("text", "problem"), [
    ("{not json", "Line 2 of x is not valid JSON."),
    ('\ufeff{"custom_id": "b"}', "Line 2 of x begins with a byte-order mark (U+FEFF), as a "
                                 "file saved with one does; remove it."),
    ("[1, 2]", "Line 2 of x is not a JSON object."),
    ('{"url": "/v1/chat/completions"}', "Line 2 of x has no custom_id"),
    ('{"custom_id": ""}', "Line 2 of x has no custom_id"),
    ('{"custom_id": 17}', "The custom_id on line 2 of x is 17, not a string; write it in "
                          "quotes."),
    # valid JSON Python's reader refuses: a traceback before
    ('{"custom_id": "b", "body": {"max_tokens": ' + "9" * 4400 + "}}",
     "Line 2 of x is not JSON localpref reads: it holds a number of more than 4,300 digits."),
    ("[" * 100_000 + "]" * 100_000,
     "Line 2 of x is not JSON localpref reads: its arrays or objects nest too deeply."),
])
def test_a_line_that_cannot_be_read_stops_the_file_before_anything_runs(text, problem) -> None:
    with pytest.raises(BatchFileError) as caught:
        parse_lines(json.dumps(line("a", chat("Hi"))) + "\n" + text + "\n\n", name="x")
    assert str(caught.value).startswith(problem)


def test_an_answers_file_under_a_file_names_the_file_in_the_way(tmp_path, capsys) -> None:
    source = write_batch(tmp_path / "in.jsonl", [line("a", chat("Hi"))])
    (tmp_path / "notes").write_text("mine", encoding="utf-8")
    out = tmp_path / "notes" / "sub" / "out.jsonl"
    assert main(["batch", str(source), "--out", str(out), "--threads", "1"]) == 2
    assert capsys.readouterr().err == (
        f"localpref: Cannot open the lock file of {out}, {out.parent / '.out.jsonl.lock'}: "
        f"{tmp_path / 'notes'} is a file, not a folder.\n")
    assert (tmp_path / "notes").read_text(encoding="utf-8") == "mine"


def test_a_null_url_or_method_is_read_as_missing() -> None:
    """A null url was the route 'None' (a 404); it is a missing url (a 400 naming url). An
    empty method was a 405 saying "does not accept ."; it is a missing one, POST."""
    for method in (None, ""):
        (read,) = parse_lines(json.dumps({"custom_id": "a", "method": method, "url": None,
                                          "body": chat("Hi")}))
        assert (read.method, read.url) == ("POST", "")


def test_a_url_with_a_query_or_a_trailing_slash_is_the_route_the_server_takes(
        batch_model, tmp_path) -> None:
    """The server answers /v1/chat/completions?x=1 (and redirects .../completions/ to the
    route); a batch line with either was a 404."""
    body = chat("Name a fruit.", tokens=3)
    source = write_batch(tmp_path / "in.jsonl", [
        line("plain", body), line("query", body, url=f"{CHAT}?x=1"),
        line("slash", body, url=f"{CHAT}/"), line("text", {**body, "prompt": "Hi"} | {
            "messages": None}, url=f"{TEXT}/?a=b"),
        line("other", body, url="/v1/chat/completions/x"),
        # a number where a string goes: said as such, not "There is no route POST 5." (404)
        {**line("url-5", body), "url": 5}, {**line("method-7", body), "method": 7}])
    out = tmp_path / "out.jsonl"
    localpref.batch(source, out, model=batch_model, progress=False)
    answers = {a["custom_id"]: a for a in read_answers(out)}
    text = answers["plain"]["response"]["body"]["choices"][0]["message"]["content"]
    for name in ("query", "slash"):
        assert answers[name]["response"]["status_code"] == 200
        assert answers[name]["response"]["body"]["choices"][0]["message"]["content"] == text
    assert answers["text"]["response"]["body"]["object"] == "text_completion"
    assert answers["other"]["response"]["status_code"] == 404
    for name, field, example in (("url-5", "url", "/v1/chat/completions"),
                                 ("method-7", "method", "POST")):
        response = answers[name]["response"]
        assert response["status_code"] == 400
        assert response["body"]["error"]["message"] == (
            f"The request's {field} must be a string, such as \"{example}\".")
        assert response["body"]["error"]["param"] == field


def test_a_runs_lanes_are_what_its_lines_could_use_at_once(tmp_path, monkeypatch) -> None:
    """A two-line file with --parallel 128 loaded 256 lanes (12 GB of cells on the bundled
    model); now as many as its lines left could take, and every line still fits."""
    import localpref.api

    weighted = chat("Name a fruit.", tokens=3, n=2,
                    localpref={"preference": {"concise": 1, "formal": 1, "uplifting": 1}})
    assert lanes_bound([BatchLine(0, "a", body=chat("Hi")),
                        BatchLine(1, "b", body=chat("Hi", model=f"{MODEL_ID}:concise")),
                        BatchLine(2, "c", body=weighted), BatchLine(3, "d", body=[1]),
                        BatchLine(4, "e", body={"model": f"{MODEL_ID}:a%2Cb", "n": 3,
                                                "prompt": ["x", "y"],
                                                "localpref": {"like": ["ok"]}})]) == (
        2 + 3 + 2 * (2 + 3) + 2 + 3 * 2 * (2 + 2 + 1))
    loaded: list[int] = []
    real_load = localpref.api.load

    def recording_load(*args, **kwargs):
        loaded.append(kwargs["max_lanes"])
        return real_load(*args, **kwargs)

    monkeypatch.setattr(localpref.api, "load", recording_load)
    source = write_batch(tmp_path / "in.jsonl", [line("plain", chat("Hi", tokens=2)),
                                                 line("weighted", weighted)])
    out = tmp_path / "out.jsonl"
    summary = localpref.batch(source, out, parallel=128, n_threads=1, progress=False)
    assert (summary.done, summary.failed) == (2, 0)
    assert loaded == [2 + 2 * (2 + 3)]
    assert all(a["response"]["status_code"] == 200 for a in read_answers(out))


def test_a_batch_file_that_is_a_folder_is_one_plain_sentence(tmp_path) -> None:
    with pytest.raises(BatchFileError) as caught:
        read_lines(tmp_path)
    assert str(caught.value) == f"Cannot read the batch file {tmp_path}: Is a directory."


def test_a_file_that_is_not_utf8_names_the_line(tmp_path) -> None:
    source = tmp_path / "latin1.jsonl"
    source.write_bytes(json.dumps(line("a", chat("Hi"))).encode() + b"\n"
                       + '{"custom_id": "b", "body": "café"}'.encode("latin-1") + b"\n")
    with pytest.raises(BatchFileError) as caught:
        read_lines(source)
    assert str(caught.value) == (f"Line 2 of {source} is not UTF-8 text (byte 0xe9); save the "
                                 "file as UTF-8.")
    source.write_bytes(b"\xef\xbb\xbf" + json.dumps(line("a", chat("Hi"))).encode() + b"\n")
    assert [request.custom_id for request in read_lines(source)] == ["a"]  # a BOM at the start
    source.write_bytes(json.dumps(line("a", chat("Hi"))).encode("utf-16"))  # PowerShell 5's >
    with pytest.raises(BatchFileError) as caught:
        read_lines(source)
    assert str(caught.value) == f"The batch file {source} is UTF-16 text; save it as UTF-8."


def _answer(custom_id: str) -> dict:
    return {"id": f"batch_req_{custom_id}", "custom_id": custom_id,
            "response": {"status_code": 200, "body": {}}, "error": None}


def _answer_c_and_sort(out) -> None:
    """Open an answers file holding a and b, write c, sort it c, b, a; check the file."""
    answers = AnswerFile(out)
    assert answers.answered == {"a", "b"}
    answers.write(_answer("c"))
    answers.sort(["c", "b", "a"])
    assert [json.loads(raw)["custom_id"] for raw in out.read_text().splitlines()] == [
        "c", "b", "a"]


def test_the_answers_file_drops_a_half_written_last_line_and_knows_what_is_answered(tmp_path):
    out = tmp_path / "out.jsonl"
    out.write_text(json.dumps(_answer("a")) + "\n" + json.dumps(_answer("b")) + "\n"
                   + '{"id": "batch_req_c", "custom_id": "c", "resp', encoding="utf-8")
    _answer_c_and_sort(out)
    out.write_text(json.dumps(_answer("a")) + "\ngarbage\n", encoding="utf-8")
    with pytest.raises(BatchFileError, match="Line 2 of .* is not an answer line"):
        AnswerFile(out)
    for refused in ('{"id": "batch_req_b", "custom_id": "b", "response": {"status_code": '
                    + "9" * 5000 + "}}", "[" * 100_000 + "]" * 100_000):  # a traceback before
        out.write_text(json.dumps(_answer("a")) + "\n" + refused + "\n" + json.dumps(_answer("c"))
                       + "\n", encoding="utf-8")
        with pytest.raises(BatchFileError, match="Line 2 of .* is not an answer line"):
            AnswerFile(out)
    # A request file given as --out by mistake is not appended to.
    out.write_text(json.dumps(line("a", chat("Hi"))) + "\n", encoding="utf-8")
    with pytest.raises(BatchFileError, match="Line 1 of .* is not an answer line"):
        AnswerFile(out)


@pytest.mark.parametrize("separators", [(", ", ": "), (",", ":")])
def test_a_whole_last_answer_without_its_line_end_is_kept(tmp_path, separators) -> None:
    """An editor that saved the file without its last line end: the answer stays, whatever
    the JSON's spacing, and the next answer starts a line of its own."""
    out = tmp_path / "out.jsonl"
    text = "\n".join(json.dumps(_answer(key), separators=separators) for key in "ab")
    out.write_text(text, encoding="utf-8")
    _answer_c_and_sort(out)
    out.write_text(json.dumps(_answer("a")) + "\n  ", encoding="utf-8")  # blanks after it
    assert AnswerFile(out).answered == {"a"}
    assert out.read_text(encoding="utf-8") == json.dumps(_answer("a")) + "\n"


@pytest.mark.parametrize("text", [
    "my notes line 1\nmy important last line",  # someone's file given as --out
    json.dumps(line("a", chat("Hi"))) + "\n" + json.dumps(line("b", chat("Ho"))),  # requests
    "one line without its end",
])
def test_a_file_that_is_not_an_answers_file_is_refused_untouched(tmp_path, text) -> None:
    out = tmp_path / "out.jsonl"
    out.write_text(text, encoding="utf-8")
    with pytest.raises(BatchFileError, match="is not an answer line; move the file away"):
        AnswerFile(out)
    assert out.read_text(encoding="utf-8") == text  # its last line is still there
    out.write_text(json.dumps(_answer("a")) + "\n" + '{"i', encoding="utf-8")  # cut very early
    assert AnswerFile(out).answered == {"a"}
    assert out.read_text(encoding="utf-8") == json.dumps(_answer("a")) + "\n"


def test_the_answers_file_follows_a_link_and_refuses_what_is_not_a_file(tmp_path) -> None:
    real = tmp_path / "real.jsonl"
    real.write_text(json.dumps(_answer("b")) + "\n", encoding="utf-8")
    link = tmp_path / "link.jsonl"
    link.symlink_to(real)
    answers = AnswerFile(link)
    assert answers.answered == {"b"}
    answers.write(_answer("a"))
    answers.sort(["a", "b"])
    assert link.is_symlink() and link.resolve() == real.resolve()  # the sort wrote through
    assert [json.loads(raw)["custom_id"] for raw in real.read_text().splitlines()] == ["a", "b"]
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    for path in (fifo, tmp_path, Path("/dev/full")):  # would hang, fail, or fill memory
        with pytest.raises(BatchFileError, match=r" is not a regular file; give a file's path"):
            AnswerFile(path)
    with pytest.raises(BatchFileError, match=r"^The batch file /dev/zero is a device, not a "):
        read_lines(Path("/dev/zero"))


def test_a_batch_file_may_start_with_a_byte_order_mark(tmp_path) -> None:
    source = tmp_path / "in.jsonl"
    source.write_bytes(b"\xef\xbb\xbf" + json.dumps(line("a", chat("Hi"))).encode() + b"\n")
    assert [item.custom_id for item in read_lines(source)] == ["a"]


def _error(custom_id: str, status: int, code: str) -> dict:
    return {**_answer(custom_id), "response": {"status_code": status, "body": {}},
            "error": {"code": code, "message": "x"}}


@pytest.mark.parametrize("order", [["d", "c", "b", "a"], None])
def test_errors_of_the_runs_flags_or_the_server_are_answered_again_and_replaced(
        tmp_path, order) -> None:
    out = tmp_path / "out.jsonl"
    lines = [_answer("a"), _error("b", 400, "invalid_value"), _error("c", 400, "too_many_lanes"),
             _error("d", 500, "model_error")]
    out.write_text("".join(json.dumps(line) + "\n" for line in lines), encoding="utf-8")
    answers = AnswerFile(out)
    assert answers.answered == {"a", "b"}  # b's body would be refused again; c and d not
    answers.write(_answer("d"))
    answers.write(_answer("c"))
    answers.sort(order)
    written = [json.loads(raw) for raw in out.read_text().splitlines()]
    assert [line["custom_id"] for line in written] == (order or ["a", "b", "d", "c"])
    assert {line["custom_id"]: line["response"]["status_code"] for line in written} == {
        "a": 200, "b": 400, "c": 200, "d": 200}


@pytest.mark.parametrize(("refused_id", "body", "small", "code"), [
    ("weighted", chat("Name a fruit.", tokens=3, localpref={
        "preference": {"concise": 1, "formal": 1, "uplifting": 1}}), 512, "too_many_lanes"),
    # the refusal asks for a larger --ctx; a run with one left the error line in place
    ("long", chat("word " * 400, tokens=2), 256, "context_length_exceeded"),
])
def test_a_line_refused_for_the_runs_flags_is_answered_by_a_run_with_others(
        bundled_path, batch_model, tmp_path, refused_id, body, small, code) -> None:
    source = write_batch(tmp_path / "in.jsonl", [line("plain", chat("Hi", tokens=2)),
                                                 line(refused_id, body)])
    out = tmp_path / "out.jsonl"
    with Model(bundled_path, max_lanes=2, n_ctx=small) as loaded:
        first = localpref.batch(source, out, model=loaded, parallel=1, progress=False)
    assert (first.done, first.failed) == (2, 1)
    refused = {a["custom_id"]: a for a in read_answers(out)}[refused_id]
    assert refused["error"]["code"] == code
    again = localpref.batch(source, out, model=batch_model, progress=False)
    assert (again.done, again.skipped, again.failed) == (1, 1, 0)
    answers = read_answers(out)
    assert [a["custom_id"] for a in answers] == ["plain", refused_id]
    assert answers[1]["response"]["status_code"] == 200 and answers[1]["error"] is None


def test_a_line_too_long_under_ctx_is_answered_by_a_plain_run(bundled_path, tmp_path) -> None:
    """Refused under --ctx 256, answered by a run with the default window."""
    source = write_batch(tmp_path / "in.jsonl", [line("plain", chat("Hi", tokens=2)),
                                                 line("long", chat("word " * 400, tokens=2))])
    out = tmp_path / "cli.jsonl"
    flags = ["batch", str(source), "--out", str(out), "--model", str(bundled_path),
             "--threads", "1", "--quiet"]
    assert main([*flags, "--ctx", "256"]) == 0
    assert [a["error"] is None for a in read_answers(out)] == [True, False]
    assert main(flags) == 0
    assert [a["error"] is None for a in read_answers(out)] == [True, True]


def test_lines_end_at_newlines_only_and_a_lone_surrogate_is_one_sentence(tmp_path) -> None:
    separators = "a\u2028b\u2029c\x85d\x0be\x0cf"  # str.splitlines() breaks at each
    text = json.dumps(line("one", chat(separators)), ensure_ascii=False) + "\r\n" + json.dumps(
        line("two", chat("Hi"))) + "\n"
    parsed = parse_lines(text, name="x")
    assert [p.custom_id for p in parsed] == ["one", "two"]
    assert parsed[0].body["messages"][0]["content"] == separators
    with pytest.raises(BatchFileError, match="custom_id on line 1 of x is not valid Unicode"):
        parse_lines('{"custom_id": "x\\ud800y", "body": {}}', name="x")
    # Answers holding such characters are read back as written, one line each.
    out = tmp_path / "out.jsonl"
    answers = AnswerFile(out)
    for custom_id in ("a\u2028b", "c"):
        answers.write({**_answer(custom_id), "error": {"message": "x\ud800 \u2029"}})
    answers.sort(["c", "a\u2028b"])
    assert AnswerFile(out).answered == {"a\u2028b", "c"}
    assert [json.loads(raw)["custom_id"] for raw in out.read_text().split("\n") if raw] == [
        "c", "a\u2028b"]


def test_the_command_refuses_a_bad_file_in_one_sentence(tmp_path, capsys) -> None:
    source = write_batch(tmp_path / "in.jsonl", [line("a", chat("Hi")), line("a", chat("Ho"))])
    assert main(["batch", str(source), "--out", str(tmp_path / "out.jsonl")]) == 2
    error = capsys.readouterr().err.strip()
    assert error.startswith("localpref: The custom_id 'a' is on lines 1 and 2 of ")
    assert "\n" not in error
    assert main(["batch", str(tmp_path / "missing.jsonl"), "--out", "o.jsonl"]) == 2
    assert "There is no batch file at" in capsys.readouterr().err
    hard_link = tmp_path / "also-in.jsonl"
    os.link(source, hard_link)
    for same in (source, hard_link):  # by its name, or by another name of the same file
        assert main(["batch", str(source), "--out", str(same)]) == 2
        assert capsys.readouterr().err.strip() == (
            "localpref: The answers file must not be the batch file itself.")
    assert source.read_text(encoding="utf-8").count("\n") == 2
    assert main(["batch", str(source), "--out", "o.jsonl", "--parallel", "0"]) == 2
    assert main(["batch", str(source), "--out", "o.jsonl", "--parallel", "300"]) == 2
    assert "--parallel must be from 1 to 128" in capsys.readouterr().err
    # `--ray IN.jsonl`: the file is the input (a local Ray), not Ray's address
    assert main(["batch", "--ray", str(source), "--out", "o.jsonl", "--parallel", "0"]) == 2
    assert "--parallel must be from 1 to" in capsys.readouterr().err
    assert main(["batch", "--out", "o.jsonl"]) == 2
    assert capsys.readouterr().err == (
        "localpref: Give the batch file: localpref batch IN.jsonl --out OUT.jsonl.\n")
    for empty in ("", " "):  # it read as the current folder: ". is not a regular file"
        assert main(["batch", str(source), "--out", empty]) == 2
        assert capsys.readouterr().err == "localpref: --out needs a file name (OUT.jsonl).\n"


def test_an_address_nobody_listens_at_is_one_sentence_at_once(tmp_path, capsys) -> None:
    with socket.socket() as listening:
        listening.bind(("127.0.0.1", 0))
        listening.listen()
        check_reachable(f"127.0.0.1:{listening.getsockname()[1]}")
        check_reachable(f"ray://127.0.0.1:{listening.getsockname()[1]}")
        check_reachable("auto")  # Ray's own words are Ray's
        check_reachable("local")
        check_reachable(f"ray://127.0.0.1:{listening.getsockname()[1]}/")
        port = listening.getsockname()[1]
    source = write_batch(tmp_path / "in.jsonl", [line("a", chat("Hi"))])
    # (Ray's own client retried for minutes: the sentence is localpref's check, made first)
    assert main(["batch", str(source), "--out", str(tmp_path / "out.jsonl"), "--ray",
                 f"127.0.0.1:{port}"]) == 2
    error = capsys.readouterr().err
    assert error.startswith(f"localpref: Cannot reach Ray at 127.0.0.1:{port}: ")
    assert "is the cluster's head running" in error and error.count("\n") == 1
    for bad in ("inf", "nan", "0"):
        assert main(["batch", str(source), "--out", str(tmp_path / "out.jsonl"), "--ray",
                     "--ray-cpus-per-actor", bad]) == 2
        assert "--ray-cpus-per-actor must be a number above 0" in capsys.readouterr().err


@pytest.mark.parametrize("address", [":", "garbage", "127.0.0.1:notaport", "http://x",
                                     "127.0.0.1:70000", "ray://:10001"])
def test_a_ray_address_of_no_form_is_one_sentence_and_leaves_no_answers_file(
        tmp_path, capsys, address) -> None:
    source = write_batch(tmp_path / "in.jsonl", [line("a", chat("Hi"))])
    out = tmp_path / "out.jsonl"
    assert main(["batch", str(source), "--out", str(out), "--ray", address]) == 2
    assert capsys.readouterr().err == (
        f"localpref: A Ray address is HOST:PORT (the head's port, 6379 unless it was started "
        f"with another), ray://HOST:PORT, auto or local, not '{address}'.\n")
    assert not out.exists()  # a run that answered nothing leaves no empty file behind


def test_a_model_that_is_not_there_or_not_gguf_leaves_no_folder_or_lock(
        tmp_path, capsys, empty_hf_cache) -> None:
    """The model was loaded after the answers file's folder and lock were made: a bad
    --model left both behind."""
    source = write_batch(tmp_path / "in.jsonl", [line("a", chat("Hi"))])
    not_gguf = tmp_path / "ds.json"
    not_gguf.write_text("{}")
    folder = tmp_path / "answers"
    for model, sentence in (("nope", "Unknown model 'nope'"),
                            (str(not_gguf), f"{not_gguf} is not a GGUF file")):
        assert main(["batch", str(source), "--out", str(folder / "o.jsonl"), "--threads", "1",
                     "--model", model]) == 2
        error = capsys.readouterr().err
        assert error.startswith(f"localpref: {sentence}") and error.count("\n") == 1
        assert not folder.exists()
    for model, sentence in (("nope", "Unknown model 'nope'"),
                            (not_gguf, f"{not_gguf} is not a GGUF file"),
                            (" ", "The model name is empty")):
        with pytest.raises(ModelError) as refused:
            localpref.batch(source, folder / "o.jsonl", model=model, progress=False)
        assert str(refused.value).startswith(sentence)
        assert not folder.exists()
    # an empty answers file answers nothing yet, and an empty batch file is no excuse
    folder.mkdir()
    (folder / "o.jsonl").touch()
    empty = tmp_path / "empty.jsonl"
    empty.write_text("")
    for requests in (source, empty):
        assert main(["batch", str(requests), "--out", str(folder / "o.jsonl"), "--model",
                     "nope"]) == 2
        assert capsys.readouterr().err.startswith("localpref: Unknown model 'nope'")
        assert sorted(path.name for path in folder.iterdir()) == ["o.jsonl"]


def test_a_finished_or_broken_file_is_said_before_the_model_is_looked_for(
        bundled_path, tmp_path, capsys, empty_hf_cache) -> None:
    """A file with nothing left to answer needs no model (a Hub one would be downloaded for
    nothing), and a broken line is the sentence, not the model."""
    source = write_batch(tmp_path / "in.jsonl", [line("a", chat("Hi", tokens=2))])
    out = tmp_path / "out.jsonl"
    assert main(["batch", str(source), "--out", str(out), "--model", str(bundled_path),
                 "--threads", "1", "--quiet"]) == 0
    capsys.readouterr()
    assert main(["batch", str(source), "--out", str(out), "--model", "nope", "--threads",
                 "1"]) == 0
    assert "1 answered before" in capsys.readouterr().err
    broken = tmp_path / "broken.jsonl"
    broken.write_text(source.read_text() + "not json\n")
    assert main(["batch", str(broken), "--out", str(tmp_path / "b" / "o.jsonl"), "--model",
                 "nope"]) == 2
    assert capsys.readouterr().err.startswith(f"localpref: Line 2 of {broken} is not valid")
    assert not (tmp_path / "b").exists()


@pytest.mark.parametrize("command", ["batch", "eval"])
def test_an_empty_ray_address_is_refused_and_ray_alone_is_a_local_ray(
        tmp_path, capsys, command) -> None:
    from localpref.cli import build_parser

    out = tmp_path / "out.jsonl"
    head = ["batch", "in.jsonl", "--out", str(out)] if command == "batch" else ["eval"]
    assert build_parser().parse_args([*head, "--ray"]).ray == ""
    assert build_parser().parse_args([*head, "--ray", "auto"]).ray == "auto"
    assert build_parser().parse_args(head).ray is None
    for blank in ("", "  "):  # a script's unset $RAY_ADDRESS
        with pytest.raises(SystemExit) as stopped:
            main([*head, "--ray", blank])
        assert stopped.value.code == 2
        assert capsys.readouterr().err == (
            "localpref: argument --ray: an empty address; give the cluster's address, or --ray "
            f"alone for a local Ray (see localpref {command} --help).\n")
    assert not out.exists()


def test_an_interrupted_run_keeps_an_answers_file_that_was_there(tmp_path) -> None:
    """Only a file the run made, and left empty, goes."""
    out = tmp_path / "out.jsonl"
    out.write_bytes(b"")
    source = write_batch(tmp_path / "in.jsonl", [line("a", chat("Hi"))])
    assert main(["batch", str(source), "--out", str(out), "--ray", ":"]) == 2
    assert out.exists()
    answers = AnswerFile(tmp_path / "new.jsonl")
    answers.write({"id": "x", "custom_id": "a", "response": {"status_code": 200}})
    answers.abandon()
    assert (tmp_path / "new.jsonl").read_text().count("\n") == 1


def test_importing_localpref_loads_neither_ray_nor_the_web_stack() -> None:
    code = ("import sys, localpref, localpref.cli; localpref.cli.build_parser(); "
            "print(sorted(m for m in ('ray', 'fastapi', 'uvicorn', 'starlette') "
            "if m in sys.modules))")
    output = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            check=True).stdout.strip()
    assert output == "[]"


def test_the_bench_batch_row_answers_every_request_to_its_length() -> None:
    report = bench_batch(None, requests=3, max_tokens=4, parallel=2, ray=False, n_threads=1)
    assert report["model"] and (report["requests"], report["max_tokens"]) == (3, 4)
    for run in ("sequential", "parallel"):
        assert report[run]["tokens"] == 12  # end tokens ignored: every answer is 4 tokens
        assert report[run]["tokens_per_s"] > 0 and report[run]["seconds"] > 0
    assert report["speedup"] == pytest.approx(
        report["parallel"]["tokens_per_s"] / report["sequential"]["tokens_per_s"], rel=1e-2)
    table = format_batch(report)
    assert "one after another" in table and "batch --parallel 2" in table
    assert "--ray" not in table


def test_ray_sizes_without_ray_are_one_sentence(tmp_path, capsys) -> None:
    """--ray-actors without --ray ran in one process and said nothing."""
    source = write_batch(tmp_path / "in.jsonl", [line("a", chat("Hi"))])
    for flags, named in ((["--ray-actors", "3"], "--ray-actors sizes"),
                         (["--ray-cpus-per-actor", "2"], "--ray-cpus-per-actor sizes"),
                         (["--ray-actors", "3", "--ray-cpus-per-actor", "2"],
                          "--ray-actors and --ray-cpus-per-actor size")):
        for command in (["batch", str(source), "--out", str(tmp_path / "out.jsonl")],
                        ["eval", "--dataset", str(source), "--out", str(tmp_path / "ev")]):
            assert main([*command, *flags]) == 2
            assert capsys.readouterr().err == (
                f"localpref: {named} the Ray actors of --ray; give --ray too (a cluster's "
                "address, or nothing for a local Ray).\n")
    assert not (tmp_path / "out.jsonl").exists() and not (tmp_path / "ev").exists()
