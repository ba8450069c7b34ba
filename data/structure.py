"""Structure-aware cleaning for mail, news, forum, chat and support text: named steps, each
removing the lines of one kind that are not the author's own prose, with counts.

A model trained on a mail archive as it comes learns mail headers and repeats other people's
quoted words: in 200 real forum posts, 46% of the non-empty lines were headers or quoted replies.
The steps, in the order they run (`clean.structure` chooses which; data.config.STRUCTURE_STEPS):

- `headers`: an RFC 822 / news header block at the top of the text (From:, Date:, Subject:,
  Newsgroups: ...), whose author, date and subject become fields of the record; a digest's
  per-message header blocks ("Message: 3" and the headers under it); a helpdesk mail's first
  comment header (an author line over a date-and-time line).
- `quotes`: what the author quotes: `>` runs (not shell or REPL prompts, not "> 90% of ..."), the
  line that introduces them ("On ... wrote:", "jane@x (Jane) writes:"), BBCode quote blocks, and
  everything below an original-message separator ("-----Original Message-----", a quoted
  From:/Sent:/To: block, "Begin forwarded message:", a helpdesk mail's earlier comments). A scraped
  forum quote has no end marker: "bob wrote:" / "Quote from: bob" takes the paragraph under it.
- `disclaimers`: confidentiality notices and list footers (a paragraph with their wording), and
  the lines tools add: digest preambles and topic lists, helpdesk reply markers, forum buttons,
  chat widget notices.
- `signatures`: everything from a signature's start to the end: the "-- " delimiter, a line of
  underscores or dashes, or a closing ("Best regards,") with a short tail; "-- Jane" or "-E" as the
  last line; "Sent from my ..." anywhere.

Each step is a function from a list of lines to the set of line numbers it removes, so a step can
be read and tested alone; `Structure.apply` runs the chosen ones (a removed line is blanked, so
the next step still sees where a block was) and keeps per-step counts and a few examples. Written
here, not taken from a library: the maintained ones cover one shape each (email-reply-parser:
top-posted replies; talon needs an old scikit-learn and a model). benchmarks/structure_bench.py
measures the steps on the labelled set in benchmarks/curation_set.
"""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass, field


# headers -------------------------------------------------------------------------------------

HEADER_NAMES = {
    "from", "to", "cc", "bcc", "date", "subject", "sent", "reply-to", "sender", "message-id",
    "newsgroups", "organization", "organisation", "references", "in-reply-to", "path", "lines",
    "nntp-posting-host", "nntp-posting-date", "mime-version", "content-type", "content-transfer-encoding",
    "followup-to", "keywords", "summary", "xref", "distribution", "user-agent", "importance",
    "thread-topic", "thread-index", "return-path", "received", "delivered-to", "list-id", "precedence",
    "posted", "article", "expires", "approved", "priority", "mail-followup-to",
}
HEADER_LINE = re.compile(r"^([A-Za-z][A-Za-z0-9-]{0,40}):(?:\s+(.*))?$")
FIELD_OF_HEADER = {"from": "author", "date": "date", "sent": "date", "subject": "subject"}


def _header_name(line: str) -> str | None:
    match = HEADER_LINE.match(line)
    if not match:
        return None
    name = match.group(1).lower()
    return name if name in HEADER_NAMES or name.startswith("x-") else None


# A helpdesk export's comment header: the author's line, then a date and time alone on a line.
DATE_TIME_LINE = re.compile(
    r"^(?:(?:Mon|Tue|Wed|Thu|Fri|Sat|Sun)[a-z]*,? )?(?:[A-Z][a-z]{2,8}\.? \d{1,2},? \d{4}|\d{1,2} [A-Z][a-z]{2,8},? \d{4}"
    r"|\d{4}-\d{2}-\d{2})(?:,? (?:at )?\d{1,2}:\d{2}(?::\d{2})?(?: ?[AaPp]\.?[Mm]\.?)?(?: ?(?:[A-Z]{2,5}|[+-]\d{2}:?\d{2}))?)?\s*$")
DIGEST_MESSAGE = re.compile(r"^Message: \d+\s*$")


def _header_run(lines: list[str], start: int) -> int:
    """The index after the run of header lines (and their folded continuations) from `start`."""
    index = start
    while index < len(lines):
        line = lines[index]
        if _header_name(line) is None and not (index > start and line[:1] in (" ", "\t") and line.strip()):
            break
        index += 1
    return index


def comment_headers(lines: list[str]) -> list[int]:
    """Where a helpdesk comment starts: an author line (a name, perhaps with a team in brackets)
    above a date-and-time line. Each found is the author line's index."""
    found = []
    for index in range(1, len(lines)):
        if DATE_TIME_LINE.match(lines[index].strip()):
            author = lines[index - 1].strip()
            if (author and len(author.split()) <= 8 and not author.endswith((".", "!", "?", ",")) and ":" not in author
                    and not any(c.isdigit() for c in author)):
                found.append(index - 1)
    return found


def header_block(lines: list[str]) -> tuple[set[int], dict[str, str]]:
    """The header lines (line numbers) and the fields the first block names (author, date,
    subject): the block at the top (two header lines or more, or one From:/Subject:/Newsgroups:
    line), a digest's per-message blocks ("Message: 3" and the headers under it), and a helpdesk
    comment's author and date lines when the first comment starts near the top."""
    removed: set[int] = set()
    fields: dict[str, str] = {}
    start = next((i for i, line in enumerate(lines) if line.strip()), len(lines))
    end = _header_run(lines, start)
    found = [(i, _header_name(lines[i])) for i in range(start, end) if _header_name(lines[i])]
    if found and (len(found) > 1 or found[0][1] in ("from", "subject", "newsgroups")):
        for index, name in found:
            value = (HEADER_LINE.match(lines[index]).group(2) or "").strip()
            if name in FIELD_OF_HEADER and value:
                fields.setdefault(FIELD_OF_HEADER[name], value)
        removed.update(range(start, end))
    for index, line in enumerate(lines):
        if DIGEST_MESSAGE.match(line):
            removed.update(range(index, _header_run(lines, index + 1)))
    comments = comment_headers(lines)
    if comments and sum(1 for line in lines[:comments[0]] if line.strip()) <= 6:
        removed.update((comments[0], comments[0] + 1))
    return removed, fields


# quotes --------------------------------------------------------------------------------------

# '>' then a space, another '>', a letter or the line's end; not ">= 3.10" or ">1000 rows".
QUOTE_PREFIX = re.compile(r"^\s{0,3}(?:>(?=[\s>\w\"'(]|$)(?![=\d])|\|>)")
# "On Tue, Mar 3, 2020 at 10:04 AM Jane <jane@example.com> wrote:", possibly over three lines.
ON_WROTE_START = re.compile(r"^\s*(?:>\s*)?(?:On|Am|Le|El|Il)\s.{4,}", re.IGNORECASE)
WROTE_END = re.compile(r"\b(?:wrote|writes|said|schrieb|a écrit|escribió|ha scritto)\s*:\s*$", re.IGNORECASE)
# "In article <...>, jane@x (Jane) writes:", "* Jane <jane@x> [2021-12-16 18:46]:" (mutt)
MAIL_ATTRIBUTION = re.compile(
    r"^\s*(?:In (?:article|message|reply to) .{0,160}(?:wrote|writes|said)\s*:"
    r"|\S.{0,100}(?:@|<[^>]+>).{0,60}(?:wrote|writes|said)\s*:"
    r"|\* .{1,80}(?:@|<[^>]+>).{0,80}\]\s*:)\s*$", re.IGNORECASE)
# A forum's quote header: "chalkdust wrote:", "Quote from: bob on March 3, 2019", "Originally Posted
# by bob", "Quoting Jane:"; "Quote:" alone (vBulletin) comes before an "Originally Posted by".
FORUM_ATTRIBUTION = re.compile(
    r"^\s*(?:[\w.@'-]+(?: [\w.@'-]+){0,2} (?:wrote|writes|said)(?: on .{1,60})?\s*:"
    r"|Quote from: .{1,120}|Originally Posted by .{1,80}|Quoting .{1,80}:)\s*$", re.IGNORECASE)
BARE_QUOTE = re.compile(r"^\s*Quote:?\s*$", re.IGNORECASE)
# Prose that ends in "wrote:" ("As the poet wrote:", "He said:") is not a quote header.
PROSE_WORDS = {"as", "he", "she", "they", "it", "someone", "somebody", "who", "the", "a", "an", "and", "but",
               "which", "i", "we", "you", "one", "this", "that", "what", "once", "also", "then", "later"}
ORIGINAL_SEPARATOR = re.compile(
    r"^\s*(?:-{2,}\s*(?:Original Message|Forwarded message|Ursprüngliche Nachricht|Message d'origine)\s*-{2,}"
    r"|Begin forwarded message:|_{10,}|-{10,}\s*Forwarded by .*)\s*$", re.IGNORECASE)
BBCODE_QUOTE = re.compile(r"\[quote(?:=[^\]]*)?\]|\[/quote\]", re.IGNORECASE)
CODE_HINT = re.compile(r"[(){};=$|\\\[\]]|\S+/\S|\w\.\w{2,4}\b|\s-{1,2}[a-z]")
ELISIONS = {"[...]", "...", "[snip]", "<snip>", "[…]", "…"}
COMMANDS = {"dir", "type", "cd", "ls", "cat", "echo", "pip", "python", "python3", "git", "sudo", "export", "set", "import",
            "from", "print", "def", "del", "copy", "move", "mkdir", "rm", "cp", "mv", "curl", "wget", "npm", "docker",
            "make", "select", "help", "exit", "quit", "source", "conda", "ping", "ssh", "grep", "run"}


def _next_nonblank(lines: list[str], index: int) -> int | None:
    return next((j for j in range(index, len(lines)) if lines[j].strip()), None)


def _paragraph(lines: list[str], start: int) -> range:
    """The lines of the paragraph that begins at `start` (a non-blank line)."""
    end = start
    while end < len(lines) and lines[end].strip():
        end += 1
    return range(start, end)


def _outlook_header_at(lines: list[str], index: int) -> bool:
    """A quoted original's header block: From: followed within five lines by Sent:/Date: and To:
    or Subject: (Outlook and most clients quote the original this way below a reply)."""
    if _header_name(lines[index].strip()) != "from":
        return False
    names = {_header_name(line.strip()) for line in lines[index + 1:index + 6]}
    return bool(names & {"sent", "date"}) and bool(names & {"to", "subject", "cc"})


def _on_wrote_span(lines: list[str], index: int) -> int:
    if ON_WROTE_START.match(lines[index]):
        for span in (1, 2, 3):
            if index + span - 1 < len(lines) and WROTE_END.search(lines[index + span - 1]):
                return span
    return 0


def _forum_attribution(line: str) -> bool:
    if not FORUM_ATTRIBUTION.match(line):
        return False
    first = line.split()[0].lower()
    return first not in PROSE_WORDS or line.lstrip().lower().startswith(("quote from", "quoting", "originally"))


def _looks_like_code(line: str) -> bool:
    """A '>' line that is a shell or REPL prompt ("> dir C:\\Users", ">>> import sys") or a
    comparison ("> 90% of them"), not a quoted reply."""
    content = line.lstrip().lstrip(">").strip()
    words = content.split()
    if not words or content in ELISIONS:
        return False
    return words[0][0].isdigit() or (len(words) <= 8 and (words[0].lower() in COMMANDS
                                                           or bool(CODE_HINT.search(content))))


def quoted_lines(lines: list[str]) -> set[int]:
    removed: set[int] = set()
    # BBCode quote blocks, nested or not: everything from [quote] to its [/quote].
    depth = 0
    for index, line in enumerate(lines):
        opened_before = depth > 0
        for tag in BBCODE_QUOTE.findall(line):
            depth = depth + 1 if not tag.startswith("[/") else max(depth - 1, 0)
        if opened_before or depth > 0 or BBCODE_QUOTE.search(line):
            removed.add(index)
    comments = set(comment_headers(lines))
    first_content = _next_nonblank(lines, 0)
    has_blank_lines = any(not line.strip() for line in lines[first_content or 0:])
    index = 0
    while index < len(lines):
        line = lines[index]
        if index in removed or not line.strip():
            index += 1
            continue
        if ORIGINAL_SEPARATOR.match(line) or _outlook_header_at(lines, index) or (
                index in comments and index != first_content):
            # Below is the original message (or a helpdesk ticket's earlier comments), quoted whole.
            removed.update(range(index, len(lines)))
            break
        after = None
        if span := _on_wrote_span(lines, index):
            after = _next_nonblank(lines, index + span)
            if after is not None and not QUOTE_PREFIX.match(lines[after]):
                removed.update(range(index, len(lines)))  # the original, quoted without '>' marks
                break
            removed.update(range(index, index + span))
            index += span
            continue
        if MAIL_ATTRIBUTION.match(line) or _forum_attribution(line) or BARE_QUOTE.match(line):
            after = _next_nonblank(lines, index + 1)
            removed.add(index)
            if after is not None and not QUOTE_PREFIX.match(lines[after]) and not (
                    _forum_attribution(lines[after]) or MAIL_ATTRIBUTION.match(lines[after])):
                # A scraped forum quote: no '>' marks, no end marker; it is the next paragraph
                # (the next line, where every block is a line: the main text of a web page).
                quote = _paragraph(lines, after) if has_blank_lines else range(after, after + 1)
                removed.update(quote)
                index = quote.stop
            else:
                index += 1
            continue
        if QUOTE_PREFIX.match(line):
            run_end = index
            while run_end < len(lines) and (QUOTE_PREFIX.match(lines[run_end]) or not lines[run_end].strip()):
                run_end += 1
            run = [j for j in range(index, run_end) if lines[j].strip()]
            if not all(_looks_like_code(lines[j]) for j in run):  # a prompt session stays
                removed.update(run)
            index = run_end
            continue
        index += 1
    return removed


# notices (disclaimers) -----------------------------------------------------------------------

DISCLAIMER_PHRASES = re.compile(
    r"confidential|intended (?:solely )?(?:only )?for the (?:use of the )?(?:addressee|recipient|individual)"
    r"|intended recipient|received this (?:e-?mail|message|communication) in error|privileged"
    r"|unsubscribe|mailing list|listinfo|mailman|do not reply to this (?:e-?mail|message)"
    r"|this (?:e-?mail|message) (?:and any attachments? )?(?:is|was|may)|virus|disclaimer"
    r"|notify the sender|delete (?:this|the) (?:e-?mail|message)|you (?:are )?receiv(?:e|ing) this"
    r"|manage your (?:subscription|preferences)|email preferences|view (?:this|it) in your browser"
    r"|registered (?:in|office)|company (?:number|registration)|recorded for (?:quality|training)"
    r"|may be (?:monitored|recorded)|legally binding|opinions expressed",
    re.IGNORECASE)
# Whole lines that tools add around what people wrote: mailing-list digests, helpdesk mails,
# forum buttons, chat widgets.
NOTICE_LINE = re.compile(
    r"^\s*(?:send .{1,60} mailing list submissions to|to subscribe or unsubscribe.{0,80}|or, via email, send a message.{0,60}"
    r"|you can reach the person managing the list at|when replying, please edit your subject line.{0,60}"
    r"|than \"re: contents of .{1,60} digest\.\.\.\"|today's topics:|end of .{1,60} digest.{0,60}"
    r"|-{20,}|#+- ?please type your reply above this line ?-#+|your request \(\d+\) has been updated.{0,120}"
    r"|to add additional comments, reply to this email\.?|this email is a service from .{1,60}"
    r"|reply with quote|quote reply|multi-?quote(?: this message)?|report (?:this )?(?:post|abuse)|like reply"
    r"|share this post|back to top|a transcript of this chat will be sent.{0,60}|how would you rate this.{0,60}"
    r"|(?:.{1,40} )?(?:joined|left) the (?:conversation|chat)|chat ended by .{1,30}|conversation transferred to .{1,40}"
    r"|you are number \d+ in the queue\.?|our agents typically reply.{0,60})\s*$",
    re.IGNORECASE)
TOPICS_ITEM = re.compile(r"^\s*\d+\.\s+\S")


def notice_lines(lines: list[str]) -> set[int]:
    """Legal and confidentiality notices, list footers (a paragraph with two of their phrases, or
    one in the last paragraph), and the lines tools add (digest preambles and topic lists, helpdesk
    reply markers, forum buttons, chat widget notices)."""
    removed = {i for i, line in enumerate(lines) if NOTICE_LINE.match(line)}
    for index in sorted(removed):  # a notice's indented continuation ("\tlist@example.org")
        j = index + 1
        while j < len(lines) and lines[j][:1] in (" ", "\t") and lines[j].strip():
            removed.add(j)
            j += 1
    for index, line in enumerate(lines):
        if line.strip().lower() == "today's topics:":
            j = index + 1
            while j < len(lines) and (TOPICS_ITEM.match(lines[j]) or (lines[j][:1] in " \t" and lines[j].strip())
                                      or (not lines[j].strip() and j == index + 1)):
                removed.add(j)
                j += 1
    paragraphs: list[list[int]] = []
    for index, line in enumerate(lines):
        if line.strip():
            if not paragraphs or (index > 0 and not lines[index - 1].strip()):
                paragraphs.append([])
            paragraphs[-1].append(index)
    for number, paragraph in enumerate(paragraphs):
        hits = len(DISCLAIMER_PHRASES.findall(" ".join(lines[i] for i in paragraph)))
        last = number == len(paragraphs) - 1
        if hits >= 2 or (hits and last and number > 0 and number >= len(paragraphs) / 2):
            removed.update(paragraph)
    return removed


# signatures ----------------------------------------------------------------------------------

DELIMITER = re.compile(r"^--\s?$")  # RFC 3676's "-- " (often stripped to "--")
SOFT_DELIMITER = re.compile(r"^\s*(?:_{4,}|={4,}|-{4,}|\*{4,})\s*$")
ONE_LINE_SIGNATURE = re.compile(r"^\s*(?:--\s?[^\s-].{0,50}|-[A-Z][\w.]{0,15})$")  # "-- Acme Support", "-E"
SENT_FROM = re.compile(
    r"^\s*(?:Sent (?:from|via|with) (?:my |the )?\S.{0,40}|Get Outlook for \S+.*|Sent from (?:Mail|Yahoo Mail|Outlook)"
    r".{0,40}|Sent on the go.*)\s*$", re.IGNORECASE)
CLOSING = re.compile(
    r"^\s*(?:(?:best|kind|warm|warmest|many|with)?\s*(?:regards|wishes|thanks)|cheers|thanks(?: again| in advance"
    r"| a lot| so much)?|thank you(?: (?:very much|in advance|again))?|many thanks|sincerely(?: yours)?"
    r"|yours(?: truly| sincerely| faithfully)?|respectfully|best|all the best|take care|br|rgds|regards"
    r"|ta|tia|hth|hope this helps)\s*[,.!-]*\s*$",
    re.IGNORECASE)
MAX_SIGNATURE_LINES = 10
MAX_SIGNATURE_LINE_WORDS = 12


def signature_lines(lines: list[str]) -> set[int]:
    """From a signature's start to the end: the "-- " delimiter (up to ten lines follow it), a line
    of underscores or dashes, or a closing ("Best regards,") with at most six short lines under it;
    a last line "-- Name"; and "Sent from my ..." anywhere. The text's first line is never one."""
    removed = {i for i, line in enumerate(lines) if SENT_FROM.match(line)}
    content = [i for i, line in enumerate(lines) if line.strip() and i not in removed]
    if len(content) < 2:
        return removed
    for position in range(max(1, len(content) - MAX_SIGNATURE_LINES - 1), len(content)):
        index, after = content[position], content[position + 1:]
        line = lines[index]
        long_lines = sum(len(lines[j].split()) > MAX_SIGNATURE_LINE_WORDS for j in after)
        short = long_lines == 0
        blocks = sum(1 for j in after if not lines[j - 1].strip())  # paragraphs below the line
        # A signature may end in a quotation (one or two long lines), never in paragraphs of prose.
        if (((DELIMITER.match(line) or SOFT_DELIMITER.match(line)) and long_lines <= 2 and blocks <= 1
             and len(after) <= MAX_SIGNATURE_LINES)
                or (CLOSING.match(line) and short and len(after) <= 6)
                or (not after and ONE_LINE_SIGNATURE.match(line))):
            removed.update(range(index, len(lines)))
            break
    return removed


# running the steps ---------------------------------------------------------------------------

STEP_FUNCTIONS = {"quotes": quoted_lines, "disclaimers": notice_lines, "signatures": signature_lines}
SAMPLE_CHARS = 300


@dataclass
class Structure:
    """Runs the chosen steps over texts, counting per step the lines removed and the documents
    touched (`counters`: `<step>_lines`, `<step>_docs`), and keeping `samples_per_step` examples
    of what each step removed (`samples`: step -> [{"id", "removed"}])."""

    steps: tuple[str, ...]
    samples_per_step: int = 3
    counters: Counter = field(default_factory=Counter)
    samples: dict[str, list[dict]] = field(default_factory=dict)

    def apply(self, text: str, record_id: str = "") -> tuple[str, dict[str, str]]:
        """The text without what the steps removed, and the fields the header step found."""
        lines = text.split("\n")
        fields: dict[str, str] = {}
        for step in self.steps:
            if step == "headers":
                removed, fields = header_block(lines)
            else:
                removed = STEP_FUNCTIONS[step](lines)
            removed_text = [lines[i] for i in sorted(removed) if lines[i].strip()]
            if removed_text:
                self.counters[f"{step}_lines"] += len(removed_text)
                self.counters[f"{step}_docs"] += 1
                examples = self.samples.setdefault(step, [])
                if len(examples) < self.samples_per_step:
                    examples.append({"id": record_id, "removed": "\n".join(removed_text)[:SAMPLE_CHARS]})
            # Blanked, not deleted: where a header block or a quote was stays a paragraph break,
            # which the later steps read (a signature does not run on into the next message).
            lines = ["" if i in removed else line for i, line in enumerate(lines)]
        return "\n".join(lines), fields
