"""Where an escalation sends a ticket by the table in force (escalation_targets): its
department's escalation, or, for a department or a second-level target the table no
longer has, the fallback or a flag where the ticket is."""

from datetime import timedelta

from services.router import escalation_targets, routing
from tests.unit.routing_tables import parse

BEFORE = parse("""\
fallback_department: customer_care
routes: [{segment: s, department: sales_support}]
departments:
  sales_support:
    escalation_to: key_accounts
    second_escalation: {after: 2m, to: temp_desk}
  key_accounts: {}
  temp_desk: {}
  customer_care: {}
""")
# Put in force since: without sales_support; without temp_desk; with the fallback alone.
NO_SALES = parse("fallback_department: customer_care\n"
                 "routes: [{segment: s, department: key_accounts}]\n"
                 "departments: {key_accounts: {}, temp_desk: {}, customer_care: {}}\n")
NO_TEMP_DESK = parse("fallback_department: customer_care\n"
                     "routes: [{segment: s, department: sales_support}]\n"
                     "departments: {sales_support: {escalation_to: key_accounts},"
                     " key_accounts: {}, customer_care: {}}\n")
ONLY_CARE = parse("fallback_department: customer_care\n"
                  "routes: [{segment: s, department: customer_care}]\n")


class TestOnBreach:
    def test_a_department_of_the_table_escalates_as_it_says(self) -> None:
        escalation = escalation_targets.on_breach(BEFORE, "sales_support")
        assert escalation == escalation_targets.Escalation(
            1, "key_accounts", routing.SecondEscalation(timedelta(minutes=2), "temp_desk"))

    def test_one_without_an_escalation_is_flagged_where_it_is(self) -> None:
        assert escalation_targets.on_breach(BEFORE, "key_accounts") \
            == escalation_targets.Escalation(1, None)

    def test_a_department_the_table_lacks_escalates_to_the_fallback(self) -> None:
        escalation = escalation_targets.on_breach(NO_SALES, "sales_support")
        assert (escalation.level, escalation.to, escalation.second) == (
            1, "customer_care", None)
        assert escalation.why == ("sales_support is no longer in the routing table (version"
                                  " test): to the fallback department customer_care")


class TestOnSecondLevel:
    def test_the_target_stored_at_the_breach_takes_the_ticket(self) -> None:
        assert escalation_targets.on_second_level(BEFORE, "key_accounts", "temp_desk") \
            == escalation_targets.Escalation(2, "temp_desk")

    def test_without_a_target_it_is_flagged_where_it_is(self) -> None:
        assert escalation_targets.on_second_level(BEFORE, "key_accounts", None) \
            == escalation_targets.Escalation(2, None)
        assert escalation_targets.on_second_level(BEFORE, "temp_desk", "temp_desk") \
            == escalation_targets.Escalation(2, None)

    def test_a_target_the_table_lacks_is_not_escalated_to(self) -> None:
        """As a transfer there is refused: the ticket is flagged in its department, which
        the table has."""
        escalation = escalation_targets.on_second_level(
            NO_TEMP_DESK, "key_accounts", "temp_desk")
        assert (escalation.level, escalation.to) == (2, None)
        assert escalation.why == ("temp_desk is no longer in the routing table (version"
                                  " test): flagged in key_accounts")

    def test_a_department_the_table_lacks_escalates_to_the_fallback(self) -> None:
        for stored_to in (None, "temp_desk", "key_accounts"):
            escalation = escalation_targets.on_second_level(
                ONLY_CARE, "key_accounts", stored_to)
            assert (escalation.level, escalation.to) == (2, "customer_care")
            assert escalation.why is not None
            assert escalation.why.startswith("key_accounts is no longer in the routing table")
