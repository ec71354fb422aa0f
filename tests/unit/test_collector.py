"""What a started stage holds is left out of the garbage collector's passes
(services/core/collector.py)."""

from __future__ import annotations

import gc
import weakref

from services.core import collector


class Held:
    """An object a service keeps (collected objects are tracked ones, like this)."""


def test_what_is_alive_is_frozen_and_what_comes_after_is_not() -> None:
    before = Held()
    in_cycle = Held()
    gone = weakref.ref(in_cycle)
    garbage: list[object] = [in_cycle]
    garbage.append(garbage)  # a cycle: only the collector can free it
    del garbage, in_cycle
    try:
        collector.freeze_what_is_loaded()
        after = Held()
        tracked = {id(found) for found in gc.get_objects()}  # frozen ones are not listed
        assert id(before) not in tracked and gc.get_freeze_count() > 0
        assert id(after) in tracked
        assert gone() is None  # the cycle was collected first, not frozen for good
    finally:
        gc.unfreeze()
