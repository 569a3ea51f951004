"""Run records and the results store: validation, corrupt/partial/failed/NaN records."""

import json
import logging
import math

import pytest
from _results_fixtures import make_record, write_run

from mixbench.errors import ConfigError
from mixbench.results.record import (
    SCHEMA_VERSION,
    as_float,
    is_valid_record,
    load_record,
    read_record,
    validate_record,
    write_record,
)
from mixbench.results.store import read_curve, scan


def test_valid_record_round_trip_keeps_nan(tmp_path):
    rec = make_record(value=float("nan"))
    write_record(tmp_path / "record.json", rec)
    back = read_record(tmp_path / "record.json")
    assert validate_record(back) == []
    assert back["metrics"]["top1"]["median_last_k"] == "nan"
    assert math.isnan(as_float(back["metrics"]["top1"]["median_last_k"]))
    assert as_float("inf") == math.inf and as_float(71.5) == 71.5 and math.isnan(as_float(True))


@pytest.mark.parametrize("mutate, expected", [
    (lambda r: r.pop("seed"), "seed: missing"),
    (lambda r: r.update(seed="0"), "seed: expected int, got str"),
    (lambda r: r.update(epochs=True), "epochs: expected int, got bool"),
    (lambda r: r.update(schema=SCHEMA_VERSION + 1), f"schema: expected {SCHEMA_VERSION}"),
    (lambda r: r.update(status="done"), "status: expected one of running/finished/failed"),
    (lambda r: r["metrics"]["top1"].pop("best"), "metrics.top1.best: missing"),
    (lambda r: r["metrics"]["top1"].update(final="high"), "metrics.top1.final: expected a number"),
    (lambda r: r["metrics"]["top1"].update(k=0), "metrics.top1.k: expected a positive int"),
    (lambda r: r.update(status="failed", error=None), "error: a failed run must say why"),
])
def test_validate_names_the_bad_field(mutate, expected):
    rec = make_record()
    mutate(rec)
    problems = validate_record(rec)
    assert any(p.startswith(expected) for p in problems), problems
    assert not is_valid_record(rec)  # the scan's fast path never accepts what validation rejects


@pytest.mark.parametrize("rec", [make_record(), make_record(value=float("nan")), make_record(status="failed"),
                                 make_record(status="running", params={"alpha": 0.2})])
def test_fast_validity_agrees_on_valid_records(rec):
    rec = json.loads(json.dumps(rec, allow_nan=True).replace("NaN", '"nan"'))
    assert validate_record(rec) == [] and is_valid_record(rec)


def test_load_record_reasons(tmp_path):
    (tmp_path / "partial.json").write_text('{"schema": 1, "run_id": "x"')
    rec, why = load_record(tmp_path / "partial.json")
    assert rec is None and "not valid JSON" in why
    (tmp_path / "list.json").write_text("[1, 2]")
    assert "expected a JSON object" in load_record(tmp_path / "list.json")[1]
    bad = make_record()
    del bad["dataset"], bad["method"]
    (tmp_path / "bad.json").write_text(json.dumps(bad))
    assert load_record(tmp_path / "bad.json")[1] == "invalid record: method: missing (+1 more)"


@pytest.fixture
def mixed_store(tmp_path):
    """Good, failed, NaN, running, partial (truncated JSON) and schema-invalid records."""
    for seed, v in enumerate([70.0, 71.0, 72.0]):
        write_run(tmp_path, make_record("mixup", seed, v), curve=[60, 65, v])
    write_run(tmp_path, make_record("cutmix", 0, status="failed", error="CUDA error: out of memory\n..."))
    write_run(tmp_path, make_record("cutmix", 1, value=float("nan")))
    write_run(tmp_path, make_record("cutmix", 2, status="running"))
    partial = write_run(tmp_path, make_record("none", 0)) / "record.json"
    partial.write_text(partial.read_text()[:120])
    invalid = make_record("none", 1)
    invalid["schema"] = 99
    (tmp_path / "old" / "r").mkdir(parents=True)
    (tmp_path / "old" / "r" / "record.json").write_text(json.dumps(invalid))
    return tmp_path


def test_scan_skips_corrupt_with_one_line_warning(mixed_store, caplog):
    with caplog.at_level(logging.WARNING, logger="mixbench.results"):
        store = scan(mixed_store)
    assert len(store) == 6  # 3 good + failed + NaN + running
    assert len(store.skipped) == 2
    msgs = [r.getMessage() for r in caplog.records]
    assert len(msgs) == 2 and all("\n" not in m for m in msgs)
    assert any("old/r/record.json" in m and "schema: expected 1, got 99" in m for m in msgs)
    assert any("lenet_none" in m and "not valid JSON" in m for m in msgs)
    assert set(store.runs["status"]) == {"finished", "failed", "running"}
    assert store.metric_names() == ["top1"]


def test_scan_does_not_descend_into_run_dirs_and_checks_roots(tmp_path):
    run = write_run(tmp_path, make_record("mixup", 0, 70.0))
    write_record(run / "checkpoints" / "record.json", make_record("mixup", 0, 1.0))  # must not be read
    assert len(scan(tmp_path)) == 1
    assert len(scan(run / "record.json")) == 1
    with pytest.raises(ConfigError, match="no such directory"):
        scan(tmp_path / "missing")


def test_flattened_columns(tmp_path):
    write_run(tmp_path, make_record("mixup", 3, 75.0, params={"alpha": 0.2, "partner": "perm", "p": [1, 2]}))
    row = scan(tmp_path).runs.iloc[0]
    assert row["params.alpha"] == 0.2 and row["params.partner"] == "perm" and row["params.p"] == "[1, 2]"
    assert row["method_params"] == '{"alpha":0.2,"p":[1,2],"partner":"perm"}'
    assert row["top1.median_last_k"] == 0.75 and row["top1.k"] == 10 and row["time.wall_s"] == 12.5


def test_equal_hashing_params_stay_apart(tmp_path):
    # 1, 1.0 and True hash alike; the scan's params cache must still write each as it is
    for seed, alpha in enumerate([1, 1.0, True]):
        write_run(tmp_path, make_record("mixup", seed, 70.0, params={"alpha": alpha}, config_hash="same"))
    runs = scan(tmp_path).runs.sort_values("seed")
    assert runs["method_params"].tolist() == ['{"alpha":1}', '{"alpha":1.0}', '{"alpha":true}']


def test_read_curve_tolerates_torn_lines_and_resume(tmp_path):
    (tmp_path / "metrics.jsonl").write_text(
        '{"epoch": 1, "val/top1": 50.0}\n{"epoch": 2, "accuracy/top1": 55.0}\n'
        '{"epoch": 2, "top1": 56.0}\n{"epoch": 3, "iter": 30, "loss": 0.1}\n{"epoch": 3, "val/top1": 5')
    assert read_curve(tmp_path, "top1") == ([1.0, 2.0], [50.0, 56.0])
    (tmp_path / "metrics.jsonl").write_text('{"epoch": 1, "kind": "train", "top1": 0.1}\n{"epoch": 1, "kind": "val", "top1": 0.5}\n')
    assert read_curve(tmp_path, "top1") == ([1.0], [0.5])
    assert read_curve(tmp_path / "nothing", "top1") == ([], [])
