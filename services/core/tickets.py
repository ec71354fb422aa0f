"""The ticket as it travels the pipeline, and the stages' additions to it.

One set of models for what the intake accepts over HTTP and what every stage reads from
Kafka: a ticket the intake accepted is one every stage can read, serialise and store, and
a record that does not fit these models is refused by the stage that reads it (it goes to
the dead letters, with the field and the problem).
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from datetime import datetime
from enum import StrEnum
from typing import Annotated, Any

from pydantic import (
    AfterValidator,
    AliasChoices,
    AwareDatetime,
    BaseModel,
    ConfigDict,
    Field,
    PlainValidator,
    WithJsonSchema,
)

from services.core import (
    durations,
    envelope,
    identifiers,
    language_tags,
    request_bodies,
    text_forms,
    tiers,
    topics,
    versions,
)

INT64_MIN, INT64_MAX = -(2**63), 2**63 - 1
_TWO_TO_63 = 2.0**63  # exactly a float: the numbers' bound, exclusive
MAX_ATTRIBUTES = 50
MAX_ATTRIBUTE_TEXT = 1_000
# A segment rule's name, as a ticket's segmentation carries it, and a routing refinement's,
# as its routing does (twice: its entry and its explanation).
MAX_RULE_NAME = 200

# Every record the pipeline writes must fit envelope.MAX_RECORD_BYTES. A ticket is
# accepted only if it fits with this much room to spare for what the stages add to it
# (segmentation, routing and its explanation) on its way to the department queue.
STAGE_HEADROOM_BYTES = 64 * 1024
MAX_TICKET_RECORD_BYTES = envelope.MAX_RECORD_BYTES - STAGE_HEADROOM_BYTES


def valid_text(value: str) -> str:
    """Text that every stage can serialise and every store can hold: valid Unicode (no
    lone surrogates, which JSON's \\ud800 escapes can produce) and no NUL character."""
    if not text_forms.is_unicode(value):
        raise ValueError(text_forms.NOT_UNICODE)
    if "\x00" in value:
        raise ValueError("must not hold the NUL character (\\u0000)")
    return value


def _attribute_value(value: object) -> str | int | float | bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, int):
        if not INT64_MIN <= value <= INT64_MAX:
            raise ValueError("an integer must fit in 64 bits (-2^63 to 2^63-1);"
                             " send a larger number as text")
        return value
    if isinstance(value, float):
        if not math.isfinite(value):
            raise ValueError("a number must be finite (not NaN or infinity)")
        # Below 2^63, as the schema says (exclusiveMaximum): as a float, 2^63-1 is 2^63.
        if not float(INT64_MIN) <= value < _TWO_TO_63:
            raise ValueError("a number must be at least -2^63 and below 2^63")
        return value
    if isinstance(value, str):
        if len(value) > MAX_ATTRIBUTE_TEXT:
            raise ValueError(f"text must be at most {MAX_ATTRIBUTE_TEXT} characters")
        return valid_text(value)
    raise ValueError("an attribute is text, a number or true/false")


Text = Annotated[str, AfterValidator(valid_text),
                 Field(json_schema_extra={"pattern": "^[^\\u0000]*$"})]


# Spaces, as JSON Schema's (ECMAScript's) `\s` means them, and what else shows nothing
# (the next line U+0085, the zero-width spaces and joiners, the word joiner, the
# Mongolian vowel separator), written out: Python's own `\s` and str.isspace() hold
# others, so the schema and the validator would part.
SPACES = ("\\t\\n\\v\\f\\r \\u0085\\u00a0\\u1680\\u180e\\u2000-\\u200d\\u2028\\u2029"
          "\\u202f\\u205f\\u2060\\u3000\\ufeff")
# Stated text's pattern, for the schema and `stated` alike: no NUL, not only spaces.
NOT_ONLY_SPACES = f"^[^\\u0000]*[^{SPACES}\\u0000][^\\u0000]*$"
_SAYS_SOMETHING = re.compile(f"[^{SPACES}]")


def stated(value: str) -> str:
    """Text that says something: not only spaces (a reason of "  " gives none)."""
    if not _SAYS_SOMETHING.search(value):
        raise ValueError("must say something: it holds only spaces")
    return value


# Stated text's rule, as the schema says it and `stated` checks it: added to a text type,
# `Annotated[Text, *SAYS_SOMETHING]`.
SAYS_SOMETHING = (Field(json_schema_extra={"pattern": NOT_ONLY_SPACES}),
                  AfterValidator(stated))
# Why a person moved a ticket (a transfer, a priority change): kept in its trace.
MAX_REASON = 200
Reason = Annotated[str, Field(min_length=1, max_length=MAX_REASON), AfterValidator(valid_text),
                   *SAYS_SOMETHING]
Identifier = Annotated[str, Field(min_length=1, max_length=identifiers.MAX_LENGTH,
                                  pattern=identifiers.ID.pattern)]
# Department and segment names: also Kafka topic parts and database keys.
Name = Annotated[str, Field(pattern=topics.DEPARTMENT_NAME.pattern)]
# A ticket's priority: 1 the most urgent, 5 the least; one without is taken as the middle
# one (the lane departments read by default).
HIGHEST_PRIORITY, MIDDLE_PRIORITY, LOWEST_PRIORITY = 1, 3, 5
Priority = Annotated[int, Field(ge=HIGHEST_PRIORITY, le=LOWEST_PRIORITY)]
# The platform that posted a ticket (its credential's subject).
MAX_PLATFORM = 128
Platform = Annotated[Text, Field(min_length=1, max_length=MAX_PLATFORM)]
AttributeName = Annotated[Text, Field(min_length=1, max_length=64)]
AttributeValue = Annotated[str | int | float | bool, PlainValidator(_attribute_value)]


def attributes_schema(most: int, description: str) -> WithJsonSchema:
    """An attributes map's schema, said whole as the validators check it (pydantic
    would turn the names' pattern into patternProperties, which constrain nothing)."""
    return WithJsonSchema({
        "type": "object", "maxProperties": most, "description": description,
        "propertyNames": {"type": "string", "minLength": 1, "maxLength": 64,
                          "pattern": "^[^\\u0000]*$"},
        "additionalProperties": {"anyOf": [
            {"type": "string", "maxLength": MAX_ATTRIBUTE_TEXT,
             "pattern": "^[^\\u0000]*$"},
            # Not "maximum": 2^63-1: the OpenAPI document holds its numbers as floats,
            # where 2^63-1 is 2^63, and 2^63 would be valid by it.
            {"type": "number", "minimum": INT64_MIN, "exclusiveMaximum": _TWO_TO_63,
             "description": "finite; an integer within 64 bits"},
            {"type": "boolean"}]}})


def _language(validate: Any, pattern: str) -> tuple[AfterValidator, WithJsonSchema]:
    return (AfterValidator(validate), WithJsonSchema({
        "type": "string", "maxLength": language_tags.MAX_LENGTH, "pattern": pattern,
        "description": language_tags.DESCRIPTION}))


# A language tag a platform sends (the intake's), and one a ticket's record holds: as
# the intake takes it, or as it took one before (language_tags.recorded_language).
LanguageTag = Annotated[request_bodies.UnicodeText,
                        *_language(language_tags.language_tag, language_tags.PATTERN)]
RecordedLanguage = Annotated[str, *_language(language_tags.recorded_language,
                                             language_tags.RECORDED_PATTERN)]


class Channel(StrEnum):
    EMAIL = "email"
    WEB = "web"
    CHAT = "chat"
    PHONE = "phone"
    SOCIAL = "social"
    API = "api"


class Kind(StrEnum):
    QUESTION = "question"
    COMPLAINT = "complaint"
    SUGGESTION = "suggestion"
    REQUEST = "request"
    INCIDENT = "incident"
    OTHER = "other"


# A ticket's subject. A platform's new ticket's says something (the intake's
# TicketSubmission adds SAYS_SOMETHING); a record's may be only spaces, as the intake
# took before, so that such a ticket is still read.
MAX_SUBJECT = 500
Subject = Annotated[Text, Field(min_length=1, max_length=MAX_SUBJECT)]


class TicketContent(BaseModel):
    """What a support platform says about a ticket."""

    model_config = ConfigDict(frozen=True, extra="ignore", use_enum_values=True)

    customer_id: Identifier
    subject: Subject
    body: Annotated[Text, Field(max_length=50_000)]
    channel: Channel
    kind: Kind | None = None
    language: RecordedLanguage | None = None
    attributes: Annotated[dict[AttributeName, AttributeValue], attributes_schema(
        MAX_ATTRIBUTES, "The platform's own data about the ticket, for routing rules"),
        request_bodies.at_most_entries(MAX_ATTRIBUTES)] = Field(default_factory=dict)


class Ticket(TicketContent):
    """A customer's request, as accepted by the intake."""

    ticket_id: Identifier
    received_at: AwareDatetime
    # The support platform that posted it (its credential's subject), told of what
    # becomes of it; None for a ticket an admin posted.
    platform: Platform | None = None

    def with_segmentation(self, segmentation: Segmentation) -> SegmentedTicket:
        # The fields from `__dict__`: `dict(self)` first looks for a `keys` attribute,
        # which a pydantic model answers through its slow `__getattr__` (twice the cost).
        return SegmentedTicket.model_construct(**self.__dict__, segmentation=segmentation)

    def segmented_data(self, segmentation: Segmentation) -> dict[str, Any]:
        """What tickets.segmented carries: `with_segmentation(...)` as JSON data, without
        building the segmented ticket only to take it apart again."""
        return {**self.model_dump(mode="json"),
                "segmentation": segmentation.model_dump(mode="json")}


def received(content: TicketContent, *, ticket_id: str, received_at: datetime,
             platform: str | None) -> Ticket:
    """The ticket of a platform's content and what the intake adds, validated whole: as
    `Ticket(**dict(content), ...)` is, at about half its cost (the content's fields read
    from its `__dict__` rather than by iterating the model, and validated from one dict
    rather than from keyword arguments)."""
    return Ticket.model_validate({**content.__dict__, "ticket_id": ticket_id,
                                  "received_at": received_at, "platform": platform})


# The segment of a ticket whose customer could not be looked up (the customer store was
# down past its grace period): routed like any segment without a route, to the fallback
# department, unless the routing table routes it.
DEGRADED_SEGMENT = "unsegmented"


def rule_view(ticket: Ticket | None) -> dict[str, Any]:
    """What segment rules and routing refinements read of a ticket, as `ticket.<field>`
    (None: a customer's segment asked outside any ticket, every field null)."""
    if ticket is None:
        return {"kind": None, "channel": None, "language": None, "attributes": {}}
    return {"kind": ticket.kind, "channel": ticket.channel, "language": ticket.language,
            "attributes": dict(ticket.attributes)}


def describe_view(view: Mapping[str, Any]) -> str:
    """A rule's view of a ticket in words (an error naming the probe a rule failed on)."""
    attributes = dict(view["attributes"])
    said = (f"{len(attributes)} attributes (the most a ticket has)"
            if len(attributes) >= MAX_ATTRIBUTES else f"attributes {attributes or 'none'}")
    return (f"a ticket of kind {view['kind'] or 'null'} by {view['channel']}, language"
            f" {view['language'] or 'null'}, {said}")


def probe_tickets(received_at: datetime) -> list[Ticket]:
    """Tickets every rule on tickets must evaluate on before it serves (segment rules,
    routing refinements): every kind (and none) on every channel, language null and no
    attributes; and one with every field set. A rule reading a field that may be null
    without a guard fails on one of them."""
    probes = [Ticket(ticket_id="probe", customer_id="probe", subject="probe", body="",
                     channel=channel, kind=kind, received_at=received_at)
              for kind in (None, *Kind) for channel in Channel]
    probes.append(Ticket(ticket_id="probe", customer_id="probe", subject="probe", body="",
                         channel=Channel.EMAIL, kind=Kind.COMPLAINT, language="nl",
                         received_at=received_at))
    return probes


def largest_ticket(received_at: datetime) -> Ticket:
    """The largest ticket a platform may send, as rules read it: the most attributes, each
    of the longest text, no two alike. Rules and refinements are checked on it for CEL's
    iteration budget alone (loops over its attributes that go past it are refused at
    load); any other failure on it is left to run time, where the rule does not hold."""
    return Ticket(ticket_id="probe", customer_id="probe", subject="probe", body="",
                  channel=Channel.EMAIL, kind=Kind.COMPLAINT, language="nl",
                  received_at=received_at, attributes=most_attributes(MAX_ATTRIBUTES))


def most_attributes(count: int) -> dict[str, str]:
    """`count` attributes, each of the longest text and no two alike (a loop looking for
    two equal ones goes through them all): a probe's, as large as may come."""
    return {f"probe_{n}": f"{n:04d}".ljust(MAX_ATTRIBUTE_TEXT, "x") for n in range(count)}


class Segmentation(BaseModel):
    """Which customer group a ticket belongs to, and why."""

    model_config = ConfigDict(frozen=True)

    segment: Name
    rule: Annotated[Text, Field(max_length=MAX_RULE_NAME)]
    rules_version: Annotated[Text, Field(max_length=versions.MAX_VERSION)]
    customer_known: bool
    tier: tiers.TicketTier  # on the wire as the tier's name, or "unknown"
    # The values the deciding rule read, by path: each a single value (text, a number,
    # true/false) or none, a withheld one named by its path only (segmenter.rules).
    decided_by: dict[Text, AttributeValue | None] = Field(default_factory=dict)
    degraded: Annotated[Text, Field(max_length=MAX_RULE_NAME)] | None = None  # why the
    # segment is not the customer's (the store down)


class SegmentedTicket(Ticket):
    segmentation: Segmentation

    def with_routing(self, routing: Routing) -> RoutedTicket:
        return RoutedTicket.model_construct(**self.__dict__, routing=routing)

    def routed_data(self, routing: Routing) -> dict[str, Any]:
        """What a department lane carries: `with_routing(...)` as JSON data, without
        building the routed ticket only to take it apart again."""
        return {**self.model_dump(mode="json"), "routing": routing.model_dump(mode="json")}


class Routing(BaseModel):
    """Which department a ticket went to, and why (`explanation`, in words). A ticket's
    trace is something else: its history of steps, kept by the router."""

    model_config = ConfigDict(frozen=True)

    department: Name
    # route, fallback, refinement, overflow, after_hours; escalation or transfer later
    reason: str
    entry: str | None = None  # the route's segment or the refinement's name
    table_version: str
    routed_at: AwareDatetime
    queue: str | None = None  # the lane topic it joined
    priority: Priority | None = None
    # The routing table's priority_aging when routed: the priority rises one level per
    # this many seconds of waiting since routed_at (null: aging off). A record without
    # the key predates it: readers age it by their own default. Bounded as the table's
    # durations are: a step rounding to no time, or past any date, ages nothing.
    priority_aging_seconds: float | None = Field(
        default=None, ge=durations.SHORTEST.total_seconds(),
        le=durations.LONGEST.total_seconds())
    first_response_target_seconds: float | None = None
    first_response_deadline: AwareDatetime | None = None
    overflowed_from: str | None = None
    # Read as `trace` too from records routed before it was named so.
    explanation: list[str] = Field(default_factory=list,
                                   validation_alias=AliasChoices("explanation", "trace"))


class RoutedTicket(SegmentedTicket):
    routing: Routing

    def handed_to(self, department: str, *, reason: str, at: datetime, queue: str,
                  first_response_deadline: datetime | None = None) -> RoutedTicket:
        """The same ticket handed on (escalated or transferred) to `department`, joining
        `queue`, due as its first-response clock says now (the clock keeps the time it
        spent and counts the rest in the new department's hours:
        service_clocks.handed_over); without one (not running), the deadline stays."""
        routing = self.routing.model_copy(update={
            "department": department, "reason": reason, "routed_at": at, "queue": queue,
            "first_response_deadline": first_response_deadline
            or self.routing.first_response_deadline})
        return self.model_copy(update={"routing": routing})
