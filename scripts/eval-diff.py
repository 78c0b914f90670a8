#!/usr/bin/env python3
"""Compares two `offside eval --json` outputs query by query, cost fields left out.

    scripts/eval-diff.py before.json after.json

Prints how many queries differ in what they decided (flagged reference, time to detect,
keyframes hit, each choice of tiers, each run joined mid-stream), then each differing query, then each run's headline
figures. Exits 1 when any query differs, so a behaviour-neutral change can be checked with it.
"""
import json
import sys

ANSWER = ("kind", "transform", "expected", "flagged_as", "ttd_s", "keyframes_hit", "by_tier",
          "joined_mid_stream")


def load(path):
    with open(path) as f:
        report = json.load(f)
    return report, {q["query"]: {k: q.get(k) for k in ANSWER} for q in report["queries"]}


def total(cost):
    return sum(cost[k] for k in ("decode_ms", "pdq_hash_ms", "pdq_lookup_ms",
                                 "features_extract_ms", "features_lookup_ms"))


def main():
    if len(sys.argv) != 3:
        sys.exit(__doc__)
    (a, qa), (b, qb) = load(sys.argv[1]), load(sys.argv[2])
    differ = sorted(n for n in qa.keys() | qb.keys() if qa.get(n) != qb.get(n))
    print(f"{len(qa)} and {len(qb)} queries, {len(differ)} differ")
    for n in differ:
        x, y = qa.get(n) or {}, qb.get(n) or {}
        print(f"  {n}: flagged {x.get('flagged_as')} -> {y.get('flagged_as')}, "
              f"ttd {x.get('ttd_s')} -> {y.get('ttd_s')}, "
              f"keyframes hit {x.get('keyframes_hit')} -> {y.get('keyframes_hit')}")
    for path, r in ((sys.argv[1], a), (sys.argv[2], b)):
        print(f"{path}: recall {100 * r['overall_recall']:.1f} %, false flags {r['false_flags']}, "
              f"negative keyframe {total(r['cost_ms_per_negative_keyframe']):.2f} ms, "
              f"platform mix {r['platform_mix_ms_per_keyframe']:.2f} ms")
    sys.exit(1 if differ else 0)


if __name__ == "__main__":
    main()
