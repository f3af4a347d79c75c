"""Files: output locks, read-only and full disks, an --out that is a file, memory refused up front, resume.

Real file systems: a 64 KiB tmpfs for "disk full" and a read-only bind mount for "read-only" (both
need root; without it a directory without write permission stands in for read-only, and the disk-full
cases are skipped with the reason).
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from mtc_analog.cli import main
from mtc_analog.io import lock_owner, output_lock, write_text

ROOT = Path(__file__).resolve().parents[1]
TINY = ["--hidden", "3", "--epochs", "1", "--batches-per-epoch", "1", "--batch", "2", "--window", "10",
        "--washout", "2", "--n-samples", "400", "--substeps", "1", "--no-progress"]

# A separate process that takes the output lock of argv[1] as `mtc-analog train`, says so, and holds it.
_HOLDER = """
import sys, time
from mtc_analog.io import output_lock
with output_lock(sys.argv[1], "mtc-analog train --neuron mtc --out " + sys.argv[1]):
    print("locked", flush=True)
    time.sleep(600)
"""


def _env() -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}


@contextlib.contextmanager
def _holder(directory: Path):
    proc = subprocess.Popen([sys.executable, "-c", _HOLDER, str(directory)], stdout=subprocess.PIPE, text=True,
                            env=_env(), cwd=ROOT)
    try:
        assert proc.stdout.readline().strip() == "locked"
        yield proc
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait(timeout=60)


def _one_line_error(capsys, command: str) -> str:
    err = capsys.readouterr().err.strip()
    assert err.startswith(f"mtc-analog {command}: error:") and "\n" not in err and "Traceback" not in err, err
    return err


# -- locks ------------------------------------------------------------------------------------------

def test_second_writer_fails_at_once_naming_the_holder_and_a_killed_holder_frees_the_lock(tmp_path, capsys):
    out = tmp_path / "run"
    with _holder(out) as proc:
        assert lock_owner(out)["pid"] == proc.pid
        assert main(["train", "--neuron", "mtc", "--out", str(out), *TINY]) == 2
        err = _one_line_error(capsys, "train")
        assert f"pid {proc.pid}" in err and "mtc-analog train --neuron mtc" in err and "started" in err
        assert "choose another --out" in err
        assert not (out / "metrics.json").exists() and not (out / "last.safetensors").exists()
        proc.send_signal(signal.SIGKILL)  # no clean-up runs: only the kernel releases the flock
        proc.wait(timeout=60)
    with output_lock(out, "next") as held:  # a killed holder leaves no stale lock
        assert lock_owner(held)["command"] == "next" and lock_owner(held)["pid"] == os.getpid()
    assert lock_owner(out) is None  # owner information removed on release


def test_lock_is_reentrant_in_one_process_and_exclusive_across_processes(tmp_path):
    out = tmp_path / "run"
    with output_lock(out, "outer"):
        with output_lock(out, "inner"):  # demo -> train on the same folder: no self-deadlock
            assert lock_owner(out)["command"] == "outer"
        assert lock_owner(out)["command"] == "outer"
        probe = subprocess.run([sys.executable, "-c", _HOLDER, str(out)], capture_output=True, text=True,
                               env=_env(), cwd=ROOT, timeout=120)
        assert probe.returncode != 0 and "OutputLockedError" in probe.stderr and "outer" in probe.stderr


def test_lock_on_a_new_directory_is_removed_when_nothing_was_written(tmp_path):
    out = tmp_path / "a" / "b"
    with pytest.raises(RuntimeError):
        with output_lock(out, "x"):
            raise RuntimeError("failed before writing")
    assert not (tmp_path / "a").exists()
    with output_lock(out, "x"):
        write_text(out / "result.txt", "done")
    assert (out / "result.txt").read_text() == "done"


def test_two_real_train_runs_on_one_out_cannot_both_succeed(tmp_path):
    out = tmp_path / "run"
    argv = [sys.executable, "-m", "mtc_analog", "train", "--neuron", "lif", "--horizon", "17", "--out", str(out), *TINY]
    procs = [subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=_env(), cwd=ROOT)
             for _ in range(2)]
    results = [(p.wait(timeout=600), p.stderr.read()) for p in procs]
    for p in procs:
        p.stdout.close()
        p.stderr.close()
    codes = sorted(code for code, _ in results)
    assert codes[0] == 0 and codes[1] == 2, results
    loser = next(err for code, err in results if code == 2).strip()
    # Either it met the lock of the running one (named by pid, or, in the instant between the winner taking the lock
    # and writing its owner, "another process"), or (if it started after the first finished) its results.
    assert ("is in use by" in loser or "already exists" in loser) and "\n" not in loser, loser


# -- --out that is a file, read-only and full file systems -----------------------------------------------

@pytest.mark.parametrize("argv", [
    ["regimes"], ["train", "--neuron", "mtc"], ["compare"], ["demo"], ["simulate", "net.cir"],
    ["export", "ck.safetensors"], ["validate", "ck.safetensors"],
])
def test_out_naming_an_existing_file_is_one_line_and_leaves_it_intact(tmp_path, capsys, argv):
    existing = tmp_path / "results.txt"
    existing.write_text("earlier results")
    assert main([*argv, "--out", str(existing)]) == 2
    err = _one_line_error(capsys, argv[0])
    assert "is an existing file, not a directory" in err and str(existing) in err
    assert existing.read_text() == "earlier results"


def test_file_outputs_refuse_a_directory_and_a_path_through_a_file(tmp_path, capsys):
    assert main(["iv", "--out", str(tmp_path)]) == 2  # iv's --out is a figure file
    assert "existing directory" in _one_line_error(capsys, "iv")
    (tmp_path / "f").write_text("x")
    assert main(["iv", "--out", str(tmp_path / "f" / "iv.png")]) == 2
    assert "is a file, not a directory" in _one_line_error(capsys, "iv")


def _mount(args: list[str]) -> bool:
    return subprocess.run(["mount", *args], capture_output=True).returncode == 0


@pytest.fixture
def readonly_dir(tmp_path):
    """A directory holding earlier results (earlier.png, old/) that cannot be written."""
    base = tmp_path / "base"
    (base / "old").mkdir(parents=True)
    (base / "earlier.png").write_bytes(b"earlier figure")
    (base / "old" / "regimes.json").write_text("{}")
    view = tmp_path / "ro"
    view.mkdir()
    if _mount(["--bind", "-o", "ro", str(base), str(view)]):
        try:
            yield view
        finally:
            subprocess.run(["umount", str(view)], check=True)
        return
    if os.geteuid() != 0:  # root ignores permission bits; anyone else is stopped by them
        for d in (base, base / "old"):
            d.chmod(0o555)
        try:
            yield base
        finally:
            for d in (base, base / "old"):
                d.chmod(0o755)
        return
    pytest.skip("root without mount permission: no read-only file system to test on")


def test_read_only_file_system_is_one_line_and_earlier_results_intact(readonly_dir, capsys):
    for argv, command in [
        (["iv", "--out", str(readonly_dir / "earlier.png")], "iv"),
        (["train", "--neuron", "mtc", "--out", str(readonly_dir / "new"), *TINY], "train"),
        (["regimes", "--out", str(readonly_dir / "old"), "--force"], "regimes"),
    ]:
        assert main(argv) == 2, argv
        err = _one_line_error(capsys, command)
        assert str(readonly_dir) in err and ("Read-only file system (EROFS)" in err or "(EACCES)" in err), err
        assert "choose an --out" in err
    assert (readonly_dir / "earlier.png").read_bytes() == b"earlier figure"
    assert (readonly_dir / "old" / "regimes.json").read_text() == "{}"
    assert sorted(p.name for p in readonly_dir.iterdir()) == ["earlier.png", "old"]


@pytest.fixture
def full_disk(tmp_path):
    """A 64 KiB tmpfs (too small for a figure or a checkpoint with Adam state)."""
    mnt = tmp_path / "small"
    mnt.mkdir()
    if not _mount(["-t", "tmpfs", "-o", "size=64k", "tmpfs", str(mnt)]):
        pytest.skip("cannot mount a tmpfs (needs root): no small disk to fill")
    try:
        yield mnt
    finally:
        subprocess.run(["umount", str(mnt)], check=True)


def _fill(mnt: Path, leave: int) -> None:
    """Leave only ``leave`` bytes free on the small disk."""
    st = os.statvfs(mnt)
    (mnt / "filler").write_bytes(b"\0" * max(st.f_bavail * st.f_frsize - leave, 0))


def test_full_disk_is_one_line_and_leaves_no_partial_file(full_disk, capsys):
    earlier = full_disk / "iv.png"
    earlier.write_bytes(b"earlier figure")
    _fill(full_disk, leave=12 * 1024)  # room for the lock files, not for a figure
    assert main(["iv", "--out", str(earlier), "--preset", "tonic_bursting"]) == 2
    err = _one_line_error(capsys, "iv")
    assert f"{earlier}: No space left on device (ENOSPC)" in err and "free some space" in err
    assert earlier.read_bytes() == b"earlier figure"
    assert sorted(p.name for p in full_disk.iterdir()) == ["filler", "iv.png"]  # no *.part, no lock left


def test_full_disk_during_training_is_one_line(full_disk, capsys):
    out = full_disk / "run"
    _fill(full_disk, leave=16 * 1024)  # room for the lock files, not for a checkpoint with Adam state
    argv = ["train", "--neuron", "mtc", "--horizon", "17", "--out", str(out), *TINY, "--hidden", "400"]
    assert main(argv) == 2
    err = _one_line_error(capsys, "train")
    assert "No space left on device (ENOSPC)" in err and ".safetensors" in err and ".part" not in err
    assert not list(full_disk.rglob("*.part*"))  # nothing half-written (the new, empty run folder is removed)


# -- memory ---------------------------------------------------------------------------------------------

@pytest.mark.parametrize("hidden", ["10000000", "100000,100000"])
def test_hidden_that_cannot_fit_is_refused_with_the_figure_before_allocating(tmp_path, capsys, hidden):
    out = tmp_path / "run"
    assert main(["train", "--neuron", "mtc", "--out", str(out), *TINY, "--hidden", hidden]) == 2
    err = _one_line_error(capsys, "train")
    assert "training would need about" in err and "is available (" in err and "lower --hidden" in err
    assert not out.exists()


def test_memory_estimate_tracks_the_measured_layer_footprint():
    from mtc_analog.network import NetworkConfig
    from mtc_analog.resources import TRACES_BY_NEURON, training_memory
    from mtc_analog.training.train import TrainConfig

    net = NetworkConfig(hidden=(2048,))
    est = training_memory(net, TrainConfig(), n_samples=4000)
    steps = (50 + 100) * net.substeps  # (washout + window) samples x neuron steps per sample
    assert est["steps"] == steps and est["neurons"] == 2048
    assert est["activations"] == 32 * steps * 2048 * TRACES_BY_NEURON["mtc"] * 4
    assert TRACES_BY_NEURON["mtc"] >= 6.4  # measured peak-RSS growth (docstring of mtc_analog.resources)


# -- resume -------------------------------------------------------------------------------------------

def test_resume_honours_a_new_epoch_budget_and_says_what_it_resumes(tmp_path, capsys):
    out = tmp_path / "run"
    base = ["train", "--neuron", "lif", "--horizon", "17", "--out", str(out), *TINY]
    assert main(base) == 0
    capsys.readouterr()
    assert main([*base, "--resume", "--epochs", "2"]) == 2  # finished: extending replaces results
    assert "--force --epochs E" in _one_line_error(capsys, "train")
    assert main([*base, "--resume", "--epochs", "2", "--force"]) == 0
    err = capsys.readouterr().err
    assert f"resuming {out / 'last.safetensors'}: epoch 2 of 2 (1 done" in err
    assert "budget changed from 1 to 2 epochs" in err and "cosine" in err
    metrics = json.loads((out / "metrics.json").read_text())
    assert [h["epoch"] for h in metrics["history"]] == [0, 1] and metrics["train_config"]["epochs"] == 2
    assert main([*base, "--resume", "--epochs", "1", "--force"]) == 2
    assert "already holds 2 trained epoch(s)" in _one_line_error(capsys, "train")


def test_os_errors_become_one_line_with_path_meaning_and_fix():
    import errno

    from mtc_analog.io import file_system_error

    cases = [(errno.EROFS, "read-only"), (errno.ENOSPC, "disk is full"), (errno.EACCES, "permission"),
             (errno.ENOTDIR, "not a directory"), (errno.EEXIST, "already exists")]
    for code, fix in cases:
        text = str(file_system_error(OSError(code, os.strerror(code), "/some/out/file.json")))
        assert text.startswith(f"/some/out/file.json: {os.strerror(code)} ({errno.errorcode[code]}); ") and fix in text
        assert "\n" not in text
    assert str(file_system_error(TimeoutError("ngspice took too long"))) == "TimeoutError: ngspice took too long"


def test_evaluate_refuses_a_re_integration_that_cannot_fit(tmp_path, capsys):
    out = tmp_path / "run"
    assert main(["train", "--neuron", "mtc", "--horizon", "17", "--out", str(out), *TINY]) == 0
    capsys.readouterr()
    # sample period 0.5 t_u: 5e7 substeps of 1e-8 t_u -> 400 samples x 5e7 x 3 neurons: terabytes
    argv = ["evaluate", str(out / "best.safetensors"), "--dt", "1e-8", "--substeps", "50000000"]
    assert main(argv) == 2
    err = _one_line_error(capsys, "evaluate")
    assert "re-integrating" in err and "TiB" in err and "is available (" in err and "lower --substeps" in err
