"""One statement over a CNN whose top layer's activations are large, its result printed as JSON,
for the re-plan test (``test_reliability_replan.py``), run in a process of its own (inside a
memory cgroup).

``--forced F`` multiplies every Python worker's memory estimate by F (< 1: a forced too-small
estimate, as a wrong memory model would make); the statement is the same either way.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import warnings

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

LAYERS = ("conv1", "wide")
WIDE_CHANNELS = 8192
"""wide: 8,192 channels at 32x32, 32 MiB of activations per image: a worker inferring it holds
far more than one inferring conv1, so that memory runs out in wide's branch, after conv1's
features are stored."""


def build_wide_top(seed: int = 0):  # type: ignore[no-untyped-def]
    """32x32 RGB -> conv1 (8 3x3) -> wide (8192 3x3) -> global max-pool -> fc (10)."""
    import keras

    def init(offset: int) -> keras.initializers.Initializer:
        return keras.initializers.GlorotUniform(seed=seed * 100 + offset)

    image = keras.Input(shape=(32, 32, 3), name="image")
    x = keras.layers.Conv2D(
        8, 3, padding="same", activation="relu", kernel_initializer=init(1), name="conv1"
    )(image)
    x = keras.layers.Conv2D(
        WIDE_CHANNELS, 3, padding="same", activation="relu", kernel_initializer=init(2),
        name="wide",
    )(x)  # fmt: skip
    x = keras.layers.GlobalMaxPooling2D(name="pool")(x)
    x = keras.layers.Dense(10, activation="softmax", kernel_initializer=init(3), name="fc")(x)
    return keras.Model(image, x, name="wide_top")


def statement(images: str, table: str, options: str) -> str:
    """The statement: both layers, lazily (a branch per layer, bottom first), WITH ``options``."""
    return (
        f"TRANSFER FEATURES OF '{images}' AS i FROM CNN wide_top"
        f" LAYERS ({', '.join(LAYERS)}) JOIN '{table}' AS f ON i.id = f.id"
        " TRAIN LOGREG (max_iter = 5) LABEL healthy VALIDATE 0.25 SEED 2019"
        f" WITH (inference = 'lazy', {options})"
    )


def register(cnn_dir: str) -> str:
    """Register the CNN from the file ``--register`` saved in ``cnn_dir``; returns its name."""
    import vista_sql

    vista_sql.register_cnn(
        "wide_top", os.path.join(cnn_dir, "wide_top.keras"), ["conv1", "wide", "fc"],
        preprocess="unit", cache_dir=cnn_dir,
    )  # fmt: skip
    return "wide_top"


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--images", required=True)
    parser.add_argument("--table", required=True)
    parser.add_argument("--cnn-dir", required=True, help="where the CNN is registered")
    parser.add_argument("--store", required=True, help="the feature store's directory")
    parser.add_argument("--forced", type=float, default=1.0)
    parser.add_argument("--master", default=None, help="vista_sql's own session's master")
    parser.add_argument("--register", action="store_true", help="register the CNN and exit")
    args = parser.parse_args()

    import vista_sql

    if args.register:
        build_wide_top().save(os.path.join(args.cnn_dir, "wide_top.keras"))
        return
    register(args.cnn_dir)  # in this process, as a user's script would
    # A calibration of a CPU whose larger batches are never slower per image (the shipped one
    # with tf_batch_slowdown_exponent 0): the first plan then takes the largest batch the forced
    # estimate lets fit (64), as the measured memory figures in the test assume.
    from importlib import resources

    from vista_sql.cost_model.constants import CALIBRATION_ENV

    shipped = json.loads(
        resources.files("vista_sql.cost_model").joinpath("calibration.json").read_text()
    )
    shipped["values"]["tf_batch_slowdown_exponent"] = 0.0
    flat = os.path.join(args.cnn_dir, "calibration.json")
    with open(flat, "w") as handle:
        json.dump(shipped, handle)
    os.environ[CALIBRATION_ENV] = flat
    if args.forced != 1.0:
        from vista_sql.cost_model import memory

        estimate = memory.worker_bytes

        def forced(*arguments, **keywords):  # type: ignore[no-untyped-def]
            return estimate(*arguments, **keywords) * args.forced

        memory.worker_bytes = forced  # type: ignore[assignment]
    sql = statement(args.images, args.table, f"cache = true, cache_dir = '{args.store}'")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        result = vista_sql.execute(sql, progress=False, master=args.master)
    from reliability_support import metric_rows

    metrics = metric_rows(result)
    print(
        "VISTA_RESULT "
        + json.dumps(
            {
                "metrics": metrics,
                "replanned": None if result.replanned is None else result.replanned.to_json(),
                "store": result.store,
                "plan": result.plan_choice,
                "explain": result.explain(),
                "warnings": [str(w.message) for w in caught],
            },
            default=str,
        )
    )


if __name__ == "__main__":
    main()
