import contextlib
import threading
from pathlib import Path
from typing import Any

import pytest
from celpy.celparser import CELParser

from services.core.config_files import ConfigError
from services.segmenter import rule_reads, rules_file

HEADER = "version: t\ndefault_segment: general\nrules:\n"


def parse(when: str) -> tuple[str, ...]:
    """The reads of a rule file's one rule."""
    text = f"{HEADER}  - name: r\n    segment: x\n    when: {when}\n"
    return rules_file.parse(text, source="segments.yaml").rules[0].reads


class TestReads:
    def test_referenced_paths_ignore_string_literals(self) -> None:
        assert rule_reads.referenced_paths(
            "customer.gender == 'customer.type' && tier == 'x' && features.growth > 0"
        ) == ("customer.gender", "tier", "features.growth")

    @pytest.mark.parametrize(("expression", "reads"), [
        ("customer.type.startsWith('g') && customer.attributes.exists(k, k == 'a')",
         ("customer.type", "customer.attributes")),
        ("customer['age_years'] > 1 && customer.attributes[\"club\"] == 'a'",
         ("customer.age_years", "customer.attributes.club")),
        ("customer . country == 'NL' // customer.gender, it's",
         ("customer.country",)),
        ("ticket.attributes.customer == 'a' && ticket.attributes.exists(a, a.features.x)",
         ("ticket.attributes.customer", "ticket.attributes")),
        # CEL's leading dot names a variable of the root scope: read as without it.
        (".customer.gender == 'female' && .tier == 'x'", ("customer.gender", "tier")),
        # A literal read as CEL reads it hides nothing after it: triple-quoted ones may
        # hold quotes, a raw one's backslash escapes nothing.
        ("'" * 3 + "a'b" + "'" * 3 + " != '' && customer.gender == 'female'",
         ("customer.gender",)),
        ('"' * 3 + 'a"b' + '"' * 3 + ' != "" && customer.age_years > 3',
         ("customer.age_years",)),
        ("r'\\d' != '' && customer.birth_date == null", ("customer.birth_date",)),
        ('R"\\d" != "" && customer.gender == "x"', ("customer.gender",)),
        # A macro's variable is no variable of the root scope, named alike or not; `.`
        # names the root scope's inside it.
        ("[{'gender': 'x'}].exists(customer, customer.gender == .customer.type)",
         ("customer.type",)),
        ("customer.attributes.map(tier, tier.size()).exists(n, n > 2)",
         ("customer.attributes",)),
        ("[[1]].exists(l, l.exists(customer, customer > 0)) && customer.type == 'a'",
         ("customer.type",)),
        # What is selected, as CEL reads it: of a variable in parentheses, of a map
        # written in the rule (no variable, whatever its keys).
        ("(customer).type == 'a' && {'features': 1}.features == 1", ("customer.type",)),
        # A key in quotes is the text CEL makes of it, raw or with escapes (`\\X`, which
        # cel_expr_python reads as `\\x`, too).
        ("customer[r'type'] == 'a' && customer['\\x61ge_years'] > 3",
         ("customer.type", "customer.age_years")),
        ("customer['\\X61ge_years'] > 3 && customer[\"\\X74ype\"] == 'a'",
         ("customer.age_years", "customer.type")),
        ("customer['\\\\X61ge_years'] == 1 && customer[r'\\X61'] == 1", ("customer",)),
    ])
    def test_referenced_paths_are_fields_not_methods_comments_or_names_alike(
            self, expression: str, reads: tuple[str, ...]) -> None:
        assert rule_reads.referenced_paths(expression) == reads

    @pytest.mark.parametrize(("terms", "reads"), [
        (" && ".join(["tier == 'a'"] * 1000), ("tier",)),
        (" || ".join(["true"] * 1000) + " || features.growth > 0", ("features.growth",)),
    ])
    def test_a_chain_of_a_thousand_terms_is_read(self, terms: str,
                                                  reads: tuple[str, ...]) -> None:
        # CEL balances a chain of && or ||: it compiles however long, while the grammar
        # the reads come from nests it a level a term. Read alone: loaded, the chain is
        # also held to the CPU a condition may cost, which a busy machine can pass.
        assert rule_reads.referenced_paths(terms) == reads

    def test_a_key_with_an_upper_case_escape_is_the_field_checked(self) -> None:
        # `\X61` is `a` to cel_expr_python: read as anything else, the whole customer
        # would pass the check, and the rule fail on the probes with a hint to guard it.
        with pytest.raises(ConfigError, match=r"customer\.agee_years is not a field"):
            parse("\"customer['\\\\X61gee_years'] > 75\"")


class TestUnreadable:
    """A rule cel_expr_python compiles that the grammar its reads come from does not take
    is refused, naming the file, line and rule, where it stops and what to write: its
    reads, never taken as none, would go unchecked and unflagged."""

    @pytest.mark.parametrize(("when", "stops"), [
        ("\"customer.country in ['NL', 'BE',]\"", "line 1, column 33 of its condition (']')"),
        ("\"{'a': 1,}.a == 1\"", "line 1, column 9 of its condition ('}.a == 1')"),
        ("\"customer.`gender` == 'female'\"",
         "line 1, column 10 of its condition (\"`gender` == 'female'\")"),
    ])
    def test_a_rule_the_grammar_does_not_take_is_refused(self, when: str, stops: str,
                                                          tmp_path: Path) -> None:
        rules = tmp_path / "segments.yaml"
        rules.write_text(f"{HEADER}  - name: r\n    segment: x\n    when: {when}\n")
        with pytest.raises(ConfigError) as refused:
            rules_file.load(rules)
        assert (refused.value.path, refused.value.line, refused.value.entry) == (
            str(rules), 4, "r")
        assert refused.value.problem.startswith(
            f"the fields this rule reads cannot be told: the grammar they are read with"
            f" stops at {stops}. Write a list or map without a comma after its last item")

    def test_where_it_stops_is_quoted_past_a_form_feed(self) -> None:
        """The parser counts lines by newlines alone: a form feed (CEL's whitespace,
        a line break to str.splitlines) before the stop quoted nothing."""
        with pytest.raises(rule_reads.Unreadable) as refused:
            rule_reads.referenced_paths("customer.type == 'a' &&\x0c[1,].size() > 0")
        assert "stops at line 1, column 28 of its condition ('].size() > 0')" in str(refused.value)


class TestParsesAtOnce:
    def test_rules_parsed_at_once_each_get_their_own_reads(self, monkeypatch: Any) -> None:
        """cel-python's parser keeps the text it parses on itself: two threads sharing
        one would read one rule twice. Here each parse waits, once it has kept its text,
        for the other to keep its own (parses one at a time give up waiting)."""
        rule_reads.referenced_paths("tier == 'a'")  # the parser built
        kept = threading.Barrier(2, timeout=1)

        def keep(parser: CELParser, text: str) -> None:
            parser.__dict__["kept_text"] = text
            with contextlib.suppress(threading.BrokenBarrierError):
                kept.wait()

        monkeypatch.setattr(CELParser, "text", property(
            lambda parser: parser.__dict__["kept_text"], keep), raising=False)
        reads: dict[str, tuple[str, ...]] = {}

        def read(expression: str) -> None:
            reads[expression] = rule_reads.referenced_paths(expression)

        threads = [threading.Thread(target=read, args=(expression,))
                   for expression in ("customer.gender == 'female'", "tier == 'gold'")]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert reads == {"customer.gender == 'female'": ("customer.gender",),
                         "tier == 'gold'": ("tier",)}
