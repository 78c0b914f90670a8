"""How the chance of a false flag grows with the reference library (issue #17, item 3).

Every real clip the development recipe has becomes a reference, in steps, and every query of an
evaluation set runs against each library, except the negatives cut from a clip that is now in
the library (they would be true copies of it):

    python3 scripts/library-size.py build target/eval-dev target/libsize/dev
    python3 scripts/library-size.py build target/stress-set target/libsize/stress
    for d in target/libsize/*/L*; do
        target/release/offside eval "$d" --cache target/eval-cache --json > "$d.json"
    done
    python3 scripts/library-size.py table target/libsize/dev target/libsize/stress

The libraries: the set's own references (L10); with the first half of the unrelated clips
(L17a); with the second half instead (L18b); with both (L25). Left out of every library: the
hard negative's clip (another take of a reference, which must never match) and the two clips the
recipes paste into positives (the `overlay` face-cam and `pip_reaction`'s street scene), whose
re-streams would rightly be flagged for them too. Folders are symlinks into the set and the
sources; `build` is idempotent.

`table` prints, per library and per group of negatives (the hard negative apart from the
unrelated clips), the negative keyframes with any hit, per tier, the negatives flagged and the
set's recall: the table in docs/EVALUATION.md.
"""

import csv
import json
import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
SOURCES = os.environ.get(
    "EVAL_DEV_SOURCES", os.path.join(HERE, "..", "..", "shared", "eval-dev", "sources")
)
# Never indexed: the hard negative's clip, and the clips pasted into positives.
KEEP_OUT = {"unrel_webcam_take2.mp4", "unrel_webcam_tiny.mp4", "unrel_seattle.mp4"}


def libraries():
    unrelated = sorted(
        f for f in os.listdir(SOURCES) if f.startswith("unrel_") and f not in KEEP_OUT
    )
    half = len(unrelated) // 2
    first, second = unrelated[:half], unrelated[half:]
    return {"L10": [], "L17a": first, "L18b": second, "L25": first + second}


def link(target, name):
    if not os.path.lexists(name):
        os.symlink(os.path.realpath(target), name)


def build(set_dir, out):
    with open(os.path.join(set_dir, "manifest.tsv")) as fh:
        rows = list(csv.reader(fh, delimiter="\t"))
    head, body = rows[0], rows[1:]
    col = {h: i for i, h in enumerate(head)}
    refs = sorted(os.listdir(os.path.join(set_dir, "refs")))
    for name, extra in libraries().items():
        lib = os.path.join(out, name)
        os.makedirs(os.path.join(lib, "refs"), exist_ok=True)
        for f in refs:
            link(os.path.join(set_dir, "refs", f), os.path.join(lib, "refs", f))
        for f in extra:
            link(os.path.join(SOURCES, f), os.path.join(lib, "refs", f))
        kept = [
            r for r in body if not (r[col["kind"]] == "negative" and r[col["source"]] in extra)
        ]
        with open(os.path.join(lib, "manifest.tsv"), "w") as fh:
            w = csv.writer(fh, delimiter="\t", lineterminator="\n")
            w.writerow(head)
            w.writerows(kept)
        for r in kept:
            q = r[col["query"]]
            link(os.path.join(set_dir, q), os.path.join(lib, q))
        print(f"{lib}: {len(refs) + len(extra)} references, {len(kept)} queries")


def table(dirs):
    print(
        "| set | library | references (s) | negatives | queries | keyframes | any hit | PDQ tier "
        "| geometric tier | flagged | recall |"
    )
    print("|---|---|---:|---|---:|---:|---:|---:|---:|---:|---:|")
    for d in dirs:
        for name in libraries():
            path = os.path.join(d, name + ".json")
            if not os.path.exists(path):
                continue
            with open(path) as fh:
                r = json.load(fh)
            refs = f'{r["references"]["references"]} ({r["references"]["video_seconds"]:.0f})'
            groups = {"hard negative": [], "unrelated": []}
            for q in r["queries"]:
                if q["kind"] == "negative":
                    groups["hard negative" if q["hard_negative"] else "unrelated"].append(q)
            for group, qs in groups.items():
                if not qs:
                    continue
                k = sum(q["keyframes"] for q in qs)

                def hit(tier):
                    n = sum(q["by_tier"][tier]["keyframes_hit"] for q in qs)
                    return f"{n} ({100 * n / k:.1f} %)"

                flagged = sum(1 for q in qs if q["flagged_as"])
                print(
                    f"| {os.path.basename(d)} | {name} | {refs} | {group} | {len(qs)} | {k} "
                    f"| {hit('both')} | {hit('pdq')} | {hit('features')} | {flagged} "
                    f"| {100 * r['overall_recall']:.1f} % |"
                )


if __name__ == "__main__":
    if len(sys.argv) == 4 and sys.argv[1] == "build":
        build(sys.argv[2], sys.argv[3])
    elif len(sys.argv) >= 3 and sys.argv[1] == "table":
        table(sys.argv[2:])
    else:
        sys.exit(__doc__)
