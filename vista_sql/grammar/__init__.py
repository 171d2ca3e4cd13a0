"""Statement text -> sqlglot expression: the vista dialect (Spark's, plus vista_sql's statements)."""
