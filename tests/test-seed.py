#!/usr/bin/env python3
"""test-seed.py: the three Python clients upechod was specified against, run unchanged.

tests/seed/ holds the TCP client (port 8000), the interactive session client
(port 9090) and the UDP client (port 7777) exactly as published, with the
indentation the published text had lost restored and the port read from
UPECHOD_SEED_PORT instead of hard-coded.  Nothing else differs, so the
session and UDP clients still lack their own "import socket"; they are run
through runpy with the socket module already in their globals, as they were
when they sat below the server code in one file.

The daemon runs on port 0 with TCP and UDP on 127.0.0.1; $UPECHOD names it.
"""

import os
import re
import signal
import socket
import subprocess
import sys
import tempfile
import time
import unittest

SEED_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "seed")
RUNNER = (
    "import runpy, socket, sys; "
    "runpy.run_path(sys.argv[1], init_globals={'socket': socket}, run_name='__main__')"
)
READY_TIMEOUT = 10.0
CLIENT_TIMEOUT = 10.0

CONFIG = """\
[tcp]
enabled = yes
listen = 127.0.0.1:0
[udp]
enabled = yes
listen = 127.0.0.1:0
[unix]
enabled = no
[log]
level = info
"""


class Daemon:
    """upechod in the foreground, its stderr in a file, ports read from its log."""

    def __init__(self):
        self.tmp = tempfile.TemporaryDirectory(prefix="upechod-seed-")
        self.config = os.path.join(self.tmp.name, "upechod.ini")
        self.log_path = os.path.join(self.tmp.name, "upechod.log")
        with open(self.config, "w") as f:
            f.write(CONFIG)
        exe = os.environ.get("UPECHOD")
        if not exe:
            raise RuntimeError("UPECHOD is not set to the daemon's path")
        with open(self.log_path, "wb") as log:
            self.proc = subprocess.Popen(
                [exe, "-c", self.config],
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=log,
            )
        self.tcp_port = self.udp_port = None
        self._wait_ready()

    def log(self):
        with open(self.log_path, errors="replace") as f:
            return f.read()

    def _wait_ready(self):
        deadline = time.monotonic() + READY_TIMEOUT
        while time.monotonic() < deadline:
            text = self.log()
            if any(line.rstrip().endswith("ready") for line in text.splitlines()):
                tcp = re.search(r"listening on tcp 127\.0\.0\.1:(\d+)", text)
                udp = re.search(r"listening on udp 127\.0\.0\.1:(\d+)", text)
                if not tcp or not udp:
                    raise AssertionError("no tcp/udp ports in the log:\n" + text)
                self.tcp_port, self.udp_port = int(tcp.group(1)), int(udp.group(1))
                return
            if self.proc.poll() is not None:
                raise AssertionError(
                    f"upechod exited with {self.proc.returncode} before ready:\n{text}"
                )
            time.sleep(0.01)
        self.proc.kill()
        raise AssertionError(f"upechod not ready after {READY_TIMEOUT} s:\n{self.log()}")

    def stop(self):
        """SIGTERM and the exit status; SIGKILL if it does not go."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.tmp.cleanup()
        return self.proc.returncode


def run_seed(name, port, stdin_text):
    """Run tests/seed/NAME with its port and stdin; returns the CompletedProcess."""
    env = dict(os.environ, UPECHOD_SEED_PORT=str(port))
    return subprocess.run(
        [sys.executable, "-c", RUNNER, os.path.join(SEED_DIR, name)],
        input=stdin_text,
        capture_output=True,
        text=True,
        encoding="utf-8",
        env=env,
        timeout=CLIENT_TIMEOUT,
    )


class SeedClients(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.daemon = Daemon()

    @classmethod
    def tearDownClass(cls):
        status = cls.daemon.stop()
        if status != 0:
            raise AssertionError(f"upechod exited with {status} after SIGTERM")

    def test_tcp_client(self):
        r = run_seed("seed_tcp_client.py", self.daemon.tcp_port, "")
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertEqual(r.stdout, "Server Reply: HELLO\n")

    def test_session_client(self):
        # This client alone connects to "localhost" by name; a machine with no
        # /etc/hosts (a bare chroot) cannot resolve it, whatever the daemon does.
        try:
            socket.getaddrinfo("localhost", self.daemon.tcp_port, socket.AF_INET)
        except socket.gaierror as e:
            self.skipTest(f"'localhost' does not resolve on this machine: {e}")
        # An empty line is the client's own way to stop.
        lines = ["hello", "Mixed Case 123 !?", "\u00fcn\u00efcode stays binary", ""]
        r = run_seed("seed_session_client.py", self.daemon.tcp_port, "\n".join(lines) + "\n")
        self.assertEqual(r.returncode, 0, r.stderr)
        prompt = "Enter message > "
        self.assertEqual(
            r.stdout,
            prompt + "Response: HELLO\n"
            + prompt + "Response: MIXED CASE 123 !?\n"
            # Only ASCII letters change; the UTF-8 bytes of the others pass through.
            + prompt + "Response: \u00fcN\u00efCODE STAYS BINARY\n"
            + prompt,
        )

    def test_udp_client(self):
        # The client loops on input() forever; end of stdin ends it with EOFError.
        lines = ["hello udp", "", "Sphinx of black quartz, judge my vow"]
        r = run_seed("seed_udp_client.py", self.daemon.udp_port, "\n".join(lines) + "\n")
        self.assertIn("EOFError", r.stderr)
        self.assertEqual(r.returncode, 1, r.stderr)
        prompt = "Type message > "
        self.assertEqual(
            r.stdout,
            prompt + "Got: b'HELLO UDP'\n"
            + prompt + "Got: b''\n"
            + prompt + "Got: b'SPHINX OF BLACK QUARTZ, JUDGE MY VOW'\n"
            + prompt,
        )


if __name__ == "__main__":
    unittest.main(verbosity=2)
