"""What a credential carries beside its role and subject (`CredentialTerms`): the fields
the API takes are those the store changes."""

from __future__ import annotations

from services.core import credentials, credentials_api


def test_the_terms_taken_are_the_terms_the_store_changes() -> None:
    # A field of one and not the other would be dropped, unsaid, by `.changes`.
    assert set(credentials_api.CredentialTerms.model_fields) == set(credentials.CHANGEABLE)

