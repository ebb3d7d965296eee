#!/usr/bin/env python3
"""client.py: echo clients for boot-test.sh, run in the booted container's network namespace.

  client.py tcp HOST PORT | udp HOST PORT | unix PATH
      send a line, expect it back uppercased; exit 0, or 1 saying what came back
  client.py stuck HOST PORT SECONDS
      connect, write without ever reading until the socket takes no more,
      print "stuck", then hold the connection for SECONDS
  client.py idle HOST PORT SECONDS
      connect, echo one line, print "idle", then hold the connection for
      SECONDS sending nothing
"""
import socket
import sys
import time

LINE = b"hello from the booted test\n"
WANT = LINE.upper()


def fail(msg):
    print(msg)
    sys.exit(1)


def stream_echo(s):
    s.sendall(LINE)
    got = b""
    while len(got) < len(WANT):
        chunk = s.recv(4096)
        if not chunk:
            break
        got += chunk
    if got != WANT:
        fail(f"got {got!r}, want {WANT!r}")


def connect_tcp(host, port):
    return socket.create_connection((host, int(port)), timeout=5)


def main():
    mode, args = sys.argv[1], sys.argv[2:]
    try:
        if mode == "tcp":
            with connect_tcp(*args) as s:
                stream_echo(s)
        elif mode == "unix":
            with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
                s.settimeout(5)
                s.connect(args[0])
                stream_echo(s)
        elif mode == "udp":
            with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
                s.settimeout(2)
                for _ in range(3):
                    s.sendto(LINE, (args[0], int(args[1])))
                    try:
                        got = s.recv(65536)
                        break
                    except socket.timeout:
                        got = None
                if got != WANT:
                    fail(f"got {got!r}, want {WANT!r}")
        elif mode == "stuck":
            s = connect_tcp(args[0], args[1])
            s.setblocking(False)
            block = b"x" * 65536
            sent, quiet = 0, 0
            while quiet < 10 and sent < 256 << 20:
                try:
                    sent += s.send(block)
                    quiet = 0
                except BlockingIOError:
                    quiet += 1
                    time.sleep(0.1)
            print(f"stuck after {sent} bytes", flush=True)
            time.sleep(float(args[2]))
        elif mode == "idle":
            s = connect_tcp(args[0], args[1])
            stream_echo(s)
            print("idle", flush=True)
            time.sleep(float(args[2]))
        else:
            fail(f"unknown mode {mode}")
    except OSError as e:
        fail(f"{mode} {' '.join(args)}: {e}")


main()
