#!/usr/bin/env python3
"""The report of `make bench`: merges the sections the bench binaries wrote into one JSON file,
draws the plot, and prices the measured requests.

    python3 tests/bench_report.py [--dir target/bench] [--docs]

Reads every `<dir>/*.json` but `results.json` (replicate.json and backfill.json from the
bench binaries, read.json when the read-path bench wrote one) and writes:

- `<dir>/results.json`: the sections under their names, with the cost table;
- `<dir>/bench.svg`: latency and requests against the number of targets, backfill throughput
  per tool against the server's raw copy capacity, and what a 10 MiB multipart source costs;
- `<dir>/report.md`: the goal figures and the cost table, also printed.

With `--docs` it also copies the plot to `docs/bench.svg` and replaces the block between
`<!-- bench:begin -->` and `<!-- bench:end -->` in docs/performance.md with `report.md`, so the
published figures are always those of a run. Standard library only.
"""

import argparse
import datetime
import html
import json
import os
import platform
import sys

# S3 Standard request prices, us-east-1, per request (list prices, per 1,000 on the page):
# PUT, COPY, POST, LIST $0.005; GET, SELECT and all other requests (HEAD included) $0.0004;
# DELETE free. Source: https://aws.amazon.com/s3/pricing/ ("Requests & data retrievals").
PRICE_PUT = 0.005 / 1000
PRICE_GET = 0.0004 / 1000
# CRR writes each object to each destination with one replication PUT, charged at the PUT rate
# of the destination's storage class; S3 RTC adds a per-GB fee (pricing page, "Replication").
RTC_PER_GB = 0.015
MILLION = 1_000_000


def load(directory):
    sections = {}
    for name in sorted(os.listdir(directory)):
        if not name.endswith(".json") or name == "results.json":
            continue
        with open(os.path.join(directory, name)) as f:
            sections[name[: -len(".json")]] = json.load(f)
    return sections


def fan_rows(results):
    return (results.get("replicate") or {}).get("fan_out", {}).get("rows", [])


def smallest_size(rows):
    return min((r["size"] for r in rows), default=None)


def row_at(rows, size, n):
    for r in rows:
        if r["size"] == size and r["targets"] == n:
            return r
    return None


def dollars(put, get):
    return put * PRICE_PUT * MILLION + get * PRICE_GET * MILLION


def cost_rows(results):
    """Requests per replicated object per target, by price class, and their price per million."""
    rows = []
    fan = fan_rows(results)
    size = smallest_size(fan)
    ns = sorted({r["targets"] for r in fan if r["size"] == size})

    def add(approach, requests, per, note=""):
        put = requests["class_put_copy_post_list"] / per
        get = requests["class_get_head"] / per
        rows.append(
            {
                "approach": approach,
                "put_copy_post_list": round(put * MILLION),
                "get_head": round(get * MILLION),
                "dollars": round(dollars(put, get), 2),
                "note": note,
            }
        )

    if ns:
        for n in sorted({ns[0], ns[-1]}):
            r = row_at(fan, size, n)
            add(f"s3fanout event, first delivery, N = {n}", r["first"]["requests"], n,
                "measured; the source's reads are shared by the N targets")
        r = row_at(fan, size, ns[-1])
        add(f"s3fanout event, overwrite, N = {ns[-1]}", r["overwrite"]["requests"], ns[-1], "measured")
        add(f"s3fanout duplicate delivery, N = {ns[-1]} (extra)", r["duplicate"]["requests"], ns[-1],
            "measured; paid on top, only for redelivered events")
    backfill = results.get("backfill") or {}
    for tool in backfill.get("tools", []):
        if tool.get("id") == "s3fanout" and "first_requests_per_replica" in tool:
            add(f"s3fanout backfill, first run, {backfill['targets']} targets",
                tool["first_requests_per_replica"], 1, "measured; listings included")
    rows.append(
        {
            "approach": "S3 Cross-Region Replication (CRR)",
            "put_copy_post_list": MILLION,
            "get_head": 0,
            "dollars": round(dollars(1, 0), 2),
            "note": "one replication PUT per object and destination; plus versioning on both "
            f"buckets (noncurrent versions are stored and billed), plus ${RTC_PER_GB}/GB with S3 RTC",
        }
    )
    return rows


def fmt(v, digits=2):
    if v is None:
        return "-"
    if isinstance(v, float):
        return f"{v:.{digits}f}"
    return str(v)


def report_md(results):
    out = []
    rep = results.get("replicate") or {}
    rtt = rep.get("rtt_ms", 30)
    fan = fan_rows(results)
    if fan:
        out.append(f"**Replicate latency and requests** (one object, event with ETag and size, {rtt} ms added per request; median):\n")
        out.append("| object | N | first delivery | round trips | requests: read / copy / other | duplicate: requests, copies | overwrite: round trips, requests |")
        out.append("|---|---|---|---|---|---|---|")
        for r in fan:
            f, d, o = r["first"], r["duplicate"], r["overwrite"]
            q = f["requests"]
            out.append(
                f"| {size_label(r['size'])} | {r['targets']} | {f['median_ms']:.0f} ms | {f['round_trips']:.2f} "
                f"| {fmt(q['total'], 0)}: {fmt(q['reads'], 0)} / {fmt(q['copies'], 0)} / {fmt(q['other'], 0)} "
                f"| {fmt(d['requests']['total'], 0)}, {'some' if d.get('copies_made') else 'none'} "
                f"| {o['round_trips']:.2f}, {fmt(o['requests']['total'], 0)} |"
            )
        fo = rep["fan_out"]
        ratios = fo.get("ratio_most_over_one", [])
        if ratios:
            out.append("")
            out.append("N targets against one: " + ", ".join(
                f"{size_label(x['size'])} {x['ratio']:.2f}x in all"
                + (f", {x['ratio_latency_only']:.2f}x from the added latency alone"
                   if x.get("ratio_latency_only") is not None else "")
                + f" ({x['targets']} targets)" for x in ratios
            ) + ".")
        one = fo.get("goal_round_trips_one_target", 1.3)
        most = fo.get("goal_round_trips_most_targets", 1.5)
        out.append("")
        out.append(
            f"Goals for a first delivery: at most {one:g} round trips for one target and {most:g} for the most "
            "targets (one is the limit: a copy per target, all at once), at most N + 1 requests. The table's round "
            "trips include the local server's own time per request; `results.json` has the same from the added "
            "latency alone (`latency_only_round_trips`): "
            + ", ".join(
                f"{size_label(r['size'])} N = {r['targets']} {r['first']['latency_only_round_trips']:.2f}"
                for r in fan if r["first"].get("latency_only_round_trips") is not None
                and r["targets"] in (1, max(x["targets"] for x in fan))
            ) + ".")
        out.append("")
        ends = [r for r in fan if r["targets"] in (1, max(x["targets"] for x in fan))
                and r["overwrite"].get("latency_only_round_trips") is not None]
        if ends:
            out.append(
                f"Goals for an overwrite: at most {fo.get('goal_overwrite_round_trips', 3):g} round trips and "
                f"{fo.get('goal_overwrite_requests', '2N + 2')} requests. Measured from the added latency alone: "
                + "; ".join(
                    f"{size_label(r['size'])} N = {r['targets']}: {r['overwrite']['latency_only_round_trips']:.2f} "
                    f"round trips, {fmt(r['overwrite']['requests']['total'], 0)} requests"
                    for r in ends
                ) + ".")
            out.append("")
    mp = (rep.get("multipart_source") or {}).get("cases", [])
    if mp:
        out.append("**A 10 MiB source to one target**:\n")
        out.append("| source | s3fanout: method, requests, time | one CopyObject: requests, time | requests ratio | ETag kept |")
        out.append("|---|---|---|---|---|")
        for c in mp:
            e, s = c["engine"], c["single_copy_object"]
            out.append(
                f"| {c['label']} | {e['method']}, {fmt(e['requests']['total'], 0)}, {e['median_ms']:.0f} ms "
                f"| {fmt(s['requests']['total'], 0)}, {s['median_ms']:.0f} ms | {c['requests_ratio']:.1f}x "
                f"| {'yes' if e['etag_preserved'] else 'no'} |"
            )
        out.append("")
    memory = (rep.get("memory") or {}).get("rows", [])
    if memory:
        out.append("**Memory** (peak RSS of a fresh process replicating one object to one target, median of 3 runs):\n")
        out.append("| object | copy | peak RSS |")
        out.append("|---|---|---|")
        for m in memory:
            out.append(f"| {size_label(m['size'])} | {m['method']} | {m['peak_rss_mib']:.1f} MiB |")
        out.append("")
    batch = rep.get("batch") or {}
    if batch.get("rows"):
        out.append(f"**One invocation, {batch['messages']} SQS messages x {batch['targets']} targets**:\n")
        out.append("| configured concurrency | most requests in flight | time | objects/s | requests per object |")
        out.append("|---|---|---|---|---|")
        for b in batch["rows"]:
            out.append(
                f"| {b['concurrency']} | {b['max_in_flight']} | {b['median_ms']:.0f} ms | {b['objects_per_s']:.1f} "
                f"| {fmt(b['requests_per_object']['total'])} |"
            )
        out.append("")
    bf = results.get("backfill") or {}
    if bf.get("tools"):
        out.append(
            f"**Backfill**, {bf['objects']:,} objects to {bf['targets']} targets, {bf['latency_ms']} ms per request, "
            f"concurrency {bf['concurrency']}:\n"
        )
        out.append("| tool | first run | replicas/s | share of raw capacity | first-run requests: List / HEAD / copy | no-op run requests: List / HEAD / copy |")
        out.append("|---|---|---|---|---|---|")
        ref = bf.get("reference")
        if ref:
            out.append(
                f"| raw CopyObject capacity (reference) | {ref['seconds']:.1f} s | {ref['replicas_per_s']:.0f} | 1.00 | 0 / 0 / {ref['copies']:,} | |"
            )
        cond = bf.get("reference_as_backfill")
        if ref and cond:
            out.append(
                f"| the same copies as the backfill sends them: pinned, create-only, checksum (reference) "
                f"| {cond['seconds']:.1f} s | {cond['replicas_per_s']:.0f} | {ref['seconds'] / cond['seconds']:.2f} "
                f"| 0 / 0 / {cond['copies']:,} | |"
            )
        for t in bf["tools"]:
            if "error" in t:
                out.append(f"| {t['label']} | {t['error']} | | | | |")
                continue
            f, n = t["first_requests"], t["noop_requests"]
            out.append(
                f"| {t['label']} | {t['first_s']:.1f} s | {t['replicas_per_s']:.0f} | {fmt(t.get('share_of_raw_capacity'))} "
                f"| {fmt(f['list'], 0)} / {fmt(f['reads'], 0)} / {fmt(f['copies'], 0)} "
                f"| {fmt(n['list'], 0)} / {fmt(n['reads'], 0)} / {fmt(n['copies'], 0)} |"
            )
        out.append("")
        out.append(
            f"s3fanout reaches {fmt(bf.get('s3fanout_share_of_raw_capacity'))} of the raw copy capacity "
            f"(goal: {fmt(bf.get('goal_share', 0.95))}) and `s5cmd sync`, run once per target, takes "
            f"{fmt(bf.get('s5cmd_time_over_s3fanout'))}x its time (goal: {fmt(bf.get('goal_s5cmd', 1.15))}x)."
            + (f" Against copies carrying the backfill's own conditions it reaches "
               f"{fmt(bf['s3fanout_share_of_conditioned_capacity'])}."
               if bf.get("s3fanout_share_of_conditioned_capacity") else "")
            + "\n"
        )
    so = results.get("scale_out") or {}
    if so.get("rows"):
        out.append(
            f"**Backfill scale-out** (simulation, virtual time): {so['objects']:,} objects to {so['targets']} targets, "
            f"up to {so['latency_ms']} ms before and after each request, {so['prefix_writes_per_second']:,} writes/s "
            f"per prefix at each target, COPY_CONCURRENCY {so['concurrency']} per chain:\n"
        )
        out.append("| layout | chains | time | copies/s | speed-up | SlowDown answers |")
        out.append("|---|---|---|---|---|---|")
        base = {}
        for r in so["rows"]:
            one = base.setdefault(r["layout"], r["copies_per_s"])
            out.append(
                f"| {r['layout']} | {r['chains']} | {r['seconds']:.1f} s | {r['copies_per_s']:,.0f} "
                f"| {r['copies_per_s'] / one:.2f}x | {r['slowed_down']:,} |"
            )
        out.append("")
    rows = results.get("cost", [])
    if rows:
        out.append("**Cost per million replicated objects per target** (S3 Standard, us-east-1 list prices: "
                   "PUT/COPY/POST/LIST $0.005 per 1,000, GET/HEAD $0.0004 per 1,000; requests only):\n")
        out.append("| approach | PUT/COPY/POST/LIST | GET/HEAD | requests cost | also |")
        out.append("|---|---|---|---|---|")
        for r in rows:
            out.append(
                f"| {r['approach']} | {r['put_copy_post_list']:,} | {r['get_head']:,} | ${r['dollars']:.2f} | {r['note']} |"
            )
        out.append("")
    return "\n".join(out)


def size_label(size):
    mib = 1024 * 1024
    if size >= mib and size % mib == 0:
        return f"{size // mib} MiB"
    if size >= 1024 and size % 1024 == 0:
        return f"{size // 1024} KiB"
    return f"{size} B"


# ---- the plot: four panels, hand-written SVG ----

COLORS = ["#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#7f7f7f"]


class Panel:
    """A plotting area with linear axes, at (x, y) in the picture, w x h."""

    def __init__(self, svg, x, y, w, h, title, xlabel, ylabel):
        self.svg, self.x, self.y, self.w, self.h = svg, x, y, w, h
        self.left, self.right, self.top, self.bottom = x + 56, x + w - 14, y + 34, y + h - 44
        svg.append(text(x + w / 2, y + 18, title, size=14, anchor="middle", weight="bold"))
        svg.append(text((self.left + self.right) / 2, y + h - 10, xlabel, anchor="middle"))
        svg.append(
            f'<text x="{x + 14}" y="{(self.top + self.bottom) / 2}" font-size="12" text-anchor="middle" '
            f'transform="rotate(-90 {x + 14} {(self.top + self.bottom) / 2})">{html.escape(ylabel)}</text>'
        )

    def scale(self, x0, x1, y0, y1):
        self.x0, self.x1, self.y0, self.y1 = x0, x1, y0, y1

    def px(self, v):
        return self.left + (v - self.x0) / (self.x1 - self.x0) * (self.right - self.left)

    def py(self, v):
        return self.bottom - (v - self.y0) / (self.y1 - self.y0) * (self.bottom - self.top)

    def axes(self, xticks, yticks, xfmt=str, yfmt=str):
        s = self.svg
        s.append(line(self.left, self.bottom, self.right, self.bottom, "#333"))
        s.append(line(self.left, self.top, self.left, self.bottom, "#333"))
        for t in yticks:
            y = self.py(t)
            s.append(line(self.left, y, self.right, y, "#e6e6e6"))
            s.append(text(self.left - 6, y + 4, yfmt(t), anchor="end", size=11))
        for t in xticks:
            s.append(text(self.px(t), self.bottom + 16, xfmt(t), anchor="middle", size=11))

    def empty(self, why):
        self.svg.append(text(self.x + self.w / 2, self.y + self.h / 2, why, anchor="middle", fill="#888"))


def text(x, y, s, size=12, anchor="start", weight="normal", fill="#222"):
    return (
        f'<text x="{x:.1f}" y="{y:.1f}" font-size="{size}" text-anchor="{anchor}" font-weight="{weight}" '
        f'fill="{fill}">{html.escape(str(s))}</text>'
    )


def line(x1, y1, x2, y2, color, width=1, dash=None):
    d = f' stroke-dasharray="{dash}"' if dash else ""
    return f'<line x1="{x1:.1f}" y1="{y1:.1f}" x2="{x2:.1f}" y2="{y2:.1f}" stroke="{color}" stroke-width="{width}"{d}/>'


def polyline(points, color, width=2, dash=None, marker=True):
    d = f' stroke-dasharray="{dash}"' if dash else ""
    pts = " ".join(f"{x:.1f},{y:.1f}" for x, y in points)
    out = [f'<polyline points="{pts}" fill="none" stroke="{color}" stroke-width="{width}"{d}/>']
    if marker:
        out += [f'<circle cx="{x:.1f}" cy="{y:.1f}" r="3" fill="{color}"/>' for x, y in points]
    return "\n".join(out)


def rect(x, y, w, h, color):
    return f'<rect x="{x:.1f}" y="{y:.1f}" width="{max(w, 0):.1f}" height="{max(h, 0):.1f}" fill="{color}"/>'


def legend(svg, x, y, items):
    for i, (label, color, dash) in enumerate(items):
        yy = y + i * 15
        svg.append(line(x, yy - 4, x + 18, yy - 4, color, 2, dash))
        svg.append(text(x + 23, yy, label, size=11))


def text_width(s, size):
    """About how wide `s` is drawn at `size` px in Helvetica/Arial (0.6 em a character, the
    widest common average), so that labels can be placed clear of each other and of the edges."""
    return len(str(s)) * size * 0.6


def nice_max(v):
    """The smallest 1, 2, 2.5 or 5 times a power of ten that is at least `v`."""
    candidates = [step * 10**mag for mag in range(-1, 8) for step in (1, 2, 2.5, 5)]
    return min((m for m in candidates if m >= v), default=v)


def ticks(top, count=5):
    step = top / count
    return [step * i for i in range(count + 1)]


def num(v):
    return f"{v:.0f}" if abs(v - round(v)) < 1e-9 else f"{v:.1f}"


def plot(results):
    # Two rows of two panels in PH, a row for the scale-out below, and a strip for the stamp.
    W, PH = 1000, 760
    H = PH + PH // 2 + 18
    svg = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{W}" height="{H}" viewBox="0 0 {W} {H}" '
        'font-family="Helvetica, Arial, sans-serif">',
        f'<rect width="{W}" height="{H}" fill="white"/>',
    ]
    rep = results.get("replicate") or {}
    rtt = rep.get("rtt_ms", 30)
    fan = fan_rows(results)

    # 1. Latency against N, in round trips.
    p = Panel(svg, 0, 0, W / 2, PH / 2, f"Replicate latency ({rtt} ms per request)", "targets (N)", "round trips (time / RTT)")
    if fan:
        ns = sorted({r["targets"] for r in fan})
        sizes = sorted({r["size"] for r in fan})
        top = nice_max(max(max(r[k]["round_trips"] for k in ("first", "overwrite")) for r in fan) * 1.1)
        p.scale(0.5, ns[-1] + 0.5, 0, max(top, 2.5))
        p.axes(ns, ticks(p.y1), yfmt=num)
        series = []
        for i, s in enumerate(sizes):
            pts = [(p.px(r["targets"]), p.py(r["first"]["round_trips"])) for r in fan if r["size"] == s]
            svg.append(polyline(pts, COLORS[i]))
            series.append((f"first delivery, {size_label(s)}", COLORS[i], None))
        small = sizes[0]
        for key, color, label in (("overwrite", COLORS[2], "overwrite"), ("duplicate", COLORS[4], "duplicate")):
            pts = [(p.px(r["targets"]), p.py(r[key]["round_trips"])) for r in fan if r["size"] == small]
            svg.append(polyline(pts, color, dash="5,3"))
            series.append((f"{label}, {size_label(small)}", color, "5,3"))
        # The goal rises from one target's to the most targets'.
        fo = rep["fan_out"]
        one = fo.get("goal_round_trips_one_target", 1.3)
        most = fo.get("goal_round_trips_most_targets", 1.5)
        ns = sorted({r["targets"] for r in fan})
        svg.append(line(p.px(ns[0]), p.py(one), p.px(ns[-1]), p.py(most), COLORS[3], 1.5, "2,3"))
        series.append((f"goal: {one:g} to {most:g} round trips", COLORS[3], "2,3"))
        legend(svg, p.left + 10, p.top + 12, series)
    else:
        p.empty("no replicate figures")

    # 2. Requests per object against N.
    p = Panel(svg, W / 2, 0, W / 2, PH / 2, "Requests per object (first delivery)", "targets (N)", "requests")
    if fan:
        small = smallest_size(fan)
        rows = [r for r in fan if r["size"] == small]
        ns = [r["targets"] for r in rows]
        top = nice_max(max(max(r["first"]["requests"]["total"], r["targets"] + 1) for r in rows) * 1.15)
        p.scale(0.5, ns[-1] + 0.5, 0, top)
        p.axes(ns, ticks(top), yfmt=num)
        bw = (p.px(1.4) - p.px(1)) if len(ns) else 10
        for r in rows:
            q = r["first"]["requests"]
            base = 0
            for part, color in (("reads", COLORS[0]), ("copies", COLORS[1]), ("other", COLORS[6])):
                v = q[part]
                svg.append(rect(p.px(r["targets"]) - bw / 2, p.py(base + v), bw, p.py(base) - p.py(base + v), color))
                base += v
            svg.append(text(p.px(r["targets"]), p.py(base) - 4, num(base), size=10, anchor="middle"))
        dup = [(p.px(r["targets"]), p.py(r["duplicate"]["requests"]["total"])) for r in rows]
        svg.append(polyline(dup, COLORS[4], dash="5,3"))
        goal = [(p.px(n), p.py(n + 1)) for n in ns]
        svg.append(polyline(goal, COLORS[3], 2, "2,3", marker=False))
        svg.append(text(p.left + 10, p.top + 12, size_label(small), size=11, fill="#555"))
        items = [("reads (HEAD/GET)", COLORS[0], None), ("copies", COLORS[1], None), ("other", COLORS[6], None),
                 ("duplicate delivery", COLORS[4], "5,3"), ("goal: N + 1", COLORS[3], "2,3")]
        legend(svg, p.left + 10, p.top + 30, items)
    else:
        p.empty("no replicate figures")

    # 3. Backfill throughput per tool against the raw capacity.
    bf = results.get("backfill") or {}
    p = Panel(svg, 0, PH / 2, W / 2, PH / 2, "Backfill to 3 targets: throughput", "replicas per second", "")
    tools = [t for t in bf.get("tools", []) if "error" not in t]
    ref = bf.get("reference")
    if tools or ref:
        bars = ([("raw CopyObject (reference)", ref["replicas_per_s"])] if ref else []) + [
            (t["label"].split(" (")[0], t["replicas_per_s"]) for t in tools
        ]
        values = [f"{v:.0f}" + (f" ({v / ref['replicas_per_s']:.2f}x)" if ref else "") for _, v in bars]
        # The bar labels sit left of the axis: the axis starts after the longest of them.
        p.left = p.x + 10 + max(text_width(label, 11) for label, _ in bars) + 8
        # Room above the bars for the subtitle, then the goal's label.
        p.top = p.y + 60
        top = nice_max(max(v for _, v in bars) * 1.1)
        p.scale(0, top, 0, len(bars))
        # The value right of the longest bar must fit in the panel: widen the scale if not.
        while any(p.px(v) + 4 + text_width(t, 10) > p.right for (_, v), t in zip(bars, values)):
            top = nice_max(top * 1.01)
            p.scale(0, top, 0, len(bars))
        p.axes(ticks(top), [], xfmt=num)
        svg.append(text(p.x + p.w / 2, p.y + 34, f"{bf['objects']:,} objects, {bf['latency_ms']} ms per request",
                        size=10, anchor="middle", fill="#555"))
        goal_share = bf.get("goal_share", 0.95)
        goal_x = p.px(goal_share * ref["replicas_per_s"]) if ref else None
        bh = (p.bottom - p.top) / len(bars) * 0.65
        for i, ((label, v), value) in enumerate(zip(bars, values)):
            yc = p.top + (i + 0.5) * (p.bottom - p.top) / len(bars)
            color = "#999" if i == 0 and ref else COLORS[(i + 1) % len(COLORS)]
            svg.append(rect(p.left, yc - bh / 2, p.px(v) - p.left, bh, color))
            svg.append(text(p.left - 8, yc + 4, label, size=11, anchor="end"))
            x = p.px(v) + 4
            # A value the goal line would cross is moved to the line's right.
            if goal_x is not None and x - 4 <= goal_x <= x + text_width(value, 10) + 2:
                x = goal_x + 4
            svg.append(text(x, yc + 4, value, size=10))
        if goal_x is not None:
            svg.append(line(goal_x, p.top, goal_x, p.bottom, COLORS[3], 1.5, "2,3"))
            svg.append(text(goal_x, p.top - 6, f"goal: {goal_share:g} x raw", size=10, anchor="middle", fill=COLORS[3]))
    else:
        p.empty("no backfill figures")

    # 4. A 10 MiB source: requests of the engine against one CopyObject.
    mp = (rep.get("multipart_source") or {}).get("cases", [])
    p = Panel(svg, W / 2, PH / 2, W / 2, PH / 2, "A 10 MiB source to 1 target", "", "requests")
    if mp:
        groups = [(c["label"], c["engine"], c["single_copy_object"]) for c in mp]
        top = nice_max(max(max(e["requests"]["total"], s["requests"]["total"]) for _, e, s in groups) * 1.25)
        p.scale(0, len(groups), 0, top)
        p.axes([], ticks(top), yfmt=num)
        gw = (p.right - p.left) / len(groups)
        for i, (label, e, s) in enumerate(groups):
            x0 = p.left + i * gw
            for j, (name, m, color) in enumerate(((f"s3fanout ({e['method']})", e, COLORS[0]), ("1 CopyObject", s, "#999"))):
                v = m["requests"]["total"]
                bx = x0 + gw * (0.15 + 0.37 * j)
                svg.append(rect(bx, p.py(v), gw * 0.3, p.bottom - p.py(v), color))
                svg.append(text(bx + gw * 0.15, p.py(v) - 16, f"{num(v)} req", size=10, anchor="middle"))
                svg.append(text(bx + gw * 0.15, p.py(v) - 4, f"{m['median_ms']:.0f} ms", size=10, anchor="middle"))
                svg.append(text(bx + gw * 0.15, p.bottom + 14, name, size=8, anchor="middle"))
            svg.append(text(x0 + gw / 2, p.bottom + 28, f"10 MiB, {label}" + (", ETag kept" if e["etag_preserved"] else ""),
                            size=11, anchor="middle"))
    else:
        p.empty("no multipart figures")

    # 5. A split backfill's throughput against its chains, per key layout.
    so = results.get("scale_out") or {}
    p = Panel(svg, 0, PH, W, PH / 2, "Backfill scale-out (simulation, virtual time)", "chains", "copies per second")
    if so.get("rows"):
        chains = sorted({r["chains"] for r in so["rows"]})
        layouts = list(dict.fromkeys(r["layout"] for r in so["rows"]))
        ceiling = so["targets"] * so["prefix_writes_per_second"]
        top = nice_max(max(max(r["copies_per_s"] for r in so["rows"]), ceiling) * 1.15)
        # Chains double: evenly spaced positions, labelled with the counts.
        p.scale(-0.5, len(chains) - 0.5, 0, top)
        p.axes(list(range(len(chains))), ticks(top), xfmt=lambda i: str(chains[i]), yfmt=num)
        series = []
        for i, layout in enumerate(layouts):
            rows = sorted((r for r in so["rows"] if r["layout"] == layout), key=lambda r: r["chains"])
            pts = [(p.px(chains.index(r["chains"])), p.py(r["copies_per_s"])) for r in rows]
            svg.append(polyline(pts, COLORS[i]))
            series.append((layout, COLORS[i], None))
        svg.append(line(p.left, p.py(ceiling), p.right, p.py(ceiling), COLORS[3], 1.5, "2,3"))
        series.append((f"one prefix's ceiling: {so['targets']} targets x {so['prefix_writes_per_second']:,} writes/s",
                       COLORS[3], "2,3"))
        legend(svg, p.left + 10, p.top + 12, series)
    else:
        p.empty("no scale-out figures")

    stamp = results.get("generated_at", "")
    svg.append(text(W - 8, H - 5, f"make bench, {stamp}, local S3 server (moto)", size=9, anchor="end", fill="#888"))
    svg.append("</svg>")
    return "\n".join(svg) + "\n"


def replace_block(path, block):
    begin, end = "<!-- bench:begin -->", "<!-- bench:end -->"
    with open(path) as f:
        readme = f.read()
    if begin not in readme or end not in readme:
        sys.exit(f"{path} has no {begin} ... {end} block")
    head, rest = readme.split(begin, 1)
    _, tail = rest.split(end, 1)
    with open(path, "w") as f:
        f.write(f"{head}{begin}\n{block}\n{end}{tail}")


def main():
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--dir", default=os.environ.get("BENCH_DIR", os.path.join(root, "target", "bench")))
    ap.add_argument("--docs", action="store_true", help="also refresh docs/bench.svg and docs/performance.md")
    args = ap.parse_args()

    sections = load(args.dir)
    if not sections:
        sys.exit(f"no sections in {args.dir}: run the bench binaries first (make bench)")
    results = dict(sections)
    results["generated_at"] = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    results["machine"] = {"cpus": os.cpu_count(), "platform": platform.platform()}
    results["prices"] = {
        "put_copy_post_list_per_1000": PRICE_PUT * 1000,
        "get_head_per_1000": PRICE_GET * 1000,
        "rtc_per_gb": RTC_PER_GB,
        "source": "https://aws.amazon.com/s3/pricing/ (S3 Standard, US East (N. Virginia))",
    }
    results["cost"] = cost_rows(results)
    with open(os.path.join(args.dir, "results.json"), "w") as f:
        json.dump(results, f, indent=2)
        f.write("\n")
    picture = plot(results)
    with open(os.path.join(args.dir, "bench.svg"), "w") as f:
        f.write(picture)
    md = report_md(results)
    with open(os.path.join(args.dir, "report.md"), "w") as f:
        f.write(md + "\n")
    print(md)
    print(f"wrote {os.path.join(args.dir, 'results.json')} and bench.svg (sections: {', '.join(sections)})")
    if args.docs:
        os.makedirs(os.path.join(root, "docs"), exist_ok=True)
        with open(os.path.join(root, "docs", "bench.svg"), "w") as f:
            f.write(picture)
        replace_block(os.path.join(root, "docs", "performance.md"), md)
        print("refreshed docs/bench.svg and the figures in docs/performance.md")


if __name__ == "__main__":
    main()
