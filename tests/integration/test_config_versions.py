"""Configuration as governed data, on SQLite and PostgreSQL: every version put in force is
kept with its author and comment, one is in force, the file seeds the store on first
start and is imported, at start and while running, only when its text was never in
force, a file that cannot be used at start stops it only when the store holds no
version, rollbacks are new versions, and announcements reach the broker."""

from __future__ import annotations

import asyncio
import logging
import shutil
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from services.core import config_changes, config_files, config_store, db, kafka, topics
from services.core.live_config import LiveConfig
from services.core.settings import PROJECT_ROOT, Settings
from services.segmenter import live_rules, rules
from tests.conftest import read_topic, unique

RULES = PROJECT_ROOT / "config" / "segments.yaml"


@dataclass
class Governed:
    live: LiveConfig[rules.RuleSet]
    versions: config_store.ConfigVersions
    file: Path
    original: str
    announce: config_changes.Announcer

    def edited(self, label: str) -> str:
        return self.original.replace("version: demo-2", f"version: {label}")

    def broken(self) -> tuple[str, int]:
        """The file with a rule that does not compile, and that rule's line."""
        text = self.original.replace("when: tier == 'potential'", "when: tier = 'potential'")
        return text, text.splitlines().index("  - name: prospects") + 1

    async def another_instance(self) -> LiveConfig[rules.RuleSet]:
        other = live_rules.live_rule_set(self.file)
        await other.govern(self.versions, announce=self.announce)
        return other


@pytest.fixture
async def governed(database_url: str, kafka_bootstrap: str,
                   tmp_path: Path) -> AsyncIterator[Governed]:
    file = tmp_path / "segments.yaml"
    shutil.copyfile(RULES, file)
    settings = Settings(kafka_bootstrap_servers=kafka_bootstrap)
    await kafka.ensure_topics(settings, [topics.CONFIG_CHANGES])
    engine = db.engine(database_url)
    publisher = kafka.Publisher(settings, client_id="config-tests")
    try:
        versions = config_store.ConfigVersions(db.sessions(engine), config_store.SEGMENT_RULES)
        live = live_rules.live_rule_set(file)
        result = Governed(live, versions, file, file.read_text(encoding="utf-8"),
                          config_changes.Announcer(publisher))
        await live.govern(versions, announce=result.announce)
        yield result
    finally:
        await publisher.close()
        await engine.dispose()


class TestSeed:
    async def test_the_file_seeds_the_store_on_first_start(self, governed: Governed) -> None:
        [seed] = await governed.versions.history()
        assert seed.in_force and seed.text == governed.original
        assert (seed.author, seed.comment) == ("file segments.yaml", "seeded from the file")
        assert seed.sha256 == config_store.sha256_of(governed.original)
        assert governed.live.version_id == seed.version_id
        assert governed.live.current.version == seed.version

    async def test_another_instance_loads_the_version_in_force_and_adds_none(
            self, governed: Governed) -> None:
        uploaded, _ = await governed.live.put_in_force(
            governed.edited("uploaded-2"), source="upload", author="admin credential a1")
        other = await governed.another_instance()
        assert other.current.version == uploaded.version  # not the file's
        assert len(await governed.versions.history()) == 2

    async def test_a_file_edited_while_down_is_put_in_force_at_start(
            self, governed: Governed) -> None:
        governed.file.write_text(governed.edited("edited-offline"), encoding="utf-8")
        other = await governed.another_instance()
        assert other.current.version.startswith("edited-offline+")
        newest = (await governed.versions.history())[0]
        assert newest.comment == "the file changed while the service was down"

    async def test_a_rolled_back_file_text_is_not_imported_again(
            self, governed: Governed) -> None:
        first = governed.live.version_id
        assert first is not None
        newer, _ = await governed.live.put_in_force(
            governed.edited("newer"), source="upload", author="admin credential a1")
        governed.file.write_text(governed.edited("newer"), encoding="utf-8")
        await governed.live.roll_back(first, author="admin credential a1", comment="bad")
        other = await governed.another_instance()
        assert other.current.version == governed.live.current.version != newer.version

    async def test_an_invalid_file_at_start_leaves_the_store_version_serving(
            self, governed: Governed) -> None:
        other = live_rules.live_rule_set(governed.file)
        governed.file.write_text("rules: [\n", encoding="utf-8")  # gone bad since
        await other.govern(governed.versions, announce=governed.announce)
        assert other.current.version == governed.live.current.version
        assert other.last_rejection is not None
        assert len(await governed.versions.history()) == 1


class TestFileImport:
    """The one rule at start and while running: the file's text is put in force only if
    it never was; a text in force before (the seed an upload replaced) is not."""

    async def test_touching_the_file_does_not_undo_an_upload(
            self, governed: Governed, caplog: pytest.LogCaptureFixture) -> None:
        seed_id = governed.live.version_id
        uploaded, _ = await governed.live.put_in_force(
            governed.edited("uploaded-2"), source="upload", author="admin credential a1")
        governed.file.touch()
        with caplog.at_level(logging.INFO, logger="services.core.live_config"):
            await governed.live._import_file()  # what the watcher does on each change
        assert governed.live.current.version == uploaded.version
        newest, _seed = await governed.versions.history()
        assert newest.version_id == uploaded.version_id and newest.in_force
        [told] = [record for record in caplog.records
                  if "in force before and is not imported again" in record.getMessage()]
        assert (told.levelno, told.version_id) == (logging.WARNING, seed_id)  # type: ignore[attr-defined]

    async def test_a_file_saved_unchanged_is_left_as_it_is_silently(
            self, governed: Governed, caplog: pytest.LogCaptureFixture) -> None:
        """Its text is the version in force: no new version, nothing in the log (a
        warning would have an admin roll back to what already serves)."""
        in_force = governed.live.version_id
        governed.file.write_text(governed.original, encoding="utf-8")
        with caplog.at_level(logging.INFO, logger="services.core.live_config"):
            await governed.live._import_file()
        assert [v.version_id for v in await governed.versions.history()] == [in_force]
        assert governed.live.version_id == in_force
        assert [r.getMessage() for r in caplog.records
                if r.name == "services.core.live_config"] == []

    async def test_a_file_put_back_to_a_replaced_text_is_not_imported_again(
            self, governed: Governed) -> None:
        governed.file.write_text(governed.edited("edited-2"), encoding="utf-8")
        await governed.live._import_file()
        edited = governed.live.current.version
        assert edited.startswith("edited-2+")
        governed.file.write_text(governed.original, encoding="utf-8")
        await governed.live._import_file()
        assert governed.live.current.version == edited
        assert len(await governed.versions.history()) == 2

    async def test_a_text_never_in_force_is_imported_while_running(
            self, governed: Governed) -> None:
        governed.file.write_text(governed.edited("edited-live"), encoding="utf-8")
        await governed.live._import_file()
        assert governed.live.current.version.startswith("edited-live+")
        newest = (await governed.versions.history())[0]
        assert (newest.author, newest.comment) == ("file segments.yaml", "the file changed")


class TestUnusableFileAtStart:
    """A bad edit to the file, or no file, does not stop an instance (nor a rolling
    restart of them all) while the store holds a version to serve: it is reported as a
    rejected change is while running. With nothing stored, the start stops."""

    async def test_an_invalid_file_is_reported_and_the_stored_version_serves(
            self, governed: Governed, caplog: pytest.LogCaptureFixture) -> None:
        text, line = governed.broken()
        governed.file.write_text(text, encoding="utf-8")
        other = live_rules.live_rule_set(governed.file)
        with caplog.at_level(logging.ERROR, logger="services.core.live_config"):
            await other.govern(governed.versions, announce=governed.announce)
        assert other.current.version == governed.live.current.version
        assert other.version_id == governed.live.version_id
        assert other.last_rejection is not None
        assert other.last_rejection.source == str(governed.file)
        assert f"{governed.file}:{line} (entry 'prospects')" in other.last_rejection.error
        [logged] = [record for record in caplog.records if record.levelno == logging.ERROR]
        assert logged.error == other.last_rejection.error  # type: ignore[attr-defined]
        assert len(await governed.versions.history()) == 1

    async def test_a_missing_file_is_reported_and_the_stored_version_serves(
            self, governed: Governed) -> None:
        governed.file.unlink()
        other = live_rules.live_rule_set(governed.file)
        await other.govern(governed.versions, announce=governed.announce)
        assert other.current.version == governed.live.current.version
        assert other.last_rejection is not None
        assert "cannot read the file" in other.last_rejection.error
        assert len(await governed.versions.history()) == 1

    async def test_an_invalid_file_and_a_stored_version_refused_too_stop_the_start(
            self, governed: Governed) -> None:
        """A version in force that this release refuses (written under laxer checks: a
        rule on age guarded only by the customer being known), and a file that cannot
        be used either: nothing can serve, so the start stops, rather than serve no rule
        set and fail every ticket."""
        lax = governed.edited("lax-1").replace(
            "rules:\n", "rules:\n  - name: seniors\n    segment: general\n"
                        "    when: customer.known && customer.age_years >= 65\n", 1)
        with pytest.raises(config_files.ConfigError):
            await governed.live.validate(lax, source="lax")
        stored, _ = await governed.versions.put_in_force(config_store.Candidate(
            text=lax, version="lax-1", author="an older release", comment=""))
        governed.file.write_text(governed.broken()[0], encoding="utf-8")
        other = live_rules.live_rule_set(governed.file)
        with pytest.raises(config_files.ConfigError, match=f"{governed.file}:"):
            await other.govern(governed.versions, announce=governed.announce)
        assert other.last_rejection is not None
        assert (other.refused_id, other.version_id) == (stored.version_id, None)

    async def test_an_invalid_file_with_no_version_stored_stops_the_start(
            self, database_url: str, tmp_path: Path) -> None:
        file = tmp_path / "segments.yaml"
        file.write_text("rules: [\n", encoding="utf-8")
        live = live_rules.live_rule_set(file)
        announced: list[config_store.ConfigVersion] = []

        async def announce(version: config_store.ConfigVersion) -> None:
            announced.append(version)

        engine = db.engine(database_url)
        try:
            versions = config_store.ConfigVersions(db.sessions(engine),
                                                   config_store.SEGMENT_RULES)
            with pytest.raises(config_files.ConfigError, match=f"{file}:"):
                await live.govern(versions, announce=announce)
            with pytest.raises(config_files.ConfigError):
                live.current  # noqa: B018
            assert await versions.history() == [] and announced == []
        finally:
            await engine.dispose()


class TestHistory:
    async def test_each_version_keeps_who_when_and_why(self, governed: Governed) -> None:
        version, changed = await governed.live.put_in_force(
            governed.edited("uploaded-2"), source="upload",
            author="admin credential 0123456789ab", comment="premium tier for VIPs")
        assert changed
        newest, seed = await governed.versions.history()
        assert newest == version
        assert (newest.author, newest.comment) == ("admin credential 0123456789ab",
                                                   "premium tier for VIPs")
        assert newest.created_at >= seed.created_at
        assert newest.in_force and not seed.in_force
        assert (await governed.versions.get(newest.version_id)) == newest

    async def test_the_text_in_force_is_not_recorded_again(self, governed: Governed) -> None:
        version, changed = await governed.live.put_in_force(
            governed.original, source="upload", author="admin credential a1")
        assert not changed
        assert [v.version_id for v in await governed.versions.history()] == [
            version.version_id]

    async def test_an_invalid_version_is_not_kept(self, governed: Governed) -> None:
        with pytest.raises(config_files.ConfigError):
            await governed.live.put_in_force("rules: [\n", source="upload",
                                             author="admin credential a1")
        assert len(await governed.versions.history()) == 1
        assert governed.live.last_rejection is not None

    async def test_pages_newest_first(self, governed: Governed) -> None:
        for label in ("two", "three", "four"):
            await governed.live.put_in_force(governed.edited(label), source="upload",
                                             author="admin credential a1")
        every = await governed.versions.history()
        assert [v.version_id for v in every] == sorted(
            (v.version_id for v in every), reverse=True)
        first_page = await governed.versions.history(limit=2)
        second_page = await governed.versions.history(limit=2,
                                                      before=first_page[-1].version_id)
        assert [*first_page, *second_page] == every

    async def test_concurrent_versions_leave_exactly_one_in_force(
            self, governed: Governed) -> None:
        await asyncio.gather(*(governed.live.put_in_force(
            governed.edited(f"concurrent-{n}"), source="upload",
            author="admin credential a1") for n in range(6)))
        every = await governed.versions.history()
        assert len(every) == 7
        assert [v.in_force for v in every].count(True) == 1
        assert every[0].in_force

    async def test_a_version_of_the_other_kind_is_not_found(
            self, governed: Governed, database_url: str) -> None:
        engine = db.engine(database_url)
        try:
            tables = config_store.ConfigVersions(db.sessions(engine),
                                                 config_store.ROUTING_TABLE)
            assert governed.live.version_id is not None
            assert await tables.get(governed.live.version_id) is None
            assert await tables.in_force() is None
        finally:
            await engine.dispose()


class TestRollback:
    async def test_a_rollback_is_a_new_version_naming_the_earlier_one(
            self, governed: Governed) -> None:
        seed_id = governed.live.version_id
        assert seed_id is not None
        await governed.live.put_in_force(governed.edited("broken-idea"), source="upload",
                                         author="admin credential a1")
        done = await governed.live.roll_back(seed_id, author="admin credential b2",
                                             comment="tickets went astray")
        assert done is not None
        version, changed = done
        assert changed and version.version_id > seed_id
        assert version.text == governed.original
        assert (version.author, version.comment) == (
            "admin credential b2", f"rollback to #{seed_id}: tickets went astray")
        assert governed.live.current.version == version.version
        assert len(await governed.versions.history()) == 3

    async def test_rolling_back_to_no_such_version_is_none(self, governed: Governed) -> None:
        assert await governed.live.roll_back(999_999, author="admin credential a1") is None


class TestDiff:
    async def test_two_versions_diff_as_unified_text(self, governed: Governed) -> None:
        newer, _ = await governed.live.put_in_force(
            governed.edited("diffed"), source="upload", author="admin credential a1")
        seed = (await governed.versions.history())[-1]
        diff = config_store.unified_diff(seed, newer)
        assert f"--- #{seed.version_id} " in diff and f"+++ #{newer.version_id} " in diff
        assert "-version: demo-2\n" in diff and "+version: diffed\n" in diff


class TestAnnouncement:
    async def test_a_version_put_in_force_is_announced(self, governed: Governed,
                                                       kafka_bootstrap: str) -> None:
        version, _ = await governed.live.put_in_force(
            governed.edited(unique("announced")), source="upload",
            author="admin credential a1")
        found = await read_topic(kafka_bootstrap, topics.CONFIG_CHANGES, until=1,
                                 keep=lambda event: event.correlation_id == str(
                                     version.version_id)
                                 and event.data.get("sha256") == version.sha256)
        [(event, record)] = found
        assert event.type == config_changes.VERSION_IN_FORCE
        assert record.key == b"segment_rules"  # type: ignore[attr-defined]
        assert event.data == {"kind": "segment_rules", "version_id": version.version_id,
                              "version": version.version, "sha256": version.sha256}
