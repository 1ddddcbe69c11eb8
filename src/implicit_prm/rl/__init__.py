"""Implicit process rewards inside reinforcement learning: PRIME's maths (`advantages`)."""
