"""Trainable quantum embedding kernels with PennyLane."""
