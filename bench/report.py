"""The bench's same-run ratios, the issue's targets and the printed summary table."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from bench.peer_kstreams import WORKLOADS as KS_WORKLOADS
from bench.peers import FAUST_TUNED, QUIX_EMITS, quix_label

NAME = 72
"""Width of the name column of the table."""
RULE = "-" * 120

COMMIT_INTERVAL_MS = 200
"""Weir's default commit interval, under which the latency section runs."""


def _get(d: dict[str, Any], *path: str) -> float | None:
    cur: Any = d
    for p in path:
        if not isinstance(cur, dict) or p not in cur:
            return None
        cur = cur[p]
    return float(cur) if isinstance(cur, int | float) else None


def _ratio(a: float | None, b: float | None) -> float | None:
    return round(a / b, 3) if a is not None and b else None


def ratios_and_targets(res: dict[str, Any]) -> None:
    """Same-run ratios and the issue's targets (met / not met / not measured)."""
    raw = _get(res, "raw", "consume", "records_per_s")
    eos = _get(res, "weir", "tumbling", "exactly_once", "records_per_s")
    faust_runs = [
        _get(res, "peers", "faust", label, "records_per_s")
        for label in ("table_tumbling_at_least_once", FAUST_TUNED)
    ]
    faust_w = max((f for f in faust_runs if f is not None), default=None)  # the faster faust
    faust_c = _get(res, "peers", "faust", "table_count_at_least_once", "records_per_s")
    ratios: dict[str, float | None] = {}
    for name, gs in res.get("weir", {}).items():
        for g, fig in gs.items():
            ratios[f"weir_{g}_{name} / raw_consume"] = _ratio(fig["records_per_s"], raw)
    alo = _get(res, "weir", "tumbling", "at_least_once", "records_per_s")
    for emit in QUIX_EMITS:  # .current(): every update, as Weir's; .final(): closed windows
        for g, weir_g in (("exactly-once", eos), ("at-least-once", alo)):
            label = quix_label(emit, g)
            quix = _get(res, "peers", "quixstreams", label, "records_per_s")
            ratios[f"weir_{g.replace('-', '_')}_tumbling / quixstreams_{label}"] = _ratio(
                weir_g, quix
            )
    ratios["weir_exactly_once_tumbling / faust_tumbling_table (faster faust)"] = _ratio(
        eos, faust_w
    )
    ratios["weir_at_least_once_tumbling / faust_tumbling_table (faster faust)"] = _ratio(
        alo, faust_w
    )
    ratios["weir_at_least_once_tumbling / faust_count_table"] = _ratio(alo, faust_c)
    ratios["weir_exactly_once / at_least_once (tumbling)"] = _ratio(eos, alo)
    expr_ratios = _expression_ratios(res)
    ratios.update(expr_ratios)
    ks_ratios = _kstreams_ratios(res)
    ratios.update(ks_ratios)
    res["ratios"] = ratios
    replay_t = _get(res, "replay", "tumbling", "records_per_s")
    p99 = _get(res, "latency", "p99_ms")
    lat_rate = _get(res, "latency", "rate")

    def verdict(value: float | None, ok: bool | None, note: str = "") -> dict[str, Any]:
        status = "not measured" if value is None else ("met" if ok else "not met")
        return {"value": value, "status": status, **({"note": note} if note else {})}

    r1 = ratios["weir_exactly_once_tumbling / quixstreams_tumbling_current_exactly_once"]
    r1f = ratios["weir_exactly_once_tumbling / quixstreams_tumbling_final_exactly_once"]
    r2 = ratios["weir_exactly_once_tumbling / faust_tumbling_table (faster faust)"]
    r3 = _ratio(eos, raw)
    quix_best = max((r for r in (r1, r1f) if r is not None), default=None)
    res["targets"] = {
        "weir_eos_tumbling >= 10x quixstreams exactly-once (faster of .current/.final)": verdict(
            quix_best,
            quix_best is not None and quix_best >= 10,
            "quixstreams at whichever of its two emits is faster",
        ),
        "weir_eos_tumbling >= 5x faust": verdict(r2, r2 is not None and r2 >= 5),
        "weir_eos_tumbling >= 0.75 of raw consume": verdict(r3, r3 is not None and r3 >= 0.75),
        "replay tumbling >= 300,000 events/s": verdict(
            replay_t, replay_t is not None and replay_t >= 300_000
        ),
        "expressions >= lambdas (worst ratio of the pairs above)": verdict(
            min(expr_ratios.values(), default=None),  # type: ignore[type-var]
            all(r is not None and r >= 1 for r in expr_ratios.values()),
            "within the noise of one run when about 1",
        ),
        **{
            f"weir_eos_{w} >= 1.5x kstreams eos second half": verdict(
                ks_ratios[_ks_label(w)],
                (ks_ratios[_ks_label(w)] or 0) >= 1.5,
                "Kafka Streams after JIT warm-up",
            )
            for w in KS_WORKLOADS
        },
        **_memory_targets(res, verdict),
        "p99 latency <= 2x commit interval at 20k rec/s": verdict(
            p99,
            p99 is not None and p99 <= 2 * COMMIT_INTERVAL_MS and lat_rate == 20_000,
            "" if lat_rate in (None, 20_000) else f"measured at the fallback rate {lat_rate:.0f}/s",
        ),
    }


def _memory_targets(res: dict[str, Any], verdict: Callable[..., Any]) -> dict[str, Any]:
    """The issue's memory bounds: a worker holding 1,000,000 keys in RocksDB, and the memory
    store per 1,000,000 keys."""
    rs = res.get("restore", {})
    keys = rs.get("keys")
    rocks = rs.get("rocksdb_worker_peak_rss_bytes")
    rocks_mib = None if rocks is None else round(rocks / 2**20, 1)
    mem = rs.get("memory_store_rss_delta_bytes_per_1m_keys")
    mem_mib = None if mem is None else round(mem / 2**20, 1)
    at = "" if keys in (None, 1_000_000) else f"measured at {keys:,} keys"
    return {
        "worker RSS with 1M keys in RocksDB < 300 MiB": verdict(
            rocks_mib, rocks_mib is not None and rocks_mib < 300 and keys == 1_000_000, at
        ),
        "memory store < 200 MiB per 1M keys": verdict(
            mem_mib, mem_mib is not None and mem_mib < 200, at
        ),
    }


def _ks_label(workload: str, half: bool = True) -> str:
    run = "second half" if half else "whole run"
    return f"weir_eos_{workload} / kstreams_eos_{workload} ({run})"


def _kstreams_ratios(res: dict[str, Any]) -> dict[str, float | None]:
    """Weir's exactly_once rate over Kafka Streams' (exactly_once_v2), per workload, against
    its second-half rate and its whole-run rate."""
    out: dict[str, float | None] = {}
    for w in KS_WORKLOADS:
        weir = _get(res, "weir", w, "exactly_once", "records_per_s")
        for half, field in ((True, "records_per_s_second_half"), (False, "records_per_s")):
            ks = _get(res, "kstreams", w, "exactly_once", field)
            out[_ks_label(w, half)] = _ratio(weir, ks)
    return out


def _expression_ratios(res: dict[str, Any]) -> dict[str, float | None]:
    """Each pipeline written with expressions over the same one with lambdas, per guarantee
    and in replay: "<name>_expr" beside "<name>"."""
    out: dict[str, float | None] = {}
    for name in res.get("weir", {}):
        if name.endswith("_expr") and name[:-5] in res["weir"]:
            for g in res["weir"][name]:
                out[f"weir_{g}_{name} / weir_{g}_{name[:-5]}"] = _ratio(
                    _get(res, "weir", name, g, "records_per_s"),
                    _get(res, "weir", name[:-5], g, "records_per_s"),
                )
    for name in res.get("replay", {}):
        if name.endswith("_expr"):
            out[f"replay_{name} / replay_{name[:-5]}"] = _ratio(
                _get(res, "replay", name, "records_per_s"),
                _get(res, "replay", name[:-5], "records_per_s"),
            )
    return out


def table(res: dict[str, Any]) -> str:
    """The human-readable summary."""
    lines: list[str] = []
    m = res["machine"]
    lines.append(
        f"Weir bench: {res['config']['records']:,} records x {res['config']['runs']} runs "
        f"(median; the peers process the same {res['config']['records']:,} records), "
        f"{m['nproc']} CPUs {m['cpu_model']}, Python {m['python']}"
    )
    lines.append(f"{'figure':<{NAME}} {'value':>16}  note")
    lines.append(RULE)

    def row(name: str, value: float | None, unit: str = "rec/s", note: str = "") -> None:
        v = "-" if value is None else f"{value:,.0f} {unit}" if unit else f"{value:,.3f}"
        lines.append(f"{name:<{NAME}} {v:>16}  {note}")

    row(
        "raw aiokafka consume (getmany + orjson.loads)",
        _get(res, "raw", "consume", "records_per_s"),
    )
    row("raw aiokafka produce (send_batch)", _get(res, "raw", "produce", "records_per_s"))
    for name, gs in res.get("weir", {}).items():
        for g, fig in gs.items():
            row(f"weir {name} {g}", fig["records_per_s"], note=" ".join(fig["check"])[:60])
    for peer in ("quixstreams", "faust"):
        for label, fig in res.get("peers", {}).get(peer, {}).items():
            if "error" in fig:
                lines.append(f"{peer + ' ' + label:<{NAME}} {'n/a':>16}  {fig['error'][:100]}")
            else:
                row(f"{peer} {label}", fig["records_per_s"], note=" ".join(fig.get("check", [])))
    for w, gs in res.get("kstreams", {}).items():
        for g, fig in gs.items() if isinstance(gs, dict) else ():
            if "error" in fig:
                lines.append(
                    f"{'kstreams ' + w + ' ' + g:<{NAME}} {'n/a':>16}  {fig['error'][:100]}"
                )
            else:
                half = f"2nd half {fig['records_per_s_second_half']:,.0f}/s"
                row(
                    f"kstreams {w} {g}",
                    fig["records_per_s"],
                    note=f"{half} {' '.join(fig['check'])}"[:60],
                )
    for name, fig in res.get("replay", {}).items():
        if isinstance(fig, dict):
            row(f"replay {name}", fig["records_per_s"], "ev/s")
    for name, fig in res.get("course", {}).items():
        note = f"replay {fig['replay_events_per_s']:,} ev/s, {fig['events']:,} events"
        row(f"course {name}: worker EOS", fig["worker_events_per_s"], "ev/s", note)
    lat = res.get("latency", {})
    if "p99_ms" in lat:
        note = "fallback rate" if lat["fallback"] else ""
        row(f"latency p50 @ {lat['rate']:,}/s (EOS, 200 ms commit)", lat["p50_ms"], "ms", note)
        row(f"latency p99 @ {lat['rate']:,}/s (EOS, 200 ms commit)", lat["p99_ms"], "ms", note)
    rs = res.get("restore", {})
    if rs:
        row(f"restore {rs['keys']:,} keys from changelog", rs["restore_seconds"], "s")
        row("restore rate", rs["restore_records_per_s"], "rec/s")
        row("RocksDB on disk per 1M keys", rs["rocksdb_disk_bytes_per_1m_keys"] / 2**20, "MiB")
        row(
            "memory-store RSS delta per 1M keys",
            rs["memory_store_rss_delta_bytes_per_1m_keys"] / 2**20,
            "MiB",
        )
        row(
            f"worker peak RSS, {rs['keys']:,} keys in RocksDB",
            rs["rocksdb_worker_peak_rss_bytes"] / 2**20,
            "MiB",
        )
    lines.append(RULE)
    for name, value in res.get("ratios", {}).items():
        row(name, value, unit="")
    lines.append(RULE)
    for name, t in res.get("targets", {}).items():
        v = t["value"]
        shown = "-" if v is None else f"{v:,.3f}"
        lines.append(f"{name:<{NAME}} {shown:>16}  {t['status'].upper()} {t.get('note', '')}")
    return "\n".join(lines)
