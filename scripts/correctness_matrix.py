#!/usr/bin/env python3
"""The correctness matrix of scripts/multi-gpu-check: reads OUT/np<N>/{pytest,cpp}/rank<R>.xml
(JUnit files of pytest and GoogleTest, one per rank) and OUT/status.txt ("np<N> step rc"),
prints one row per test function (cases passed on every rank / cases) and per step, one column
per rank count. Exit code 1 when anything failed. Needs only the standard library.
Usage: scripts/correctness_matrix.py OUT"""
import collections
import glob
import os
import re
import sys
import xml.etree.ElementTree as ET


def _one_line(text):
    return " ".join((text or "").split())[:200]


def outcomes(path):
    """(test id, outcome, message) of each testcase: outcome 'pass', 'fail' or 'skip'."""
    for case in ET.parse(path).getroot().iter("testcase"):
        test = f"{case.get('classname', '')}::{case.get('name', '')}"
        failure = case.find("failure") if case.find("failure") is not None else case.find("error")
        skipped = case.find("skipped")
        if failure is not None:
            yield test, "fail", _one_line(failure.get("message") or failure.text)
        elif skipped is not None or case.get("result") in ("skipped", "suppressed") or case.get("status") == "notrun":
            yield test, "skip", _one_line(skipped.get("message") if skipped is not None else "")
        else:
            yield test, "pass", ""


FOLDED_MODULES = {"test_import": "python test_import::* (CPU-side API checks)"}


def group_of(kind, test):
    """Row of a test: pytest module::function (parameters folded), or the whole C++ binary."""
    if kind == "cpp":
        return "C++ moe_ep_gpu_tests (each rank: its own GPU)"
    module, _, name = test.partition("::")
    module = module.split(".")[-1]
    function = re.sub(r"\[.*\]$", "", name)
    return FOLDED_MODULES.get(module, f"python {module}::{function}")


def collect(out):
    """{nproc: {row: {case: [outcomes over ranks]}}}, failure lines, skip reasons."""
    table = collections.defaultdict(lambda: collections.defaultdict(lambda: collections.defaultdict(list)))
    failures, skip_reasons = [], collections.defaultdict(set)
    for path in sorted(glob.glob(os.path.join(out, "np*", "*", "rank*.xml"))):
        nproc = int(re.search(r"np(\d+)", path).group(1))
        kind = os.path.basename(os.path.dirname(path))
        rank = re.search(r"rank(\d+)", os.path.basename(path)).group(1)
        try:
            cases = list(outcomes(path))
        except ET.ParseError as error:
            failures.append(f"np{nproc} rank {rank} {kind}: unreadable {path} ({error})")
            continue
        for test, outcome, message in cases:
            table[nproc][group_of(kind, test)][test].append(outcome)
            if outcome == "fail":
                failures.append(f"np{nproc} rank {rank} {test}: {message}")
            elif outcome == "skip" and rank == "0":
                skip_reasons[message].add(group_of(kind, test))
    return table, failures, skip_reasons


def cell(cases):
    """'k/n' passed (no failure on any rank, a pass on some rank) out of n cases that ran."""
    ran = {t: o for t, o in cases.items() if any(x != "skip" for x in o)}
    if not ran:
        return "skip"
    failed = sum(1 for o in ran.values() if "fail" in o)
    passed = len(ran) - failed
    return f"FAIL {failed}/{len(ran)}" if failed else f"{passed}/{len(ran)}"


def read_status(out):
    status = collections.defaultdict(dict)
    path = os.path.join(out, "status.txt")
    if os.path.exists(path):
        for line in open(path):
            parts = line.split()
            if len(parts) == 3 and parts[0].startswith("np"):
                status[int(parts[0][2:])][parts[1]] = int(parts[2])
    return status


def main(out):
    table, failures, skip_reasons = collect(out)
    status = read_status(out)
    columns = sorted(set(table) | set(status))
    if not columns:
        print(f"correctness matrix: nothing under {out}")
        return 1
    rows = sorted({row for n in table for row in table[n]})
    skipped_rows = [r for r in rows if all(cell(table[n][r]) == "skip" for n in columns if r in table[n])]
    rows = [r for r in rows if r not in skipped_rows]
    width = max([len(r) for r in rows] + [40])
    print("correctness, one rank per GPU: cases passed on every rank / cases run (FAIL k/n: k failed on some "
          "rank; skip: skipped on every rank)")
    print(f"{'test':<{width}} " + " ".join(f"{'np' + str(n):>10}" for n in columns))
    for row in rows:
        cells = [cell(table[n][row]) if row in table[n] else "-" for n in columns]
        print(f"{row:<{width}} " + " ".join(f"{c:>10}" for c in cells))
    for step in ("pytest", "cpp", "bench"):
        codes = [status[n].get(step) for n in columns]
        if any(c is not None for c in codes):
            label = {"pytest": "exit: pytest (every rank)", "cpp": "exit: C++ GPU tests (every rank)",
                     "bench": "exit: nccl_compare (checks + timing)"}[step]
            print(f"{label:<{width}} " + " ".join(
                f"{'-' if c is None else 'pass' if c == 0 else f'FAIL rc={c}':>10}" for c in codes))
    if skip_reasons:
        print(f"skips ({len(skipped_rows)} test functions skipped on every rank), rank 0's reasons:")
        for reason, where in sorted(skip_reasons.items()):
            names = sorted(w.replace("python ", "") for w in where)
            print(f"  {reason}: {', '.join(names[:6])}{' ...' if len(names) > 6 else ''}")
    for line in failures[:40]:
        print(f"FAILED {line}")
    for n in columns:
        if "notrun" in status[n]:
            print(f"np{n}: not run (this machine has {status[n]['notrun']} GPUs)")
    bad = failures or any(rc != 0 for n in status for step, rc in status[n].items() if step != "notrun")
    return 1 if bad else 0


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit(__doc__)
    sys.exit(main(sys.argv[1]))
