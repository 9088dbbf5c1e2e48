"""ament_python package: builds with colcon on a ROS 2 distro, installs with pip without one."""

from glob import glob

from setuptools import find_packages, setup

PACKAGE = "syrenets_ros"

setup(
    name=PACKAGE,
    version="0.1.0",
    packages=find_packages(exclude=["test"]),
    data_files=[
        ("share/ament_index/resource_index/packages", [f"resource/{PACKAGE}"]),
        (f"share/{PACKAGE}", ["package.xml"]),
        (f"share/{PACKAGE}/launch", glob("launch/*.launch.py")),
        (f"share/{PACKAGE}/config", glob("config/*.yaml")),
        (f"share/{PACKAGE}/urdf", glob("urdf/*.xacro")),
    ],
    install_requires=["setuptools"],
    zip_safe=True,
    maintainer="syrenets_ros maintainers",
    maintainer_email="maintainers@syrenets-ros.dev",
    description="Online symbolic learning of robot dynamics (SyReNet) with ROS 2.",
    license="Apache-2.0",
    python_requires=">=3.10",
    extras_require={"test": ["pytest"]},
    entry_points={
        "console_scripts": [
            "pendulum_sim = syrenets_ros.ros.sim_node:main",
            "learner = syrenets_ros.ros.learner_node:main",
            "predictor = syrenets_ros.ros.predictor_node:main",
            "syrenets-ros = syrenets_ros.tools.cli:main",
        ],
    },
)
