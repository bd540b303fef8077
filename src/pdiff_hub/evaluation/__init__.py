"""Evaluation: metrics, the baselines of the memorization critique, a typed result and the report."""
