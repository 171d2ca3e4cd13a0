"""The chosen plan -> Spark DataFrame operations, run, and the results."""
