"""Build the frozen curation benchmark set (mail, forum, web, chat, tickets) and its labels.

    /work/main/.venv/bin/python benchmarks/curation_set/build.py

Deterministic: fixed seeds, stdlib only, reads only sources/*.jsonl.gz and templates/pools.py in
this folder. Re-running it rewrites every output byte-for-byte (and MANIFEST.sha256); `--check`
rebuilds in memory and only validates. See README.md for the labelling conventions.
"""
from __future__ import annotations

import base64
import csv
import datetime as dt
import email
import email.policy
import gzip
import hashlib
import html
import io
import json
import mailbox
import quopri
import random
import re
import sys
import textwrap
from email.header import Header
from email.utils import format_datetime, formataddr
from html.parser import HTMLParser
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.dont_write_bytecode = True  # keep the frozen folder free of __pycache__
sys.path.insert(0, str(HERE / "templates"))
import pools as T  # noqa: E402

SEED = 20261204
LABELS = {"body", "header", "quote", "attribution", "signature", "disclaimer", "boilerplate", "speaker", "ambiguous"}


# --------------------------------------------------------------------------------------------
# sources
# --------------------------------------------------------------------------------------------
class Sources:
    """Paragraph pools; each draw pops so a paragraph is used at most once until a pool runs dry."""

    def __init__(self, rng):
        self.rng = rng
        eng = [json.loads(l) for l in gzip.open(HERE / "sources/english.jsonl.gz", "rt", encoding="utf-8")]
        non = [json.loads(l) for l in gzip.open(HERE / "sources/non_english.jsonl.gz", "rt", encoding="utf-8")]
        self.pools = {}
        for r in eng:
            key = r["source"] if r["source"] != "brown" else "brown/" + r["genre"]
            self.pools.setdefault(key, []).append(r)
        for r in non:
            self.pools.setdefault("lang/" + r["lang"], []).append(r)
        self.all = {k: list(v) for k, v in self.pools.items()}
        for k in sorted(self.pools):
            rng.shuffle(self.pools[k])
        self.used = {}

    def groups(self, name):
        groups = {
            "news": ["brown/news", "brown/editorial", "brown/reviews"],
            "essay": ["brown/belles_lettres", "brown/lore", "brown/learned", "brown/religion", "brown/government"],
            "hobby": ["brown/hobbies", "brown/lore"],
            "fiction": ["austen", "moby_dick", "brown/fiction", "brown/romance", "brown/adventure", "brown/mystery",
                        "brown/science_fiction", "brown/humor"],
            "book": ["austen", "moby_dick"],
            "wiki": ["wikipedia"],
            "any": None,
        }[name]
        return groups or sorted(k for k in self.pools if not k.startswith("lang/") and k != "fortunes")

    def para(self, group="any"):
        keys = [k for k in self.groups(group) if k in self.all]
        weights = [len(self.all[k]) for k in keys]
        key = self.rng.choices(keys, weights)[0]
        if not self.pools[key]:
            self.pools[key] = list(self.all[key])
            self.rng.shuffle(self.pools[key])
        r = self.pools[key].pop()
        self.used[r["id"]] = r
        return r["text"]

    def foreign(self, lang):
        key = "lang/" + lang
        if not self.pools[key]:
            self.pools[key] = list(self.all[key])
            self.rng.shuffle(self.pools[key])
        r = self.pools[key].pop()
        self.used[r["id"]] = r
        return r["text"]

    def fortune(self):
        return self.para_from("fortunes")

    def para_from(self, key):
        if not self.pools[key]:
            self.pools[key] = list(self.all[key])
        r = self.pools[key].pop()
        self.used[r["id"]] = r
        return r["text"]


def sentences(text):
    return [s for s in re.split(r"(?<=[.!?])\s+(?=[A-Z\"«¿¡])", text) if s]


# --------------------------------------------------------------------------------------------
# labelled lines
# --------------------------------------------------------------------------------------------
BLANK = ("", None)


def P(text, label="body", width=None):
    """A paragraph as labelled lines, wrapped at `width` (None: one long line)."""
    if width:
        out = textwrap.wrap(text, width, break_long_words=False, break_on_hyphens=False)
        # keep mbox-safe and unambiguous: never start a wrapped line with "From " or ">"
        w = width
        while any(l.startswith(("From ", ">")) for l in out[1:]) or (out and out[0].startswith("From ")):
            w -= 1
            out = textwrap.wrap(text, w, break_long_words=False, break_on_hyphens=False)
        return [(l, label) for l in out]
    return [(text, label)]


def L(lines, label):
    return [(l, label) if l else BLANK for l in lines]


def join(*parts):
    """Join blocks of lines with one blank line between non-empty blocks."""
    out = []
    for p in parts:
        if not p:
            continue
        if out:
            out.append(BLANK)
        out.extend(p)
    return out


def relabel(lines, label):
    return [(t, label if t.strip() else None) for t, _ in lines]


def quoted(lines, prefix=">", space=True):
    out = []
    for t, _ in lines:
        if not t:
            out.append((prefix, "quote"))
        elif t.startswith(">") or not space:
            out.append((prefix + t, "quote"))
        else:
            out.append((prefix + " " + t, "quote"))
    return out


def render(lines):
    return "\n".join(t for t, _ in lines) + "\n"


def label_list(lines):
    out = []
    for t, l in lines:
        s = t.strip()
        if s:
            assert l in LABELS, (t, l)
            out.append({"text": s, "label": l})
    return out


def first(name):
    return name.split()[0]


def rand_date(rng, lo=2014, hi=2024):
    start = dt.datetime(lo, 1, 1, tzinfo=dt.timezone.utc)
    secs = rng.randrange(int((dt.datetime(hi, 12, 31, tzinfo=dt.timezone.utc) - start).total_seconds()))
    tz = dt.timezone(dt.timedelta(hours=rng.choice([0, 0, 1, 2, -5, -8, 5.5, -4, 9])))
    return (start + dt.timedelta(seconds=secs)).astimezone(tz).replace(microsecond=0)


def later(rng, d, lo=600, hi=3 * 86400):
    return d + dt.timedelta(seconds=rng.randrange(lo, hi))


# --------------------------------------------------------------------------------------------
# signatures and content blocks
# --------------------------------------------------------------------------------------------
def phone(rng):
    return f"+1 555 01{rng.randrange(100):02d}"


def signature(rng, person, style, src=None, company=None):
    name, addr = person
    company = company or rng.choice(T.COMPANIES)
    if style == "none":
        return []
    if style == "delim":
        extra = rng.choice([[], [rng.choice(T.TITLES) + ", " + company[0]], [phone(rng)]])
        return L(["-- ", name] + extra, "signature")
    if style == "fortune":
        return L(["-- ", name + " <" + addr + ">"] + src.fortune().split("\n"), "signature")
    if style == "corporate":
        return L([rng.choice(T.VALEDICTIONS), name, f"{rng.choice(T.TITLES)} | {company[0]}",
                  rng.choice([phone(rng), "Tel: " + phone(rng), "M: " + phone(rng) + " | www." + company[1]])], "signature")
    if style == "simple":
        return L([rng.choice(T.VALEDICTIONS), first(name)], "signature")
    if style == "mobile":
        return L([rng.choice(T.MOBILE_SIGS)], "signature")
    if style == "iphone":
        return L([rng.choice(["Sent from my iPhone", "Sent from my iPhone", "Sent from my iPad"])], "signature")
    if style == "initial":
        return L(["-" + first(name)[0]], "signature")
    raise ValueError(style)


def disclaimer(rng, company=None):
    company = company or rng.choice(T.COMPANIES)
    d = rng.choice(T.DISCLAIMERS)
    return L([l.replace("{company}", company[0]) for l in d], "disclaimer")


def content(rng, src, kind, width=None, to=None):
    """The author's own text (label body) for one message."""
    greet = P(rng.choice(T.GREETINGS).format(first=first(to[0]) if to else "all"), width=width)
    if kind == "share":
        return join(greet, P(rng.choice(T.OPENERS), width=width),
                    P(src.para(rng.choice(["book", "fiction", "essay", "news"])), width=width),
                    P(rng.choice(T.QUESTIONS), width=width))
    if kind == "essay":
        paras = [P(src.para(rng.choice(["essay", "news", "hobby", "wiki"])), width=width) for _ in range(rng.randint(1, 3))]
        return join(*paras)
    if kind == "tech":
        parts = [greet, P(rng.choice(T.TECH_QUESTIONS), width=width), P(rng.choice(T.TECH_DETAILS), width=width)]
        r = rng.random()
        if r < 0.45:
            parts.append(L(rng.choice(T.CODE_SNIPPETS), "body"))
        elif r < 0.7:
            parts.append(P(rng.choice(T.INEQUALITY_LINES)))
        parts.append(P(rng.choice(T.CLOSING_LINES), width=width))
        return join(*parts)
    if kind == "short":
        return P(rng.choice(T.SHORT_REPLIES))
    if kind == "tech_gt":  # body lines that start with ">" but are not quotes
        snippet = rng.choice([T.CODE_SNIPPETS[1], T.CODE_SNIPPETS[5]])
        py = snippet[0].startswith(">>>")
        return join(greet, P("Which Python version does the new release need? The release notes only say that old "
                             "interpreters are no longer supported." if py else "The installer cannot find the notes file "
                             "I saved in the public folder, although it is clearly there.", width=width),
                    P("This is what my interpreter reports:" if py else "These are the commands I ran:"),
                    L(snippet, "body"), P(rng.choice(T.INEQUALITY_LINES)), P(rng.choice(T.CLOSING_LINES), width=width))
    if kind == "medium":
        extra = []
        r = rng.random()
        if r < 0.2:
            extra = P(rng.choice(T.PROSE_WROTE), width=width)
        elif r < 0.4:
            extra = P(rng.choice(T.FOREIGN_PHRASES), width=width)
        elif r < 0.55:
            extra = P(src.para(rng.choice(["essay", "news", "fiction"])), width=width)
        return join(P(rng.choice(T.MEDIUM_REPLIES), width=width), extra)
    raise ValueError(kind)


# --------------------------------------------------------------------------------------------
# MAIL
# --------------------------------------------------------------------------------------------
CLIENTS = {
    "gmail": {"hdr": [], "mid": lambda r: f"CA{r.randbytes(18).hex().upper()[:30]}+{r.randbytes(6).hex()}@mail.gmail.com",
              "width": None, "post": "top"},
    "outlook": {"hdr": [("X-MS-Has-Attach", ""), ("X-MS-TNEF-Correlator", ""), ("Thread-Index", "AQHV{x}")],
                "mid": lambda r: f"DM6PR{r.randrange(10, 99)}MB{r.randrange(1000, 9999)}{r.randbytes(8).hex().upper()}@DM6PR{r.randrange(10, 99)}MB{r.randrange(1000, 9999)}.namprd{r.randrange(10, 20)}.prod.outlook.com",
                "width": None, "post": "top"},
    "outlook_old": {"hdr": [("X-Mailer", "Microsoft Office Outlook 12.0"), ("Thread-Index", "Acl{x}")],
                    "mid": lambda r: f"00{r.randbytes(5).hex()}$0{r.randbytes(4).hex()}$@{r.choice(T.COMPANIES)[1]}",
                    "width": None, "post": "top"},
    "apple": {"hdr": [("X-Mailer", "Apple Mail (2.3445.104.11)")],
              "mid": lambda r: f"{r.randbytes(16).hex().upper()}@example.com", "width": None, "post": "top"},
    "iphone": {"hdr": [("X-Mailer", "iPhone Mail (16D57)")],
               "mid": lambda r: f"{r.randbytes(4).hex().upper()}-{r.randbytes(2).hex().upper()}-{r.randbytes(2).hex().upper()}-{r.randbytes(6).hex().upper()}@example.net",
               "width": None, "post": "top"},
    "thunderbird": {"hdr": [("User-Agent", "Mozilla/5.0 (X11; Linux x86_64; rv:102.0) Gecko/20100101 Thunderbird/102.7.1")],
                    "mid": lambda r: f"{r.randbytes(4).hex()}-{r.randbytes(2).hex()}-{r.randbytes(2).hex()}-{r.randbytes(2).hex()}-{r.randbytes(6).hex()}@example.org",
                    "width": 72, "post": "bottom"},
    "mutt": {"hdr": [("User-Agent", "Mutt/2.0.5 (2021-01-21)")],
             "mid": lambda r: f"{r.randrange(2014, 2025)}{r.randrange(1, 13):02d}{r.randrange(1, 29):02d}{r.randrange(100000, 999999)}.GA{r.randrange(1000, 9999)}@example.org",
             "width": 72, "post": "inline"},
}


def attribution(rng, client, person, d):
    name, addr = person
    if client == "gmail":
        return [(f"On {d.strftime('%a, %b')} {d.day}, {d.year} at {d.strftime('%I:%M %p').lstrip('0')} {name} <{addr}> wrote:", "attribution")]
    if client in ("apple", "iphone"):
        return [(f"On {d.strftime('%b')} {d.day}, {d.year}, at {d.strftime('%H:%M')}, {name} <{addr}> wrote:", "attribution")]
    if client == "thunderbird":
        return [(f"On {d.strftime('%d/%m/%Y %H:%M')}, {name} wrote:", "attribution")]
    if client == "mutt":
        return [(f"* {name} <{addr}> [{d.strftime('%Y-%m-%d %H:%M:%S %z')}]:", "attribution")]
    if client == "gmail_wrapped":
        return [(f"On {d.strftime('%a, %b')} {d.day}, {d.year} at {d.strftime('%I:%M %p').lstrip('0')} {name} <", "attribution"),
                (f"{addr}> wrote:", "attribution")]
    if client == "french":
        mois = ["janv.", "févr.", "mars", "avr.", "mai", "juin", "juil.", "août", "sept.", "oct.", "nov.", "déc."]
        jours = ["lun.", "mar.", "mer.", "jeu.", "ven.", "sam.", "dim."]
        return [(f"Le {jours[d.weekday()]} {d.day} {mois[d.month - 1]} {d.year} à {d.strftime('%H:%M')}, {name} <{addr}> a écrit :", "attribution")]
    if client == "german":
        return [(f"Am {d.strftime('%d.%m.%Y')} um {d.strftime('%H:%M')} schrieb {name} <{addr}>:", "attribution")]
    raise ValueError(client)


def outlook_block(orig, to, d, subject, old=False):
    name, addr = orig.frm
    if old:
        head = [("-----Original Message-----", "attribution"), (f"From: {name} [mailto:{addr}]", "quote"),
                (f"Sent: {d.strftime('%A, %B %d, %Y %I:%M %p')}", "quote")]
    else:
        head = [("________________________________", "attribution"), (f"From: {name} <{addr}>", "quote"),
                (f"Sent: {d.strftime('%A, %B')} {d.day}, {d.year} {d.strftime('%I:%M %p').lstrip('0')}", "quote")]
    head += [(f"To: {to[0]} <{to[1]}>" if to[0] != to[1] else f"To: {to[1]}", "quote"), (f"Subject: {subject}", "quote")]
    return head + [BLANK] + relabel(orig.full, "quote")


class Mail:
    """One message: labelled body lines plus header data; render() gives RFC 5322 bytes."""

    def __init__(self, **kw):
        self.__dict__.update(kw)


def enc_addr(person, rng):
    name, addr = person
    if name == addr:
        return addr
    if all(ord(c) < 128 for c in name):
        return formataddr((name, addr))
    cs = "iso-8859-1" if rng.random() < 0.4 and all(ord(c) < 256 for c in name) else "utf-8"
    return f"{Header(name, cs).encode()} <{addr}>"


def enc_subject(subject, rng):
    if all(ord(c) < 128 for c in subject):
        return subject
    cs = "iso-8859-1" if rng.random() < 0.4 and all(ord(c) < 256 for c in subject) else "utf-8"
    return Header(subject, cs, header_name="Subject").encode()


def html_alternative(lines):
    out, inq = ['<html><head><meta http-equiv="Content-Type" content="text/html; charset=utf-8"></head><body><div dir="ltr">'], False
    for t, lab in lines:
        q = lab in ("quote",) and t.startswith(">")
        if q and not inq:
            out.append('<blockquote class="gmail_quote" style="margin:0 0 0 .8ex;border-left:1px #ccc solid;padding-left:1ex">')
            inq = True
        if not q and inq:
            out.append("</blockquote>")
            inq = False
        text = t.lstrip(">").strip() if q else t
        out.append(f"<div>{html.escape(text) if text.strip() else '<br>'}</div>")
    if inq:
        out.append("</blockquote>")
    out.append("</div></body></html>")
    return "\n".join(out) + "\n"


def wrap76(s):
    return "\n".join(s[i:i + 76] for i in range(0, len(s), 76))


def mime_body(m, rng):
    """Return (extra headers, body text) for the message's MIME structure."""
    text = render(m.lines)
    ascii_ok = all(ord(c) < 128 for c in text)
    cs = "us-ascii" if ascii_ok else ("iso-8859-1" if all(ord(c) < 256 for c in text) and rng.random() < 0.3 else "utf-8")
    cte = m.cte
    if cte == "7bit" and not ascii_ok:
        cte, cs = "8bit", "utf-8"  # the raw message is written as UTF-8

    def part(ctype, body, cte):
        data = body.encode(cs)
        if cte == "quoted-printable":
            payload = quopri.encodestring(data).decode("ascii")
        elif cte == "base64":
            payload = base64.encodebytes(data).decode("ascii")
        else:
            payload = body
        hdr = [("Content-Type", f'{ctype}; charset="{cs}"' + ("; format=flowed" if False else "")), ("Content-Transfer-Encoding", cte)]
        return hdr, payload

    if m.mime == "plain":
        return part("text/plain", text, cte)
    boundary = m.boundary
    if m.mime == "alternative":
        h1, p1 = part("text/plain", text, cte)
        cs_html = cs
        h2, p2 = ([("Content-Type", f'text/html; charset="{cs_html}"'), ("Content-Transfer-Encoding", "quoted-printable")],
                  quopri.encodestring(html_alternative(m.lines).encode(cs_html)).decode("ascii"))
        parts = [(h1, p1), (h2, p2)]
        ctype = f'multipart/alternative; boundary="{boundary}"'
    else:  # mixed: text body + an attachment
        h1, p1 = part("text/plain", text, cte)
        att = "2019-03-03 10:12:01 ERROR worker 3: connection reset by peer\n2019-03-03 10:12:06 INFO retrying\n"
        h2 = [("Content-Type", 'text/plain; charset="us-ascii"; name="error.log"'),
              ("Content-Disposition", 'attachment; filename="error.log"'), ("Content-Transfer-Encoding", "base64")]
        parts = [(h1, p1), (h2, base64.encodebytes(att.encode()).decode())]
        ctype = f'multipart/mixed; boundary="{boundary}"'
    body = "This is a multi-part message in MIME format.\n\n" if m.client.startswith("outlook") else ""
    for h, p in parts:
        body += f"--{boundary}\n" + "".join(f"{k}: {v}\n" for k, v in h) + "\n" + p.rstrip("\n") + "\n\n"
    body += f"--{boundary}--\n"
    return [("Content-Type", ctype)], body


def render_mail(m, rng):
    hdr = [("Return-Path", f"<{m.frm[1]}>"),
           ("Received", f"from mail.{m.frm[1].split('@')[1]} (mail.{m.frm[1].split('@')[1]} [192.0.2.{rng.randrange(1, 254)}])\n"
                        f"\tby mx.example.net with ESMTPS id {rng.randbytes(5).hex()}\n\tfor <{m.to[1]}>; {format_datetime(m.date)}"),
           ("MIME-Version", "1.0")]
    hdr += [("From", enc_addr(m.frm, rng)), ("To", enc_addr(m.to, rng) if m.to[1] else m.to[0])]
    if getattr(m, "cc", None):
        hdr.append(("Cc", enc_addr(m.cc, rng)))
    hdr += [("Subject", enc_subject(m.subject, rng)), ("Date", format_datetime(m.date)), ("Message-ID", f"<{m.mid}>")]
    if m.parent:
        hdr += [("In-Reply-To", f"<{m.parent}>"), ("References", " ".join(f"<{x}>" for x in m.refs))]
    if m.listname:
        hdr += [("List-Id", f"<{m.listname}.lists.example.org>"), ("List-Post", f"<mailto:{m.listname}@lists.example.org>"),
                ("Precedence", "list")]
    for k, v in CLIENTS[m.client]["hdr"]:
        hdr.append((k, v.replace("{x}", base64.b64encode(rng.randbytes(12)).decode())))
    mh, body = mime_body(m, rng)
    hdr += mh
    head = "".join(f"{k}: {v}\n" for k, v in hdr)
    return head + "\n" + body


def mailing_footer(listname):
    return L(["_______________________________________________", f"{listname.capitalize()} mailing list",
              f"{listname}@lists.example.org", f"https://lists.example.org/mailman/listinfo/{listname}"], "boilerplate")


class MailFactory:
    def __init__(self, rng, src):
        self.rng, self.src = rng, src
        self.mids = set()

    def mid(self, client):
        while True:
            m = CLIENTS[client]["mid"](self.rng)
            if m not in self.mids:
                self.mids.add(m)
                return m

    def person(self, utf8_p=0.15):
        return self.rng.choice(T.PEOPLE_UTF8 if self.rng.random() < utf8_p else T.PEOPLE)

    def mime(self, client):
        r = self.rng.random()
        mime = "alternative" if (client in ("gmail", "outlook", "apple", "iphone") and r < 0.5) else ("mixed" if r > 0.93 else "plain")
        r2 = self.rng.random()
        cte = "quoted-printable" if r2 < 0.25 else ("base64" if r2 < 0.37 else "7bit")
        bnd = {"gmail": "000000000000" + self.rng.randbytes(7).hex(), "outlook": "_000_" + self.rng.randbytes(10).hex().upper() + "_",
               "apple": "Apple-Mail=_" + self.rng.randbytes(8).hex().upper()}.get(client, "------------" + self.rng.randbytes(12).hex())
        return dict(mime=mime, cte=cte, boundary=bnd)

    def new(self, client, frm, to, subject, lines, date, parent=None, listname=None, **kw):
        m = Mail(client=client, frm=frm, to=to, subject=subject, lines=lines, date=date, mid=self.mid(client),
                 parent=parent.mid if parent else None, refs=(parent.refs + [parent.mid]) if parent else [],
                 listname=listname, **self.mime(client))
        m.__dict__.update(kw)
        return m

    # an original message ---------------------------------------------------------------
    def original(self, kind=None, listname=None, client=None):
        rng = self.rng
        client = client or rng.choice(list(CLIENTS))
        frm, to = self.person(), self.person(0)
        if listname:
            to = (f"{listname}@lists.example.org", f"{listname}@lists.example.org")
        while to == frm:
            to = self.person(0)
        kind = kind or rng.choice(["share", "share", "essay", "tech", "tech", "medium"])
        width = CLIENTS[client]["width"]
        own = content(rng, self.src, kind, width=width, to=None if listname else to)
        if kind == "essay" and rng.random() < 0.5:
            own = join(P(rng.choice(T.OPENERS), width=width), own)
        sig_style = {"gmail": ["delim", "simple", "none", "corporate"], "outlook": ["corporate", "corporate", "simple"],
                     "outlook_old": ["corporate"], "apple": ["simple", "iphone", "none"], "iphone": ["iphone"],
                     "thunderbird": ["delim", "simple", "fortune"], "mutt": ["fortune", "delim", "initial"]}[client]
        sig = signature(rng, frm, rng.choice(sig_style), self.src)
        discl = disclaimer(rng) if client.startswith("outlook") and rng.random() < 0.5 else []
        lines = join(own, sig, discl)
        subject = self.subject(kind)
        if listname:
            lines = join(lines, mailing_footer(listname))
        m = self.new(client, frm, to, subject, lines, rand_date(rng), listname=listname)
        m.full = join(own, sig)  # what a reply quotes (footer/disclaimer usually trimmed)
        m.own = own
        return m

    def subject(self, kind):
        rng = self.rng
        s = {"share": ["This week's reading", "A passage worth discussing", "Chapter notes", "Excerpt for Thursday",
                       "Something I read last night"],
             "essay": ["Article for the newsletter", "Draft: background section", "Notes from the archive", "FYI: interesting piece",
                       "Summary for the committee"],
             "tech": ["Import job times out after upgrade", "Backup fails with permission denied", "CSV export drops rows",
                      "Question about the API rate limit", "Sync client using 100% CPU", "Help: script stopped working"],
             "medium": ["Next meeting", "Quick question", "Agenda item", "Re-reading chapter 12", "Minutes from Tuesday"],
             "tech_gt": ["Python version question", "Console output"], "short": ["Quick update", "Re: follow-up"]}[kind]
        subj = rng.choice(s)
        if rng.random() < 0.1:
            subj += rng.choice([" – café edition", " (Müller's notes)", " — naïve question"])
        return subj

    # a reply ----------------------------------------------------------------------------
    def reply(self, orig, client=None, style=None, kind=None):
        rng = self.rng
        client = client or rng.choice(list(CLIENTS))
        frm = self.person()
        while frm == orig.frm:
            frm = self.person()
        to = orig.frm if not orig.listname else orig.to
        width = CLIENTS[client]["width"]
        d = later(rng, orig.date)
        kind = kind or rng.choice(["short", "short", "medium", "medium"] + ([] if client == "mutt" else ["share"]))
        own = content(rng, self.src, kind, width=width, to=None) if kind != "share" else join(
            P(rng.choice(T.GREETINGS).format(first=first(orig.frm[0])), width=width), P(self.src.para("any"), width=width))
        sig_style = {"gmail": ["simple", "none", "delim"], "outlook": ["corporate", "simple"], "outlook_old": ["corporate"],
                     "apple": ["iphone", "simple", "none"], "iphone": ["iphone"], "thunderbird": ["delim", "simple"],
                     "mutt": ["delim", "initial", "fortune"]}[client]
        sig = signature(rng, frm, rng.choice(sig_style), self.src)
        subject = orig.subject if orig.subject.startswith(("Re:", "RE:")) else ("RE: " if client.startswith("outlook") else "Re: ") + orig.subject
        q_src = orig.full
        if client in ("outlook", "outlook_old"):
            discl = disclaimer(rng) if rng.random() < 0.4 else []
            lines = join(own, sig, discl, outlook_block(orig, orig.to, orig.date, orig.subject, old=client == "outlook_old"))
        elif client == "mutt" or (style == "inline"):
            lines = self.inline(orig, client, own, sig, width)
        elif client == "thunderbird" or style == "bottom":
            att = attribution(rng, "thunderbird" if client == "thunderbird" else "gmail", orig.frm, orig.date)
            lines = join(att + quoted(q_src), own, sig)
        else:  # gmail / apple / iphone top posting
            which = client if client != "gmail" else rng.choice(["gmail"] * 7 + ["gmail_wrapped", "french", "german"])
            att = attribution(rng, which, orig.frm, orig.date)
            if client == "apple" and rng.random() < 0.5:
                # macOS Mail puts the attribution inside the quote
                att = [("> " + att[0][0], "attribution"), (">", "quote")]
                lines = join(own, sig) + [BLANK] + att + quoted(q_src)
            else:
                lines = join(own, sig, att + [BLANK] + quoted(q_src))
        if orig.listname:
            lines = join(lines, mailing_footer(orig.listname))
        m = self.new(client, frm, to, subject, lines, d, parent=orig, listname=orig.listname)
        m.full = join(own, sig) + ([BLANK] + [x for x in lines if x[1] in ("attribution", "quote")] if client != "mutt" else [])
        m.full = [x for x in m.full]
        m.own = own
        return m

    def inline(self, orig, client, own, sig, width):
        """Interleaved reply: quote chunks of the original, answer below each."""
        rng = self.rng
        chunks, cur = [], []
        for t, lab in orig.own:
            if not t:
                if cur:
                    chunks.append(cur)
                cur = []
            else:
                cur.append((t, lab))
        if cur:
            chunks.append(cur)
        att = attribution(rng, "mutt" if client == "mutt" else "thunderbird", orig.frm, orig.date)
        out = att
        answers = [own] + [P(rng.choice(T.SHORT_REPLIES + T.MEDIUM_REPLIES), width=width) for _ in range(len(chunks))]
        ai = 0
        for i, ch in enumerate(chunks):
            out = out + quoted(ch) if i == 0 else out + [BLANK] + quoted(ch)
            if i == 0 and len(chunks) > 1 and ch[0][0].startswith(tuple(g.split("{")[0] for g in T.GREETINGS if g.split("{")[0])):
                continue
            if rng.random() < 0.75 or i == len(chunks) - 1:
                out = out + [BLANK] + answers[ai]
                ai += 1
        if rng.random() < 0.4:
            out = out + [BLANK] + [("> [...]", "quote")]
        return join(out, sig)


def nested_reply(f, orig1, reply1):
    """A third message quoting reply1, which itself quotes orig1 (gives '>>' lines)."""
    return f.reply(reply1, client=f.rng.choice(["thunderbird", "gmail", "mutt", "apple"]))


def digest(f, listname, desc, issue):
    rng, src = f.rng, f.src
    items = []
    ddate = rand_date(rng)
    for i in range(rng.randint(2, 4)):
        p = f.person(0)
        subj = ("Re: " if rng.random() < 0.5 else "") + f.subject(rng.choice(["share", "essay", "medium"]))
        d = ddate - dt.timedelta(seconds=rng.randrange(3600, 86400))
        own = join(P(src.para(rng.choice(["book", "essay", "news"])), width=72),
                   P(rng.choice(T.CLOSING_LINES), width=72) if rng.random() < 0.5 else [])
        if rng.random() < 0.5:
            q = f.person(0)
            own = join(attribution(rng, "thunderbird", q, later(rng, d, -86400, -600)) + quoted(P(src.para("any"), width=70)), own)
        items.append((p, subj, d, join(own, signature(rng, p, rng.choice(["delim", "simple", "none"]), src))))
    name = listname
    lines = L([f"Send {name.capitalize()} mailing list submissions to", f"\t{name}@lists.example.org", "",
               "To subscribe or unsubscribe via the World Wide Web, visit",
               f"\thttps://lists.example.org/mailman/listinfo/{name}", "or, via email, send a message with subject or body 'help' to",
               f"\t{name}-request@lists.example.org", "", "You can reach the person managing the list at",
               f"\t{name}-owner@lists.example.org", "", "When replying, please edit your Subject line so it is more specific",
               f"than \"Re: Contents of {name.capitalize()} digest...\"", "", "", "Today's Topics:", ""], "boilerplate")
    for i, (p, subj, d, _) in enumerate(items, 1):
        lines.append((f"   {i}. {subj} ({p[0]})", "boilerplate"))
    lines += [BLANK, BLANK, ("----------------------------------------------------------------------", "boilerplate"), BLANK]
    for i, (p, subj, d, body) in enumerate(items, 1):
        lines += [(f"Message: {i}", "header"), (f"Date: {format_datetime(d)}", "header"), (f"From: {p[0]} <{p[1]}>", "header"),
                  (f"To: {name}@lists.example.org", "header"), (f"Subject: [{name.capitalize()}] {subj}", "header"),
                  (f"Message-ID: <{rng.randbytes(8).hex()}@example.org>", "header"),
                  ("Content-Type: text/plain; charset=us-ascii; format=flowed", "header"), BLANK]
        lines += body + [BLANK, ("------------------------------", "boilerplate"), BLANK]
    lines += [("Subject: Digest Footer", "boilerplate"), BLANK] + mailing_footer(name) + [
        BLANK, ("------------------------------", "boilerplate"), BLANK,
        (f"End of {name.capitalize()} Digest, Vol {issue // 12 + 1}, Issue {issue}", "boilerplate"),
        ("*" * 40, "boilerplate")]
    frm = (f"{name}-request@lists.example.org", f"{name}-request@lists.example.org")
    m = f.new("thunderbird", frm, (f"{name}@lists.example.org", f"{name}@lists.example.org"),
              f"{name.capitalize()} Digest, Vol {issue // 12 + 1}, Issue {issue}", lines, ddate, listname=name)
    m.mime, m.cte = "plain", "7bit"
    return m


def forwarded(f):
    rng = f.rng
    orig = f.original(kind=rng.choice(["essay", "share"]), client="gmail")
    frm = f.person()
    to = f.person(0)
    own = join(P(rng.choice(T.GREETINGS).format(first=first(to[0]))),
               P(rng.choice(["Forwarding this in case you missed it.", "See below, I think this is relevant for the report.",
                             "FYI. The second paragraph is the interesting part."])))
    fwd = [("---------- Forwarded message ---------", "attribution"), (f"From: {orig.frm[0]} <{orig.frm[1]}>", "quote"),
           (f"Date: {orig.date.strftime('%a, %b')} {orig.date.day}, {orig.date.year} at {orig.date.strftime('%I:%M %p').lstrip('0')}", "quote"),
           (f"Subject: {orig.subject}", "quote"), (f"To: {orig.to[0]} <{orig.to[1]}>", "quote"), BLANK] + relabel(orig.full, "quote")
    lines = join(own, signature(rng, frm, "simple"), fwd)
    m = f.new("gmail", frm, to, "Fwd: " + orig.subject, lines, later(rng, orig.date))
    return m


def junk_mail(f, i):
    rng = f.rng
    spam = T.SPAM[i % len(T.SPAM)]
    frm = (rng.choice(["Claims Department", "Pharmacy Online", "Mail Administrator", "Prize Notification", "Barrister James Williams",
                       "Crypto Profits"]), f"noreply{rng.randrange(1000)}@{rng.choice(['promo', 'deals', 'winner'])}.example.biz")
    to = f.person(0)
    subj = rng.choice(["URGENT: You are a winner!!!", "Re: your account", "80% OFF TODAY ONLY", "Important notice", "Final warning",
                       "Business proposal", "Fw: YOUR PRIZE ✔"])
    m = f.new("outlook_old", frm, to, subj, L(spam, "body"), rand_date(rng))
    return m


def foreign_mail(f, lang, parent=None):
    rng, src = f.rng, f.src
    F = T.FOREIGN[lang]
    frm = f.person(0.6)
    to = parent.frm if parent else f.person(0)
    own = join(P(F["greet"], width=72), P(src.foreign(lang), width=72),
               P(src.foreign(lang), width=72) if rng.random() < 0.5 else [], P(F["q"], width=72))
    sig = L([F["close"], first(frm[0])], "signature")
    lines = join(own, sig)
    if parent:
        lines = join(lines, attribution(rng, "thunderbird", parent.frm, parent.date) + quoted(parent.full))
    subj = rng.choice(["Question", "Installation", "Paquets", "Pakete", "Ayuda", "Domanda", "Dúvida"])
    m = f.new("thunderbird", frm, to, ("Re: " + parent.subject) if parent else subj, lines, later(rng, parent.date) if parent else rand_date(rng),
              parent=parent)
    m.full, m.own = join(own, sig), own
    return m


def english_reply_to_foreign(f, forig):
    rng = f.rng
    own = join(P(f"{rng.choice(T.GREETINGS).format(first=first(forig.frm[0]))}"),
               P(rng.choice(T.MEDIUM_REPLIES)), P("Sorry for answering in English, I can read the language but I do not write it well."))
    lines = join(own, signature(rng, f.person(0), "simple"), attribution(rng, "gmail", forig.frm, forig.date) + [BLANK] + quoted(forig.full))
    return f.new("gmail", f.person(0), forig.frm, "Re: " + forig.subject, lines, later(rng, forig.date), parent=forig)


def build_mail(src):
    rng = random.Random(SEED + 1)
    f = MailFactory(rng, src)
    docs = []  # (Mail, keep, reason, lang)

    def add(m, keep=True, reason=None, lang="en"):
        docs.append((m, keep, reason, lang))

    # threads
    while len(docs) < 127:
        r = rng.random()
        listname = rng.choice(T.LISTS)[0] if r < 0.35 else None
        o = f.original(listname=listname)
        add(o)
        prev = o
        for _ in range(rng.choice([0, 1, 1, 2, 2, 3])):
            rep = f.reply(prev if rng.random() < 0.7 else o)
            add(rep)
            prev = rep
        if rng.random() < 0.15:
            add(forwarded(f))
        if rng.random() < 0.1:
            add(digest(f, rng.choice(T.LISTS)[0], "", rng.randrange(1, 60)))
    # hard cases
    add(f.reply(f.original(kind="tech", client="gmail"), client="gmail", kind="short"))
    for client in ("gmail", "thunderbird", "outlook"):
        o = f.original(kind="tech_gt", client=client)
        add(o)
    for client in ("iphone", "gmail"):  # very short standalone messages (no quote)
        o = f.original(kind="short", client=client)
        add(o)
    o = f.original(kind="share", client="thunderbird")
    add(o)
    add(f.reply(o, client="mutt"))
    # foreign
    langs = ["fr", "de", "es", "it", "pt", "fr", "de", "es", "it", "pt"]
    foreign = []
    for i, lang in enumerate(langs[:9]):
        fm = foreign_mail(f, lang)
        foreign.append(fm)
        add(fm, False, "not_english", lang)
    add(english_reply_to_foreign(f, foreign[0]))
    add(english_reply_to_foreign(f, foreign[1]))
    eng = f.original(kind="tech", client="gmail")
    add(eng)
    add(foreign_mail(f, "fr", parent=eng), False, "not_english", "fr")
    for i in range(7):
        add(junk_mail(f, i), False, "junk", "en")
    # mbox/eml split: the eml set is a deterministic sample
    idx = list(range(len(docs)))
    rng.shuffle(idx)
    eml_idx = set(idx[:30])
    return docs, eml_idx


# --------------------------------------------------------------------------------------------
# FORUM
# --------------------------------------------------------------------------------------------
FORUM_USERS = ["bookworm42", "captain_ahab", "MrsJennings", "quietreader", "old_salt", "gardenia", "pyguy", "history_buff",
               "lindqvist", "tomO", "rachel_m", "spoonbill", "chalkdust", "nightowl", "frankly_frank", "the_curator", "marta_k",
               "R. Ferrars", "jw1987", "elinor_d"]


def forum_date(rng, d, style):
    if style == "smf":
        return f"{d.strftime('%B')} {d.day}, {d.year}, {d.strftime('%I:%M:%S %p')}"
    return f"{d.strftime('%d %b %Y')}"


def build_forum(src):
    rng = random.Random(SEED + 2)
    docs = []
    pid = 48000

    def new_id():
        nonlocal pid
        pid += rng.randint(1, 40)
        return f"post-{pid}"

    def own_text(kind):
        if kind == "prose":
            parts = [P(src.para(rng.choice(["book", "fiction", "essay", "hobby", "news", "wiki"])))]
            if rng.random() < 0.5:
                parts.insert(0, P(rng.choice(T.OPENERS + ["I found this in the library copy:", "Here is the bit I meant:"])))
            if rng.random() < 0.4:
                parts.append(P(rng.choice(T.QUESTIONS + T.CLOSING_LINES)))
            return join(*parts)
        if kind == "tech":
            parts = [P(rng.choice(T.TECH_QUESTIONS)), P(rng.choice(T.TECH_DETAILS))]
            if rng.random() < 0.6:
                parts.append(L(rng.choice(T.CODE_SNIPPETS), "body"))
            elif rng.random() < 0.5:
                parts.append(P(rng.choice(T.INEQUALITY_LINES)))
            return join(*parts)
        if kind == "short":
            return P(rng.choice(T.SHORT_REPLIES))
        if kind == "medium":
            extra = P(rng.choice(T.PROSE_WROTE + T.FOREIGN_PHRASES)) if rng.random() < 0.35 else []
            return join(P(rng.choice(T.MEDIUM_REPLIES)), extra)
        raise ValueError(kind)

    def sig():
        r = rng.random()
        s = rng.choice(T.FORUM_SIGS)
        if r < 0.35:
            return []
        if s[0].startswith("Sent from"):
            return L(s, "signature")
        if r < 0.6:
            return [("_________________", "signature")] + L(s, "signature")
        if r < 0.75:
            return [("____", "signature")] + L(s, "signature")
        if r < 0.9:
            return [("--", "signature")] + L(s, "signature")
        return L(s, "signature") if s[0].startswith("Sent from") else [("-- ", "signature")] + L(s, "signature")

    def quote_block(style, user, qlines, d):
        if style == "bbcode":
            return [(f"[quote={user}]", "attribution")] + relabel(qlines, "quote") + [("[/quote]", "quote")]
        if style == "bbcode_noname":
            return [("[quote]", "attribution")] + relabel(qlines, "quote") + [("[/quote]", "quote")]
        if style == "discourse":
            return [(f'[quote="{user}, post:{rng.randint(1, 40)}, topic:{rng.randint(1000, 99999)}"]', "attribution")] + relabel(qlines, "quote") + [("[/quote]", "quote")]
        # scraped quotes without an end marker: the quote is the single paragraph after the attribution
        one = [x for x in qlines if x[0]][:1]
        if style == "smf":
            return [(f"Quote from: {user} on {forum_date(rng, d, 'smf')}", "attribution")] + relabel(one, "quote")
        if style == "phpbb":
            return [(f"{user} wrote:", "attribution")] + relabel(one, "quote")
        if style == "vb":
            return [("Quote:", "attribution"), (f"Originally Posted by {user}", "attribution")] + relabel(one, "quote")
        if style == "markdown":
            return quoted(qlines)
        if style == "markdown_attr":
            return [(f"{user} wrote:", "attribution")] + quoted(qlines)
        raise ValueError(style)

    prev_posts = []  # (user, own lines, date)
    n_foreign, n_junk = 0, 0
    target_foreign, target_junk = 8, 8
    slots = ["good"] * 134 + ["foreign"] * target_foreign + ["junk"] * target_junk
    rng.shuffle(slots)
    for slot in slots:
        user = rng.choice(FORUM_USERS)
        d = rand_date(rng, 2008, 2024)
        meta = {}
        if slot == "foreign":
            lang = ["fr", "de", "es", "it", "pt", "fr", "de", "es"][n_foreign]
            n_foreign += 1
            F = T.FOREIGN[lang]
            lines = join(P(F["greet"]), P(src.foreign(lang)), P(F["q"]) if rng.random() < 0.6 else [])
            if prev_posts and rng.random() < 0.4:
                pu, pl, pd = rng.choice(prev_posts)
                lines = join(quote_block("bbcode", pu, pl[:3], pd), lines)
            docs.append(({"id": new_id(), "text": render(lines)}, lines, False, "not_english", lang, meta))
            continue
        if slot == "junk":
            j = (T.JUNK_SHORT + T.SPAM[:6] + T.GIBBERISH)[rng.randrange(len(T.JUNK_SHORT) + 6 + len(T.GIBBERISH))]
            lines = L(j, "body")
            if j in T.JUNK_SHORT and prev_posts and rng.random() < 0.5:
                pu, pl, pd = rng.choice(prev_posts)
                lines = join(quote_block(rng.choice(["bbcode", "phpbb"]), pu, pl[:2], pd), lines)
            n_junk += 1
            jl = "en" if j in T.SPAM else "und"  # no language: content-free or gibberish
            docs.append(({"id": new_id(), "text": render(lines)}, lines, False, "junk", jl, meta))
            continue
        kind = rng.choice(["prose", "prose", "tech", "short", "short", "medium", "medium"])
        own = own_text(kind)
        lines = own
        r = rng.random()
        if prev_posts and r < 0.55:
            style = rng.choice(["bbcode", "bbcode", "bbcode_noname", "discourse", "smf", "phpbb", "vb", "markdown", "markdown_attr"])
            pu, pl, pd = rng.choice(prev_posts[-12:])
            qlines = [x for x in pl if x[1] == "body" or not x[0]]
            while qlines and not qlines[-1][0]:
                qlines.pop()
            if rng.random() < 0.3 and len(prev_posts) > 3 and style not in ("smf", "phpbb", "vb"):
                # nested quote: the earlier post already quoted someone
                pu2, pl2, pd2 = rng.choice(prev_posts[-12:])
                inner = quote_block(style if style in ("bbcode", "discourse", "markdown", "markdown_attr") else "bbcode", pu2, [x for x in pl2 if x[1] == "body"][:2], pd2)
                qlines = inner + [BLANK] + qlines[:3]
                if style in ("markdown", "markdown_attr"):
                    qlines = relabel(qlines, "quote")
            qb = quote_block(style, pu, qlines, pd)
            if style in ("markdown", "markdown_attr") and rng.random() < 0.3 and len(own) > 2:
                lines = join(qb, own[:1], quoted(qlines[-1:]), own[1:])  # interleaved
            else:
                lines = join(qb, own)
        lines = join(lines, sig())
        if rng.random() < 0.12:
            lines = join(lines, [(rng.choice(T.FORUM_BOILER).format(user=user, date=d.strftime("%m-%d-%Y")), "boilerplate")])
        if rng.random() < 0.1:
            # mail-to-forum / news gateway: header lines at the top of the text
            p = rng.choice(T.PEOPLE)
            subj = rng.choice(["Re: import job times out", "Re: script stopped working"] if kind == "tech" else
                              ["Re: chapter 12", "Re: the whaling chapters", "Re: reading list for May", "Re: an old article"])
            date_s = format_datetime(d)
            hdr = [(f"From: {p[0]} <{p[1]}>", "header"), (f"Date: {date_s}", "header"), (f"Subject: {subj}", "header")]
            if rng.random() < 0.6:
                hdr.append((f"Newsgroups: {'comp.lang.python' if kind == 'tech' else rng.choice(['rec.arts.books', 'humanities.lit.authors', 'soc.history'])}", "header"))
            lines = hdr + [BLANK] + lines
            meta = {"author": f"{p[0]} <{p[1]}>", "date": d.isoformat(), "subject": subj}
        docs.append(({"id": new_id(), "text": render(lines)}, lines, True, None, "en", meta))
        prev_posts.append((user, own, d))
    return docs


# --------------------------------------------------------------------------------------------
# WEB
# --------------------------------------------------------------------------------------------
class Page:
    def __init__(self):
        self.parts, self.lines = [], []

    def raw(self, s):
        self.parts.append(s)

    def el(self, tag, text, label, cls=None, href=None):
        a = f' class="{cls}"' if cls else ""
        inner = html.escape(text, quote=False)
        if href is not None:
            inner = f'<a href="{href}">{inner}</a>'
        self.parts.append(f"<{tag}{a}>{inner}</{tag}>")
        self.lines.append((text, label))

    def ul(self, items, label, cls=None):
        self.raw(f'<ul class="{cls}">' if cls else "<ul>")
        for it in items:
            slug = re.sub(r"[^a-z0-9]+", "-", it.lower()).strip("-")
            self.el("li", it, label, href=f"/{slug}/")
        self.raw("</ul>")

    def pre(self, code_lines):
        self.parts.append("<pre><code>" + html.escape("\n".join(code_lines), quote=False) + "</code></pre>")
        self.lines += [(c, "body") for c in code_lines]


def build_web(src):
    rng = random.Random(SEED + 3)
    docs = []
    slots = ["good"] * 72 + ["foreign"] * 5 + ["junk"] * 4
    rng.shuffle(slots)
    n_for = 0
    for i, slot in enumerate(slots):
        site = rng.choice(T.WEB_SITES)
        pg = Page()
        d = rand_date(rng, 2012, 2024)
        author = rng.choice(T.PEOPLE)[0]
        lang = "en"
        F = None
        if slot == "foreign":
            lang = ["fr", "de", "es", "it", "pt"][n_for]
            n_for += 1
            F = T.FOREIGN[lang]
            site = dict(site, kind="news", nav=F["nav"])
        if slot == "junk":
            site = {"name": rng.choice(["best-cheap-deals.example.biz", "domain-parking.example.biz", "top10reviews.example.biz"]),
                    "kind": "junk", "nav": ["Home", "Deals", "Contact"]}
        title = {"news": None, "blog": None}.get(site["kind"])
        kind = site["kind"]
        # title
        if kind == "junk":
            title = rng.choice(["Best Cheap Watches 2021 - Buy Cheap Watches Online", "This domain is for sale!",
                                "Top 10 best VPN cheap VPN best VPN deals"])
        elif kind == "lit":
            title = rng.choice(["Selected passages", "Reading room: an excerpt", "From the archive of classic fiction"])
        elif kind == "docs":
            title = rng.choice(["Configuring the clean stage", "Troubleshooting imports", "Running the pipeline on a schedule",
                                "Upgrading from 2.3 to 2.4"])
        elif lang != "en":
            title = " ".join(src.foreign(lang).split(".")[0].split()[:9]).rstrip(",;:")
        else:
            base = sentences(src.para("wiki" if kind == "wiki" else "news"))[0]
            title = rng.choice(T.FORUM_THREAD_TITLES) if kind == "forum" else " ".join(base.split()[:rng.randint(5, 10)]).rstrip(",.;:\"") if kind != "wiki" else rng.choice(
                ["Astronomy", "History of the region", "Overview", "Early life", "Geography and climate", "Economy"])
        lang_attr = lang
        pg.raw(f'<!DOCTYPE html>\n<html lang="{lang_attr}">\n<head>\n<meta charset="utf-8">\n'
               f"<title>{html.escape(title)} | {html.escape(site['name'])}</title>\n"
               f'<meta name="viewport" content="width=device-width, initial-scale=1">\n'
               f'<link rel="stylesheet" href="/static/css/main.{rng.randbytes(4).hex()}.css">\n'
               "<script>window.dataLayer=window.dataLayer||[];function gtag(){dataLayer.push(arguments);}gtag('js',new Date());</script>\n"
               "<style>.cookie-banner{position:fixed;bottom:0}</style>\n</head>\n<body>")
        # cookie banner (top or bottom)
        cookie_top = rng.random() < 0.5
        cb = rng.choice(T.COOKIE_BANNERS) if lang == "en" else [F["cookie"], F["accept"]]

        def cookie():
            if rng.random() < 0.8:
                pg.raw('<div class="cookie-banner" role="dialog">')
                pg.el("p", cb[0], "boilerplate")
                for b in cb[1:]:
                    pg.el("button", b, "boilerplate")
                pg.raw("</div>")

        if rng.random() < 0.3:
            pg.raw('<a class="skip-link" href="#main">')
            pg.el("div", "Skip to main content", "boilerplate")
            pg.raw("</a>")
        if cookie_top:
            cookie()
        pg.raw('<header class="site-header">')
        pg.el("div", site["name"], "boilerplate", cls="logo")
        pg.raw("<nav>")
        pg.ul(site["nav"], "boilerplate", cls="menu")
        pg.raw("</nav>")
        if rng.random() < 0.4 and lang == "en":
            pg.el("div", "Search", "boilerplate", cls="search")
        pg.raw("</header>")
        if kind in ("docs", "wiki") and rng.random() < 0.7:
            pg.raw('<nav class="breadcrumbs">')
            pg.ul(["Home", site["nav"][1], title], "boilerplate")
            pg.raw("</nav>")
        pg.raw('<main>\n<article>')
        pg.el("h1", title, "body")
        meta = {"subject": title}
        if kind in ("news", "blog", "lit") or lang != "en":
            byline = rng.choice([f"By {author}", f"By {author} | {d.strftime('%B')} {d.day}, {d.year}",
                                 f"Posted on {d.strftime('%B')} {d.day}, {d.year} by {author}"])
            if lang != "en":
                byline = f"{F['by']} {author}"
            pg.el("p", byline, "header", cls="byline")
            if "|" not in byline and "Posted" not in byline:
                pg.el("time", f"{d.strftime('%d %B %Y')}" if lang == "en" else d.date().isoformat(), "header")
            meta.update(author=author, date=d.date().isoformat())
            if rng.random() < 0.4 and kind != "junk":
                pg.el("p", f"{rng.randint(2, 12)} min read", "boilerplate", cls="read-time")
        if kind == "news" and lang == "en" and rng.random() < 0.5:
            pg.ul(T.SHARE[: rng.randint(3, 5)], "boilerplate", cls="share")
        # main content
        if kind == "junk":
            if "domain" in title:
                for t in ["This domain may be for sale!", "Buy this domain", "Related searches:", "Cheap Flights", "Car Insurance",
                          "Online Degree", "Web Hosting"]:
                    pg.el("p", t, "body")
            else:
                for _ in range(rng.randint(3, 5)):
                    kw = rng.choice(["cheap watches", "best vpn", "buy cheap", "discount", "top 10", "deals 2021"])
                    pg.el("p", f"{kw} {kw} best {kw} online {kw} buy {kw} cheap free shipping {kw} top rated {kw}.", "body")
                pg.ul([f"{w} deals" for w in ["watches", "vpn", "shoes", "phones", "casino"]], "body")
        elif lang != "en":
            for _ in range(rng.randint(2, 4)):
                pg.el("p", src.foreign(lang), "body")
        elif kind == "docs":
            pg.el("p", rng.choice(T.TECH_QUESTIONS).split("?")[0].split(".")[0] + ". This page explains how to deal with it.", "body")
            pg.el("h2", "Overview", "body")
            pg.el("p", src.para("essay"), "body")
            pg.el("h2", "Example", "body")
            pg.el("p", "The following snippet shows the relevant part of a typical setup:", "body")
            pg.pre(rng.choice(T.CODE_SNIPPETS))
            if rng.random() < 0.5:
                pg.el("p", rng.choice(T.INEQUALITY_LINES).lstrip("> ").capitalize(), "body")
            pg.el("p", rng.choice(T.AGENT_REPLIES), "body")
            pg.el("div", "Was this page helpful? Yes No", "boilerplate", cls="feedback")
            pg.el("p", f"Last updated on {d.strftime('%B')} {d.day}, {d.year}", "boilerplate")
            pg.el("p", "Edit this page", "boilerplate")
        elif kind == "forum":
            meta = {"subject": title}
            pg.el("div", f"Topic: {title} (Read {rng.randint(50, 4000)} times)", "boilerplate")
            users = []
            pd = d
            for k in range(rng.randint(2, 4)):
                u = rng.choice(FORUM_USERS)
                pd = later(rng, pd, 600, 86400 * 2)
                pg.raw('<div class="post">')
                pg.el("div", u, "speaker", cls="username")
                pg.el("div", rng.choice(["Newbie", "Full Member", "Hero Member", "Moderator"]), "boilerplate", cls="rank")
                pg.el("div", f"Posts: {rng.randint(1, 5000)}", "boilerplate")
                pg.el("div", f"{pd.strftime('%B')} {pd.day}, {pd.year}, {pd.strftime('%I:%M:%S %p')}", "header", cls="date")
                if users and rng.random() < 0.5:
                    qu, qt, qd = rng.choice(users)
                    pg.raw("<blockquote>")
                    pg.el("cite", f"Quote from: {qu} on {qd.strftime('%B')} {qd.day}, {qd.year}", "attribution")
                    pg.el("p", qt, "quote")
                    pg.raw("</blockquote>")
                text = src.para(rng.choice(["book", "fiction"])) if k == 0 or rng.random() < 0.5 else rng.choice(T.SHORT_REPLIES + T.MEDIUM_REPLIES)
                pg.el("p", text, "body")
                users.append((u, text, pd))
                if rng.random() < 0.3:
                    pg.raw('<div class="signature">')
                    pg.el("p", rng.choice(T.FORUM_SIGS)[0], "signature")
                    pg.raw("</div>")
                for b in ["Quote", "Reply", "Report to moderator"][: rng.randint(1, 3)]:
                    pg.el("button", b, "boilerplate")
                pg.raw("</div>")
            if rng.random() < 0.5:
                pg.el("div", f"Pages: 1 2 {rng.randint(3, 9)} Go Up", "boilerplate")
        else:
            group = {"news": "news", "blog": rng.choice(["hobby", "essay"]), "wiki": "wiki", "lit": "book"}[kind]
            n = rng.randint(2, 6)
            for k in range(n):
                if kind == "wiki" and k == 2:
                    pg.el("h2", rng.choice(["History", "Background", "Later years", "Legacy", "Description"]), "body")
                pg.el("p", src.para(group), "body")
                if kind == "news" and k == 1 and rng.random() < 0.5:
                    pg.raw('<aside class="inline-promo">')
                    pg.el("p", "Read more: " + rng.choice(T.RELATED), "boilerplate")
                    pg.raw("</aside>")
                if kind == "news" and k == 2 and rng.random() < 0.5:
                    pg.el("div", "Advertisement", "boilerplate", cls="ad-label")
                if kind == "news" and k == 0 and rng.random() < 0.3:
                    pg.el("figcaption", f"Photo: {site['name']} archive", "ambiguous")
            if kind == "blog" and rng.random() < 0.5:
                pg.el("p", rng.choice(T.FOREIGN_PHRASES + T.PROSE_WROTE), "body")
            if kind == "blog":
                pg.el("p", rng.choice(["Filed under: Gardening, Autumn", "Tags: reading, notes", "Categories: Uncategorized"]), "boilerplate")
                pg.el("div", f"{rng.randint(0, 40)} Comments", "boilerplate")
            if kind == "wiki":
                pg.el("div", "This page was last edited on " + d.strftime("%d %B %Y") + ".", "boilerplate")
                pg.el("div", "Text is available under the Creative Commons Attribution-ShareAlike License; additional terms may apply.", "boilerplate")
        pg.raw("</article>")
        # sidebar / related
        if kind not in ("junk",) and rng.random() < 0.8:
            pg.raw('<aside class="sidebar">')
            pg.el("h3", rng.choice(T.SIDEBAR_TITLES) if lang == "en" else F["nav"][1], "boilerplate")
            rel = rng.sample(T.RELATED, rng.randint(3, 5)) if lang == "en" else [src.foreign(lang).split(",")[0][:60] for _ in range(2)]
            pg.ul(rel, "boilerplate")
            if rng.random() < 0.4 and lang == "en":
                pg.el("p", "Subscribe to our newsletter", "boilerplate")
                pg.el("button", "Sign up", "boilerplate")
            pg.raw("</aside>")
        pg.raw("</main>")
        pg.raw("<footer>")
        if lang == "en":
            pg.ul(rng.sample(T.FOOTER_LINKS, rng.randint(3, 6)), "boilerplate")
            pg.el("p", f"© {d.year} {site['name']}. All rights reserved.", "boilerplate")
        else:
            pg.ul([F["privacy"], F["legal"], F["nav"][3]], "boilerplate")
            pg.el("p", f"© {d.year} {site['name']}. {F['footer']}", "boilerplate")
        pg.raw("</footer>")
        if not cookie_top:
            cookie()
        pg.raw('<script src="/static/js/app.js" defer></script>\n</body>\n</html>')
        stem = {"news": "article", "blog": "blog", "wiki": "wiki", "docs": "docs", "lit": "lit", "forum": "thread", "junk": "page"}[kind]
        doc_id = f"{stem}-{i + 1:03d}"
        keep = slot == "good"
        reason = None if keep else ("not_english" if slot == "foreign" else "junk")
        docs.append((doc_id, "\n".join(pg.parts) + "\n", pg.lines, keep, reason, lang, meta))
    return docs


# --------------------------------------------------------------------------------------------
# CHAT
# --------------------------------------------------------------------------------------------
def build_chat(src):
    rng = random.Random(SEED + 4)
    docs = []
    slots = ["support"] * 34 + ["dev"] * 18 + ["community"] * 20 + ["foreign"] * 4 + ["junk"] * 4
    rng.shuffle(slots)
    n_for = 0
    for i, slot in enumerate(slots):
        t = rand_date(rng, 2018, 2025)
        msgs = []

        def say(speaker, lines, dt_step=(5, 240)):
            nonlocal t
            t = t + dt.timedelta(seconds=rng.randint(*dt_step))
            msgs.append(({"speaker": speaker, "text": "\n".join(x for x, _ in lines), "ts": t.isoformat()}, lines))

        keep, reason, lang = True, None, "en"
        if slot == "support":
            agent = rng.choice(["Maria", "Sam (Support)", "Agent Priya", "Leo", "Support Bot"])
            cust = rng.choice(["Visitor 4821", "customer", "j.kowalski", "Guest", "tom.h"])
            if rng.random() < 0.7:
                say("system", [(rng.choice(T.CHAT_DISCLAIMERS), "disclaimer")])
            if rng.random() < 0.5:
                say("system", [(rng.choice(T.CHAT_BOILER), "boilerplate")])
            sc = rng.choice(T.SCENARIOS)
            say(cust, [(sc["open"], "body")])
            if rng.random() < 0.5:
                say(cust, [(sc["detail"], "body")], (3, 30))
            if rng.random() < 0.6:
                say("system", [(rng.choice(T.CHAT_SYSTEM[:3]).format(agent=agent), "boilerplate")])
            say(agent, [(T.CHAT_AGENT_LINES[0], "body")])
            say(agent, [(sc["ask"], "body")], (10, 60))
            say(cust, [(sc["cust"], "body")])
            if rng.random() < 0.5:
                say(agent, [(T.CHAT_AGENT_LINES[2], "body")])
            say(agent, [(sc["answer"], "body")], (30, 300))
            say(cust, [(sc["follow"], "body")])
            if rng.random() < 0.6:
                say(agent, [(rng.choice(T.CHAT_AGENT_LINES[-3:-1]), "body"), ("-- " + rng.choice(T.SUPPORT_TEAMS), "signature")])
            else:
                say(agent, [(T.CHAT_AGENT_LINES[-2], "body")])
                say(cust, [(rng.choice(["No, that's all. Thanks for the quick help.", "That's all, thanks!", "nope, thanks"]), "body")])
            if rng.random() < 0.5:
                say("system", [(rng.choice(T.CHAT_BOILER[:2] + ["Chat ended by visitor"]), "boilerplate")])
        elif slot == "dev":
            people = rng.sample(["ana", "ben.k", "chloe", "dmitri", "eve", "farid"], 3)
            start = rng.randrange(len(T.CHAT_DEV) - 6)
            for k, line in enumerate(T.CHAT_DEV[start:start + rng.randint(4, 8)]):
                sp = people[k % 3]
                lines = [(line, "body")]
                if k > 0 and rng.random() < 0.2:
                    lines = [("> " + msgs[-1][0]["text"].split("\n")[-1], "quote"), (line, "body")]
                say(sp, lines)
                if rng.random() < 0.15:
                    say(sp, L(["```"] + rng.choice(T.CODE_SNIPPETS) + ["```"], "body"))
        elif slot == "community":
            people = rng.sample(FORUM_USERS, 3)
            para = src.para(rng.choice(["book", "fiction", "essay", "hobby"]))
            say(people[0], [(rng.choice(["has anyone read this bit?", "ok this week's passage:", "from the book we picked:"]), "body")])
            for s in sentences(para)[:rng.randint(2, 4)]:
                say(people[0], [(s, "body")], (2, 20))
            for k in range(rng.randint(2, 5)):
                sp = people[1 + k % 2]
                r = rng.random()
                if r < 0.25:
                    q = sentences(para)[0]
                    say(sp, [("> " + q, "quote"), (rng.choice(T.SHORT_REPLIES), "body")])
                elif r < 0.4:
                    say(sp, [(rng.choice(T.PROSE_WROTE + T.FOREIGN_PHRASES), "body")])
                else:
                    say(sp, [(rng.choice(T.SHORT_REPLIES + T.MEDIUM_REPLIES), "body")])
        elif slot == "foreign":
            lang = ["fr", "de", "es", "it"][n_for]
            n_for += 1
            F = T.FOREIGN[lang]
            keep, reason = False, "not_english"
            say("Visitor", [(F["hello"], "body")])
            say("Agent", [(F["hello"] + "!", "body")])
            for s in sentences(src.foreign(lang))[:3]:
                say("Visitor", [(s, "body")])
            say("Agent", [(F["q"], "body")])
            say("Visitor", [(F["thanks"], "body")])
        else:
            keep, reason = False, "junk"
            j = rng.choice(T.SPAM + T.JUNK_SHORT[:4])
            lang = "en" if j in T.SPAM else "und"
            sp = rng.choice(["promo_bot", "user8812", "Guest"])
            for line in j:
                say(sp, [(line, "body")])
            if rng.random() < 0.5:
                say(sp, [(rng.choice(["hello??", "anyone?", "?"]), "body")])
        conv = {"id": f"conv-{1000 + i * 7}", "messages": [m for m, _ in msgs]}
        lines = [x for _, ls in msgs for x in ls]
        docs.append((conv, lines, keep, reason, lang, {"date": msgs[0][0]["ts"]}))
    return docs


# --------------------------------------------------------------------------------------------
# TICKETS
# --------------------------------------------------------------------------------------------
def build_tickets(src):
    rng = random.Random(SEED + 5)
    docs = []
    slots = ["good"] * 54 + ["foreign"] * 3 + ["junk"] * 3
    rng.shuffle(slots)
    n_for = 0
    for i, slot in enumerate(slots):
        tid = 48000 + i * 13
        team = rng.choice(T.SUPPORT_TEAMS)
        team_addr = "support@" + T.TEAM_DOMAINS[team]
        agent = rng.choice(T.PEOPLE)
        cust = rng.choice(T.PEOPLE + T.PEOPLE_UTF8)
        while cust == agent:
            cust = rng.choice(T.PEOPLE + T.PEOPLE_UTF8)
        d = rand_date(rng, 2019, 2025)
        sc = rng.choice(T.SCENARIOS)
        q = sc["open"].split(", ", 1)[1] if sc["open"].startswith(("Hi,", "Hello,", "Hi there,", "Good afternoon,")) else sc["open"]
        q = q[0].upper() + q[1:]
        subject = sc["subject"]
        keep, reason, lang = True, None, "en"
        agent_sig = rng.choice([
            L(["--", agent[0], team], "signature"),
            L([rng.choice(T.VALEDICTIONS), first(agent[0]), team], "signature"),
            L(["Kind regards,", f"{agent[0]} | {team}", f"Ticket #{tid}"], "signature"),
        ])
        cust_msg = join(P(rng.choice(["Hello,", "Hi,", "Hi there,", "Dear support team,"])), P(q),
                        P(sc["detail"]) if rng.random() < 0.7 else [],
                        L(sc["code"], "body") if "code" in sc and rng.random() < 0.6 else [],
                        signature(rng, cust, rng.choice(["simple", "simple", "corporate", "mobile", "none"])))
        agent_msg = join(P(f"Hi {first(cust[0])},"), P(sc["answer"]), agent_sig)
        if slot == "foreign":
            lang = ["fr", "de", "es"][n_for]
            n_for += 1
            F = T.FOREIGN[lang]
            keep, reason = False, "not_english"
            lines = join(P(F["greet"]), P(src.foreign(lang)), P(F["q"]), L([F["close"], first(cust[0])], "signature"))
            subject = {"fr": "Problème d'installation", "de": "Frage zur Installation", "es": "Problema con la instalación"}[lang]
        elif slot == "junk":
            keep, reason = False, "junk"
            sp = rng.choice(T.SPAM)
            lines = L(sp, "body")
            subject = rng.choice(["Partnership opportunity!!!", "SEO for your website", "You have won"])
        else:
            style = rng.choice(["customer_reply", "customer_reply", "agent_reply", "first", "zendesk", "outlook_chain"])
            ad = later(rng, d)
            if style == "first":
                lines = cust_msg
            elif style == "customer_reply":
                follow = join(P(sc["follow"]), signature(rng, cust, rng.choice(["simple", "mobile", "none"])))
                att = [(f"On {ad.strftime('%a, %b')} {ad.day}, {ad.year} at {ad.strftime('%I:%M %p').lstrip('0')} {team} <{team_addr}> wrote:", "attribution")]
                inner = join(agent_msg, attribution(rng, "gmail", cust, d) + quoted(cust_msg)) if rng.random() < 0.5 else agent_msg
                lines = join(follow, att + quoted(inner))
            elif style == "agent_reply":
                lines = join(agent_msg, disclaimer(rng) if rng.random() < 0.5 else [],
                             attribution(rng, "gmail", cust, d) + quoted(cust_msg))
            elif style == "zendesk":
                lines = join([("##- Please type your reply above this line -##", "boilerplate")],
                             L([f"Your request ({tid}) has been updated. To add additional comments, reply to this email."], "boilerplate"),
                             [(f"{agent[0]} ({team})", "header"), (f"{ad.strftime('%b')} {ad.day}, {ad.year}, {ad.strftime('%H:%M')} UTC", "header")],
                             relabel(agent_msg, "body"),
                             [(f"{cust[0]}", "attribution"), (f"{d.strftime('%b')} {d.day}, {d.year}, {d.strftime('%H:%M')} UTC", "attribution")],
                             relabel(cust_msg, "quote"),
                             L([f"This email is a service from {team}.", f"[{rng.randbytes(3).hex().upper()}-{rng.randbytes(3).hex().upper()}]"], "boilerplate"))
                # the agent's own signature stays a signature
                lines = [(t, "signature") if (t, "signature") in agent_sig and lab == "body" else (t, lab) for t, lab in lines]
            else:  # outlook chain: customer top-posts above agent reply
                follow = join(P(sc["follow"]), signature(rng, cust, "corporate"), disclaimer(rng))
                head = [("-----Original Message-----", "attribution"), (f"From: {team} [mailto:{team_addr}]", "quote"),
                        (f"Sent: {ad.strftime('%A, %B %d, %Y %I:%M %p')}", "quote"), (f"To: {cust[0]}", "quote"),
                        (f"Subject: RE: [Ticket #{tid}] {subject}", "quote")]
                lines = join(follow, head + [BLANK] + relabel(agent_msg, "quote"))
        body = render(lines).rstrip("\n")
        if rng.random() < 0.3:
            body = body.replace("\n", "\r\n")
        docs.append(({"id": f"T-{tid}", "subject": subject, "body": body}, lines, keep, reason, lang,
                     {"subject": subject}))
    return docs


# --------------------------------------------------------------------------------------------
# validation helpers (rendering only; not detectors)
# --------------------------------------------------------------------------------------------
BLOCK = {"p", "div", "li", "h1", "h2", "h3", "h4", "h5", "h6", "button", "time", "cite", "figcaption", "pre", "ul", "header",
         "footer", "nav", "main", "article", "aside", "blockquote", "body", "a_block"}


class TextLines(HTMLParser):
    def __init__(self):
        super().__init__()
        self.lines, self.buf, self.skip, self.inpre = [], "", 0, False

    def flush(self):
        if self.inpre:
            self.lines += [l.strip() for l in self.buf.split("\n") if l.strip()]
        else:
            s = re.sub(r"\s+", " ", self.buf).strip()
            if s:
                self.lines.append(s)
        self.buf = ""

    def handle_starttag(self, tag, attrs):
        if tag in ("script", "style", "head", "title"):
            self.skip += 1
        elif tag in BLOCK or (tag == "a" and self.buf.strip() == "" and False):
            self.flush()
            self.inpre = tag == "pre"

    def handle_endtag(self, tag):
        if tag in ("script", "style", "head", "title"):
            self.skip -= 1
        elif tag in BLOCK:
            self.flush()
            self.inpre = False

    def handle_data(self, data):
        if not self.skip:
            self.buf += data


def visible_lines(doc):
    p = TextLines()
    p.feed(doc)
    p.flush()
    return p.lines


def plain_body(msg):
    part = msg.get_body(preferencelist=("plain",))
    return part.get_content()


def nonblank(text):
    return [l.strip() for l in text.replace("\r\n", "\n").split("\n") if l.strip()]


# --------------------------------------------------------------------------------------------
# main
# --------------------------------------------------------------------------------------------
def main(check_only=False):
    src = Sources(random.Random(SEED))
    out = {}  # relative path -> bytes
    labels = []

    def lab(shape, id_, keep, reason, lang, lines, meta):
        assert (keep and reason is None) or (not keep and reason in ("not_english", "junk"))
        labels.append({"shape": shape, "id": id_, "keep": keep, "reason": reason, "language": lang,
                       "lines": label_list(lines), "meta": {k: v for k, v in meta.items() if v}})

    # mail
    mail_docs, eml_idx = build_mail(src)
    rng = random.Random(SEED + 6)
    mbox_chunks, n_eml = [], 0
    for k, (m, keep, reason, lang) in enumerate(mail_docs):
        raw = render_mail(m, rng)
        assert not re.search(r"^From ", raw, re.M), m.mid
        msg = email.message_from_bytes(raw.encode("utf-8"), policy=email.policy.default)
        meta = {"author": str(msg["from"]), "date": msg["date"].datetime.isoformat(), "subject": str(msg["subject"])}
        assert nonblank(plain_body(msg)) == [x["text"] for x in label_list(m.lines)], m.mid
        if k in eml_idx:
            n_eml += 1
            out[f"mail/eml/msg-{n_eml:03d}.eml"] = raw.encode("utf-8")
        else:
            u = m.date.astimezone(dt.timezone.utc)
            mbox_chunks.append(f"From {m.frm[1]} {u.strftime('%a %b')} {u.day:2d} {u.strftime('%H:%M:%S %Y')}\n" + raw + "\n")
        lab("mail", m.mid, keep, reason, lang, m.lines, meta)
    out["mail/archive.mbox"] = "".join(mbox_chunks).encode("utf-8")

    # forum
    fdocs = build_forum(src)
    out["forum.jsonl"] = "".join(json.dumps(p, ensure_ascii=False) + "\n" for p, *_ in fdocs).encode("utf-8")
    for p, lines, keep, reason, lang, meta in fdocs:
        lab("forum", p["id"], keep, reason, lang, lines, meta)

    # web
    for doc_id, page, lines, keep, reason, lang, meta in build_web(src):
        out[f"web/{doc_id}.html"] = page.encode("utf-8")
        assert visible_lines(page) == [x["text"] for x in label_list(lines)], doc_id
        lab("web", doc_id, keep, reason, lang, lines, meta)

    # chat
    cdocs = build_chat(src)
    out["chat.json"] = (json.dumps([c for c, *_ in cdocs], ensure_ascii=False, indent=1) + "\n").encode("utf-8")
    for c, lines, keep, reason, lang, meta in cdocs:
        lab("chat", c["id"], keep, reason, lang, lines, meta)

    # tickets
    tdocs = build_tickets(src)
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(["id", "subject", "body"])
    for t, *_ in tdocs:
        w.writerow([t["id"], t["subject"], t["body"]])
    out["tickets.csv"] = buf.getvalue().encode("utf-8")
    for t, lines, keep, reason, lang, meta in tdocs:
        lab("ticket", t["id"], keep, reason, lang, lines, meta)

    out["labels.jsonl"] = "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in labels).encode("utf-8")
    out["sources/USED.tsv"] = ("id\tsource\tlicence\n" + "".join(
        f"{k}\t{r.get('package', r.get('source'))}\t{r['licence']}\n" for k, r in sorted(src.used.items()))).encode("utf-8")
    out["STATS.json"] = (json.dumps(stats(labels), indent=1) + "\n").encode("utf-8")

    if check_only:
        validate_memory(out, labels)
        print("check ok")
        return
    # write (clear generated folders first so stale files do not linger)
    for sub in ("mail/eml", "web"):
        d = HERE / sub
        if d.exists():
            for p in d.iterdir():
                p.unlink()
    for rel, data in out.items():
        p = HERE / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(data)
    validate_disk(labels)
    write_readme_counts(stats(labels)["per_shape"])
    write_manifest()
    print(json.dumps(stats(labels)["per_shape"], indent=1))


def stats(labels):
    per = {}
    for r in labels:
        s = per.setdefault(r["shape"], {"documents": 0, "keep": 0, "drop_not_english": 0, "drop_junk": 0, "languages": {}, "lines": {}})
        s["documents"] += 1
        s["keep"] += r["keep"]
        if r["reason"]:
            s["drop_" + r["reason"]] += 1
        s["languages"][r["language"]] = s["languages"].get(r["language"], 0) + 1
        for x in r["lines"]:
            s["lines"][x["label"]] = s["lines"].get(x["label"], 0) + 1
    for s in per.values():
        s["lines"] = dict(sorted(s["lines"].items()))
        s["languages"] = dict(sorted(s["languages"].items()))
    return {"per_shape": per}


def validate_memory(out, labels):
    ids = {(r["shape"], r["id"]) for r in labels}
    assert len(ids) == len(labels), "duplicate ids"


def validate_disk(labels):
    want = {(r["shape"], r["id"]) for r in labels}
    assert len(want) == len(labels), "duplicate ids in labels"
    have = set()
    mids = []
    for msg in mailbox.mbox(str(HERE / "mail/archive.mbox"), factory=lambda f: email.message_from_binary_file(f, policy=email.policy.default)):
        mids.append(msg["message-id"].strip("<>"))
    for p in sorted((HERE / "mail/eml").glob("*.eml")):
        with open(p, "rb") as fh:
            msg = email.message_from_binary_file(fh, policy=email.policy.default)
        mids.append(msg["message-id"].strip("<>"))
    assert len(mids) == len(set(mids)), "duplicate Message-ID"
    have |= {("mail", m) for m in mids}
    have |= {("forum", json.loads(l)["id"]) for l in open(HERE / "forum.jsonl", encoding="utf-8")}
    have |= {("web", p.stem) for p in (HERE / "web").glob("*.html")}
    have |= {("chat", c["id"]) for c in json.load(open(HERE / "chat.json", encoding="utf-8"))}
    with open(HERE / "tickets.csv", encoding="utf-8", newline="") as fh:
        rows = list(csv.DictReader(fh))
    have |= {("ticket", r["id"]) for r in rows}
    assert have == want, (sorted(have - want)[:5], sorted(want - have)[:5])
    # text checks for the jsonl/json/csv shapes: labelled lines == non-blank lines of the text
    by = {(r["shape"], r["id"]): [x["text"] for x in r["lines"]] for r in labels}
    for l in open(HERE / "forum.jsonl", encoding="utf-8"):
        p = json.loads(l)
        assert nonblank(p["text"]) == by[("forum", p["id"])], p["id"]
    for c in json.load(open(HERE / "chat.json", encoding="utf-8")):
        assert [x for m in c["messages"] for x in nonblank(m["text"])] == by[("chat", c["id"])], c["id"]
    for r in rows:
        assert nonblank(r["body"]) == by[("ticket", r["id"])], r["id"]


def write_readme_counts(per):
    inputs = {"mail": f"mail/archive.mbox ({sum(1 for _ in mailbox.mbox(str(HERE / 'mail/archive.mbox')))}) + "
                      f"mail/eml/*.eml ({len(list((HERE / 'mail/eml').glob('*.eml')))})",
              "forum": "forum.jsonl", "web": "web/*.html", "chat": "chat.json", "ticket": "tickets.csv"}
    labs = ["body", "quote", "attribution", "header", "signature", "disclaimer", "boilerplate", "speaker", "ambiguous"]
    rows = ["| shape | input | documents | keep | drop: not_english | drop: junk | languages |", "|---|---|---|---|---|---|---|"]
    for k, v in per.items():
        langs = ", ".join(f"{a} {b}" for a, b in v["languages"].items())
        rows.append(f"| {k} | {inputs[k]} | {v['documents']} | {v['keep']} | {v['drop_not_english']} | {v['drop_junk']} | {langs} |")
    rows += ["", "Labelled lines per label:", "", "| shape | " + " | ".join(labs) + " | total |", "|---" * (len(labs) + 2) + "|"]
    for k, v in per.items():
        rows.append(f"| {k} | " + " | ".join(str(v["lines"].get(l, 0)) for l in labs) + f" | {sum(v['lines'].values())} |")
    tot = {"documents": sum(v["documents"] for v in per.values()), "keep": sum(v["keep"] for v in per.values())}
    rows += ["", f"Total: {tot['documents']} documents, {tot['keep']} keep, {tot['documents'] - tot['keep']} drop."]
    path = HERE / "README.md"
    text = path.read_text(encoding="utf-8")
    new = re.sub(r"(<!-- counts:start[^>]*-->\n).*?(<!-- counts:end -->)", lambda m: m.group(1) + "\n".join(rows) + "\n" + m.group(2),
                 text, flags=re.S)
    path.write_text(new, encoding="utf-8")


def write_manifest():
    lines = []
    for p in sorted(HERE.rglob("*")):
        if p.is_file() and p.name != "MANIFEST.sha256" and "__pycache__" not in p.parts:
            rel = p.relative_to(HERE).as_posix()
            lines.append(f"{hashlib.sha256(p.read_bytes()).hexdigest()}  {rel}\n")
    (HERE / "MANIFEST.sha256").write_text("".join(lines), encoding="utf-8")


if __name__ == "__main__":
    main(check_only="--check" in sys.argv)
