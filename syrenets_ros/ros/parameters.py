"""Declare a node's parameter table (:mod:`syrenets_ros.schema`) with ROS descriptors, so
``ros2 param describe`` shows each one's description, range and read-only flag, and check
run-time sets against the same table."""

from __future__ import annotations

from typing import Any

from rcl_interfaces.msg import FloatingPointRange, IntegerRange, ParameterDescriptor, SetParametersResult
from rclpy.node import Node
from rclpy.parameter import Parameter

from syrenets_ros.schema import NodeSchema, Param


def descriptor(param: Param) -> ParameterDescriptor:
    """ROS ranges apply to scalars only; an array's per-item range is in its description."""
    text = param.description + (f" [{param.unit}]" if param.unit else "")
    if param.range_text() and (param.choices or param.kind.endswith("_array")):
        text += f"; {param.range_text()}"
    result = ParameterDescriptor(description=text, read_only=param.read_only)
    if param.low is not None and param.high is not None:
        if param.kind == "integer":
            result.integer_range = [IntegerRange(from_value=int(param.low), to_value=int(param.high), step=1)]
        elif param.kind == "double":
            result.floating_point_range = [FloatingPointRange(from_value=float(param.low),
                                                              to_value=float(param.high))]
    return result


def declare_schema(node: Node, schema: NodeSchema) -> dict[str, Any]:
    """Declare every parameter of ``schema``; returns the start values (params file and
    overrides applied), checked against the table — a bad start value raises ValueError."""
    values = {}
    for param in schema:
        default = list(param.default) if isinstance(param.default, tuple) else param.default
        values[param.name] = node.declare_parameter(param.name, default, descriptor(param)).value
    return schema.check(values, running=False)


def check_set(schema: NodeSchema, parameters: list[Parameter]) -> tuple[dict[str, Any], SetParametersResult]:
    """The checked changes of a set-parameters request and the result to answer it with:
    refused with the reason when any value breaks the table (``use_sim_time`` passes through
    unchanged: rclpy owns it)."""
    changes = {p.name: p.value for p in parameters if p.name != "use_sim_time"}
    try:
        checked = schema.check(changes)
    except ValueError as error:
        return {}, SetParametersResult(successful=False, reason=str(error))
    return checked, SetParametersResult(successful=True)
