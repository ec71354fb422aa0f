"""Segment rule evaluations per second for a 20-rule set (CEL, compiled once).

    .venv/bin/python -m bench.rules_eval [--tickets 20000] [--runs 5]

Each ticket's context is built once and shared by the 20 rules; no rule matches, so every
ticket evaluates all 20 and falls to the default (the worst case). Prints the median of
the runs for rule evaluations per second and for whole decisions (context + 20 rules).
"""

from __future__ import annotations

import argparse
import statistics
import time
from datetime import UTC, datetime

from services.core import tickets
from services.segmenter import context, rules, rules_file
from services.segmenter.profiles import (
    Customer,
    CustomerProfile,
    CustomerType,
    Tier,
    ValueFeatures,
)

TEMPLATES = [
    "customer.type == 'government' && customer.country == 'X{n}'",
    "tier == 'most_valuable' && features.monetary >= 9{n}",
    "features.total_value > 1.0e9 && features.growth > {n}.0",
    "ticket.kind in ['k{n}', 'q{n}'] && customer.known",
    "has(customer.attributes.vip{n}) && customer.attributes.vip{n} == true",
]


def twenty_rules() -> rules.RuleSet:
    body = "".join(
        f"  - name: rule-{n}\n    segment: s{n}\n    when: \"{TEMPLATES[n % 5].format(n=n)}\"\n"
        for n in range(20))
    return rules_file.parse(f"version: bench\ndefault_segment: general\nrules:\n{body}",
                            source="bench.yaml")


def sample_customer(n: int) -> Customer:
    return Customer(f"c-{n}", CustomerProfile(f"c-{n}", CustomerType.INDIVIDUAL, country="NL",
                                              attributes={"newsletter": True}),
                    ValueFeatures(recency=4, frequency=3, monetary=5, total_value=1200.0,
                                  growth=50.0, purchases=7), Tier.EXISTING)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--tickets", type=int, default=20_000)
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    rule_set = twenty_rules()
    now = datetime.now(UTC)
    customers = [sample_customer(n) for n in range(100)]
    ticket = tickets.Ticket(ticket_id="t", customer_id="c", subject="s", body="b",
                            channel="email", kind="question", received_at=now)
    decisions_per_second = []
    for _ in range(args.runs):
        started = time.perf_counter()
        for n in range(args.tickets):
            decision = rule_set.decide(context.build(customers[n % 100], ticket,
                                                     today=now.date()))
        elapsed = time.perf_counter() - started
        assert decision.rule == "default"
        decisions_per_second.append(args.tickets / elapsed)
    median = statistics.median(decisions_per_second)
    print(f"20-rule set, {args.tickets} tickets x {args.runs} runs (medians):")
    print(f"  rule evaluations per second: {median * 20:,.0f}")
    print(f"  decisions per second (context built once + 20 rules): {median:,.0f}")


if __name__ == "__main__":
    main()
