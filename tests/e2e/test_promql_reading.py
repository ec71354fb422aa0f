"""tests/e2e/promql.py reads selectors, labels and thresholds as Prometheus would."""

from __future__ import annotations

from tests.e2e.promql import label_names, selectors, without_absent, without_thresholds


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


def test_absent_read_as_what_it_watches() -> None:
    expr = ('absent(up{job="a(b"}) or absent (sum(rate(x[5m]))) unless absent_over_time(y[1m])'
            ' > 0')
    assert without_absent(expr) == (
        'up{job="a(b"} or sum(rate(x[5m])) unless absent_over_time(y[1m]) > 0')
