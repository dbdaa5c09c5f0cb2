"""Load on `localpref serve` over real HTTP with the openai SDK: several times the server's
capacity at once is queued, never refused, and every answer is the one it gets alone; only past
``max_queued`` is a request refused, with 503 and Retry-After."""

from __future__ import annotations

import asyncio
import threading
import time
from pathlib import Path

import openai
from server_helpers import MODEL_ID, running_server, sdk_client

from localpref.api import Model
from localpref.presets import PRESETS

#: ``localpref serve``'s default --parallel: the session model's 8 lanes are 4 two-lane requests.
PARALLEL = 4
TOKENS = 5
PROMPT_LONG = "Write a long story about a fox."


def _wait_for(condition, seconds: float = 120.0) -> None:  # noqa: ANN001
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, "gave up waiting"
        time.sleep(0.02)


async def test_three_times_parallel_steered_streams_all_answer_as_alone(model: Model) -> None:
    assert model.context.max_lanes == 2 * PARALLEL  # a default server's lanes
    preferences = list(PRESETS)
    jobs = [(f"Name {n + 1} herbs.", preferences[n % len(preferences)])
            for n in range(3 * PARALLEL)]
    expected = [model.generate(prompt, preference=preference, max_tokens=TOKENS).text
                for prompt, preference in jobs]
    with running_server(model) as server:
        async with openai.AsyncOpenAI(base_url=server.url, api_key="unused", max_retries=0,
                                      timeout=600) as client:

            async def one(prompt: str, preference: str) -> str:
                stream = await client.chat.completions.create(
                    model=f"{MODEL_ID}:{preference}", max_tokens=TOKENS, stream=True,
                    messages=[{"role": "user", "content": prompt}])
                return "".join([c.choices[0].delta.content or ""
                                async for c in stream if c.choices])

            texts = await asyncio.gather(*(one(p, pref) for p, pref in jobs))
        assert model.scheduler.queued == 0
    assert list(texts) == expected  # every one a 200 (else the SDK raised) and exact
    assert len(set(texts)) > 1


def test_past_max_queued_is_503_with_retry_after(bundled_path: Path) -> None:
    with Model(bundled_path, max_lanes=2, n_ctx=512, max_queued=1) as small, \
            running_server(small) as server:
        client = sdk_client(server.url)
        alone = small.generate("Name a herb.", preference="concise", max_tokens=4).text
        holding = client.chat.completions.create(
            model=f"{MODEL_ID}:amulet:verbose", max_tokens=300, stream=True,
            messages=[{"role": "user", "content": "Write a long story about a fox."}],
            extra_body={"localpref": {"ignore_eos": True}})
        next(iter(holding))  # it runs: both lanes are taken
        waited: list[str | None] = []
        waiter = threading.Thread(target=lambda: waited.append(client.chat.completions.create(
            model=f"{MODEL_ID}:concise", max_tokens=4,
            messages=[{"role": "user", "content": "Name a herb."}]).choices[0].message.content))
        waiter.start()
        _wait_for(lambda: small.scheduler.queued == 1)
        try:
            client.chat.completions.create(model=MODEL_ID, max_tokens=2,
                                           messages=[{"role": "user", "content": "Hi"}])
            raise AssertionError("a request past max_queued was answered")
        except openai.APIStatusError as refused:
            assert refused.status_code == 503
            assert refused.response.headers["retry-after"] == "2"
            error = refused.response.json()["error"]
            assert error["code"] == "queue_full" and "waiting" in error["message"]
        holding.close()
        waiter.join(300)
    assert waited == [alone]  # the queued one was answered once the lanes were free


def test_later_choices_of_an_accepted_request_are_never_refused_for_the_queue(
        bundled_path: Path) -> None:
    """A body of several choices queues them as the earlier ones end; a request sent after it
    filled the queue meanwhile, and a later choice was refused: an n = 3 stream ended in a
    queue_full error event after 200 and two choices, a text completion of three prompts got
    503 after answering two. Accepted, all of it is answered, and the later request too."""
    prompts = ["Hi", "Write a long story about a fox.", "What is 2+2?"]  # 37, 120, 7 tokens
    weighted = {"concise": 1.0, "uplifting": 0.4}  # 4 lanes: it waits while one choice runs
    with Model(bundled_path, max_lanes=4, n_ctx=512, max_queued=1) as small, \
            running_server(small) as server:
        alone = [small.generate(p, preference="concise", max_tokens=120).text for p in prompts]
        filler_alone = small.generate("Name a herb.", preference=weighted, max_tokens=4).text
        client = sdk_client(server.url)
        answered: list[list[str]] = []
        several = threading.Thread(target=lambda: answered.append([
            choice.text for choice in client.completions.create(
                model=f"{MODEL_ID}:concise", prompt=prompts, max_tokens=120).choices]))
        several.start()
        _wait_for(lambda: small.scheduler.running == 2)  # two choices at once, 4 lanes
        filled: list[str | None] = []
        filler = threading.Thread(target=lambda: filled.append(client.chat.completions.create(
            model=MODEL_ID, max_tokens=4, messages=[{"role": "user", "content": "Name a herb."}],
            extra_body={"localpref": {"preference": weighted}}).choices[0].message.content))
        filler.start()
        _wait_for(lambda: small.scheduler.queued == 1)  # the queue is full (max_queued 1)
        several.join(300)  # (refused: the SDK raised in its thread, and nothing was appended)
        filler.join(300)
    assert answered == [alone]  # the third prompt was queued when "Hi" ended, behind it
    assert filled == [filler_alone]


def test_the_first_round_of_a_body_of_several_choices_is_checked_as_requests_are(
        bundled_path: Path) -> None:
    """The choices a body starts at once are queued as that many requests: with every lane
    taken and room for one waiting request, n = 2 (two at once on 4 lanes) is refused, not
    let past max_queued because it is one body."""
    with Model(bundled_path, max_lanes=4, n_ctx=512, max_queued=1) as small, \
            running_server(small) as server:
        holding = [small.stream(PROMPT_LONG, preference="verbose", max_tokens=300,
                                ignore_eos=True).start() for _ in range(2)]
        for stream in holding:
            next(stream)  # both run: every lane is taken
        client = sdk_client(server.url)
        try:
            client.chat.completions.create(model=f"{MODEL_ID}:concise", max_tokens=4, n=2,
                                           messages=[{"role": "user", "content": "Hi"}])
            raise AssertionError("two choices waiting past max_queued 1 were accepted")
        except openai.APIStatusError as refused:
            assert refused.status_code == 503
            assert refused.response.json()["error"]["code"] == "queue_full"
        _wait_for(lambda: small.scheduler.queued == 0)  # the one queued was taken back
        for stream in holding:
            stream.close()
