"""The server's wake-ups from the scheduler's thread: a burst of them is one turn of the event
loop, every callback runs, once per burst, in the loop's thread, and a closed loop is left
alone (a real asyncio loop, real threads)."""

from __future__ import annotations

import asyncio
import threading

from localpref.decoding import at_step_end, one_notice_per_step
from localpref.server.jobs import LoopWaker, waker_for


def counting_loop() -> tuple[asyncio.AbstractEventLoop, list[object]]:
    """A new event loop whose ``call_soon_threadsafe`` calls (the wake-ups) are listed."""
    loop = asyncio.new_event_loop()
    scheduled: list[object] = []
    original = loop.call_soon_threadsafe

    def counting(callback, *args):  # noqa: ANN001, ANN202
        scheduled.append(callback)
        return original(callback, *args)

    loop.call_soon_threadsafe = counting  # type: ignore[method-assign]
    return loop, scheduled


def test_a_burst_of_wake_ups_is_one_turn_of_the_loop_and_runs_every_callback_once() -> None:
    loop, scheduled = counting_loop()
    ran: list[tuple[int, int]] = []
    loop_thread: list[int] = []

    def make(index: int):  # noqa: ANN202
        def callback() -> None:
            ran.append((index, threading.get_ident()))
        return callback

    callbacks = [make(i) for i in range(24)]
    waker = LoopWaker(loop)

    async def main() -> None:
        loop_thread.append(threading.get_ident())
        burst = threading.Thread(target=lambda: [waker.wake(c) for c in callbacks * 2])
        burst.start()
        await asyncio.to_thread(burst.join)
        await asyncio.sleep(0.05)

    loop.run_until_complete(main())
    loop.close()
    # Each callback once per drain it was pending in, all in the loop's thread; a burst
    # from one thread that the loop did not interrupt is a single drain.
    assert {index for index, _ in ran} == set(range(24))
    assert all(thread == loop_thread[0] for _, thread in ran)
    assert len(ran) <= 2 * 24 and len(scheduled) <= len(ran)
    assert len(scheduled) < 2 * 24


def test_one_waker_per_loop_and_a_closed_loop_is_left_alone() -> None:
    loop = asyncio.new_event_loop()
    first = waker_for(loop)
    assert waker_for(loop) is first
    other = asyncio.new_event_loop()
    assert waker_for(other) is not first
    other.close()
    loop.close()
    ran = []
    first.wake(lambda: ran.append(1))  # no exception: nobody is listening any more
    first.wake(lambda: ran.append(2))
    assert ran == []


def test_within_a_step_every_wake_up_is_one_drain_when_the_step_ends() -> None:
    """The scheduler's per-token work runs inside ``one_notice_per_step``: the pieces of all
    its requests wake the loop once, after the last of them, and nothing runs before that;
    outside a step a wake-up is scheduled at once, as before."""
    loop, scheduled = counting_loop()
    waker = LoopWaker(loop)
    ran: list[int] = []
    seen_inside: list[int] = []

    def step() -> None:
        with one_notice_per_step():
            for index in range(8):  # eight requests' pieces of one step
                waker.wake(lambda index=index: ran.append(index))
            seen_inside.append(len(scheduled))
        seen_inside.append(len(scheduled))
        waker.wake(lambda: ran.append(99))  # outside a step: scheduled at once (or joins)

    async def main() -> None:
        worker = threading.Thread(target=step)
        worker.start()
        await asyncio.to_thread(worker.join)
        await asyncio.sleep(0.05)

    loop.run_until_complete(main())
    loop.close()
    assert seen_inside == [0, 1]  # nothing while the step ran, one drain when it ended
    assert sorted(ran) == [*range(8), 99] and ran[:8] == list(range(8))
    assert len(scheduled) in (1, 2)  # the last joins the step's drain if it has not run yet


def test_a_step_within_a_step_ends_its_own_callbacks_and_outside_nothing_waits() -> None:
    order: list[str] = []
    assert at_step_end(lambda: order.append("never")) is False
    with one_notice_per_step():
        assert at_step_end(lambda: order.append("outer"))
        with one_notice_per_step():
            assert at_step_end(lambda: order.append("inner"))
        order.append("inner ended")
    assert order == ["inner", "inner ended", "outer"]
    assert at_step_end(lambda: order.append("never")) is False


def test_drains_closer_than_the_hold_start_it_and_later_callbacks_wait_unless_urgent() -> None:
    """A stream's pieces a few milliseconds apart share a wake-up: once two drains came less
    than ``hold`` seconds apart, a callback waits for the drain ``hold`` seconds after the
    last one instead of writing to the loop's self-pipe; an urgent one (a stream's first
    piece, its end) wakes the loop at once; a timed drain that finds nothing ends the
    holding, and drains further apart than the hold never start it."""
    loop, scheduled = counting_loop()
    waker = LoopWaker(loop, hold=1.0)  # wide: a busy machine's pauses stay well within it
    ran: list[str] = []
    seen: dict[str, object] = {}

    async def until(name: str, limit: float = 10.0) -> None:
        waited = 0.0
        while name not in ran and waited < limit:
            await asyncio.sleep(0.005)
            waited += 0.005

    async def from_thread(name: str, *, urgent: bool = False) -> None:
        # a plain thread, joined: asyncio.to_thread would itself call call_soon_threadsafe
        other = threading.Thread(target=lambda: waker.wake(lambda: ran.append(name),
                                                           urgent=urgent))
        other.start()
        other.join()

    async def step(name: str, *, urgent: bool = False, check: bool = True) -> None:
        await from_thread(name, urgent=urgent)
        if check:
            await until(name)
        seen[name] = len(scheduled)

    async def main() -> None:
        await step("first")
        await step("second")  # a drain soon after the first: the holding starts
        await step("held", check=False)  # waits for the timed drain: not run yet
        await asyncio.sleep(0.05)
        seen["held, 50 ms later"] = "held" in ran
        await step("urgent", urgent=True)  # at once, and the held one with it
        seen["order"] = list(ran)
        await step("later")  # waits for the timed drain (the holding goes on)
        await asyncio.sleep(2.2)  # a timed drain finds nothing: the holding ends
        await step("after quiet")  # at once
        await asyncio.sleep(1.1)
        await step("slow")  # more than the hold after the last drain: at once, no holding
        await asyncio.sleep(1.1)
        await step("slow again")

    loop.run_until_complete(main())
    loop.close()
    assert (seen["first"], seen["second"], seen["held"]) == (1, 2, 2)
    assert seen["held, 50 ms later"] is False
    assert seen["urgent"] == 3 and seen["order"] == ["first", "second", "held", "urgent"]
    assert seen["later"] == 3
    assert (seen["after quiet"], seen["slow"], seen["slow again"]) == (4, 5, 6)
    assert ran == ["first", "second", "held", "urgent", "later", "after quiet", "slow",
                   "slow again"]


def test_a_hold_of_zero_wakes_the_loop_for_every_callback_that_finds_it_idle() -> None:
    loop, scheduled = counting_loop()
    waker = LoopWaker(loop, hold=0)
    ran: list[int] = []

    async def main() -> None:
        for index in range(3):
            other = threading.Thread(
                target=lambda index=index: waker.wake(lambda: ran.append(index)))
            other.start()
            other.join()
            while len(ran) <= index:
                await asyncio.sleep(0.005)

    loop.run_until_complete(main())
    loop.close()
    assert ran == [0, 1, 2] and len(scheduled) == 3
