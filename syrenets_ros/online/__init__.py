"""Learning on a stream and serving what was learned: sample assembly, replay buffer, change
detection, coefficient tracking, the online learner, snapshots/checkpoints and the model
server. No ROS: the nodes in ``syrenets_ros.ros`` adapt this to topics."""
