"""Statement text -> sqlglot expression: the ``vista`` dialect (Spark SQL + vista_sql statements).

``dialect`` holds the public API (parse, parse_one, origin); ``expressions`` the tree classes.
"""
