import pytest

from services.core import config_files
from services.router import routing

TABLE = routing.RoutingTable(
    version="v1", routes={"government": "public_sector", "vip": "key_accounts"},
    fallback_department="general",
)


def parse(text: str) -> routing.RoutingTable:
    return routing.parse_table(config_files.load_yaml("routing.yaml", text),
                               source="routing.yaml", version="test")


class TestDecide:
    def test_routed_segment_goes_to_its_department(self) -> None:
        assert routing.decide("government", TABLE) == routing.RoutingDecision(
            "public_sector", "route")

    def test_unclaimed_segment_goes_to_fallback(self) -> None:
        assert routing.decide("nobody-routes-this", TABLE) == routing.RoutingDecision(
            "general", "fallback")

    def test_departments_are_listed_once_with_the_fallback(self) -> None:
        assert TABLE.departments == ("public_sector", "key_accounts", "general")


class TestParseTable:
    def test_valid_table(self) -> None:
        table = parse("fallback_department: general\nroutes:\n"
                      "  - segment: government\n    department: public_sector\n")
        assert table.routes == {"government": "public_sector"}
        assert table.fallback_department == "general"

    def test_missing_fallback_is_rejected_with_file_and_line(self) -> None:
        with pytest.raises(config_files.ConfigError) as error:
            parse("routes:\n  - segment: a\n    department: b\n")
        assert error.value.path == "routing.yaml"
        assert error.value.entry == "fallback_department"
        assert "required" in error.value.problem

    def test_error_names_the_line_and_entry_of_a_bad_route(self) -> None:
        with pytest.raises(config_files.ConfigError) as error:
            parse("fallback_department: general\nroutes:\n"
                  "  - segment: a\n    department: b\n"
                  "  - segment: vip\n    department: Key Accounts!\n")
        assert error.value.line == 5
        assert error.value.entry == "vip"
        assert "routing.yaml:5" in str(error.value)

    def test_duplicate_segment_is_rejected(self) -> None:
        with pytest.raises(config_files.ConfigError, match="routed twice"):
            parse("fallback_department: general\nroutes:\n"
                  "  - {segment: a, department: b}\n  - {segment: a, department: c}\n")

    def test_unknown_key_is_named(self) -> None:
        with pytest.raises(config_files.ConfigError, match="unknown keys \\['priority'\\]"):
            parse("fallback_department: general\nroutes:\n"
                  "  - {segment: a, department: b, priority: 1}\n")

    def test_yaml_syntax_error_names_the_line(self) -> None:
        with pytest.raises(config_files.ConfigError) as error:
            parse("fallback_department: general\nroutes: [\n  - x\n")
        assert error.value.line is not None
