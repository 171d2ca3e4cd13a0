"""Logical alternatives + catalog + data statistics + resources -> estimates and the chosen plan.

Pure Python: imports neither Spark nor TensorFlow.
"""
