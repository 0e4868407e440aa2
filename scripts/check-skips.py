#!/usr/bin/env python3
"""Compares the tests ctest skipped (its --output-junit file) with
tests/expected-skips.txt.

    scripts/check-skips.py JUNIT.xml EXPECTED.txt [--strict]

Prints each skipped test with the reason the list gives (or "NOT EXPECTED").
With --strict, exits 1 when the skipped set differs from the list in either
direction; otherwise exits 0.  Exits 2 when a file cannot be read.
"""
import sys
import xml.etree.ElementTree as ET


def load_expected(path):
    out = []
    for n, line in enumerate(open(path, encoding="utf-8"), 1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        name, sep, why = line.partition(" -- ")
        if not sep or not name.strip() or not why.strip():
            raise ValueError("%s:%d: expected 'TEST_NAME -- reason'" % (path, n))
        out.append((name.strip(), why.strip()))
    return out


def matches(pattern, name):
    return name.startswith(pattern[:-1]) if pattern.endswith("*") else name == pattern


def main():
    args = [a for a in sys.argv[1:] if a != "--strict"]
    strict = len(args) != len(sys.argv) - 1
    if len(args) != 2:
        print(__doc__.strip().splitlines()[3].strip(), file=sys.stderr)
        return 2
    try:
        root = ET.parse(args[0]).getroot()
        expected = load_expected(args[1])
    except (OSError, ET.ParseError, ValueError) as e:
        print("check-skips: %s" % e, file=sys.stderr)
        return 2
    skipped = sorted(tc.get("name", "") for tc in root.iter("testcase") if tc.find("skipped") is not None)
    ran = sum(1 for _ in root.iter("testcase"))
    reasons = dict(expected)
    unexpected, used = [], set()
    for name in skipped:
        hit = next((p for p, _ in expected if matches(p, name)), None)
        if hit is not None:
            used.add(hit)
            print("skipped: %s -- %s" % (name, reasons[hit]))
        else:
            unexpected.append(name)
            print("skipped: %s -- NOT EXPECTED (not in %s)" % (name, args[1]))
    not_skipped = [p for p, _ in expected if p not in used]
    for p in not_skipped:
        print("listed in the expected skips, but ran here: %s" % p)
    print("check-skips: %d tests, %d skipped, %d not expected, %d expected skips that ran"
          % (ran, len(skipped), len(unexpected), len(not_skipped)))
    if strict and (unexpected or not_skipped):
        print("check-skips: the skipped tests differ from %s (RUNNEL_STRICT_SKIPS=1)" % args[1], file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
