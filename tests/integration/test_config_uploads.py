"""Uploading a configuration (`PUT /v1/routing-table`, `PUT /v1/segment-rules`) and its
history over HTTP: validated, kept in the SQL store as a new version with the credential
and the comment, put in force, never written to the file (which may be read-only, as the
Docker mount is); listed, read back (export), diffed, rolled back, and dry-run."""

from __future__ import annotations

import os
import stat
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from services.core import config_files, config_store
from tests.config_apis import KINDS, Service, config_api, copy_of, dry_run, put


def make_read_only(file: Path) -> None:
    """As the Docker mount: no write bits on the file nor its folder. (The tests run as
    root, whom permissions do not stop; the file's bytes, time and folder are checked.)"""
    file.chmod(stat.S_IRUSR | stat.S_IRGRP | stat.S_IROTH)
    file.parent.chmod(stat.S_IRUSR | stat.S_IXUSR | stat.S_IRGRP | stat.S_IXGRP)


@pytest.fixture(params=list(KINDS))
async def service(request: pytest.FixtureRequest, tmp_path: Path, sqlite_url: str,
                  kafka_bootstrap: str) -> AsyncIterator[Service]:
    file = copy_of(KINDS[request.param], tmp_path / "config")
    make_read_only(file)
    try:
        async with config_api(KINDS[request.param], file, sqlite_url,
                              kafka_bootstrap) as service:
            yield service
    finally:
        file.parent.chmod(0o755)


class TestUploadsGoToTheStore:
    async def test_an_upload_to_a_read_only_file_is_put_in_force_and_not_written(
            self, service: Service) -> None:
        before = service.file.stat()
        original = service.file.read_bytes()
        assert not os.access(service.file, os.W_OK) or os.geteuid() == 0
        response = await put(service, service.upload, comment="new VIP tier")
        assert response.status_code == 200, response.text
        assert response.json()["version"].startswith("uploaded-2+")
        assert response.json()["changed"] is True
        assert service.live.current.version.startswith("uploaded-2+")
        assert service.file.read_bytes() == original
        assert service.file.stat().st_mtime_ns == before.st_mtime_ns
        assert [path.name for path in service.file.parent.iterdir()] == [service.file.name]
        newest = (await service.client.get(f"{service.config.path}/versions")).json()[0]
        assert newest["comment"] == "new VIP tier"
        assert newest["author"].startswith("admin credential ")
        assert newest["in_force"] is True

    async def test_an_invalid_upload_is_422_and_not_kept(self, service: Service) -> None:
        before = service.live.current.version
        response = await put(service, "routes: [\n")
        assert response.status_code == 422
        assert response.json()["error"] == "invalid_configuration"
        assert service.live.current.version == before
        assert len((await service.client.get(f"{service.config.path}/versions")).json()) == 1

    async def test_a_comment_with_control_characters_is_refused_naming_it(
            self, service: Service) -> None:
        response = await put(service, service.upload, comment="line\nbreak")
        assert response.status_code == 422
        assert response.json()["fields"][0]["field"] == "query.comment"


class TestHistoryOverHttp:
    async def test_export_diff_and_rollback(self, service: Service) -> None:
        path = service.config.path
        await put(service, service.upload, comment="try it")
        newest, seed = (await service.client.get(f"{path}/versions")).json()
        exported = (await service.client.get(f"{path}/versions/{seed['version_id']}")).json()
        assert exported["text"] == service.file.read_text(encoding="utf-8")
        diff = (await service.client.get(f"{path}/diff", params={
            "from": seed["version_id"], "to": newest["version_id"]})).json()
        assert "+version: uploaded-2\n" in diff["diff"]

        rolled = await service.client.post(
            f"{path}/versions/{seed['version_id']}/rollback", json={"comment": "too early"})
        assert rolled.status_code == 200, rolled.text
        assert rolled.json()["version"]["comment"] == (
            f"rollback to #{seed['version_id']}: too early")
        in_force = (await service.client.get(path)).json()
        assert in_force["version"] == seed["version"]
        assert in_force["version_id"] == rolled.json()["version"]["version_id"]

    @pytest.mark.parametrize("request_path", ["/versions/999999", "/diff?from=1&to=999999",
                                              "/versions/999999/rollback"])
    async def test_an_unknown_version_is_404(self, service: Service,
                                             request_path: str) -> None:
        method = "POST" if request_path.endswith("rollback") else "GET"
        response = await service.client.request(
            method, service.config.path + request_path, json={} if method == "POST" else None)
        assert response.status_code == 404
        assert response.json()["detail"].endswith("version #999999")


class TestDryRun:
    async def test_a_dry_run_validates_and_changes_nothing(self, service: Service) -> None:
        before = service.live.current.version
        response = await dry_run(service, service.upload)
        assert response.status_code == 200, response.text
        report = response.json()
        assert report["valid"] is True and report["version"].startswith("uploaded-2+")
        assert "+version: uploaded-2\n" in report["diff"]
        assert ("analysis" in report) == (service.config.state == "segmenter")
        assert service.live.current.version == before
        assert len((await service.client.get(f"{service.config.path}/versions")).json()) == 1

    async def test_a_dry_run_compares_with_the_version_in_force_here_whole(
            self, service: Service) -> None:
        """Another instance put a version in force in the store, not loaded here yet:
        the diff is against the version this instance runs, the one the changes (and the
        analysis) are of and `in_force` names, not against the store's newer text."""
        elsewhere = service.upload.replace("uploaded-2", "elsewhere-3")
        await service.live.versions.put_in_force(config_store.Candidate(
            text=elsewhere, author="another instance", comment="",
            version=(await service.live.validate(elsewhere, source="elsewhere")).version))
        running = service.live.current.version
        response = await dry_run(service, service.upload)
        assert response.status_code == 200, response.text
        report = response.json()
        assert report["in_force"] == running == service.live.current.version  # not synced
        assert f"-{service.config.replace[0]}\n" in report["diff"]  # the text running here
        assert "elsewhere-3" not in report["diff"]

    async def test_a_version_in_force_this_instance_refuses_is_named_beside_the_served(
            self, service: Service) -> None:
        """README, configuration history: a version in force this release cannot read
        (here one over the size limit, as one stored before the limit would be) is named
        by `refused_version_id`; the version before it serves until a readable one comes."""
        served = (await service.client.get(service.config.path)).json()
        assert served["refused_version_id"] is None
        too_large = service.upload + "#" * config_files.CONFIG_MAX_BYTES + "\n"
        refused, _ = await service.live.versions.put_in_force(config_store.Candidate(
            text=too_large, author="an older release", comment="", version="old-release"))
        assert not await service.live.sync()
        shown = (await service.client.get(service.config.path)).json()
        assert (shown["version"], shown["version_id"], shown["refused_version_id"]) == (
            served["version"], served["version_id"], refused.version_id)
        assert "bytes, at most" in shown["last_rejection"]["error"]
        response = await put(service, service.upload)
        assert response.status_code == 200, response.text
        shown = (await service.client.get(service.config.path)).json()
        assert shown["refused_version_id"] is None
        assert shown["version_id"] == response.json()["version_id"] > refused.version_id

    async def test_an_invalid_dry_run_names_the_line(self, service: Service) -> None:
        response = await dry_run(service, b"routes: [\n")
        assert response.status_code == 422
        assert response.json()["line"] is not None
        assert service.live.last_rejection is None  # a dry run is not an attempt

    @pytest.mark.parametrize(("body", "line"), [(b"\x00", 1),
                                               (b"version: v\nnote: bell\x07\n", 2)])
    async def test_a_character_yaml_does_not_take_is_refused_by_its_line(
            self, service: Service, body: bytes, line: int) -> None:
        """A NUL or another control character anywhere in the file: 422 with where it
        is and what YAML takes, not a 500 (found by the OpenAPI fuzzing)."""
        response = await dry_run(service, body)
        assert response.status_code == 422, response.text
        answer = response.json()
        assert answer["line"] == line
        assert "is not allowed (YAML takes printable characters" in str(answer)
