"""Names of the columns inference adds to a DataFrame (no Spark or TensorFlow needed)."""

from __future__ import annotations

import re

from vista_sql.logical.plan import LayerOut

ERROR_COLUMN = "_error"
"""Null when a row's input was fine; otherwise why it has no outputs (a bad image, say)."""

_PREFIX = {"features": "f", "activation": "act", "resume": "resume"}


def output_column(out: LayerOut) -> str:
    """The column holding ``out``: ``f_fc6`` (features), ``act_conv5`` (full activation),
    ``resume_conv5`` (the tensor stored to resume from conv5). Characters other than letters,
    digits and ``_`` in a layer name become ``_``."""
    return f"{_PREFIX[out.form]}_{re.sub(r'[^0-9A-Za-z_]', '_', out.layer)}"
