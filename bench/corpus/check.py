#!/usr/bin/env python3
"""How many real uWSGI ini files get past rsgi's config stage (issue 21, item 4).

    bench/corpus/check.py [--rsgi target/release/rsgi] [--dir target/corpus/files] [--markdown]

Each file in DIR is checked with `rsgi --ini FILE --check-config` (the config stage only:
no Python, nothing bound), run in the file's directory with an empty environment apart
from PATH, as a vassal in a fresh container would see it. The files are third-party
content and are not committed: `bench/corpus/SOURCES.tsv` names each one (repository,
path, commit) and `bench/corpus/fetch.sh` downloads them from GitHub into DIR.

Each file lands in one class:

  pass        the configuration is complete (exit 0)
  fragment    valid, but has no socket or no app: it gets them from elsewhere
              (a command line, an emperor template, another file)
  emperor     an Emperor's own config (`emperor = DIR`), not a vassal: rsgid takes its
              place (`rsgid --vassals DIR`), so rsgi rightly refuses it
  needs-env   a value stays `$(VAR)`/`%(name)` because the variable is set where the
              config runs (a container's environment), not here
  needs-file  it includes (or reads) a file that is not in the corpus
  refused     it uses a uWSGI feature rsgi will not have; the error names what to use
              instead (gevent, spooler, internal routing, ...)
  mistake     the config is wrong for uWSGI too: a typo of an option name, a value that
              is no number or address, a merge-conflict marker, no [uwsgi] section
  gap         it uses a uWSGI option rsgi does not have yet ("is a uWSGI option rsgi
              does not have"), or anything else rsgi rejects
"""
import argparse
import collections
import os
import re
import subprocess
import sys


def classify(rsgi, path):
    proc = subprocess.run(
        [os.path.abspath(rsgi), "--ini", os.path.basename(path), "--check-config"],
        cwd=os.path.dirname(os.path.abspath(path)),
        env={"PATH": "/usr/bin:/bin"},
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=20,
    )
    out = proc.stdout + proc.stderr
    if proc.returncode == 0:
        return "pass", ""
    lines = [l for l in out.splitlines() if l.startswith("rsgi: ") and "notice:" not in l
             and "would " not in l]
    reason = lines[-1][len("rsgi: "):] if lines else out.strip()[-200:]
    if re.search(r": no (socket|app)\b", reason) and proc.returncode == 78 and ":" in reason:
        # "FILE: no socket ...; no app ..." - nothing wrong, only incomplete
        head = reason.split(": ", 1)[1]
        if all(p.strip().startswith(("no socket", "no app")) for p in head.split(";")):
            return "fragment", head
    with open(path, encoding="utf-8", errors="replace") as f:
        if re.search(r"^\s*emperor\s*=", f.read(), re.M):
            return "emperor", reason
    if re.search(r"'[^']*(\$\(|%\()[^']*' is not", reason):
        return "needs-env", reason
    if re.search(r"(cannot read|No such file|not found)", reason):
        return "needs-file", reason
    if "not supported by rsgi" in reason or "not supported: " in reason:
        return "refused", reason
    if re.search(r"did you mean|is not a whole number|is not a port number|option name "
                 r"missing|no \[uwsgi\] or \[rsgi\] section", reason):
        return "mistake", reason
    return "gap", reason


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--rsgi", default="target/release/rsgi")
    ap.add_argument("--dir", default="target/corpus/files")
    ap.add_argument("--markdown", action="store_true")
    args = ap.parse_args()
    files = sorted(
        os.path.join(args.dir, f) for f in os.listdir(args.dir) if f.endswith(".ini")
    )
    if not files:
        sys.exit(f"no .ini files in {args.dir}: run bench/corpus/fetch.sh first")
    classes = collections.Counter()
    reasons = collections.Counter()
    rows = []
    for f in files:
        cls, reason = classify(args.rsgi, f)
        classes[cls] += 1
        if cls != "pass":
            # the option name, without file:line, so equal reasons group together
            key = re.sub(r"^[^:]*\.ini:\d+: ", "", reason)
            reasons[(cls, key[:150])] += 1
        rows.append((os.path.basename(f), cls, reason))
    n = len(files)
    past = classes["pass"] + classes["fragment"]
    vassals = n - classes["emperor"]
    print(f"files: {n}")
    for cls in ("pass", "fragment", "emperor", "needs-env", "needs-file", "refused",
                "mistake", "gap"):
        print(f"  {cls:<10} {classes[cls]:>4}  ({100 * classes[cls] / n:.0f}%)")
    print(f"past the config stage (pass + fragment): {past} of {n} ({100 * past / n:.0f}%)")
    print(f"of the {vassals} vassal configs (all but emperor): {past} ({100 * past / vassals:.0f}%);"
          f" with their environment (+ needs-env): {past + classes['needs-env']}"
          f" ({100 * (past + classes['needs-env']) / vassals:.0f}%)")
    print(f"complete configs (pass): {classes['pass']} of {n}")
    answered = vassals - classes["gap"]
    print(f"vassal configs rsgi either runs or rejects with a reason (all but gap): "
          f"{answered} of {vassals} ({100 * answered / vassals:.0f}%)")
    print("\nreasons (count, class, reason):")
    for (cls, key), count in reasons.most_common():
        print(f"  {count:>3}  {cls:<10} {key}")
    if args.markdown:
        print("\n| file | class | reason |\n| --- | --- | --- |")
        for name, cls, reason in rows:
            print(f"| {name} | {cls} | {reason.replace('|', '/')} |")


if __name__ == "__main__":
    main()
