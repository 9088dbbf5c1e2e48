"""Shared fixtures. Each pytest run gets its own DDS domain so concurrent runs on one
machine (developers, CI) never see each other's topics."""

from __future__ import annotations

import os
import random

os.environ.setdefault("ROS_DOMAIN_ID", str(random.Random(os.getpid()).randint(1, 100)))
os.environ.setdefault("ROS_AUTOMATIC_DISCOVERY_RANGE", "LOCALHOST")
# One intra-op thread per torch process: on a small machine shared by several processes,
# torch's default (one thread per core) spin-waits and ran a 40-step training test 200x
# slower (77 s vs 0.4 s) than a single thread. Read by torch when it is first imported.
os.environ.setdefault("OMP_NUM_THREADS", "1")

import pytest  # noqa: E402


@pytest.fixture
def ros_context():
    """An initialised rclpy context of its own, shut down after the test."""
    import rclpy
    from rclpy.context import Context

    context = Context()
    rclpy.init(context=context)
    try:
        yield context
    finally:
        context.try_shutdown()
