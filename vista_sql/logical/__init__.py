"""sqlglot expression -> checked statement -> logical plan -> rewritten alternatives."""
