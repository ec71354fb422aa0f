"""The history of a governed configuration (segment rules, routing table) over HTTP: its
versions (who put each in force, when, why), one version's text (the export path), the
diff of two, and rolling back to an earlier one. Each service includes these routes
under its configuration's own prefix (admins only, as the rest of it)."""

# No `from __future__ import annotations`: the routes are built in a function, and
# FastAPI reads their parameter types at definition time.
from collections.abc import Awaitable, Callable
from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Depends, HTTPException, Path, Query, Response
from pydantic import BaseModel, Field

from services.core import (
    access,
    auth,
    config_files,
    config_preconditions,
    config_store,
    http,
    request_bodies,
    text_forms,
    versions,
)
from services.core.live_config import Admission, LiveConfig, NotAdmitted

# A version id as the store holds it (a 32-bit integer column on PostgreSQL).
LARGEST_ID = 2**31 - 1
VersionId = Annotated[int, Path(ge=1, le=LARGEST_ID)]
# One line of text for people, with no control characters.
COMMENT = text_forms.Form(r"^[^\x00-\x1f\x7f]*$", "one line of text, without ASCII control"
                          " characters (no line breaks or tabs)")
Comment = Annotated[str, Field(max_length=versions.MAX_COMMENT,
                               pattern=COMMENT.pattern,
                               description="why: kept with the version, for good")]
CommentQuery = Annotated[str, Query(max_length=versions.MAX_COMMENT,
                                    pattern=COMMENT.pattern,
                                    description="why: kept with the version, for good")]


class VersionSummary(BaseModel):
    version_id: int
    version: str = Field(description="as the file names it, with a digest of its text")
    sha256: str
    author: str = Field(description="the credential that put it in force, or the file")
    comment: str
    created_at: datetime
    in_force: bool


class VersionText(VersionSummary):
    text: str = Field(description="the file as it was put in force (export)")


class VersionDiff(BaseModel):
    from_version_id: int
    to_version_id: int
    diff: str = Field(description="a unified diff of the two texts; empty: the same")


class RollbackRequest(request_bodies.RequestBody):
    comment: Comment = ""


class PutInForce(BaseModel):
    changed: bool = Field(description="false: that text was already in force")
    version: VersionSummary


def summary(version: config_store.ConfigVersion) -> VersionSummary:
    return VersionSummary(version_id=version.version_id, version=version.version,
                          sha256=version.sha256, author=version.author,
                          comment=version.comment, created_at=version.created_at,
                          in_force=version.in_force)


def author_of(principal: access.Principal) -> str:
    return config_store.credential_author(principal.credential_id, principal.role.value)


_NO_VERSION: dict[int | str, dict[str, Any]] = {404: {"description": "No version of that id"}}


async def _admit_all() -> None:
    return None


def routes(get_live: Callable[..., Awaitable[LiveConfig[Any]]], *, what: str,
           admission: Callable[..., Awaitable[Admission[Any] | None]] = _admit_all,
           ) -> APIRouter:
    """The history routes of one configuration; `what` names it in answers. A rollback
    is admitted as its uploads are (`admission`, a dependency: 409 when it refuses)."""
    api = APIRouter()
    Live = Annotated[LiveConfig[Any], Depends(get_live)]
    Admit = Annotated[Admission[Any] | None, Depends(admission)]

    def not_found(version_id: int) -> HTTPException:
        return HTTPException(404, detail={"error": "not_found",
                                          "detail": f"no {what} version #{version_id}"})

    async def found(live: LiveConfig[Any], version_id: int) -> config_store.ConfigVersion:
        version = await live.versions.get(version_id)
        if version is None:
            raise not_found(version_id)
        return version

    @api.get("/versions", summary=f"The versions of the {what}, newest first")
    async def list_versions(
        live: Live,
        limit: Annotated[int, Query(ge=1, le=500)] = 50,
        before: Annotated[int | None, Query(ge=1, le=LARGEST_ID,
                                            description="only older versions than this"
                                                        " id (the next page)")] = None,
    ) -> list[VersionSummary]:
        return [summary(v) for v in await live.versions.history(limit=limit, before=before)]

    @api.get("/versions/{version_id}", summary=f"One version of the {what}, with its text",
             responses=_NO_VERSION)
    async def get_version(live: Live, version_id: VersionId) -> VersionText:
        version = await found(live, version_id)
        return VersionText(**summary(version).model_dump(), text=version.text)

    @api.get("/diff", summary=f"What changed between two versions of the {what}",
             responses=_NO_VERSION)
    async def diff_versions(
        live: Live,
        from_version: Annotated[int, Query(alias="from", ge=1, le=LARGEST_ID)],
        to_version: Annotated[int, Query(alias="to", ge=1, le=LARGEST_ID)],
    ) -> VersionDiff:
        older, newer = await found(live, from_version), await found(live, to_version)
        return VersionDiff(from_version_id=older.version_id, to_version_id=newer.version_id,
                           diff=config_store.unified_diff(older, newer))

    @api.post("/versions/{version_id}/rollback", response_model=PutInForce,
              summary=f"Put an earlier version of the {what} in force again",
              responses={**_NO_VERSION, **config_preconditions.ETAG_HEADER,
                         **config_preconditions.PRECONDITION_FAILED, 422: {
                  "description": "That version no longer validates (file, line, rule);"
                                 " the version in force keeps serving. Or a malformed"
                                 " If-Match"}})
    async def roll_back(live: Live, principal: auth.Admin, version_id: VersionId,
                        request: RollbackRequest, response: Response,
                        if_match: config_preconditions.IfMatch, admit: Admit) -> Any:
        """Recorded as a new version (who, when, the comment) naming the earlier one;
        announced, so every instance follows within seconds. With If-Match, only while
        the version it names is in force (else 412)."""
        try:
            done = await live.roll_back(version_id, author=author_of(principal),
                                        comment=request.comment, if_in_force=if_match,
                                        admit=admit)
        except config_files.ConfigError as exc:
            return http.config_error(exc)
        except config_store.NotInForce as exc:
            return config_preconditions.precondition_failed(exc, what=what)
        except NotAdmitted as exc:
            raise HTTPException(409, detail=exc.body) from exc
        if done is None:
            raise not_found(version_id)
        version, changed = done
        config_preconditions.show_version(response, version.version_id)
        return PutInForce(changed=changed, version=summary(version))

    return api
