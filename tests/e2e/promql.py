"""Reading PromQL well enough to check it finds data: an expression's vector selectors,
the labels it names, and the expression with its threshold comparisons and `absent`
removed."""

from __future__ import annotations

import re

AGGREGATIONS = {"sum", "min", "max", "avg", "count", "stddev", "stdvar", "topk", "bottomk",
                "quantile", "count_values", "group"}
KEYWORDS = {"by", "without", "on", "ignoring", "group_left", "group_right", "offset", "bool",
            "and", "or", "unless", "inf", "nan"}
TOKENS = re.compile(r"""
    (?P<string>"(?:[^"\\]|\\.)*"|'(?:[^'\\]|\\.)*')
  | (?P<grouping>\b(?:by|without|on|ignoring|group_left|group_right)\s*\((?P<labels>[^)]*)\))
  | (?P<range>\[[^\]]*\])
  | (?P<offset>\boffset\s+\w+)
  | (?P<number>(?<![\w:])\d+(?:\.\d*)?(?:[eE][+-]?\d+)?)
  | (?P<name>[A-Za-z_:][\w:]*)(?P<matchers>\s*\{[^}]*\})?
  | (?P<bare>\{[^}]*\})
""", re.VERBOSE)
MATCHER = re.compile(r"""([A-Za-z_]\w*)\s*(?:=~|!~|!=|=)\s*(?:"(?:[^"\\]|\\.)*"|'[^']*')""")
COMPARISON = re.compile(
    r"\s*(?:==|!=|>=|<=|>|<)\s*(?:bool\s+)?-?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][+-]?\d+)?(?![\w.])")


def selectors(expr: str) -> list[str]:
    """The vector selectors of an expression: `name{matchers}` or `{matchers}`."""
    found = []
    for token in TOKENS.finditer(expr):
        name, matchers = token.group("name"), token.group("matchers")
        if token.group("bare"):
            found.append(token.group("bare"))
        elif name in KEYWORDS and matchers:  # `unless {job="x"}`: a selector after a keyword
            found.append(matchers.strip())
        elif name and name not in KEYWORDS and name not in AGGREGATIONS:
            if expr[token.end():].lstrip().startswith("(") and not token.group("matchers"):
                continue  # a function
            found.append(name + (token.group("matchers") or "").strip())
    return found


def label_names(expr: str) -> set[str]:
    """Labels an expression names in matchers and in by/without/on/ignoring/group_*."""
    names = set()
    for token in TOKENS.finditer(expr):
        if token.group("grouping"):
            names |= {label.strip() for label in token.group("labels").split(",")
                      if label.strip()}
        for matchers in (token.group("matchers"), token.group("bare")):
            if matchers:
                names |= set(MATCHER.findall(matchers))
    return names - {"__name__"}


def without_thresholds(expr: str) -> str:
    """The expression with every `<op> <number>` comparison removed (outside strings)."""
    parts = re.split(r"""("(?:[^"\\]|\\.)*"|'(?:[^'\\]|\\.)*')""", expr)
    return "".join(part if i % 2 else COMPARISON.sub("", part) for i, part in enumerate(parts))


STRING = re.compile(r"""("(?:[^"\\]|\\.)*"|'(?:[^'\\]|\\.)*')""")
ABSENT = re.compile(r"\babsent\s*\(")


def without_absent(expr: str) -> str:
    """The expression with each `absent(x)` read as `x`: an alert on a thing's absence is
    empty while it is there, and what it watches must exist for it to mean anything."""
    found = ABSENT.search(expr)
    if found is None:
        return expr
    depth, at = 1, found.end()
    while depth:
        string = STRING.match(expr, at)
        if string:
            at = string.end()
            continue
        depth += {"(": 1, ")": -1}.get(expr[at], 0)
        at += 1
    return (expr[:found.start()] + without_absent(expr[found.end():at - 1])
            + without_absent(expr[at:]))
