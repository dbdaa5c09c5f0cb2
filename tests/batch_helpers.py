"""Helpers of the batch tests: batch files written and answer files read."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from server_helpers import MODEL_ID

CHAT = "/v1/chat/completions"
TEXT = "/v1/completions"


def line(custom_id: str, body: Any, *, url: str = CHAT, method: str = "POST") -> dict[str, Any]:
    return {"custom_id": custom_id, "method": method, "url": url, "body": body}


def chat(text: str, model: str = MODEL_ID, tokens: int = 16, **fields: Any) -> dict[str, Any]:
    return {"model": model, "messages": [{"role": "user", "content": text}],
            "max_tokens": tokens, **fields}


def write_batch(path: Path, lines: list[dict[str, Any]]) -> Path:
    path.write_text("".join(json.dumps(item) + "\n" for item in lines), encoding="utf-8")
    return path


def read_answers(path: Path) -> list[dict[str, Any]]:
    return [json.loads(raw) for raw in path.read_text(encoding="utf-8").splitlines()]


def essentials(answer: dict[str, Any]) -> tuple[Any, ...]:
    """What two runs of the same greedy line must agree on (not ids, times or timings, nor
    the prompt tokens found in the cache, which depend on what ran before)."""
    response = answer["response"]
    body = response["body"]
    if response["status_code"] != 200:
        return answer["custom_id"], response["status_code"], body, answer["error"]
    extension = body["localpref"]
    choices = tuple((choice["index"],
                     choice["message"]["content"] if "message" in choice else choice["text"],
                     choice["finish_reason"], choice["logprobs"])
                    for choice in body["choices"])  # a text completion's prompts: several
    return (answer["custom_id"], 200, body["object"], body["model"], choices,
            {k: v for k, v in body["usage"].items() if k != "prompt_tokens_details"},
            extension["method"],
            extension["preference"], extension["avoid"], extension["stats"]["settings"])


def mixed_lines(tokens: int = 16) -> list[dict[str, Any]]:
    """Plain, steered and bad lines (the bad ones as the server would refuse them)."""
    return [
        line("plain-1", chat("Name a fruit.", tokens=tokens)),
        line("steered-1", chat("Name a fruit.", model=f"{MODEL_ID}:concise", tokens=tokens)),
        line("bad-model", chat("Hi", model="not-served")),
        line("plain-2", chat("What is rain?", tokens=tokens, stop=["."])),
        line("steered-2", chat("Describe the sea.", model=f"{MODEL_ID}:amulet:uplifting",
                               tokens=tokens)),
        line("bad-empty", {"model": MODEL_ID, "messages": []}),
        line("steered-3", chat("Say hello.", tokens=tokens,
                               localpref={"preference": "formal", "method": "pad"})),
        line("bad-temperature", chat("Hi", temperature=-1)),
        line("steered-4", chat("Give me a tip for sleep.", tokens=tokens,
                               localpref={"preference": "concise", "avoid": "verbose"})),
        line("plain-3", {"model": MODEL_ID, "max_completion_tokens": tokens, "messages": [
            {"role": "developer", "content": "Answer in French."},
            {"role": "user", "content": [{"type": "text", "text": "Say thanks."}]}]}),
        line("bad-route", chat("Hi"), url="/v1/embeddings"),
        line("steered-5", chat("What is a cat?", model=f"{MODEL_ID}:humorous", tokens=tokens,
                               localpref={"strength": 0.5})),
        line("bad-n", chat("Hi", n=0)),
        line("plain-4", chat("Count to three.", tokens=tokens, top_k=1)),
        line("bad-method", chat("Hi"), method="GET"),
        line("steered-6", chat("Tell me about tea.", tokens=tokens,
                               localpref={"preference": "explain like I am five"})),
        line("bad-localpref", chat("Hi", localpref={"method": "no-such-method"})),
        line("plain-5", chat("Name a colour.", tokens=tokens, temperature=0.8, seed=3)),
        line("bad-type", {"model": MODEL_ID, "messages": "not a list"}),
        line("steered-7", chat("How do I boil an egg?", model=f"{MODEL_ID}:pad:concise",
                               tokens=tokens)),
        line("text-1", {"model": MODEL_ID, "prompt": "Name a fruit.", "max_tokens": tokens},
             url=TEXT),
        line("text-steered", {"model": f"{MODEL_ID}:concise", "prompt": ["Say hello."],
                              "max_tokens": tokens, "logprobs": 2}, url=TEXT),
        line("bad-text", {"model": MODEL_ID, "prompt": []}, url=TEXT),
        line("several-text", {"model": MODEL_ID, "prompt": ["Say hello.", "Name a tree."],
                              "max_tokens": tokens, "logprobs": 1}, url=TEXT),
        line("logprobs-1", chat("Name a tree.", tokens=tokens, logprobs=True, top_logprobs=2)),
        line("n-choices", chat("Name a colour.", model=f"{MODEL_ID}:concise", tokens=tokens,
                               temperature=0.9, seed=11, n=3)),
    ]
