"""Readers for documents that are not records yet: mail (mbox, .eml), web pages (HTML, WARC) and
chat exports (JSON conversations). Each turns one input file into records, `id` and `text` plus
the metadata the format carries as fields (author, date, subject, url, title), so headers and page
furniture never reach the text. data.records.read_source dispatches here by suffix.

- Mail: the text/plain part of each message (its HTML part, extracted, when it has no plain one);
  From, Date and Subject become `author`, `date` (ISO 8601) and `subject`; the id is the
  Message-ID. An mbox is split into messages as it streams: memory holds one message.
- Web pages: the main text, extracted by trafilatura (favor_precision: on the labelled web pages of
  benchmarks/curation_set it left 5.6% of menu, banner and footer lines against resiliparse's 16%,
  losing 1% of the body lines against none; resiliparse is ~20x faster and is the other choice,
  `ingest.html_extractor`). A WARC's HTML responses are read the same way (FastWARC), the id being
  the WARC-Record-ID, `url` the target URI.
- Chat: a JSON list of conversations `{"id", "messages": [{"speaker", "text"}, ...]}` (the field
  names are settings); each conversation is one record, its turns joined one per line as
  `ingest.chat.turn_format` says, speakers renamed by `ingest.chat.speakers` (names are personal
  data: `{"Jane Doe": "Customer"}`).
"""

from __future__ import annotations

import email
import email.policy
import email.utils
import gzip
import json
from functools import cache
from typing import TYPE_CHECKING, Iterator

if TYPE_CHECKING:
    from data.config import IngestConfig
    from data.records import Source, SourceLine

MAIL_SUFFIXES = (".mbox", ".mbox.gz", ".eml")
HTML_SUFFIXES = (".html", ".htm")
WARC_SUFFIXES = (".warc", ".warc.gz")
CHAT_SUFFIXES = (".json",)
DOCUMENT_SUFFIXES = MAIL_SUFFIXES + HTML_SUFFIXES + WARC_SUFFIXES + CHAT_SUFFIXES
EXCERPT_CHARS = 500


def stem(source: Source, suffixes: tuple[str, ...]) -> str:
    name = source.name.rsplit("/", 1)[-1]
    for suffix in sorted(suffixes, key=len, reverse=True):
        if name.endswith(suffix):
            return name[: -len(suffix)]
    return name


def read_document_source(source: Source, config: IngestConfig) -> Iterator[SourceLine]:
    if source.endswith((".eml",)):
        with source.open() as handle:
            data = handle.read(config.max_record_bytes + 1)
        yield _mail_record(data, 1, stem(source, MAIL_SUFFIXES), config)
    elif source.endswith((".mbox", ".mbox.gz")):
        yield from _read_mbox(source, config)
    elif source.endswith(HTML_SUFFIXES):
        yield _html_record(source, config)
    elif source.endswith(WARC_SUFFIXES):
        yield from _read_warc(source, config)
    elif source.endswith(CHAT_SUFFIXES):
        yield from _read_chat(source, config)


# mail ----------------------------------------------------------------------------------------

def _split_mbox(handle, max_bytes: int) -> Iterator[bytes | None]:
    """The messages of an mbox stream, one at a time (None for one over `max_bytes`). A message
    starts at a "From " line at the top or after a blank line; ">From " lines are unescaped
    (mboxrd)."""
    message: list[bytes] | None = None
    size, previous_blank, too_large = 0, True, False
    for line in handle:
        if line.startswith(b"From ") and previous_blank:
            if message is not None:
                # The blank line before "From " separates messages; it is not the message's.
                yield None if too_large else b"".join(message[:-1] if message else message)
            message, size, too_large = [], 0, False
        elif message is not None:
            if line.startswith(b">") and line.lstrip(b">").startswith(b"From "):
                line = line[1:]
            size += len(line)
            if size > max_bytes:
                too_large, message = True, []
            elif not too_large:
                message.append(line)
        previous_blank = not line.strip()
    if message is not None:
        yield None if too_large else b"".join(message)


def _read_mbox(source: Source, config: IngestConfig) -> Iterator[SourceLine]:
    from data.records import SourceLine

    with source.open() as raw:
        handle = gzip.GzipFile(fileobj=raw) if source.endswith((".gz",)) else raw
        for number, data in enumerate(_split_mbox(handle, config.max_record_bytes), start=1):
            if data is None:
                yield SourceLine(number, None, f"message {number} of {source.name}", "too_large")
            else:
                yield _mail_record(data, number, f"{stem(source, MAIL_SUFFIXES)}#{number}", config)


def _decoded(part) -> str:
    try:
        return part.get_content()
    except (LookupError, UnicodeError, AssertionError):  # an unknown or lying charset
        payload = part.get_payload(decode=True) or b""
        return payload.decode("utf-8", errors="replace")


def _mail_record(data: bytes, number: int, fallback_id: str, config: IngestConfig) -> SourceLine:
    from data.records import SourceLine

    if len(data) > config.max_record_bytes:
        return SourceLine(number, None, data[:EXCERPT_CHARS].decode("utf-8", "backslashreplace"), "too_large")
    message = email.message_from_bytes(data, policy=email.policy.default)
    raw = data[:EXCERPT_CHARS].decode("utf-8", "backslashreplace")
    try:
        body = message.get_body(preferencelist=("plain", "html"))
        text = "" if body is None else _decoded(body)
        if body is not None and body.get_content_subtype() == "html":
            text = html_to_text(text, config.html_extractor)
    except Exception:  # noqa: BLE001 - a malformed MIME tree is one quarantined message, not a crash
        return SourceLine(number, None, raw, "unreadable_message")
    if not text.strip():
        return SourceLine(number, None, raw, "no_text")
    record = {config.id_field: (str(message.get("message-id") or "").strip().strip("<>") or fallback_id),
              config.text_field: text}
    for header, key in (("from", "author"), ("subject", "subject")):
        value = _header(message, header)
        if value:
            record[key] = value
    date = _header(message, "date")
    if date:
        try:
            record["date"] = email.utils.parsedate_to_datetime(date).isoformat()
        except (TypeError, ValueError):
            record["date"] = date
    return SourceLine(number, record, raw)


def _header(message, name: str) -> str:
    try:
        value = message.get(name)
    except (ValueError, IndexError):  # a header the parser cannot decode
        return ""
    return " ".join(str(value).split()) if value is not None else ""


# web pages -----------------------------------------------------------------------------------

def html_to_text(html: str, extractor: str = "trafilatura") -> str:
    """The main text of a page, without its menus, banners, sidebars and footers."""
    if extractor == "resiliparse":
        from resiliparse.extract.html2text import extract_plain_text

        return extract_plain_text(html, main_content=True, alt_texts=False, links=False, list_bullets=False)
    return (_trafilatura().extract(html, include_comments=False, include_tables=True, favor_precision=True,
                                   deduplicate=False) or "")


@cache
def _trafilatura():
    import trafilatura

    return trafilatura


def _title(html: str) -> str:
    from resiliparse.parse.html import HTMLTree

    return " ".join((HTMLTree.parse(html).title or "").split())


def _decode_html(data: bytes) -> str:
    from resiliparse.parse.encoding import bytes_to_str, detect_encoding

    return bytes_to_str(data, detect_encoding(data))


def _html_record(source: Source, config: IngestConfig) -> SourceLine:
    from data.records import SourceLine

    with source.open() as handle:
        data = handle.read(config.max_record_bytes + 1)
    raw = data[:EXCERPT_CHARS].decode("utf-8", "backslashreplace")
    if len(data) > config.max_record_bytes:
        return SourceLine(1, None, raw, "too_large")
    html = _decode_html(data)
    text = html_to_text(html, config.html_extractor)
    if not text.strip():
        return SourceLine(1, None, raw, "no_text")
    record = {config.id_field: stem(source, HTML_SUFFIXES), config.text_field: text}
    if title := _title(html):
        record["title"] = title
    return SourceLine(1, record, raw)


def _read_warc(source: Source, config: IngestConfig) -> Iterator[SourceLine]:
    from fastwarc.warc import ArchiveIterator, WarcRecordType

    from data.records import SourceLine

    with source.open() as handle:
        for number, record in enumerate(ArchiveIterator(handle, record_types=WarcRecordType.response,
                                                        parse_http=True), start=1):
            content_type = (record.http_headers.get("Content-Type", "") if record.http_headers else "").lower()
            url = record.headers.get("WARC-Target-URI", "")
            if "html" not in content_type:
                continue  # images, scripts, PDFs: not pages
            data = record.reader.read(config.max_record_bytes + 1)
            if len(data) > config.max_record_bytes:
                yield SourceLine(number, None, url, "too_large")
                continue
            html = _decode_html(data)
            text = html_to_text(html, config.html_extractor)
            if not text.strip():
                yield SourceLine(number, None, url, "no_text")
                continue
            out = {config.id_field: record.record_id.strip("<>").removeprefix("urn:uuid:"), config.text_field: text,
                   "url": url}
            if title := _title(html):
                out["title"] = title
            yield SourceLine(number, out, url)


# chat ----------------------------------------------------------------------------------------

def join_turns(messages: list, config: IngestConfig) -> str:
    """A conversation's turns, one per line (a turn of several lines keeps them), speakers renamed."""
    chat = config.chat
    turns = []
    for message in messages:
        if not isinstance(message, dict):
            continue
        text = str(message.get(chat.text_field) or "").strip()
        if not text:
            continue
        speaker = str(message.get(chat.speaker_field) or "").strip()
        if speaker in chat.skip_speakers:
            continue
        turns.append(chat.turn_format.format(speaker=chat.speakers.get(speaker, speaker), text=text))
    return "\n".join(turns)


def _read_chat(source: Source, config: IngestConfig) -> Iterator[SourceLine]:
    """A .json file: a list of conversations (or of plain records), or one object holding such a
    list under `ingest.chat.conversations_field`."""
    from data.records import SourceLine

    if source.size > config.max_record_bytes * 100:
        yield SourceLine(0, None, f"{source.name}: {source.size} bytes", "too_large")
        return
    with source.open() as handle:
        data = json.load(handle)
    if isinstance(data, dict):
        data = data.get(config.chat.conversations_field, [data])
    if not isinstance(data, list):
        yield SourceLine(0, None, f"{source.name}: not a list of conversations", "unreadable_file")
        return
    for number, item in enumerate(data, start=1):
        raw = json.dumps(item, ensure_ascii=False)[:EXCERPT_CHARS]
        if not isinstance(item, dict):
            yield SourceLine(number, None, raw)
            continue
        messages = item.get(config.chat.messages_field)
        if isinstance(messages, list):
            record = {k: v for k, v in item.items() if k != config.chat.messages_field}
            record[config.text_field] = join_turns(messages, config)
            record.setdefault(config.id_field, f"{stem(source, CHAT_SUFFIXES)}#{number}")
            yield SourceLine(number, record, raw)
        else:
            yield SourceLine(number, item, raw)
