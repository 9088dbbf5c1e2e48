"""What a learner leaves behind and where it starts from: checkpoints of what it published,
and on start the newest valid one (else a configured initial model).

A restarted learner serves at once what it served before instead of waiting seconds for a
first fit; what it starts from is validated as a predictor validates a snapshot, so a corrupt
file, another robot's model or a refused initial model is reported and skipped, never served.
"""

from __future__ import annotations

from pathlib import Path
from typing import Callable, Sequence

from syrenets_ros.dynamics.urdf import RigidBodyRobot
from syrenets_ros.learning.rigid_body import RigidBodyModel
from syrenets_ros.online.serving import load_model_file
from syrenets_ros.online.snapshot import DecodedModel, SnapshotError, load_newest_checkpoint, save_checkpoint


class Checkpoints:
    """Checkpoints in ``directory`` ('' = none, the newest ``keep`` kept) and the
    ``initial_model`` file ('' = none), for a learner of ``joint_names``. Counts what it wrote
    and reports what it skipped or refused in ``stats`` (the learner's :class:`learner.Stats`)."""

    def __init__(self, directory: str, keep: int, initial_model: str, joint_names: Sequence[str], stats,
                 log: Callable[[str], None]) -> None:
        self.directory = directory
        self.keep = keep
        self.initial_model = initial_model
        self.joint_names = joint_names
        self.stats = stats
        self.log = log

    def save(self, version: int, payload: str) -> None:
        """Write a published snapshot, deleting the oldest beyond ``keep``."""
        save_checkpoint(Path(self.directory), f"model-{version:08d}.json", payload, keep=self.keep)
        self.stats.checkpoints_written += 1

    def starting_model(self, robot: RigidBodyRobot | None) -> tuple[DecodedModel, str] | None:
        """The newest valid checkpoint, else the initial model, with its source ("checkpoint" or
        "initial_model"); corrupt checkpoints and a refused initial model are reported and
        skipped, and a rigid-body model learned on another URDF than ``robot`` is not used."""
        decoded, source = None, "checkpoint"
        if self.directory:
            decoded, skipped = load_newest_checkpoint(Path(self.directory))
            for path, reason in skipped:
                self.stats.checkpoints_skipped.append(f"{Path(path).name}: {reason}")
                self.log(f"skipped corrupt checkpoint {path}: {reason}")
        if decoded is None and self.initial_model:
            decoded, source = self._initial_model(), "initial_model"
        if decoded is None:
            return None
        if isinstance(decoded.model, RigidBodyModel) and (robot is None or decoded.model.robot.digest != robot.digest):
            self.log(f"{source.replace('_', ' ')} v{decoded.model_version} not used: it was learned on another URDF "
                     f"(SHA-256 {decoded.model.robot.digest[:12]}…) than this learner's robot_description")
            return None
        return decoded, source

    def _initial_model(self) -> DecodedModel | None:
        """The initial model file, validated as the predictor validates a snapshot."""
        try:
            return load_model_file(self.initial_model, self.joint_names)
        except SnapshotError as exc:
            self.stats.initial_model_refused = str(exc)
            self.log(f"initial model refused, learning from scratch: {exc}")
            return None
