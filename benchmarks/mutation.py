"""Mutation testing of the core modules with cosmic-ray (slow; outside CI).

    pip install -e '.[mutation]'                                   # cosmic-ray, pinned in pyproject.toml
    nice -n 10 python benchmarks/mutation.py tasks/mackey_glass.py validation/metrics.py --sample 40
    python benchmarks/mutation.py --list                           # modules and the tests run against each

Each module is mutated in its own scratch copy of the checkout (tracked and untracked-but-not-ignored
files; the working tree is never touched; a private kernel build cache), one mutant at a time, and
only the tests that cover that module run against it (``MODULES``), with one thread each. A mutant is *killed* when those tests fail
(or time out: ``--timeout-factor`` times the unmutated run), *survived* when they pass. The score is
killed / (killed + survived) over the mutants run; ``--sample N`` runs a seeded random N of a
module's mutants, ``--budget-s`` stops a module after that many seconds (the score then covers the
mutants finished). Results: ``OUT/<module>.json`` (counts, score, and every survivor's diff) and a
Markdown table on stdout for ``benchmarks/README.md``.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = "mtc_analog"

#: module (under mtc_analog/) -> the test files that cover it (the selection keeps a mutant's run short).
MODULES: dict[str, list[str]] = {
    "neuron/equations.py": ["tests/test_equations.py", "tests/test_step.py", "tests/test_iv.py",
                            "tests/test_reference.py"],
    "neuron/step.py": ["tests/test_step.py", "tests/test_layer.py", "tests/test_reference.py"],
    "hardware/mapping.py": ["tests/test_mapping.py", "tests/test_ranges.py", "tests/test_netlist_values.py"],
    "validation/metrics.py": ["tests/test_validation_metrics.py"],
    "tasks/mackey_glass.py": ["tests/test_mackey_glass.py"],
    "tasks/metrics.py": ["tests/test_metrics.py"],
    "spice/runner.py": ["tests/test_spice_runner.py"],
}


def slug(module: str) -> str:
    return module.replace("/", ".").removesuffix(".py")


def scratch_copy(dest: Path) -> None:
    """Copy the checkout's tracked and untracked-but-not-ignored files (no .venv, runs/, caches)."""
    listed = subprocess.run(["git", "ls-files", "-co", "--exclude-standard", "-z"], cwd=ROOT, check=True,
                            capture_output=True).stdout.decode().split("\0")
    if dest.exists():
        shutil.rmtree(dest)
    for rel in filter(None, listed):
        src = ROOT / rel
        if src.is_file():
            (dest / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, dest / rel)


def test_env(work: Path) -> dict[str, str]:
    env = dict(os.environ)
    env.update(PYTHONPATH=str(work), PYTHONDONTWRITEBYTECODE="1", OMP_NUM_THREADS="1", MKL_NUM_THREADS="1",
               OPENBLAS_NUM_THREADS="1",
               # a private kernel cache: the copy's source path differs from the checkout's, so torch
               # rebuilds the kernel once (in the unmutated run), and a mutant killed on timeout
               # mid-build cannot leave a stale build lock in the shared ~/.cache
               MTC_ANALOG_BUILD_DIR=str(work / ".torch_extensions"))
    return env


def test_command(tests: list[str]) -> list[str]:
    # -x: the first failure kills the mutant; no cache: the scratch copy stays clean between mutants
    return [sys.executable, "-m", "pytest", "-x", "-q", "-p", "no:cacheprovider", *tests]


def run_module(module: str, out: Path, sample: int | None, seed: int, timeout_factor: float,
               budget_s: float | None) -> dict:
    from cosmic_ray.work_db import WorkDB, use_db
    from cosmic_ray.work_item import TestOutcome, WorkerOutcome, WorkResult

    tests = MODULES[module]
    name = slug(module)
    work = out / "work" / name
    scratch_copy(work)
    env = test_env(work)
    command = test_command(tests)

    started = time.perf_counter()  # the unmutated run: must pass, and sets the per-mutant timeout
    base = subprocess.run(command, cwd=work, env=env, capture_output=True, text=True)
    baseline_s = time.perf_counter() - started
    if base.returncode != 0:
        raise SystemExit(f"{module}: the tests fail without any mutation; fix that first:\n{base.stdout[-2000:]}")
    timeout = max(30.0, timeout_factor * baseline_s)

    config = out / f"{name}.toml"
    config.write_text(
        "[cosmic-ray]\n"
        f'module-path = "{PACKAGE}/{module}"\n'
        f"timeout = {timeout:.0f}\n"
        "excluded-modules = []\n"
        f"test-command = {json.dumps(' '.join(command))}\n"
        "\n[cosmic-ray.distributor]\nname = \"local\"\n")
    session = out / f"{name}.sqlite"
    session.unlink(missing_ok=True)
    cr = [sys.executable, "-m", "cosmic_ray.cli"]
    subprocess.run([*cr, "init", str(config), str(session)], cwd=work, env=env, check=True)

    with use_db(str(session), WorkDB.Mode.open) as db:
        items = list(db.work_items)
        total = len(items)
        if sample is not None and sample < total:
            keep = {item.job_id for item in random.Random(seed).sample(items, sample)}
            skipped = [item.job_id for item in items if item.job_id not in keep]
            db.set_multiple_results(skipped, WorkResult(worker_outcome=WorkerOutcome.SKIPPED))

    print(f"[mutation] {module}: {total} mutants, running {min(sample or total, total)} "
          f"(tests: {' '.join(tests)}; unmutated run {baseline_s:.1f} s, timeout {timeout:.0f} s)", flush=True)
    exec_started = time.perf_counter()
    proc = subprocess.Popen([*cr, "exec", str(config), str(session)], cwd=work, env=env, start_new_session=True)
    try:
        proc.wait(timeout=budget_s)
        budget_hit = False
    except subprocess.TimeoutExpired:
        # the running mutant's tests sit in a session of their own (cosmic-ray's timeout handling):
        # stop them by their process group, then cosmic-ray itself by its own
        for child in _children(proc.pid):
            try:
                os.killpg(os.getpgid(child), signal.SIGKILL)
            except OSError:
                pass
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
        budget_hit = True
    exec_s = time.perf_counter() - exec_started

    counts = {"killed": 0, "timeout": 0, "survived": 0, "incompetent": 0, "error": 0}
    survivors = []
    with use_db(str(session), WorkDB.Mode.open) as db:
        specs = {item.job_id: item for item in db.work_items}
        for job_id, result in db.results:
            if result.worker_outcome == WorkerOutcome.SKIPPED:
                continue
            if result.worker_outcome != WorkerOutcome.NORMAL:
                counts["error"] += 1
            elif result.test_outcome == TestOutcome.SURVIVED:
                counts["survived"] += 1
                mutation = specs[job_id].mutations[0]
                survivors.append({"operator": mutation.operator_name, "line": mutation.start_pos[0],
                                  "diff": result.diff})
            elif result.test_outcome == TestOutcome.KILLED:
                counts["timeout" if result.output == "timeout" else "killed"] += 1
            else:
                counts["incompetent"] += 1
    decided = counts["killed"] + counts["timeout"] + counts["survived"]
    summary = {
        "module": f"{PACKAGE}/{module}", "tests": tests, "mutants_total": total, "mutants_run": decided,
        **counts, "score": (counts["killed"] + counts["timeout"]) / decided if decided else None,
        "budget_hit": budget_hit, "baseline_s": baseline_s, "timeout_s": timeout, "exec_s": exec_s,
        "sample": sample, "seed": seed, "survivors": sorted(survivors, key=lambda s: s["line"]),
    }
    (out / f"{name}.json").write_text(json.dumps(summary, indent=2) + "\n")
    return summary


def _children(pid: int) -> list[int]:
    """Direct children of ``pid`` (from /proc; empty where there is none)."""
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid:
            found.append(int(stat.parent.name))
    return found


def markdown(rows: list[dict]) -> str:
    lines = ["| module | mutants (run / total) | killed | timeout | survived | score | wall [s] |",
             "|---|---|---|---|---|---|---|"]
    for r in rows:
        score = f"{100 * r['score']:.0f} %" if r["score"] is not None else "n/a"
        lines.append(f"| `{r['module']}` | {r['mutants_run']} / {r['mutants_total']} | {r['killed']} | {r['timeout']} "
                     f"| {r['survived']} | {score} | {r['exec_s']:.0f} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("modules", nargs="*", help=f"modules under {PACKAGE}/ (default: all of --list)")
    parser.add_argument("--list", action="store_true", help="print the modules and their tests, then exit")
    parser.add_argument("--sample", type=int, default=None,
                        help="run a random N of each module's mutants (seeded; default: all)")
    parser.add_argument("--seed", type=int, default=0, help="seed of --sample (default 0)")
    parser.add_argument("--timeout-factor", type=float, default=5.0,
                        help="a mutant times out (counted killed) after this many times the unmutated run "
                             "(at least 30 s; default 5)")
    parser.add_argument("--budget-s", type=float, default=None,
                        help="stop each module after this many seconds [s] (the score covers the mutants run)")
    parser.add_argument("--out", type=Path, default=ROOT / "runs" / "mutation", help="output directory")
    args = parser.parse_args(argv)
    if args.list:
        for module, tests in MODULES.items():
            print(f"{PACKAGE}/{module}: {' '.join(tests)}")
        return 0
    unknown = [m for m in args.modules if m not in MODULES]
    if unknown:
        parser.error(f"unknown module(s) {unknown}; choose from {', '.join(MODULES)}")
    if args.sample is not None and args.sample < 1:
        parser.error("--sample must be >= 1")
    try:
        import cosmic_ray  # noqa: F401
    except ImportError:
        parser.error("cosmic-ray is not installed: pip install -e '.[mutation]'")
    args.out.mkdir(parents=True, exist_ok=True)
    rows = [run_module(m, args.out, args.sample, args.seed, args.timeout_factor, args.budget_s)
            for m in (args.modules or list(MODULES))]
    print(markdown(rows))
    for r in rows:
        for s in r["survivors"]:
            print(f"\nsurvived: {r['module']}:{s['line']} ({s['operator']})\n{s['diff']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
