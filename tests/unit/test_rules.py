from datetime import UTC, date, datetime

import pytest

from services.core import tickets
from services.core.config_files import ConfigError
from services.segmenter import context, rules, rules_file
from services.segmenter.profiles import (
    Customer,
    CustomerProfile,
    CustomerType,
    Tier,
    ValueFeatures,
)

TODAY = date(2026, 11, 23)
HEADER = "version: t\ndefault_segment: general\nrules:\n"


def parse(body: str) -> rules.RuleSet:
    return rules_file.parse(HEADER + body, source="segments.yaml")


def customer(kind: CustomerType = CustomerType.INDIVIDUAL, tier: Tier = Tier.EXISTING,
             **profile: object) -> Customer:
    return Customer("c-1", CustomerProfile("c-1", kind, **profile),  # type: ignore[arg-type]
                    ValueFeatures(monetary=4, total_value=1500.0, purchases=3), tier)


def ticket(kind: str | None = None) -> tickets.Ticket:
    return tickets.Ticket(ticket_id="t", customer_id="c-1", subject="s", body="b",
                          channel="email", kind=kind, received_at=datetime.now(UTC))


def decide(rule_set: rules.RuleSet, who: Customer, kind: str | None = None) -> rules.Decision:
    return rule_set.decide(context.build(who, ticket(kind), today=TODAY))


RULES = parse(
    "  - name: public-sector\n    segment: government\n"
    "    when: customer.type == 'government'\n"
    "  - name: valuable\n    segment: key_accounts\n"
    "    when: tier == 'most_valuable' && features.monetary >= 4\n"
    "  - name: complaints\n    segment: care\n    when: ticket.kind in ['complaint']\n")


class TestFirstMatchWins:
    def test_earlier_rule_decides(self) -> None:
        who = customer(CustomerType.GOVERNMENT, Tier.MOST_VALUABLE)
        assert decide(RULES, who).rule == "public-sector"

    def test_rule_over_tier_and_features(self) -> None:
        decision = decide(RULES, customer(tier=Tier.MOST_VALUABLE))
        assert (decision.segment, decision.rule) == ("key_accounts", "valuable")
        assert decision.decided_by == {"tier": "most_valuable", "features.monetary": 4}

    def test_rule_over_the_ticket(self) -> None:
        assert decide(RULES, customer(), kind="complaint").segment == "care"

    def test_default_catches_the_rest(self) -> None:
        decision = decide(RULES, customer())
        assert (decision.segment, decision.rule, decision.decided_by) == (
            "general", "default", {})
        assert decision.rules_version.startswith("t+")

    def test_unknown_customer(self) -> None:
        unknown = Customer("zz", None, ValueFeatures(), Tier.POTENTIAL)
        assert decide(RULES, unknown).segment == "general"


class TestCustomerAsRulesReadIt:
    """README's table of what `customer` holds: for an unknown customer `known` false,
    `attributes` empty and every other field but `id` null; the birth date as ISO text."""

    def test_an_unknown_customer_is_its_id_known_false_and_nulls(self) -> None:
        unknown = Customer("zz", None, ValueFeatures(), Tier.POTENTIAL)
        view = context.build(unknown, None, today=TODAY)["customer"]
        assert (view.pop("id"), view.pop("known"), view.pop("attributes")) == ("zz", False, {})
        assert set(view.values()) == {None}
        held = parse("  - name: strangers\n    segment: s\n    when: '!customer.known'\n")
        assert decide(held, unknown).rule == "strangers"

    def test_a_known_customers_birth_date_is_iso_text_beside_the_age(self) -> None:
        view = context.build(customer(birth_date=date(1950, 11, 24), attributes={"club": "x"}),
                             None, today=TODAY)["customer"]
        assert (view["known"], view["birth_date"], view["age_years"], view["attributes"]) == (
            True, "1950-11-24", 75, {"club": "x"})


class TestRejectedRuleSets:
    def test_syntax_error_names_file_line_and_rule(self) -> None:
        with pytest.raises(ConfigError) as error:
            parse("  - name: broken\n    segment: x\n    when: customer.type ==\n")
        assert (error.value.path, error.value.line, error.value.entry) == (
            "segments.yaml", 4, "broken")
        assert "not a valid CEL expression" in error.value.problem

    def test_non_boolean_expression_is_rejected(self) -> None:
        with pytest.raises(ConfigError, match="gives double, not a boolean"):
            parse("  - name: sum\n    segment: x\n    when: features.total_value + 1.0\n")

    def test_dynamic_non_boolean_is_caught_by_the_probes(self) -> None:
        with pytest.raises(ConfigError, match="not a boolean"):
            parse("  - name: dyn\n    segment: x\n    when: customer.type\n")

    def test_unguarded_null_field_is_rejected_for_unknown_customers(self) -> None:
        with pytest.raises(ConfigError, match="fails for an unknown customer"):
            parse("  - name: age\n    segment: x\n    when: customer.age_years > 60\n")

    @pytest.mark.parametrize(("when", "problem"), [
        # Guarded by the customer being known, yet a known customer may have no birth date.
        ("customer.known && customer.age_years >= 65",
         "a known individual customer with no profile field but its type"),
        # Guarded by the kind, yet a complaint may come without a language.
        ("ticket.kind == 'complaint' && ticket.language.startsWith('nl')",
         "a ticket of kind complaint by email, language null"),
        ("customer.type == 'government' && customer.signup_date > '2020'",
         "a known government customer with no profile field but its type"),
        ("ticket.channel == 'phone' && size(ticket.language) > 1", "by phone"),
    ])
    def test_a_guard_that_lets_a_null_field_through_is_rejected(self, when: str,
                                                                problem: str) -> None:
        with pytest.raises(ConfigError, match="fails for") as error:
            parse(f"  - name: guarded\n    segment: x\n    when: \"{when}\"\n")
        assert problem in error.value.problem

    def test_guarded_null_field_is_accepted(self) -> None:
        rule_set = parse("  - name: age\n    segment: seniors\n"
                         "    when: customer.age_years != null && customer.age_years > 60\n")
        old = customer(birth_date=date(1950, 1, 1))
        assert decide(rule_set, old).segment == "seniors"

    @pytest.mark.parametrize("text", ["rules: []\n", "rules: []\ndefault_segment:\n"])
    def test_default_segment_is_required(self, text: str) -> None:
        with pytest.raises(ConfigError, match="default segment is required") as error:
            rules_file.parse(text, source="segments.yaml")
        assert error.value.entry == "default_segment"

    @pytest.mark.parametrize(("value", "written"), [
        ("'Not A Name'", "'Not A Name'"), ("7", "7"), ("[general]", "['general']"),
        ("a" * 64, repr("a" * 64))])
    def test_a_default_segment_given_must_be_a_segment_name(self, value: str,
                                                            written: str) -> None:
        """Not "required": one was given; what a segment name is, is said."""
        with pytest.raises(ConfigError) as error:
            rules_file.parse(f"rules: []\ndefault_segment: {value}\n", source="segments.yaml")
        assert (error.value.line, error.value.entry) == (2, "default_segment")
        assert error.value.problem == (
            "default_segment must be a segment name: lower-case letters, digits, '_' or '-',"
            f" starting with a letter, at most 63 characters, not {written}")

    def test_a_rule_cel_raises_on_rather_than_answer_is_rejected(self) -> None:
        # A map with a key twice: CEL raises on every evaluation (a probe's too).
        with pytest.raises(ConfigError) as error:
            parse("  - name: a\n    segment: x\n    when: \"{'k': 1, 'k': 2}.size() == 1\"\n")
        assert (error.value.line, error.value.entry) == (4, "a")
        assert "ALREADY_EXISTS" in error.value.problem

    @pytest.mark.parametrize(("loops", "probe"), [
        ("ticket.attributes", "50 attributes (the most a ticket has)"),
        ("customer.attributes", "customer with a full profile and 100 attributes (the most a"
                                " customer has)")])
    def test_loops_past_cels_budget_on_the_most_attributes_are_rejected(
            self, loops: str, probe: str) -> None:
        # Within the budget on a few attributes, past it on the most a ticket (50) or a
        # customer (100) may have: refused at load, not failing on large tickets later.
        triple = (f"{loops}.exists(a, {loops}.exists(b, {loops}.exists(c,"
                  " a + b + c == 'k')))")
        with pytest.raises(ConfigError) as error:
            parse(f"  - name: triple\n    segment: x\n    when: {triple}\n")
        assert (error.value.line, error.value.entry) == (4, "triple")
        assert "Iteration budget exceeded" in error.value.problem
        assert probe in error.value.problem
        assert "past CEL's iteration budget" in error.value.problem  # the hint fits
        assert "x" * 100 not in error.value.problem  # the probe's values not repeated
        parse(f"  - name: one\n    segment: x\n    when: {loops}.exists(a, a == 'k')\n")

    def test_a_rule_too_costly_on_the_largest_customer_is_rejected(self) -> None:
        """conditions.Costs: a pattern costly to compile (tens of ms of CPU on a customer
        with the most attributes: compiled again for each) passes CEL's budget, and is
        refused at load, naming it. One over each attribute, as simple as most, loads."""
        costly = ("customer.attributes.exists(k, string(customer.attributes[k])"
                  ".matches('^(a|b|c|d)*(x{1,100}){1,10}$'))")
        with pytest.raises(ConfigError) as error:
            parse(f"  - name: costly\n    segment: x\n    when: \"{costly}\"\n")
        assert (error.value.line, error.value.entry) == (4, "costly")
        assert "ms of CPU on a known" in error.value.problem
        assert "matches() pattern" in error.value.problem
        parse("  - name: plain\n    segment: x\n    when: \"customer.attributes.exists(k,"
              " string(customer.attributes[k]).matches('^[a-z]+$'))\"\n")

    def test_a_search_for_two_equal_attributes_is_checked_on_distinct_ones(self) -> None:
        # On attributes all alike it would stop at the first pair; the largest probe's
        # are all different, so it goes through them all, past the budget.
        loops = "customer.attributes"
        with pytest.raises(ConfigError, match="Iteration budget exceeded"):
            parse(f"  - name: twins\n    segment: x\n    when: {loops}.exists(a, {loops}.exists(b,"
                  f" a != b && {loops}[a] == {loops}[b]))\n")

    def test_other_failures_on_the_largest_probes_are_left_to_run_time(self) -> None:
        # Comparing every attribute with a number fails on the probe's text attributes,
        # as on a real customer's: not refused at load (as before the largest probes),
        # the rule does not hold where it fails.
        rule_set = parse("  - name: big\n    segment: x\n    when: customer.attributes.exists("
                         "k, customer.attributes[k] > 100)\n")
        decision = decide(rule_set, customer(attributes={"spend": 500}))
        assert (decision.segment, decision.failed) == ("x", ())

    def test_duplicate_rule_names(self) -> None:
        with pytest.raises(ConfigError, match="two rules have this name"):
            parse("  - {name: a, segment: x, when: 'true'}\n"
                  "  - {name: a, segment: y, when: 'false'}\n")

    def test_a_name_given_again_far_down_is_named_at_its_line(self) -> None:
        body = "".join(f"  - {{name: r{i}, segment: x, when: 'false'}}\n" for i in range(500))
        with pytest.raises(ConfigError) as error:
            parse(body + "  - {name: r7, segment: y, when: 'true'}\n")
        assert (error.value.line, error.value.entry) == (504, "r7")
        assert error.value.problem == "two rules have this name"

    def test_as_many_rules_as_a_set_holds_load(self) -> None:
        body = "".join(f"  - {{name: r{i}, segment: x, when: \"ticket.kind == 'k{i}'\"}}\n"
                       for i in range(rules_file.MAX_RULES))
        assert len(parse(body).rules) == rules_file.MAX_RULES

    def test_one_rule_more_is_refused_before_any_is_compiled(self) -> None:
        """Named at the first rule past the most a set holds (line 4 holds the first);
        the rules are not compiled, so a condition that could not be is not what is
        said."""
        body = "".join(f"  - {{name: r{i}, segment: x, when: 'true'}}\n"
                       for i in range(rules_file.MAX_RULES)) + \
            "  - {name: last, segment: x, when: 'not CEL ((('}\n"
        with pytest.raises(ConfigError) as error:
            parse(body)
        assert (error.value.line, error.value.entry) == (4 + rules_file.MAX_RULES, "rules")
        assert error.value.problem.startswith(
            f"{rules_file.MAX_RULES + 1:,} rules, at most {rules_file.MAX_RULES:,}")

    def test_unknown_keys_are_named(self) -> None:
        with pytest.raises(ConfigError, match="unknown keys \\['priority'\\]"):
            parse("  - {name: a, segment: x, when: 'true', priority: 1}\n")

    @pytest.mark.parametrize(("text", "line", "entry", "problem"), [
        (HEADER + "  - {name: a, segment: x, when: 'true'}\nsegments: []\n", 5, None,
         "unknown keys ['segments']; accepted: ['default_segment', 'protected_attributes',"
         " 'rules', 'version']"),
        ("version: t\ndefault_segment: 7\nrules: []\n", 2, "default_segment", ""),
        ("version: t\ndefault_segment: general\nprotected_attributes: customer.gender\n"
         "rules: []\n", 3, "protected_attributes", "must be a list of paths"),
        ("version: t\ndefault_segment: general\nrules: {}\n", 3, "rules",
         "rules must be a list"),
    ])
    def test_a_top_level_key_is_named_at_its_own_line(
            self, text: str, line: int, entry: str | None, problem: str) -> None:
        """Not at the file's first key, where every such error was named before."""
        with pytest.raises(ConfigError) as error:
            rules_file.parse(text, source="segments.yaml")
        assert problem in error.value.problem
        assert (error.value.line, error.value.entry) == (line, entry)


class TestProtectedAttributes:
    """What a rule file protects must be a customer field rules read: a misspelt one was
    taken, and then protected nothing (no proxy checked, no read flagged)."""

    @staticmethod
    def parse_protecting(paths: str) -> rules.RuleSet:
        return rules_file.parse(f"version: t\ndefault_segment: general\n"
                                f"protected_attributes: {paths}\nrules: []\n",
                                source="segments.yaml")

    @pytest.mark.parametrize("path", [
        "customer.gendr", "customer", "customer.gender.band", "features.growth", "tier",
        "ticket.kind", "customer.attributes.", "customer.attributes.a-b",
        "customer.attributes.1st", "customer.attributes.a.b", "customer.attributes." + "a" * 65])
    def test_a_path_no_rule_reads_of_a_customer_is_refused(self, path: str) -> None:
        with pytest.raises(ConfigError) as error:
            self.parse_protecting(f"[customer.gender, '{path}']")
        assert (error.value.path, error.value.line, error.value.entry) == (
            "segments.yaml", 3, "protected_attributes")
        assert error.value.problem == (
            f"protected_attributes: {path!r} is not a customer field rules can read;"
            " accepted: customer.id, customer.known, customer.type, customer.country,"
            " customer.language, customer.gender, customer.birth_date, customer.age_years,"
            " customer.socio_economic_band, customer.signup_date, customer.attributes, or"
            " customer.attributes.<name> (at most 64 letters, digits or '_', not starting"
            " with a digit)")

    def test_every_customer_field_and_attribute_is_accepted(self) -> None:
        paths = [f"customer.{field}" for field in context.CUSTOMER_FIELDS]
        accepted = [*paths, "customer.attributes.club", "customer.attributes._" + "a" * 63]
        assert set(self.parse_protecting(f"[{', '.join(accepted)}]").protected_attributes
                   ) == set(accepted)
        assert set(rules.DEFAULT_PROTECTED) <= set(paths)

    @pytest.mark.parametrize(("listed", "in_force"), [
        ("[]", rules.DEFAULT_PROTECTED),
        ("[customer.gender]", rules.DEFAULT_PROTECTED),
        ("[customer.country, customer.gender]", (*rules.DEFAULT_PROTECTED, "customer.country")),
    ])
    def test_a_list_adds_to_the_defaults_and_never_takes_one_away(
            self, listed: str, in_force: tuple[str, ...]) -> None:
        """An empty list switched off the flag on rules reading gender or age (and proxy
        detection, and withholding the file's own additions)."""
        assert self.parse_protecting(listed).protected_attributes == in_force

    def test_a_rule_reading_a_default_is_flagged_whatever_the_file_lists(self) -> None:
        rule_set = rules_file.parse(
            "version: t\ndefault_segment: general\nprotected_attributes: []\nrules:\n"
            "  - name: women\n    segment: x\n    when: customer.gender == 'female'\n",
            source="segments.yaml")
        assert rule_set.protected_reads(rule_set.rules[0]) == ["customer.gender"]

    def test_a_rule_set_made_with_fewer_still_protects_the_defaults(self) -> None:
        made = rules.RuleSet(version="v", source="s", rules=(), default_segment="general",
                             protected_attributes=("customer.country",))
        assert made.protected_attributes == (*rules.DEFAULT_PROTECTED, "customer.country")

    def test_the_fields_are_those_rules_read_of_a_known_customer_too(self) -> None:
        view = context.build(customer(), None, today=TODAY)["customer"]
        assert tuple(view) == context.CUSTOMER_FIELDS


CUSTOMER_ACCEPTED = (
    "customer.id, customer.known, customer.type, customer.country, customer.language,"
    " customer.gender, customer.birth_date, customer.age_years,"
    " customer.socio_economic_band, customer.signup_date, customer.attributes")
FEATURES_ACCEPTED = (
    "features.recency, features.frequency, features.monetary, features.total_value,"
    " features.trailing_12m_value, features.growth, features.growth_ratio,"
    " features.tenure_days, features.purchases, features.tickets_raised")


class TestFieldsRulesRead:
    """Every field a rule reads of `customer`, `features` or `ticket` is one the segmenter
    gives every context: CEL takes them as maps of any keys, so a misspelt field behind
    has() compiled, passed every probe, and the rule never held."""

    @pytest.mark.parametrize(("when", "said", "accepted"), [
        ("has(customer.agee_years) && customer.agee_years >= 75",
         "customer.agee_years is not a field rules can read (did you mean customer.age_years?)",
         CUSTOMER_ACCEPTED + ", or customer.attributes.<name>"),
        ("customer.nosuch == 1", "customer.nosuch is not a field rules can read",
         CUSTOMER_ACCEPTED + ", or customer.attributes.<name>"),
        ("has(features.frequencyy) && features.frequencyy >= 3",
         "features.frequencyy is not a field rules can read (did you mean"
         " features.frequency?)", FEATURES_ACCEPTED),
        ("features.nosuch > 1", "features.nosuch is not a field rules can read", FEATURES_ACCEPTED),
        ("has(ticket.kindd) && ticket.kindd == 'complaint'",
         "ticket.kindd is not a field rules can read (did you mean ticket.kind?)",
         "ticket.kind, ticket.channel, ticket.language, ticket.attributes, or"
         " ticket.attributes.<name>"),
    ])
    def test_a_field_no_context_has_is_refused_guarded_or_not(
            self, when: str, said: str, accepted: str) -> None:
        with pytest.raises(ConfigError) as error:
            parse(f"  - name: typo\n    segment: x\n    when: \"{when}\"\n")
        assert (error.value.path, error.value.line, error.value.entry) == (
            "segments.yaml", 4, "typo")
        assert error.value.problem == (
            f"{said}: guarded by has() or not, the rule would never hold; accepted:"
            f" {accepted}")

    @pytest.mark.parametrize("when", [
        "'agee_years' in customer && customer['agee_years'] >= 75",
        "has(customer . agee_years) && customer\n . agee_years >= 75",
        "customer.known || has(customer.agee_years.x)",
        "customer.type.startsWith('g') && has(customer.agee_years)",
        "customer.attributes.exists(k, k == 'a') && has(customer.agee_years)",
        "has((customer).agee_years) && (customer).agee_years >= 75",
    ])
    def test_a_field_read_otherwise_is_refused_too(self, when: str) -> None:
        with pytest.raises(ConfigError, match=r"customer\.agee_years is not a field"):
            parse(f"  - name: typo\n    segment: x\n    when: \"{when}\"\n")

    @pytest.mark.parametrize("record", ["customer", "features", "ticket"])
    def test_every_field_of_a_context_is_accepted(self, record: str) -> None:
        body = "".join(f"  - {{name: r{n}, segment: x, when: 'has({path}) && {path} == {path}'}}\n"
                       for n, path in enumerate(context.field_paths(record)))
        assert [rule.reads for rule in parse(body).rules] == [
            (path,) for path in context.field_paths(record)]

    def test_the_fields_are_those_every_context_has(self) -> None:
        for built in (context.build(customer(), ticket("complaint"), today=TODAY),
                      context.build(Customer("zz", None, ValueFeatures(), Tier.POTENTIAL),
                                    None, today=TODAY)):
            assert {record: tuple(built[record]) for record in context.RECORD_FIELDS} == \
                context.RECORD_FIELDS

    @pytest.mark.parametrize("when", [
        "has(customer.attributes.club) && customer.attributes.club == 'senior'",
        "'club' in customer.attributes && customer.attributes['club'] == 'senior'",
        "has(ticket.attributes.order_id) && ticket.attributes.order_id != ''",
        "size(customer) > 0 && size(features) > 0 && tier == 'existing'",
        "customer.attributes.exists(k, k == 'club') // not customer.agee_years",
        "customer.type == 'customer.agee_years'",
    ])
    def test_free_form_attributes_whole_records_literals_and_comments_are_accepted(
            self, when: str) -> None:
        parse(f"  - name: ok\n    segment: x\n    when: \"{when}\"\n")

    def test_the_accepted_customer_fields_are_those_protected_attributes_names(self) -> None:
        with pytest.raises(ConfigError) as error:
            rules_file.parse("version: t\ndefault_segment: general\n"
                             "protected_attributes: [customer.gendr]\nrules: []\n",
                             source="segments.yaml")
        assert f"accepted: {CUSTOMER_ACCEPTED}, or customer.attributes.<name>" in \
            error.value.problem

    def test_a_key_not_found_is_an_attribute_to_guard_with_has(self) -> None:
        with pytest.raises(ConfigError) as error:
            parse("  - name: club\n    segment: x\n"
                  "    when: customer.attributes.club == 'senior'\n")
        assert "Key not found" in error.value.problem
        assert error.value.problem.endswith(
            "(an attribute a customer or ticket may lack: guard it with has(), e.g."
            " `has(customer.attributes.club) && ...`)")

    def test_a_null_field_is_one_to_guard_against_null_not_with_has(self) -> None:
        with pytest.raises(ConfigError) as error:
            parse("  - name: age\n    segment: x\n    when: customer.age_years > 60\n")
        assert error.value.problem.endswith(
            "(guard fields that may be null, e.g. `customer.age_years != null && ...`)")


class TestRuntimeFailure:
    RULE_SET = parse("  - name: level\n    segment: x\n"
                     "    when: has(customer.attributes.level) && "
                     "customer.attributes.level > 3\n"
                     "  - name: organisations\n    segment: business\n"
                     "    when: customer.type == 'organisation'\n")

    def test_a_rule_failing_on_a_tickets_data_does_not_hold_for_it(self) -> None:
        # A level the probes cannot foresee (text where the rule compares a number): the
        # rule does not hold for this ticket, the next one decides.
        decision = decide(self.RULE_SET, customer(CustomerType.ORGANISATION,
                                                  attributes={"level": "high"}))
        assert (decision.segment, decision.rule) == ("business", "organisations")
        [failed] = decision.failed
        assert (failed.rule, failed.kind) == ("level", "UNKNOWN")
        assert str(failed) == "segment rule 'level' failed (UNKNOWN)"

    def test_with_no_rule_holding_the_default_decides_and_the_failure_is_named(
            self) -> None:
        decision = decide(self.RULE_SET, customer(attributes={"level": "high"}))
        assert (decision.segment, decision.rule) == ("general", "default")
        assert [failed.rule for failed in decision.failed] == ["level"]

    def test_a_rule_that_holds_decides_with_nothing_failed(self) -> None:
        decision = decide(self.RULE_SET, customer(attributes={"level": 5}))
        assert (decision.segment, decision.failed) == ("x", ())

    def test_a_rule_cel_raises_on_for_a_tickets_values_does_not_hold(self) -> None:
        # A map keyed by two attributes: on the probes (which have neither) the guards
        # keep it from being built; on a ticket whose two values are equal CEL raises,
        # rather than return an error. The next rule decides; the ticket is segmented,
        # not dead-lettered after its 202.
        rule_set = parse(
            "  - name: pair\n    segment: x\n    when: \"has(ticket.attributes.a) &&"
            " has(ticket.attributes.b) &&"
            " {ticket.attributes.a: 1, ticket.attributes.b: 2}.size() == 2\"\n"
            "  - name: organisations\n    segment: business\n"
            "    when: customer.type == 'organisation'\n")
        same = tickets.Ticket(ticket_id="t", customer_id="c-1", subject="s", body="b",
                              channel="email", received_at=datetime.now(UTC),
                              attributes={"a": "v", "b": "v"})
        decision = rule_set.decide(context.build(customer(CustomerType.ORGANISATION), same,
                                                 today=TODAY))
        assert (decision.segment, decision.rule) == ("business", "organisations")
        [failed] = decision.failed
        assert (failed.rule, failed.kind) == ("pair", "ALREADY_EXISTS")


class TestTicketLanguage:
    """A rule comparing `ticket.language` with a tag in BCP 47's case holds whatever case
    the platform sent it in: the ticket carries it in that case (tickets.LanguageTag)."""

    RULE_SET = parse("  - name: taiwan\n    segment: zh_tw\n"
                     "    when: ticket.language == 'zh-Hant-TW'\n")

    @pytest.mark.parametrize("sent", ["zh-Hant-TW", "zh-hant-tw", "ZH-HANT-TW"])
    def test_a_rule_on_a_tag_holds_whatever_case_came(self, sent: str) -> None:
        posted = tickets.Ticket(ticket_id="t", customer_id="c-1", subject="s", body="b",
                                channel="email", language=sent,
                                received_at=datetime.now(UTC))
        decision = self.RULE_SET.decide(context.build(customer(), posted, today=TODAY))
        assert (decision.segment, decision.rule) == ("zh_tw", "taiwan")


class TestReads:
    def test_a_protected_read_with_a_leading_dot_is_flagged_and_its_fields_checked(
            self) -> None:
        rule_set = parse("  - name: women\n    segment: x\n"
                         "    when: .customer.gender == 'female'\n")
        assert rule_set.protected_reads(rule_set.rules[0]) == ["customer.gender"]
        with pytest.raises(ConfigError, match=r"customer\.agee_years is not a field"):
            parse("  - name: seniors\n    segment: x\n"
                  "    when: has(.customer.agee_years) && .customer.agee_years > 75\n")

    def test_a_macro_variable_named_customer_is_not_the_customer(self) -> None:
        # Its fields are the list's, neither checked against the customer's nor
        # protected reads.
        rule_set = parse("  - name: bundles\n    segment: x\n    when: \"[{'sku': 1, 'gender':"
                         " 2}].exists(customer, customer.sku == 1 && customer.gender == 2)\"\n")
        assert rule_set.rules[0].reads == ()
        assert rule_set.protected_reads(rule_set.rules[0]) == []

    def test_protected_reads_are_flagged(self) -> None:
        rule_set = parse("  - name: women\n    segment: x\n"
                         "    when: customer.gender == 'female'\n"
                         "  - name: all\n    segment: y\n    when: size(customer) > 0\n")
        assert rule_set.protected_reads(rule_set.rules[0]) == ["customer.gender"]
        # A rule reading the whole customer map may read anything in it.
        assert rule_set.protected_reads(rule_set.rules[1]) == ["customer"]


class TestDecidedByCarriesNoPersonalData:
    """`decided_by` travels with the ticket to department topics: values of protected
    attributes and of whole maps stay behind, their paths say what decided."""

    def test_a_protected_attribute_is_named_not_valued(self) -> None:
        rule_set = parse("  - name: seniors\n    segment: care_plus\n"
                         "    when: customer.age_years != null && customer.age_years >= 75\n"
                         "  - name: women\n    segment: x\n"
                         "    when: customer.gender == 'female'\n")
        senior = decide(rule_set, customer(birth_date=date(1940, 5, 17), gender="female"))
        assert senior.decided_by == {"customer.age_years": rules.WITHHELD}
        woman = decide(rule_set, customer(birth_date=date(1990, 5, 17), gender="female"))
        assert woman.decided_by == {"customer.gender": rules.WITHHELD}

    def test_a_map_is_named_not_copied(self) -> None:
        rule_set = parse("  - name: anyone\n    segment: x\n    when: size(customer) > 0"
                         " && size(customer.attributes) > 0\n")
        decision = decide(rule_set, customer(gender="male", attributes={"vip": True}))
        assert decision.decided_by == {"customer": rules.WITHHELD,
                                       "customer.attributes": rules.WITHHELD}

    def test_attributes_the_rule_file_protects_are_withheld_too(self) -> None:
        rule_set = rules_file.parse(
            "version: t\ndefault_segment: general\nprotected_attributes: [customer.country]\n"
            "rules:\n  - name: dutch\n    segment: nl\n    when: customer.country == 'NL'\n",
            source="segments.yaml")
        assert decide(rule_set, customer(country="NL")).decided_by == {
            "customer.country": rules.WITHHELD}

    def test_what_is_withheld_follows_the_rule_set_in_force(self) -> None:
        rule = "rules:\n  - name: dutch\n    segment: nl\n    when: customer.country == 'NL'\n"
        protecting = rules_file.parse("version: a\ndefault_segment: general\n"
                                      "protected_attributes: [customer.country]\n" + rule,
                                      source="segments.yaml")
        not_protecting = rules_file.parse("version: b\ndefault_segment: general\n" + rule,
                                          source="segments.yaml")
        dutch = customer(country="NL")
        for _ in range(2):  # whatever was asked before: each rule set's own answer
            assert decide(protecting, dutch).decided_by == {
                "customer.country": rules.WITHHELD}
            assert decide(not_protecting, dutch).decided_by == {"customer.country": "NL"}

    def test_personal_data_is_withheld_even_when_the_rule_file_protects_nothing(
            self) -> None:
        rule_set = rules_file.parse(
            "version: t\ndefault_segment: general\nprotected_attributes: []\nrules:\n"
            "  - name: women\n    segment: x\n    when: customer.gender == 'female'\n"
            "  - name: born\n    segment: y\n    when: customer.birth_date != null\n",
            source="segments.yaml")
        assert decide(rule_set, customer(gender="female")).decided_by == {
            "customer.gender": rules.WITHHELD}
        assert decide(rule_set, customer(gender="male", birth_date=date(1980, 2, 3))
                      ).decided_by == {"customer.birth_date": rules.WITHHELD}

    def test_free_form_attributes_are_withheld_they_may_hold_contact_details(self) -> None:
        rule_set = parse("  - name: reachable\n    segment: x\n"
                         "    when: has(customer.attributes.phone)"
                         " && customer.attributes.phone != ''\n")
        decision = decide(rule_set, customer(attributes={"phone": "+31 6 1234 5678"}))
        assert decision.decided_by == {"customer.attributes.phone": rules.WITHHELD}

    def test_single_values_of_other_fields_stay(self) -> None:
        rule_set = parse("  - name: dutch_complaints\n    segment: x\n"
                         "    when: customer.type == 'government' && customer.country == 'NL'"
                         " && tier == 'potential' && ticket.kind == 'complaint'\n")
        decision = decide(rule_set, customer(CustomerType.GOVERNMENT, Tier.POTENTIAL,
                                             country="NL"), kind="complaint")
        assert decision.decided_by == {"customer.type": "government", "customer.country": "NL",
                                       "tier": "potential", "ticket.kind": "complaint"}
