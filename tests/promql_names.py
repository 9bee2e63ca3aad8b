"""The metric names a PromQL expression reads: what a Grafana panel needs the gateway to export."""

from __future__ import annotations

import re

STRING = re.compile(r'"(?:[^"\\]|\\.)*"|\'(?:[^\'\\]|\\.)*\'')
MATCHERS = re.compile(r"\{[^{}]*\}")
RANGE = re.compile(r"\[[^\[\]]*\]")
GROUPING = re.compile(r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^()]*\)")
IDENTIFIER = re.compile(r"(?<![\w$.])([a-zA-Z_:][a-zA-Z0-9_:]*)\b(\s*\()?")
KEYWORDS = {
    "and",
    "or",
    "unless",
    "bool",
    "offset",
    "by",
    "without",
    "on",
    "ignoring",
    "group_left",
    "group_right",
    "inf",
    "nan",
}


def metric_names(expr: str) -> set[str]:
    """Every metric selector's name: identifiers that are not functions, keywords, label names in a
    grouping, label matchers, strings or range durations."""
    text = STRING.sub('""', expr)
    text = GROUPING.sub(" ", MATCHERS.sub(" ", RANGE.sub(" ", text)))
    return {name for name, call in IDENTIFIER.findall(text) if not call and name.lower() not in KEYWORDS}
