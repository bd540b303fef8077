"""Evaluation: metrics, the baselines of the memorization critique, a typed result and the report.

``run.run_evaluation`` measures (``metrics``, ``baselines``, ``generation``, ``checks``) and decides
(``verdicts``) once, into an ``result.EvaluationResult``; ``report`` and ``figures`` only render it.
"""
