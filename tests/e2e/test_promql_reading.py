"""tests/e2e/promql.py reads selectors, labels and thresholds as Prometheus would."""

from __future__ import annotations

from tests.e2e.promql import label_names, selectors, without_thresholds


def test_promql_reading() -> None:
    expr = ('histogram_quantile(0.9, sum by (department, le) (rate(a_bucket{department=~"x|y",'
            ' outcome!="1"}[5m]))) > 0.72 and on (department) b:rec offset 5m < bool 1e3'
            ' or delta(c[1h]) >= 10 unless {job="x>1"} == 0')
    assert selectors(expr) == ['a_bucket{department=~"x|y", outcome!="1"}', "b:rec", "c",
                               '{job="x>1"}']
    assert label_names(expr) == {"department", "le", "outcome", "job"}
    assert without_thresholds(expr) == (
        'histogram_quantile(0.9, sum by (department, le) (rate(a_bucket{department=~"x|y",'
        ' outcome!="1"}[5m]))) and on (department) b:rec offset 5m or delta(c[1h])'
        ' unless {job="x>1"}')
