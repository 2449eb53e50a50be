"""The markdown table, the targets check and the chart, from one results JSON.

    bench/.venv/bin/python bench/report.py bench/results/results-<date>.json
"""

from __future__ import annotations

import json
import statistics
import sys
from pathlib import Path

ORDER = ["ptd", "ptd007", "joblib", "diskcache", "cachier", "persist_cache"]


def _get(d, *path, default=None):
    for p in path:
        if not isinstance(d, dict) or p not in d:
            return default
        d = d[p]
    return d


def _num(x, fmt="{:,.0f}"):
    return "–" if x is None else fmt.format(x)


def _us(x):
    if x is None:
        return "–"
    return f"{x:,.1f}" if x < 100 else f"{x:,.0f}"


def _failed(part) -> str | None:
    if isinstance(part, dict) and "failed" in part:
        text = part["failed"]
        if "cannot" in text or "Unhashable" in text or "TypeError" in text or "PicklingError" in text:
            return "fails"
        if "timed out" in text:
            return "timed out"
        return "fails"
    return None


def _cells(r: dict) -> list[str]:
    a, b = r.get("a", {}), r.get("b", {})
    ca = (_failed(a) or f"{_us(a.get('median_us'))} / {_us(a.get('p99_us'))}") if a else "–"
    cb = (_failed(b) or f"{_us(b.get('median_us'))} / {_us(b.get('p99_us'))}") if b else "–"
    c = r.get("c", {})
    fill, hit = c.get("fill", {}), c.get("hit", {})
    if not fill:
        cfill, chit = "–", "–"
    elif _failed(fill):
        cfill, chit = _failed(fill), "–"
    else:
        cfill = f"{_num(fill.get('first_1000_per_s'))} → {_num(fill.get('last_1000_per_s'))}"
        if not fill.get("complete"):
            cfill += f" (only {fill.get('filled'):,} in {fill.get('fill_s', 0):.0f} s)"
        chit = _failed(hit) or _us(hit.get("median_us"))
    d = r.get("d", {})
    cd = _failed(d) or _num(d.get("hash_mb_s"))
    e = r.get("e", {})
    st, ld = e.get("store", {}), e.get("load", {})
    ce = f"{_failed(st) or _num(st.get('store_mb_s'))} / {_failed(ld) or _num(ld.get('load_mb_s'))}" if e else "–"
    f = r.get("f", {})
    if _failed(f):
        cf = _failed(f)
    elif f:
        cf = f"{f.get('executions')} / {f.get('errors')} / {f.get('hangs')}"
        if f.get("wrong"):
            cf += f" ({f['wrong']} wrong)"
    else:
        cf = "–"
    g = r.get("g", {})
    if _failed(g):
        cg = "not measured: " + g["failed"][:60]
    elif g:
        t = g.get("torn", {})
        if t.get("error"):
            torn = "torn key raises: " + t["error"].split(":")[0]
        elif t.get("recomputed") and t.get("correct"):
            torn = "torn key recomputed"
        elif t.get("correct"):
            torn = "torn key served"
        else:
            torn = "torn key WRONG value"
        lost, raised = g.get("earlier_lost", 0), g.get("earlier_errors", 0)
        cg = f"{lost} lost" + (f", {raised} raise" if raised else "")
        cg += f"; {torn}; {g.get('left_behind_mb', 0):g} MB left behind"
        if g.get("earlier_wrong"):
            cg += f"; {g['earlier_wrong']} wrong values"
    else:
        cg = "–"
    h = r.get("h", {})
    if "na" in h:
        ch = "n/a"
    elif _failed(h) or "not_measured" in h:
        ch = "not measured"
    elif h:
        ch = f"{h.get('hit_s', 0):.3f} s (cell {h.get('miss_s', 0):.2f} s)"
    else:
        ch = "–"
    return [ca, cb, cfill, chit, cd, ce, cf, cg, ch]


HEAD = [
    "a miss µs (median / p99)",
    "b hit µs (median / p99)",
    "c fill calls/s (first → last 1k)",
    "c hit at 20k µs",
    "d hash MB/s",
    "e store / load MB/s",
    "f executions / errors / hangs",
    "g crash: earlier lost; torn key",
    "h `%%persist` hit",
]


DATA_HEAD = [
    "i hash a DataFrame with text, MB/s",
    "j hash a torch tensor, MB/s",
    "j store it: MB/s, peak growth",
    "k hash a 1M-item dict / pickle.dumps it",
    "l hit at 50k entries read 1 h ago, µs",
    "m import / set up + decorate / first call = cold start, ms",
    "n load 500 MB + write it all / np.load + same",
    "c 20k small entries on disk",
]


def _data_cells(r: dict) -> list[str]:
    def na(part):
        return not part or "na" in part

    i, j, k, n = r.get("i", {}), r.get("j", {}), r.get("k", {}), r.get("n", {})
    ci = "–" if na(i) else (_failed(i) or _num(i.get("hash_mb_s")))
    if not na(i) and not _failed(i) and i.get("polars_text"):
        ci += f"; polars {_num(i['polars_text']['hash_mb_s'])}, numbers only {_num(i['polars_numbers']['hash_mb_s'])}"
        if i.get("polars_long_text"):
            ci += f", text > 12 bytes {_num(i['polars_long_text']['hash_mb_s'])}"
    cj = "–" if na(j) else (_failed(j) or _num(j.get("hash_mb_s")))
    if not na(j) and not _failed(j) and j.get("xxh3_mb_s"):
        cj += f" (xxh3 of its buffer {_num(j['xxh3_mb_s'])})"
    cjs = "–" if na(j) else (_failed(j) or f"{_num(j.get('store_mb_s'))}, +{_num(j.get('store_peak_growth_mb'))} MB "
                             f"for {_num(j.get('result_mb'))} MB")
    ck = "–" if na(k) else (_failed(k) or f"{k.get('hit_s', 0) * 1e3:,.0f} / {k.get('pickle_s', 0) * 1e3:,.0f} ms "
                            f"({k.get('hit_per_pickle', 0):.2f}x)")
    lhit = _get(r, "l", "hit")
    cl = "–" if not lhit else (_failed(lhit) or _us(lhit.get("median_us")))
    m = r.get("m", {})
    cm = "–" if not m else (_failed(m) or f"{m.get('import_s', 0) * 1e3:.0f} / {m.get('ready_s', 0) * 1e3:.1f} / "
                            f"{m.get('first_call_s', 0) * 1e3:.1f} = {m.get('cold_s', 0) * 1e3:.0f}")
    cn = "–" if na(n) else (_failed(n) or f"{_fmt(n.get('ratio'), '{:.2f}')}x mapped, "
                            f"{_fmt(n.get('copied_ratio'), '{:.2f}')}x with mmap=False")
    fill = _get(r, "c", "fill") or {}
    cc = "–" if not fill.get("disk_mb") else (
        f"{fill['disk_mb']:,.1f} MB allocated, {fill.get('bytes_mb', 0):,.1f} MB in {fill.get('files', 0):,} files")
    return [ci, cj, cjs, ck, cl, cm, cn, cc]


def table(res: dict) -> str:
    peers = [p for p in ORDER if p in res["results"]] + [p for p in res["results"] if p not in ORDER]
    m = res.get("machine", {})
    lines = [
        f"Measured {res.get('date')} on {m.get('cpus')} cores ({m.get('cpu', '?')}), {m.get('memory_gb', '?')} GB, "
        f"Python {m.get('python')}; one run of `bash bench/run.sh` ({res.get('wall_s', '?')} s), page cache warm; "
        f"a and b: median of {_get(res, 'params', 'rounds', default=1)} interleaved rounds, c hits of "
        f"{_get(res, 'params', 'c_rounds', default=_get(res, 'params', 'rounds', default=1))}; "
        f"creating a file took {m.get('file_create_us_start', '?')} µs at the start and "
        f"{m.get('file_create_us_end', '?')} µs at the end (median; misses of file-per-entry caches pay it).",
        "",
        "| peer | " + " | ".join(HEAD) + " |",
        "| --- | " + " | ".join("---" for _ in HEAD) + " |",
    ]
    for p in peers:
        info = res.get("peers", {}).get(p, {})
        name = f"{info.get('label', p)} {info.get('version', '')}".strip()
        lines.append(f"| {name} | " + " | ".join(_cells(res["results"][p])) + " |")
    lines.append("")
    load_start, load_end = " ".join(res.get("load") or ["?"]), " ".join(res.get("load_end") or ["?"])
    lines.append(f"The data people pass and return (i to n; load average {load_start} at the start, "
                 f"{load_end} at the end):")
    lines.append("")
    lines.append("| peer | " + " | ".join(DATA_HEAD) + " |")
    lines.append("| --- | " + " | ".join("---" for _ in DATA_HEAD) + " |")
    for p in peers:
        cells = _data_cells(res["results"][p])
        if all(c == "–" for c in cells):
            continue
        info = res.get("peers", {}).get(p, {})
        lines.append(f"| {info.get('label', p)} | " + " | ".join(cells) + " |")
    lines.append("")
    lines.append("Targets (ratios in this run):")
    lines.append("")
    lines.append("| target | figure | met |")
    lines.append("| --- | --- | --- |")
    for target, figure, met in targets(res):
        lines.append(f"| {target} | {figure} | {'yes' if met else ('–' if met is None else 'no')} |")
    lines.append("")
    return "\n".join(lines)


def targets(res: dict) -> list[tuple[str, str, bool | None]]:
    R = res["results"]
    ptd, dc, jl = R.get("ptd", {}), R.get("diskcache", {}), R.get("joblib", {})
    out = []

    def ratio(x, y):
        return None if not x or not y else x / y

    def paired(*path):
        """(ptd's figure, diskcache's, their ratio, per-round ratios): rounds ran interleaved, so each
        round's ratio compares the two at about the same moment; the ratio is the median of those."""
        x, y = _get(ptd, *path, "median_us"), _get(dc, *path, "median_us")
        xs, ys = _get(ptd, *path, "rounds", default=[]), _get(dc, *path, "rounds", default=[])
        per = [ratio(a.get("median_us"), b.get("median_us")) for a, b in zip(xs, ys)]
        per = [r for r in per if r is not None]
        if per:
            return x, y, statistics.median(per), per
        return x, y, ratio(x, y), []

    def line(name, path, limit):
        x, y, r, per = paired(*path)
        rounds = f"; rounds {', '.join(f'{v:.2f}' for v in per)}" if len(per) > 1 else ""
        figure = f"{_fmt(x)} vs {_fmt(y)} µs (ratio {_fmt(r, '{:.2f}')}{rounds})"
        return name, figure, None if r is None else r <= limit

    out.append(line("b: hit ≤ diskcache's", ("b",), 1.0))
    out.append(line("c: hit at 20k ≤ diskcache's", ("c", "hit"), 1.0))
    flat = ratio(_get(ptd, "c", "hit", "median_us"), _get(ptd, "b", "median_us"))
    out.append(("b→c: hit flat from 2k to 20k entries", f"20k/2k = {_fmt(flat, '{:.2f}')}",
                None if flat is None else flat <= 1.25))
    out.append(line("a: miss within 2x of diskcache's", ("a",), 2.0))
    d_r = ratio(_get(ptd, "d", "hash_mb_s"), _get(jl, "d", "hash_mb_s"))
    out.append(("d: hashing ≥ 10x joblib", f"{_fmt(_get(ptd, 'd', 'hash_mb_s'), '{:,.0f}')} vs "
                f"{_fmt(_get(jl, 'd', 'hash_mb_s'), '{:,.0f}')} MB/s ({_fmt(d_r, '{:.1f}')}x)",
                None if d_r is None else d_r >= 10))
    per_e = [ratio(a.get("store_mb_s"), b.get("store_mb_s")) for a, b in
             zip(_get(ptd, "e", "store", "rounds", default=[]), _get(jl, "e", "store", "rounds", default=[]))]
    per_e = [r for r in per_e if r is not None]
    es = statistics.median(per_e) if per_e else ratio(_get(ptd, "e", "store", "store_mb_s"),
                                                      _get(jl, "e", "store", "store_mb_s"))
    out.append(("e: store ≥ joblib", f"{_fmt(_get(ptd, 'e', 'store', 'store_mb_s'), '{:,.0f}')} vs "
                f"{_fmt(_get(jl, 'e', 'store', 'store_mb_s'), '{:,.0f}')} MB/s (ratio {_fmt(es, '{:.2f}')}; rounds "
                f"{', '.join(f'{r:.2f}' for r in per_e)})", None if es is None else es >= 1.0))
    el = ratio(_get(ptd, "e", "load", "load_mb_s"), _get(jl, "e", "load", "load_mb_s"))
    out.append(("e: load ≥ joblib", f"{_fmt(_get(ptd, 'e', 'load', 'load_mb_s'), '{:,.0f}')} vs "
                f"{_fmt(_get(jl, 'e', 'load', 'load_mb_s'), '{:,.0f}')} MB/s ({_fmt(el, '{:.2f}')}x)",
                None if el is None else el >= 1.0))
    f = ptd.get("f", {})
    out.append(("f: 50 executions, 0 errors, 0 hangs",
                f"{f.get('executions')} / {f.get('errors')} / {f.get('hangs')}" if f else "–",
                None if not f or "failed" in f else (f.get("executions") == 50 and not f.get("errors")
                                                     and not f.get("hangs") and not f.get("wrong"))))
    g = ptd.get("g", {})
    torn = g.get("torn", {}) if g else {}
    out.append(("g: 0 earlier entries lost", f"{g.get('earlier_lost')} lost, {g.get('earlier_errors')} raise; torn key "
                f"{'recomputed' if torn.get('recomputed') else 'not recomputed'}, "
                f"{'correct' if torn.get('correct') else 'WRONG/raised'}" if g else "–",
                None if not g or "failed" in g else (g.get("earlier_lost") == 0 and not g.get("earlier_errors")
                                                     and g.get("torn", {}).get("correct"))))
    out.extend(data_targets(ptd, dc, jl))
    h = ptd.get("h", {})
    if h and "hit_s" in h:
        out.append(("h: %%persist hit well under 1 s", f"{h['hit_s']:.3f} s vs {h.get('miss_s', 0):.2f} s cell",
                    h["hit_s"] < 0.5))
    else:
        out.append(("h: %%persist hit well under 1 s", "not measured: " + str(h.get("not_measured", h.get("failed", "")))[:80],
                    None))
    return out


def data_targets(ptd: dict, dc: dict, jl: dict) -> list[tuple[str, str, bool | None]]:
    """The targets of the data people pass and return (i to n), each a ratio in this run."""
    out = []

    def ratio(x, y):
        return None if not x or not y else x / y

    def check(value, ok):
        return None if value is None else ok(value)

    mbs = _get(ptd, "i", "hash_mb_s")
    ri = ratio(mbs, _get(jl, "i", "hash_mb_s"))
    out.append(("i: DataFrame with text ≥ 1 GB/s and ≥ 5x joblib",
                f"{_fmt(mbs, '{:,.0f}')} vs {_fmt(_get(jl, 'i', 'hash_mb_s'), '{:,.0f}')} MB/s ({_fmt(ri, '{:.1f}')}x)",
                check(ri, lambda r: r >= 5 and mbs >= 1000)))
    pt, pn = _get(ptd, "i", "polars_text") or {}, _get(ptd, "i", "polars_numbers") or {}
    rt, rn = ratio(pt.get("hash_mb_s"), pt.get("xxh3_mb_s")), ratio(pn.get("hash_mb_s"), pn.get("xxh3_mb_s"))
    out.append(("i: a polars frame of numbers at buffer speed (≥ 0.8x xxh3 of its buffers)",
                f"{_fmt(pn.get('hash_mb_s'), '{:,.0f}')} vs {_fmt(pn.get('xxh3_mb_s'), '{:,.0f}')} MB/s "
                f"({_fmt(rn, '{:.2f}')}x)", check(rn, lambda r: r >= 0.8)))
    out.append(("i: a polars frame with text at buffer speed (≥ 0.8x xxh3 of its buffers)",
                f"{_fmt(pt.get('hash_mb_s'), '{:,.0f}')} vs {_fmt(pt.get('xxh3_mb_s'), '{:,.0f}')} MB/s "
                f"({_fmt(rt, '{:.2f}')}x); strings of up to 12 bytes, hashed as polars' string views",
                check(rt, lambda r: r >= 0.8)))
    pl_ = _get(ptd, "i", "polars_long_text") or {}
    rl = ratio(pl_.get("hash_mb_s"), pl_.get("xxh3_mb_s"))
    out.append(("i: the same with strings longer than 12 bytes (≥ 0.8x xxh3 of its buffers)",
                f"{_fmt(pl_.get('hash_mb_s'), '{:,.0f}')} vs {_fmt(pl_.get('xxh3_mb_s'), '{:,.0f}')} MB/s "
                f"({_fmt(rl, '{:.2f}')}x); copying its text out of polars' string views into Arrow alone takes "
                f"{_fmt(pl_.get('to_arrow_s', 0) * 1e3, '{:.0f}')} ms", check(rl, lambda r: r >= 0.8)))
    tj, xj = _get(ptd, "j", "hash_mb_s"), _get(ptd, "j", "xxh3_mb_s")
    out.append(("j: torch tensor ≥ 10 GB/s (xxh3 of its buffer is the floor)",
                f"{_fmt(tj, '{:,.0f}')} MB/s, xxh3 of the buffer {_fmt(xj, '{:,.0f}')} MB/s "
                f"({_fmt(ratio(tj, xj), '{:.2f}')} of it)", check(tj, lambda v: v >= 10_000)))
    per_j = [ratio(b.get("store_mb_s"), a.get("store_mb_s")) for a, b in  # time ratio = inverse MB/s ratio
             zip(_get(ptd, "j", "store_rounds", default=[]), _get(jl, "j", "store_rounds", default=[]))]
    per_j = [r for r in per_j if r is not None]
    sj = statistics.median(per_j) if per_j else ratio(_get(jl, "j", "store_mb_s"), _get(ptd, "j", "store_mb_s"))
    grow = ratio(_get(ptd, "j", "store_peak_growth_mb"), _get(ptd, "j", "result_mb"))
    j_rounds = f" (rounds {', '.join(f'{r:.2f}' for r in per_j)})" if len(per_j) > 1 else ""
    out.append(("j: storing a tensor ≤ 1.0x joblib's time, peak growth ≤ 1.25x its size",
                f"{_fmt(sj, '{:.2f}')}x joblib's time{j_rounds}; "
                f"peak +{_fmt(_get(ptd, 'j', 'store_peak_growth_mb'), '{:,.0f}')} MB "
                f"= {_fmt(grow, '{:.2f}')}x", check(sj, lambda r: r <= 1.0 and grow is not None and grow <= 1.25)))
    ge = ratio(_get(ptd, "e", "store", "store_peak_growth_mb"), _get(ptd, "e", "store", "mb"))
    out.append(("e: storing an array, peak growth ≤ 1.25x its size", f"{_fmt(ge, '{:.2f}')}x",
                check(ge, lambda r: r <= 1.25)))
    rk = _get(ptd, "k", "hit_per_pickle")
    rki = _get(ptd, "k", "int_keys", "hit_per_pickle")
    real = _get(ptd, "k", "real_data", default={}) or {}
    beside = "; ".join(f"{name} {_fmt(_get(v, 'hit_per_pickle'), '{:.1f}')}x" for name, v in real.items())
    out.append(("k: 1M-item dict hashed no slower than pickle.dumps of it",
                f"{_fmt(rk, '{:.2f}')}x pickle.dumps (not targets: 1M int -> int {_fmt(rki, '{:.1f}')}x"
                + (f"; 200k items: {beside}" if beside else "") + ")",
                check(rk, lambda r: r <= 1.0)))
    lx, ly = _get(ptd, "l", "hit", "median_us"), _get(dc, "l", "hit", "median_us")
    per = [ratio(a.get("median_us"), b.get("median_us")) for a, b in
           zip(_get(ptd, "l", "hit", "rounds", default=[]), _get(dc, "l", "hit", "rounds", default=[]))]
    per = [r for r in per if r is not None]
    rl = statistics.median(per) if per else ratio(lx, ly)
    out.append(("l: hit at 50k entries read 1 h ago ≤ 0.8x diskcache's",
                f"{_fmt(lx)} vs {_fmt(ly)} µs (ratio {_fmt(rl, '{:.2f}')}; "
                f"rounds {', '.join(f'{v:.2f}' for v in per)})",
                check(rl, lambda r: r <= 0.8)))
    rm = ratio(_get(ptd, "m", "import_s"), _get(dc, "m", "import_s"))
    out.append(("m: import ≤ 1.5x diskcache's",
                f"{_fmt(_ms(_get(ptd, 'm', 'import_s')))} vs {_fmt(_ms(_get(dc, 'm', 'import_s')))} ms "
                f"({_fmt(rm, '{:.2f}')}x); the whole cold start (import, set up, decorate, first call) "
                f"{_fmt(_ms(_get(ptd, 'm', 'cold_s')))} vs {_fmt(_ms(_get(dc, 'm', 'cold_s')))} ms "
                f"({_fmt(ratio(_get(ptd, 'm', 'cold_s'), _get(dc, 'm', 'cold_s')), '{:.2f}')}x)",
                check(rm, lambda r: r <= 1.5)))
    rn, rc = _get(ptd, "n", "ratio"), _get(ptd, "n", "copied_ratio")
    loads = _get(ptd, "n", "load_s") or {}
    recomputed = _get(ptd, "n", "recomputed") or 0
    out.append(("n: load 500 MB then write it all ≤ 1.5x np.load + the same writes",
                f"`persistf(mmap=False)` {_fmt(rc, '{:.2f}')}x, mapped (the default) {_fmt(rn, '{:.2f}')}x; "
                f"loading alone: mapped {_fmt(_ms(loads.get('mapped')), '{:.0f}')} ms, copied "
                f"{_fmt(_ms(loads.get('copied')), '{:.0f}')} ms, np.load {_fmt(_ms(loads.get('np_load')), '{:.0f}')} ms"
                + (f"; RECOMPUTED {recomputed} times (not hits)" if recomputed else ""),
                check(rc, lambda r: r <= 1.5 and not recomputed)))
    return out


def _ms(x):
    return None if x is None else x * 1e3


def _fmt(x, fmt="{:.1f}"):
    return "–" if x is None else fmt.format(x)


def chart(res: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    R = res["results"]
    peers = [p for p in ORDER if p in R]
    labels = [res.get("peers", {}).get(p, {}).get("label", p).replace(" (this checkout)", "\n(this checkout)")
              .replace(" (Cache.memoize)", "") for p in peers]
    colors = ["#d62728" if p == "ptd" else "#7f7f7f" for p in peers]
    panels = [
        ("a: miss, µs per call (lower is better)", lambda r: _get(r, "a", "median_us"), True),
        ("b: hit, µs per call (lower is better)", lambda r: _get(r, "b", "median_us"), True),
        ("c: hit at 20k entries, µs (lower is better)", lambda r: _get(r, "c", "hit", "median_us"), True),
        ("d: hashing a 200 MB argument, MB/s (higher is better)", lambda r: _get(r, "d", "hash_mb_s"), True),
        ("e: storing a 200 MB result, MB/s (higher is better)", lambda r: _get(r, "e", "store", "store_mb_s"), True),
        ("e: loading a 200 MB result, MB/s (higher is better)", lambda r: _get(r, "e", "load", "load_mb_s"), True),
        ("f: executions by 8 processes, 50 keys (ideal 50)", lambda r: _get(r, "f", "executions"), False),
        ("g: earlier entries lost or raising after SIGKILL (ideal 0)",
         lambda r: None if "failed" in r.get("g", {"failed": 1}) else
         _get(r, "g", "earlier_lost", default=0) + _get(r, "g", "earlier_errors", default=0), False),
        ("i: hashing a DataFrame with text columns, MB/s (higher is better)",
         lambda r: _get(r, "i", "hash_mb_s"), True),
        ("j: hashing a 200 MB torch tensor, MB/s (higher is better)", lambda r: _get(r, "j", "hash_mb_s"), True),
        ("j: storing a 200 MB torch tensor, MB/s (higher is better)", lambda r: _get(r, "j", "store_mb_s"), True),
        ("k: hashing a 1M-item dict, ms (lower is better)", lambda r: _ms(_get(r, "k", "hit_s")), True),
        ("l: hit at 50k entries last read 1 h ago, µs (lower is better)",
         lambda r: _get(r, "l", "hit", "median_us"), True),
        ("m: import, ms (lower is better)", lambda r: _ms(_get(r, "m", "import_s")), True),
    ]
    fig, axes = plt.subplots(7, 2, figsize=(13, 26))
    for ax, (title, get, log) in zip(axes.flat, panels):
        vals = [get(R[p]) for p in peers]
        present = [v for v in vals if v]
        floor = min(present) / 3 if (log and present) else 0
        ys = [v if v else floor for v in vals]
        bars = ax.barh(range(len(peers)), ys, color=colors)
        ax.set_yticks(range(len(peers)), labels, fontsize=8)
        ax.invert_yaxis()
        ax.set_title(title, fontsize=10)
        if log and present:
            ax.set_xscale("log")
            ax.set_xlim(floor, max(present) * 4)
        else:
            ax.set_xlim(0, max([1, *present]) * 1.25)
        for bar, v, p in zip(bars, vals, peers):
            extra = ""
            if title.startswith("f") and R[p].get("f", {}).get("hangs"):
                extra = f" ({R[p]['f']['hangs']} of 8 processes hung)"
            if v is None:
                text = "fails / not measured"
            elif not log:
                text = f"{v:,.0f}"
            else:
                text = f"{v:,.1f}" if v < 100 else f"{v:,.0f}"
            ax.text(bar.get_width(), bar.get_y() + bar.get_height() / 2, " " + text + extra, va="center", fontsize=8)
        if title.startswith("f"):
            ax.axvline(50, color="k", lw=0.8, ls="--")
    m = res.get("machine", {})
    fig.suptitle(f"persist_to_disk vs peers — {res.get('date')}, {m.get('cpus')} cores, {m.get('cpu', '')}",
                 fontsize=11)
    fig.tight_layout(rect=(0, 0, 1, 0.98))
    fig.savefig(path, dpi=90)
    plt.close(fig)


if __name__ == "__main__":
    data = json.loads(Path(sys.argv[1]).read_text())
    out = Path(sys.argv[1]).parent
    text = table(data)
    (out / "table.md").write_text(text)
    chart(data, out / "chart.png")
    print(text)
