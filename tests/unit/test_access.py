"""Who may do what, and the token format: pure rules, plain values."""

from __future__ import annotations

import base64
import hashlib

import pytest

from services.core import access, auth
from services.core.access import Principal, Role


class TestTokens:
    def test_a_new_token_splits_into_its_id_and_a_secret_matching_the_stored_hash(
            self) -> None:
        issued = access.new_token()
        parts = access.split_token(issued.token)
        assert parts is not None
        credential_id, secret = parts
        assert credential_id == issued.credential_id
        assert access.secret_matches(secret, issued.secret_hash)
        assert secret not in issued.secret_hash

    def test_a_secret_is_256_random_bits_and_only_its_sha256_is_kept(self) -> None:
        """README, Credentials: `rt_<id>_<secret>` with 256 random bits; only a SHA-256 of
        the secret is stored."""
        issued = access.new_token()
        parts = access.split_token(issued.token)
        assert parts is not None and issued.token.startswith(f"rt_{issued.credential_id}_")
        secret = parts[1]
        padded = secret + "=" * (-len(secret) % 4)
        assert len(base64.urlsafe_b64decode(padded)) == 32
        assert issued.secret_hash == hashlib.sha256(secret.encode()).hexdigest()

    def test_tokens_are_unique(self) -> None:
        assert len({access.new_token().token for _ in range(100)}) == 100

    @pytest.mark.parametrize("token", ["", "rt", "rt_", "rt__secret", "xx_0123456789ab_s",
                                       "rt_short_secret", "rt_0123456789ab_"])
    def test_malformed_tokens_do_not_split(self, token: str) -> None:
        assert access.split_token(token) is None

    def test_another_secret_does_not_match(self) -> None:
        issued = access.new_token()
        assert not access.secret_matches("guess", issued.secret_hash)


class TestScope:
    def test_an_admin_acts_for_every_department(self) -> None:
        assert Principal("a", Role.ADMIN, None).may_act_for("public_sector")

    def test_a_department_acts_for_itself_only(self) -> None:
        team = Principal("d", Role.DEPARTMENT, "public_sector")
        assert team.may_act_for("public_sector")
        assert not team.may_act_for("business_desk")

    def test_a_platform_acts_for_no_department(self) -> None:
        assert not Principal("p", Role.PLATFORM, "public_sector").may_act_for("public_sector")


class TestSubjects:
    @pytest.mark.parametrize(("role", "subject", "fits"), [
        (Role.ADMIN, None, True), (Role.ADMIN, "ops", False),
        (Role.PLATFORM, "zendesk", True), (Role.PLATFORM, None, False),
        (Role.DEPARTMENT, "public_sector", True), (Role.DEPARTMENT, "", False)])
    def test_subject_fits_role(self, role: Role, subject: str | None, fits: bool) -> None:
        assert (access.subject_problem(role, subject) is None) is fits


def test_a_credential_check_names_the_roles_it_admits() -> None:
    """`require()` with no role would admit every one: refused where the route is
    declared, so that an empty list of roles cannot open a route (any role is
    `auth.Authenticated`, by name)."""
    with pytest.raises(ValueError, match="name the roles"):
        auth.require()
