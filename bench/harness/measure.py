"""The parent side: starts the children, pairs their timed blocks, runs callgrind, and turns the
raw numbers into per-call and per-chunk overheads against the baseline."""

from __future__ import annotations

import concurrent.futures
import contextlib
import json
import os
import platform
import re
import statistics
import subprocess
import sys
import tempfile
import time
from importlib import metadata
from pathlib import Path
from typing import Any

from . import instrumentations, providers
from .child import MARKER_SYMBOL, ROOT, callgrind_counts, callgrind_scenarios
from .instrumentations import BASE

CLOCKS = ("wall", "cpu")


def med(values: list[float]) -> float:
    return statistics.median(values) if values else float("nan")


def child_env(mode: str) -> dict[str, str]:
    """Same defaults in every mode: no OTEL_* configuration leaks in from the caller's shell;
    then the mode's own variables."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OTEL_", "TRACELOOP_"))}
    env["PYTHONHASHSEED"] = "0"
    env.pop("PYTHONDEVMODE", None)
    env = {k: v for k, v in env.items() if not k.startswith("BENCH_PYTHON_")}
    env.update(instrumentations.get(mode).env)
    return env


def python_for(mode: str) -> str:
    """The interpreter of a mode's children: this one, unless ``BENCH_PYTHON_<MODE>`` names
    another (a peer that cannot share this virtualenv; same Python, same pins otherwise)."""
    return os.environ.get(f"BENCH_PYTHON_{mode.upper()}") or sys.executable


def run_child(script: Path, cfg: dict[str, Any], prefix: tuple[str, ...] = ()) -> dict[str, Any]:
    """Run one child to completion; its last RESULT line."""
    cmd = [*prefix, python_for(cfg["mode"]), str(script), "--child", json.dumps(cfg)]
    proc = subprocess.run(cmd, capture_output=True, text=True, env=child_env(cfg["mode"]), cwd=ROOT)
    what = f"{cfg['task']}/{cfg['provider']}/{cfg['mode']}"
    if proc.returncode != 0:
        sys.stderr.write(proc.stderr[-6000:])
        raise SystemExit(f"child {what} failed ({proc.returncode})")
    for line in reversed(proc.stdout.splitlines()):
        if line.startswith("RESULT "):
            return json.loads(line[7:])
    sys.stderr.write(proc.stdout[-3000:] + proc.stderr[-3000:])
    raise SystemExit(f"child {what} printed no result")


class Child:
    """A timing child the parent talks to: one JSON command per line, one result line back."""

    def __init__(self, script: Path, cfg: dict[str, Any], mode: str) -> None:
        self.mode = mode
        self.stderr = tempfile.TemporaryFile(mode="w+")  # noqa: SIM115 - closed in close()
        self.proc = subprocess.Popen(
            [python_for(mode), str(script), "--child", json.dumps({**cfg, "mode": mode})],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=self.stderr,
            text=True,
            env=child_env(mode),
            cwd=ROOT,
        )
        self.startup = self.read()["startup"]

    def read(self) -> dict[str, Any]:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            if line.startswith("RESULT "):
                return json.loads(line[7:])
        self.proc.wait()
        self.stderr.seek(0)
        sys.stderr.write(self.stderr.read()[-6000:])
        raise SystemExit(f"timing child {self.mode} failed ({self.proc.returncode})")

    def ask(self, op: str, **args: Any) -> dict[str, Any]:
        assert self.proc.stdin is not None
        self.proc.stdin.write(json.dumps({"op": op, **args}) + "\n")
        self.proc.stdin.flush()
        return self.read()

    def close(self) -> dict[str, Any]:
        result = self.ask("finish")
        self.proc.wait()
        self.stderr.close()
        return result

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        self.stderr.close()


def measure_wall_clock(
    script: Path, cfg: dict[str, Any], modes: list[str], progress: str | None = None
) -> dict[str, Any]:
    """Paired wall-clock blocks over ``cfg["rounds"]`` rounds: per mode and scenario, the
    baseline, the mode's figure and the overhead (median of block-pair differences, median
    over rounds); per chunk from the smallest and the largest stream; start-up and memory."""
    provider = providers.get(cfg["provider"])
    rounds_data = []
    for r in range(cfg["rounds"]):
        if progress:
            print(f"  {progress}: round {r + 1}/{cfg['rounds']}", file=sys.stderr, flush=True)
        rounds_data.append(_round(script, cfg, modes, r))
    scenarios = provider.scenarios(tuple(cfg["sizes"]), tuple(cfg["kinds"]))
    keys = [s.key for s in scenarios]
    base_name = BASE.name
    out: dict[str, Any] = {"modes": {}, "scenarios": keys}
    for mode in modes:
        if mode == base_name:
            continue
        rows: dict[str, dict[str, Any]] = {k: {} for k in keys}
        per_chunk: dict[str, dict[str, Any]] = {}
        for clock in CLOCKS:
            base: dict[str, list[float]] = {k: [] for k in keys}
            inst: dict[str, list[float]] = {k: [] for k in keys}
            over: dict[str, list[float]] = {k: [] for k in keys}
            for rd in rounds_data:
                b_s = rd["samples_ns"][base_name][clock]
                i_s = rd["samples_ns"][mode][clock]
                for k in keys:
                    base[k].append(med(b_s[k]))
                    inst[k].append(med(i_s[k]))
                    over[k].append(med([i - b for b, i in zip(b_s[k], i_s[k], strict=True)]))
            for k in keys:
                rows[k][clock] = {
                    "baseline_us": med(base[k]) / 1e3,
                    "instrumented_us": med(inst[k]) / 1e3,
                    "overhead_us": med(over[k]) / 1e3,
                    "overhead_pct": 100 * med(over[k]) / med(base[k]),
                    "rounds_overhead_us": [o / 1e3 for o in over[k]],
                }
            for kind in cfg["kinds"]:
                sizes = provider.stream_sizes(kind, tuple(cfg["sizes"]))
                small, large = min(sizes), max(sizes)
                k1, kn = f"{kind}_stream_{small}", f"{kind}_stream_{large}"
                chunk_base = [
                    (bn - b1) / (large - small) for b1, bn in zip(base[k1], base[kn], strict=True)
                ]
                chunk_over = [
                    (on - o1) / (large - small) for o1, on in zip(over[k1], over[kn], strict=True)
                ]
                per_chunk.setdefault(kind, {})[clock] = {
                    "from": [small, large],
                    "baseline_us": med(chunk_base) / 1e3,
                    "overhead_us": med(chunk_over) / 1e3,
                    "overhead_pct": 100 * med(chunk_over) / med(chunk_base),
                    "rounds_overhead_us": [o / 1e3 for o in chunk_over],
                }
        out["modes"][mode] = {
            "rows": rows,
            "per_chunk": per_chunk,
            "startup": _startup(rounds_data, mode, cfg),
        }
    out["metrics"] = rounds_data[-1]["metrics"]
    out["rounds"] = rounds_data
    return out


def _round(script: Path, cfg: dict[str, Any], modes: list[str], r: int) -> dict[str, Any]:
    """One round: a fresh child per mode (started one after the other, so start-up figures do
    not compete), then timed blocks in turn, the order rotating from one block to the next."""
    cfg = {**cfg, "task": "time"}
    shift = r % len(modes)
    order = modes[shift:] + modes[:shift]
    children: dict[str, Child] = {}
    metrics: dict[str, Any] = {}
    startup: dict[str, Any] = {}
    try:
        for mode in order:
            children[mode] = Child(script, cfg, mode)
            startup[mode] = children[mode].startup
        estimates = {mode: children[mode].ask("warmup")["per_call_ns"] for mode in order}
        keys = list(estimates[BASE.name])
        # The same number of calls per block in every mode, sized on the baseline.
        calls = {k: max(1, round(cfg["block_ms"] * 1e6 / estimates[BASE.name][k])) for k in keys}
        samples: dict[str, dict[str, dict[str, list[float]]]] = {
            mode: {clock: {k: [] for k in keys} for clock in CLOCKS} for mode in modes
        }
        for b in range(cfg["blocks"]):
            turn = order[b % len(order) :] + order[: b % len(order)]
            if b % 2:
                turn = turn[::-1]
            for k in keys:
                for mode in turn:
                    result = children[mode].ask("block", key=k, calls=calls[k])
                    for clock in CLOCKS:
                        samples[mode][clock][k].append(result[clock] / calls[k])
        for mode in order:
            metrics[mode] = children.pop(mode).close()["metrics"]
    finally:
        for child in children.values():
            child.kill()
    return {
        "calls_per_block": calls,
        "startup": startup,
        "samples_ns": samples,
        "metrics": metrics,
    }


def _startup(rounds_data: list[dict[str, Any]], mode: str, cfg: dict[str, Any]) -> dict[str, Any]:
    base_runs = [rd["startup"][BASE.name] for rd in rounds_data]
    runs = [rd["startup"][mode] for rd in rounds_data]

    def median_of(field: str, which: list[dict[str, Any]] = runs) -> float:
        return med([run[field] for run in which])

    def rss_delta(which: list[dict[str, Any]], a: str, b: str) -> float:
        return med([run[b] - run[a] for run in which])

    startup = {
        "versions": runs[0].get("versions", {}),
        "import_ms": median_of("import_ms"),
        "instrument_ms": median_of("instrument_ms"),
        "modules_imported": runs[0]["modules_imported"],
        "first_call_baseline_ms": median_of("first_call_ms", base_runs),
        "first_call_ms": median_of("first_call_ms"),
        "second_call_baseline_ms": median_of("second_call_ms", base_runs),
        "second_call_ms": median_of("second_call_ms"),
        "first_call_added_ms": med(
            [i["first_call_ms"] - b["first_call_ms"] for b, i in zip(base_runs, runs, strict=True)]
        ),
        "instrument_and_first_call_added_ms": med(
            [
                i["instrument_ms"] + i["import_ms"] + i["first_call_ms"] - b["first_call_ms"]
                for b, i in zip(base_runs, runs, strict=True)
            ]
        ),
    }
    memory = {
        "calls": cfg["memory_calls"],
        "instrument_kib": rss_delta(runs, "rss_before_kib", "rss_after_instrument_kib"),
        "calls_baseline_kib": rss_delta(
            base_runs, "rss_after_instrument_kib", "rss_after_calls_kib"
        ),
        "calls_instrumented_kib": rss_delta(
            runs, "rss_after_instrument_kib", "rss_after_calls_kib"
        ),
        "total_added_kib": rss_delta(runs, "rss_before_kib", "rss_after_calls_kib")
        - rss_delta(base_runs, "rss_before_kib", "rss_after_calls_kib"),
        "maxrss_baseline_kib": median_of("maxrss_kib", base_runs),
        "maxrss_instrumented_kib": median_of("maxrss_kib"),
    }
    return {"startup": startup, "memory": memory}


# -- callgrind ----------------------------------------------------------------------------------


def _dump_totals(out_dir: Path, stem: str) -> list[int]:
    """Instruction totals of each callgrind dump, in dump order (the final dump last)."""
    parts: list[tuple[int, int]] = []
    for path in out_dir.glob(stem + "*"):
        text = path.read_text(errors="replace")
        part = re.search(r"^part: (\d+)$", text, re.M)
        total = re.search(r"^(?:summary|totals): (\d+)", text, re.M)
        if total is None:
            continue
        parts.append((int(part.group(1)) if part else 1, int(total.group(1))))
    return [total for _, total in sorted(parts)]


def _callgrind(
    script: Path, cfg: dict[str, Any], mode: str, out_dir: Path
) -> tuple[list[int], float]:
    """Run one callgrind child (its dumps in a directory of its own): (Ir per dump, seconds)."""
    run_dir = Path(tempfile.mkdtemp(prefix=f"{mode}-", dir=out_dir))
    prefix = (
        "valgrind",
        "--tool=callgrind",
        f"--dump-before={MARKER_SYMBOL}",
        "--dump-line=no",
        f"--callgrind-out-file={run_dir / 'callgrind.out'}",
    )
    start = time.monotonic()
    run_child(script, {**cfg, "task": "callgrind", "mode": mode}, prefix)
    return _dump_totals(run_dir, "callgrind.out"), time.monotonic() - start


def measure_instructions(
    script: Path, cfg: dict[str, Any], modes: list[str], progress: str | None = None
) -> dict[str, Any]:
    """Instructions per call: (Ir of 2K calls - Ir of K calls) / K after a warm-up, so the
    start-up, the warm-up and the per-segment bookkeeping cancel out. Ir counts do not depend
    on machine load: two modes run side by side."""
    provider = providers.get(cfg["provider"])
    cg_scenarios = callgrind_scenarios(provider, cfg)
    keys = [s.key for s in cg_scenarios]
    k_of = {s.key: callgrind_counts(cfg, s)[0] for s in cg_scenarios}
    per_call: dict[str, dict[str, float]] = {mode: {} for mode in modes}
    seconds = 0.0
    with tempfile.TemporaryDirectory(prefix="overhead-cg-") as tmp:
        out_dir = Path(tmp)
        if progress:
            print(f"  {progress}: callgrind, {len(modes)} modes", file=sys.stderr, flush=True)
        with concurrent.futures.ThreadPoolExecutor(2) as pool:
            futures = {mode: pool.submit(_callgrind, script, cfg, mode, out_dir) for mode in modes}
            results = {mode: f.result() for mode, f in futures.items()}
        for mode, (totals, took) in results.items():
            seconds += took
            if len(totals) == 3 * len(keys) + 1:
                for index, key in enumerate(keys):
                    k_ir, k2_ir = totals[3 * index + 1], totals[3 * index + 2]
                    per_call[mode][key] = (k2_ir - k_ir) / k_of[key]
                continue
            # No marker dumps (a stripped libpython): one process per scenario and count.
            if progress:
                print(
                    f"  callgrind: {MARKER_SYMBOL} not found ({len(totals)} dumps), falling "
                    "back to whole-process totals per scenario (slow)",
                    file=sys.stderr,
                    flush=True,
                )
            for key in keys:
                ir = []
                for calls in (k_of[key], 2 * k_of[key]):
                    sub = {**cfg, "only": [key], "counts_override": {key: [calls]}}
                    totals, took = _callgrind(script, sub, mode, out_dir)
                    seconds += took
                    ir.append(sum(totals))
                per_call[mode][key] = (ir[1] - ir[0]) / k_of[key]
    out: dict[str, Any] = {"scenarios": keys, "baseline": per_call[BASE.name], "modes": {}}
    base = per_call[BASE.name]
    for mode in modes:
        if mode == BASE.name:
            continue
        inst = per_call[mode]
        rows = {
            key: {
                "baseline_ir": base[key],
                "instrumented_ir": inst[key],
                "overhead_ir": inst[key] - base[key],
                "overhead_pct": 100 * (inst[key] - base[key]) / base[key],
            }
            for key in keys
        }
        per_chunk = {}
        for kind in cfg["kinds"]:
            sizes = provider.stream_sizes(kind, (min(cfg["sizes"]), max(cfg["sizes"])))
            small, large = min(sizes), max(sizes)
            k1, kn = f"{kind}_stream_{small}", f"{kind}_stream_{large}"
            b = (base[kn] - base[k1]) / (large - small)
            i = (inst[kn] - inst[k1]) / (large - small)
            per_chunk[kind] = {
                "from": [small, large],
                "baseline_ir": b,
                "instrumented_ir": i,
                "overhead_ir": i - b,
                "overhead_pct": 100 * (i - b) / b,
            }
        out["modes"][mode] = {"rows": rows, "per_chunk": per_chunk}
    out["cpu_seconds"] = seconds
    return out


def measure_profile(script: Path, cfg: dict[str, Any], mode: str) -> dict[str, Any]:
    """Per function: the mode's minus the baseline's calls and own time per operation."""
    runs = {m: run_child(script, {**cfg, "task": "profile", "mode": m}) for m in (BASE.name, mode)}
    out: dict[str, Any] = {"stream_label": runs[mode]["stream_label"]}
    for name in ("call", "stream"):
        base, inst = runs[BASE.name][name], runs[mode][name]
        rows = []
        for key in set(base) | set(inst):
            b = base.get(key, (0.0, 0.0, 0.0))
            i = inst.get(key, (0.0, 0.0, 0.0))
            rows.append(
                {
                    "function": key,
                    "calls_added": i[0] - b[0],
                    "own_us_added": i[1] - b[1],
                    "incl_us_instrumented": i[2],
                }
            )
        rows.sort(key=lambda r: -r["own_us_added"])
        # Functions called as often in both modes differ by noise between the two processes.
        added = [r for r in rows if abs(r["calls_added"]) >= 0.5]
        out[name] = {
            "total_own_us_added": sum(r["own_us_added"] for r in added),
            "top": added[: cfg["profile_top"]],
        }
    return out


# -- environment --------------------------------------------------------------------------------


def loadavg() -> str:
    try:
        return " ".join(f"{x:.2f}" for x in os.getloadavg())
    except OSError:
        return "?"


def tree_state() -> str | None:
    """The commit of the measured package and whether its files differ from it (read-only)."""
    try:
        head = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, cwd=ROOT
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--", "otel_llm_cost"],
            capture_output=True,
            text=True,
            cwd=ROOT,
        ).stdout.strip()
    except OSError:
        return None
    if not head:
        return None
    return f"{head}{' + uncommitted changes' if dirty else ''}"


def versions(distributions: list[str]) -> dict[str, Any]:
    out: dict[str, Any] = {
        "python": platform.python_version(),
        "implementation": platform.python_implementation(),
        "machine": platform.machine(),
        "nproc": os.cpu_count(),
        "packages": {},
    }
    for dist in dict.fromkeys(distributions):
        try:
            out["packages"][dist] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            out["packages"][dist] = None
    out["package_tree"] = tree_state()
    with contextlib.suppress(OSError), open("/proc/cpuinfo") as cpuinfo:
        for line in cpuinfo:
            if line.startswith("model name"):
                out["cpu"] = line.split(":", 1)[1].strip()
                break
    return out
