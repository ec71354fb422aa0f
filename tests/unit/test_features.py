import tracemalloc
from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta

from services.segmenter import features
from services.segmenter.features import Cutoffs, Purchase, TierPolicy
from services.segmenter.profiles import Tier, ValueFeatures

NOW = datetime(2026, 11, 23, 12, 0, tzinfo=UTC)
POLICY = TierPolicy(most_valuable_share=0.1, most_growable_share=0.1, min_growth_ratio=0.25)


def bought(*days_and_amounts: tuple[int, float]) -> list[Purchase]:
    return [Purchase(amount, NOW - timedelta(days=days)) for days, amount in days_and_amounts]


class TestRawFeatures:
    def test_totals_trailing_year_and_growth(self) -> None:
        value = features.raw_features(
            bought((10, 100.0), (100, 50.0), (400, 1000.0)),
            signup_date=date(2020, 1, 1), tickets_raised=2, now=NOW)
        assert (value.total_value, value.trailing_12m_value, value.purchases) == (
            1150.0, 150.0, 3)
        assert value.growth == 50.0  # 100 in the last 90 days against 50 in the 90 before
        assert value.growth_ratio == 0.5
        assert value.last_purchase_at == NOW - timedelta(days=10)
        assert value.tickets_raised == 2

    def test_the_growth_ratio_runs_from_minus_one_to_one(self) -> None:
        """The growth over the larger of the two 90-day spends: a customer who stopped
        buying is at -1, one who just started at 1, a halved spend at -0.5."""
        def ratio(*days_and_amounts: tuple[int, float]) -> float:
            return features.raw_features(bought(*days_and_amounts), signup_date=None,
                                         tickets_raised=0, now=NOW).growth_ratio

        assert ratio((100, 80.0)) == -1.0  # nothing in the last 90 days
        assert ratio((10, 80.0)) == 1.0  # nothing in the 90 before
        assert ratio((10, 50.0), (100, 100.0)) == -0.5
        assert ratio((10, 100.0), (100, 100.0)) == 0.0

    def test_no_purchases(self) -> None:
        value = features.raw_features([], signup_date=None, tickets_raised=0, now=NOW)
        assert (value.purchases, value.total_value, value.growth_ratio) == (0, 0.0, 0.0)


class TestScores:
    def test_scores_follow_the_cutoffs(self) -> None:
        cutoffs = Cutoffs(recency_days=(7, 30, 90, 180), frequency=(1, 2, 5, 10),
                          monetary=(100, 500, 1000, 5000))
        value = ValueFeatures(total_value=750.0, purchases=6,
                              last_purchase_at=NOW - timedelta(days=3))
        scored = features.scored(value, cutoffs, now=NOW, signup_date=date(2026, 11, 1))
        assert (scored.recency, scored.frequency, scored.monetary, scored.tenure_days) == (
            5, 4, 3, 22)

    def test_no_purchases_score_zero(self) -> None:
        scored = features.scored(ValueFeatures(), features.DEFAULT_CUTOFFS, now=NOW)
        assert (scored.recency, scored.frequency, scored.monetary) == (0, 0, 0)

    def test_a_prospect_has_its_tenure_too(self) -> None:
        scored = features.scored(ValueFeatures(tickets_raised=2), features.DEFAULT_CUTOFFS,
                                 now=NOW, signup_date=date(2026, 11, 1))
        assert (scored.recency, scored.tenure_days, scored.tickets_raised) == (0, 22, 2)


class TestTiers:
    cutoffs = Cutoffs(most_valuable_from=5000.0, most_growable_from=500.0)

    def tier(self, **values: float) -> Tier:
        return features.tier_of(ValueFeatures(purchases=1, **values),  # type: ignore[arg-type]
                                self.cutoffs, POLICY)

    def test_most_valuable(self) -> None:
        assert self.tier(trailing_12m_value=6000.0) is Tier.MOST_VALUABLE

    def test_most_growable(self) -> None:
        assert self.tier(trailing_12m_value=900.0, growth=800.0,
                         growth_ratio=0.8) is Tier.MOST_GROWABLE

    def test_growth_too_small_relative_to_spend_is_existing(self) -> None:
        assert self.tier(trailing_12m_value=4000.0, growth=800.0,
                         growth_ratio=0.1) is Tier.EXISTING

    def test_existing(self) -> None:
        assert self.tier(trailing_12m_value=100.0) is Tier.EXISTING

    def test_no_purchase_is_potential(self) -> None:
        assert features.tier_of(ValueFeatures(), self.cutoffs, POLICY) is Tier.POTENTIAL


class TestPopulationCutoffs:
    def test_top_shares_and_quintiles(self) -> None:
        population = [
            ValueFeatures(purchases=n, total_value=100.0 * n, trailing_12m_value=100.0 * n,
                          growth=10.0 * n, growth_ratio=0.5,
                          last_purchase_at=NOW - timedelta(days=n))
            for n in range(1, 21)
        ] + [ValueFeatures()]  # a prospect does not count
        cutoffs = features.population_cutoffs(population, POLICY, now=NOW)
        assert cutoffs.most_valuable_from == 1900.0  # top 10% of 20 buyers: 2 customers
        assert cutoffs.most_growable_from == 190.0
        assert cutoffs.frequency == (5.0, 9.0, 12.0, 16.0)
        top = [f for f in population
               if features.tier_of(f, cutoffs, POLICY) is Tier.MOST_VALUABLE]
        assert len(top) == 2

    def test_round_trip_through_storage(self) -> None:
        cutoffs = Cutoffs(most_growable_from=None)
        assert Cutoffs.from_dict(cutoffs.to_dict()) == cutoffs

    def test_empty_population_keeps_defaults(self) -> None:
        assert features.population_cutoffs([], POLICY, now=NOW) == features.DEFAULT_CUTOFFS


class TestPopulationMemory:
    def test_a_streamed_population_is_not_held_whole(self) -> None:
        """A base of millions is read as a stream: the run keeps a few numbers a buyer,
        not each buyer's features (50,000 features held take about 20 MB)."""
        buyers = 50_000

        def population() -> Iterator[ValueFeatures]:
            for n in range(buyers):
                yield ValueFeatures(purchases=1 + n % 9, total_value=float(n),
                                    trailing_12m_value=float(n), growth=float(n % 50),
                                    growth_ratio=0.5,
                                    last_purchase_at=NOW - timedelta(days=n % 400))

        tracemalloc.start()
        try:
            cutoffs = features.population_cutoffs(population(), POLICY, now=NOW)
            _, peak = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
        assert cutoffs.most_valuable_from == float(buyers - buyers // 10)
        assert peak < 10 * 1024 * 1024
