"""Declarative node parameters: one table per node is the single source of every parameter's
type, default, range, mutability and description.

The ROS adapter (``syrenets_ros.ros.parameters``) declares a table with descriptors and
validates run-time sets through it; the core reads its defaults from it; the README's
parameter tables are generated from it (``syrenets-ros params --markdown``) and a test holds
``config/params.yaml`` and the README to it. No ROS import here.
"""

from __future__ import annotations

import array
import math
from dataclasses import dataclass
from typing import Any, Iterator, Mapping

Value = bool | int | float | str | tuple


@dataclass(frozen=True)
class Param:
    """One parameter. ``low``/``high`` bound a number, or each item of a number array;
    ``length`` fixes an array's length; ``choices`` restrict a string."""

    name: str
    default: Value
    description: str
    unit: str = ""
    low: float | None = None
    high: float | None = None
    read_only: bool = False
    choices: tuple[str, ...] = ()
    length: int | None = None

    @property
    def kind(self) -> str:
        """bool | integer | double | string | double_array | integer_array | string_array."""
        return _kind(self.default)

    def check(self, value: Any) -> Value:
        """``value`` converted to this parameter's type, or ValueError saying why not."""
        kind = self.kind
        if kind.endswith("_array"):
            if not isinstance(value, (list, tuple, array.array)):
                raise ValueError(f"{self.name} must be a list ({kind}), got {value!r}")
            items = tuple(self._item(kind[:-len("_array")], v) for v in value)
            if self.length is not None and len(items) != self.length:
                raise ValueError(f"{self.name} needs {self.length} values, got {len(items)}")
            return items
        return self._item(kind, value)

    def _item(self, kind: str, value: Any) -> Value:
        if kind == "bool":
            if not isinstance(value, bool):
                raise ValueError(f"{self.name} must be true or false, got {value!r}")
            return value
        if kind == "string":
            if not isinstance(value, str):
                raise ValueError(f"{self.name} must be a string, got {value!r}")
            if self.choices and value not in self.choices:
                raise ValueError(f"{self.name} must be one of {list(self.choices)}, got {value!r}")
            return value
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ValueError(f"{self.name} must be a number, got {value!r}")
        if kind == "integer" and not isinstance(value, int):
            raise ValueError(f"{self.name} must be an integer, got {value!r}")
        if not math.isfinite(value):
            raise ValueError(f"{self.name} must be finite, got {value!r}")
        if (self.low is not None and value < self.low) or (self.high is not None and value > self.high):
            raise ValueError(f"{self.name} must be in {self.range_text()}, got {value!r}")
        return int(value) if kind == "integer" else float(value)

    def range_text(self) -> str:
        if self.choices:
            return " | ".join(self.choices)
        if self.low is None and self.high is None:
            return ""
        text = f"[{_number(self.low)}, {_number(self.high)}]"
        return text + " each" if self.kind.endswith("_array") else text


def _number(value: float | None) -> str:
    """Integers in full (2147483647, not 2.15e+09), other numbers short."""
    if value is None:
        return "-∞"
    return str(int(value)) if float(value).is_integer() and abs(value) < 1e12 else f"{value:g}"


def _kind(value: Value) -> str:
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, int):
        return "integer"
    if isinstance(value, float):
        return "double"
    if isinstance(value, str):
        return "string"
    if isinstance(value, tuple) and value:
        return _kind(value[0]) + "_array"
    raise TypeError(f"unsupported parameter default {value!r}")


class NodeSchema:
    """The parameter table of one node (name = the ROS node name = the params.yaml section)."""

    def __init__(self, node: str, params: tuple[Param, ...]) -> None:
        self.node = node
        self._params = {p.name: p for p in params}
        if len(self._params) != len(params):
            raise ValueError(f"{node}: duplicate parameter names")
        for p in params:
            p.check(p.default)  # a default outside its own range is a programming error

    def __iter__(self) -> Iterator[Param]:
        return iter(self._params.values())

    def __contains__(self, name: object) -> bool:
        return name in self._params

    def __getitem__(self, name: str) -> Param:
        return self._params[name]

    def default(self, name: str) -> Any:
        """A default as the core uses it (arrays as tuples)."""
        return self._params[name].default

    def defaults(self) -> dict[str, Value]:
        return {p.name: p.default for p in self}

    def check(self, changes: Mapping[str, Any], *, running: bool = True) -> dict[str, Value]:
        """Each change converted and range-checked; ValueError names the first bad one. With
        ``running``, read-only parameters are refused."""
        checked = {}
        for name, value in changes.items():
            if name not in self._params:
                raise ValueError(f"{self.node} has no parameter {name!r}")
            param = self._params[name]
            if running and param.read_only:
                raise ValueError(f"{name} is read-only once {self.node} runs")
            checked[name] = param.check(value)
        return checked

    def markdown(self) -> str:
        """The README table of this node's parameters."""
        rows = ["| parameter | type | default | range | unit | description |",
                "|---|---|---|---|---|---|"]
        for p in self:
            default = literal(p.default)
            note = " (read-only)" if p.read_only else ""
            cells = (f"`{p.name}`", p.kind, f"`{default}`", p.range_text(), p.unit, p.description + note)
            rows.append("| " + " | ".join(c.replace("|", "\\|") for c in cells) + " |")
        return "\n".join(rows)


def literal(value: object) -> str:
    """A value as it is written in params.yaml (and on a ``-p name:=value`` command line)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(literal(v) for v in value) + "]"
    if isinstance(value, str):
        return repr(value) if value == "" else value
    return repr(value)
