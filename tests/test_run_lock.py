"""One process per run dir: a second process gets one line naming the holder; a killed holder frees the lock."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
from _spine import ROOT, TINY, TRAIN, env, run_cli

from mixbench.engine.lock import LOCK_NAME, RunLock, read_holder
from mixbench.errors import ConfigError, RunDirError
from mixbench.results.record import read_record

HOLD = ("import sys, time\nfrom mixbench.engine.lock import RunLock\n"
        "RunLock(sys.argv[1]).acquire()\nprint('locked', flush=True)\ntime.sleep(600)\n")


def _holder(run_dir: Path) -> subprocess.Popen:
    """A process that holds the lock of ``run_dir`` until it is killed."""
    proc = subprocess.Popen([sys.executable, "-c", HOLD, str(run_dir)], cwd=ROOT, env=env(), text=True,
                            stdout=subprocess.PIPE)
    assert proc.stdout.readline().strip() == "locked"
    return proc


def _wait_for(predicate, proc: subprocess.Popen, what: str, timeout: float = 240) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert proc.poll() is None, f"the run ended before {what}"
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)


def test_second_lock_is_refused_with_the_holder(tmp_path: Path) -> None:
    first, second = RunLock(str(tmp_path / "run")), RunLock(str(tmp_path / "run"))
    first.acquire()
    holder = read_holder(str(tmp_path / "run" / LOCK_NAME))
    assert holder["pid"] == os.getpid() and holder["host"] == socket.gethostname() and holder["command"]
    with pytest.raises(RunDirError, match=rf"in use by pid {os.getpid()} on {socket.gethostname()} \(started "):
        second.acquire()
    assert isinstance(RunDirError("x"), ConfigError)  # printed as one line, exit status 2
    assert read_holder(str(tmp_path / "run" / LOCK_NAME)) == holder  # the refused one changed nothing
    first.release()
    second.acquire()  # free again once released
    second.release()


def test_killed_holder_frees_the_lock(tmp_path: Path) -> None:
    proc = _holder(tmp_path / "run")
    with pytest.raises(RunDirError, match=f"in use by pid {proc.pid} "):
        RunLock(str(tmp_path / "run")).acquire()
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    lock = RunLock(str(tmp_path / "run"))
    lock.acquire()  # the kernel dropped the dead process's flock: no stale lock
    assert read_holder(lock.path)["pid"] == os.getpid()
    lock.release()


def test_lock_kept_by_the_children_of_an_ended_holder_says_so(tmp_path: Path) -> None:
    r, w = os.pipe()
    holder = os.fork()
    if holder == 0:  # lock, fork a "data-loader worker" that inherits the lock, end
        try:
            RunLock(str(tmp_path / "run")).acquire()
            worker = os.fork()
            if worker == 0:
                time.sleep(120)
            else:
                os.write(w, str(worker).encode())
        finally:
            os._exit(0)
    os.close(w)
    worker = int(os.read(r, 32))
    os.waitpid(holder, 0)
    try:
        with pytest.raises(RunDirError, match=f"in use by pid {holder} .*, which has ended; its child processes"):
            RunLock(str(tmp_path / "run")).acquire()
    finally:
        os.kill(worker, signal.SIGKILL)
    deadline = time.monotonic() + 30
    lock = RunLock(str(tmp_path / "run"))
    while True:  # the lock goes with the last process that shares it
        try:
            lock.acquire()
            lock.release()
            break
        except RunDirError:
            assert time.monotonic() < deadline
            time.sleep(0.05)


@pytest.mark.slow
def test_second_train_on_a_running_run_dir_is_one_line_then_a_killed_holder_resumes(tmp_path: Path) -> None:
    args = ["configs/digits/vanilla.yaml", *TINY, "schedule.epochs=3", f"work_dir={tmp_path}"]
    first = subprocess.Popen([sys.executable, TRAIN, *args], cwd=ROOT, env=env(), stdout=subprocess.DEVNULL,
                             stderr=subprocess.DEVNULL)
    try:
        _wait_for(lambda: list(tmp_path.glob("digits/*/epoch_1.pth")), first, "a checkpoint")
        # a stopped holder keeps its lock: the second command meets a running run however slow it starts
        first.send_signal(signal.SIGSTOP)
        (run_dir,) = [p.parent for p in tmp_path.glob("digits/*/record.json")]
        before = sorted(p.name for p in run_dir.iterdir())
        second = run_cli([*args, "--force"], ROOT)  # --force, the harshest: it would clear the run dir
        assert second.returncode == 2, second.stderr[-2000:]
        lines = second.stderr.strip().splitlines()
        assert len(lines) == 1 and "Traceback" not in second.stderr, second.stderr[-2000:]
        assert lines[0].startswith(f"error: run dir {run_dir} is in use by pid {first.pid} ")
        assert "tools/train.py configs/digits/vanilla.yaml" in lines[0]
        assert set(before) <= {p.name for p in run_dir.iterdir()}  # nothing of the holder's run was removed
        assert json.loads((run_dir / LOCK_NAME).read_text())["pid"] == first.pid
    finally:
        first.send_signal(signal.SIGKILL)
        first.wait()
    assert read_record(run_dir / "record.json")["status"] == "running"
    again = run_cli(args, ROOT)  # the killed holder's lock went with it: the run resumes and finishes
    assert again.returncode == 0, again.stderr[-2000:]
    assert read_record(run_dir / "record.json")["status"] == "finished"
