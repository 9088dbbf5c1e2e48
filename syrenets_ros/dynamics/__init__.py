"""Physics and numerics: the Euler–Lagrange operator, the ground-truth pendulum, and the
integrators that roll a Lagrangian forward. No ROS, no learning."""
