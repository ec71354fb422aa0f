"""A department's side of the pipeline: read its queue, report what it did.

Departments that do not use this library can read their lane topics (`dept.<department>`
and `dept.<department>.high` / `.low`) with any Kafka client (binary-mode CloudEvents,
JSON data), ask the router whether a copy is still where its ticket waits (`router_says`:
a lane keeps the copies of tickets resolved or handed on since), and post their reports
over HTTP. Each ticket's `routing` says what ordering
the lanes needs: `priority`, `routed_at` and `priority_aging_seconds` (the routing
table's aging when routed), from which `priority.effective_priority` follows.
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, NamedTuple, TypeVar

import httpx
import pydantic
import tenacity
from aiokafka import TopicPartition
from aiokafka.abc import ConsumerRebalanceListener
from aiokafka.errors import CommitFailedError, IllegalStateError, KafkaError

from services.core import (
    credentials_api,
    data_paths,
    envelope,
    faults,
    kafka,
    new_topics,
    tickets,
    topics,
)
from services.core.settings import Settings
from services.departments import fetching, retries
from services.router import lane_copies, priority

T = TypeVar("T")
logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Unreadable:
    """A record on a lane that is not a routed ticket: skipped, committed past."""

    topic: str
    partition: int
    offset: int
    reason: str


def _log_unreadable(skipped: Unreadable) -> None:
    logger.warning("unreadable record skipped", extra={
        "topic": skipped.topic, "partition": skipped.partition, "offset": skipped.offset,
        "reason": skipped.reason})


@dataclass(frozen=True)
class LeftBehind:
    """A copy of a ticket on a lane that the ticket has left (resolved, handed on, or
    queued again later in the lanes): skipped, committed past."""

    topic: str
    partition: int
    offset: int
    ticket_id: str
    state: lane_copies.CopyState


def _log_left_behind(skipped: LeftBehind) -> None:
    logger.info("copy left behind skipped", extra={
        "topic": skipped.topic, "partition": skipped.partition, "offset": skipped.offset,
        "ticket_id": skipped.ticket_id, "state": skipped.state.value})


class NoQueue(KafkaError):  # type: ignore[misc]  # aiokafka is untyped
    """No lane of the department is there for its reader: none exists, or its Kafka user
    may read none of them."""

    def __init__(self, department: str, lanes: list[str]) -> None:
        self.said = (f"no lane of {department} exists, or this Kafka user may read none of"
                     f" them ({', '.join(lanes)}): a department's lanes are made when a"
                     " routing table naming it is put in force")
        super().__init__(self.said)

    def __str__(self) -> str:  # not KafkaError's, which puts its class name first
        return self.said


class UnusableAging(ValueError):
    """A record's aging step that no ticket can be aged by."""


def record_aging(routing: tickets.Routing) -> priority.Aging | None:
    """The aging in force when the ticket was routed, as its record says; None for a
    record from before routers said it. UnusableAging for a step that rounds to no time
    or lies past any date (a record not checked as routers' are)."""
    if "priority_aging_seconds" not in routing.model_fields_set:
        return None
    try:
        aging = priority.Aging.of_seconds(routing.priority_aging_seconds)
    except OverflowError:
        raise UnusableAging("routing.priority_aging_seconds: too long to age by") from None
    if aging.step is not None and aging.step <= timedelta(0):
        raise UnusableAging("routing.priority_aging_seconds: too short to age by")
    return aging


class Waiting(NamedTuple):
    """A routed ticket on a lane, with the aging it is ordered by."""

    ticket: tickets.RoutedTicket
    aging: priority.Aging | None


def read_record(record: Any) -> Waiting | Unreadable:
    """The record's ticket and its aging, or why it has none (never a value from the
    record: it may carry personal data)."""
    if isinstance(record, faults.UnreadableRecord):
        return Unreadable(record.topic, record.partition, record.offset, record.problem)
    try:
        event = envelope.from_record(record.headers, record.value)
        ticket = tickets.RoutedTicket.model_validate(event.data)
        return Waiting(ticket, record_aging(ticket.routing))
    except envelope.EnvelopeError as error:
        reason = f"not a CloudEvent: {error}"
    except pydantic.ValidationError as error:
        reason = "not a routed ticket: " + data_paths.reasons(
            error.errors(include_input=False, include_url=False)[:3], whole="data")
    except UnusableAging as error:
        reason = f"not a routed ticket: {error}"
    return Unreadable(record.topic, record.partition, record.offset, reason)


async def read_queue(
    settings: Settings, department: str, *, max_tickets: int, wait_seconds: float,
    aging: priority.Aging | None = None,
    on_unreadable: Callable[[Unreadable], None] = _log_unreadable,
    state_of: Callable[[tickets.RoutedTicket], Awaitable[lane_copies.CopyState]] | None = None,
    on_left_behind: Callable[[LeftBehind], None] = _log_left_behind,
) -> AsyncIterator[tickets.RoutedTicket]:
    """Yield up to `max_tickets` waiting tickets, the highest effective priority first
    (a ticket's priority rises while it waits, so none starves); each is committed once
    it has been yielded. Each ticket ages as its record says (the routing table's
    `priority_aging` when it was routed); `aging`, when given, overrides that for all.
    A record that is not a routed ticket, or whose aging no ticket can be aged by, or
    that the Kafka client cannot read at all (fetching.py), is handed to `on_unreadable`
    (by default: logged) and committed past, in its turn. With `state_of` (the router's
    word on a copy: `router_says`), a copy the ticket has left (resolved, handed on,
    queued again later) is handed to `on_left_behind` (by default: logged) and committed
    past, in its turn, instead of being given out.

    Reading as the group `department.<department>` over the department's priority lanes,
    a later read continues where this one stopped, and agents of one department share
    the queue: when one joins or leaves, the group moves partitions between them, and a
    read commits what it gave out of a partition taken away and leaves what it fetched
    of it to its new reader. On a secured cluster the settings name the department's own Kafka user
    (`KAFKA_SASL_USERNAME`), allowed to read its lanes and its group, nothing else.
    """
    lanes = dict(zip(priority.LANES, priority.lane_topics(department), strict=True))
    lane_of = {topic: lane for lane, topic in lanes.items()}
    consumer = kafka.consumer(settings, group_id=topics.department_group(department),
                              client_id=f"department-{department}")
    waiting: dict[priority.Lane, deque[tuple[Any, Waiting | Unreadable]]] = {
        lane: deque() for lane in priority.LANES}
    reader = fetching.Records(consumer)

    # Per partition, the offset after the last record this read gave out (yielded, or
    # skipped as unreadable): a record before it, fetched again after a rebalance set
    # the partition back to an older commit, is not given out twice.
    given_to: dict[TopicPartition, int] = {}
    # The record given out and not yet committed: committed after the yield, or when
    # its partition is taken away first (then not after: the partition may have come
    # back with a later commit of another agent's).
    held: dict[TopicPartition, int] = {}
    # Per partition, how often the group took it away: a record asked about across a
    # take-away is its new reader's, even should the partition have come back since.
    taken_away_times: dict[TopicPartition, int] = {}

    async def commit(offsets: dict[TopicPartition, int]) -> None:
        offsets = {partition: offset for partition, offset in offsets.items()
                   if partition in consumer.assignment()}
        if not offsets:
            return  # taken away meanwhile: its next reader reads from the group's commit
        with contextlib.suppress(CommitFailedError, IllegalStateError):
            await consumer.commit(offsets)  # raises: the group rebalanced meanwhile

    async def taken_away(revoked: set[TopicPartition]) -> None:
        # Another agent of the department reads these from the group's commit now:
        # commit what was given out of them (a ticket on screen is not given to it
        # too), and leave it what is buffered.
        reader.forget(revoked)
        for partition in revoked:
            taken_away_times[partition] = taken_away_times.get(partition, 0) + 1
        for queued in waiting.values():
            kept = [entry for entry in queued if _partition_of(entry[0]) not in revoked]
            queued.clear()
            queued.extend(kept)
        await commit({partition: held.pop(partition)
                      for partition in revoked if partition in held})

    def not_given_yet(record: Any) -> bool:
        offset: int = record.offset
        return offset >= given_to.get(_partition_of(record), 0)

    def give(record: Any) -> None:
        given_to[_partition_of(record)] = record.offset + 1

    try:
        # Inside: a start refused (a wrong password) still stops it.
        await consumer.start()
        # The lanes its user may see: none, and the read would wait on metadata that
        # never comes (a typo), or be refused (another department's lanes). Lanes made a
        # moment ago (a table just put in force) may not show yet: looked at again.
        shown = await new_topics.looked_again(
            consumer.topics, lambda seen: not seen.isdisjoint(lanes.values()))
        visible = sorted(set(lanes.values()) & shown)
        if not visible:
            raise NoQueue(department, list(lanes.values()))
        consumer.subscribe(visible, listener=_TakenAway(taken_away))
        taken = 0
        while taken < max_tickets:
            # Wait only when nothing is buffered; otherwise just top up the buffers.
            idle = not any(waiting.values())
            for record in filter(not_given_yet, await reader.take(
                    timeout_ms=int(wait_seconds * 1000) if idle else 50)):
                waiting[lane_of[record.topic]].append((record, read_record(record)))
            # Skipped only at the head of its lane, so that committing past it never
            # passes a ticket before it that was not yet taken.
            skipped = False
            for queued in waiting.values():
                while queued and isinstance(unreadable := queued[0][1], Unreadable):
                    record, _ = queued.popleft()
                    on_unreadable(unreadable)
                    give(record)
                    await commit({_partition_of(record): record.offset + 1})
                    skipped = True
            heads = {lane: priority.Head(
                         head.ticket.routing.priority or tickets.MIDDLE_PRIORITY,
                         head.ticket.routing.routed_at, head.aging)
                     for lane, queued in waiting.items() if queued
                     for head in [queued[0][1]] if isinstance(head, Waiting)}
            lane = priority.choose_next(heads, now=datetime.now(UTC), aging=aging)
            if lane is None:
                if skipped or reader.reading_carefully:
                    continue  # the batch held only unreadable records: wait for more
                return
            record, chosen = waiting[lane].popleft()
            assert isinstance(chosen, Waiting)
            if state_of is not None:
                partition = _partition_of(record)
                before = taken_away_times.get(partition, 0)
                state = await state_of(chosen.ticket)
                if taken_away_times.get(partition, 0) != before:
                    continue  # taken away meanwhile: its new reader has it
                if state is not lane_copies.CopyState.WAITING:
                    on_left_behind(LeftBehind(record.topic, record.partition, record.offset,
                                              chosen.ticket.ticket_id, state))
                    give(record)
                    await commit({_partition_of(record): record.offset + 1})
                    continue
            give(record)
            held[_partition_of(record)] = record.offset + 1
            yield chosen.ticket
            taken += 1
            if (offset := held.pop(_partition_of(record), None)) is not None:
                await commit({_partition_of(record): offset})
    finally:
        await consumer.stop()


def _partition_of(record: Any) -> TopicPartition:
    return TopicPartition(record.topic, record.partition)


class _TakenAway(ConsumerRebalanceListener):  # type: ignore[misc]  # aiokafka is untyped
    """Tells the read which partitions the group takes away (another agent joined or
    left), before another agent is given them."""

    def __init__(self, taken_away: Callable[[set[TopicPartition]], Awaitable[None]]) -> None:
        self._taken_away = taken_away

    async def on_partitions_revoked(self, revoked: set[TopicPartition]) -> None:
        await self._taken_away(set(revoked))

    async def on_partitions_assigned(self, assigned: set[TopicPartition]) -> None:
        pass


def holder(router_url: str, token: str, *, department: str | None = None,
           timeout: float = 10.0) -> credentials_api.Holder:
    """Whose the token is, as the router says (`GET /v1/credentials/me`); asked with the
    `department` to act for, a name the routing table in force lacks (a typo) is refused
    422 `query.department`, naming the table's departments, whoever's the token is."""
    response = httpx.get(f"{router_url}/v1/credentials/me", headers=_authorization(token),
                         params={} if department is None else {"department": department},
                         timeout=timeout)
    response.raise_for_status()
    return credentials_api.Holder.model_validate(response.json())


class Unanswered(NamedTuple):
    """The router could not say whether a copy is still waiting: it is given out."""

    ticket_id: str
    problem: str


def router_says(client: httpx.AsyncClient, department: str, *,
                on_unanswered: Callable[[Unanswered], None]
                ) -> Callable[[tickets.RoutedTicket], Awaitable[lane_copies.CopyState]]:
    """`read_queue`'s `state_of`: the router's word on a copy of a ticket on
    `department`'s lanes (`GET /v1/tickets/{id}/lane-copy`), asked by `client` (the
    router's URL and the credential). A copy the router does not know (404
    `copy_not_known`: it may not have recorded the hand-over yet), or no answer
    (unreachable, an error, another 404; told to `on_unanswered`), is waiting: the
    department may see a ticket left behind, never lose one."""

    async def state_of(ticket: tickets.RoutedTicket) -> lane_copies.CopyState:
        try:
            response = await client.get(
                f"/v1/tickets/{ticket.ticket_id}/lane-copy",
                params={"department": department,
                        "routed_at": ticket.routing.routed_at.isoformat()})
            if response.status_code == 404 \
                    and _error_of(response) == lane_copies.COPY_NOT_KNOWN:
                return lane_copies.CopyState.WAITING
            response.raise_for_status()
            return lane_copies.CopyState(response.json()["state"])
        except httpx.HTTPStatusError as error:
            problem = f"the router answered {error.response.status_code}"
        except httpx.HTTPError as error:
            problem = f"router unreachable: {error!r}"
        except (ValueError, KeyError, TypeError):
            problem = "the router answered something else than a copy's state"
        on_unanswered(Unanswered(ticket.ticket_id, problem))
        return lane_copies.CopyState.WAITING

    return state_of


def _error_of(response: httpx.Response) -> object:
    try:
        body = response.json()
    except ValueError:
        return None
    return body.get("error") if isinstance(body, dict) else None


def report(router_url: str, ticket_id: str, kind: str, *, department: str | None,
           token: str | None, occurred_at: datetime | None = None,
           idempotency_key: str | None = None, timeout: float = 10.0,
           give_up_after: float = retries.GIVE_UP_AFTER_SECONDS,
           on_retry: Callable[[BaseException, float], None] | None = None,
           sleep: Callable[[float], None] = time.sleep) -> dict[str, str]:
    """Report `picked_up`, `responded`, `waiting_on_customer` or `resolved` for a ticket;
    returns the receipt.
    `token`: the department's credential. Under an `idempotency_key` the report is sent
    again while the router is unreachable or asks for it (retries.py); no try starts
    after `give_up_after` seconds. `on_retry` hears of each failed try and the wait
    after it."""
    body: dict[str, str] = {"type": kind}
    if department:
        body["department"] = department
    if occurred_at:
        body["occurred_at"] = occurred_at.isoformat()
    headers = _authorization(token)
    if idempotency_key is not None:
        headers["Idempotency-Key"] = idempotency_key

    def send() -> dict[str, str]:
        response = httpx.post(f"{router_url}/v1/tickets/{ticket_id}/events", json=body,
                              headers=headers, timeout=timeout)
        response.raise_for_status()
        receipt: dict[str, str] = response.json()
        return receipt

    # Without a key, a second try could report twice: sent again only when turned away
    # unread (429).
    worth = retries.worth_another_try if idempotency_key is not None \
        else retries.over_the_rate
    return _tried(send, worth, give_up_after=give_up_after, on_retry=on_retry, sleep=sleep)


def _tried(send: Callable[[], T], worth_another_try: Callable[[BaseException], bool], *,
           give_up_after: float, on_retry: Callable[[BaseException, float], None] | None,
           sleep: Callable[[float], None]) -> T:
    """`send`'s answer, sent again after each failure `worth_another_try`, as Retry-After
    says (else with backoff: retries.wait_before); no try starts after `give_up_after`
    seconds. `on_retry` hears of each failed try and the wait after it."""

    def before_sleep(state: tenacity.RetryCallState) -> None:
        if on_retry is not None and state.next_action is not None:
            on_retry(_failure(state), state.next_action.sleep)

    return tenacity.Retrying(
        retry=tenacity.retry_if_exception(worth_another_try),
        wait=lambda state: retries.wait_before(_failure(state), state.attempt_number),
        stop=tenacity.stop_before_delay(give_up_after), before_sleep=before_sleep,
        sleep=sleep, reraise=True)(send)


def _failure(state: tenacity.RetryCallState) -> BaseException:
    error = state.outcome.exception() if state.outcome is not None else None
    assert error is not None  # tenacity waits only after a failed try here
    return error


def transfer(router_url: str, ticket_id: str, to_department: str, reason: str, *,
             token: str | None, from_department: str | None = None,
             timeout: float = 10.0, give_up_after: float = retries.GIVE_UP_AFTER_SECONDS,
             on_retry: Callable[[BaseException, float], None] | None = None,
             sleep: Callable[[float], None] = time.sleep) -> dict[str, object]:
    """Hand a ticket to another department; the response clock keeps running. Sent
    again while the router turns it away over the credential's rate (429), as
    `report` is."""
    body = {"to_department": to_department, "reason": reason}
    if from_department:
        body["from_department"] = from_department
    return _tried(lambda: _posted(f"{router_url}/v1/tickets/{ticket_id}/transfer", body,
                                  token, timeout),
                  retries.over_the_rate, give_up_after=give_up_after, on_retry=on_retry,
                  sleep=sleep)


def change_priority(router_url: str, ticket_id: str, priority: int, reason: str, *,
                    token: str | None, timeout: float = 10.0,
                    give_up_after: float = retries.GIVE_UP_AFTER_SECONDS,
                    on_retry: Callable[[BaseException, float], None] | None = None,
                    sleep: Callable[[float], None] = time.sleep) -> dict[str, object]:
    """Give a ticket another priority; its clocks keep the time spent and paused. Sent
    again while the router turns it away over the credential's rate (429)."""
    return _tried(lambda: _posted(f"{router_url}/v1/tickets/{ticket_id}/priority",
                                  {"priority": priority, "reason": reason}, token, timeout),
                  retries.over_the_rate, give_up_after=give_up_after, on_retry=on_retry,
                  sleep=sleep)


def _posted(url: str, body: Mapping[str, object], token: str | None,
            timeout: float) -> dict[str, object]:
    response = httpx.post(url, json=body, headers=_authorization(token), timeout=timeout)
    response.raise_for_status()
    receipt: dict[str, object] = response.json()
    return receipt


def _authorization(token: str | None) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"} if token else {}
