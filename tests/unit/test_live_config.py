"""A configuration in force while versions come from two sides at once (services/core/
live_config.py): the store's, followed on an announcement, and an upload to this
instance. Each is read on a worker thread, so one read can outlast another's whole
upload: the later version stays in force, whichever read ends last."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Collection
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import pytest
from prometheus_client import REGISTRY

from services.core import config_files, config_store
from services.core.live_config import LiveConfig


@dataclass(frozen=True)
class Config:
    version: str


class SlowParse:
    """Parses a text into its version; a text holding "slow" waits, on its worker
    thread, until the test lets it go."""

    def __init__(self) -> None:
        self.slow_started = threading.Event()
        self.go_on = threading.Event()

    def __call__(self, text: str, source: str) -> Config:
        if "refused" in text:
            raise config_files.ConfigError(source, 1, None, "not for this release")
        if "slow" in text:
            self.slow_started.set()
            assert self.go_on.wait(10), "the test never let the slow read go on"
        return Config(text)


class Versions:
    """The store's versions, numbered in the order they are put in force."""

    kind = "segment_rules"

    def __init__(self) -> None:
        self.rows: dict[int, config_store.ConfigVersion] = {}
        self.in_force: int | None = None

    async def in_force_id(self) -> int | None:
        return self.in_force

    async def get(self, version_id: int) -> config_store.ConfigVersion | None:
        return self.rows.get(version_id)

    async def known_id(self, text: str) -> int | None:
        return next((i for i, row in self.rows.items() if row.text == text), None)

    async def put_in_force(self, candidate: config_store.Candidate, *,
                           if_in_force: Collection[int] | None = None,
                           ) -> tuple[config_store.ConfigVersion, bool]:
        if if_in_force is not None and self.in_force not in if_in_force:
            raise config_store.NotInForce(self.rows.get(self.in_force or 0))
        version_id = len(self.rows) + 1
        self.rows[version_id] = config_store.ConfigVersion(
            version_id, self.kind, candidate.version, candidate.text, "", candidate.author,
            candidate.comment, datetime.now(UTC), True)
        self.in_force = version_id
        return self.rows[version_id], True


async def governed(tmp_path: Path) -> tuple[LiveConfig[Config], Versions, SlowParse]:
    seed = tmp_path / "segments.yaml"
    seed.write_text("seed", encoding="utf-8")
    parse = SlowParse()
    live = LiveConfig("segment_rules", seed, parse)
    versions = Versions()

    async def announce(_version: config_store.ConfigVersion) -> None:
        """Nothing: the other instances are not in this test."""

    await live.govern(versions, announce=announce)  # type: ignore[arg-type]
    return live, versions, parse


async def read_slowly_while(live: LiveConfig[Config], parse: SlowParse,
                            meanwhile: asyncio.Future[object]) -> bool:
    """`live.sync()` of the slow version, let go only once `meanwhile` is done."""
    synced = asyncio.create_task(live.sync())
    assert await asyncio.to_thread(parse.slow_started.wait, 10)
    await meanwhile
    parse.go_on.set()
    return await synced


async def test_an_upload_during_a_slower_read_of_the_stores_version_stays(
        tmp_path: Path) -> None:
    live, versions, parse = await governed(tmp_path)
    await versions.put_in_force(config_store.Candidate("v2-slow", "v2-slow", "elsewhere"))

    async def upload() -> object:
        return await live.put_in_force("v3", source="upload", author="admin")

    adopted = await read_slowly_while(live, parse, asyncio.ensure_future(upload()))
    assert not adopted
    assert versions.rows[versions.in_force or 0].text == "v3"
    assert (live.current.version, live.version_id) == ("v3", versions.in_force)


async def test_an_upload_answered_by_the_store_after_a_later_version_is_passed_over(
        tmp_path: Path) -> None:
    """The store numbered the upload, then another instance's version came in force and
    was read here before the upload's answer came back: the upload's is not adopted
    over it."""
    live, versions, _parse = await governed(tmp_path)
    answered, go_on = asyncio.Event(), asyncio.Event()
    put = versions.put_in_force

    async def put_then_wait(candidate: config_store.Candidate, *,
                            if_in_force: Collection[int] | None = None,
                            ) -> tuple[config_store.ConfigVersion, bool]:
        stored = await put(candidate, if_in_force=if_in_force)
        answered.set()
        await go_on.wait()  # the store's answer on its way back
        return stored

    versions.put_in_force = put_then_wait  # type: ignore[method-assign]
    upload = asyncio.create_task(live.put_in_force("v2", source="upload", author="admin"))
    await answered.wait()
    versions.put_in_force = put  # type: ignore[method-assign]
    await versions.put_in_force(config_store.Candidate("v3", "v3", "elsewhere"))
    assert await live.sync()
    go_on.set()
    version, _changed = await upload
    assert version.version_id == 2
    assert (live.current.version, live.version_id) == ("v3", 3) == (
        versions.rows[versions.in_force or 0].text, versions.in_force)


def split(config: str) -> float | None:
    return REGISTRY.get_sample_value("routing_config_in_force_refused", {"config": config})


async def test_a_version_in_force_this_instance_refuses_is_shown_until_one_it_reads(
        tmp_path: Path) -> None:
    """The fleet split (routing_config_in_force_refused, alert
    RoutingConfigVersionRefused): the store's version in force refused here, the one
    before it serving; in step again once a version it reads is in force."""
    live, versions, _parse = await governed(tmp_path)
    assert split("segment_rules") == 0
    await versions.put_in_force(config_store.Candidate("refused", "refused", "a release"))
    assert not await live.sync()
    assert split("segment_rules") == 1
    assert live.current.version == "seed" and live.last_rejection is not None
    await versions.put_in_force(config_store.Candidate("v3", "v3", "elsewhere"))
    assert await live.sync()
    assert split("segment_rules") == 0 and live.current.version == "v3"


async def test_a_refused_upload_splits_nothing(tmp_path: Path) -> None:
    live, _versions, _parse = await governed(tmp_path)
    with pytest.raises(config_files.ConfigError):
        await live.put_in_force("refused", source="upload", author="admin")
    assert split("segment_rules") == 0 and live.current.version == "seed"


def held(versions: Versions, method: str) -> tuple[asyncio.Event, asyncio.Event]:
    """The store's next answer to `method` held back: (asked, answer): the call waits,
    once asked, until `answer` is set; later calls are answered at once."""
    asked, answer = asyncio.Event(), asyncio.Event()
    real = getattr(versions, method)

    async def held_back(*args: object, **kwargs: object) -> object:
        setattr(versions, method, real)
        result = await real(*args, **kwargs)
        asked.set()
        await answer.wait()
        return result

    setattr(versions, method, held_back)
    return asked, answer


@pytest.mark.parametrize("refused", [False, True], ids=["readable", "refused"])
async def test_an_upload_while_the_store_is_read_for_an_earlier_version_stays(
        tmp_path: Path, refused: bool) -> None:
    """The store's answer (the version's text) comes back after an upload here put a
    later version in force: the earlier one is not read, nor, refused, said refused."""
    live, versions, _parse = await governed(tmp_path)
    text = "refused-2" if refused else "v2"
    await versions.put_in_force(config_store.Candidate(text, text, "elsewhere"))
    asked, answer = held(versions, "get")
    synced = asyncio.create_task(live.sync())
    await asked.wait()
    await live.put_in_force("v3", source="upload", author="admin")
    answer.set()
    assert not await synced
    assert (live.current.version, live.version_id, split("segment_rules")) == ("v3", 3, 0)


async def test_of_two_syncs_the_one_answered_last_with_an_earlier_version_moves_nothing(
        tmp_path: Path) -> None:
    live, versions, _parse = await governed(tmp_path)
    await versions.put_in_force(config_store.Candidate("v2", "v2", "elsewhere"))
    asked, answer = held(versions, "in_force_id")
    first = asyncio.create_task(live.sync())  # an announcement's: told #2, held back
    await asked.wait()
    await versions.put_in_force(config_store.Candidate("v3", "v3", "elsewhere"))
    assert await live.sync()  # the periodic check's: #3
    answer.set()
    assert not await first
    assert (live.current.version, live.version_id) == ("v3", 3)


async def test_an_upload_answered_after_a_later_refused_version_serves(
        tmp_path: Path) -> None:
    """Stored as #2, answered after #3 came in force and was refused here: #2, the
    store's latest this instance reads, serves, and #3 is still said refused."""
    live, versions, _parse = await governed(tmp_path)
    asked, answer = held(versions, "put_in_force")
    upload = asyncio.create_task(live.put_in_force("v2", source="upload", author="admin"))
    await asked.wait()
    await versions.put_in_force(config_store.Candidate("refused", "refused", "a release"))
    assert not await live.sync()
    answer.set()
    version, _changed = await upload
    assert version.version_id == 2
    for _ in range(2):  # and the next checks neither read #3 again nor change anything
        assert not await live.sync()
    assert (live.current.version, live.version_id, split("segment_rules")) == ("v2", 2, 1)


@pytest.mark.parametrize(("by_request", "level"), [(True, "WARNING"), (False, "ERROR")])
async def test_a_refusal_answered_to_the_admin_is_a_warning_in_the_log(
        tmp_path: Path, caplog: pytest.LogCaptureFixture, by_request: bool,
        level: str) -> None:
    """An upload's refusal is the admin's mistake, answered to them (422): a warning, not
    an error that pages someone; a file edited on the host and refused is an error."""
    live, _versions, _parse = await governed(tmp_path)
    with pytest.raises(config_files.ConfigError):
        await live.put_in_force("refused", source="upload", author="admin",
                                by_request=by_request)
    [record] = [r for r in caplog.records if "rejected" in r.getMessage()]
    assert record.levelname == level


async def test_each_configuration_in_force_here_is_handed_on_as_it_comes(
        tmp_path: Path) -> None:
    """The file's at construction, each version adopted after (an upload here, the
    store's followed), each once, and none refused: what follows the configuration (the
    metric series of its parts) is ready before anything uses it."""
    seed = tmp_path / "segments.yaml"
    seed.write_text("seed", encoding="utf-8")
    handed: list[str] = []
    live = LiveConfig("segment_rules", seed, SlowParse(),
                      in_force=lambda config: handed.append(config.version))
    assert handed == ["seed"]
    versions = Versions()

    async def announce(_version: config_store.ConfigVersion) -> None:
        """Nothing: the other instances are not in this test."""

    await live.govern(versions, announce=announce)  # type: ignore[arg-type]
    await live.put_in_force("v2", source="upload", author="admin")
    await versions.put_in_force(config_store.Candidate("v3", "v3", "elsewhere"))
    assert await live.sync()
    with pytest.raises(config_files.ConfigError):
        await live.put_in_force("refused", source="upload", author="admin", by_request=True)
    assert handed == ["seed", "v2", "v3"]
