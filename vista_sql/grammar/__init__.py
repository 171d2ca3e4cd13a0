"""Statement text -> sqlglot expression: the ``vista`` dialect (Spark SQL + vista_sql statements).

``dialect`` holds the public API (parse, parse_one, origin); ``expressions`` the tree classes.

Modules, in import order (each imports only those before it): ``expressions`` (the tree classes)
-> ``parser`` (tokens -> trees), ``generator`` (trees -> text) -> ``dialect`` (the ``vista``
dialect that joins them). Importing the package imports ``dialect``, which registers ``vista``
with sqlglot: the tree classes write themselves in it by name.
"""

from vista_sql.grammar import dialect as dialect
