"""`department`: the command-line tool a department uses on its own queue."""

from __future__ import annotations

import asyncio
import json
import logging
import os
import shlex
import uuid
from collections.abc import Callable, Mapping
from typing import Annotated, Any, NoReturn

import httpx
import pydantic
import typer
from aiokafka.errors import KafkaError

from services.core import (
    broker_start,
    command_line,
    durations,
    logs,
    request_bodies,
    tickets,
    topics,
)
from services.core.settings import Settings
from services.departments import queue, retries
from services.router import intake_policy, lane_copies, priority

app = command_line.App(help="Read a department's ticket queue and report what was done (API_TOKEN:"
                       " your department's credential).",
                       no_args_is_help=True, pretty_exceptions_enable=False)

# The longest --wait: an agent's read, not a watch over the queue.
LONGEST_QUEUE_WAIT_SECONDS = 3600.0


def _department_name(department: str) -> str:
    try:
        topics.department_queue(department)  # says what a department's name may be
    except ValueError as exc:
        raise typer.BadParameter(str(exc)) from exc
    return department


def _wait_seconds(wait: float) -> float:
    if not 0 <= wait <= LONGEST_QUEUE_WAIT_SECONDS:  # NaN too
        raise typer.BadParameter(
            f"{wait:g} is not a number of seconds from 0 to {LONGEST_QUEUE_WAIT_SECONDS:g}")
    return wait


QueueDepartment = Annotated[str, typer.Argument(
    help="The department, e.g. public_sector", callback=_department_name)]
TicketId = Annotated[str, typer.Argument(help="The ticket id from the queue")]


@app.command("queue")
def read(
    department: QueueDepartment,
    max_tickets: Annotated[int, typer.Option("--max", min=1, help="Stop after this many")] = 10,
    wait: Annotated[float, typer.Option(
        help=f"Seconds to wait for a ticket (0 to {LONGEST_QUEUE_WAIT_SECONDS:g})",
        callback=_wait_seconds)] = 5.0,
    as_json: Annotated[bool, typer.Option("--json", help="One JSON ticket a line")] = False,
    aging: Annotated[str | None, typer.Option(
        help="How fast a waiting ticket's priority rises, e.g. 30m, or off; by default"
             " what each ticket's record says (the routing table's priority_aging when it"
             " was routed)")] = None,
    kafka_user: Annotated[str | None, typer.Option(
        help="Your department's Kafka user on a secured cluster (else KAFKA_SASL_USERNAME);"
             " the password comes from KAFKA_SASL_PASSWORD or is asked for")] = None,
) -> None:
    """Take the next waiting tickets off the department's queue and print them (only
    with API_TOKEN the department's credential or an admin's)."""

    aging_step = None if aging is None else _aging(aging)
    # The Kafka client's own notices (a rebalance, a heartbeat) are not the agent's
    # business: stderr is for the tool's lines; its failures end the read with one.
    logging.getLogger("aiokafka").setLevel(logging.ERROR)

    router_url, token = _ensure_may_read(department)  # before asking for a Kafka password
    settings = _kafka_settings(kafka_user)

    def report_skipped(skipped: queue.Unreadable | queue.LeftBehind) -> None:
        reason = skipped.reason if isinstance(skipped, queue.Unreadable) \
            else f"ticket {skipped.ticket_id} {_LEFT_BEHIND[skipped.state]}"
        typer.echo(f"skipped {skipped.topic} partition {skipped.partition} offset"
                   f" {skipped.offset}: {reason}", err=True)

    def report_unanswered(unanswered: queue.Unanswered) -> None:
        typer.echo(f"given out: ticket {unanswered.ticket_id} may have left the queue,"
                   f" the router could not say ({unanswered.problem})", err=True)

    async def run() -> int:
        # The broker's outage or a mistake in the Kafka settings: one line naming the setting.
        await broker_start.reached(settings)
        count = 0
        async with httpx.AsyncClient(base_url=router_url, timeout=10.0,
                                     headers={"Authorization": f"Bearer {token}"}) as router:
            async for ticket in queue.read_queue(
                    settings, department, max_tickets=max_tickets, wait_seconds=wait,
                    aging=aging_step, on_unreadable=report_skipped,
                    state_of=queue.router_says(router, department,
                                               on_unanswered=report_unanswered),
                    on_left_behind=report_skipped):
                count += 1
                _print(ticket, as_json=as_json)
        return count

    try:
        count = asyncio.run(run())
    except KafkaError as exc:  # e.g. TopicAuthorizationFailedError: another's queue
        typer.echo(f"cannot read the queue of {department}: {logs.said(exc)}", err=True)
        raise typer.Exit(1) from exc
    if count == 0 and not as_json:
        typer.echo(f"no tickets waiting for {department}", err=True)


# Why a copy on a lane was skipped, as the router says (queue.LeftBehind).
_LEFT_BEHIND = {
    lane_copies.CopyState.RESOLVED: "resolved since it was queued",
    lane_copies.CopyState.HANDED_ON: "handed on to another department since it was queued",
    lane_copies.CopyState.QUEUED_AGAIN: "queued again since: its newer copy comes later",
}


def _print(ticket: tickets.RoutedTicket, *, as_json: bool) -> None:
    if as_json:
        typer.echo(ticket.model_dump_json())
    else:
        typer.echo(f"{ticket.ticket_id}  priority={ticket.routing.priority}"
                   f"  segment={ticket.segmentation.segment}"
                   f"  kind={ticket.kind or '-'}  channel={ticket.channel}"
                   f"  received={ticket.received_at:%Y-%m-%d %H:%M:%S}"
                   f"  subject={ticket.subject!r}")


def _aging(text: str) -> priority.Aging:
    if text.strip() == "off":
        return priority.Aging(step=None)
    try:
        return priority.Aging(durations.parse_duration(text))
    except ValueError as exc:
        raise typer.BadParameter(f"{exc}, or 'off'", param_hint="--aging") from exc


def _ensure_may_read(department: str) -> tuple[str, str]:
    """Refuse (exit 1) unless the router says API_TOKEN is `department`'s credential or an
    admin's: the Kafka ACLs guard the lanes too, but not on a cluster without them. A
    `department` the routing table in force lacks (a typo) is refused first, in the
    router's words naming its departments, whoever's the token is. The router's URL and
    the token, to ask it about the copies read."""
    settings = _router_settings()
    if settings.api_token is None:
        _refuse(f"set API_TOKEN to the credential of {department} (or an admin's): the"
                " queue is read only with its own department's credential")
    try:
        holder = queue.holder(settings.router_url, settings.api_token.get_secret_value(),
                              department=department)
    except httpx.HTTPStatusError as exc:
        if exc.response.status_code == 401:
            _refuse("the router does not accept API_TOKEN (unknown, revoked or malformed)")
        if exc.response.status_code == 422:  # a department the routing table lacks
            _refuse(command_line.refusal(exc.response.text, OPTIONS))
        _refuse(f"cannot check API_TOKEN: the router answered {exc.response.status_code}"
                f" {exc.response.text}")
    except httpx.HTTPError as exc:
        _refuse(f"cannot check API_TOKEN: router unreachable at {settings.router_url}: {exc}")
    except pydantic.ValidationError:
        _refuse(f"cannot check API_TOKEN: the router at {settings.router_url} answered"
                " something else than a credential's role and subject")
    if not holder.may_act_for(department):
        whose = f" of {holder.subject}" if holder.subject else ""
        _refuse(f"API_TOKEN is a {holder.role.value} credential{whose}; the queue of"
                f" {department} is read only with {department}'s credential or an admin's")
    return settings.router_url, settings.api_token.get_secret_value()


def _refuse(message: str) -> NoReturn:
    typer.echo(f"refused: {message}", err=True)
    raise typer.Exit(1)


def _kafka_settings(kafka_user: str | None) -> Settings:
    overrides: dict[str, Any] = {"kafka_sasl_username": kafka_user} if kafka_user else {}
    asked_for = _password_to_ask(kafka_user, os.environ)
    if asked_for is not None:
        # Asked for, never an option: a command line shows in the process list.
        overrides["kafka_sasl_password"] = typer.prompt(
            f"Kafka password of {asked_for}", hide_input=True)
    return _settings(**overrides)


def _password_to_ask(kafka_user: str | None, environ: Mapping[str, str]) -> str | None:
    """The Kafka user whose password to ask for: on SASL without KAFKA_SASL_PASSWORD, the
    user of --kafka-user or else of KAFKA_SASL_USERNAME (none: the settings say what is
    missing). The names are read in any case, as the settings read them."""
    folded = {name.upper(): value for name, value in environ.items()}
    user = kafka_user or folded.get("KAFKA_SASL_USERNAME")
    sasl = folded.get("KAFKA_SECURITY_PROTOCOL", "").startswith("SASL_")
    return user if sasl and user and not folded.get("KAFKA_SASL_PASSWORD") else None


# What asking the router needs: not Kafka's security, whose password may be asked for
# only afterwards (or never, for the reports).
_WITHOUT_KAFKA_SECURITY: dict[str, Any] = {
    "kafka_security_protocol": "PLAINTEXT", "kafka_sasl_username": None,
    "kafka_sasl_password": None, "kafka_ssl_cafile": None, "kafka_ssl_certfile": None,
    "kafka_ssl_keyfile": None}


def _router_settings() -> Settings:
    return _settings(**_WITHOUT_KAFKA_SECURITY)


def _settings(**overrides: Any) -> Settings:
    try:
        return Settings(**overrides)
    except pydantic.ValidationError as exc:
        problems = "; ".join(request_bodies.message_of(error) for error in exc.errors())
        raise typer.BadParameter(problems, param_hint="settings") from exc


def _report(command: str, kind: str, ticket_id: str, department: str | None,
            key: str | None) -> None:
    if key is not None and not _a_key(key):
        raise typer.BadParameter(
            f"printable ASCII without spaces, 1 to {intake_policy.KEY_MAX_LENGTH} characters",
            param_hint="--idempotency-key")
    key = key or str(uuid.uuid4())
    again = " ".join(["department", command, shlex.quote(ticket_id),
                      *(["--department", shlex.quote(department)] if department else []),
                      "--idempotency-key", shlex.quote(key)])
    tries = _Tries()

    def tell_retry(error: BaseException, wait: float) -> None:
        tries.failed(error)
        failure = _failure_of(error)
        told = f"not confirmed yet ({failure}; a try left unanswered may be recorded)" \
            if tries.unanswered else f"not recorded yet ({failure})"
        typer.echo(f"{told}; trying again in {wait:g} s", err=True)

    _call(lambda url, token: queue.report(url, ticket_id, kind, department=department,
                                          token=token, idempotency_key=key,
                                          on_retry=tell_retry),
          again=again, tries=tries)


class _Tries:
    """What the failed tries of one report met: once one is left unanswered, the router
    may have taken the report, whatever the later tries meet."""

    def __init__(self) -> None:
        self.unanswered = False

    def failed(self, error: BaseException) -> None:
        self.unanswered = self.unanswered or retries.unconfirmed(error)


def _a_key(key: str) -> bool:
    return len(key) <= intake_policy.KEY_MAX_LENGTH \
        and intake_policy.KEY.fullmatch(key) is not None


# The router's request fields as this tool's options and arguments set them (what one
# refused is said as the option typed: command_line.refusal).
OPTIONS = {"path.ticket_id": "ticket_id", "query.department": "department",
           "body.department": "--department", "body.to_department": "--to",
           "body.from_department": "--department",
           "body.priority": "--to", "body.reason": "--reason",
           "header.Idempotency-Key": "--idempotency-key"}


def _failure_of(error: BaseException) -> str:
    if isinstance(error, httpx.HTTPStatusError):
        return (f"{error.response.status_code}"
                f" {command_line.refusal(error.response.text, OPTIONS)}")
    if retries.unconfirmed(error):
        return f"no answer from the router: {error}"
    return f"router unreachable: {error}"


def _call(action: Callable[[str, str | None], Mapping[str, object]], *,
          again: str | None = None, tries: _Tries | None = None) -> None:
    """Run `action` against the router and print its receipt; else say what became of
    the request and, for a report (`again`: the command sending it again under its
    key), how to send it again."""
    settings = _router_settings()
    token = settings.api_token.get_secret_value() if settings.api_token else None
    try:
        receipt = action(settings.router_url, token)
    except httpx.HTTPError as exc:
        where = "" if isinstance(exc, httpx.HTTPStatusError) else f" at {settings.router_url}"
        if not retries.may_be_recorded(exc, unanswered_before=bool(tries and tries.unanswered)):
            typer.echo(f"not recorded: {_failure_of(exc)}{where}", err=True)
            if again and retries.worth_another_try(exc):
                typer.echo(f"to try again, run: {again} (a report the router took already"
                           " is not recorded twice)", err=True)
            elif again and isinstance(exc, httpx.HTTPStatusError) \
                    and "idempotency_key_reused" in exc.response.text:
                typer.echo("that key was used for another report: leave --idempotency-key"
                           " out for a new one", err=True)
            raise typer.Exit(1) from exc
        why = "it may be recorded" if retries.unconfirmed(exc) \
            else "an earlier try was left unanswered: it may be recorded"
        typer.echo(f"not confirmed ({why}): {_failure_of(exc)}{where}", err=True)
        if again:
            typer.echo(f"to learn whether it was, and record it if not, run: {again} (the"
                       " router answers a report it took already with its receipt, and"
                       " records it once)", err=True)
        raise typer.Exit(1) from exc
    typer.echo(json.dumps(receipt))


DepartmentOption = Annotated[str | None, typer.Option(help="Your department")]
KeyOption = Annotated[str | None, typer.Option(
    "--idempotency-key",
    help="The report's key (a new one by default): the same report sent again under it is"
         " recorded once, e.g. after the tool gave up on an unreachable router")]


@app.command("pick-up")
def pick_up(ticket_id: TicketId, department: DepartmentOption = None,
            key: KeyOption = None) -> None:
    """Report that an agent has started on the ticket."""
    _report("pick-up", "picked_up", ticket_id, department, key)


@app.command()
def respond(ticket_id: TicketId, department: DepartmentOption = None,
            key: KeyOption = None) -> None:
    """Report the first response to the customer."""
    _report("respond", "responded", ticket_id, department, key)


@app.command("wait-on-customer")
def wait_on_customer(ticket_id: TicketId, department: DepartmentOption = None,
                     key: KeyOption = None) -> None:
    """Report that the ticket waits on the customer (waiting_on_customer): its clocks
    pause until the customer replies."""
    _report("wait-on-customer", "waiting_on_customer", ticket_id, department, key)


@app.command()
def resolve(ticket_id: TicketId, department: DepartmentOption = None,
            key: KeyOption = None) -> None:
    """Report that the ticket is resolved."""
    _report("resolve", "resolved", ticket_id, department, key)


@app.command("transfer")
def transfer_ticket(
    ticket_id: TicketId,
    to: Annotated[str, typer.Option(help="The department to hand it to")],
    reason: Annotated[str, typer.Option(help="Why (kept in the ticket's trace)")],
    department: DepartmentOption = None,
) -> None:
    """Hand a ticket to another department; its response clock keeps running."""
    _call(lambda url, token: queue.transfer(url, ticket_id, to, reason, token=token,
                                            from_department=department,
                                            on_retry=_tell_wait))


@app.command("priority")
def change_priority(
    ticket_id: TicketId,
    to: Annotated[int, typer.Option(help="The new priority (1 is the most urgent)")],
    reason: Annotated[str, typer.Option(help="Why (kept in the ticket's trace)")],
) -> None:
    """Give a ticket another priority: the table's targets for it, time spent kept."""
    _call(lambda url, token: queue.change_priority(url, ticket_id, to, reason, token=token,
                                                   on_retry=_tell_wait))


def _tell_wait(error: BaseException, wait: float) -> None:
    """A transfer or priority change turned away over the rate, to be sent again."""
    typer.echo(f"not recorded yet ({_failure_of(error)}); trying again in {wait:g} s",
               err=True)


if __name__ == "__main__":
    app()
