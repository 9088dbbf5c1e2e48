"""``syrenets-ros bench …``: commands that print measured numbers (speed, accuracy, pacing)."""
