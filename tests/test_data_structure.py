"""Structure-aware cleaning (data.structure), the domain presets, language by paragraph, and the
report of what each rule removed."""

import json
import re

import pytest
from pydantic import ValidationError

from data.clean import Cleaner
from data.config import CleanConfig, DataConfig
from data.quality import vote_language
from data.structure import Structure, header_block, notice_lines, quoted_lines, signature_lines

BODY = ("I finally had time to read the chapter properly. The irony in the way the narrator describes "
        "the dinner party is much easier to see on a second reading.")
BODY2 = ("We discussed this at length last year and did not reach any agreement, so I would suggest that "
         "we simply vote on it at the next meeting and move on to the next book.")


def removed(step, text: str) -> list[str]:
    lines = text.split("\n")
    return [lines[i] for i in sorted(step(lines)) if lines[i].strip()]


def test_a_header_block_goes_and_its_author_date_and_subject_become_fields():
    text = ("From: Jane Doe <jane@example.com>\nDate: Tue, 3 Mar 2020 10:04:00 +0000\nSubject: Re: chapter 3\n"
            "Newsgroups: rec.arts.books\nX-Mailer: Thunderbird\n  continued header\n\n" + BODY)
    gone, fields = header_block(text.split("\n"))
    assert fields == {"author": "Jane Doe <jane@example.com>", "date": "Tue, 3 Mar 2020 10:04:00 +0000",
                      "subject": "Re: chapter 3"}
    assert sorted(gone) == list(range(6))
    # One "Date:" line at the top of prose is not a header block; a header name needs its colon.
    assert header_block(["Date: tomorrow suits me.", BODY]) == (set(), {})
    assert header_block(["Subject matter of the talk", BODY]) == (set(), {})


def test_a_digest_loses_each_messages_headers_and_a_helpdesk_mail_its_comment_header():
    digest = ("Message: 1\nDate: Sat, 11 Jul 2020 23:50:23 +0200\nFrom: Nora <nora@example.org>\n"
              "Subject: [Booktalk] Excerpt\n\n" + BODY)
    assert removed(lambda lines: header_block(lines)[0], digest) == digest.split("\n")[:4]
    helpdesk = "Ewan MacLeod (Harbor Books Customer Care)\nJul 10, 2021, 21:13 UTC\n\nHi Jane,\n\n" + BODY
    assert removed(lambda lines: header_block(lines)[0], helpdesk) == helpdesk.split("\n")[:2]


def test_quoted_replies_go_with_the_line_that_introduces_them():
    gmail = f"{BODY}\n\nOn Tue, Mar 3, 2020 at 10:04 AM Jane Doe <\njane@example.com> wrote:\n> Hi all,\n>> older\n"
    assert removed(quoted_lines, gmail) == ["On Tue, Mar 3, 2020 at 10:04 AM Jane Doe <", "jane@example.com> wrote:",
                                            "> Hi all,", ">> older"]
    inline = f"> Does anyone know a better edition?\n{BODY}\n> And the notes?\nThe Penguin one has them."
    assert removed(quoted_lines, inline) == ["> Does anyone know a better edition?", "> And the notes?"]
    outlook = f"{BODY}\n\nFrom: Support <s@example.com>\nSent: Sunday, 3 Dec 2023 20:13\nTo: Nora\nSubject: RE: x\n\nOld"
    assert removed(quoted_lines, outlook)[0].startswith("From: Support") and removed(quoted_lines, outlook)[-1] == "Old"
    assert removed(quoted_lines, f"{BODY}\n-----Original Message-----\nold text") == [
        "-----Original Message-----", "old text"]
    bbcode = f'[quote="bob, post:17"]\n[quote=alice]nested[/quote]\nbob\'s words\n[/quote]\n{BODY}'
    assert removed(quoted_lines, bbcode) == bbcode.split("\n")[:4]


def test_a_scraped_forum_quote_is_the_paragraph_under_its_header_and_prose_that_says_wrote_stays():
    post = f"chalkdust wrote:\nThe export drops every row with a comma.\nIs this known?\n\n{BODY}"
    assert removed(quoted_lines, post) == post.split("\n")[:3]
    vbulletin = f"Quote:\nOriginally Posted by nightowl\nI found this in the library copy.\n\n{BODY}"
    assert removed(quoted_lines, vbulletin) == vbulletin.split("\n")[:3]
    prose = f"As the poet once wrote:\nThe woods are lovely, dark and deep.\n\n{BODY}"
    assert removed(quoted_lines, prose) == []


def test_prompts_and_comparisons_that_start_with_a_gt_sign_are_not_quotes():
    for text in (">>> import sys\n>>> sys.version_info[:2]\n(3, 11)", "> dir C:\\Users\\Public\n> type notes.txt",
                 ">= 3.10 is required", ">1000 rows per second was the target",
                 "> 90% of the requests finished within two seconds, which is fine for us."):
        assert removed(quoted_lines, f"{BODY}\n\n{text}") == [], text
    assert removed(quoted_lines, f"{BODY}\n> [...]\n> the part I meant") == ["> [...]", "> the part I meant"]


def test_signatures_go_from_their_start_to_the_end():
    assert removed(signature_lines, f"{BODY}\n\n-- \nMarta Kowalski <marta@example.com>\n"
                                    "The words fly away, the writings remain, as the old saying goes in Latin too.") == [
        "-- ", "Marta Kowalski <marta@example.com>",
        "The words fly away, the writings remain, as the old saying goes in Latin too."]
    closing = f"{BODY}\n\nBest regards,\nSofia Rossi\nOperations Lead | Initech\nM: +1 555 0176"
    assert removed(signature_lines, closing) == closing.split("\n")[2:]
    assert removed(signature_lines, f"{BODY}\nSent from my iPhone") == ["Sent from my iPhone"]
    assert removed(signature_lines, f"{BODY}\n-E") == ["-E"]
    # A short reply is the whole text, not a signature; a closing above paragraphs of prose is not one.
    assert removed(signature_lines, "Thanks, that fixed it.") == []
    assert removed(signature_lines, f"Thanks,\n{BODY}\n\n{BODY}") == []
    # "-- " above more than one paragraph (a digest's next message) is not a signature's start.
    assert removed(signature_lines, f"{BODY}\n-- \nNora\n\n{BODY}\n\n{BODY}") == []


def test_notices_disclaimers_list_footers_and_tool_lines_go():
    disclaimer = ("CONFIDENTIALITY NOTICE: This e-mail message, including any attachments, is for the sole use "
                  "of the intended recipient(s) and may contain confidential and privileged information.")
    assert removed(notice_lines, f"{BODY}\n\n{disclaimer}") == [disclaimer]
    assert removed(notice_lines, f"{BODY}\n\nThe letter was confidential, she said.\n\n{BODY}") == []
    digest = ("Send Booktalk mailing list submissions to\n\tbooktalk@lists.example.org\n\nToday's Topics:\n\n"
              "   1. Excerpt for Thursday (Nora)\n   2. Re: Excerpt (Aisha)\n\n" + BODY)
    assert removed(notice_lines, digest) == [line for line in digest.split("\n")[:7] if line.strip()]
    for line in ("Reply With Quote", "##- Please type your reply above this line -##", "Maria joined the conversation",
                 "How would you rate this conversation? 1 2 3 4 5"):
        assert removed(notice_lines, f"{BODY}\n{line}") == [line]


def test_structure_counts_each_step_and_keeps_examples():
    structure = Structure(("headers", "quotes", "disclaimers", "signatures"), samples_per_step=1)
    for number in range(2):
        text, fields = structure.apply(f"From: a@example.com\nSubject: hi\n\n{BODY}\n> quoted\n-- \nJane", f"m{number}")
        assert BODY in text and "quoted" not in text and "Jane" not in text and fields["subject"] == "hi"
    assert structure.counters == {"headers_lines": 4, "headers_docs": 2, "quotes_lines": 2, "quotes_docs": 2,
                                  "signatures_lines": 4, "signatures_docs": 2}
    assert structure.samples["quotes"] == [{"id": "m0", "removed": "> quoted"}]


def test_the_mail_preset_keeps_a_short_reply_and_moves_headers_to_fields():
    cleaner = Cleaner(CleanConfig(preset="mail"))
    kept = cleaner.process({"id": "1", "text": "From: Jane <jane@example.com>\nSubject: Re: x\n\nWorks for me. See you "
                                               "on Thursday.\n\nOn Tue, Jane wrote:\n> shall we meet?"})
    assert kept["text"] == "Works for me. See you on Thursday." and kept["author"] == "Jane <jane@example.com>"
    # A field the record already has (the mail reader's) wins over the body's header.
    assert Cleaner(CleanConfig(preset="mail")).process(
        {"id": "2", "subject": "from the reader", "text": f"Subject: in the body\n\n{BODY}"})["subject"] == "from the reader"
    # The books preset (the default) is the stage as it was: no structure steps, 200 characters.
    assert Cleaner(CleanConfig()).process({"id": "3", "text": "Works for me. See you on Thursday."}) == "too_short"


def test_presets_fill_in_what_a_profile_does_not_say():
    mail = CleanConfig(preset="mail", gopher_quality={"min_words": 10})
    assert mail.structure == ["headers", "quotes", "disclaimers", "signatures"] and mail.language_unit == "paragraph"
    assert mail.gopher_quality.min_words == 10 and mail.gopher_quality.min_stop_words == 1
    assert CleanConfig(preset="mail", min_chars=100).min_chars == 100
    assert CleanConfig(preset="web").boilerplate.line_patterns and CleanConfig().boilerplate.line_patterns == []
    # The resolved config round-trips (DVC's params file holds it whole).
    assert CleanConfig.model_validate(mail.model_dump()) == mail
    assert DataConfig.model_validate({"clean": {"preset": "chat"}}).clean.language_unit == "line"
    with pytest.raises(ValidationError, match="unknown step"):
        CleanConfig(structure=["quote"])
    with pytest.raises(ValidationError, match="preset"):
        CleanConfig(preset="email")
    with pytest.raises(ValidationError, match="not a regular expression"):
        CleanConfig(boilerplate={"line_patterns": ["(unclosed"]})


GERMAN = ("Mit der Tastenkombination können Sie in ein tief verschachteltes Unterverzeichnis springen. Zunächst "
          "geben Sie den Befehl ein und drücken die Eingabetaste, dann werden Ihnen die Pfade angezeigt.")


def test_language_is_voted_by_paragraph_so_headers_code_and_a_quote_do_not_decide_it():
    text = f"{BODY}\n\n{BODY.upper()[:40]}\n\nx = {{'a': [1, 2, 3]}}; print(x)\n\n{BODY}\n\n{GERMAN}"
    code, share = vote_language(text, "paragraph")
    assert code == "en" and 0.5 < share < 0.9
    assert vote_language(f"{GERMAN}\n\n{GERMAN}\n\n{BODY}", "paragraph")[0] == "de"
    keep = Cleaner(CleanConfig(preset="mail", min_language_score=0.5))
    assert GERMAN in keep.process({"id": "1", "text": f"{BODY}\n\n{BODY2}\n\n{GERMAN}"})["text"]
    split = Cleaner(CleanConfig(preset="mail", mixed_languages="split"))
    assert split.process({"id": "1", "text": f"{BODY}\n\n{BODY2}\n\n{GERMAN}"})["text"] == f"{BODY}\n\n{BODY2}"
    assert split.counters["other_language_docs"] == 1 and split.samples["other_language"][0]["removed"] == GERMAN


def test_clean_writes_a_report_per_rule_with_redacted_examples(tmp_path, caplog):
    """The report and the log show examples with personal data replaced; the samples beside the
    output keep them as they were (as the output does)."""
    from data import clean
    from data.shards import samples_path, write_parts

    email, name = "marta.kowalski@example.com", "Marta Kowalski"
    records = [{"id": "keep", "text": f"{BODY}\n\nBest regards,\n{name}\n{email}"},
               {"id": "short", "text": f"Please call {name} at {email} about the book."}]
    write_parts(records, tmp_path / "in", 10)
    with caplog.at_level("INFO", logger="data.report"):
        stats = clean.run(CleanConfig(preset="mail", min_chars=80), tmp_path / "in", tmp_path / "out")
    assert stats.dropped == {"too_short": 1} and stats.extra["signatures_lines"] == 3
    report = (tmp_path / "out.report.html").read_text()
    assert re.search(r"<code>too_short</code>.*1 documents.*50\.0%", report)
    assert re.search(r"<code>signatures</code>.*3 lines from 1 documents", report)
    assert "&lt;EMAIL&gt;" in report and "&lt;PERSON&gt;" in report
    assert email not in report and "Kowalski" not in report and "Kowalski" not in caplog.text
    assert "too_short 1 documents (50.0% of 2 read), e.g. 'Please call <PERSON> at <EMAIL> about" in caplog.text
    assert email in samples_path(tmp_path / "out", "dropped").read_text()
    removed_lines = [json.loads(line) for line in samples_path(tmp_path / "out", "removed").read_text().splitlines()]
    assert removed_lines == [{"reason": "signatures", "record": {"id": "keep", "removed": f"Best regards,\n{name}\n{email}"}}]
