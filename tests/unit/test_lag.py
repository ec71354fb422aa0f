from services.core import lag


class TestWatchedGroups:
    def test_stages_and_one_group_per_department_queue(self) -> None:
        names = ["tickets.incoming", "tickets.segmented", "tickets.events", "tickets.dlq",
                 "dept.public_sector", "dept.public_sector.high", "dept.public_sector.low",
                 "dept.key_accounts", "__consumer_offsets", "dept.", "dept.Bad"]
        assert lag.watched(names) == [
            ("segmenter", "tickets.incoming"), ("router", "tickets.segmented"),
            ("router-tracker", "tickets.events"), ("router-webhooks", "tickets.events"),
            ("metrics", "tickets.events"), ("router-held", "tickets.dlq"),
            ("department.key_accounts", "dept.key_accounts"),
            ("department.public_sector", "dept.public_sector"),
            ("department.public_sector", "dept.public_sector.high"),
            ("department.public_sector", "dept.public_sector.low")]
        assert lag.departments(names) == {"key_accounts", "public_sector"}

    def test_a_missing_topic_is_not_watched(self) -> None:
        assert lag.watched(["tickets.incoming"]) == [("segmenter", "tickets.incoming")]


class TestPosition:
    def test_lag_is_the_end_minus_the_committed_offset(self) -> None:
        measured = lag.position(end={0: 10, 1: 5}, beginning={0: 0, 1: 0},
                                committed={0: 7, 1: 5})
        assert measured == lag.GroupPosition(lag=3, committed=12)

    def test_nothing_committed_counts_from_the_first_retained_offset(self) -> None:
        measured = lag.position(end={0: 10, 1: 5}, beginning={0: 4, 1: 0},
                                committed={0: -1})
        assert measured == lag.GroupPosition(lag=11, committed=4)

    def test_an_offset_removed_by_retention_counts_from_the_first_retained(self) -> None:
        measured = lag.position(end={0: 10}, beginning={0: 6}, committed={0: 2})
        assert measured == lag.GroupPosition(lag=4, committed=6)
