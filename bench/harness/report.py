"""The printed report: per provider and mode, then summary tables (markdown)."""

from __future__ import annotations

from typing import Any

from . import instrumentations, providers
from .child import callgrind_scenarios


def us(value: float, digits: int = 1) -> str:
    return f"{value:.{digits}f} µs"


def over(value: float, pct: float, digits: int = 1, unit: str = "µs") -> str:
    return f"{value:+.{digits}f} {unit} ({pct:+.1f}%)"


def spread(values: list[float], digits: int) -> str:
    return f"{min(values):+.{digits}f}..{max(values):+.{digits}f}"


def table(rows: list[list[str]], header: list[str] | None = None) -> str:
    """Rows with the first column left-aligned and the others right-aligned (a two-column
    table without header is a list of ``name  value``, left-aligned)."""
    every = [header, *rows] if header else rows
    widths = [max(len(r[i]) for r in every) for i in range(len(every[0]))]
    lines = []
    for row in every:
        if header is None and len(row) == 2:
            cells = [row[0].ljust(widths[0]), row[1]]
        else:
            cells = [row[0].ljust(widths[0])]
            cells += [c.rjust(w) for c, w in zip(row[1:], widths[1:], strict=True)]
        lines.append("  " + "   ".join(cells).rstrip())
    return "\n".join(lines)


def markdown(rows: list[list[str]], header: list[str]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines)


def kib_mib(kib: float, signed: bool = True) -> str:
    return f"{kib / 1024:+.1f} MiB" if signed else f"{kib / 1024:.1f} MiB"


def print_wall(wall: dict[str, Any], mode: str, cfg: dict[str, Any]) -> None:
    provider = providers.get(cfg["provider"])
    data = wall["modes"][mode]
    print(
        f"Wall clock per call: median over {cfg['rounds']} rounds, each a fresh process per mode "
        f"running {cfg['blocks']} blocks per scenario in turn;\noverhead = median of the "
        "block-pair differences; CPU = the same from the thread's CPU time; rounds min..max = "
        "spread of the per-round overheads"
    )
    rows = []
    for sc in provider.scenarios(tuple(cfg["sizes"]), tuple(cfg["kinds"])):
        w, c = data["rows"][sc.key]["wall"], data["rows"][sc.key]["cpu"]
        rows.append(
            [
                sc.label,
                us(w["baseline_us"]),
                us(w["instrumented_us"]),
                over(w["overhead_us"], w["overhead_pct"]),
                spread(w["rounds_overhead_us"], 0),
                over(c["overhead_us"], c["overhead_pct"]),
            ]
        )
    for kind in cfg["kinds"]:
        w, c = data["per_chunk"][kind]["wall"], data["per_chunk"][kind]["cpu"]
        small, large = w["from"]
        rows.append(
            [
                f"{kind} chunk (N={small}..{large})",
                us(w["baseline_us"], 2),
                "",
                over(w["overhead_us"], w["overhead_pct"], 2),
                spread(w["rounds_overhead_us"], 1),
                over(c["overhead_us"], c["overhead_pct"], 2),
            ]
        )
    header = ["", "baseline", "instrumented", "overhead", "rounds min..max", "overhead (CPU)"]
    print(table(rows, header))
    print(
        "  A chunk row: baseline = (base_N - base_1) / (N - 1); overhead = ((instr_N - base_N)"
        " - (instr_1 - base_1)) / (N - 1),\n  the per-streamed-call part taken out (the N=1 row "
        "is that part)."
    )


def print_instructions(cg: dict[str, Any], mode: str, cfg: dict[str, Any]) -> None:
    provider = providers.get(cfg["provider"])
    data = cg["modes"][mode]
    print(
        "Instructions per call (callgrind Ir): (Ir of 2K calls - Ir of K calls) / K after a "
        f"warm-up; K={cfg['k']} (K={cfg['k_big']} for streams of N>=100)"
    )
    rows = []
    for sc in callgrind_scenarios(provider, cfg):
        r = data["rows"][sc.key]
        rows.append(
            [
                sc.label,
                f"{r['baseline_ir'] / 1e3:,.0f} k",
                f"{r['instrumented_ir'] / 1e3:,.0f} k",
                over(r["overhead_ir"] / 1e3, r["overhead_pct"], 0, "k"),
            ]
        )
    for kind in cfg["kinds"]:
        r = data["per_chunk"][kind]
        small, large = r["from"]
        rows.append(
            [
                f"{kind} chunk (N={small}..{large})",
                f"{r['baseline_ir'] / 1e3:,.1f} k",
                f"{r['instrumented_ir'] / 1e3:,.1f} k",
                over(r["overhead_ir"] / 1e3, r["overhead_pct"], 2, "k"),
            ]
        )
    print(table(rows, ["", "baseline", "instrumented", "overhead"]))


def _modules(counts: dict[str, int]) -> str:
    return ", ".join(f"{name} {n}" for name, n in list(counts.items())[:6]) or "none"


def print_startup(wall: dict[str, Any], mode: str, what: str) -> None:
    st = wall["modes"][mode]["startup"]["startup"]
    mem = wall["modes"][mode]["startup"]["memory"]
    label = instrumentations.get(mode).setup or mode
    print(f"Start-up ({label}; fresh process with the SDK imported and the clients built; median)")
    rows = [
        ["import", f"{st['import_ms']:.1f} ms"],
        ["instrument()", f"{st['instrument_ms']:.1f} ms"],
        ["  modules they import", _modules(st["modules_imported"])],
        [
            f"first call ({what}), baseline",
            f"{st['first_call_baseline_ms']:.2f} ms (2nd: {st['second_call_baseline_ms']:.2f})",
        ],
        [
            f"first call ({what}), instrumented",
            f"{st['first_call_ms']:.2f} ms (2nd: {st['second_call_ms']:.2f})",
        ],
        ["first call, added", f"{st['first_call_added_ms']:+.2f} ms"],
        [
            "import + instrument() + first call, added",
            f"{st['instrument_and_first_call_added_ms']:+.1f} ms",
        ],
    ]
    print(table(rows))
    print(
        f"Memory (VmRSS; {mem['calls']} calls; span buffer emptied and gc.collect() before reading)"
    )
    rows = [
        ["import + instrument()", kib_mib(mem["instrument_kib"])],
        [f"{mem['calls']} calls, baseline", kib_mib(mem["calls_baseline_kib"])],
        [f"{mem['calls']} calls, instrumented", kib_mib(mem["calls_instrumented_kib"])],
        ["memory added (instrument + calls)", kib_mib(mem["total_added_kib"])],
        [
            "peak RSS, baseline / instrumented",
            f"{kib_mib(mem['maxrss_baseline_kib'], False)} / "
            f"{kib_mib(mem['maxrss_instrumented_kib'], False)}",
        ],
    ]
    print(table(rows))


def print_profile(prof: dict[str, Any]) -> None:
    for name in ("call", "stream"):
        data = prof[name]
        what = "sync call" if name == "call" else prof["stream_label"]
        print()
        print(
            f"cProfile, {what}: instrumented minus baseline, per operation, functions called "
            f"more often, by own time (sum {data['total_own_us_added']:+.0f} µs; cProfile "
            "inflates small functions: a ranking, not a measurement)"
        )
        rows = [
            [row["function"], f"{row['own_us_added']:+.1f}", f"{row['calls_added']:+.1f}"]
            for row in data["top"]
        ]
        print(table(rows, ["function", "own µs", "calls"]))


def provider_summary(results: dict[str, Any], mode: str = "ours") -> str:
    """One markdown row per provider: per-call and per-chunk overhead (wall, Ir), start-up, RSS."""
    header = [
        "provider",
        "per call, sync (wall)",
        "per call, async (wall)",
        "per chunk, sync (wall)",
        "per chunk, async (wall)",
        "per call, sync (Ir)",
        "per call, async (Ir)",
        "per chunk, sync (Ir)",
        "per chunk, async (Ir)",
        "instrument()",
        "RSS added",
    ]
    rows = []
    for name, res in results.items():
        wall = res["wall_clock"]["modes"][mode]
        cg = res.get("instructions", {}).get("modes", {}).get(mode)
        st = wall["startup"]
        row = [name]
        for kind in ("sync", "async"):
            r = wall["rows"][f"{kind}_call"]["wall"]
            row.append(f"{r['overhead_us']:+.0f} µs ({r['overhead_pct']:+.0f}%)")
        for kind in ("sync", "async"):
            r = wall["per_chunk"][kind]["wall"]
            row.append(f"{r['overhead_us']:+.2f} µs ({r['overhead_pct']:+.1f}%)")
        for kind in ("sync", "async"):
            if cg:
                r = cg["rows"][f"{kind}_call"]
                row.append(f"{r['overhead_ir'] / 1e3:+,.0f} k ({r['overhead_pct']:+.1f}%)")
            else:
                row.append("-")
        for kind in ("sync", "async"):
            if cg:
                r = cg["per_chunk"][kind]
                row.append(f"{r['overhead_ir'] / 1e3:+.1f} k ({r['overhead_pct']:+.1f}%)")
            else:
                row.append("-")
        row.append(f"{st['startup']['instrument_ms']:.0f} ms")
        row.append(kib_mib(st["memory"]["total_added_kib"]))
        rows.append(row)
    return markdown(rows, header)


def baseline_summary(results: dict[str, Any]) -> str:
    """The uninstrumented SDK's own cost, per provider (what the percentages are of)."""
    header = ["provider", "call, sync", "call, async", "chunk, sync", "chunk, async"]
    rows = []
    for name, res in results.items():
        wall = res["wall_clock"]["modes"]["ours"]
        cg = res.get("instructions", {}).get("baseline")
        row = [name]
        for kind in ("sync", "async"):
            text = f"{wall['rows'][f'{kind}_call']['wall']['baseline_us']:.0f} µs"
            if cg:
                text += f" / {cg[f'{kind}_call'] / 1e3:,.0f} k Ir"
            row.append(text)
        for kind in ("sync", "async"):
            chunk = wall["per_chunk"][kind]["wall"]
            text = f"{chunk['baseline_us']:.1f} µs"
            if cg:
                ir = res["instructions"]["modes"]["ours"]["per_chunk"][kind]["baseline_ir"]
                text += f" / {ir / 1e3:,.0f} k Ir"
            small, large = chunk["from"]
            row.append(text + f" (N={small}..{large})")
        rows.append(row)
    return markdown(rows, header)
