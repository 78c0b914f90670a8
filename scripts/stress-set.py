"""A stress set for `offside eval`: five re-streaming transformations the development recipe
lacks, on every reference longer than 20 s, and the hard negative under every transformation,
three times each (precision is what a new transformation breaks first).

    python3 scripts/stress-set.py OUT_DIR       # about 10 minutes on one core

It imports the development recipe (../shared/eval-dev/build.py, or EVAL_DEV=dir) for its
encoder, keyframe extraction and manifest format, so the set is built and scored like the
development set: `offside eval OUT_DIR`. Needs what that recipe needs (ffmpeg, Pillow).
"""
import concurrent.futures as cf
import csv
import os
import random
import shutil
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
EVAL_DEV = os.environ.get("EVAL_DEV", os.path.join(HERE, "..", "..", "shared", "eval-dev"))
sys.path.insert(0, EVAL_DEV)
import build as B  # noqa: E402
even, fmt = B.even, B.fmt
SEED = "offside-extra-1"


def t_zoom_offcentre(rng, W, H, ctx):
    """Zoomed in by 12-28 % on a random part of the picture (hiding a logo or a score bug)."""
    z = round(rng.uniform(0.72, 0.88), 3)
    cw, ch = even(W * z), even(H * z)
    x, y = int(rng.uniform(0, W - cw)), int(rng.uniform(0, H - ch))
    return (f"[v0]crop={cw}:{ch}:{x}:{y},scale={W}:{H}[vout]", [], {}, 1.0,
            {"zoom": z, "x": x, "y": y})


def t_window(rng, W, H, ctx):
    """The picture at 62-74 % as a window beside a chat panel, on a flat dark desktop."""
    s = round(rng.uniform(0.62, 0.74), 3)
    iw, ih = even(W * s), even(H * s)
    x, y = even(W * 0.02), even((H - ih) * rng.uniform(0.2, 0.8))
    cx = x + iw + even(W * 0.02)
    fs = max(10, H // 32)
    lines = "".join(
        f",drawtext={B.font_opt()}:text='user{i}\\: gg lol':fontcolor=0xdddddd:fontsize={fs}:"
        f"x={cx + 8}:y={y + 10 + i * (H // 20)}" for i in range(8))
    g = (f"[v0]scale={iw}:{ih},pad={W}:{H}:{x}:{y}:color=0x202225,"
         f"drawbox=x={cx}:y={y}:w={W - cx - even(W * 0.02)}:h={ih}:color=0x2f3136:t=fill"
         f"{lines}[vout]")
    return g, [], {}, 1.0, {"scale": s}


def t_portrait_offcentre(rng, W, H, ctx):
    """A 9:16 crop shifted sideways by 10-30 % of the width (following the action)."""
    cw = min(W, even(H * 9 / 16))
    shift = rng.uniform(0.1, 0.3) * rng.choice([-1, 1])
    x = int(max(0, min(W - cw, (W - cw) / 2 + shift * W)))
    return f"[v0]crop={cw}:{H}:{x}:0,scale=720:1280[vout]", [], {}, 1.0, {"x": x}


def t_pip_reaction(rng, W, H, ctx):
    """The picture at 45-60 % of the width in a corner over an unrelated (street) video."""
    s = round(rng.uniform(0.45, 0.6), 3)
    iw, ih = even(W * s), even(H * s)
    corner = rng.choice(["tl", "tr", "bl", "br"])
    m = even(0.03 * min(W, H))
    x = m if corner[1] == "l" else W - iw - m
    y = m if corner[0] == "t" else H - ih - m
    g = (f"[1:v]setsar=1,fps={fmt(ctx['fps'])},scale={W}:{H}[bg];[v0]scale={iw}:{ih}[fg];"
         f"[bg][fg]overlay={x}:{y}:shortest=1[vout]")
    street = os.path.join(EVAL_DEV, "sources", "unrel_seattle.mp4")
    return g, [["-stream_loop", "-1", "-i", street]], {}, 1.0, {"scale": s, "corner": corner}


def t_camcorder_hard(rng, W, H, ctx):
    """A phone filming a TV from further away and more askew than the development recipe:
    the picture at 80 %, keystone up to 8 %, 2-4 degrees of rotation, blur, noise."""
    k = 0.8
    iw, ih = even(W * k), even(H * k)
    d = [round(rng.uniform(-0.04, 0.08), 3) for _ in range(8)]
    x0, y0, x1, y1 = d[0] * W, d[1] * H, W - d[2] * W, d[3] * H
    x2, y2, x3, y3 = d[4] * W, H - d[5] * H, W - d[6] * W, H - d[7] * H
    ang = round(rng.uniform(2.0, 4.0) * rng.choice([-1, 1]), 2)
    g = (f"[v0]scale={iw}:{ih},pad={W}:{H}:{(W - iw) // 2}:{(H - ih) // 2}:color=0x1a1a1a,"
         f"perspective={fmt(x0)}:{fmt(y0)}:{fmt(x1)}:{fmt(y1)}:{fmt(x2)}:{fmt(y2)}:"
         f"{fmt(x3)}:{fmt(y3)},rotate={ang}*PI/180:fillcolor=0x1a1a1a,gblur=sigma=1.5,"
         f"noise=alls=12:allf=t+u,eq=gamma=1.15:saturation=0.85[vout]")
    return g, [], {}, 1.0, {"rotate": ang}


NEW = {"zoom_offcentre": t_zoom_offcentre, "window": t_window,
       "portrait_offcentre": t_portrait_offcentre, "pip_reaction": t_pip_reaction,
       "camcorder_hard": t_camcorder_hard}
B.TRANSFORM_FUNCS.update(NEW)


def plan(sources, info):
    """One positive per long reference per new transformation; every unrelated clip once under
    a seeded new transformation; the hard negative three times under every transformation."""
    jobs = []

    def job(q, kind, t, s, reference=""):
        st, d = B.segment(random.Random(f"{SEED}|{q}|segment"), info[s["file"]]["dur"])
        jobs.append(dict(query=q, kind=kind, transform=t, reference=reference, source=s["file"],
                         source_role=s["role"], start=st, dur=d,
                         ref_start_ms=int(round(st * 1000)) if reference else None))

    for s in sources:
        if s["role"] == "reference" and info[s["file"]]["dur"] > 20:
            stem = s["file"][:-4].replace("ref_", "", 1)
            for t in NEW:
                job(f"{stem}__{t}__1", "positive", t, s, reference=s["file"])
    for s in sources:
        if not s["role"].startswith("unrelated"):
            continue
        stem = s["file"][:-4].replace("unrel_", "", 1)
        if s["role"] == "unrelated-hard-negative":
            runs = [(t, i) for t in list(NEW) + B.TRANSFORMS for i in (1, 2, 3)]
        else:
            runs = [(random.Random(f"{SEED}|{stem}|x").choice(list(NEW)), 1)]
        for t, i in runs:
            job(f"neg_{stem}__{t}__{i}", "negative", t, s)
    return jobs


def main():
    if len(sys.argv) != 2:
        sys.exit("usage: stress-set.py OUT_DIR")
    out = sys.argv[1]
    src = os.path.join(EVAL_DEV, "sources")
    sources = list(csv.DictReader(open(os.path.join(src, "sources.tsv")), delimiter="\t"))
    info = {s["file"]: B.probe(os.path.join(src, s["file"])) for s in sources}
    os.makedirs(os.path.join(out, "refs"), exist_ok=True)
    for s in sources:
        dst = os.path.join(out, "refs", s["file"])
        if s["role"] == "reference" and not os.path.exists(dst):
            shutil.copyfile(os.path.join(src, s["file"]), dst)
    ctx = {"out": out, "seed": SEED, "info": info, "keep_videos": 0,
           "facecam": os.path.join(src, B.FACECAM), "facecam_info": info[B.FACECAM]}
    jobs = plan(sources, info)
    for j in jobs:
        j["src_path"] = os.path.join(src, j["source"])
    B.log(f"building {len(jobs)} queries into {out}")
    with cf.ThreadPoolExecutor(max_workers=int(os.environ.get("JOBS", "1"))) as ex:
        rows = list(ex.map(lambda j: B.make_query(j, ctx), jobs))
    with open(os.path.join(out, "manifest.tsv"), "w", newline="") as f:
        w = csv.DictWriter(f, B.COLUMNS, delimiter="\t", lineterminator="\n")
        w.writeheader()
        w.writerows(rows)
    B.log(f"done: {len(rows)} queries")


if __name__ == "__main__":
    main()
