"""The architecture holds: only ``syrenets_ros/ros/`` needs ROS, tests mirror the package's
folders, and each node's one parameter table agrees with config/params.yaml and the README."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import yaml

from syrenets_ros.tools.params import README_BEGIN, README_END, markdown, node_schemas

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "syrenets_ros"
ROS_PACKAGES = ("rclpy", "rcl_interfaces", "builtin_interfaces", "sensor_msgs", "std_msgs", "trajectory_msgs",
                "rosgraph_msgs", "diagnostic_msgs", "ament_index_python")


def _modules_outside_ros() -> list[str]:
    modules = []
    for path in sorted(PACKAGE.rglob("*.py")):
        relative = path.relative_to(ROOT).with_suffix("")
        if relative.parts[1] == "ros":
            continue
        modules.append(".".join(relative.parts[:-1] if relative.name == "__init__" else relative.parts))
    return modules


def test_only_the_ros_folder_imports_ros():
    """Import every module outside ros/ in a fresh interpreter where rclpy and the message
    packages cannot be imported: any module that needs ROS fails the import."""
    modules = _modules_outside_ros()
    assert len(modules) > 20
    script = f"""
import importlib, importlib.abc, sys
BLOCKED = {ROS_PACKAGES!r}
class Block(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in BLOCKED:
            raise ImportError(f"{{name}} is blocked: this module must not need ROS")
sys.meta_path.insert(0, Block())
failures = []
for module in {modules!r}:
    try:
        importlib.import_module(module)
    except Exception as error:
        failures.append(f"{{module}}: {{error!r}}")
print("\\n".join(failures))
sys.exit(1 if failures else 0)
"""
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stdout + result.stderr


def test_the_blocker_catches_a_module_that_needs_ros():
    """The isolation test above can fail: the same blocker refuses a ROS module."""
    script = ("import importlib.abc, sys\n"
              "class B(importlib.abc.MetaPathFinder):\n"
              "    def find_spec(self, name, path=None, target=None):\n"
              "        if name.split('.')[0] == 'rclpy': raise ImportError('blocked')\n"
              "sys.meta_path.insert(0, B())\n"
              "import syrenets_ros.ros.common\n")
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert result.returncode != 0 and "blocked" in result.stderr


def test_tests_mirror_the_package_folders():
    subpackages = {p.name for p in PACKAGE.iterdir() if p.is_dir() and (p / "__init__.py").is_file()}
    test_folders = {p.name for p in (ROOT / "test").iterdir() if p.is_dir() and not p.name.startswith((".", "_"))}
    assert test_folders <= subpackages, test_folders - subpackages
    assert {"dynamics", "learning", "online", "plant", "ros", "tools"} <= test_folders


def test_params_yaml_holds_exactly_the_schema_defaults():
    """config/params.yaml lists every declared parameter with its default: one source, no drift."""
    params = yaml.safe_load((ROOT / "config" / "params.yaml").read_text())
    schemas = {schema.node: schema for schema in node_schemas()}
    assert set(params) == set(schemas)
    for node, schema in schemas.items():
        values = dict(params[node]["ros__parameters"])
        values.pop("use_sim_time", None)  # rclpy's own parameter
        assert set(values) == {p.name for p in schema}, (node, set(values) ^ {p.name for p in schema})
        checked = schema.check(values, running=False)
        for name, value in checked.items():
            assert value == schema.default(name), f"{node}.{name}: params.yaml {value!r} != schema {schema.default(name)!r}"


def test_readme_parameter_tables_are_generated_from_the_schema():
    readme = (ROOT / "README.md").read_text()
    start, end = readme.index(README_BEGIN), readme.index(README_END) + len(README_END)
    assert readme[start:end] == markdown(), "README tables differ: paste `syrenets-ros params --markdown`"


def test_a_schema_refuses_bad_values_with_a_reason():
    sim = node_schemas()[0]
    for changes, reason in (({"link2_mass": -1.0}, "must be in"), ({"measurement_noise": [1.0]}, "needs 3 values"),
                            ({"kd": [1.0, float("nan")]}, "finite"), ({"time_step": 0.002}, "read-only"),
                            ({"nope": 1}, "no parameter"), ({"feedforward_enabled": 1}, "true or false")):
        try:
            sim.check(changes)
        except ValueError as error:
            assert reason in str(error), (changes, error)
        else:
            raise AssertionError(f"{changes} accepted")
