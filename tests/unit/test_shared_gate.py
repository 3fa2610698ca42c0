"""The one bound over a hook's requests from several event loops (export_hooks.background_loop.SharedGate)."""

import asyncio
import threading

import pytest

from export_hooks.background_loop import BackgroundLoop, SharedGate


def test_slots_held_on_one_loop_are_not_free_on_another():
    gate, loop = SharedGate(3), BackgroundLoop("gate-test")
    entered = [loop.submit(gate.__aenter__()) for _ in range(3)]
    for holder in entered:
        holder.result(5)

    async def enter_here() -> None:
        await gate.__aenter__()

    waiting = threading.Thread(target=lambda: asyncio.run(enter_here()), daemon=True)
    waiting.start()
    waiting.join(0.5)  # with a slot free it would have entered at once
    assert waiting.is_alive()  # all 3 slots are the other loop's: this one waits
    loop.submit(gate.__aexit__()).result(5)  # one of them released there...
    waiting.join(5)
    assert not waiting.is_alive()  # ...is handed over to this loop's waiter


def test_a_waiter_cancelled_after_its_slot_was_handed_over_passes_it_on():
    async def scenario() -> bool:
        gate = SharedGate(1)
        await gate.__aenter__()  # the one slot is held
        waiter = asyncio.ensure_future(gate.__aenter__())
        await asyncio.sleep(0)  # the waiter now waits
        await gate.__aexit__()  # the slot goes to the waiter (its grant scheduled)...
        waiter.cancel()  # ...which is cancelled before it runs
        with pytest.raises(asyncio.CancelledError):
            await waiter
        # The slot was passed on, not lost: a new holder gets it at once.
        await asyncio.wait_for(gate.__aenter__(), timeout=5)
        return True

    assert asyncio.run(scenario())


def test_a_gate_needs_a_slot():
    with pytest.raises(ValueError, match="at least 1, got 0"):
        SharedGate(0)
