"""The routing simulator over HTTP (admins only, like the configuration it tries out):
replay a past window through a candidate routing table and segment rules, next to what
happened. It reads the store only and publishes nothing."""

from __future__ import annotations

import functools
from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Annotated, Any

from fastapi import APIRouter, Depends
from pydantic import Field
from sqlalchemy.ext.asyncio import AsyncEngine

from services.core import (
    auth,
    config_files,
    config_store,
    groups,
    http,
    report_turns,
    request_bodies,
    service_context,
)
from services.core.settings import Settings
from services.metrics import parity_store
from services.segmenter.profiles import Customer
from services.simulator import history, service

api = APIRouter(prefix="/v1/simulations", tags=["routing simulator"])

LARGEST_ID = 2**31 - 1
# A candidate's text is held to the uploads' limit by the same check (config_files.
# load_yaml: CONFIG_MAX_BYTES, counted in UTF-8 bytes), when it is loaded: before the
# history is read, answered as an upload's (422 invalid_configuration).
AS_AN_UPLOAD = f"; at most {config_files.CONFIG_MAX_BYTES:,} bytes as UTF-8, as an upload"


@dataclass(frozen=True)
class Simulator:
    reader: history.HistoryReader
    tables: config_store.ConfigVersions
    rule_sets: config_store.ConfigVersions
    # The departments whose lanes the router could not make, each with its lanes
    # missing, as its lane check last found them (missing_lanes.MissingLanes.departments):
    # a replay hands them no ticket, as the router hands none (routing.decide). A view,
    # so that the simulator loads no Kafka client.
    lanes_missing: Callable[[], Mapping[str, Sequence[str]]]

    @classmethod
    def over(cls, store: AsyncEngine, settings: Settings,
             lanes_missing: Callable[[], Mapping[str, Sequence[str]]] = dict) -> Simulator:
        """Reading through read-only sessions of the store's engine; tickets compared
        per parity group too, over the attributes the service parity measures
        (PARITY_ATTRIBUTES), groups under PROTECTED_GROUP_MINIMUM_SIZE tickets pooled:
        the settings read as the service parity reads them (`ParityConfig.of`).
        `lanes_missing`: the router's (none if not given)."""
        parity = parity_store.ParityConfig.of(settings)
        sessions = history.read_only_sessions(store)
        return cls(history.HistoryReader(
            sessions, groups_of=functools.partial(parity_groups, attributes=parity.attributes),
            minimum_group_size=parity.policy.minimum_group_size),
                   config_store.ConfigVersions(sessions, config_store.ROUTING_TABLE),
                   config_store.ConfigVersions(sessions, config_store.SEGMENT_RULES),
                   lanes_missing)


async def get_simulator(context: service_context.Context) -> Simulator:
    return context.part(Simulator)


class SimulationRequest(request_bodies.RequestBody):
    start: http.Timestamp = Field(description="the window's start (tickets received from)")
    end: http.Timestamp = Field(description="the window's end, not after now; at most"
                                            " 366 days after start")
    table: request_bodies.UnicodeText | None = Field(None, description=(
        "a candidate routing table (the file's YAML); none: the version in force at `end`"
        + AS_AN_UPLOAD))
    table_version_id: int | None = Field(None, ge=1, le=LARGEST_ID,
                                         description="or a stored routing table version")
    rules: request_bodies.UnicodeText | None = Field(None, description=(
        "candidate segment rules (YAML); none: each ticket keeps the segment it had"
        + AS_AN_UPLOAD))
    rules_version_id: int | None = Field(None, ge=1, le=LARGEST_ID,
                                         description="or a stored segment rules version")
    replications: int = Field(service.REPLICATIONS, ge=1, le=service.MOST_REPLICATIONS,
                              description="replays averaged (seeded)")


@api.post("", responses={422: {"description": "A field is wrong, or a candidate does not"
                                              " load (file, line, entry)"},
                         **report_turns.IN_PROGRESS})
async def simulate(body: SimulationRequest,
                   simulator: Annotated[Simulator, Depends(get_simulator)],
                   principal: auth.Admin, turn: report_turns.ReportTurn) -> Any:
    """Replay the tickets received in [start, end) through the candidate, with the
    departments' response rates measured over the window, and return per department,
    segment and parity group what happened next to what the simulation predicts;
    `replay_error` says how far the replay is from what happened (meaningful for the
    version that was in force). `lanes_missing` names the departments whose lanes the
    router could not make when the simulation ran, applied to every replayed ticket
    (none handed to them after hours or overflowing, as the router hands none), each
    with its lanes missing and the tickets it changed, the mean per replication: kept
    rather than handed to it after hours (`not_handed_after_hours`) or overflowing
    (`not_overflowed`), and routed to a lane of it missing (`dead_lettered`: the router
    dead-letters them, so the replay leaves them out of every department's, segment's
    and group's simulated figures). A ticket received in the window without the routed
    state to replay is counted, not replayed: in `held` if a stage dead-lettered it and
    no replay routed it since (the router would route it once replayed), else in
    `without_state` (its state gone: retention). Nothing is written or published."""
    order = service.Order(**body.model_dump())
    try:  # the caller's mistakes answered at once, not in a turn
        checked = await service.check(order, tables=simulator.tables,
                                      rule_sets=simulator.rule_sets, now=datetime.now(UTC))
    except service.Refused as exc:
        raise http.InvalidField(f"body.{exc.field}", exc.problem) from exc
    except config_files.ConfigError as exc:
        return http.config_error(exc)
    async with turn.taken(principal):
        return await service.run(checked, reader=simulator.reader, now=datetime.now(UTC),
                                 lanes_missing=simulator.lanes_missing())


def parity_groups(customer: Customer, *, attributes: Collection[str]) -> dict[str, str]:
    """The customer's band of each protected attribute of `attributes` (those the service
    parity measures: PARITY_ATTRIBUTES), as the service parity bands it."""
    profile = customer.profile
    if profile is None:
        bands = groups.bands(None, None, None)
    else:
        bands = groups.bands(groups.age_years(profile.birth_date, datetime.now(UTC).date()),
                             profile.gender, profile.socio_economic_band)
    return {attribute: band for attribute, band in bands.items() if attribute in attributes}
