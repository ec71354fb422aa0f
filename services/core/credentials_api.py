"""Credentials over HTTP, for admins: issue (the token is shown once), list, revoke.

Rotating a credential: issue a new one for the same subject, move the client over,
revoke the old one. Both work in between, so nothing is refused during the switch.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, HTTPException, Path, Query
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from services.core import access, auth, settings
from services.core.credentials import Credential, Credentials

SUBJECT = r"^[a-z0-9][a-z0-9._-]{0,62}$"
# One rate, in the part of the `limits` grammar (`settings.check_rate`) that people write:
# a schema violation rather than a refusal the schema does not tell.
RATE = (r"^[1-9][0-9]{0,8} ?(/|per) ?([1-9][0-9]{0,8} ?)?"
        r"(second|minute|hour|day|month|year)s?$")

api = APIRouter(prefix="/v1/credentials", tags=["credentials"], dependencies=auth.ADMIN_ONLY)
Store = Annotated[Credentials, Depends(auth.get_credentials)]
CredentialId = Annotated[str, Path(pattern=r"^[0-9a-f]{12}$",
                                   description="The id shown when it was issued")]


class CredentialRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    role: access.Role
    subject: str | None = Field(
        default=None, pattern=SUBJECT,
        description="The platform's or the department's name; none for admins")
    label: str = Field(default="", max_length=200,
                       description="What it is for, e.g. 'zendesk production, 2026-11'")
    rate_limit: str | None = Field(
        default=None, pattern=RATE,
        description="Platforms: their own intake rate limit, e.g. 200/second, 6000/minute,"
                    " 10 per second or 100/5 minutes (default: the service's"
                    " INTAKE_RATE_LIMIT)")

    @field_validator("rate_limit")
    @classmethod
    def _a_rate(cls, value: str | None) -> str | None:
        return None if value is None else settings.check_rate(value)

    @model_validator(mode="after")
    def _subject_fits_role(self) -> CredentialRequest:
        problem = access.subject_problem(self.role, self.subject)
        if problem:
            raise ValueError(problem)
        return self


class CredentialIssued(Credential):
    token: str = Field(description="Shown this once: only its hash is kept")


@api.post("", status_code=201, response_model=CredentialIssued)
async def issue(request: CredentialRequest, store: Store) -> CredentialIssued:
    """Issue a credential; the answer holds its token, which is never shown again."""
    credential, token = await store.issue(request.role, request.subject, label=request.label,
                                          rate_limit=request.rate_limit)
    return CredentialIssued(**credential.model_dump(), token=token)


@api.get("", response_model=list[Credential])
async def listed(store: Store, role: access.Role | None = None,
                 subject: Annotated[str | None, Query(pattern=SUBJECT)] = None) -> Any:
    """Every credential (revoked ones too), without secrets."""
    return await store.listed(role=role, subject=subject)


@api.delete("/{credential_id}", response_model=Credential)
async def revoke(credential_id: CredentialId, store: Store) -> Credential:
    """Revoke a credential: refused everywhere within AUTH_CACHE_SECONDS, no restart."""
    credential = await store.revoke(credential_id)
    if credential is None:
        raise HTTPException(404, detail={"error": "not_found",
                                         "detail": f"no credential {credential_id!r}"})
    return credential
