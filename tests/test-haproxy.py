#!/usr/bin/env python3
"""test-haproxy.py: upechod behind a real HAProxy, client addresses passed with the PROXY protocol.

Two upechod backends (TCP on 127.0.0.1 port 0, proxy_protocol = yes,
proxy_protocol_from = 127.0.0.1, debug log) behind HAProxy, whose config is
conf/haproxy-upechod.cfg with only its ports, its stats socket and (for the
version 1 run) send-proxy-v2 changed: the shipped example is what is tested.

For send-proxy-v2 and then send-proxy:
  - 500 connections through HAProxy, each from a source address chosen here
    (127.0.0.2 to 127.0.0.201, bound before connect), each echo checked byte
    for byte; the upechod logs name every one of those client addresses and
    ports, as the PROXY header gave them, never HAProxy's.
With send-proxy-v2 also the drain:
  - 200 clients stream through HAProxy; upechod1 gets SIGTERM.  Its clients
    see every byte echoed before the FIN right, then the FIN, never a reset;
    it exits 0; HAProxy's stats socket reports it DOWN; 50 new connections all
    reach upechod2; upechod2's clients go on streaming and, once they
    half-close, get every byte back.

Skipped (77) where no haproxy is installed.  $UPECHOD names the daemon,
$HAPROXY may name haproxy.
"""

import os
import random
import re
import selectors
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor

SRC = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
EXAMPLE = os.path.join(SRC, "conf", "haproxy-upechod.cfg")
READY_TIMEOUT = 15.0
NCONN = 500
NSTREAM = 200
NAFTER = 50
IO_TIMEOUT = 20.0

UPECHOD_INI = """\
[tcp]
listen = 127.0.0.1:0
proxy_protocol = yes
proxy_protocol_from = 127.0.0.1
[udp]
enabled = no
[log]
level = debug
[limits]
shutdown_timeout = 20
"""


class Failure(Exception):
    pass


def check(cond, msg):
    if not cond:
        raise Failure(msg)


def source(i):
    """The i-th client source address: 127.0.0.2 to 127.0.0.201, never HAProxy's 127.0.0.1."""
    return "127.0.0.%d" % (2 + i % 200)


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def find_haproxy():
    """$HAPROXY, else haproxy on PATH or in /usr/sbin; (None, why) when there is none."""
    exe = os.environ.get("HAPROXY")
    if exe:
        if os.access(exe, os.X_OK):
            return exe, None
        return None, "HAPROXY=%s is not an executable" % exe
    exe = shutil.which("haproxy")
    if not exe and os.access("/usr/sbin/haproxy", os.X_OK):
        exe = "/usr/sbin/haproxy"
    if not exe:
        return None, "haproxy is not installed (apt-get install haproxy)"
    return exe, None


class Upechod:
    """One upechod backend in the foreground, its stderr in a file, its port read from its log."""

    def __init__(self, tmp, name):
        self.name = name
        self.config = os.path.join(tmp, name + ".ini")
        self.log_path = os.path.join(tmp, name + ".log")
        with open(self.config, "w") as f:
            f.write(UPECHOD_INI)
        with open(self.log_path, "wb") as log:
            self.proc = subprocess.Popen([os.environ["UPECHOD"], "-c", self.config],
                                         stdin=subprocess.DEVNULL, stdout=log, stderr=log)
        deadline = time.monotonic() + READY_TIMEOUT
        self.port = None
        while time.monotonic() < deadline and self.proc.poll() is None:
            m = re.search(r"listening on tcp 127\.0\.0\.1:(\d+)", self.log())
            if m and re.search(r"ready$", self.log(), re.M):
                self.port = int(m.group(1))
                return
            time.sleep(0.05)
        raise Failure("%s did not get ready:\n%s" % (name, self.log()))

    def log(self):
        with open(self.log_path, errors="replace") as f:
            return f.read()

    def stop(self):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        return self.proc.returncode


class HAProxy:
    """HAProxy on the example config with our ports, in the foreground (-db)."""

    def __init__(self, exe, tmp, ports, version):
        self.port = free_port()
        self.stats = os.path.join(tmp, "haproxy.sock")
        self.log_path = os.path.join(tmp, "haproxy-v%d.log" % version)
        with open(EXAMPLE) as f:
            text = f.read()
        subs = [
            (r"bind 127\.0\.0\.1:9000\b", "bind 127.0.0.1:%d" % self.port),
            (r"server upechod1 127\.0\.0\.1:9091\b", "server upechod1 127.0.0.1:%d" % ports[0]),
            (r"server upechod2 127\.0\.0\.1:9092\b", "server upechod2 127.0.0.1:%d" % ports[1]),
            (r"stats socket /run/haproxy/upechod\.sock\b", "stats socket " + self.stats),
        ]
        if version == 1:
            subs.append((r"(default-server .*)\bsend-proxy-v2\b", r"\1send-proxy"))
        for pattern, repl in subs:
            text, n = re.subn(pattern, repl, text)
            # The example changed shape: this test must follow it.
            check(n == 1, "%s: %r matches %d times, not once" % (EXAMPLE, pattern, n))
        self.config = os.path.join(tmp, "haproxy-v%d.cfg" % version)
        with open(self.config, "w") as f:
            f.write(text)
        with open(self.log_path, "wb") as log:
            self.proc = subprocess.Popen([exe, "-db", "-f", self.config],
                                         stdin=subprocess.DEVNULL, stdout=log, stderr=log)
        self.wait_status({"upechod1": "UP", "upechod2": "UP"})

    def log(self):
        with open(self.log_path, errors="replace") as f:
            return f.read()

    def status(self):
        """{server name: status} from "show stat" on the stats socket, {} if it cannot say yet."""
        try:
            with socket.socket(socket.AF_UNIX) as s:
                s.settimeout(5)
                s.connect(self.stats)
                s.sendall(b"show stat\n")
                data = b""
                while True:
                    chunk = s.recv(65536)
                    if not chunk:
                        break
                    data += chunk
        except OSError:
            return {}
        lines = data.decode(errors="replace").splitlines()
        if not lines or not lines[0].startswith("# "):
            return {}
        cols = lines[0][2:].split(",")
        out = {}
        for line in lines[1:]:
            row = dict(zip(cols, line.split(",")))
            if row.get("pxname") == "upechod" and row.get("svname", "").startswith("upechod"):
                out[row["svname"]] = row.get("status", "")
        return out

    def wait_status(self, want, pump=None, timeout=READY_TIMEOUT):
        deadline = time.monotonic() + timeout
        got = {}
        while time.monotonic() < deadline:
            check(self.proc.poll() is None, "haproxy exited:\n" + self.log())
            got = self.status()
            if all(got.get(k, "").startswith(v) for k, v in want.items()):
                return got
            if pump:
                pump(0.2)
            else:
                time.sleep(0.1)
        raise Failure("haproxy servers %s, not %s; its log:\n%s" % (got, want, self.log()))

    def stop(self):
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


def payload(rng, n):
    """n bytes of lowercase letters mixed with every other byte value."""
    return bytes(rng.choice(b"abcdefghijklmnopqrstuvwxyz") if rng.random() < 0.5
                 else rng.randrange(256) for _ in range(n))


def echo_one(port, i, seed):
    """One connection from source(i): send, half-close, the whole echo must come back right."""
    rng = random.Random(seed * 100003 + i)
    data = payload(rng, rng.randrange(1, 3000))
    with socket.socket() as s:
        s.settimeout(IO_TIMEOUT)
        s.bind((source(i), 0))
        s.connect(("127.0.0.1", port))
        local = s.getsockname()
        s.sendall(data)
        s.shutdown(socket.SHUT_WR)
        got = b""
        while True:
            chunk = s.recv(65536)
            if not chunk:
                break
            got += chunk
    check(got == data.upper(), "connection %d from %s:%d: %d bytes sent, %d back, %s" % (
        i, local[0], local[1], len(data), len(got),
        "equal" if got == data.upper() else "not the uppercase of what was sent"))
    return local


def proxy_line(backends, local, version):
    """The backend whose log names client `local` as the PROXY header gave it, or None."""
    needle = "tcp %s:%d: PROXY v%d header from 127.0.0.1:" % (local[0], local[1], version)
    for b in backends:
        if needle in b.log():
            return b
    return None


def many_connections(hp, backends, version, seed):
    t0 = time.monotonic()
    with ThreadPoolExecutor(max_workers=32) as pool:
        locals_ = list(pool.map(lambda i: echo_one(hp.port, i, seed), range(NCONN)))
    dt = time.monotonic() - t0
    served = {b.name: 0 for b in backends}
    for local in locals_:
        b = proxy_line(backends, local, version)
        check(b is not None, "no upechod log names client %s:%d (PROXY v%d)" % (
            local[0], local[1], version))
        served[b.name] += 1
    for b in backends:
        check(served[b.name] > 0, "%s served none of the %d connections" % (b.name, NCONN))
        # HAProxy's own address shows only for its health checks: v2 LOCAL names no client
        # (v1 checks name HAProxy itself, so there is nothing to tell them apart by).
        for m in re.finditer(r"tcp 127\.0\.0\.1:\d+: PROXY v2 header from .*", b.log()):
            check(m.group(0).endswith("naming no client"), "%s: %s" % (b.name, m.group(0)))
        check("closed:" not in b.log(), "%s refused a connection:\n%s" % (b.name, b.log()))
    print("v%d: %d connections from %d source addresses echoed right in %.1f s, served %s" % (
        version, NCONN, len({l[0] for l in locals_}), dt, served))


class Streamer:
    """NSTREAM clients that send and check their echo continuously, in one selector loop.

    Each sends a CHUNK every PERIOD seconds while less than WINDOW is unanswered:
    a steady stream on every connection that leaves the loaded machine some CPU.
    """

    WINDOW = 64 * 1024
    CHUNK = 2048
    PERIOD = 0.02

    def __init__(self, port):
        rng = random.Random(7)
        self.pattern = payload(rng, 65536 + self.CHUNK)
        self.sel = selectors.DefaultSelector()
        self.clients = []
        for i in range(NSTREAM):
            s = socket.socket()
            s.setblocking(False)
            s.bind((source(i), 0))
            s.connect_ex(("127.0.0.1", port))
            c = {"i": i, "sock": s, "local": s.getsockname(), "pending": bytearray(),
                 "sent": 0, "received": 0, "eof": False, "error": None, "wr_closed": False,
                 "off": (i * 977) % 65536, "next": 0.0}
            self.clients.append(c)
            self.sel.register(s, selectors.EVENT_READ, c)

    def _fail(self, c, why):
        c["error"] = why
        self.sel.unregister(c["sock"])
        c["sock"].close()

    def _send(self, now):
        for c in self.clients:
            if c["eof"] or c["error"] or c["wr_closed"] or now < c["next"] or \
                    len(c["pending"]) >= self.WINDOW:
                continue
            c["next"] = now + self.PERIOD
            data = self.pattern[c["off"]:c["off"] + self.CHUNK]
            try:
                n = c["sock"].send(data)
            except (BlockingIOError, InterruptedError):
                continue
            except OSError as e:
                self._fail(c, "send: %s after %d bytes back" % (e.strerror or e, c["received"]))
                continue
            c["pending"] += data[:n]
            c["sent"] += n
            c["off"] = (c["off"] + n) % 65536

    def pump(self, seconds):
        end = time.monotonic() + seconds
        while time.monotonic() < end and self.sel.get_map():
            self._send(time.monotonic())
            for key, _ in self.sel.select(timeout=0.01):
                c = key.data
                try:
                    chunk = c["sock"].recv(65536)
                except (BlockingIOError, InterruptedError):
                    continue
                except OSError as e:
                    self._fail(c, "recv: %s after %d bytes back" % (e.strerror or e,
                                                                    c["received"]))
                    continue
                if not chunk:
                    c["eof"] = True
                    self.sel.unregister(c["sock"])
                    c["sock"].close()
                    continue
                n = len(chunk)
                if n > len(c["pending"]) or chunk != bytes(c["pending"][:n]).upper():
                    self._fail(c, "wrong echo at byte %d" % c["received"])
                    continue
                del c["pending"][:n]
                c["received"] += n

    def half_close(self, clients):
        for c in clients:
            if not c["eof"] and c["error"] is None:
                c["sock"].shutdown(socket.SHUT_WR)
                c["wr_closed"] = True

    def close(self):
        for key in list(self.sel.get_map().values()):
            key.fileobj.close()
        self.sel.close()


def drain(hp, backends):
    up1, up2 = backends
    st = Streamer(hp.port)
    try:
        st.pump(2.0)
        on = {}
        for c in st.clients:
            check(c["error"] is None, "stream client %d: %s" % (c["i"], c["error"]))
            check(c["received"] > 0, "stream client %d got no echo in 2 s" % c["i"])
            b = proxy_line(backends, c["local"], 2)
            check(b is not None, "no upechod log names stream client %s:%d" % c["local"])
            on[c["i"]] = b
        mine = [c for c in st.clients if on[c["i"]] is up1]
        others = [c for c in st.clients if on[c["i"]] is up2]
        check(mine and others, "streams not spread: %d on upechod1, %d on upechod2" % (
            len(mine), len(others)))
        before = sum(c["received"] for c in mine)

        t0 = time.monotonic()
        up1.proc.send_signal(signal.SIGTERM)
        while up1.proc.poll() is None and time.monotonic() - t0 < 30:
            st.pump(0.1)
        check(up1.proc.poll() is not None, "upechod1 still running 30 s after SIGTERM")
        exit_s = time.monotonic() - t0
        check(up1.proc.returncode == 0, "upechod1 exited %s after SIGTERM:\n%s" % (
            up1.proc.returncode, up1.log()[-3000:]))
        st.pump(0.5)
        for c in mine:
            check(c["error"] is None, "upechod1's client %d: %s" % (c["i"], c["error"]))
            check(c["eof"], "upechod1's client %d got no FIN" % c["i"])
        drained = sum(c["received"] for c in mine) - before

        status = hp.wait_status({"upechod1": "DOWN", "upechod2": "UP"}, pump=st.pump)
        down_s = time.monotonic() - t0
        check("upechod1 is DOWN" in hp.log(), "HAProxy's log does not say upechod1 is DOWN")

        # New clients all reach upechod2, while its streams go on.
        with ThreadPoolExecutor(max_workers=16) as pool:
            locals_ = list(pool.map(lambda i: echo_one(hp.port, i, 99), range(NAFTER)))
        for local in locals_:
            check(proxy_line([up2], local, 2) is not None,
                  "new client %s:%d did not reach upechod2" % local)
        for c in others:
            check(c["error"] is None and not c["eof"], "upechod2's client %d: %s" % (
                c["i"], c["error"] or "closed"))
        mid = sum(c["received"] for c in others)
        st.pump(1.0)
        check(sum(c["received"] for c in others) > mid, "upechod2's streams stalled")

        # upechod2's clients end: everything they sent comes back.
        st.half_close(others)
        t1 = time.monotonic()
        while any(not c["eof"] and c["error"] is None for c in others) and \
                time.monotonic() - t1 < IO_TIMEOUT:
            st.pump(0.2)
        for c in others:
            check(c["error"] is None, "upechod2's client %d: %s" % (c["i"], c["error"]))
            check(c["eof"] and not c["pending"], "upechod2's client %d: %d of %d bytes back" % (
                c["i"], c["received"], c["sent"]))
        print("drain: %d streams on upechod1 got %d more bytes echoed right after SIGTERM, then "
              "FIN; it exited 0 after %.1f s; HAProxy had it %s after %.1f s; %d new "
              "connections went to upechod2; its %d streams echoed %d bytes, all of them" % (
                  len(mine), drained, exit_s, status["upechod1"], down_s, NAFTER, len(others),
                  sum(c["received"] for c in others)))
    finally:
        st.close()


def run(exe, version):
    with tempfile.TemporaryDirectory(prefix="upechod-haproxy-") as tmp:
        backends, hp = [], None
        try:
            backends = [Upechod(tmp, "upechod1"), Upechod(tmp, "upechod2")]
            hp = HAProxy(exe, tmp, [b.port for b in backends], version)
            many_connections(hp, backends, version, version)
            if version == 2:
                drain(hp, backends)
        except Failure:
            for b in backends:
                sys.stderr.write("--- %s log (end):\n%s\n" % (b.name, b.log()[-2000:]))
            if hp:
                sys.stderr.write("--- haproxy log:\n%s\n" % hp.log()[-2000:])
            raise
        finally:
            if hp:
                hp.stop()
            for b in backends:
                rc = b.stop()
                if b.name == "upechod2" or version == 1:
                    check(rc == 0, "%s exited %s" % (b.name, rc))


def main():
    exe, why = find_haproxy()
    if not exe:
        print("SKIP: " + why)
        return 77
    if not os.environ.get("UPECHOD"):
        print("UPECHOD is not set to the daemon's path", file=sys.stderr)
        return 1
    t0 = time.monotonic()
    try:
        run(exe, 2)
        run(exe, 1)
    except Failure as e:
        print("FAIL: %s" % e, file=sys.stderr)
        return 1
    print("haproxy: all passed in %.1f s" % (time.monotonic() - t0))
    return 0


if __name__ == "__main__":
    sys.exit(main())
