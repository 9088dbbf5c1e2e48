"""Learning a Lagrangian from torques: the SyReNet, its training, the term grammar and
library, sparse regression onto it, the paper's baselines, and safe payload primitives. No ROS."""
