#!/usr/bin/env python3
"""run-bench.py: upechod against a minimal epoll echo server under the same upecho-bench load.

Each scenario starts both servers, then runs upecho-bench against them in
alternating rounds (A B, B A, A B, ...) so that drift in the machine's load
hits both alike.  For every round it records the client's messages per
second and the server's CPU time (utime + stime from /proc/PID/stat) per
message, and the ratio upechod / reference within the round; the table shows
the medians.  Idle memory is measured separately: fresh servers, N
connections opened, one byte echoed on each, then the growth of VmRSS.

--workers 1,2,4 runs one upechod per worker count (`[server] workers`) in
the same alternating rounds and adds a sweep table: each count's
throughput and CPU per message against the reference and against one
worker.  Give the load generator enough threads (--client-threads) for the
server, not the client, to set the pace.

Python standard library only.  Exit status 0 when every run's replies were
right, 1 when upecho-bench saw a wrong byte or a server died, 64 on usage
errors.
"""

import argparse
import json
import os
import platform
import re
import resource
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time

CLK_TCK = os.sysconf("SC_CLK_TCK")


class BenchError(Exception):
    """A run that cannot go on; log_path is a server log whose end the message already quotes."""

    def __init__(self, message, log_path=None):
        super().__init__(message)
        self.log_path = log_path


class ArgumentParser(argparse.ArgumentParser):
    """argparse, but a usage error exits 64 (EX_USAGE) like the project's programs."""

    def error(self, message):
        self.print_usage(sys.stderr)
        self.exit(64, f"{self.prog}: error: {message}\n")


# One load: name, transport, connections, message size, pipeline.
SCENARIOS = [
    ("tcp-100x64", "100 conns x 64 B", "tcp", 100, 64, 1),
    ("tcp-5000x64", "5,000 conns x 64 B", "tcp", 5000, 64, 1),
    ("tcp-bulk", "1 conn x 16 KiB x pipeline 16", "tcp", 1, 16384, 16),
    ("udp-100x64", "UDP 100 sockets x 64 B", "udp", 100, 64, 1),
]


def proc_cpu_seconds(pid):
    """utime + stime of a process, in seconds (fields 14 and 15 of /proc/PID/stat)."""
    with open(f"/proc/{pid}/stat") as f:
        data = f.read()
    # The command name may hold spaces and parentheses: split after the last ')'.
    fields = data[data.rindex(")") + 2:].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def proc_rss_bytes(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    raise BenchError(f"no VmRSS for pid {pid}")


def proc_listening(pid):
    """{'tcp': port, 'udp': port} for the IPv4 sockets pid has bound, read from /proc."""
    inodes = set()
    fd_dir = f"/proc/{pid}/fd"
    for fd in os.listdir(fd_dir):
        try:
            link = os.readlink(os.path.join(fd_dir, fd))
        except OSError:
            continue
        m = re.match(r"socket:\[(\d+)\]", link)
        if m:
            inodes.add(m.group(1))
    found = {}
    for proto, want_state in (("tcp", "0A"), ("udp", "07")):
        with open(f"/proc/{pid}/net/{proto}") as f:
            next(f)
            for line in f:
                cols = line.split()
                if cols[9] in inodes and cols[3] == want_state:
                    found[proto] = int(cols[1].split(":")[1], 16)
    return found


class Server:
    """A server process under test: started, its ports found, stopped."""

    def __init__(self, name, argv, workdir, ports_from_stdout):
        self.name = name
        self.argv = argv
        self.workdir = workdir
        self.ports_from_stdout = ports_from_stdout
        self.proc = None
        self.ports = {}
        self.log_path = os.path.join(workdir, f"{name}.log")

    def start(self):
        self.log = open(self.log_path, "ab")
        # Each start appends to the log: this run's stderr begins here.
        self.log_start = os.fstat(self.log.fileno()).st_size
        self.proc = subprocess.Popen(
            self.argv,
            stdout=subprocess.PIPE if self.ports_from_stdout else subprocess.DEVNULL,
            stderr=self.log,
            stdin=subprocess.DEVNULL,
            cwd=self.workdir,
        )
        deadline = time.monotonic() + 10
        if self.ports_from_stdout:
            # refserver prints "listening on tcp 127.0.0.1:PORT" per socket, like upechod's log.
            while len(self.ports) < 2:
                line = self.proc.stdout.readline().decode()
                if not line:
                    raise self.died("during start-up, before listening")
                m = re.match(r"listening on (tcp|udp) \S+:(\d+)$", line.strip())
                if m:
                    self.ports[m.group(1)] = int(m.group(2))
        else:
            # upechod logs its ports at level info only; at warning, ask /proc.
            while time.monotonic() < deadline:
                if self.proc.poll() is not None:
                    raise self.died("during start-up")
                try:
                    self.ports = proc_listening(self.proc.pid)
                except OSError:
                    # It exited after poll(): its /proc entries went with it.  The next
                    # poll() reaps it and says so.
                    self.ports = {}
                if len(self.ports) == 2:
                    break
                time.sleep(0.05)
            else:
                raise BenchError(f"{self.name} did not bind tcp and udp within 10 s")
        # Let the process settle (upechod notifies readiness after binding).
        time.sleep(0.2)

    def died(self, when):
        """A BenchError for a server that exited: its exit status and the end of its stderr."""
        try:
            code = self.proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            code = None
        if code is None:
            status = "stopped answering but is still running"
        elif code < 0:
            status = f"was killed by {signal.Signals(-code).name}"
        else:
            status = f"exited with status {code}"
        with open(self.log_path, "rb") as f:
            f.seek(self.log_start)
            tail = f.read().decode(errors="replace").strip().splitlines()[-10:]
        said = "\n".join(f"    {line}" for line in tail) if tail else "    (nothing)"
        return BenchError(f"{self.name} {status} {when}; the end of its stderr:\n{said}",
                          self.log_path)

    def target(self, transport):
        return f"{transport}://127.0.0.1:{self.ports[transport]}"

    def alive(self):
        return self.proc is not None and self.proc.poll() is None

    def exited(self, grace):
        """Whether the server has exited, waiting up to grace seconds for an exit under way."""
        try:
            self.proc.wait(timeout=grace)
        except subprocess.TimeoutExpired:
            return False
        return True

    def cpu(self):
        return proc_cpu_seconds(self.proc.pid)

    def rss(self):
        return proc_rss_bytes(self.proc.pid)

    def stop(self):
        if self.proc is None:
            return
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        if self.proc.stdout is not None:
            self.proc.stdout.close()
        self.log.close()
        self.proc = None


def upechod_config(path, max_connections, workers=1):
    """The shipped defaults, but ports chosen by the kernel, log level warning, unix off."""
    with open(path, "w") as f:
        f.write(
            "[tcp]\nlisten = 127.0.0.1:0\n"
            "[udp]\nlisten = 127.0.0.1:0\n"
            "[unix]\nenabled = no\n"
            "[log]\nlevel = warning\n"
            f"[limits]\nmax_connections = {max_connections}\n"
        )
        # 1 is the default: left out, a --baseline from before `workers` existed reads it too.
        if workers != 1:
            f.write(f"[server]\nworkers = {workers}\n")


def upechod_names(args):
    """The upechod servers of a run: "upechod", or one "upechod-wN" per --workers count,
    and "baseline" last with --baseline."""
    names = ["upechod"] if args.workers == [1] else [f"upechod-w{n}" for n in args.workers]
    return names + (["baseline"] if args.baseline else [])


def run_load(args, server, transport, conns, size, pipeline, duration):
    """One upecho-bench run against server; returns a dict of figures for the round."""
    argv = [
        args.upecho_bench, "-q", "--json",
        "-t", str(args.client_threads),
        "-c", str(conns), "-s", str(size), "-p", str(pipeline),
        "-d", f"{duration}s",
        server.target(transport),
    ]
    cpu0 = server.cpu()
    t0 = time.monotonic()
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    out, err = proc.communicate()
    wall = time.monotonic() - t0
    cpu1 = server.cpu()
    if not server.alive():
        raise server.died(f"during {transport} {conns}x{size}")
    try:
        res = json.loads(out.decode())
    except ValueError:
        raise BenchError(f"upecho-bench printed no result against {server.name} "
                         f"(exit {proc.returncode}): {err.decode().strip()}")
    return {
        "msgs": res["messages"],
        "msg_per_s": res["messages_per_s"],
        "mb_per_s": res["mb_per_s"],
        "p50_us": res["latency_ns"]["p50"] / 1000,
        "p99_us": res["latency_ns"]["p99"] / 1000,
        "server_cpu": cpu1 - cpu0,
        "wall": wall,
        "elapsed": res["duration_s"],
        "mismatches": res["mismatches"],
        "errors": res["errors"],
        "exit": proc.returncode,
    }


def children_cpu():
    ru = resource.getrusage(resource.RUSAGE_CHILDREN)
    return ru.ru_utime + ru.ru_stime


def run_scenario(args, servers, scenario, log):
    key, label, transport, conns, size, pipeline = scenario
    per = {s.name: [] for s in servers}
    ratios = {name: {"tput": [], "cpu": []} for name in per if name != "reference"}
    # A short warm-up each: page in code, grow the heaps, fill the caches.
    for s in servers:
        run_load(args, s, transport, conns, size, pipeline, min(1.0, args.duration))
    for rnd in range(args.rounds):
        order = servers if rnd % 2 == 0 else list(reversed(servers))
        got = {}
        for s in order:
            # communicate() reaps the client, which adds its CPU time to our children's.
            c0 = children_cpu()
            r = run_load(args, s, transport, conns, size, pipeline, args.duration)
            r["client_cpu"] = children_cpu() - c0
            got[s.name] = r
            per[s.name].append(r)
            if r["mismatches"] or r["exit"] not in (0, 1):
                raise BenchError(f"{s.name}: {r['mismatches']} wrong bytes, upecho-bench exit "
                                 f"{r['exit']} in {key}")
            log(f"  {key} round {rnd + 1}/{args.rounds} {s.name:9s}: "
                f"{r['msg_per_s']:>11,.0f} msg/s, server {cpu_us(r):6.2f} us/msg, "
                f"client {client_us(r):6.2f} us/msg, busy server {busy(r, 'server_cpu'):3.0f}% "
                f"client {busy(r, 'client_cpu'):3.0f}%, errors {r['errors']}")
        b = got["reference"]
        for name, rt in ratios.items():
            a = got[name]
            rt["tput"].append(a["msg_per_s"] / b["msg_per_s"])
            rt["cpu"].append(cpu_us(a) / cpu_us(b) if cpu_us(b) > 0 else float("nan"))
    return per, ratios


def cpu_us(r):
    return r["server_cpu"] / max(r["msgs"], 1) * 1e6


def open_idle(server, n, log):
    """Open n connections, echo one byte on each so the server has served it once; return them."""
    socks = []
    for i in range(n):
        try:
            s = socket.create_connection(("127.0.0.1", server.ports["tcp"]), timeout=10)
            socks.append(s)
            s.sendall(b"x")
            reply = s.recv(1)
        except OSError as e:
            reply = e
        if reply != b"X":
            if server.exited(grace=1.0):
                raise server.died(f"at idle connection {i + 1} of {n}")
            what = reply if isinstance(reply, OSError) else f"echo {reply!r}"
            raise BenchError(f"{server.name}: idle connection {i + 1} of {n}: {what}")
    return socks


def run_idle(args, make_servers, log):
    """RSS growth per idle connection, fresh servers each round, alternating order."""
    per = {name: [] for name in upechod_names(args) + ["reference"]}
    rounds = min(args.rounds, 3)
    for rnd in range(rounds):
        servers = make_servers()
        order = servers if rnd % 2 == 0 else list(reversed(servers))
        try:
            for s in order:
                s.start()
                # One connection first, so lazily made state (first buffers, tables) is
                # in the baseline and not charged to the idle connections.
                warm = open_idle(s, 1, log)
                time.sleep(0.1)
                base = s.rss()
                socks = open_idle(s, args.idle_connections, log)
                time.sleep(0.5)
                if not s.alive():
                    raise s.died("holding idle connections")
                rss = s.rss()
                per[s.name].append((rss - base) / len(socks))
                log(f"  idle round {rnd + 1}/{rounds} {s.name:9s}: {len(socks)} connections, "
                    f"RSS {base / 1048576:.1f} -> {rss / 1048576:.1f} MiB, "
                    f"{(rss - base) / len(socks):,.0f} B/conn")
                for sock in socks + warm:
                    sock.close()
                s.stop()
        finally:
            for s in servers:
                s.stop()
    return per


def med(xs):
    return statistics.median(xs)


def fmt_rate(x):
    return f"{x:,.0f}"


def machine_description(args):
    model = "unknown"
    with open("/proc/cpuinfo") as f:
        for line in f:
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    libevent = "unknown"
    try:
        out = subprocess.run(["pkg-config", "--modversion", "libevent"], capture_output=True,
                             text=True)
        if out.returncode == 0:
            libevent = out.stdout.strip()
    except OSError:
        pass
    return (f"{os.cpu_count()} CPUs ({model}), Linux {platform.release()}, libevent {libevent}, "
            f"load average at start {os.getloadavg()[0]:.2f}")


def busy(r, what):
    return r[what] / r["wall"] * 100


def client_us(r):
    return r["client_cpu"] / max(r["msgs"], 1) * 1e6


def throughput_table(results):
    """The load scenarios' rows, and notes on the ones the client, not the server, limited."""
    lines = [
        "| load | upechod msg/s | reference msg/s | **throughput ratio** | "
        "upechod CPU µs/msg | reference CPU µs/msg | **CPU/msg ratio** | "
        "busy % server/client (upechod) | busy % server/client (reference) | "
        "client CPU µs/msg (upechod / reference) |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    notes = []
    for scenario in SCENARIOS:
        key, label = scenario[0], scenario[1]
        if key not in results:
            continue
        per, ratios = results[key]
        a, b = per["upechod"], per["reference"]
        tr, cr = ratios["upechod"]["tput"], ratios["upechod"]["cpu"]
        lines.append(
            f"| {label} | {fmt_rate(med([r['msg_per_s'] for r in a]))} "
            f"| {fmt_rate(med([r['msg_per_s'] for r in b]))} "
            f"| **{med(tr):.2f}** ({min(tr):.2f}–{max(tr):.2f}) "
            f"| {med([cpu_us(r) for r in a]):.2f} | {med([cpu_us(r) for r in b]):.2f} "
            f"| **{med(cr):.2f}** ({min(cr):.2f}–{max(cr):.2f}) "
            f"| {med([busy(r, 'server_cpu') for r in a]):.0f} / "
            f"{med([busy(r, 'client_cpu') for r in a]):.0f} "
            f"| {med([busy(r, 'server_cpu') for r in b]):.0f} / "
            f"{med([busy(r, 'client_cpu') for r in b]):.0f} "
            f"| {med([client_us(r) for r in a]):.2f} / {med([client_us(r) for r in b]):.2f} |")
        # Within 10% the two are equals and neither clearly set the pace.
        bound = [name for name, rs in (("upechod", a), ("reference", b))
                 if med([client_us(r) for r in rs]) > 1.1 * med([cpu_us(r) for r in rs])]
        if bound:
            notes.append(f"{label}: against {' and '.join(bound)}, upecho-bench spent clearly "
                         f"more CPU per message than the server, so the client, not the server, "
                         f"set the pace; read the CPU/msg ratio, not the throughput ratio.")
    return lines, notes


def sweep_table(args, results):
    """--workers: per load, each worker count against the reference and against the first count."""
    names = upechod_names(args)
    counts = args.workers + ([args.workers[0]] if args.baseline else [])
    first = "baseline" if args.baseline else names[0]
    against = "baseline" if args.baseline else f"{args.workers[0]} worker(s)"
    lines = [
        "| load | server | workers | msg/s | **throughput vs reference** | **throughput vs "
        f"{against}** | CPU µs/msg | **CPU/msg vs reference** | "
        f"**CPU/msg vs {against}** | busy % server/client |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for scenario in SCENARIOS:
        key, label = scenario[0], scenario[1]
        if key not in results:
            continue
        per, ratios = results[key]
        for n, name in zip(counts, names):
            rs = per[name]
            # Within one round both ran under the same drift: pair them up.
            vs_first_t = [a["msg_per_s"] / b["msg_per_s"] for a, b in zip(rs, per[first])]
            vs_first_c = [cpu_us(a) / cpu_us(b) for a, b in zip(rs, per[first]) if cpu_us(b) > 0]
            tr, cr = ratios[name]["tput"], ratios[name]["cpu"]
            lines.append(
                f"| {label} | {name} | {n} | {fmt_rate(med([r['msg_per_s'] for r in rs]))} "
                f"| **{med(tr):.2f}** ({min(tr):.2f}–{max(tr):.2f}) "
                f"| **{med(vs_first_t):.2f}** ({min(vs_first_t):.2f}–{max(vs_first_t):.2f}) "
                f"| {med([cpu_us(r) for r in rs]):.2f} "
                f"| **{med(cr):.2f}** ({min(cr):.2f}–{max(cr):.2f}) "
                f"| **{med(vs_first_c):.2f}** ({min(vs_first_c):.2f}–{max(vs_first_c):.2f}) "
                f"| {med([busy(r, 'server_cpu') for r in rs]):.0f} / "
                f"{med([busy(r, 'client_cpu') for r in rs]):.0f} |")
        ref = per["reference"]
        lines.append(f"| {label} | reference | | {fmt_rate(med([r['msg_per_s'] for r in ref]))} "
                     f"| | | {med([cpu_us(r) for r in ref]):.2f} | | "
                     f"| {med([busy(r, 'server_cpu') for r in ref]):.0f} / "
                     f"{med([busy(r, 'client_cpu') for r in ref]):.0f} |")
    return lines, []


def build_table(args, results, idle, machine, load_end):
    if not results:
        lines, notes = [], []
    elif upechod_names(args) == ["upechod"]:
        lines, notes = throughput_table(results)
    else:
        lines, notes = sweep_table(args, results)
    if idle:
        ib = idle["reference"]
        if lines:
            lines.append("")
        lines.append("| idle connections | server | B/conn | **memory ratio to reference** |")
        lines.append("|---|---|---:|---:|")
        for name in upechod_names(args):
            ia = idle[name]
            ratio = med(ia) / med(ib) if med(ib) > 0 else float("nan")
            lines.append(f"| {args.idle_connections:,} (RSS growth / connections) | {name} "
                         f"| {med(ia):,.0f} | **{ratio:.2f}** |")
        lines.append(f"| {args.idle_connections:,} (RSS growth / connections) | reference "
                     f"| {med(ib):,.0f} | |")
    errors = sum(r["errors"] for per, _ in results.values() for rs in per.values() for r in rs)
    lines.append("")
    lines.append(
        f"Ratios are upechod / reference: throughput above 1 and CPU or memory below 1 favour "
        f"upechod.  Medians of {args.rounds} alternating rounds of {args.duration:g} s each "
        f"(per-round ratio range in brackets).  CPU is the server's utime+stime over the round "
        f"(connects and closes included) divided by the messages answered; busy is CPU time over "
        f"the round's wall time, for the server and for upecho-bench ({args.client_threads} "
        f"thread(s)).  upecho-bench checked every reply byte (0 wrong) and counted {errors} "
        f"errors (timeouts, lost datagrams) in all.  Reference: tests/bench/refserver.c "
        f"({'edge' if args.ref_edge else 'level'}-triggered epoll, {args.ref_buffer} B buffer "
        f"per connection).")
    for n in notes:
        lines.append("")
        lines.append(n)
    lines.append("")
    lines.append(f"Machine: {machine}; load average at end {load_end:.2f}.")
    return "\n".join(lines) + "\n"


def parse_args(argv):
    p = ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--upechod", default=os.environ.get("UPECHOD", "src/upechod/upechod"),
                   help="the daemon (default: $UPECHOD, else src/upechod/upechod from a build dir)")
    p.add_argument("--refserver", default=os.environ.get("REFSERVER", "tests/bench/refserver"),
                   help="the reference server (default: $REFSERVER, else tests/bench/refserver)")
    p.add_argument("--upecho-bench", default=os.environ.get("UPECHO_BENCH", "src/upecho-bench/upecho-bench"),
                   help="the load generator (default: $UPECHO_BENCH, else src/upecho-bench/upecho-bench)")
    p.add_argument("--output", default="bench-results.md",
                   help="where to write the Markdown table (default: bench-results.md)")
    p.add_argument("--rounds", type=int, default=5, help="A/B rounds per scenario (default 5)")
    p.add_argument("--duration", type=float, default=4.0,
                   help="seconds per upecho-bench run (default 4)")
    p.add_argument("--quick", action="store_true",
                   help="2 rounds of 1 s, 1,000 idle connections: a smoke test, not a measurement")
    p.add_argument("--idle-connections", type=int, default=10000,
                   help="connections held open for the memory figure (default 10000)")
    p.add_argument("--client-threads", type=int, default=1,
                   help="upecho-bench threads (default 1: the server gets the other core)")
    p.add_argument("--workers", default="1",
                   help="comma-separated [server] workers counts to run upechod with, each "
                        "against the reference, e.g. 1,2,4 (default 1)")
    p.add_argument("--baseline", metavar="PATH",
                   help="another upechod build (the code before a change, say) to run in the "
                        "same rounds with the first --workers count; the table then compares "
                        "each upechod with it as well as with the reference")
    p.add_argument("--ref-edge", action="store_true",
                   help="run the reference with edge-triggered epoll")
    p.add_argument("--ref-buffer", type=int, default=65536,
                   help="the reference's buffer per connection (default 65536, the size of "
                        "upechod's bulk reads)")
    p.add_argument("--only", action="append", default=[],
                   help="run only these scenarios (" +
                        ", ".join(s[0] for s in SCENARIOS) + ", idle); may be repeated")
    args = p.parse_args(argv)
    try:
        args.workers = [int(w) for w in args.workers.split(",")]
    except ValueError:
        p.error(f"--workers: not a list of counts: {args.workers}")
    if not args.workers or any(w < 1 or w > 256 for w in args.workers) or \
            len(set(args.workers)) != len(args.workers):
        p.error("--workers: distinct counts from 1 to 256")
    if args.quick:
        args.rounds = min(args.rounds, 2)
        args.duration = min(args.duration, 1.0)
        args.idle_connections = min(args.idle_connections, 1000)
    if args.rounds < 1 or args.duration <= 0 or args.idle_connections < 1:
        p.error("--rounds, --duration and --idle-connections must be positive")
    for prog in (args.upechod, args.refserver, args.upecho_bench) + \
            ((args.baseline,) if args.baseline else ()):
        if not os.access(prog, os.X_OK):
            p.error(f"{prog} is not an executable (give --upechod, --refserver, --upecho-bench)")
    known = {s[0] for s in SCENARIOS} | {"idle"}
    for name in args.only:
        if name not in known:
            p.error(f"unknown scenario {name}")
    return args


def raise_nofile(need):
    """Servers inherit our limit: take the soft limit to the hard one and check it is enough."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
        soft = hard
    if soft != resource.RLIM_INFINITY and soft < need:
        raise BenchError(f"open-file limit {soft} is below the {need} this run needs; "
                         f"use --idle-connections {soft - 1000}")


def main(argv):
    args = parse_args(argv)
    log = lambda msg: print(msg, file=sys.stderr, flush=True)
    want = lambda key: not args.only or key in args.only
    workdir = tempfile.mkdtemp(prefix="upechod-bench-")
    max_conns = max(args.idle_connections, max(s[3] for s in SCENARIOS)) + 1000
    confs = {}
    binaries = {}
    for n, name in zip(args.workers + [args.workers[0]], upechod_names(args)):
        confs[name] = os.path.join(workdir, f"{name}.ini")
        upechod_config(confs[name], max_conns, n)
        binaries[name] = args.baseline if name == "baseline" else args.upechod
    # Each process has its own RLIMIT_NOFILE: the idle clients live in this process,
    # their server-side ends in the server.
    raise_nofile(args.idle_connections + 100)

    def make_servers():
        return [
            Server(name, [os.path.abspath(binaries[name]), "-c", conf], workdir, False)
            for name, conf in confs.items()
        ] + [
            Server("reference",
                   [os.path.abspath(args.refserver), "-t", "127.0.0.1:0", "-u", "127.0.0.1:0",
                    "-b", str(args.ref_buffer)] + (["-e"] if args.ref_edge else []),
                   workdir, True),
        ]

    machine = machine_description(args)
    log(f"upechod benchmark: {args.rounds} rounds x {args.duration:g} s per scenario; {machine}")
    results = {}
    idle = None
    status = 0
    reported = set()
    try:
        for scenario in SCENARIOS:
            if not want(scenario[0]):
                continue
            servers = make_servers()
            try:
                for s in servers:
                    s.start()
                log(f"{scenario[1]}:")
                results[scenario[0]] = run_scenario(args, servers, scenario, log)
            finally:
                for s in servers:
                    s.stop()
        if want("idle"):
            log(f"idle memory, {args.idle_connections} connections:")
            idle = run_idle(args, make_servers, log)
    except BenchError as e:
        log(f"run-bench: {e}")
        reported.add(e.log_path)
        status = 1
    # Nothing measured: leave --output as it was rather than write an empty table.
    if results or idle:
        table = build_table(args, results, idle, machine, os.getloadavg()[0])
        with open(args.output, "w") as f:
            f.write(table)
        print(table)
    for name in upechod_names(args) + ["reference"]:
        path = os.path.join(workdir, f"{name}.log")
        if path in reported:
            continue
        if os.path.exists(path) and os.path.getsize(path) > 0:
            with open(path, errors="replace") as f:
                log(f"{name} said:\n" + f.read().strip())
    shutil.rmtree(workdir, ignore_errors=True)
    return status


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
