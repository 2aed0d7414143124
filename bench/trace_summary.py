"""Summarise a Chromium performance trace of one page load: where the main thread's time goes.

Reads a trace recorded by `browser.start_tracing` (bench_web.py --trace FILE) with the
DevTools timeline and V8 sampling-profiler categories, and prints, between the navigation and
the page's `ops:ready` mark (or the end of the trace):

- the page's own marks (`performance.mark("ops:…")`), relative to the navigation;
- the network waterfall: each request's start, end and encoded size, and the last one to end;
- main-thread time by kind (scripting, style and layout, paint and composite, parsing, GC,
  idle), as DevTools groups it, from the renderer main thread's trace events (self times);
- scripting by function and by script file (self time from the sampling profiler), and a few
  named buckets (marker creation, markercluster's clustering, boundaries, the feed).

Run: .venv/bin/python bench/trace_summary.py TRACE.json [TOP]
"""

from __future__ import annotations

import itertools
import json
import sys
from collections import defaultdict
from collections.abc import Iterable
from pathlib import Path
from typing import Any

# DevTools' grouping of main-thread trace events (self time of each event name).
KINDS = {
    "scripting": {
        "EvaluateScript",
        "v8.evaluateModule",
        "FunctionCall",
        "TimerFire",
        "EventDispatch",
        "FireAnimationFrame",
        "RunMicrotasks",
        "v8.compile",
        "v8.compileModule",
        "v8.produceModuleCache",
        "v8.produceCache",
        "CompileScript",
        "CompileCode",
        "V8.ParseOnBackground",
        "v8.parseOnBackground",
        "XHRReadyStateChange",
        "XHRLoad",
        "FireIdleCallback",
        "v8.run",
        "V8.Execute",
        "v8.callFunction",
    },
    "style & layout": {
        "UpdateLayoutTree",
        "RecalculateStyles",
        "Layout",
        "HitTest",
        "ScheduleStyleRecalculation",
        "InvalidateLayout",
        "UpdateLayerTree",
        "PrePaint",
        "IntersectionObserverController::computeIntersections",
    },
    "paint & composite": {
        "Paint",
        "PaintImage",
        "CompositeLayers",
        "Layerize",
        "Commit",
        "RasterTask",
        "UpdateLayer",
        "PaintSetup",
        "Decode Image",
        "ImageDecodeTask",
    },
    "parsing (HTML, CSS)": {"ParseHTML", "ParseAuthorStyleSheet"},
    "garbage collection": {
        "MajorGC",
        "MinorGC",
        "V8.GCScavenger",
        "V8.GCFinalizeMC",
        "V8.GCIncrementalMarking",
        "BlinkGC.AtomicPhase",
        "V8.GCCompactor",
        "GCEvent",
        "V8.GC_MC_BACKGROUND_MARKING",
        "BlinkGC.AtomicPauseMarkTransitiveClosure",
        "ThreadState::performIdleLazySweep",
        "V8.GCFinalizeMCReduceMemory",
        "V8.GC_SCAVENGER",
        "CppGC.AtomicMark",
    },
}
KIND_OF = {name: kind for kind, names in KINDS.items() for name in names}

# Named buckets of the sampled profile: a sample belongs to the first bucket whose test matches
# any frame of its stack (innermost first), else to its own script's file.
BUCKETS: list[tuple[str, Any]] = [
    ("markercluster: clustering (addLayers, _addLayer, grid)", lambda f, u: "markercluster" in u),
    (
        "boundaries: GeoJSON → polygons, projection",
        lambda f, u: (
            "leaflet.js" in u
            and (
                "geoJSON" in f.lower()
                or "Polygon" in f
                or "Polyline" in f
                or "Path" in f
                or "coordsTo" in f
                or "_project" in f
            )
        ),
    ),
    (
        "markers: creation and icons (operations.js)",
        lambda f, u: (
            "operations.js" in u and f in {"markerFor", "iconFor", "objects", "setSensors"}
        ),
    ),
]


def _load(path: Path) -> list[dict[str, Any]]:
    data = json.loads(path.read_text())
    return data["traceEvents"] if isinstance(data, dict) else data


def _main_thread(events: list[dict[str, Any]]) -> tuple[int, int]:
    """Return (pid, tid) of the page's renderer main thread: the one that marked `ops:ready`,
    else the renderer main thread that ran the most (Chromium's own pages have renderers too)."""
    for e in events:
        if e.get("name") == "ops:ready" and "blink.user_timing" in e.get("cat", ""):
            return e["pid"], e["tid"]
    mains = {
        (e["pid"], e["tid"])
        for e in events
        if e.get("ph") == "M"
        and e.get("name") == "thread_name"
        and e.get("args", {}).get("name") == "CrRendererMain"
    }
    busy: dict[tuple[int, int], float] = defaultdict(float)
    for e in events:
        key = (e.get("pid"), e.get("tid"))
        if key in mains and e.get("ph") == "X" and e.get("name") == "RunTask":
            busy[key] += e.get("dur", 0)
    return max(busy, key=busy.__getitem__) if busy else next(iter(mains))


def _self_times(events: Iterable[dict[str, Any]], start: float, end: float) -> dict[str, float]:
    """Self time (µs) per event name of complete ('X') events on one thread within [start, end]."""
    spans = sorted(
        (e for e in events if e.get("ph") == "X" and "dur" in e),
        key=lambda e: (e["ts"], -e["dur"]),
    )
    totals: dict[str, float] = defaultdict(float)
    stack: list[list[Any]] = []  # [end, name, child time, start]

    def close(until: float) -> None:
        while stack and stack[-1][0] <= until:
            finished_end, name, children, began = stack.pop()
            lo, hi = max(began, start), min(finished_end, end)
            if hi > lo:
                totals[name] += (hi - lo) - children
            if stack:
                stack[-1][2] += max(0.0, min(finished_end, end) - max(began, start))

    for e in spans:
        close(e["ts"])
        stack.append([e["ts"] + e["dur"], e["name"], 0.0, e["ts"]])
    close(float("inf"))
    return totals


Stack = list[tuple[str, str]]  # (function, url), innermost first


def _profile_samples(events: list[dict[str, Any]], pid: int, tid: int) -> list[tuple[float, Stack]]:
    """Return (timestamp µs, stack) of each sample of the main thread's V8 profile."""
    nodes: dict[int, tuple[str, str, int | None]] = {}
    samples: list[tuple[float, Stack]] = []
    profile_ids = {
        e["id"]
        for e in events
        if e.get("name") == "Profile" and e.get("pid") == pid and e.get("tid") == tid
    }
    chunks = [
        e
        for e in events
        if e.get("name") == "ProfileChunk"
        and e.get("pid") == pid
        and (e.get("id") in profile_ids or not profile_ids)
    ]
    start = next(
        (
            e["args"]["data"]["startTime"]
            for e in events
            if e.get("name") == "Profile" and e.get("id") in profile_ids
        ),
        None,
    )
    ts = float(start) if start is not None else float(chunks[0]["ts"]) if chunks else 0.0
    pending: list[tuple[float, int]] = []
    for chunk in sorted(chunks, key=lambda e: e["ts"]):
        data = chunk["args"]["data"]
        profile = data.get("cpuProfile", {})
        for node in profile.get("nodes", []):
            frame = node["callFrame"]
            nodes[node["id"]] = (
                frame.get("functionName") or "(anonymous)",
                frame.get("url", ""),
                node.get("parent"),
            )
        for node_id, delta in zip(
            profile.get("samples", []), data.get("timeDeltas", []), strict=False
        ):
            ts += delta
            pending.append((ts, node_id))
    for at, node_id in pending:
        stack = []
        current: int | None = node_id
        while current is not None and current in nodes:
            name, url, parent = nodes[current]
            stack.append((name, url))
            current = parent
        samples.append((at, stack))
    return samples


def _short(url: str) -> str:
    return url.rsplit("/", 1)[-1].split("?")[0] or url


def summarise(path: Path, top: int = 25) -> None:
    """Print the summary of one trace."""
    events = _load(path)
    pid, tid = _main_thread(events)
    main = [e for e in events if e.get("pid") == pid and e.get("tid") == tid]
    # Navigation: the document request; ready: the page's `ops:ready` mark.
    sends = [e for e in events if e.get("name") == "ResourceSendRequest"]
    document = next(
        (
            e
            for e in sends
            if e["args"]["data"].get("resourceType", "Document") == "Document"
            and "/static/" not in e["args"]["data"]["url"]
            and "/api/" not in e["args"]["data"]["url"]
        ),
        sends[0] if sends else main[0],
    )
    t0 = float(document["ts"])
    marks = sorted(
        (float(e["ts"]), e["name"])
        for e in events
        if str(e.get("name", "")).startswith("ops:")
        and e.get("ph") in ("R", "I", "n", "b", "X")
        and "blink.user_timing" in e.get("cat", "")
    )
    seen: dict[str, float] = {}
    for at, name in marks:
        seen.setdefault(name, at)
    end = seen.get("ops:ready", max(float(e["ts"]) + e.get("dur", 0) for e in main))
    print(f"trace {path.name}: navigation → ready {(end - t0) / 1000:.0f} ms")
    if seen:
        print("  marks: " + ", ".join(f"{n} {(at - t0) / 1000:.0f}" for n, at in seen.items()))

    # Network waterfall.
    by_id: dict[str, dict[str, Any]] = {}
    for e in events:
        data = e.get("args", {}).get("data", {})
        rid = data.get("requestId") if isinstance(data, dict) else None
        if not rid:
            continue
        row = by_id.setdefault(rid, {})
        if e["name"] == "ResourceSendRequest":
            row.update(url=data.get("url", ""), start=float(e["ts"]))
        elif e["name"] == "ResourceReceiveResponse":
            row["response"] = float(e["ts"])
        elif e["name"] == "ResourceFinish":
            row["end"] = float(data.get("finishTime", 0)) * 1e6 or float(e["ts"])
            row["bytes"] = data.get("encodedDataLength", 0)
    # The page's own requests (Chromium's pages in other renderers have theirs).
    origin = "/".join(document["args"]["data"]["url"].split("/", 3)[:3])
    rows = sorted(
        (r for r in by_id.values() if r.get("url", "").startswith(origin)),
        key=lambda r: r["start"],
    )
    print("  network (start → first byte → end ms, KB):")
    for r in rows:
        url = r["url"].split("//", 1)[-1].split("/", 1)[-1]
        first = f"{(r['response'] - t0) / 1000:6.0f}" if "response" in r else "     –"
        last = f"{(r['end'] - t0) / 1000:6.0f}" if "end" in r else "  open"
        began = (r["start"] - t0) / 1000
        print(f"    {began:6.0f} {first} {last} {r.get('bytes', 0) / 1024:7.1f}  /{url[:70]}")
    ended = [r for r in rows if "end" in r and r["end"] <= end]
    if ended:
        last = max(ended, key=lambda r: r["end"])
        path = last["url"].split("//", 1)[-1].split("/", 1)[-1]
        ended_at = (last["end"] - t0) / 1000
        print(f"  last request to end before ready: /{path[:70]} at {ended_at:.0f} ms")

    # Main thread by kind (self times, navigation → ready).
    selfs = _self_times(main, t0, end)
    kinds: dict[str, float] = defaultdict(float)
    for name, us in selfs.items():
        kinds[KIND_OF.get(name, "other (tasks, messaging)")] += us
    busy = sum(kinds.values())
    print(f"  main thread busy {busy / 1000:.0f} ms of {(end - t0) / 1000:.0f} ms:")
    for kind, us in sorted(kinds.items(), key=lambda kv: -kv[1]):
        print(f"    {kind:28s} {us / 1000:7.0f} ms")
    print(
        "  top event names (self ms): "
        + ", ".join(
            f"{n} {us / 1000:.0f}" for n, us in sorted(selfs.items(), key=lambda kv: -kv[1])[:12]
        )
    )

    # Sampled profile: self time per function and per script; named buckets.
    samples = [(at, stack) for at, stack in _profile_samples(events, pid, tid) if t0 <= at <= end]
    if not samples:
        print("  (no CPU profile samples in the trace)")
        return
    times = [at for at, _ in samples]
    weights = [b - a for a, b in itertools.pairwise(times)] + [0.0]
    by_function: dict[str, float] = defaultdict(float)
    by_script: dict[str, float] = defaultdict(float)
    buckets: dict[str, float] = defaultdict(float)
    for (_, stack), w in zip(samples, weights, strict=True):
        if not stack or stack[0][0] in ("(idle)", "(program)", "(root)"):
            key = stack[0][0] if stack else "(none)"
            by_function[key] += w
            continue
        name, url = stack[0]
        by_function[f"{name} ({_short(url)})" if url else name] += w
        script = next((_short(u) for _, u in stack if u), "(native)")
        by_script[script] += w
        bucket = next((label for label, test in BUCKETS if any(test(f, u) for f, u in stack)), None)
        buckets[bucket or f"other: {script}"] += w
    print("  scripting by bucket (sampled, ms):")
    for label, us in sorted(buckets.items(), key=lambda kv: -kv[1])[:12]:
        print(f"    {label:55s} {us / 1000:7.0f}")
    print(
        "  self time by script (sampled, ms): "
        + ", ".join(
            f"{s} {us / 1000:.0f}"
            for s, us in sorted(by_script.items(), key=lambda kv: -kv[1])[:10]
        )
    )
    print(f"  top {top} functions by self time (sampled, ms):")
    for name, us in sorted(by_function.items(), key=lambda kv: -kv[1])[:top]:
        print(f"    {us / 1000:7.1f}  {name}")


if __name__ == "__main__":
    summarise(Path(sys.argv[1]), int(sys.argv[2]) if len(sys.argv) > 2 else 25)
