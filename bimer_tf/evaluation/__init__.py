"""Evaluation: metrics and reports, evaluating a run or an export, cross-validation.

    metrics.py   UA / WA / macro-F1 / per-class report, confusion figures, eval.json
    evaluate.py  a run or an export on any manifest, with label maps (`python -m bimer_tf.evaluate`)
    crossval.py  every fold of a splits file, resumable (`python -m bimer_tf.crossval`)
"""
