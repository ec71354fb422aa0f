"""Whatever a file people edit holds, loading it ends in a value or a ConfigError naming
the file and, where YAML knows it, the line: a value its type cannot hold, a key given
twice, keys of mixed types, nesting past what a parser can follow, and names or labels a
ticket could not carry. None of them may escape as another exception (a 500 to an admin
uploading the file, a traceback at start)."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest

from services.core import config_files, topics, versions
from services.core.live_config import LiveConfig
from services.core.settings import PROJECT_ROOT
from services.router import table_file
from services.segmenter import rules, rules_file

RULES = "default_segment: general\nrules:\n  - {name: gov, segment: government, when: 'true'}\n"
TABLE = "fallback_department: general\nroutes:\n  - {segment: a, department: b}\n"


def rules_error(text: str) -> config_files.ConfigError:
    with pytest.raises(config_files.ConfigError) as error:
        rules_file.parse(text, source="segments.yaml")
    assert error.value.path == "segments.yaml"
    return error.value


def table_error(text: str) -> config_files.ConfigError:
    with pytest.raises(config_files.ConfigError) as error:
        table_file.parse(text, "routing.yaml")
    assert error.value.path == "routing.yaml"
    return error.value


class TestValuesTheirTypeCannotHold:
    @pytest.mark.parametrize(("first_line", "kind"), [
        ("version: !!timestamp 2025-02-30", "timestamp"), ("version: !!int abc", "int"),
        ("version: !!float abc", "float"), ("version: " + "9" * 5000, "int"),
        ("version: !!bool abc", "bool"), ("version: !!timestamp abc", "timestamp"),
        ("version: !!int ''", "int"), ("version: !!float ''", "float"),
        ("version: !!int '-'", "int")])
    def test_is_an_error_at_its_line(self, first_line: str, kind: str) -> None:
        for error in (rules_error(first_line + "\n" + RULES),
                      table_error(first_line + "\n" + TABLE)):
            assert error.line == 1
            assert f"this {kind} cannot be read" in error.problem

    @pytest.mark.parametrize("written", ["2025-02-30", "2025-02-28", "2025-02-28T10:00:00Z",
                                         "2025-02-28 10:00:00.5 +1"])
    def test_a_date_or_time_is_read_as_the_text_written(self, written: str) -> None:
        """The field that takes a date checks it, naming its entry (a calendar's holiday:
        `test_routing_table_errors.py`); a label that looks like a date is a label."""
        assert config_files.load_yaml("a.yaml", f"a: {written}\nb: [{written}]\n") == {
            "a": written, "b": [written], "__line__": 1}
        assert rules_file.parse(f"version: {written}\n" + RULES,
                                source="segments.yaml").version.startswith(f"{written}+")
        assert table_file.parse(f"version: {written}\n" + TABLE,
                                "routing.yaml").version.startswith(f"{written}+")


class TestKeys:
    def test_a_key_given_twice_names_both_lines(self) -> None:
        error = rules_error(RULES + "rules: []\n")
        assert error.line == 4
        assert "'rules' is given twice in one mapping, first on line 2" in error.problem
        error = table_error("fallback_department: general\nroutes:\n"
                            "  - {segment: a, department: b, department: c}\n")
        assert error.line == 3

    def test_keys_equal_as_values_are_given_twice(self) -> None:
        error = rules_error(RULES + "1: a\n? true\n: b\n")
        assert error.line == 5
        assert "given twice in one mapping ('true' is the same), first on line 4" \
            in error.problem
        error = table_error(TABLE + "holidays:\n  2026-12-25: a\n  ? 2026-12-25\n  : b\n")
        assert error.line == 6
        assert error.problem.endswith("given twice in one mapping, first on line 5")

    def test_keys_a_merge_brings_may_be_overridden(self) -> None:
        table = table_file.parse("fallback_department: general\nroutes:\n"
                                 "  - &base {segment: a, department: b}\n"
                                 "  - {<<: *base, segment: c}\n", "routing.yaml")
        assert {segment: route.department for segment, route in table.routes.items()} == {
            "a": "b", "c": "b"}

    def test_unknown_keys_of_mixed_types_are_named(self) -> None:
        error = rules_error(RULES + "1: a\nfoo: b\n")
        assert "unknown keys ['1', 'foo']" in error.problem
        error = table_error(TABLE + "1: a\nfoo: b\n")
        assert "unknown keys ['1', 'foo']" in error.problem

    @pytest.mark.parametrize(("name", "extra"), [
        ("segments.yaml", "protected_attributes: customer.gender\n"),
        ("segments.yaml", "default_segment_name: general\n"),
        ("routing.yaml", "warning_share: 2\n"), ("routing.yaml", "escalations: []\n")])
    def test_a_key_added_to_a_shipped_file_is_named_at_its_line(self, name: str,
                                                                 extra: str) -> None:
        """Its own line, not the line of the file's first key (`version:`)."""
        text = (PROJECT_ROOT / "config" / name).read_text(encoding="utf-8") + extra
        error = rules_error(text) if name == "segments.yaml" else table_error(text)
        assert error.line == text.count("\n")

    def test_a_version_not_on_the_first_line_is_named_at_its_line(self) -> None:
        for error in (rules_error(RULES + "version: [1]\n"), table_error(TABLE + "version: [1]\n")):
            assert (error.line, error.entry) == (4, "version")


@pytest.mark.parametrize("depth", [5000, 200])  # past the parser's stack; past the builder's
def test_nesting_past_what_the_parser_follows_is_an_error_at_its_line(depth: int) -> None:
    deep = "x: " + "[" * depth + "]" * depth + "\n"
    for error in (rules_error(RULES + deep), table_error(TABLE + deep)):
        assert error.line == 4
        assert error.problem == ("not valid YAML: nested too deeply (a file people edit"
                                 " needs a few levels)")


class TestASizeReadBeforeItIsParsed:
    """A file's size is checked before its YAML is read (about 6 seconds of CPU a
    megabyte): within CONFIG_MAX_BYTES it is read, past it refused naming the file."""

    def test_a_file_at_the_limit_is_read(self) -> None:
        padding = "#" * (config_files.CONFIG_MAX_BYTES - len(RULES) - 1) + "\n"
        text = RULES + padding
        assert len(text.encode()) == config_files.CONFIG_MAX_BYTES
        assert rules_file.parse(text, source="segments.yaml").default_segment == "general"

    @pytest.mark.parametrize("extra", ["##", "\u00e9"])  # a byte over, in ASCII or UTF-8
    def test_a_file_past_it_is_refused_whatever_it_holds(self, extra: str) -> None:
        text = RULES + "#" * (config_files.CONFIG_MAX_BYTES - len(RULES) - 1) + extra
        size = len(text.encode())
        assert size == config_files.CONFIG_MAX_BYTES + 1
        for error in (rules_error(text), table_error(text)):
            assert error.problem == (f"the file is {size:,} bytes, at most"
                                     f" {config_files.CONFIG_MAX_BYTES:,} (256 KiB)")


class TestAConfigurationParsedWhileServing:
    async def test_is_parsed_on_a_worker_thread(self) -> None:
        """Not on the event loop's thread, which every request and record needs."""
        threads: list[int] = []

        def parse(text: str, source: str) -> str:
            threads.append(threading.get_ident())
            return f"{source}: {text}"

        parsed = await config_files.parse_off_the_loop(parse, "a: 1", source="f.yaml")
        assert parsed == "f.yaml: a: 1"
        assert threads and threads[0] != threading.get_ident()

    async def test_a_dry_run_of_a_live_configuration_too(self, tmp_path: Path) -> None:
        threads: list[int] = []

        def parse(text: str, source: str) -> rules.RuleSet:
            threads.append(threading.get_ident())
            return rules_file.parse(text, source=source)

        seed = tmp_path / "segments.yaml"
        seed.write_text(RULES, encoding="utf-8")
        live = LiveConfig("segment_rules", seed, parse)  # at start: on this thread
        candidate = await live.validate(RULES.replace("gov,", "public,"), source="dry run")
        assert candidate.rules[0].name == "public"
        assert threads[0] == threading.get_ident() != threads[1]

    async def test_its_error_reaches_the_caller(self) -> None:
        error = config_files.ConfigError("f.yaml", 3, "r", "wrong")
        with pytest.raises(config_files.ConfigError) as raised:
            await config_files.parse_off_the_loop(
                lambda text: (_ for _ in ()).throw(error), "x")
        assert raised.value is error


class TestNamesATicketCarries:
    @pytest.mark.parametrize("segment", ['"gov\\n"', '"gov\\r"'])
    def test_a_segment_name_with_a_line_break_is_refused(self, segment: str) -> None:
        error = rules_error(f"default_segment: general\nrules:\n"
                            f"  - {{name: gov, segment: {segment}, when: 'true'}}\n")
        assert (error.line, error.entry) == (3, "gov")
        error = rules_error(f"default_segment: {segment}\nrules: []\n")
        assert error.entry == "default_segment"

    @pytest.mark.parametrize("segment", ['"gov\\n"', "Gov", '"gov ernment"'])
    def test_a_route_for_a_segment_no_rule_can_name_is_refused(self, segment: str) -> None:
        error = table_error(TABLE + f"  - {{segment: {segment}, department: c}}\n")
        assert error.line == 4
        assert "segment must be a segment name" in error.problem

    def test_a_department_name_with_a_line_break_is_refused(self) -> None:
        with pytest.raises(ValueError, match="not valid"):
            topics.department_queue("sales\n")
        assert topics.department_of("dept.sales\n") is None
        error = table_error('fallback_department: "general\\n"\n' + TABLE.split("\n", 1)[1])
        assert error.entry == "fallback_department"

    def test_a_rule_name_longer_than_a_ticket_carries_is_refused(self) -> None:
        name = "r" * 201
        error = rules_error(f"default_segment: general\nrules:\n"
                            f"  - {{name: {name}, segment: x, when: 'true'}}\n")
        assert error.line == 3
        assert "at most 200 characters" in error.problem
        rules_file.parse(f"default_segment: general\nrules:\n"
                         f"  - {{name: {'r' * 200}, segment: x, when: 'true'}}\n",
                         source="segments.yaml")

    def test_a_refinement_name_longer_than_a_ticket_carries_is_refused(self) -> None:
        """Carried twice in each ticket it routes: 600,000 characters made every such
        ticket too large to publish, dead-lettered rather than routed."""
        def table(name: str) -> str:
            return (f"fallback_department: general\nroutes:\n  - segment: a\n"
                    f"    department: b\n    refinements:\n"
                    f"      - {{name: {name}, when: 'true', department: c}}\n")

        error = table_error(table("r" * 201))
        assert (error.line, error.entry) == (6, "a.refinements[1]")
        assert error.problem == "name is required: text of at most 200 characters"
        parsed = table_file.parse(table("r" * 200), "routing.yaml")
        assert parsed.routes["a"].refinements[0].name == "r" * 200

    def test_a_version_label_longer_than_a_ticket_carries_is_refused(self) -> None:
        longest = "v" * versions.MAX_LABEL
        version = rules_file.parse(f"version: {longest}\n" + RULES,
                                   source="segments.yaml").version
        assert len(version) == versions.MAX_VERSION
        error = rules_error(f"version: {longest}v\n" + RULES)
        assert (error.line, error.entry) == (1, "version")
        assert f"at most {versions.MAX_LABEL} characters" in error.problem
        assert table_error(f"version: {longest}v\n" + TABLE).entry == "version"
        assert table_error("version: {a: 1}\n" + TABLE).entry == "version"

    @pytest.mark.parametrize("label", ["{a: 1}", "[1, 2]", "true", "no", ".nan", "-.inf"])
    def test_a_version_that_is_no_label_is_refused(self, label: str) -> None:
        """YAML reads these as a mapping, a list, a truth value or a number that is no
        number: as a label, `True+...` or `nan+...` would name nothing anyone wrote."""
        error = rules_error(f"version: {label}\n" + RULES)
        assert (error.line, error.entry) == (1, "version")
        assert error.problem.startswith("version is a label (text, a number or a date)")
        assert table_error(f"version: {label}\n" + TABLE).entry == "version"

    @pytest.mark.parametrize(("label", "written"), [
        ("v7", "v7"), ("'true'", "true"), ("3", "3"), ("1.5", "1.5"),
        ("2026-12-01", "2026-12-01"), ("", None)])
    def test_a_label_is_kept_as_written(self, label: str, written: str | None) -> None:
        version = rules_file.parse(f"version: {label}\n" + RULES,
                                   source="segments.yaml").version
        prefix, _, digest = version.rpartition("+")
        assert len(digest) == 12 and (prefix or None) == written


def test_no_rule_may_take_the_name_a_default_decision_gives() -> None:
    """A decision names `default` when no rule held: a rule of that name would make an
    answer (the segment asked without a ticket, an explanation) read it as a rule."""
    error = rules_error("default_segment: general\nrules:\n"
                        "  - {name: gov, segment: government, when: 'true'}\n"
                        "  - {name: default, segment: government, when: 'true'}\n")
    assert (error.line, error.entry) == (4, "rules[2]")  # numbered from 1
    assert error.problem.startswith("name 'default' is the default segment's")


def test_a_default_segment_quoted_in_its_error_is_as_written_and_short() -> None:
    mapping = rules_error("default_segment: {a: 1}\nrules: []\n")
    assert mapping.problem.endswith("not {'a': 1}")  # not the loader's __line__
    long = rules_error(f"default_segment: '{'x' * 500}'\nrules: []\n")
    assert long.problem.endswith("x...") and len(long.problem) < 250
