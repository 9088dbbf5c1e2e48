"""User-facing commands: the CLI, bring-up without a ROS distro and its node table, the
demo and the online experiment with its report, parameter docs, and benchmarks."""
