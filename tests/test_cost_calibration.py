"""The user's calibration file (``vista-sql calibrate``): used over the shipped one, checked before
use (never trusted unchecked), named by EXPLAIN with the machine it came from."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from cost_support import decide, statement

from vista_sql.cost_model.constants import (
    CALIBRATION_ENV,
    CostConstants,
    _calibration,
    calibration_status,
    constants,
    reload_calibration,
    write_calibration,
)
from vista_sql.cost_model.explain import explain_json, explain_text
from vista_sql.cost_model.machine import this_machine
from vista_sql.errors import CalibrationError

SQL = statement()


@pytest.fixture
def user_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """``$VISTA_SQL_CALIBRATION`` pointing at a file of this test's (not yet written)."""
    path = tmp_path / "calibration.json"
    monkeypatch.setenv(CALIBRATION_ENV, str(path))
    reload_calibration()
    yield path
    monkeypatch.undo()
    reload_calibration()


def shipped() -> dict[str, Any]:
    document = _calibration()
    assert document is not None and document["path"] is None, "the tests use the shipped file"
    return {k: v for k, v in document.items() if k != "path"}


def raise_constants(**more: float) -> None:
    """Write the shipped calibration with each named constant raised by its amount."""
    document = shipped()
    current = constants()
    values = {name: getattr(current, name) + amount for name, amount in more.items()}
    write_calibration({**document, "values": {**document["values"], **values}})


def inference_seconds(decision: Any) -> float:
    steps = dict(decision.chosen.runtime.by_step())
    value = steps["inference"].value
    assert value is not None
    return float(value)


def test_the_shipped_calibration_is_used_without_a_user_file() -> None:
    status = calibration_status()
    assert status.source == "shipped" and status.path is None
    assert "shipped with vista_sql" in explain_text(decide(SQL))


def test_a_user_calibration_overrides_the_shipped_one_and_explain_names_it(
    user_file: Path,
) -> None:
    before = decide(SQL)
    document = shipped()
    slower = document["values"]["inference_flops_per_core"] / 4
    document = {
        **document,
        "machine": this_machine(),
        "measured_at": "2026-12-07",
        "values": {**document["values"], "inference_flops_per_core": slower},
    }
    write_calibration(document)
    assert json.loads(user_file.read_text())["values"]["inference_flops_per_core"] == slower
    assert constants().inference_flops_per_core == slower
    after = decide(SQL)
    # a quarter of the FLOP rate: the inference estimate grows (its fixed per-call costs do not)
    assert inference_seconds(after) > 2.5 * inference_seconds(before)
    text = explain_text(after)
    line = next(line for line in text.splitlines() if line.startswith("calibration  "))
    assert "this machine, 2026-12-07" in line and str(user_file) in line
    assert "another machine" not in line
    calibration = explain_json(after)["estimate"]["calibration"]
    assert calibration["source"] == "user" and calibration["this_machine"] is True


def test_a_calibration_from_another_machine_is_flagged(user_file: Path) -> None:
    elsewhere = {**this_machine(), "cpu": "Some Other CPU", "cpu_flags": ["avx512f"]}
    write_calibration({**shipped(), "machine": elsewhere, "measured_at": "2026-01-02"})
    line = next(
        line for line in explain_text(decide(SQL)).splitlines() if line.startswith("calibration")
    )
    assert "Some Other CPU (avx512f)" in line
    assert "measured on another machine" in line and "vista-sql calibrate" in line
    assert calibration_status().this_machine is False


@pytest.mark.parametrize(
    ("content", "problem"),
    [
        (b"{not json", "is not JSON"),
        (b"[1, 2]", "is not a JSON object"),
        (b'{"machine": "x"}', "has no 'values' object"),
        (b'{"values": {"rm_rf": 1.0}}', "unknown constant 'rm_rf'"),
        (b'{"values": {"inference_flops_per_core": "fast"}}', "not a number"),
        (b'{"values": {"inference_flops_per_core": true}}', "not a number"),
        (b'{"values": {"inference_flops_per_core": -1}}', "not a finite non-negative"),
        (b'{"values": {"inference_flops_per_core": NaN}}', "not a finite non-negative"),
        (b'{"values": {"inference_flops_per_core": Infinity}}', "not a finite non-negative"),
        (b"\xff\xfe", "is not JSON"),
        (b'{"values": {}, "pad": "' + b"x" * (1 << 20) + b'"}', "larger than 1 MiB"),
    ],
)
def test_a_bad_calibration_file_is_refused_naming_the_file(
    user_file: Path, content: bytes, problem: str
) -> None:
    user_file.write_bytes(content)
    with pytest.raises(CalibrationError) as raised:
        decide(SQL)
    message = str(raised.value)
    assert str(user_file) in message and problem in message
    assert "vista-sql calibrate" in message or "larger" in message or "JSON" in message


def test_writing_checks_first_and_leaves_no_partial_file(user_file: Path) -> None:
    with pytest.raises(CalibrationError, match="not a finite"):
        write_calibration({"values": {"inference_flops_per_core": math.inf}})
    assert not user_file.exists()
    assert list(user_file.parent.iterdir()) == []
    write_calibration(shipped())
    assert [p.name for p in user_file.parent.iterdir()] == [user_file.name]


def test_the_command_line_offers_calibrate() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "vista_sql.cli", "calibrate", "--help"],
        capture_output=True,
        text=True,
        check=True,
    )
    assert "--out" in done.stdout and "calibration.json" in done.stdout


def test_a_measured_cnn_efficiency_scales_that_cnns_inference_only(user_file: Path) -> None:
    alexnet = statement(cnn="alexnet", layers="fc7, fc8")
    resnet = statement(cnn="resnet50", layers="conv5_3, fc6")
    before = (inference_seconds(decide(alexnet, "alexnet")), decide(resnet, "resnet50"))
    document = shipped()
    write_calibration({**document, "values": {**document["values"], "tf_efficiency_alexnet": 0.5}})
    # half ResNet50's FLOP rate: AlexNet's TensorFlow time doubles (Arrow and calls do not)
    assert inference_seconds(decide(alexnet, "alexnet")) > 1.6 * before[0]
    assert inference_seconds(decide(resnet, "resnet50")) == inference_seconds(before[1])


@pytest.mark.tf
def test_calibrate_true_profiles_the_statements_own_images_and_cnn(
    tmp_path: Path, tiny: str
) -> None:
    """WITH (calibrate = true): the statement's CNN timed to its top layer and a sample of its
    images decoded, in a fresh interpreter, before planning; EXPLAIN says what was measured,
    and the estimate is made with it."""
    import vista_sql
    from vista_sql.datasets.foods import make_foods
    from vista_sql.physical.profile import SAMPLE_IMAGES

    data = make_foods(tmp_path / "foods", rows=SAMPLE_IMAGES + 2, seed=1, image_size=48)
    sql = (
        f"TRANSFER FEATURES OF '{data.images_dir}' AS i FROM CNN {tiny} LAYERS (conv2, fc1)"
        f" JOIN '{data.table_path}' AS f ON i.id = f.id TRAIN LOGREG LABEL healthy"
    )
    plain = json.loads(vista_sql.explain(f"EXPLAIN FORMAT JSON {sql}"))
    assert plain["estimate"]["calibration"]["profiled"] is None
    text = vista_sql.explain(f"EXPLAIN {sql} WITH (calibrate = true)")
    (line,) = [x for x in text.splitlines() if x.startswith("profiled ")]
    assert f"this statement's sample ({SAMPLE_IMAGES} images" in line
    assert "ns/byte" in line and f"{tiny} " in line and "GFLOP/s per core" in line
    profiled = json.loads(vista_sql.explain(f"EXPLAIN FORMAT JSON {sql} WITH (calibrate = true)"))
    profile = profiled["estimate"]["calibration"]["profiled"]
    assert profile["cnn"] == tiny and profile["images"] == SAMPLE_IMAGES
    values = profile["values"]
    assert 0 < values["inference_flops_per_core"] != constants().inference_flops_per_core
    assert 0 < values["decode_seconds_per_jpeg_byte"] != constants().decode_seconds_per_jpeg_byte
    assert profiled["estimate"]["seconds"] != plain["estimate"]["seconds"]


def train_seconds(decision: Any) -> float:
    steps = dict(decision.chosen.runtime.by_step())
    value = steps["train"].value
    assert value is not None
    return float(value)


def test_each_mllib_iteration_and_fit_pays_its_calibrated_overhead(user_file: Path) -> None:
    """Training is charged ``mllib_iteration_seconds`` per iteration of every fit and
    ``mllib_fit_seconds`` per fit: one more second of each adds max_iter + 1 seconds to each
    layer's fit (the same plan chosen)."""
    sql = statement(model="LOGREG (max_iter = 10)")
    before = decide(sql)
    raise_constants(mllib_iteration_seconds=1.0, mllib_fit_seconds=1.0)
    after = decide(sql)
    assert after.chosen.alternative == before.chosen.alternative
    layers = len(after.chosen.plan.branches)
    added = train_seconds(after) - train_seconds(before)
    assert added == pytest.approx(11 * layers, rel=0.05)


def test_the_spark_profile_becomes_the_runtime_models_spark_constants() -> None:
    """``physical.profile.spark_constants``: fixed costs as measured; per-byte rates from the
    large table's time less the tiny one's (less the plain scan's), per byte and per core; the
    Arrow identity counts every byte twice (to the worker and back)."""
    from vista_sql.physical.profile import spark_constants

    mib = 2**20
    measured = {
        "slots": 2,
        "job_seconds": 0.2,
        "task_seconds": 0.01,
        "python_task_seconds": 0.04,
        "mllib_partitions": 4,
        "data_bytes": 32 * mib,
        "seconds": {
            "scan": {"large": 0.5, "tiny": 0.2},
            "arrow": {"large": 1.5, "tiny": 0.4},
            "shuffle": {"large": 0.9, "tiny": 0.3},
        },
        "first_fit_seconds": 3.5,
        "fit_2_seconds": 1.0,
        "fit_12_seconds": 2.5,
    }
    values = spark_constants(measured)
    assert values["job_overhead_seconds"] == 0.2
    assert values["task_overhead_seconds"] == 0.01
    assert values["python_task_overhead_seconds"] == 0.04
    # arrow: (1.1 - 0.3) s x 2 cores over 2 x 32 MiB
    assert values["arrow_seconds_per_byte"] == pytest.approx(0.8 * 2 / (64 * mib))
    assert values["shuffle_seconds_per_byte"] == pytest.approx(0.3 * 2 / (32 * mib))
    # (2.5 - 1.0) / 10 iterations, less the two waves of tasks the model charges besides
    assert values["mllib_iteration_seconds"] == pytest.approx(0.13)
    # a 2-iteration fit, less its iterations: its own reads of the table and set-up
    assert values["mllib_fit_seconds"] == pytest.approx(1.0 - 2 * 0.15)
    # the session's first fit beyond a later one
    assert values["mllib_warmup_seconds"] == pytest.approx(2.5)
    # noise can make a difference negative: a rate is never below zero
    measured["seconds"]["shuffle"] = {"large": 0.2, "tiny": 0.3}
    assert spark_constants(measured)["shuffle_seconds_per_byte"] == 0.0
    # every value is a constant the calibration file may set
    assert set(values) <= set(CostConstants.__dataclass_fields__)


def test_each_inference_task_pays_a_python_tasks_overhead(user_file: Path) -> None:
    """An inference over more partitions runs more Python tasks: a calibrated second more per
    Python task adds a second per wave of every inference stage (2 slots: 8 partitions, 4)."""
    sql = statement(options="executor_cores = 2, partitions = 8, inference = eager")
    before = decide(sql)
    raise_constants(python_task_overhead_seconds=1.0)
    after = decide(sql)
    assert after.chosen.choice == before.chosen.choice
    infers = sum(
        1 for op in after.chosen.runtime.operators if op.step == "inference" and op.passes > 0
    )
    added = inference_seconds(after) - inference_seconds(before)
    assert infers >= 1 and added == pytest.approx(4 * infers, rel=0.05)


def test_a_plan_that_trains_pays_mllibs_warmup_once(user_file: Path) -> None:
    """The session's first fit loads and compiles MLlib's code: charged once per statement
    (``mllib_warmup_seconds``, in its startup), however many layers it trains."""
    sql = statement(model="LOGREG (max_iter = 10)")
    before = decide(sql)
    raise_constants(mllib_warmup_seconds=5.0)
    after = decide(sql)
    assert after.chosen.alternative == before.chosen.alternative
    added = after.chosen.runtime.startup.value - before.chosen.runtime.startup.value
    assert added == pytest.approx(5.0)
    assert after.chosen.time.value - before.chosen.time.value == pytest.approx(5.0)


def timing(cnn: str, seconds: float, batch: int = 8, **more: Any) -> dict[str, Any]:
    """One CNN's timing as ``physical.profile``'s ``time_cnn`` reports it (1 GFLOP an image)."""
    return {
        "cnn": cnn,
        "flops": 1e9,
        "batch": batch,
        "steady_seconds": seconds,
        "first_call_seconds": seconds + 1.0,
        **more,
    }


def test_each_cnn_gets_its_own_thread_and_concurrency_scaling() -> None:
    """``physical.profile.tensorflow_constants``: a CNN's rate over ResNet50's, and its own
    exponents from 2 threads and from two processes at once against one alone; the generic
    exponents are ResNet50's (for CNNs calibrate does not time)."""
    from vista_sql.physical.profile import tensorflow_constants

    memory = {
        "batch_1": {"VmHWM": 1000 * 2**20},
        "batch_32": {"VmHWM": 1310 * 2**20},
        "batch_32_seconds": 4.4,
    }
    alone = [timing("resnet50", 1.0, **memory), timing("vgg16", 2.0, batch=4)]
    # ResNet50 1.6x at 2 threads, 2 x 0.5 = 1x together (no gain); VGG16 2x and 2x
    threads = [timing("resnet50", 1 / 1.6), timing("vgg16", 1.0, batch=4)]
    pair = [
        [timing("resnet50", 2.0), timing("vgg16", 2.0, batch=4)],
        [timing("resnet50", 2.0), timing("vgg16", 2.0, batch=4)],
    ]
    values = tensorflow_constants(alone, threads, pair)
    assert values["inference_flops_per_core"] == pytest.approx(8e9)
    assert values["tf_efficiency_resnet50"] == 1.0
    assert values["tf_efficiency_vgg16"] == pytest.approx(0.25)  # 2e9 img-FLOP/s of 8e9
    assert values["tf_thread_scaling_exponent_resnet50"] == pytest.approx(math.log2(1.6))
    assert values["tf_concurrency_scaling_exponent_resnet50"] == pytest.approx(0.0)
    assert values["tf_thread_scaling_exponent_vgg16"] == pytest.approx(1.0)
    assert values["tf_concurrency_scaling_exponent_vgg16"] == pytest.approx(1.0)
    assert values["tf_thread_scaling_exponent"] == values["tf_thread_scaling_exponent_resnet50"]
    # batch 32's time per image over batch 8's: 4.4 / 32 against 1 / 8 = 1.1 = 4**e
    assert values["tf_batch_slowdown_exponent"] == pytest.approx(math.log(1.1, 4))
    assert set(values) <= set(CostConstants.__dataclass_fields__)


def test_a_cnns_own_scaling_exponents_apply_to_it_alone(user_file: Path) -> None:
    """Uncalibrated, a CNN scales as the generic exponents say; a calibrated exponent of its own
    replaces them for that CNN only, and the optimizer weighs it: a CNN whose concurrent tasks
    gain nothing runs fewer of them."""
    assert math.isnan(CostConstants().tf_concurrency_scaling_exponent_vgg16)
    consts = CostConstants()
    assert consts.scaling_exponents("vgg16") == (
        consts.tf_thread_scaling_exponent,
        consts.tf_concurrency_scaling_exponent,
    )
    alexnet = statement(cnn="alexnet", layers="fc7, fc8")
    resnet = statement(cnn="resnet50", layers="conv5_3, fc6")
    before = (decide(alexnet, "alexnet"), decide(resnet, "resnet50"))
    document = shipped()
    slow = {"tf_concurrency_scaling_exponent_alexnet": 0.0, "tf_thread_scaling_exponent_alexnet": 1}
    write_calibration({**document, "values": {**document["values"], **slow}})
    assert constants().scaling_exponents("alexnet") == (1.0, 0.0)
    after = (decide(alexnet, "alexnet"), decide(resnet, "resnet50"))
    assert before[0].chosen.choice.executor_cores == 2
    assert after[0].chosen.choice.executor_cores == 1
    assert after[0].chosen.choice.tf_threads == 2
    assert inference_seconds(after[1]) == inference_seconds(before[1])


def test_profiling_processes_wait_for_each_other_at_a_barrier(tmp_path: Path) -> None:
    """``_run_together``: copies that print ``ready`` go on only when every copy has; each
    result is its copy's last line. The copy that claims a file first is 0.6 s late to every
    barrier; both leave each barrier together all the same."""
    from vista_sql.physical.profile import _run_together

    code = f"""
    import json, os, sys, time
    try:
        os.close(os.open({str(tmp_path / "late")!r}, os.O_CREAT | os.O_EXCL))
        late = 0.6
    except FileExistsError:
        late = 0.0
    marks = []
    for step in range(2):
        time.sleep(late)
        print("ready", step, flush=True)
        sys.stdin.readline()
        marks.append(time.time())
    print(json.dumps(marks))
    """
    first, second = _run_together(code, 2)
    assert len(first) == len(second) == 2
    for mine, other in zip(first, second, strict=True):
        assert abs(mine - other) < 0.3  # released together, each step
