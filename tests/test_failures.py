"""Failure paths of a run: a full disk, a read-only run dir, a config error raised inside the step.

Each ends with one line naming the cause and no traceback, and the record says ``failed`` with the error
wherever it can still be written. The full and read-only filesystems are real ones: a 1.5 MB tmpfs and a
read-only tmpfs where this runs as root (mounting needs it), a file-size limit and a read-only directory
mode otherwise.
"""

from __future__ import annotations

import os
import resource
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from _spine import ROOT, TINY, TRAIN, env, run_cli

from mixbench.config import load_config, run_dir_of
from mixbench.results.record import read_record, validate_record

ARGS = ["configs/digits/vanilla.yaml", *TINY]


def _mount(path: Path, options: str) -> bool:
    """Mount a tmpfs at ``path`` (root only); False where that is not possible."""
    path.mkdir(parents=True, exist_ok=True)
    if os.geteuid() != 0 or not shutil.which("mount"):
        return False
    return subprocess.run(["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(path)],
                          capture_output=True).returncode == 0


@pytest.fixture
def mounts():
    """Mount points made by the test, unmounted afterwards."""
    made: list[Path] = []
    yield made
    for path in made:
        subprocess.run(["umount", str(path)], capture_output=True)


def _assert_one_line_failure(proc: subprocess.CompletedProcess, needle: str) -> None:
    assert proc.returncode != 0
    assert "Traceback" not in proc.stderr + proc.stdout, (proc.stdout + proc.stderr)[-3000:]
    assert needle in proc.stdout + proc.stderr, (proc.stdout + proc.stderr)[-3000:]


def _record(work_dir: Path) -> dict:
    (path,) = work_dir.glob("digits/*/record.json")
    return read_record(path)


@pytest.mark.slow
def test_full_tmpfs_ends_in_one_line(tmp_path: Path, mounts: list) -> None:
    wd = tmp_path / "full"
    if not _mount(wd, "size=1500k"):
        pytest.skip("mounting a tmpfs needs root")
    mounts.append(wd)
    # at the default width, two 850 kB checkpoints do not fit in 1.5 MB: the second one fails to write
    args = [a for a in ARGS if not a.startswith("model.backbone.width=")]
    proc = run_cli([*args, "schedule.epochs=2", f"work_dir={wd}"], ROOT)
    _assert_one_line_failure(proc, "No space left on device")
    assert proc.returncode == 1 and "FAILED" in proc.stdout
    rec = _record(wd)
    # the failed record is written when the space allows it; a record that stays "running" is said in the line
    assert rec["status"] == "failed" or "record.json left unfinished" in proc.stdout


def _file_size_limit(limit: int):
    def set_limit() -> None:
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))  # Python ignores SIGXFSZ: writes get EFBIG
    return set_limit


@pytest.mark.slow
def test_checkpoint_write_failure_gives_a_failed_record(tmp_path: Path) -> None:
    # no file may grow past 100 kB: the first checkpoint fails, the small record write still succeeds
    proc = subprocess.run([sys.executable, TRAIN, *ARGS, "schedule.epochs=1", f"work_dir={tmp_path}"], cwd=ROOT,
                          env=env(), capture_output=True, text=True, timeout=300,
                          preexec_fn=_file_size_limit(100_000))
    _assert_one_line_failure(proc, "File too large")
    assert proc.returncode == 1
    rec = _record(tmp_path)
    assert rec["status"] == "failed" and "File too large" in rec["error"] and validate_record(rec) == []


def _read_only(path: Path, mounts: list, prepare=None) -> None:
    """Make ``path`` a read-only directory (after ``prepare(path)`` ran on it while writable)."""
    if _mount(path, "size=1m"):
        mounts.append(path)
        if prepare:
            prepare(path)
        subprocess.run(["mount", "-o", "remount,ro", str(path)], check=True)
    else:
        if prepare:
            prepare(path)
        for d in [path, *[p for p in path.rglob("*") if p.is_dir()]]:
            d.chmod(0o555)


def _run_dir_of(work_dir: Path) -> Path:
    return Path(run_dir_of(load_config(ARGS[0], [*ARGS[1:], f"work_dir={work_dir}"])[0]))


@pytest.mark.parametrize("existing", [False, True], ids=["new-run-dir", "existing-run-dir"])
def test_read_only_work_dir_ends_in_one_line(tmp_path: Path, mounts: list, existing: bool) -> None:
    wd = tmp_path / "ro"
    _read_only(wd, mounts, (lambda p: _run_dir_of(p).mkdir(parents=True)) if existing else None)
    proc = run_cli([*ARGS, f"work_dir={wd}"], ROOT)
    _assert_one_line_failure(proc, "error: run dir ")
    assert proc.returncode == 2 and len(proc.stderr.strip().splitlines()) == 1, proc.stderr[-2000:]
    assert "Read-only file system" in proc.stderr or "Permission denied" in proc.stderr
    assert not list(wd.rglob("*.json"))


@pytest.mark.slow
def test_config_error_inside_the_step_fails_the_record(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                       capsys: pytest.CaptureFixture) -> None:
    from mixbench.cli.main import main
    from mixbench.errors import ConfigError
    from mixbench.mixups.base import MixPolicy

    def mix(self, *args, **kwargs):
        raise ConfigError("mixup.prob: rejected by the policy at its first step")

    monkeypatch.setattr(MixPolicy, "__call__", mix)
    assert main(["train", "configs/digits/mixup.yaml", *TINY, "schedule.epochs=1", f"work_dir={tmp_path}"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == ["error: mixup.prob: rejected by the policy at its first step"]
    rec = _record(tmp_path)
    assert rec["status"] == "failed" and validate_record(rec) == []
    assert rec["error"] == "ConfigError: mixup.prob: rejected by the policy at its first step"
