"""``syrenets-ros set NAME=VALUE ...``: change node parameters at run time without the ros2 CLI.

One assignment calls the node's standard ``set_parameters`` service, exactly what
``ros2 param set /pendulum_sim link2_mass 2.0`` calls. Several assignments go in one
``set_parameters_atomically`` request (the other standard service): all or nothing, so a
mass and a length swap together at the same step boundary. Values are
parsed as YAML like ``ros2 param set`` does; as a convenience an integer (or a list of
integers) given for a parameter the node declares as double is sent as a double, and
``nan``/``inf`` are sent as doubles so the node, not this tool, judges them.
"""

from __future__ import annotations

import argparse
import itertools
import math
import os
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import yaml

DEFAULT_NODE = "/pendulum_sim"
_CALLS = itertools.count()


@dataclass(frozen=True)
class SetResult:
    name: str
    value: Any
    successful: bool
    reason: str


class ParameterServiceError(RuntimeError):
    """The node's parameter services did not answer in time."""


def parse_assignment(text: str) -> tuple[str, Any]:
    """``name=value`` → (name, YAML-parsed value); ValueError with a reason otherwise."""
    name, sep, raw = text.partition("=")
    name = name.strip()
    if not sep or not name:
        raise ValueError(f"expected NAME=VALUE, got {text!r}")
    try:
        value = yaml.safe_load(raw) if raw.strip() else ""
    except yaml.YAMLError as error:
        raise ValueError(f"cannot parse the value of {name}: {error}") from error
    return name, value


def _coerce(value: Any, declared_type: int) -> Any:
    """Send what the user meant: 2 for a double parameter is 2.0, 'nan' is float('nan')."""
    from rcl_interfaces.msg import ParameterType

    def as_double(v: Any) -> Any:
        if isinstance(v, int) and not isinstance(v, bool):
            return float(v)
        if isinstance(v, str) and v.strip().lower().lstrip("+-") in ("nan", "inf", "infinity"):
            return float(v)
        return v

    if declared_type == ParameterType.PARAMETER_DOUBLE:
        return as_double(value)
    if declared_type == ParameterType.PARAMETER_DOUBLE_ARRAY and isinstance(value, list):
        return [as_double(v) for v in value]
    return value


def set_parameters(
    assignments: Mapping[str, Any],
    node_name: str = DEFAULT_NODE,
    timeout: float = 10.0,
    context: Any = None,
) -> list[SetResult]:
    """Set parameters of a running node through its parameter services; one result each
    (several assignments: one atomic request, so they share its result).

    The request goes out from a short-lived node of its own in ``context`` (an rclpy Context;
    None = the default one), so callers need not spin anything. Raises ParameterServiceError
    when the services do not answer within ``timeout``, and ValueError for a value no ROS
    parameter can hold.
    """
    from rclpy.executors import SingleThreadedExecutor
    from rclpy.node import Node
    from rclpy.parameter import Parameter
    from rclpy.parameter_client import AsyncParameterClient

    node = Node(f"syrenets_param_cli_{os.getpid()}_{next(_CALLS)}", context=context,
                start_parameter_services=False, enable_rosout=False)
    executor = SingleThreadedExecutor(context=node.context)
    executor.add_node(node)
    try:
        client = AsyncParameterClient(node, node_name)
        if not client.wait_for_services(timeout_sec=timeout):
            raise ParameterServiceError(
                f"no parameter services of {node_name} within {timeout:g} s")
        names = list(assignments)

        def call(future: Any, what: str) -> Any:
            executor.spin_until_future_complete(future, timeout_sec=timeout)
            if not future.done() or future.result() is None:
                raise ParameterServiceError(f"{what} on {node_name} timed out after {timeout:g} s")
            return future.result()

        types = call(client.get_parameter_types(names), "get_parameter_types").types
        parameters = []
        for name, declared_type in zip(names, types):
            value = _coerce(assignments[name], declared_type)
            try:
                parameters.append(Parameter(name, value=value))
            except TypeError as error:
                raise ValueError(
                    f"{name}: {value!r} is not a ROS parameter value ({error})") from error
        if len(parameters) == 1:
            results = call(client.set_parameters(parameters), "set_parameters").results
        else:
            shared = call(client.set_parameters_atomically(parameters),
                          "set_parameters_atomically").result
            results = [shared] * len(parameters)
        return [SetResult(p.name, p.value, r.successful, r.reason)
                for p, r in zip(parameters, results)]
    finally:
        executor.shutdown()
        node.destroy_node()


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("assignments", nargs="+", metavar="NAME=VALUE",
                        help="e.g. link2_mass=2.0 link2_length=1.2")
    parser.add_argument("--node", default=DEFAULT_NODE,
                        help=f"target node (default {DEFAULT_NODE})")
    parser.add_argument("--timeout", type=float, default=10.0,
                        help="seconds to wait for the node's parameter services and each "
                             "answer (default 10; discovery is slow on a loaded machine)")


def run(args: argparse.Namespace) -> int:
    """Exit 0 when every value was accepted, 1 on any refusal, 2 on bad input or no answer."""
    try:
        assignments = dict(parse_assignment(text) for text in args.assignments)
    except ValueError as error:
        print(f"error: {error}")
        return 2
    if not (math.isfinite(args.timeout) and args.timeout > 0):
        print(f"error: --timeout must be > 0, got {args.timeout}")
        return 2
    import rclpy
    from rclpy.context import Context

    context = Context()
    rclpy.init(context=context)
    try:
        results = set_parameters(assignments, args.node, args.timeout, context)
    except (ParameterServiceError, ValueError) as error:
        print(f"error: {error}")
        return 2
    finally:
        context.try_shutdown()
    for result in results:
        if result.successful:
            print(f"{args.node} {result.name} = {result.value!r}: set")
        else:
            print(f"{args.node} {result.name} = {result.value!r}: refused: {result.reason}")
    return 0 if all(r.successful for r in results) else 1
