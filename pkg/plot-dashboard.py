#!/usr/bin/env python3
"""Plots the panels of xdpgw's Grafana dashboard from a Prometheus HTTP API
into a PNG with gnuplot: the same PromQL, over the last minutes.

    plot-dashboard.py PROMETHEUS_URL DASHBOARD_JSON OUT_PNG [MINUTES]

Grafana's variables get the values Grafana would give them
($__rate_interval: 1m, $__range: 5m, $instance: all). The time-series panels
are drawn in the dashboard's grid order, two per row (series that stay 0
are left out); the stat panel (the build) becomes the title. vm-tests/tests/dashboard.rs runs it with
XDPGW_DASHBOARD_PNG set.
"""
import json
import os
import re
import subprocess
import sys
import tempfile
import time
import urllib.parse
import urllib.request


def expand(expr):
    return (expr.replace("$__rate_interval", "1m")
            .replace("$__range", "5m")
            .replace("$instance", ".*"))


def api(base, path, **params):
    url = base + path + "?" + urllib.parse.urlencode(params)
    with urllib.request.urlopen(url, timeout=30) as r:
        body = json.load(r)
    if body.get("status") != "success":
        raise SystemExit(f"{url}: {body}")
    return body["data"]


def legend(fmt, metric):
    return re.sub(r"\{\{\s*(\w+)\s*\}\}", lambda m: metric.get(m.group(1), ""), fmt)


def quote(s):
    return '"' + s.replace("\\", "\\\\").replace('"', '\\"') + '"'


def main():
    base, dash_file, out = sys.argv[1:4]
    minutes = float(sys.argv[4]) if len(sys.argv) > 4 else 1.0
    with open(dash_file) as f:
        dash = json.load(f)
    with tempfile.TemporaryDirectory(prefix="xdpgw-plot.") as work:
        plot(base, dash, out, minutes, work)


def plot(base, dash, out, minutes, work):
    end = time.time()
    start = end - minutes * 60
    panels = sorted(dash["panels"], key=lambda p: (p["gridPos"]["y"], p["gridPos"]["x"]))
    title = dash["title"]
    series_panels = []
    for p in panels:
        if p["type"] == "stat":
            t = p["targets"][0]
            res = api(base, "/api/v1/query", query=expand(t["expr"]))["result"]
            if res:
                title = "xdpgw dashboard - " + "; ".join(
                    legend(t["legendFormat"], r["metric"]) for r in res)
            continue
        lines = []
        for t in p["targets"]:
            res = api(base, "/api/v1/query_range", query=expand(t["expr"]),
                      start=f"{start:.3f}", end=f"{end:.3f}", step="1")["result"]
            for r in res:
                if all(float(v) == 0 for _, v in r["values"]):
                    continue
                path = os.path.join(work, f"s{len(os.listdir(work))}.dat")
                with open(path, "w") as f:
                    for ts, v in r["values"]:
                        f.write(f"{float(ts) - end:.3f} {v}\n")
                lines.append((path, legend(t.get("legendFormat", ""), r["metric"])))
        series_panels.append((p["title"], p.get("fieldConfig", {}).get("defaults", {}).get("unit", ""), lines))

    rows = (len(series_panels) + 1) // 2
    gp = [
        f"set terminal pngcairo size 1600,{rows * 360 + 60} font 'DejaVu Sans,10'",
        f"set output {quote(out)}",
        f"set multiplot layout {rows},2 title {quote(title)} font ',14'",
        "set termoption noenhanced",
        "set grid",
        "set key top left font ',8' maxrows 6",
        "set xlabel 'seconds'",
        f"set xrange [{-minutes * 60:.0f}:0]",
        "set format y '%g'",
    ]
    for name, unit, lines in series_panels:
        gp.append(f"set title {quote(name + (' (' + unit + ')' if unit else ''))}")
        if not lines:
            gp.append("set yrange [0:1]")
            gp.append("plot 0 with lines lw 2 title 'all series 0'")
            gp.append("set autoscale y")
            continue
        plots = [f"{quote(path)} using 1:2 with lines lw 2 title {quote(leg[:60])}" for path, leg in lines]
        gp.append("plot " + ", ".join(plots))
    gp.append("unset multiplot")
    script = os.path.join(work, "plot.gp")
    with open(script, "w") as f:
        f.write("\n".join(gp) + "\n")
    subprocess.run(["gnuplot", script], check=True)


if __name__ == "__main__":
    main()
