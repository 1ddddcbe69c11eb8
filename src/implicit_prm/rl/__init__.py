"""Implicit process rewards inside reinforcement learning.

- `advantages`: PRIME's maths as pure functions (token rewards, batch normalisation, RLOO baselines, returns,
  whitening, the accuracy filter, the PRM's loss and pairwise accuracy);
- `prime`: `PrimeTrainer`, PRIME on TRL's GRPOTrainer with the PRM updated online (needs `implicit-prm[rl]`);
- `reward`: `PRMReward`, a frozen PRM as a TRL reward function for plain GRPO.
"""
