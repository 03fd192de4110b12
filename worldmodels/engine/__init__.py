"""Rollouts: env workers + one batched policy (see rollout.py)."""
