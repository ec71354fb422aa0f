"""Python's cyclic garbage collector and what a service holds for its whole life.

A started service holds some hundred thousand objects for good (modules, pydantic and
SQLAlchemy schemas, settings, the routing table). The collector's full passes, which
the objects a batch of records leaves behind set off every few batches, walked all of
them each time: about a sixth of the router stage's CPU. Frozen once the service is
started, they are left out of every pass; reference counting still frees them.
"""

from __future__ import annotations

import gc


def freeze_what_is_loaded() -> None:
    """Collect what is garbage now, then leave every object alive out of the collector's
    passes from now on (called before a service serves, and again when a stage starts
    consuming)."""
    gc.collect()
    gc.freeze()
