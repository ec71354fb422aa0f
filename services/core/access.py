"""Who may do what: credentials' roles and scopes, and the token format. Pure code.

Three roles:
- `platform`: a support platform (its name is the subject) posts tickets;
- `department`: a department's team (its name is the subject) reads and acts on the
  tickets and statistics of its own department only;
- `admin`: operators: customers, rules, routing table, dead letters, credentials, and
  everything a department may do, for every department.

A token reads `rt_<credential id>_<secret>`. Only a hash of the secret is stored: the
secret is 256 random bits, so one SHA-256 is as strong as a slow password hash and keeps
each request cheap.
"""

from __future__ import annotations

import enum
import hashlib
import hmac
import secrets
from dataclasses import dataclass

from services.core import text_forms

PREFIX = "rt"
ID_BYTES = 6
SECRET_BYTES = 32
# The longest subject (a platform's or a department's name): a department's credential
# names any department, so never shorter than topics.MAX_NAME.
MAX_SUBJECT = 63
SUBJECT = text_forms.Form(
    f"^[a-z0-9][a-z0-9._-]{{0,{MAX_SUBJECT - 1}}}$",
    "a platform's or a department's name: lower-case letters a-z, digits, '.', '_' or '-',"
    f" starting with a letter or a digit, at most {MAX_SUBJECT} characters")


class Role(enum.StrEnum):
    PLATFORM = "platform"
    DEPARTMENT = "department"
    ADMIN = "admin"


@dataclass(frozen=True)
class Principal:
    """The holder of a valid credential."""

    credential_id: str
    role: Role
    subject: str | None  # the platform's or the department's name; None for admins
    rate_limit: str | None = None  # e.g. "50/second"; None: the service's default
    # Its budget of body bytes, e.g. "16MiB/second"; None: the service's default.
    byte_rate_limit: str | None = None

    def may_act_for(self, department: str) -> bool:
        """Whether this principal may read or act on `department`'s tickets and stats."""
        return may_act_for(self.role, self.subject, department)


def may_act_for(role: Role, subject: str | None, department: str) -> bool:
    """Whether a credential of this role and subject may read or act on `department`'s
    tickets, queue and stats: an admin's, or that department's own."""
    return role is Role.ADMIN or (role is Role.DEPARTMENT and subject == department)


@dataclass(frozen=True)
class IssuedToken:
    credential_id: str
    token: str
    secret_hash: str


def new_token() -> IssuedToken:
    credential_id = secrets.token_hex(ID_BYTES)
    secret = secrets.token_urlsafe(SECRET_BYTES)
    return IssuedToken(credential_id, f"{PREFIX}_{credential_id}_{secret}", hash_secret(secret))


def hash_secret(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def split_token(token: str) -> tuple[str, str] | None:
    """(credential id, secret) of a well-formed token, else None."""
    prefix, _, rest = token.partition("_")
    credential_id, _, secret = rest.partition("_")
    if prefix != PREFIX or len(credential_id) != 2 * ID_BYTES or not secret:
        return None
    return credential_id, secret


def secret_matches(secret: str, stored_hash: str) -> bool:
    return hmac.compare_digest(hash_secret(secret), stored_hash)


def subject_problem(role: Role, subject: str | None) -> str | None:
    """Why a subject does not suit the role, or None when it does."""
    if role is Role.ADMIN:
        return None if subject is None else "admin credentials have no subject"
    if not subject:
        return f"{role.value} credentials need the {role.value}'s name as subject"
    return None
