"""package.xml, setup.py, the node table and the files on disk agree with each other."""

import configparser
import xml.etree.ElementTree as ET
from importlib import metadata
from pathlib import Path

from syrenets_ros.tools.graph import NODES

ROOT = Path(__file__).resolve().parent.parent
REQUIRED_DEPENDS = {"rclpy", "sensor_msgs", "std_msgs", "trajectory_msgs", "rosgraph_msgs",
                    "diagnostic_msgs", "rcl_interfaces"}
CONSOLE_SCRIPTS = {"pendulum_sim", "learner", "predictor", "syrenets-ros"}


def _package_xml() -> ET.Element:
    return ET.parse(ROOT / "package.xml").getroot()


def _console_scripts() -> dict[str, metadata.EntryPoint]:
    dist = metadata.distribution("syrenets_ros")
    return {ep.name: ep for ep in dist.entry_points if ep.group == "console_scripts"}


def test_package_xml_is_format3_ament_python_with_required_depends():
    root = _package_xml()
    assert root.get("format") == "3"
    assert root.findtext("name") == "syrenets_ros"
    assert root.find("export").findtext("build_type") == "ament_python"
    depends = {e.text for e in root.findall("depend")}
    assert REQUIRED_DEPENDS <= depends, REQUIRED_DEPENDS - depends
    assert root.findall("test_depend"), "test dependencies must be declared"


def test_installed_distribution_matches_package_xml():
    assert metadata.version("syrenets_ros") == _package_xml().findtext("version")


def test_console_scripts_exist_and_load():
    scripts = _console_scripts()
    assert set(scripts) == CONSOLE_SCRIPTS
    for entry_point in scripts.values():
        assert callable(entry_point.load()), entry_point


def test_node_table_matches_console_scripts():
    scripts = _console_scripts()
    for node in NODES:
        assert node.executable in scripts
        assert scripts[node.executable].module == node.module
    assert {n.name for n in NODES} == {"pendulum_sim", "syrenets_learner", "syrenets_predictor"}


def test_installed_data_files_exist_on_disk():
    assert (ROOT / "resource" / "syrenets_ros").is_file()
    assert (ROOT / "launch" / "syrenets.launch.py").is_file()
    assert (ROOT / "config" / "params.yaml").is_file()
    assert (ROOT / "urdf" / "double_pendulum.urdf.xacro").is_file()


def test_setup_cfg_uses_underscore_script_dir_keys():
    cfg = configparser.ConfigParser()
    cfg.read(ROOT / "setup.cfg")
    assert cfg["develop"]["script_dir"] == "$base/lib/syrenets_ros"
    assert cfg["install"]["install_scripts"] == "$base/lib/syrenets_ros"
