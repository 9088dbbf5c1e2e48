"""Locate the installed (or source-tree) launch/, config/ and urdf/ folders."""

from __future__ import annotations

import sys
from pathlib import Path

PACKAGE = "syrenets_ros"


def share_dir() -> Path:
    """The package's share folder: ament index (colcon), the source tree, or the pip prefix."""
    try:
        from ament_index_python.packages import PackageNotFoundError, get_package_share_directory

        try:
            return Path(get_package_share_directory(PACKAGE))
        except (PackageNotFoundError, KeyError, LookupError, OSError):  # OSError: no AMENT_PREFIX_PATH
            pass
    except ImportError:
        pass
    source_tree = Path(__file__).resolve().parent.parent
    if (source_tree / "package.xml").is_file():
        return source_tree
    installed = Path(sys.prefix) / "share" / PACKAGE
    if installed.is_dir():
        return installed
    raise FileNotFoundError(f"cannot find the {PACKAGE} share folder (config/, urdf/, launch/)")


def params_file() -> Path:
    """The one parameters YAML every way of starting the graph uses."""
    return share_dir() / "config" / "params.yaml"


def urdf_xacro() -> Path:
    return share_dir() / "urdf" / "double_pendulum.urdf.xacro"
