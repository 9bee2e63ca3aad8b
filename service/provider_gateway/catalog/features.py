"""What each provider kind does with each feature (features.toml), as data: the router refuses the
"refused" cells before dispatch, and docs/capabilities.md shows the same table (`markdown`)."""

from __future__ import annotations

import tomllib
from dataclasses import dataclass
from importlib import resources
from typing import Any

STATUSES = ("native", "emulated", "refused")


@dataclass(slots=True, frozen=True)
class Cell:
    status: str  # one of STATUSES
    how: str  # the wire field, the emulation, or why not

    @classmethod
    def parse(cls, text: str, where: str) -> Cell:
        status, _, how = text.partition(":")
        if status not in STATUSES or not how.strip():
            raise ValueError(f"{where}: a cell is 'native|emulated|refused: how', got {text!r}")
        return cls(status, how.strip())

    def __str__(self) -> str:
        return f"{self.status}: {self.how}"


class FeatureTable:
    def __init__(self, features: dict[str, str], rows: dict[str, dict[str, Cell]]) -> None:
        self.features = features  # key -> column title, in order
        self.rows = rows  # kind -> feature -> cell

    @classmethod
    def builtin(cls) -> FeatureTable:
        return cls.parse(tomllib.loads(resources.files(__package__).joinpath("features.toml").read_text()))

    @classmethod
    def parse(cls, data: dict[str, Any]) -> FeatureTable:
        features = {str(k): str(v) for k, v in data["features"].items()}
        raw: dict[str, dict[str, str]] = data["kinds"]
        rows: dict[str, dict[str, Cell]] = {}

        def row(kind: str, seen: tuple[str, ...] = ()) -> dict[str, str]:
            if kind in seen:
                raise ValueError(f"features.toml: {kind!r} is `like` itself")
            own = dict(raw[kind])
            base = row(own.pop("like"), (*seen, kind)) if "like" in own else {}
            return base | own

        for kind in raw:
            cells = row(kind)
            if unknown := set(cells) - set(features):
                raise ValueError(f"features.toml: {kind} has unknown features {sorted(unknown)}")
            if missing := [f for f in features if f not in cells]:
                raise ValueError(f"features.toml: {kind} lacks {missing}")
            rows[kind] = {f: Cell.parse(cells[f], f"features.toml {kind}.{f}") for f in features}
        return cls(features, rows)

    def cell(self, kind: str, feature: str) -> Cell | None:
        return self.rows.get(kind, {}).get(feature)

    def markdown(self) -> str:
        """The table as docs/capabilities.md shows it: a row per kind, a column per feature (the
        status, with the how of cells that emulate, on some models or all), then every cell's how,
        kind by kind."""
        header = ["provider kind", *self.features.values()]
        lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
        for kind, cells in self.rows.items():
            shown = [str(c) if "emulated" in str(c) else c.status for c in cells.values()]
            lines.append("| " + " | ".join([f"`{kind}`", *shown]) + " |")
        for kind, cells in self.rows.items():
            lines += ["", f"### `{kind}`", ""]
            lines += [f"- {self.features[f]}: {cell}" for f, cell in cells.items()]
        return "\n".join(lines) + "\n"


if __name__ == "__main__":  # regenerate docs/capabilities.md's table
    print(FeatureTable.builtin().markdown(), end="")
