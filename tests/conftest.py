"""Shared pytest setup. Append your fixtures; do not rewrite others'."""

from __future__ import annotations

import os

# The rule driver proves, under tests, that fixed-point batches converge and Once batches are
# idempotent (vista_sql.logical.driver.strict_default).
os.environ.setdefault("VISTA_SQL_STRICT_RULES", "1")
