#!/usr/bin/env python3
"""test-manpages.py: the man pages are clean mdoc and say what the programs do.

    test-manpages.py lint PAGE...
        mandoc -Tlint -Wwarning finds nothing in any PAGE (exit 77, skipped,
        without mandoc).

    test-manpages.py drift --upechod EXE --upecho EXE --upecho-bench EXE
            --config-keys EXE --ini conf/upechod.ini
            --man-upechod PAGE --man-ini PAGE --man-upecho PAGE --man-bench PAGE
        Every option a program's --help lists is in its page's option list and
        SYNOPSIS, and the page lists no other; every key the configuration
        parser knows (config-keys prints them) has an item in upechod.ini(5)
        with the parser's default, the page has no other, and every key of the
        shipped upechod.ini is there with the same value; every key of
        upecho-bench --json output has an item in upecho-bench(1), and the page
        has no other.

Only the mdoc source is read, so the drift test needs no formatter.
"""

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile

failures = []


def fail(msg):
    failures.append(msg)
    print("FAIL: " + msg)


def lint(pages):
    mandoc = shutil.which("mandoc")
    if mandoc is None:
        print("mandoc not found (Debian: apt-get install mandoc): skipping the lint")
        return 77
    for page in pages:
        r = subprocess.run([mandoc, "-Tlint", "-Wwarning", page], capture_output=True, text=True)
        out = (r.stdout + r.stderr).strip()
        if r.returncode != 0 or out:
            fail(f"{page}: mandoc -Tlint -Wwarning exits {r.returncode}:\n{out}")
        else:
            print(f"ok: {page}: mandoc -Tlint -Wwarning is clean")
    return 1 if failures else 0


def read_lines(path):
    with open(path, encoding="utf-8") as f:
        return f.read().splitlines()


def unescape(s):
    """mdoc source text without the zero-width \\& and with \\- as -."""
    return s.replace("\\&", "").replace("\\-", "-")


def sections(lines):
    """Map each .Sh title to its lines."""
    out, cur = {}, None
    for line in lines:
        if line.startswith(".Sh "):
            cur = unescape(line[4:].strip().strip('"'))
            out[cur] = []
        elif cur is not None:
            out[cur].append(line)
    return out


def fl_tokens(line):
    """The options a mdoc line names with Fl: 'Fl c' -> -c, 'Fl \\-config' -> --config."""
    opts = []
    for m in re.finditer(r"(?:^\.|\s)Fl\s+(\S+)", line):
        tok = unescape(m.group(1))
        if tok.startswith("-"):
            opts.append("-" + tok)
        elif re.fullmatch(r"[A-Za-z0-9]+", tok):
            opts.append("-" + tok)
    return opts


def help_options(exe):
    """The options --help lists, as (short or None, long or None) pairs."""
    r = subprocess.run([exe, "--help"], capture_output=True, text=True, timeout=30)
    if r.returncode != 0:
        fail(f"{exe} --help exits {r.returncode}")
    opts = []
    for line in r.stdout.splitlines():
        m = re.match(r"^\s+(-[A-Za-z0-9])?(?:,\s*)?(--[a-z][a-z0-9-]*)?(?:\s|$)", line)
        if m and (m.group(1) or m.group(2)):
            opts.append((m.group(1), m.group(2)))
    if not opts:
        fail(f"{exe} --help lists no options: is its format still '  -x, --long ARG'?")
    return opts


def check_options(name, exe, page):
    opts = help_options(exe)
    secs = sections(read_lines(page))
    listed = set()
    for line in secs.get("DESCRIPTION", []):
        if line.startswith(".It ") and " Fl " in " " + line[4:]:
            listed.update(fl_tokens(line))
    synopsis = set()
    for line in secs.get("SYNOPSIS", []):
        for tok in fl_tokens(line):
            # A cluster such as 'Fl hqV' is -h, -q and -V.
            if not tok.startswith("--") and len(tok) > 2:
                synopsis.update("-" + c for c in tok[1:])
            else:
                synopsis.add(tok)
    known = set()
    for short, long in opts:
        for o in (short, long):
            if o is None:
                continue
            known.add(o)
            if o not in listed:
                fail(f"{page}: {name} --help lists {o}, the option list (.It Fl) does not")
        want = short or long
        if want not in synopsis:
            fail(f"{page}: {name} --help lists {want}, the SYNOPSIS does not")
    for o in sorted(listed - known):
        fail(f"{page}: the option list has {o}, which {name} --help does not list")
    for o in sorted(synopsis - known):
        fail(f"{page}: the SYNOPSIS has {o}, which {name} --help does not list")
    print(f"ok: {page}: checked {len(opts)} options of {name}")


MACROS = {"Ar", "Cm", "Dq", "Dv", "Ic", "Li", "No", "Ns", "Pa", "Pq", "Ql", "Sq", "Va"}


def plain(lines):
    """The words of mdoc lines, macro names and escapes left out."""
    words = []
    for line in lines:
        if line.startswith('.\\"'):
            continue
        toks = unescape(line).split()
        if line.startswith("."):
            toks = toks[1:]
        words.extend(t for t in toks if t not in MACROS)
    return " ".join(words)


def page_keys(page):
    """{(section, key): the item's lines} for each '.It Ic key' under '.Ss [section]'."""
    keys, section, cur = {}, None, None
    for line in read_lines(page):
        if line.startswith(".Sh ") or line.startswith(".Ss "):
            m = re.fullmatch(r"\[([a-z_]+)\]", unescape(line[4:]).strip())
            section = m.group(1) if m and line.startswith(".Ss ") else None
            cur = None
        elif line.startswith(".It ") and section is not None:
            m = re.match(r"\.It\s+Ic\s+(\S+)", line)
            cur = None
            if m:
                key = (section, unescape(m.group(1)))
                if key in keys:
                    fail(f"{page}: [{key[0]}] {key[1]} has two items")
                keys[key] = cur = []
        elif line.startswith(".El"):
            cur = None
        elif cur is not None:
            cur.append(line)
    return keys


def ini_keys(path):
    """{(section, key): value} of an upechod.ini, list continuation lines left out."""
    keys, section = {}, None
    for line in read_lines(path):
        s = line.strip()
        if not s or s[0] in ";#" or line[0].isspace():
            continue
        m = re.fullmatch(r"\[([^\]]+)\]", s)
        if m:
            section = m.group(1)
            continue
        m = re.fullmatch(r"([A-Za-z0-9_]+)\s*=\s*(.*?)(?:\s+;.*)?", s)
        if m:
            keys[(section, m.group(1))] = m.group(2)
    return keys


def check_config(config_keys_exe, ini, page):
    r = subprocess.run([config_keys_exe], capture_output=True, text=True, timeout=30)
    if r.returncode != 0:
        fail(f"{config_keys_exe} exits {r.returncode}")
    parser = {}
    for line in r.stdout.splitlines():
        section, key, default = line.split("\t")
        parser[(section, key)] = default
    if len(parser) < 10:
        fail(f"{config_keys_exe} lists only {len(parser)} keys")
    documented = page_keys(page)
    for (section, key), default in parser.items():
        block = documented.get((section, key))
        if block is None:
            fail(f"{page}: the parser knows [{section}] {key}, the page has no '.It Ic {key}' "
                 f"under '.Ss [{section}]'")
            continue
        text = plain(block)
        m = re.search(r"The default is (\S+?) ?\.(?:\s|$)", text)
        if m is None:
            fail(f"{page}: [{section}] {key}: no 'The default is ...' in its item")
        elif m.group(1) != (default or "empty"):
            fail(f"{page}: [{section}] {key}: the page says the default is {m.group(1)}, "
                 f"the parser {default or 'empty'}")
    for section, key in sorted(set(documented) - set(parser)):
        fail(f"{page}: documents [{section}] {key}, which the parser does not know")
    shipped = ini_keys(ini)
    for (section, key), value in shipped.items():
        if (section, key) not in documented:
            fail(f"{page}: {ini} has [{section}] {key}, the page does not")
        elif (section, key) in parser and parser[(section, key)] != value:
            fail(f"{ini}: [{section}] {key} = {value}, but the built-in default is "
                 f"{parser[(section, key)]}")
    for section, key in sorted(set(parser) - set(shipped)):
        fail(f"{ini}: the parser knows [{section}] {key}, the shipped file does not show it")
    print(f"ok: {page}: checked {len(parser)} keys of the parser and {len(shipped)} of {ini}")


def json_items(page):
    """{key: the item's lines} of the '.It Cm key' items under '.Ss JSON output'."""
    items, inside, cur, depth = {}, False, None, 0
    for line in read_lines(page):
        if line.startswith(".Sh ") or line.startswith(".Ss "):
            inside = unescape(line[4:]).strip() == "JSON output"
            cur, depth = None, 0
        elif not inside:
            continue
        elif line.startswith(".Bl"):
            depth += 1
        elif line.startswith(".El"):
            depth -= 1
            cur = None
        elif line.startswith(".It ") and depth == 1:
            m = re.match(r"\.It\s+Cm\s+(\S+)", line)
            cur = items.setdefault(m.group(1), []) if m else None
        elif cur is not None:
            cur.append(line)
    return items


def check_json(bench, page):
    with tempfile.TemporaryDirectory() as d:
        # Nothing listens there: one connect failure, and still a full summary.
        target = "unix://" + os.path.join(d, "nothing.sock")
        r = subprocess.run([bench, "--json", "-q", "-c", "1", "-n", "1", target],
                           capture_output=True, text=True, timeout=60)
    try:
        out = json.loads(r.stdout)
    except ValueError:
        fail(f"upecho-bench --json printed no JSON object: {r.stdout!r} {r.stderr!r}")
        return
    if r.returncode != 1 or out.get("ok") is not False:
        fail(f"upecho-bench against nothing exits {r.returncode} with ok = {out.get('ok')}")
    items = json_items(page)
    for key, value in out.items():
        if key not in items:
            fail(f"{page}: upecho-bench --json prints {key}, the page has no '.It Cm {key}' "
                 "under '.Ss JSON output'")
            continue
        if isinstance(value, dict):
            text = " ".join(items[key]) + " " + " ".join(items.get("latency_ns", []))
            for sub in value:
                if not re.search(r"(?:^|\s|\.)Cm\s+" + re.escape(sub) + r"(?:\s|$)", text):
                    fail(f"{page}: {key}: the key {sub} is not named with Cm in its item")
    for key in sorted(set(items) - set(out)):
        fail(f"{page}: documents the JSON key {key}, which upecho-bench --json does not print")
    print(f"ok: {page}: checked {len(out)} JSON keys")


def drift(a):
    check_options("upechod", a.upechod, a.man_upechod)
    check_options("upecho", a.upecho, a.man_upecho)
    check_options("upecho-bench", a.upecho_bench, a.man_bench)
    check_config(a.config_keys, a.ini, a.man_ini)
    check_json(a.upecho_bench, a.man_bench)
    return 1 if failures else 0


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = p.add_subparsers(dest="cmd", required=True)
    pl = sub.add_parser("lint")
    pl.add_argument("pages", nargs="+")
    pd = sub.add_parser("drift")
    for opt in ("upechod", "upecho", "upecho-bench", "config-keys", "ini", "man-upechod",
                "man-ini", "man-upecho", "man-bench"):
        pd.add_argument("--" + opt, required=True)
    a = p.parse_args()
    rc = lint(a.pages) if a.cmd == "lint" else drift(a)
    if failures:
        print(f"{len(failures)} problem(s)")
    return rc


if __name__ == "__main__":
    sys.exit(main())
