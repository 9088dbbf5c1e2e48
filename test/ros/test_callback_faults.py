"""run_node over real DDS: an exception escaping a callback is logged and counted on
/diagnostics, and the node keeps serving (before issue 12 a raising callback ended the node)."""

import signal
import subprocess
import sys
import textwrap

from diagnostic_msgs.msg import DiagnosticArray
from rclpy.node import Node
from ros_helpers import Collector, spinning, wait_until
from std_msgs.msg import String

# A real node whose message callback always raises; its diagnostics timer shows it is alive.
FRAGILE_NODE = textwrap.dedent('''
    from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus
    from rclpy.node import Node
    from std_msgs.msg import String

    from syrenets_ros.ros import common as rc


    class Fragile(Node):
        def __init__(self):
            super().__init__("fragile")
            self.ticks = 0
            self.diagnostics = self.create_publisher(DiagnosticArray, rc.DIAGNOSTICS, 10)
            self.create_subscription(String, "fragile/input", self.on_input, 10)
            self.create_timer(0.2, self.tick, clock=rc.steady_clock())

        def on_input(self, msg):
            raise RuntimeError(f"cannot handle {msg.data!r}")

        def tick(self):
            self.ticks += 1
            rc.publish_diagnostics(self, self.diagnostics, "fragile", DiagnosticStatus.OK, "alive",
                                   {"ticks": self.ticks})


    rc.run_node(Fragile)
''')


def test_a_raising_callback_is_logged_counted_and_the_node_keeps_running(ros_context):
    process = subprocess.Popen([sys.executable, "-c", FRAGILE_NODE], stdout=subprocess.PIPE,
                               stderr=subprocess.STDOUT, text=True)
    node = Node("fault_injector", context=ros_context)
    diagnostics = Collector(node, DiagnosticArray, "/diagnostics")
    publisher = node.create_publisher(String, "fragile/input", 10)
    try:
        with spinning(ros_context, node):
            assert wait_until(lambda: publisher.get_subscription_count() >= 1 and diagnostics.newest_status("fragile"), 60.0)
            for _ in range(3):
                publisher.publish(String(data="boom"))
            assert wait_until(lambda: diagnostics.newest_status("fragile").get("callback_errors") == "3", 20.0), diagnostics.newest_status("fragile")
            ticks = int(diagnostics.newest_status("fragile")["ticks"])
            assert wait_until(lambda: int(diagnostics.newest_status("fragile")["ticks"]) > ticks + 2, 10.0), "still serving"
            assert process.poll() is None
    finally:
        node.destroy_node()
        process.send_signal(signal.SIGINT)
        output, _ = process.communicate(timeout=30)
    assert process.returncode == 0, output
    assert "RuntimeError: cannot handle 'boom'" in output and "keeps running" in output
