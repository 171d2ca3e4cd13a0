"""One statement through ``vista_sql.execute``, its metrics and EXPLAIN ANALYZE printed as JSON.

The cluster tests' driver program, run as ``python cluster_script.py ...`` or by ``spark-submit``
(then without ``--master``: the submitted configuration names the master). The CNN is the tiny
test CNN, or a roster CNN with seeded random weights (``--cnn alexnet``).
"""

from __future__ import annotations

import argparse
import json
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--images", required=True)
    parser.add_argument("--table", required=True)
    parser.add_argument("--cache", required=True, help="where the tiny CNN is registered")
    parser.add_argument("--cnn", default="tiny")
    parser.add_argument("--layers", default="conv2, fc1, fc2")
    parser.add_argument("--master")
    parser.add_argument("--into")
    parser.add_argument("--with", dest="options", default="")
    args = parser.parse_args()

    import vista_sql

    cnn = args.cnn
    weights = "WEIGHTS RANDOM SEED 7"
    if cnn == "tiny":
        from tiny_cnn import register_tiny_cnn

        cnn = register_tiny_cnn(args.cache)
        weights = ""
    options = f" WITH ({args.options})" if args.options else ""
    into = f" INTO '{args.into}'" if args.into else ""
    sql = (
        f"TRANSFER FEATURES OF '{args.images}' AS i FROM CNN {cnn} {weights}"
        f" LAYERS ({args.layers}) JOIN '{args.table}' AS f ON i.id = f.id"
        " TRAIN LOGREG (max_iter = 10, reg_param = 0.1) LABEL healthy VALIDATE 0.25 SEED 2019"
        f"{options}{into}"
    )
    result = vista_sql.execute(sql, master=args.master, progress=False)
    from reliability_support import metric_rows

    metrics = metric_rows(result)
    print(
        "VISTA_RESULT "
        + json.dumps(
            {
                "metrics": metrics,
                "seconds": result.seconds,
                "explain": result.explain(),
                "analyze": json.loads(result.explain_json())["analyze"],
                "resources": json.loads(result.explain_json())["estimate"]["resources"],
                "store": result.store,
            },
            default=str,
        )
    )


if __name__ == "__main__":
    main()
