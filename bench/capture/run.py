"""Run the capture benchmark: every tracker on the same workflow, side by side, in one run.

::

    bash bench/capture/setup.sh                        # once: the benchmark's own venv
    /tmp/bench-venv/bin/python bench/capture/run.py    # ~10 minutes on 2 cores
    /tmp/bench-venv/bin/python bench/capture/run.py --quick

1. Writes the raw seismic-like volumes once (not timed).
2. Runs each workflow variant of :mod:`workflow` as a whole process, once to warm caches,
   then ``--repeats`` rounds interleaved (A B C … A B C …, each round starting one variant
   further on so no variant always follows the same one). Per run: the process's wall
   time (``time.perf_counter`` around it), the workflow's own time reported by the
   process, and the process's peak resident memory (``ru_maxrss`` from ``os.wait4``).
3. Runs the per-call probes of :mod:`percall`, each in its own process.
4. Prints medians, the overhead of each variant against the undecorated workflow as a
   ratio of medians and as the median of the per-round differences (with the spread of
   those differences), the overhead attributed to each tracker directly (the workflow
   thread's time inside its calls plus its threads' CPU, see ``workflow.Metered``), peak
   memory, and the per-call figures; writes everything as JSON (``--json``).

Children run with numeric libraries' thread pools at one thread (``CHILD_ENV``), the
same for every variant.

Imports: the standard library only; it runs the variants with the interpreter it runs on.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
VARIANTS = [
    "undecorated",
    "provml",
    "provml-memory",
    "provml-ref",
    "provml-cold",
    "mlflow",
    "flowcept",
    "yprov4ml",
]
#: Numeric libraries' thread pools kept to one thread in every child, so that the CPU
#: time of threads other than the workflow's is the trackers' own.
#: The directories of this checkout's packages (provml, provml.capture, provml.api).
REPO = HERE.parent.parent
PACKAGES = ("provml", "capture", "api")
CHILD_ENV = {"OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
#: (probe, calls in a full run, calls in --quick)
PROBES = [
    ("plain", 5_000_000, 1_000_000),
    ("provml-off", 5_000_000, 1_000_000),
    ("provml-hot", 1_000_000, 200_000),
    ("provml-on", 300_000, 100_000),
    ("provml-store", 50_000, 20_000),
    ("provml-log_metric", 300_000, 100_000),
    ("flowcept-task", 1_000_000, 200_000),
    ("yprov4ml-log_metric", 500_000, 200_000),
    ("mlflow-trace", 1_000_000, 200_000),
    ("mlflow-log_metric", 1_000_000, 200_000),
]


def run_process(argv: list[str]) -> tuple[float, float, int, str, str, int]:
    """Run ``argv``: wall and CPU (user + system) seconds, peak RSS in KiB, stdout,
    stderr and exit status."""
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        began = time.perf_counter()
        child = subprocess.Popen(argv, stdout=out, stderr=err, env={**os.environ, **CHILD_ENV})
        # wait4 gives this child's own rusage, not the maximum over all children so far.
        _, status, usage = os.wait4(child.pid, 0)
        wall = time.perf_counter() - began
        child.returncode = os.waitstatus_to_exitcode(status)
        out.seek(0)
        err.seek(0)
        return (
            wall,
            usage.ru_utime + usage.ru_stime,
            usage.ru_maxrss,
            out.read().decode(errors="replace"),
            err.read().decode(errors="replace"),
            child.returncode,
        )


def run_variant(variant: str, raw: Path, scratch: Path, epochs: int) -> dict[str, Any]:
    """One whole-process run; the variant's directory (its tracking store) persists, so
    every timed run logs into a store that exists, as a job does after the first one."""
    work = scratch / variant
    argv = [sys.executable, str(HERE / "workflow.py"), "run", variant]
    argv += ["--raw", str(raw), "--work", str(work), "--epochs", str(epochs)]
    wall, cpu, rss, out, err, status = run_process(argv)
    if status != 0:
        return {"variant": variant, "error": err.strip().splitlines()[-1:] or [f"exit {status}"]}
    report = json.loads(out.strip().splitlines()[-1])
    return {**report, "process_s": wall, "cpu_s": cpu, "max_rss_kib": rss}


def run_probe(probe: str, calls: int, seconds: float) -> dict[str, Any]:
    argv = [sys.executable, str(HERE / "percall.py"), probe, "--calls", str(calls)]
    argv += ["--seconds", str(seconds)]
    wall, _, _, out, err, status = run_process(argv)
    if status != 0:
        return {"probe": probe, "error": err.strip().splitlines()[-1:] or [f"exit {status}"]}
    return {**json.loads(out.strip().splitlines()[-1]), "process_s": wall}


def summarise(runs: dict[str, list[dict[str, Any]]]) -> dict[str, dict[str, Any]]:
    """Medians per variant and the overhead against the undecorated runs of the same rounds."""
    base = runs["undecorated"]
    summary: dict[str, dict[str, Any]] = {}
    for variant, rows in runs.items():
        failed = [r["error"] for r in rows if "error" in r]
        if failed:
            summary[variant] = {"error": failed[0]}
            continue
        good = rows
        row: dict[str, Any] = {"runs": len(good)}
        for key in ("process_s", "cpu_s", "workflow_s"):
            values = [r[key] for r in good]
            row[key] = statistics.median(values)
            base_median = statistics.median(b[key] for b in base)
            row[f"{key}_ratio"] = row[key] / base_median
            # Paired by round: the same moment's load hits both runs of a pair.
            deltas = sorted(r[key] - b[key] for r, b in zip(good, base, strict=True))
            row[f"{key}_delta"] = statistics.median(deltas)
            row[f"{key}_delta_range"] = (deltas[0], deltas[-1])
        for key in ("in_tracker_s", "background_cpu_s"):
            row[key] = statistics.median(r[key] for r in good)
        row["attributed_s"] = statistics.median(
            r["in_tracker_s"] + r["background_cpu_s"] for r in good
        )
        row["attributed_share"] = row["attributed_s"] / statistics.median(
            b["workflow_s"] for b in base
        )
        row["max_rss_mib"] = max(r["max_rss_kib"] for r in good) / 1024
        row["tracker"] = good[-1].get("tracker", {})
        summary[variant] = row
    return summary


def load() -> str:
    one, five, fifteen = os.getloadavg()
    return f"{one:.2f} {five:.2f} {fifteen:.2f}"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python bench/capture/run.py")
    parser.add_argument("--quick", action="store_true", help="fewer surveys, rounds and calls")
    parser.add_argument("--repeats", type=int, help="interleaved rounds (default 7, quick 2)")
    parser.add_argument("--surveys", type=int, help="acquired surveys (default 240, quick 60)")
    parser.add_argument("--epochs", type=int, default=12)
    parser.add_argument("--variants", default=",".join(VARIANTS))
    parser.add_argument("--no-probes", action="store_true", help="skip the per-call probes")
    parser.add_argument("--json", type=Path, help="also write every measurement here")
    parser.add_argument("--markdown", type=Path, help="also write the tables as Markdown here")
    args = parser.parse_args(argv)
    repeats = args.repeats or (2 if args.quick else 7)
    surveys = args.surveys or (60 if args.quick else 240)
    variants = [v for v in args.variants.split(",") if v]
    if "undecorated" not in variants:
        variants.insert(0, "undecorated")

    print(
        f"capture benchmark: {platform.node()}, {os.cpu_count()} CPUs, "
        f"Python {platform.python_version()}"
    )
    print(f"started {time.strftime('%Y-%m-%d %H:%M:%S UTC', time.gmtime())}, load {load()}")
    scratch = Path(tempfile.mkdtemp(prefix="provml-bench-"))
    # provml remembers file digests across jobs (as every job after a machine's first
    # one finds them): a cache of this run's own, filled by the warm-up round;
    # provml-cold turns it off.
    CHILD_ENV["PROVML_DIGEST_CACHE"] = str(scratch / "digests.jsonl")
    raw = scratch / "raw"
    try:
        subprocess.run(
            [
                sys.executable,
                str(HERE / "workflow.py"),
                "generate",
                "--raw",
                str(raw),
                "--surveys",
                str(surveys),
            ],
            check=True,
        )
        # Every peer comes from a wheel whose modules pip byte-compiled at install time;
        # provml is an editable install of this checkout, whose modules are compiled at
        # every import when nothing wrote their .pyc (PYTHONDONTWRITEBYTECODE, a read-only
        # tree): 50-80 ms a process that a user's pip install never pays. Compile them.
        subprocess.run(
            [sys.executable, "-m", "compileall", "-q", *(str(REPO / d) for d in PACKAGES)],
            check=True,
        )
        print(f"{surveys} surveys written; warm-up run of each variant")
        for variant in variants:
            warm = run_variant(variant, raw, scratch, args.epochs)
            if "error" in warm:
                print(f"  {variant}: FAILED: {warm['error']}")
        runs: dict[str, list[dict[str, Any]]] = {v: [] for v in variants}
        for round_ in range(repeats):
            order = variants[round_ % len(variants) :] + variants[: round_ % len(variants)]
            for variant in order:
                runs[variant].append(run_variant(variant, raw, scratch, args.epochs))
            print(f"  round {round_ + 1}/{repeats} done, load {load()}")
        summary = summarise(runs)
        probes = []
        if not args.no_probes:
            print("per-call probes")
            for probe, full, quick in PROBES:
                probes.append(run_probe(probe, quick if args.quick else full, 1.5))
        finished = time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime())
    finally:
        shutil.rmtree(scratch, ignore_errors=True)

    print()
    print(
        f"finished {finished}, load {load()}; {repeats} interleaved rounds, "
        f"{surveys} surveys, {args.epochs} epochs"
    )
    print_summary(summary)
    if probes:
        print_probes(probes)
    if args.markdown:
        args.markdown.write_text(markdown(summary, probes))
    if args.json:
        args.json.write_text(
            json.dumps(
                {
                    "finished": finished,
                    "repeats": repeats,
                    "surveys": surveys,
                    "epochs": args.epochs,
                    "summary": summary,
                    "runs": runs,
                    "probes": probes,
                },
                indent=2,
            )
        )


TITLES = {
    "process_s": "whole process, wall seconds",
    "workflow_s": "workflow inside the process (tracker start, final flush), wall seconds",
    "cpu_s": "whole process, CPU seconds (user + system)",
}


def min_max_confidence(n: int) -> float:
    """Confidence that [min, max] of n paired differences holds their median (sign test)."""
    return 1 - 2 * 0.5**n


def print_summary(summary: dict[str, dict[str, Any]]) -> None:
    n = summary["undecorated"].get("runs", 0)
    print()
    print(
        f"ratio: median / undecorated median; paired Δ: median of the per-round differences "
        f"against the undecorated run; Δ min..max over {n} rounds is a "
        f"{min_max_confidence(n):.1%} confidence interval for that median (sign test)"
    )
    for key, title in TITLES.items():
        print()
        print(title)
        print(f"  {'variant':14} {'median':>8} {'ratio':>7} {'paired Δ':>9} {'Δ min..max':>17}")
        for variant, row in summary.items():
            if "error" in row:
                print(f"  {variant:14} FAILED: {row['error']}")
                continue
            low, high = row[f"{key}_delta_range"]
            print(
                f"  {variant:14} {row[key]:8.3f} {row[f'{key}_ratio']:7.3f} "
                f"{row[f'{key}_delta']:+9.3f} {low:+8.3f}..{high:+7.3f}"
            )
    print()
    print(
        "attributed to the tracker (medians): the workflow thread's time inside tracker "
        "calls and wrappers,\nplus the CPU time of the process's other threads; share of "
        "the undecorated workflow's median"
    )
    print(f"  {'variant':14} {'in calls s':>10} {'bg CPU s':>9} {'total s':>8} {'share':>7}")
    for variant, row in summary.items():
        if "error" not in row:
            print(
                f"  {variant:14} {row['in_tracker_s']:10.4f} {row['background_cpu_s']:9.4f} "
                f"{row['attributed_s']:8.4f} {row['attributed_share']:7.2%}"
            )
    print()
    print(f"  {'variant':14} {'peak RSS MiB':>12}  records kept by the tracker")
    for variant, row in summary.items():
        if "error" not in row:
            records = row["tracker"].get("records", "")
            print(f"  {variant:14} {row['max_rss_mib']:12.0f}  {records}")


def print_probes(probes: list[dict[str, Any]]) -> None:
    print()
    print(
        f"{'per-call probe':22} {'calls':>9} {'µs/call':>9} "
        f"{'with export µs':>15} {'records/s':>10}"
    )
    for p in probes:
        if "error" in p:
            print(f"{p['probe']:22} FAILED: {p['error']}")
            continue
        export = f"{p['with_export_us']:.2f}" if "with_export_us" in p else ""
        rate = f"{p['records_per_s']:.0f}" if "records_per_s" in p else ""
        print(f"{p['probe']:22} {p['calls']:9d} {p['us']:9.3f} {export:>15} {rate:>10}")


def markdown(summary: dict[str, dict[str, Any]], probes: list[dict[str, Any]]) -> str:
    """The figures as Markdown tables, for RESULTS.md."""
    n = summary["undecorated"].get("runs", 0)
    lines = [
        f"| variant | process wall s | ratio | paired Δ s [{min_max_confidence(n):.1%} CI] "
        "| workflow wall s | ratio | process CPU s | ratio | paired Δ CPU s "
        "| attributed s (in calls + threads' CPU) | share | peak RSS MiB | records |",
        "|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|",
    ]
    for variant, row in summary.items():
        if "error" in row:
            lines.append(f"| {variant} | failed: {row['error']} |" + " |" * 11)
            continue
        low, high = row["process_s_delta_range"]
        clow, chigh = row["cpu_s_delta_range"]
        lines.append(
            f"| {variant} | {row['process_s']:.3f} | {row['process_s_ratio']:.3f} "
            f"| {row['process_s_delta']:+.3f} [{low:+.3f}, {high:+.3f}] "
            f"| {row['workflow_s']:.3f} | {row['workflow_s_ratio']:.3f} "
            f"| {row['cpu_s']:.3f} | {row['cpu_s_ratio']:.3f} "
            f"| {row['cpu_s_delta']:+.3f} [{clow:+.3f}, {chigh:+.3f}] "
            f"| {row['attributed_s']:.4f} ({row['in_tracker_s']:.4f} + "
            f"{row['background_cpu_s']:.4f}) | {row['attributed_share']:.2%} "
            f"| {row['max_rss_mib']:.0f} | {row['tracker'].get('records', '')} |"
        )
    if probes:
        lines += [
            "",
            "| per-call probe | calls | µs per call | µs per call with export | records/s |",
            "|---|--:|--:|--:|--:|",
        ]
        for p in probes:
            if "error" in p:
                lines.append(f"| {p['probe']} | failed: {p['error']} | | | |")
                continue
            export = f"{p['with_export_us']:.2f}" if "with_export_us" in p else ""
            rate = f"{p['records_per_s']:.0f}" if "records_per_s" in p else ""
            lines.append(f"| {p['probe']} | {p['calls']} | {p['us']:.3f} | {export} | {rate} |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
