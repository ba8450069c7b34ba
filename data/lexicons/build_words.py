"""Build `other_words.txt`: the common words of other languages that the name lists also hold, so
that in a text in that language they are read as words, not as people (only the listed names are
kept: no other word can be misread as one).

spaCy's small English model and the name lists read a German letter's "Sie" (a given name in the
lists), "Damen", "Herren" and "Frau", a Portuguese policy's "Dia" and "Escritório", a French form's
"Petit" and "Vendredi" as names. What tells such a word from a name is that names travel across
languages and words do not: "Pierre", "Michael", "Weber" are about as frequent in English text as in
French or German text, "Sie", "Herren", "vendredi" are not. So a word is listed for a language when
wordfreq (the `wordfreq` package's frequency lists, 3.1.1) puts it at Zipf frequency 3.5 or more in
that language and 2.0 or more above its English frequency; a listed given name needs more (Zipf 5
and 2.5 above English: "sie", "ja", "dia", "del" are given names in the lists, "joão", "maría"
stay names).

And `common_words.txt.gz`: each language's common words (Zipf 3.8 or more, 3 letters or more, not
English words), for a name of several capitalised words in a text in that language: "Fanta Koné",
"Awa Bagayoko" (no list holds them; no word of them is common French) are names, "Campo Grande",
"Barrierefreier Eingang", "Quarta-feira" are not.

Built once and committed (lines "language<TAB>word", languages as fastText's lid.176 names them), so
nothing is fetched or imported at run time:

    pip install wordfreq==3.1.1
    python data/lexicons/build_words.py
"""

from __future__ import annotations

import gzip
from pathlib import Path

HERE = Path(__file__).parent
# Latin-script languages the hand-written sets and users' corpora hold, as lid.176 codes them
# (wordfreq's Norwegian is "nb"; lid.176 says "no").
LANGUAGES = {"fr": "fr", "de": "de", "es": "es", "pt": "pt", "it": "it", "nl": "nl", "pl": "pl", "cs": "cs",
             "sk": "sk", "ro": "ro", "hu": "hu", "tr": "tr", "sv": "sv", "da": "da", "no": "nb", "fi": "fi",
             "id": "id", "ms": "ms", "ca": "ca", "hr": "hr", "sl": "sl", "lt": "lt", "lv": "lv", "tl": "fil",
             "vi": "vi"}
TOP = 20_000
MIN_ZIPF, MIN_ABOVE_ENGLISH = 3.5, 2.0
GIVEN_MIN_ZIPF, GIVEN_MIN_ABOVE_ENGLISH = 5.0, 2.5
COMMON_ZIPF = 3.8  # "moussa" (3.5), "traoré" (3.4), "adama" (3.3) are under it in French; "campo" (Portuguese 5.3),
# "eingang" (German 4.4), "cinzas" (Portuguese 4.0) over it


def main() -> None:
    from wordfreq import top_n_list, zipf_frequency

    def listed(name: str) -> set[str]:
        return {line for line in (HERE / name).read_text(encoding="utf-8").splitlines()
                if line and not line.startswith("#")}

    given = listed("first_names.txt")
    names = given | listed("last_names.txt") | listed("english_names.txt")  # only these can be misread
    lines = []
    for code, wordfreq_code in LANGUAGES.items():
        for word in top_n_list(wordfreq_code, TOP):
            if len(word) < 2 or not word.isalpha() or word not in names:
                continue
            zipf = zipf_frequency(word, wordfreq_code)
            above = zipf - zipf_frequency(word, "en")
            if zipf < MIN_ZIPF:
                break  # the list is in frequency order
            if word in given and (zipf < GIVEN_MIN_ZIPF or above < GIVEN_MIN_ABOVE_ENGLISH):
                continue
            if above >= MIN_ABOVE_ENGLISH:
                lines.append(f"{code}\t{word}")
    english = {line for line in (HERE / "english_words.txt").read_text(encoding="utf-8").splitlines()}
    common = []
    for code, wordfreq_code in LANGUAGES.items():
        for word in top_n_list(wordfreq_code, 60_000):
            if zipf_frequency(word, wordfreq_code) < COMMON_ZIPF:
                break
            if len(word) >= 3 and word.isalpha() and word not in english:
                common.append(f"{code}\t{word}")
    with open(HERE / "common_words.txt.gz", "wb") as raw, \
            gzip.GzipFile(fileobj=raw, mode="wb", compresslevel=9, mtime=0) as out:  # (the same bytes each build)
        out.write(("\n".join(common) + "\n").encode("utf-8"))
    print(f"{len(common)} common words")
    header = ("# Common words of other languages, as data/lexicons/build_words.py lists them from wordfreq 3.1.1\n"
              "# (CC BY-SA 4.0; see LICENSE.md): language<TAB>word\n")
    (HERE / "other_words.txt").write_text(header + "\n".join(lines) + "\n", encoding="utf-8")
    print(f"{len(lines)} words")


if __name__ == "__main__":
    main()
