"""Credentials over HTTP, for admins: issue (the token is shown once), list, change (its
label, its own limits), revoke; and, for any credential, whose it is
(`/v1/credentials/me`).

Rotating a credential: issue a new one for the same subject, move the client over,
revoke the old one. Both work in between, so nothing is refused during the switch.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Collection
from dataclasses import dataclass
from typing import Annotated, Any

from fastapi import APIRouter, Depends, HTTPException, Path, Query
from pydantic import BaseModel, ConfigDict, Field, ValidationInfo, field_validator
from pydantic.config import JsonDict
from pydantic.json_schema import SkipJsonSchema

from services.core import (
    access,
    admin_actions,
    auth,
    body_bytes,
    credentials,
    http,
    request_bodies,
    service_context,
    settings,
    text_forms,
    tickets,
    topics,
    unknown_departments,
)
from services.core.credentials import Credential, Credentials

CREDENTIAL_ID = text_forms.Form(r"^[0-9a-f]{12}$", "a credential's id as it was shown when"
                                " issued: 12 hexadecimal digits, 0-9 and a-f")

api = APIRouter(prefix="/v1/credentials", tags=["credentials"])
Store = Annotated[Credentials, Depends(auth.get_credentials)]


@dataclass(frozen=True)
class KnownDepartments:
    """The departments of the routing table in force, as the service that holds it
    (the router) provides them: a department's credential names one of them. Why a
    name is `unknown` to act for (unknown_departments), or None: the router's rule
    (services/router/service/acting_for.py: a department gone from the table that
    still holds open tickets is known too, to read, as its lanes hold them)."""

    current: Callable[[], Collection[str]]
    unknown: Callable[[str], Awaitable[str | None]]


def department_problem(role: access.Role, subject: str | None,
                       known: Collection[str]) -> str | None:
    """Why `subject` cannot be a department credential's (None: it can, or the role is
    not a department's): a typo would give a token that acts for no queue."""
    if role is not access.Role.DEPARTMENT or subject is None or subject in known:
        return None
    return unknown_departments.answer(subject, known)


async def get_known_departments(context: service_context.Context
                                ) -> KnownDepartments | None:
    try:
        return context.part(KnownDepartments)
    except LookupError:  # a service without the routing table (a test mounting this API)
        return None


Known = Annotated[KnownDepartments | None, Depends(get_known_departments)]
CredentialId = Annotated[str, Path(pattern=CREDENTIAL_ID.pattern,
                                   description="The id shown when it was issued")]


# Admins have no subject, platforms and departments need one (`access.subject_problem`),
# said in the schema too, so that generated clients and fuzzers know it. A null subject
# counts as none.
_SUBJECT_FITS_ROLE: JsonDict = {"oneOf": [
    {"properties": {"role": {"const": access.Role.ADMIN.value},
                    "subject": {"type": "null"}}},
    {"properties": {"role": {"enum": [role.value for role in access.Role
                                      if role is not access.Role.ADMIN]},
                    "subject": {"type": "string"}},
     "required": ["subject"]},
]}


class CredentialTerms(request_bodies.RequestBody):
    """What a credential carries beside its role and subject: its label and its own
    limits, given when it is issued and changed since (one definition for both)."""

    label: tickets.Text = Field(default="", max_length=credentials.MAX_LABEL,
                       description="What it is for, e.g. 'zendesk production, 2026-11'")
    rate_limit: str | None = Field(
        default=None, pattern=settings.RATE.pattern,
        description="Its own rate limit (platforms: on the intake; departments and admins:"
                    f" on reports, transfers and priority changes): {settings.RATE.words}")

    byte_rate_limit: str | None = Field(
        default=None, pattern=body_bytes.BYTE_RATE.pattern, max_length=credentials.MAX_RATE,
        description="Its own budget of body bytes, on the routes its rate limit counts:"
                    f" {body_bytes.ACCEPTED}; {body_bytes.LEAST}")

    @field_validator("rate_limit")
    @classmethod
    def _a_rate(cls, value: str | None) -> str | None:
        return None if value is None else settings.check_rate(value)

    @field_validator("byte_rate_limit")
    @classmethod
    def _a_byte_rate(cls, value: str | None) -> str | None:
        return None if value is None else body_bytes.check(value)


# The service's setting each limit of a credential's own stands in for when it has none.
LIMIT_SETTINGS = {"rate_limit": "INTAKE_RATE_LIMIT", "byte_rate_limit": "INTAKE_BYTE_RATE_LIMIT"}


def the_default(field: str) -> str:
    """What a credential without its own limit `field` gets, in words."""
    return f"the service's {LIMIT_SETTINGS[field]}"


def issued_without(field: str) -> str:
    """What issuing without the limit `field` gives, said after its description (the
    request's schema, `issue`'s help)."""
    return f" (default: {the_default(field)})"


def changed_without(field: str, *, back: str) -> str:
    """What a change leaving out the limit `field` does, and what `back` (null in the
    API, an option of `change`) does, said after its description."""
    return f" (left out: unchanged; {back} for {the_default(field)})"


def _limits_described(without: Callable[[str], str], also: JsonDict | None = None
                      ) -> Callable[[JsonDict], None]:
    """A schema's extra: each limit's description (CredentialTerms', shared) followed by
    what `without` says of leaving it out, in that request."""
    def extra(schema: JsonDict) -> None:
        schema.update(also or {})
        properties = schema["properties"]
        assert isinstance(properties, dict)
        for field in LIMIT_SETTINGS:
            described = properties[field]
            assert isinstance(described, dict)
            described["description"] = f"{described['description']}{without(field)}"
    return extra


class CredentialRequest(CredentialTerms):
    model_config = ConfigDict(json_schema_extra=_limits_described(issued_without,
                                                                  _SUBJECT_FITS_ROLE))

    role: access.Role
    subject: str | None = Field(
        default=None, pattern=access.SUBJECT.pattern, validate_default=True,
        description="The platform's or the department's name; none for admins")

    @field_validator("subject")
    @classmethod
    def _fits_the_role(cls, subject: str | None, info: ValidationInfo) -> str | None:
        role = info.data.get("role")  # absent when the role itself was refused
        problem = None if role is None else access.subject_problem(role, subject)
        if problem:
            raise ValueError(problem)
        return subject


class CredentialChange(CredentialTerms):
    """A credential's label or own limits, changed: a field left out stays as it is, a
    limit null is the service's default again. Its role and subject are not changed
    (`fixed_problem`)."""

    model_config = ConfigDict(json_schema_extra=_limits_described(
        lambda field: changed_without(field, back="null")))

    # Not in the schema: any value is refused, naming the field (an unknown field would
    # be refused too, without saying what to do).
    role: SkipJsonSchema[None] = None
    subject: SkipJsonSchema[None] = None

    @field_validator("role", "subject", mode="before")
    @classmethod
    def _fixed(cls, _value: object, info: ValidationInfo) -> None:
        raise ValueError(fixed_problem(str(info.field_name)))

    @property
    def changes(self) -> dict[str, str | None]:
        """The fields sent, by name."""
        return {name: getattr(self, name) for name in credentials.CHANGEABLE
                if name in self.model_fields_set}


def fixed_problem(field: str) -> str:
    return (f"a credential's {field} cannot change: issue a new credential with the"
            f" {field} wanted, move its holder to it, and revoke this one")


def no_credential(credential_id: str) -> str:
    return f"no credential {credential_id!r}"


class CredentialIssued(Credential):
    token: str = Field(description="Shown this once: only its hash is kept")


class Holder(BaseModel):
    """Whose a credential is: what a tool checks before acting for a department."""

    role: access.Role
    subject: str | None = Field(description="The platform's or the department's name;"
                                            " null for admins")

    def may_act_for(self, department: str) -> bool:
        return access.may_act_for(self.role, self.subject, department)


@api.get("/me", response_model=Holder, responses={
    503: {"description": "The credential store is unavailable (only a platform's key is"
                         " then checked, on its last good read); retry after Retry-After"}})
async def me(principal: auth.Authenticated, departments: Known, department: Annotated[
        str | None, Query(pattern=topics.DEPARTMENT_NAME.pattern, description=(
            "A department the caller means to act for: one the routing table in force"
            " lacks (and that holds no open ticket) is refused 422 naming"
            " `query.department` and listing the table's departments, before any"
            " credential's scope is checked (`department queue` asks so)"))] = None,
             ) -> Holder:
    """The role and subject of the credential sent: any valid credential may ask."""
    problem = None if department is None or departments is None \
        else await departments.unknown(department)
    if problem is not None:
        raise http.InvalidField("query.department", problem)
    return Holder(role=principal.role, subject=principal.subject)


@api.post("", status_code=201, response_model=CredentialIssued,
          dependencies=auth.ADMIN_ONLY)
async def issue(request: CredentialRequest, store: Store, principal: auth.Admin,
                departments: Known) -> CredentialIssued:
    """Issue a credential; the answer holds its token, which is never shown again. A
    department's names a department of the routing table in force."""
    problem = None if departments is None else department_problem(
        request.role, request.subject, departments.current())
    if problem is not None:
        raise http.InvalidField("body.subject", problem)
    credential, token = await store.issue(request.role, request.subject, label=request.label,
                                          rate_limit=request.rate_limit,
                                          byte_rate_limit=request.byte_rate_limit,
                                          actor=admin_actions.actor_of(principal))
    return CredentialIssued(**credential.model_dump(), token=token)


@api.get("", response_model=list[Credential], dependencies=auth.ADMIN_ONLY)
async def listed(store: Store, role: access.Role | None = None,
                 subject: Annotated[str | None,
                                    Query(pattern=access.SUBJECT.pattern)] = None) -> Any:
    """Every credential (revoked ones too), without secrets."""
    return await store.listed(role=role, subject=subject)


@api.delete("/{credential_id}", response_model=Credential, dependencies=auth.ADMIN_ONLY)
async def revoke(credential_id: CredentialId, store: Store, principal: auth.Admin
                 ) -> Credential:
    """Revoke a credential: refused everywhere within AUTH_CACHE_SECONDS, no restart."""
    credential = await store.revoke(credential_id, actor=admin_actions.actor_of(principal))
    if credential is None:
        raise _not_found(credential_id)
    return credential


@api.patch("/{credential_id}", response_model=Credential, dependencies=auth.ADMIN_ONLY,
           responses={409: {"description": "The credential is revoked: issue a new one"}})
async def change(credential_id: CredentialId, request: CredentialChange, store: Store,
                 principal: auth.Admin) -> Credential:
    """Change a credential's label or its own limits (null: the service's default), in
    force everywhere within AUTH_CACHE_SECONDS, no restart; its role and subject are
    fixed (422 naming them: issue a new credential for another)."""
    changed = await store.change(credential_id, request.changes,
                                 actor=admin_actions.actor_of(principal))
    if changed is None:
        raise _not_found(credential_id)
    if isinstance(changed, credentials.Revoked):
        raise HTTPException(409, detail={"error": "revoked", "detail": changed.problem})
    return changed


def _not_found(credential_id: str) -> HTTPException:
    return HTTPException(404, detail={"error": "not_found",
                                      "detail": no_credential(credential_id)})
