"""Benchmark suites: loading, running what is missing, resume after a kill, report with references."""

import os
import shlex
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from mixbench.cli.bench import main as bench_main
from mixbench.errors import ConfigError
from mixbench.results.suite import load_suite, pending, run_suite, status_table, suite_board

FAKE = [sys.executable, str(Path(__file__).with_name("_fake_train.py"))]


def _suite(tmp_path, runs=None, **extra):
    for name in ("good", "plain"):
        (tmp_path / f"{name}.yaml").write_text(f"# {name}\n")
    data = {"name": "t", "title": "Fixture suite", "work_dir": str(tmp_path / "work"), "out": str(tmp_path / "out"),
            "seeds": [0, 1], "overrides": ["epochs=3"], "reference_source": "fixture numbers",
            "runs": runs or [{"config": str(tmp_path / "good.yaml"), "label": "good", "reference": 61.0},
                             {"config": str(tmp_path / "plain.yaml"), "label": "plain", "reference": 49.0}],
            **extra}
    path = tmp_path / "suite.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


@pytest.fixture
def fake_env(tmp_path, monkeypatch):
    log = tmp_path / "calls.log"
    monkeypatch.setenv("FAKE_TRAIN_LOG", str(log))
    monkeypatch.setenv("FAKE_EPOCH_S", "0.01")
    return log


def _calls(log):
    return [line.split() for line in log.read_text().splitlines()] if log.exists() else []


def test_run_then_rerun_is_a_no_op_and_report_has_reference(tmp_path, fake_env, capsys):
    suite = load_suite(_suite(tmp_path))
    assert len(pending(suite)) == 4
    assert run_suite(suite, train_cmd=FAKE, validate=False, echo=lambda s: None) == 0
    assert len(_calls(fake_env)) == 4 and pending(suite) == []
    assert run_suite(suite, train_cmd=FAKE, validate=False, echo=lambda s: None) == 0
    assert len(_calls(fake_env)) == 4  # finished runs are not even started again
    board = suite_board(suite)
    t = board.table.set_index("method")
    # fake trainer: value = 50 + 10 * (config == good) + seed -> seeds 0, 1 give 60, 61 (mean 60.5)
    assert t.loc["good", "mean"] == pytest.approx(60.5) and t.loc["good", "reference"] == 61.0
    assert t.loc["good", "diff"] == pytest.approx(-0.5) and t.loc["plain", "diff"] == pytest.approx(1.5)
    assert bench_main(["report", str(suite.path), "--format", "md,csv,html"]) == 0
    out = capsys.readouterr().out
    assert "Reference: fixture numbers" in out and "| +1.50 |" in out
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["leaderboard.csv", "leaderboard.html",
                                                                     "leaderboard.md"]


def test_kill_partway_then_rerun_runs_each_exactly_once(tmp_path, fake_env, monkeypatch):
    monkeypatch.setenv("FAKE_EPOCH_S", "0.3")
    path = _suite(tmp_path)
    cmd = [sys.executable, "-m", "mixbench.cli.bench", "run", str(path), "--train-cmd", " ".join(FAKE),
           "--no-validate"]
    proc = subprocess.Popen(cmd, start_new_session=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    suite = load_suite(path)
    deadline = time.monotonic() + 60
    # Kill the whole process group (suite and the trainer it runs) while the second run is mid-training.
    while time.monotonic() < deadline:
        st = status_table(suite)
        if (st["status"] == "finished").sum() == 1 and (st["status"] == "running").sum() == 1:
            break
        time.sleep(0.05)
    else:
        pytest.fail("suite never reached a finished + running state")
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    st = status_table(suite)
    assert sorted(st["status"]) == ["finished", "missing", "missing", "running"]

    assert bench_main(["run", str(path), "--train-cmd", " ".join(FAKE), "--no-validate"]) == 0
    st = status_table(suite)
    assert (st["status"] == "finished").all()
    records = sorted((tmp_path / "work").rglob("record.json"))
    assert len(records) == 4 and len({r.parent for r in records}) == 4  # one run dir per (entry, seed)
    calls = _calls(fake_env)
    states = {}
    for run_dir, state in calls:
        states.setdefault(run_dir, []).append(state)
    assert sorted(map(tuple, states.values())) == [("new",), ("new",), ("new",), ("new", "running")]
    board = suite_board(suite)
    assert board.table["n"].tolist() == [2, 2] and board.excluded.empty


def test_failed_run_is_reported_and_retried(tmp_path, fake_env, capsys):
    runs = [{"config": str(tmp_path / "good.yaml"), "label": "good"},
            {"config": str(tmp_path / "plain.yaml"), "label": "broken", "overrides": ["fail=1"]}]
    path = _suite(tmp_path, runs=runs, seeds=[0])
    assert bench_main(["run", str(path), "--train-cmd", " ".join(FAKE), "--no-validate"]) == 1
    err = capsys.readouterr()
    assert "broken seed 0: FAILED (exit 1" in err.out and "1 run(s) failed" in err.err
    assert "configured to fail" in next((tmp_path / "work").glob("broken-*/logs/s0.log")).read_text()
    assert [(r.label, s) for r, s in pending(load_suite(path))] == [("broken", 0)]


def test_dry_run_only_and_status(tmp_path, fake_env, capsys):
    path = _suite(tmp_path)
    assert bench_main(["run", str(path), "--dry-run", "--only", "plain", "--train-cmd", "train", "--no-validate"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0] == "suite t: 0/4 runs finished, 2 to run (local)"
    assert out[1].startswith(f"train {tmp_path / 'plain.yaml'} epochs=3 seed=0 work_dir={tmp_path / 'work'}/plain-")
    assert not _calls(fake_env)
    assert bench_main(["status", str(path)]) == 0
    assert "missing: 4" in capsys.readouterr().out
    assert bench_main(["run", str(path), "--only", "nope"]) == 2


def test_submitit_launcher_runs_missing_runs_locally(tmp_path, fake_env, monkeypatch):
    pytest.importorskip("submitit")
    monkeypatch.setenv("MIXBENCH_SUBMITIT_CLUSTER", "local")
    suite = load_suite(_suite(tmp_path, seeds=[0], slurm={"timeout_min": 5}))
    assert run_suite(suite, launcher="submitit", train_cmd=FAKE, validate=False, echo=lambda s: None) == 0
    assert (status_table(suite)["status"] == "finished").all()
    assert list((tmp_path / "work" / ".submitit").iterdir())


@pytest.mark.parametrize("patch, message", [
    ({"colour": 1}, "unknown key 'colour'"),
    ({"runs": []}, "'runs' must be a non-empty list"),
    ({"runs": [{"label": "x"}]}, "runs[0] needs a 'config'"),
    ({"runs": ["a.yaml", "a.yaml"]}, "label 'a' used twice"),
    ({"runs": [{"config": "a.yaml", "reference": "high"}]}, "runs[0].reference must be a number"),
    ({"seeds": ["0"]}, "'seeds' must be a non-empty list of ints"),
    ({"definition": "mean"}, "definition 'mean' unknown"),
])
def test_suite_mistakes_are_one_line_config_errors(tmp_path, patch, message):
    path = _suite(tmp_path)
    data = yaml.safe_load(path.read_text())
    data.update(patch)
    path.write_text(yaml.safe_dump(data))
    with pytest.raises(ConfigError) as exc:
        load_suite(path)
    assert message in str(exc.value) and str(path) in str(exc.value) and "\n" not in str(exc.value)


def test_missing_config_fails_before_running(tmp_path, fake_env):
    path = _suite(tmp_path, runs=[{"config": str(tmp_path / "absent.yaml")}])
    with pytest.raises(ConfigError, match="absent.yaml' does not exist"):
        run_suite(load_suite(path), train_cmd=FAKE, validate=False, echo=lambda s: None)


def test_editing_an_entry_starts_fresh_runs(tmp_path, fake_env):
    path = _suite(tmp_path, seeds=[0])
    run_suite(load_suite(path), train_cmd=FAKE, validate=False, echo=lambda s: None)
    (tmp_path / "good.yaml").write_text("# good, edited\n")
    assert [(r.label, s) for r, s in pending(load_suite(path))] == [("good", 0)]


@pytest.mark.parametrize("suite_file", sorted(str(p) for p in Path(__file__).parents[1].glob("benchmarks/*.yaml")))
def test_shipped_suites_load(suite_file):
    suite = load_suite(suite_file)
    assert suite.runs and all(r.seeds for r in suite.runs)


def test_report_without_records_warns_and_writes_nothing(tmp_path, capsys):
    suite = _suite(tmp_path)
    assert bench_main(["report", str(suite)]) == 1
    printed = capsys.readouterr()
    assert printed.out == "" and "warning: no run records of suite t under" in printed.err
    assert not (tmp_path / "out").exists()


def _descendants(pid: int) -> list[int]:
    """Live (non-zombie) processes below ``pid``, from /proc."""
    out = []
    for task in Path(f"/proc/{pid}/task").glob("*"):
        try:
            kids = [int(k) for k in (task / "children").read_text().split()]
        except OSError:
            continue
        for kid in kids:
            out += [kid, *_descendants(kid)]
    return out


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state not in ("Z", "X")  # an orphan's zombie waits for a reaper that a container may not have


# The trainer behind a shell (sh -> trainer): ending the child's process group ends the grandchild too.
SH_FAKE = ["sh", "-c", '"$@" & wait', "sh", *FAKE]


@pytest.mark.skipif(not Path("/proc/self/task").is_dir(), reason="reads the process tree from /proc")
@pytest.mark.parametrize("sig, train_cmd", [(signal.SIGTERM, SH_FAKE), (signal.SIGHUP, SH_FAKE),
                                            (signal.SIGINT, SH_FAKE), (signal.SIGKILL, FAKE)],
                         ids=["SIGTERM", "SIGHUP", "SIGINT", "SIGKILL"])
def test_killed_suite_runner_ends_its_training_processes(tmp_path, fake_env, monkeypatch, sig, train_cmd):
    monkeypatch.setenv("FAKE_EPOCH_S", "30")  # the first run is still training when the runner is killed
    path = _suite(tmp_path, seeds=[0])
    # under nohup or in a background job the runner would inherit SIGHUP / SIGINT ignored, and keep ignoring it
    # on purpose: this test is about a runner that listens
    listen = None if sig == signal.SIGKILL else (lambda: signal.signal(sig, signal.SIG_DFL))
    proc = subprocess.Popen([sys.executable, "-m", "mixbench.cli.bench", "run", str(path),
                             "--no-validate", "--train-cmd", shlex.join(train_cmd)], stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, preexec_fn=listen)
    deadline = time.monotonic() + 120
    while not (fake_env.exists() and _descendants(proc.pid)):  # the trainer has started and logged its call
        assert proc.poll() is None and time.monotonic() < deadline, "the trainer never started"
        time.sleep(0.05)
    trainers = _descendants(proc.pid)
    assert len(trainers) == (2 if train_cmd is SH_FAKE else 1)
    proc.send_signal(sig)
    # the runner gives its child a 30-s grace after SIGTERM (suite._end_group) before SIGKILL: allow both
    assert proc.wait(timeout=120) != 0
    deadline = time.monotonic() + 30
    while any(map(_alive, trainers)) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not any(map(_alive, trainers)), "a training process outlived the suite runner"
    assert [state for _, state in _calls(fake_env)] == ["new"]
    # nothing finished behind the runner's back; the killed run is resumable (its record may not exist yet)
    first, second = status_table(load_suite(path))["status"].tolist()
    assert first in ("running", "missing") and second == "missing"
