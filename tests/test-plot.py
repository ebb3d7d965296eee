#!/usr/bin/env python3
"""test-plot.py: upecho-bench's --hgrm, --json curve and timeline, and --plot, against upechod.

One real run writes the JSON summary, the .hgrm file and an SVG; a second
run gives a second JSON for a comparison plot.  The checks: the .hgrm
follows HdrHistogram's format and its percentiles match the JSON summary's;
the timeline adds up to the totals; the SVG is well-formed XML and each
plotted point is where the numbers say; a two-run plot holds both series;
bad inputs exit with the documented status.

$UPECHOD and $UPECHO_BENCH name the programs; the daemon is started as
test-seed.py starts it.
"""

import importlib.util
import json
import math
import os
import re
import subprocess
import tempfile
import unittest
import xml.etree.ElementTree as ET

HERE = os.path.dirname(os.path.abspath(__file__))
SVG = "{http://www.w3.org/2000/svg}"
RUN_TIMEOUT = 60
# The histogram's buckets are at most 1/128 of their value wide; a bucket's
# middle is reported, so two reports of one bucket differ by less than this.
BUCKET = 1.0 / 128


def load_seed_daemon():
    """The Daemon class of test-seed.py: upechod on port 0, ports read from its log."""
    spec = importlib.util.spec_from_file_location("test_seed", os.path.join(HERE, "test-seed.py"))
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod.Daemon


def bench(*args, check=True):
    exe = os.environ.get("UPECHO_BENCH")
    if not exe:
        raise RuntimeError("UPECHO_BENCH is not set to upecho-bench's path")
    r = subprocess.run([exe, *args], capture_output=True, text=True, timeout=RUN_TIMEOUT)
    if check and r.returncode != 0:
        raise AssertionError(f"upecho-bench {args} exited {r.returncode}:\n{r.stderr}")
    return r


def read_hgrm(path):
    """(rows, footer): rows of (value ms, percentile 0-1, total count); footer lines."""
    with open(path) as f:
        lines = f.read().splitlines()
    head = lines[0].split()
    assert head == ["Value", "Percentile", "TotalCount", "1/(1-Percentile)"], lines[0]
    assert lines[1] == "", "no blank line after the header"
    rows, footer = [], []
    for line in lines[2:]:
        if line.startswith("#["):
            footer.append(line)
            continue
        cols = line.split()
        assert len(cols) in (3, 4), line
        value, pct, count = float(cols[0]), float(cols[1]), int(cols[2])
        if len(cols) == 4:
            assert abs(float(cols[3]) - 1 / (1 - pct)) < 0.01 * float(cols[3]) + 0.01, line
        else:
            assert pct == 1.0, "only the 100% line lacks 1/(1-Percentile): " + line
        rows.append((value, pct, count))
    return rows, footer


def hgrm_bracket(rows, percent):
    """The values of the last line at or below percent and the first at or above it."""
    below = [v for v, p, _ in rows if p * 100 <= percent + 1e-9]
    above = [v for v, p, _ in rows if p * 100 >= percent - 1e-9]
    return below[-1], above[0]


def near(a, b, rel=BUCKET):
    return abs(a - b) <= rel * max(abs(a), abs(b)) + 1e-6


class Plots(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.daemon = load_seed_daemon()()
        cls.tmp = tempfile.TemporaryDirectory(prefix="upecho-plot-")
        cls.target = f"tcp://127.0.0.1:{cls.daemon.tcp_port}"
        cls.runs = []
        for name, conns in (("before", "4"), ("after", "8")):
            paths = {ext: os.path.join(cls.tmp.name, f"{name}.{ext}") for ext in ("json", "hgrm", "svg")}
            r = bench("-c", conns, "-d", "2.5", "-q", "--json", "--label", name,
                      "--hgrm", paths["hgrm"], "--plot", paths["svg"], cls.target)
            with open(paths["json"], "w") as f:
                f.write(r.stdout)
            cls.runs.append((paths, json.loads(r.stdout)))

    @classmethod
    def tearDownClass(cls):
        cls.tmp.cleanup()
        status = cls.daemon.stop()
        if status != 0:
            raise AssertionError(f"upechod exited with {status} after SIGTERM")

    def test_hgrm_matches_json(self):
        for paths, doc in self.runs:
            rows, footer = read_hgrm(paths["hgrm"])
            lat = doc["latency_ns"]
            self.assertEqual(rows[0][1], 0.0)
            self.assertEqual(rows[-1][1], 1.0)
            self.assertEqual(rows[-1][2], lat["count"])
            self.assertTrue(near(rows[-1][0], lat["max"] / 1e6), (rows[-1], lat))
            for (v0, p0, c0), (v1, p1, c1) in zip(rows, rows[1:]):
                self.assertLessEqual(v0, v1)
                self.assertLessEqual(p0, p1)
                self.assertLessEqual(c0, c1)
            # 50% and 90% are lines of HdrHistogram's percentile ticks: the same bucket.
            for key, percent in (("p50", 50), ("p90", 90)):
                lo, hi = hgrm_bracket(rows, percent)
                self.assertEqual(lo, hi)
                self.assertTrue(near(lo, lat[key] / 1e6), f"{key}: .hgrm {lo} ms, JSON {lat[key]} ns")
            # 99% falls between two lines: the summary's p99 lies between their values.
            for key, percent in (("p99", 99), ("p99_9", 99.9)):
                lo, hi = hgrm_bracket(rows, percent)
                ms = lat[key] / 1e6
                self.assertTrue(lo * (1 - BUCKET) <= ms <= hi * (1 + BUCKET),
                                f"{key}: JSON {ms} ms not within .hgrm's {lo}..{hi} ms")
            self.assertEqual(len(footer), 3, footer)
            m = re.match(r"#\[Mean\s+=\s+([\d.]+), StdDeviation\s+=\s+([\d.]+)\]$", footer[0])
            self.assertTrue(m, footer[0])
            self.assertTrue(near(float(m.group(1)), lat["mean"] / 1e6, 1e-3), footer[0])
            m = re.match(r"#\[Max\s+=\s+([\d.]+), Total count\s+=\s+(\d+)\]$", footer[1])
            self.assertTrue(m, footer[1])
            self.assertEqual(int(m.group(2)), lat["count"])
            self.assertRegex(footer[2], r"#\[Buckets\s+=\s+\d+, SubBuckets\s+=\s+\d+\]$")

    def test_json_curve_and_timeline(self):
        for _, doc in self.runs:
            lat = doc["latency_ns"]
            pts = dict((p, v) for p, v in doc["latency_percentiles"])
            self.assertEqual(pts[50], lat["p50"])
            self.assertEqual(pts[90], lat["p90"])
            self.assertEqual(pts[99], lat["p99"])
            self.assertEqual(pts[99.9], lat["p99_9"])
            self.assertEqual(pts[0], lat["min"])
            self.assertEqual(pts[100], lat["max"])
            tl = doc["timeline"]
            self.assertGreaterEqual(len(tl), 2, tl)
            self.assertEqual(sum(s["messages"] for s in tl), doc["messages"])
            self.assertEqual(sum(s["errors"] for s in tl), doc["errors"])
            self.assertEqual([s["second"] for s in tl[:2]], [1, 2])
            self.assertAlmostEqual(tl[-1]["second"], doc["duration_s"], places=2)
            self.assertTrue(all(s["open"] == doc["connections"] for s in tl[:-1]), tl)

    def check_plot(self, path, docs):
        """Parse the SVG and check every plotted point against the JSON documents."""
        root = ET.parse(path).getroot()
        self.assertEqual(root.tag, SVG + "svg")
        self.assertEqual(root.findall(f".//{SVG}script"), [])
        with open(path) as f:
            self.assertNotIn("@import", f.read())
        lat = root.find(f".//{SVG}g[@class='panel latency']")
        tput = root.find(f".//{SVG}g[@class='panel throughput']")
        self.assertIsNotNone(lat)
        self.assertIsNotNone(tput)
        texts = " ".join("".join(t.itertext()) for t in root.iter(SVG + "text"))
        for word in ("latency (ms, log scale)", "messages per second", "99.9%", "99.99%", "max", "90%"):
            self.assertIn(word, texts)
        curves = lat.findall(f"{SVG}polyline[@class='latency']")
        rates = tput.findall(f"{SVG}polyline[@class='throughput']")
        self.assertEqual(len(curves), len(docs))
        self.assertEqual(len(rates), len(docs))
        x0, y0 = float(lat.get("data-x0")), float(lat.get("data-y0"))
        w, h = float(lat.get("data-width")), float(lat.get("data-height"))
        xend, slot = float(lat.get("data-x-end")), float(lat.get("data-max-slot"))
        lo, hi = int(lat.get("data-y-log-min")), int(lat.get("data-y-log-max"))
        self.assertLess(lo, hi)
        for curve, doc in zip(curves, docs):
            self.assertEqual(curve.get("data-label"), doc["label"])
            self.assertIn(doc["label"], texts)
            want = [(p, v / 1e6) for p, v in doc["latency_percentiles"]
                    if p == 100 or math.log10(100 / (100 - p)) <= 4 + 1e-9]
            got_p = [float(x) for x in curve.get("data-percentiles").split()]
            got_ms = [float(x) for x in curve.get("data-ms").split()]
            self.assertEqual(got_p, [p for p, _ in want])
            for g, (_, ms) in zip(got_ms, want):
                self.assertTrue(near(g, ms, 1e-6), (g, ms))
            xy = [tuple(map(float, pt.split(","))) for pt in curve.get("points").split()]
            self.assertEqual(len(xy), len(want))
            for (x, y), (p, ms) in zip(xy, want):
                u = slot if p == 100 else math.log10(100 / (100 - p))
                self.assertAlmostEqual(x, x0 + w * u / xend, delta=0.02)
                # Latency on a log axis, from 10^lo to 10^hi ms.
                self.assertLessEqual(10**lo, ms)
                self.assertLessEqual(ms, 10**hi)
                self.assertAlmostEqual(y, y0 + h - h * (math.log10(ms) - lo) / (hi - lo), delta=0.02)
                self.assertTrue(y0 - 0.01 <= y <= y0 + h + 0.01, (x, y))
        x0, y0 = float(tput.get("data-x0")), float(tput.get("data-y0"))
        w, h = float(tput.get("data-width")), float(tput.get("data-height"))
        xmax, ymax = float(tput.get("data-x-max")), float(tput.get("data-y-max"))
        for line, doc in zip(rates, docs):
            self.assertEqual(line.get("data-label"), doc["label"])
            want, prev = [], 0.0
            for s in doc["timeline"]:
                span = s["second"] - prev
                if span >= 0.5:
                    want.append((prev + span / 2, s["messages"] / span))
                prev = s["second"]
            secs = [float(x) for x in line.get("data-seconds").split()]
            vals = [float(x) for x in line.get("data-rates").split()]
            self.assertEqual(len(secs), len(want))
            for s, r, (ws, wr) in zip(secs, vals, want):
                self.assertAlmostEqual(s, ws, delta=0.001)
                # The JSON rounds seconds to 1 ms: a partial last second's rate moves a little.
                self.assertTrue(near(r, wr, 2e-3), (r, wr))
            xy = [tuple(map(float, pt.split(","))) for pt in line.get("points").split()]
            for (x, y), s, r in zip(xy, secs, vals):
                self.assertAlmostEqual(x, x0 + w * s / xmax, delta=0.02)
                self.assertAlmostEqual(y, y0 + h - h * r / ymax, delta=0.02)
        return root

    def test_plot_of_a_run(self):
        paths, doc = self.runs[0]
        root = self.check_plot(paths["svg"], [doc])
        title = root.find(f"{SVG}title").text
        self.assertIn(self.target, title)
        self.assertIn("4 connections", title)

    def test_plot_of_two_files(self):
        out = os.path.join(self.tmp.name, "both.svg")
        (a, da), (b, db) = self.runs
        r = bench("--plot", out, a["json"], b["json"])
        self.assertEqual(r.stdout, "")
        self.check_plot(out, [da, db])

    def test_plot_names_unlabelled_runs_by_file(self):
        paths, doc = self.runs[1]
        doc = dict(doc, label=None)
        src = os.path.join(self.tmp.name, "unlabelled-run.json")
        with open(src, "w") as f:
            json.dump(doc, f, indent=2)
        out = os.path.join(self.tmp.name, "unlabelled.svg")
        bench("--plot", out, src)
        curve = ET.parse(out).getroot().find(f".//{SVG}polyline[@class='latency']")
        self.assertEqual(curve.get("data-label"), "unlabelled-run.json")

    def test_plot_odd_values(self):
        """Markup and bytes that are not UTF-8 in a label, extreme numbers: still a clean SVG."""
        src = os.path.join(self.tmp.name, "odd.json")
        with open(src, "wb") as f:
            f.write(b'{"label":"<b>&\xff\\u0001\\ud83d\\ude00","target":"tcp://x",'
                    b'"latency_percentiles":[[0,0],[99.999999,1e19],[100,1.8e19]],'
                    b'"timeline":[{"second":1e-310,"messages":1e18}]}')
        out = os.path.join(self.tmp.name, "odd.svg")
        bench("--plot", out, src)
        root = ET.parse(out).getroot()
        curve = root.find(f".//{SVG}polyline[@class='latency']")
        self.assertEqual(curve.get("data-label"), "<b>&??\U0001F600")
        for line in root.iter(SVG + "polyline"):
            self.assertNotRegex(line.get("points"), r"(?i)nan|inf")

    def test_bad_inputs(self):
        out = os.path.join(self.tmp.name, "never.svg")
        bad = os.path.join(self.tmp.name, "bad.json")
        with open(bad, "w") as f:
            f.write('{"latency_percentiles": [[0, 1]],\n "timeline": [}\n')
        r = bench("--plot", out, bad, check=False)
        self.assertEqual(r.returncode, 65, r.stderr)
        self.assertIn(bad + ": 2:", r.stderr)
        old = os.path.join(self.tmp.name, "old.json")
        with open(old, "w") as f:
            f.write('{"messages": 5}')
        r = bench("--plot", out, old, check=False)
        self.assertEqual(r.returncode, 65, r.stderr)
        self.assertIn(old, r.stderr)
        self.assertIn("latency_percentiles", r.stderr)
        missing = os.path.join(self.tmp.name, "missing.json")
        r = bench("--plot", out, self.runs[0][0]["json"], missing, check=False)
        self.assertEqual(r.returncode, 66, r.stderr)
        self.assertIn(missing, r.stderr)
        self.assertFalse(os.path.exists(out))
        r = bench("--plot", out, "--hgrm", os.path.join(self.tmp.name, "x.hgrm"),
                  self.runs[0][0]["json"], check=False)
        self.assertEqual(r.returncode, 64, r.stderr)
        r = bench(self.runs[0][0]["json"], self.runs[1][0]["json"], check=False)
        self.assertEqual(r.returncode, 64, r.stderr)
        self.assertIn("--plot", r.stderr)
        r = bench("--plot", os.path.join(self.tmp.name, "no", "dir.svg"),
                  self.runs[0][0]["json"], check=False)
        self.assertEqual(r.returncode, 73, r.stderr)


if __name__ == "__main__":
    unittest.main(verbosity=2)
