#!/usr/bin/env python3
"""Runs GitHub's published expression test data through `swdl eval` and counts the cases
that agree (the figure in docs/expressions.md, "Conformance").

Usage: scripts/github-expressions.py SWDL TESTDATA_DIR
  SWDL          the binary (target/release/swdl)
  TESTDATA_DIR  expressions/testdata of a checkout of github.com/actions/languageservices

Prints `PASSED / TOTAL`, then one line per case that differs.
"""
import glob, json, os, subprocess, sys, tempfile


def agrees(case, proc):
    if "err" in case:
        return proc.returncode != 0
    if proc.returncode != 0:
        return False
    got = json.loads(proc.stdout)
    kind, want = case["result"]["kind"], case["result"].get("value")
    if kind == "Boolean":
        return got is want
    if kind == "Number":
        if isinstance(want, str):  # NaN, Infinity
            return str(got) == want
        return isinstance(got, (int, float)) and not isinstance(got, bool) and got == want
    if kind == "Null":
        return got is None
    return got == want


def main():
    swdl, data = sys.argv[1], sys.argv[2]
    total, differ = 0, []
    with tempfile.TemporaryDirectory() as tmp:
        context = os.path.join(tmp, "context.json")
        for path in sorted(glob.glob(os.path.join(data, "*.json"))):
            for cases in json.load(open(path, encoding="utf-8")).values():
                for case in cases:
                    total += 1
                    with open(context, "w", encoding="utf-8") as f:
                        json.dump(case.get("contexts") or {}, f)
                    proc = subprocess.run(
                        [swdl, "eval", case["expr"], "--context", context],
                        capture_output=True, text=True, timeout=60,
                    )
                    if not agrees(case, proc):
                        differ.append(f"{os.path.basename(path)}: {case['expr'][:120]}")
    print(f"{total - len(differ)} / {total}")
    for line in differ:
        print(line)


if __name__ == "__main__":
    main()
