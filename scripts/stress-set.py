"""A stress set for `offside eval`: re-streaming transformations the development recipe lacks
or uses mildly, on every reference longer than 20 s, and the hard negative under every
transformation, three times each (precision is what a new transformation breaks first).

Two groups, each with its own seed, so adding the second left the first's queries as they were:
- five transformations (issue #11): an off-centre zoom, a window beside a chat panel, a 9:16
  crop shifted by 10-30 %, a picture-in-picture reaction, a harder filmed screen;
- four families over the wide ranges real re-streamers use (issue #17): a 9:16, 1:1 or 4:5
  window centred anywhere from 20 % to 80 % of the width; blurred-fill and pillar layouts with
  the picture anywhere from the top third to the centre; stacks of two to four edits (colour,
  a portrait layout, a face-cam of 10-25 % of the frame with a banner, a ticker, mirror, a
  re-encode); screens filmed with keystone up to 15 degrees, rotation up to 8 degrees, blur,
  noise, a screen-door grid (moire) and vignette.

    python3 scripts/stress-set.py OUT_DIR       # about 25 minutes on one core (JOBS=2: two)

It imports the development recipe (../shared/eval-dev/build.py, or EVAL_DEV=dir) for its
encoder, keyframe extraction and manifest format, so the set is built and scored like the
development set: `offside eval OUT_DIR`. Needs what that recipe needs (ffmpeg, Pillow).
"""
import concurrent.futures as cf
import csv
import math
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
WIDE_SEED = "offside-wide-1"


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


# Issue #17: the wide ranges. Each returns (graph from [v0] to [vout], extra inputs, encoder
# settings, speed, params), like the development recipe's transformations.

def window_graph(rng, W, H, inp="v0", out="vout"):
    """A 9:16 (most often), 1:1 or 4:5 window of the full height, centred at 20-80 % of the
    width (clamped to the picture), scaled to 720 wide."""
    a, b = rng.choice([(9, 16), (9, 16), (1, 1), (4, 5)])
    cw = min(W, even(H * a / b))
    centre = round(rng.uniform(0.2, 0.8), 3)
    x = int(max(0, min(W - cw, centre * W - cw / 2)))
    oh = even(720 * b / a)
    return (f"[{inp}]crop={cw}:{H}:{x}:0,scale=720:{oh}[{out}]", (720, oh),
            {"window": f"{a}:{b}", "centre": centre})


def layout_graph(rng, W, H, inp="v0", out="vout"):
    """The 16:9 picture as a band of a 720x1280 portrait frame, its centre anywhere from the
    top third to the middle, over a blurred, dimmed copy of itself or black bars."""
    ih = even(720 * H / W)
    centre = round(rng.uniform(1 / 3, 1 / 2), 3)
    y = int(max(0, min(1280 - ih, centre * 1280 - ih / 2)))
    if rng.random() < 0.6:
        radius = rng.choice([6, 8, 10, 14])
        dim = round(rng.uniform(-0.15, -0.03), 3)
        g = (f"[{inp}]split[la][lb];"
             f"[la]scale=180:320:force_original_aspect_ratio=increase,crop=180:320,"
             f"boxblur={radius}:2,eq=brightness={dim},scale=720:1280[lbg];"
             f"[lb]scale=720:{ih}[lfg];[lbg][lfg]overlay=0:{y}[{out}]")
        p = {"layout": "blurfill", "blur": radius, "dim": dim}
    else:
        g = f"[{inp}]scale=720:{ih},pad=720:1280:0:{y}:black[{out}]"
        p = {"layout": "pillar"}
    return g, (720, 1280), dict(p, picture_centre=centre)


def colour_graph(rng, inp, out):
    def pick(lo, hi):
        return round(rng.uniform(lo, hi), 3) * rng.choice([-1, 1])
    b, c, s, gm = pick(0.03, 0.10), round(1 + pick(0.08, 0.25), 3), \
        round(1 + pick(0.15, 0.45), 3), round(1 + pick(0.08, 0.25), 3)
    return (f"[{inp}]eq=brightness={b}:contrast={c}:saturation={s}:gamma={gm}[{out}]",
            {"brightness": b, "contrast": c, "saturation": s, "gamma": gm})


def ticker_graph(rng, w, h, inp, out):
    """A news ticker: a dark band with text scrolling right to left, at the top or bottom."""
    bh = even(h * rng.uniform(0.06, 0.1))
    y = even(h * 0.02) if rng.random() < 0.3 else h - bh - even(h * 0.02)
    fs = max(10, int(bh * 0.6))
    text = rng.choice(B.BANNER_TEXTS)
    return (f"[{inp}]drawbox=x=0:y={y}:w={w}:h={bh}:color=0x101010@0.8:t=fill,"
            f"drawtext={B.font_opt()}:text='{text}  +++  {text}':fontcolor=white:fontsize={fs}:"
            f"x=w-mod(t*{rng.randint(60, 160)}\\,w+tw):y={y}+({bh}-text_h)/2[{out}]",
            {"ticker": "top" if y < h // 2 else "bottom"})


def t_side_window(rng, W, H, ctx):
    g, _, p = window_graph(rng, W, H)
    return g, [], {}, 1.0, p


def t_layout_anywhere(rng, W, H, ctx):
    g, _, p = layout_graph(rng, W, H)
    return g, [], {}, 1.0, p


def t_stacked(rng, W, H, ctx):
    """Two to four edits, in the order a streamer's software applies them: colour and mirror on
    the picture, then a portrait layout, then a face-cam with a banner or a ticker on top, then
    the platform's re-encode."""
    edits = rng.sample(["colour", "layout", "facecam", "ticker", "mirror", "reencode"],
                       rng.randint(2, 4))
    steps, extra, enc, params = [], [], {}, {"edits": sorted(edits)}
    cur, size, n = "v0", (W, H), 0

    def label():
        nonlocal n
        n += 1
        return f"s{n}"
    if "colour" in edits:
        out = label()
        g, p = colour_graph(rng, cur, out)
        steps.append(g)
        params.update(p)
        cur = out
    if "mirror" in edits:
        out = label()
        steps.append(f"[{cur}]hflip[{out}]")
        cur = out
    if "layout" in edits:
        out = label()
        if rng.random() < 0.5:
            g, size, p = window_graph(rng, W, H, cur, out)
        else:
            g, size, p = layout_graph(rng, W, H, cur, out)
        steps.append(g)
        params.update(p)
        cur = out
    if "facecam" in edits:
        out = label()
        area = round(rng.uniform(0.10, 0.25), 3)
        g, p = B.facecam_filter(rng, size[0], size[1], ctx, area)
        steps.append(g.replace("[v0]", f"[{cur}]").replace("[vout]", f"[{out}]"))
        extra.append(["-stream_loop", "-1", "-i", ctx["facecam"]])
        params.update(p)
        cur = out
    if "ticker" in edits:
        out = label()
        g, p = ticker_graph(rng, size[0], size[1], cur, out)
        steps.append(g)
        params.update(p)
        cur = out
    if "reencode" in edits:
        out = label()
        k = rng.choice([0.5, 0.667])
        steps.append(f"[{cur}]scale={even(size[0] * k)}:{even(size[1] * k)}[{out}]")
        enc["crf"] = rng.choice([30, 33])
        params.update({"downscale": k, "crf": enc["crf"]})
        cur = out
    steps.append(f"[{cur}]null[vout]")
    return ";".join(steps), extra, enc, 1.0, params


def t_screen_filmed(rng, W, H, ctx):
    """A phone filming a screen: the picture at 60-90 % of the frame, seen up to 15 degrees off
    axis (keystone), rotated up to 8 degrees, with blur, sensor noise, the screen's pixel grid
    beating against the camera's (a fine dark grid: moire once shrunk) and vignette."""
    k = round(rng.uniform(0.6, 0.9), 3)
    iw, ih = even(W * k), even(H * k)
    theta = round(rng.uniform(0, 15), 1)
    # Seen from the side, the far edge of the screen is shorter. `perspective` stretches a
    # quadrilateral of its input to the whole output, so a far side taller than the frame (by
    # `pull` above and below, into the dark wall) comes out shorter; a little jitter on every
    # corner makes the view less regular.
    pull = math.tan(math.radians(theta)) * 0.5 * H
    far_left = rng.random() < 0.5
    j = [rng.uniform(-0.02, 0.02) * W for _ in range(8)]
    xs = [0 + j[0], W + j[2], 0 + j[4], W + j[6]]
    ys = [(-pull if far_left else 0) + j[1], (0 if far_left else -pull) + j[3],
          H + (pull if far_left else 0) + j[5], H + (0 if far_left else pull) + j[7]]
    corners = ":".join(f"{fmt(x)}:{fmt(y)}" for x, y in zip(xs, ys))
    ang = round(rng.uniform(0, 8) * rng.choice([-1, 1]), 2)
    sigma = round(rng.uniform(0.6, 2.0), 2)
    noise = rng.randint(6, 20)
    cell = rng.choice([3, 4, 5])
    seed = rng.randint(1, 2 ** 30)
    g = (f"[v0]scale={iw}:{ih},drawgrid=w={cell}:h={cell}:t=1:c=black@0.25,"
         f"pad={W}:{H}:{(W - iw) // 2}:{(H - ih) // 2}:color=0x141414,perspective={corners},"
         f"rotate={ang}*PI/180:fillcolor=0x141414,gblur=sigma={sigma},"
         f"noise=alls={noise}:allf=t+u:all_seed={seed},vignette=PI/{rng.choice([4, 5, 6])},"
         f"eq=gamma={round(rng.uniform(1.0, 1.2), 3)}:saturation={round(rng.uniform(0.8, 1.0), 3)}"
         f"[vout]")
    return g, [], {}, 1.0, {"scale": k, "keystone_deg": theta, "rotate_deg": ang, "blur": sigma,
                            "noise": noise, "grid": cell}


WIDE = {"side_window": t_side_window, "layout_anywhere": t_layout_anywhere,
        "stacked": t_stacked, "screen_filmed": t_screen_filmed}
B.TRANSFORM_FUNCS.update(NEW)
B.TRANSFORM_FUNCS.update(WIDE)


def plan(sources, info):
    """Per group: one positive per long reference per transformation; every unrelated clip once
    under a seeded transformation of the group; the hard negative three times under every
    transformation (the first group's also under the development recipe's)."""
    jobs = []

    def job(q, kind, t, s, seed, reference=""):
        st, d = B.segment(random.Random(f"{seed}|{q}|segment"), info[s["file"]]["dur"])
        jobs.append(dict(query=q, kind=kind, transform=t, reference=reference, source=s["file"],
                         source_role=s["role"], start=st, dur=d, seed=seed,
                         ref_start_ms=int(round(st * 1000)) if reference else None))

    for group, seed, hard_extra in ((NEW, SEED, B.TRANSFORMS), (WIDE, WIDE_SEED, [])):
        for s in sources:
            if s["role"] == "reference" and info[s["file"]]["dur"] > 20:
                stem = s["file"][:-4].replace("ref_", "", 1)
                for t in group:
                    job(f"{stem}__{t}__1", "positive", t, s, seed, reference=s["file"])
        for s in sources:
            if not s["role"].startswith("unrelated"):
                continue
            stem = s["file"][:-4].replace("unrel_", "", 1)
            if s["role"] == "unrelated-hard-negative":
                runs = [(t, i) for t in list(group) + hard_extra for i in (1, 2, 3)]
            else:
                runs = [(random.Random(f"{seed}|{stem}|x").choice(list(group)), 1)]
            for t, i in runs:
                job(f"neg_{stem}__{t}__{i}", "negative", t, s, seed)
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
        rows = list(ex.map(lambda j: B.make_query(j, dict(ctx, seed=j["seed"])), jobs))
    with open(os.path.join(out, "manifest.tsv"), "w", newline="") as f:
        w = csv.DictWriter(f, B.COLUMNS, delimiter="\t", lineterminator="\n")
        w.writeheader()
        w.writerows(rows)
    B.log(f"done: {len(rows)} queries")


if __name__ == "__main__":
    main()
