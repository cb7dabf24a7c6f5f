#!/usr/bin/env python3
"""The uWSGI options public configs use most, and what rsgi does with each (issue 21,
item 3): reads every ini in DIR (default target/corpus/files), counts in how many files
each option name appears, and asks the real `rsgi` about each name with a one-line config
(`NAME = VALUE`, VALUE being the first value the corpus gives it) run through
`rsgi --check-config`:

  supported   rsgi applies it (the config may still lack a socket: that is not the point)
  no-op       accepted with a notice saying why it means nothing in rsgi
  refused     rejected with what to use instead
  missing     a real uWSGI option rsgi does not have (yet)
  not-option  neither rsgi's nor uWSGI's: a config's own variable (ignored with a notice)
              or a typo (an error with "did you mean")
  value?      the name is known but the corpus's first value is rejected (the reason shown)

    bench/corpus/options.py [--rsgi target/release/rsgi] [--dir DIR] [--top 120] [--markdown]
"""
import argparse
import collections
import os
import re
import subprocess
import tempfile

LOGIC_END = {"endif", "end-if", "endfor", "end-for", "end", "else"}


def entries(path):
    with open(path, encoding="utf-8", errors="replace") as f:
        for raw in f:
            line = raw.strip()
            if not line or line[0] in ";#[":
                continue
            key, _, value = line.partition("=")
            key = key.strip()
            if not key or " " in key or key.startswith(("<", ">", "=")):
                continue
            yield key, value.strip()


def classify(rsgi, name, value, workdir):
    ini = os.path.join(workdir, "one.ini")
    body = f"{name} = {value}\n" if value else f"{name}\n"
    if name.startswith(("if-", "if", "for")) and name not in LOGIC_END:
        body += "endif\n"
    with open(ini, "w") as f:
        f.write("[uwsgi]\n" + body)
    p = subprocess.run([rsgi, "--ini", ini, "--check-config"], capture_output=True,
                       text=True, cwd=workdir, env={"PATH": "/usr/bin:/bin"}, timeout=20)
    out = p.stdout + p.stderr
    err = [l for l in out.splitlines()
           if re.match(r"rsgi: .*one\.ini:\d+: ", l) and not l.startswith("rsgi: notice:")]
    if f": {name}: ignored: not an option" in out:
        return "not-option", "ignored with a notice (a config's own variable)"
    if f": {name}: ignored: " in out:
        return "no-op", out.split(f": {name}: ignored: ", 1)[1].splitlines()[0]
    if err:
        msg = re.sub(r"^rsgi: .*one\.ini:\d+: ", "", err[0])
        if "is a uWSGI option rsgi does not have" in msg:
            return "missing", ""
        if "unknown option" in msg:
            return "not-option", msg
        if "not supported" in msg:
            return "refused", msg.split(": ", 2)[-1]
        if re.search(r"\$\(|%\(|no \[\w+\] section", msg):
            return "supported", "(the corpus's value needs its environment or file)"
        return "value?", msg
    return "supported", ""


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--rsgi", default="target/release/rsgi")
    ap.add_argument("--dir", default="target/corpus/files")
    ap.add_argument("--top", type=int, default=120)
    ap.add_argument("--markdown", action="store_true")
    args = ap.parse_args()
    rsgi = os.path.abspath(args.rsgi)
    files = collections.Counter()
    first_value = {}
    for name in sorted(os.listdir(args.dir)):
        if not name.endswith(".ini"):
            continue
        seen = set()
        for key, value in entries(os.path.join(args.dir, name)):
            seen.add(key)
            first_value.setdefault(key, value)
        files.update(seen)
    rows = []
    with tempfile.TemporaryDirectory() as work:
        for name, count in files.most_common(args.top):
            status, why = classify(rsgi, name, first_value[name], work)
            rows.append((name, count, status, why))
    tally = collections.Counter(r[2] for r in rows)
    print(f"top {len(rows)} option names by files using them: "
          + ", ".join(f"{k} {v}" for k, v in tally.most_common()))
    if args.markdown:
        print("\n| option | files | rsgi | why / instead |\n|---|---|---|---|")
        for name, count, status, why in rows:
            print(f"| `{name}` | {count} | {status} | {why.replace('|', '/')} |")
    else:
        for name, count, status, why in rows:
            print(f"{count:>4}  {status:<9} {name:<28} {why[:90]}")


if __name__ == "__main__":
    main()
