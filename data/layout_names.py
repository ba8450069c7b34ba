"""Names that a text's layout and grammar mark, whoever they are.

No word list holds "Ahanu Cardinal" or "Litia Naivalu", and the small spaCy model misses most such
names, but the text around them says what they are: a form writes one after "Instructor:", a
rota lists them under "Volunteer", a chat says "Vishnu and I", a note "my neighbour Bhavesh".
These finders read that structure (data.pii runs them; each yields PERSON spans as (start, end)):

- labelled_names: after a label for a person ("Instructor:", "Attn:", "Received by (staff):",
  "Letting agent –", "Name on card:") at a line's start, after a column gap or after a sentence,
  the name-shaped items of its value.
- column_names: in a table (cells split by "|", tabs, two or more spaces or CSV commas), a column
  headed for people ("Name", "Volunteer") or holding two names found already: its other
  name-shaped cells ("kalani" in a crew rota, "Sanduni Wickramasinghe" in a swim register).
- role_names: a role or a kinship word before a name ("my neighbour Bhavesh", "nurse Losana",
  "sr. Euclides", "her cousin tanisha", "their daughter (Saskia") or after it ("Ifeoma, our
  community host", "Jade (Year 4 rep)").
- coordinated_names: "Vishnu and I"; a word joined by "and" or "&" to a name found ("Phan and
  Isabel").
- aliases: "(née Taufa)", "(known as Tee)" right after a name found.
- keyed_names: `member="Tsjalling de Vries"`, `guest="salawat"` in logs and records;
  quoted_user_names: "Created user 'Ji-woo Park'" in an audit log.
- payee_names: "Bank transfer to W Okafor-Grant, IBAN ...".
- signed_off_names: the name under "Kind regards," or a signature's "--".

A value is name-shaped (`name_prefix`) when its words are capitalised (or particles, initials),
carry no digits or possessives ("Halley's Comet"), are not all ordinary English words unless a
name list knows one ("Driver Support" is none; "Summer" may be), and are not "TBC", "anonymous",
"N/A", an acronym before a word ("IPS Black"), a word in camel case ("JsonFmt") or a noun's
ending ("Audiology"). A lower-case word counts only where the layout says a name stands (a table cell, a log
value, after "my cousin") and no English word list holds it ("kalani", not "rose").
"""

from __future__ import annotations

import re
from typing import Iterator, Sequence

from data.lexicons import NAME_PARTICLES, NAMED_AFTER_WORDS, NOT_GIVEN_NAMES, NOT_NAMES, lexicon

# Words that stand where a name would and name no one.
NO_ONE = NOT_NAMES | NOT_GIVEN_NAMES | frozenset({
    "anonymous", "anon", "unknown", "tbc", "tba", "tbd", "n/a", "na", "none", "nobody", "vacant", "self", "same",
    "yes", "no", "ok", "staff", "guest", "guests", "others", "other", "various", "see", "below", "above",
    "pending", "open", "closed", "cancelled", "canceled", "absent", "present", "available", "unassigned",
    "nil", "null", "volunteer", "volunteers", "name", "names", "signature", "date", "total", "notes",
    "note", "everybody", "me", "you", "him", "her", "them", "us", "mum", "dad", "mom", "family"})
# Last words of a company's or a team's name.
ORG_WORDS = frozenset({"ltd", "limited", "inc", "llc", "llp", "plc", "gmbh", "ag", "sa", "sas", "bv", "nv", "oy", "ab",
                       "as", "srl", "spa", "pty", "co", "corp", "corporation", "company", "group", "holdings",
                       "traders", "trading", "services", "solutions", "systems", "foods", "partners", "associates",
                       "team", "department", "dept", "office", "desk", "club", "society", "council", "trust"})
# Last words of a building's, a place's or an engine's name, and surnames too ("Ana Hall").
THING_WORDS = frozenset({"castle", "manor", "hall", "house", "lodge", "abbey", "priory", "tower", "court", "park",
                         "bridge", "station", "express", "street", "road", "lane", "avenue", "square", "church",
                         "chapel", "school", "college", "university", "hospital", "hotel", "inn", "arms", "farm",
                         "mill", "estate", "gardens", "garden", "centre", "center", "museum", "gallery", "theatre",
                         "cinema", "market", "wharf", "quay", "dock", "port", "airport", "class", "fusilier",
                         "line", "helpline", "hotline"})  # "Nurse Advice Line" (not "Ana Line")
TITLE_WORDS = frozenset({"mr", "mrs", "ms", "mx", "miss", "dr", "prof", "sir", "madam", "sgt", "pc", "rev", "fr",
                         "capt", "cllr", "det", "insp", "supt", "nurse", "sister", "brother", "mme", "mlle", "herr",
                         "frau", "sr", "sra", "srta"})
PARTICLES = NAME_PARTICLES | {"ó", "ní", "mac", "nic", "do", "e", "y", "bt", "bte"}
TOKEN = re.compile(r"[^\s,;|·•()\[\]{}<>\"?!]+")
INITIAL = re.compile(r"[^\W\d_a-z]\.?")
# Who a form, a log or a register names: people's roles, ties and the verbs of receipt and sign-off.
PERSON_LABELS = (
    r"(?:full |first |given |last |family |maiden |preferred )?name|surnames?|(?:first |given |fore)names|forename|"
    r"(?:child|pupil|student|patient|member|guest|visitor|donor|tenant|applicant|client|customer|caller|passenger|"
    r"rider|owner|holder|parent|driver|player|runner|swimmer|athlete)(?:'s|’s)? (?:full )?name|"
    r"present|attendees?|attending|in attendance|apologies|absent|regrets|participants?|members?|guests?|visitors?|"
    r"speakers?|panel(?:ists?)?|authors?|reviewers?|editors?|cc|chair(?:ed by)?|minutes(?: taken)? by|"
    r"signed(?: by)?|witness(?:es|ed by)?|contacts?|emergency contact|next of kin|owners?|tenants?|applicants?|"
    r"patients?|clients?|customers?|callers?|assigned to|assignees?|reported by|reporter|requested by|requester|"
    r"submitted by|prepared by|approved by|checked(?: by)?|received by|collected by|issued by|verified by|"
    r"handled by|taken by|booked by|logged by|delivered by|inspected by|authori[sz]ed by|recorded by|"
    r"completed by|entered by|served by|seen by|referred by|referrer|passengers?|travell?ers?|employees?|"
    r"students?|pupils?|trainees?|child(?:ren)?|parents?|mother|father|guardians?|parent/guardian|spouse|"
    r"husband|wife|son|daughter|beneficiar(?:y|ies)|account holder|cardholder|policyholder|attn|"
    r"attention|volunteers?|players?|crew|instructors?|tutors?|teachers?|coach(?:es)?|trainers?|nurses?|"
    r"doctors?|gp|consultant|physio(?:therapist)?|therapist|counsell?or|case ?worker|social worker|midwife|"
    r"carers?|caregivers?|(?:letting |estate |booking |support |gate |duty )?agent|engineer|technician|fitter|"
    r"installer|plumber|electrician|inspector|officer|supervisor|(?:line |duty |shift |site |project )?manager|"
    r"team lead|(?:shift |volunteer )?lead|landlord|landlady|caretaker|receptionist|interpreter|"
    r"translator|courier|pilot|skipper|cox|recipient|addressee|runners?|swimmers?|donors?|"
    r"invigilator|examiner|marker|assessor|mentor|mentee|sponsor|referee|nominee|nominated by|"
    r"organi[sz]er|coordinator|contact person|point of contact|poc|on call|on-call|named driver|"
    r"(?:mobile|phone|tel|email|e-mail)? ?(?:owner|holder)|deceased|bride|groom|godparents?|"
    r"collecting adult|authorised adult|authorized adult|helpers?|buddy|escort|chaperone|"
    r"stage manager|instructor|leader|treasurer|secretary|chair(?:person|man|woman)|(?:vice[- ])?president|"
    r"trustees?|captain|assistants?|name on (?:the )?card|name on (?:the )?account|account name|payee")
# The label at a line's start (after a bullet, a number or a chat timestamp), after a column gap
# or a sentence ("... is correct. Signed: G M Pryce-Jenkins"), an optional "(staff)", then ":",
# "=" or a dash between spaces.
LABEL = re.compile(
    r"(?:^[ \t]*(?:[-*•>][ \t]*|\d{1,3}[.)][ \t]*)?(?:\[[^\]\n]{4,32}\][ \t]*)?|[ \t]{2,}|\t|[|·•][ \t]*|(?<=[.!?])[ \t]+|"
    r"(?<=\()[ \t]*)"  # (or inside a bracket: "Lunch (guests: Ana Reis, Tom Price)")
    rf"(?i:(?:[a-z]+[ \t](?!names?\b))?(?:{PERSON_LABELS}))(?:[ \t]*\([^()\n]{{1,30}}\))?[ \t]*(?::|=|[ \t][-–—](?=[ \t]))[ \t]*", re.MULTILINE)
# Where a labelled value ends: a column gap, a bar, a dot, a dash between spaces, the line's end.
VALUE_END = re.compile(r"[ \t]{2,}|\t|[ \t]+[|·•][ \t]*|[ \t]+[-–—][ \t]+|$", re.MULTILINE)
# Where one name of several ends ("Ana Reis, Tom Price and Meera Shah", "Rahim & Roya").
ITEM_SEPARATOR = re.compile(r"[ \t]*(?:[,;/+&]|\band\b)[ \t]*")
PARENTHESIS = re.compile(r"[ \t]*\([^()\n]*\)")


# A capital inside a word, after a lower-case letter ("JsonFmt"), and what may come before one in a
# name ("McKenzie", "MacLeod", "DeShawn", "NicLeòid", "LaToya", "FitzGerald", "VanDyke").
INNER_CAPITAL = re.compile(r"(?<=[a-zß-ÿ])[A-ZÀ-Þ]")
NAME_PREFIXES = frozenset({"mc", "mac", "de", "di", "da", "du", "la", "le", "nic", "fitz", "van", "von", "del",
                           "della", "st", "ben", "al", "el"})


# Endings of nouns no name has: a department's "Audiology", "Reprographics", "Procurement".
NOUN_SUFFIXES = ("ology", "ography", "graphics", "ics", "ation", "ment", "ness", "ship")


def in_camel_case(word: str) -> bool:
    """Whether a word has a capital inside it that no name has there: an identifier or a brand
    ("JsonFmt", "PayPal", "GitHub"), not "McKenzie" or "DeShawn"."""
    inner = INNER_CAPITAL.search(word)
    return inner is not None and word[:inner.start()].casefold() not in NAME_PREFIXES


# A given name of two syllables joined by a hyphen, as Korean and Chinese names are romanized: "Ji-woo".
GIVEN_SYLLABLES = re.compile(r"[A-Z][a-z]{1,4}-[a-z]{1,4}")


def name_prefix(value: str, lower_ok: bool = False) -> int:
    """How many characters at the start of `value` are a name, 0 if none (see the module's
    docstring). `lower_ok`: one lower-case word no English list holds may be one ("kalani")."""
    english, names = lexicon("english"), lexicon("names")
    tokens = list(TOKEN.finditer(value))
    if not tokens:
        return 0
    taken = []
    for token in tokens[:6]:
        word = token.group(0)
        if taken and value[taken[-1].end():token.start()] not in (" ", "\t"):
            break
        folded = word.casefold()
        if folded in PARTICLES and taken:
            taken.append(token)
            continue
        if (any(char.isdigit() for char in word) or word.endswith(("'s", "’s", ":")) or not word[0].isalpha()
                or word.casefold() in ("st", "st.", "saint")):  # "Date/time:", "St John unit 4"
            return 0 if not taken else _checked(value, taken)
        if not (word[0].isupper() or INITIAL.fullmatch(word)):
            if not taken and lower_ok and len(word) > 2 and folded not in english:
                taken.append(token)  # a lower-case name is one word: "kalani", "tanisha"
            break
        taken.append(token)
        if word.endswith(".") and len(word) > 2 and folded.rstrip(".") not in TITLE_WORDS:
            break  # a sentence ends: "Czech Republic. The"
    while taken and taken[-1].group(0).casefold() in PARTICLES:
        taken.pop()
    if not taken:
        return 0
    words = [t.group(0).rstrip(".").casefold() for t in taken if t.group(0).casefold() not in PARTICLES]
    first = taken[0].group(0)
    # (a month before a surname is a given name: "June Okafor-Reid", not "June Meeting")
    month_name = len(words) > 1 and words[0] in NOT_GIVEN_NAMES and words[-1] not in english
    if not words or any(w in NO_ONE for w in words[1 if month_name else 0:]) or all(w in TITLE_WORDS for w in words):
        return 0  # "TBC", "Sgt" alone
    # "Driver Support", "Goods In", "Cardinal": only English words, none a name
    if all(w in english and w not in names and w not in lexicon("english_names") for w in words):
        return 0
    if words[-1] in ORG_WORDS or words[-1] in NAMED_AFTER_WORDS or words[0] == "the" or (
            words[-1] in THING_WORDS and words[0] not in lexicon("first") and words[0] not in lexicon("english_names")
            and not GIVEN_SYLLABLES.fullmatch(first)):
        return 0  # "Northwind Traders Ltd", "The Lancashire Fusilier", "Nunney Castle" (not "Ana Hall", "Ji-woo Park")
    if len(words) == 1 and words[0] not in names and (first.isupper() or words[0] in lexicon("places")
                                                      or in_camel_case(first) or words[0].endswith(NOUN_SUFFIXES)):
        return 0  # "QA", "SRE", "Reading", "JsonFmt", "Audiology"
    # (not an initial: "N ADEYEMI-CLARKE", "S. Nakashima-Frost")
    if len(words) > 1 and first.isupper() and 3 <= len(first) <= 4 and words[0] not in names:
        return 0  # an acronym no list has before a word: "IPS Black" (a panel), "USB Hub"
    last = taken[-1].group(0)
    # "Ana Reis." ends a sentence; "Ekambi J." and "Dr." keep their full stop
    trailing = last.endswith(".") and len(last.rstrip(".")) > 1 and last.casefold().rstrip(".") not in TITLE_WORDS
    return taken[-1].end() - trailing


def rest_of_line(text: str, start: int) -> str:
    end = text.find("\n", start)
    return text[start:len(text) if end == -1 else end]


def _checked(value: str, taken: list) -> int:
    """A name cut short by a digit or a possessive ("Ana Reis 3B"): the words before it, checked."""
    return name_prefix(value[:taken[-1].end()])


# A configuration's nested "name:" key, in lower case ("  - name: Prometheus-EU" in YAML): a
# resource's name. A form's is capitalised or starts its line ("Name:", "name: yui tanaka").
CONFIG_NAME_KEY = re.compile(r"(?:[ \t]+(?:-[ \t]+)?|-[ \t]+)name:"
                             # or in a flow mapping, first or after other keys: "params: [{ name: GOFLAGS, value: ...}]",
                             # "- { name: IMAGE", "apiKey: { type: apiKey, in: header, name: X-Api-Key }"
                             r"|[ \t]*(?:-[ \t]+)?(?:[\w.-]+:[ \t]*)?\[?[ \t]*\{(?:[^{}\n]*,)?[ \t]*name:")


def config_name_key(text: str, start: int) -> bool:
    """Whether the "name:" at `start` is a configuration's nested key (see CONFIG_NAME_KEY)."""
    line_start = text.rfind("\n", 0, start) + 1
    return CONFIG_NAME_KEY.fullmatch(text, line_start, start + 5) is not None


def labelled_names(text: str) -> Iterator[tuple[int, int]]:
    for label in LABEL.finditer(text):
        if config_name_key(text, label.end() - len(label.group(0).lstrip(" \t-"))):
            continue
        value_end = VALUE_END.search(text, label.end()).start()
        first_item = re.split(r"[,;(]", text[label.end():value_end], maxsplit=1)[0]
        if any(word.casefold().rstrip(".") in ORG_WORDS for word in first_item.split()):
            continue  # "Client: Lindqvist & Aro Legal Oy"
        yield from names_in_value(text, label.end(), value_end)


def names_in_value(text: str, start: int, end: int, lower_ok: bool = False) -> Iterator[tuple[int, int]]:
    """The names among a value's items: "Ixchel, Balam Chi + 1 guest", "Wanbli Two Bulls, (605)..."."""
    position = start
    while position < end:
        separator = ITEM_SEPARATOR.search(text, position, end)
        item_end = separator.start() if separator else end
        length = name_prefix(text[position:item_end], lower_ok)
        if not length:
            break  # the list of names ends: "Lauren Andrews, account CH55..., Dalton, France"
        yield position, position + length
        if separator is None or separator.end() == position:
            break
        position = separator.end()


# Tables ----------------------------------------------------------------------------------------

CELL_SPLITTERS = (("|", re.compile(r"[ \t]*\|[ \t]*")), ("\t", re.compile(r"[ \t]*\t[ \t]*")),
                  ("  ", re.compile(r"[ \t]{2,}")))
RULE_LINE = re.compile(r"[ \t|:+=_─━═-]*")
# A column headed for people; "Name" alone is not one (engines, ships and plants have names).
HEADER = re.compile(rf"(?!(?i:names?\b))(?i:{PERSON_LABELS})(?:[ \t]*\([^()]*\))?")  # "Owner:" labels a form line
CSV_FIELD = re.compile(r'[ \t]*(?:"(?:[^"]|"")*"|[^,]*)')


def cells(line: str, offset: int) -> tuple[str, list[tuple[int, int]]] | None:
    """A line's kind of table row and its cells as (start, end) in the text, or None."""
    for kind, splitter in CELL_SPLITTERS:
        if kind == "  " and not line.strip():
            return None
        if kind in line or (kind == "  " and splitter.search(line.strip())):
            found, position = [], 0
            for gap in splitter.finditer(line):
                found.append((position, gap.start()))
                position = gap.end()
            found.append((position, len(line)))
            found = [(s + len(line[s:e]) - len(line[s:e].lstrip()), e) for s, e in found]
            found = [(s, s + len(line[s:e].rstrip())) for s, e in found]
            if kind == "|":  # "| a | b |": the empty ends are the bars'
                found = found[1:] if found and found[0][0] == found[0][1] else found
                found = found[:-1] if found and found[-1][0] == found[-1][1] else found
            if kind == "  ":  # the leading indent is no cell
                found = [cell for cell in found if cell[1] > cell[0]] if found and found[0][1] == found[0][0] else found
            return kind, [(offset + s, offset + e) for s, e in found]
    if line.count(",") >= 3:
        found, position = [], 0
        while position <= len(line):
            field = CSV_FIELD.match(line, position)
            s, e = field.span()
            text_s = s + len(line[s:e]) - len(line[s:e].lstrip())
            if line[text_s:e].startswith('"'):
                text_s, e = text_s + 1, max(text_s + 1, e - 1)
            found.append((offset + text_s, offset + e))
            position = field.end() + 1
        return ",", found
    return None


def tables(text: str) -> Iterator[list[list[tuple[int, int]]]]:
    """Runs of three or more lines split the same way into the same number of cells (rule lines
    like "---|---" skipped), as rows of cells."""
    rows: list[list[tuple[int, int]]] = []
    kind = None
    offset = 0
    for line in text.split("\n") + [""]:
        row = cells(line, offset) if not RULE_LINE.fullmatch(line) or not line.strip() else "rule"
        offset += len(line) + 1
        if row == "rule":
            continue
        if row is not None and rows and row[0] == kind and len(row[1]) == len(rows[0]) and len(row[1]) >= 2:
            rows.append(row[1])
            continue
        if len(rows) >= 3:
            yield rows
        kind, rows = (row[0], [row[1]]) if row is not None else (None, [])


# A column header for things, not people: "Make / model", "Product", "Wine", "Building", "Company".
THING_HEADER = re.compile(
    r"(?i:[ \t]*(?:[\w ]+[ \t]*/[ \t]*)?(?:make|model|product|products|item|items|description|title|brand|vehicle|"
    r"car|dish|wine|beer|book|album|track|film|cocktail|drink|fragrance|perfume|scent|ingredient|part|component|"
    r"sku|plant|variety|cultivar|exhibit|artwork|lot|building|room|venue|location|station|stop|route|course|"
    r"module|destination|airport|city|town|team|club|fixture|match|event|company|business|shop|store|"
    r"restaurant|supplier|manufacturer|service|airline|hotel|ward|department|dept|unit|vessel|ship|boat|yacht|"
    r"aircraft|locomotive|printer|device|host)s?(?:[ \t]+(?:name|title))?"
    r"[ \t]*(?:\([^()]*\))?[ \t]*)")


def thing_cells(text: str) -> list[tuple[int, int]]:
    """The cells of table columns headed for things (THING_HEADER): a stock list's "Ford Mustang
    Mach-E", a desk directory's "Hertz", a campus list's "Alan Turing Building"."""
    found = []
    for rows in tables(text):
        for column in range(len(rows[0])):
            start, end = rows[0][column]
            if THING_HEADER.fullmatch(text, start, end):
                found.extend(row[column] for row in rows[1:])
    return found


def column_names(text: str, found: Sequence[tuple[int, int]]) -> Iterator[tuple[int, int]]:
    for rows in tables(text):
        for column in range(len(rows[0])):
            start, end = rows[0][column]
            if THING_HEADER.fullmatch(text, start, end):
                continue
            column_cells = [row[column] for row in rows[1:]]
            named = sum(any(2 * (min(e, ce) - max(s, cs)) >= ce - cs for s, e in found) for cs, ce in column_cells
                        if ce > cs)
            if not (HEADER.fullmatch(text, start, end) or named >= 2):
                continue
            for cell_start, cell_end in column_cells:
                value_end = PARENTHESIS.search(text, cell_start, cell_end)
                yield from names_in_value(text, cell_start, value_end.start() if value_end else cell_end,
                                          lower_ok=True)


# Words around a name -----------------------------------------------------------------------------

_OWNER = r"\b(?:[Mm]y|[Oo]ur|[Yy]our|[Hh]is|[Hh]er|[Tt]heir)[ \t]+"  # "my", "her"... before a tie
ROLE_BEFORE = re.compile(
    rf"(?:{_OWNER}(?P<tie>neighbou?r|flatmate|roommate|housemate|"
    r"cousin|colleague|co-?worker|classmate|teammate|landlord|landlady|tutor|coach|carer|caregiver|nanny|"
    r"babysitter|brother|sister|bro|sis|son|daughter|wife|husband|partner|boyfriend|girlfriend|fianc[ée]e?|"
    r"mum|mom|mother|dad|father|auntie|aunty|aunt|uncle|nan|nana|gran|granny|grandma|grandpa|grandson|"
    r"granddaughter|nephew|niece|friend|mate|bestie|boss|manager|stepson|stepdaughter|kid|child|baby|"
    r"godson|goddaughter|godmother|godfather|in-law)"
    r"|\b(?P<role>nurse|midwife|dr|sr|sra|srta|señor|señora|doña|dona|mme|mlle|herr|frau|signora|signor|"
    r"ustaz|ustazah|pak|bu|ibu|bapak|mama|papa|tita|tito|lola|lolo|ate|kuya|bibi|babu|nana|nani|dada|dadi|"
    r"auntie|aunty|uncle|coach|driver|officer|constable|pc|sgt|sergeant|pastor|rev|reverend|imam|rabbi|"
    r"father|fr|sister|brother|elder|chief|teacher|tutor)\.?)(?:[ \t]*\((?=[^\W\d_a-z])|[ \t]+)"  # "daughter (Saskia, ..."
    rf"|{_OWNER}(?P<tie_comma>partner|husband|wife|son|daughter|"
    r"brother|sister|mother|father|mum|mom|dad|friend|neighbou?r|colleague|co-?worker|flatmate|roommate),[ \t]*"
    r"(?=[^\W\d_a-z][\w'’-]*,)")  # "her partner, Anatoly, on +33 ...": the name set off by commas
TIE_WORD = re.compile(r"[^\W\d_][\w'’-]*")


TITLE_ROLES = frozenset({"dr", "sr", "sra", "srta", "señor", "señora", "doña", "dona", "mme", "mlle", "herr", "frau",
                         "signora", "signor", "ustaz", "ustazah", "pak", "bu", "ibu", "bapak", "mama", "papa", "tita",
                         "tito", "lola", "lolo", "ate", "kuya", "bibi", "babu", "nana", "nani", "dada", "dadi",
                         "auntie", "aunty", "uncle", "pastor", "rev", "reverend", "imam", "rabbi", "fr", "sgt",
                         "pc"})


# "Ifeoma, our community host,", "Kwame, my line manager", "Jade (Year 4 rep)": a name and then its role.
ROLE_AFTER = re.compile(
    r"(?<![\w'’-])([^\W\d_a-z][\w'’-]+)(?:,[ \t]+(?:our|my|your|his|her|their)[ \t]+(?:[a-z-]+[ \t]+){0,2}"
    r"|[ \t]+\((?:our|my|the|[\w-]+[ \t]+\d+)?[ \t]*(?:[a-z-]+[ \t]+)?(?=[a-z]+\)))"  # "Jade (Year 4 rep)"
    r"(?:host|manager|coordinator|co-ordinator|lead|director|officer|assistant|contact|rep|representative|agent|"
    r"advis[eo]r|engineer|nurse|doctor|gp|teacher|tutor|coach|volunteer|secretary|treasurer|chair|chairperson|"
    r"receptionist|administrator|admin|owner|landlord|landlady|neighbou?r|colleague|friend|cousin|partner|"
    r"husband|wife|son|daughter|brother|sister|mum|mom|dad|caretaker|driver|instructor|trainer|therapist|"
    r"midwife|dentist|solicitor|lawyer|accountant|supervisor|mentor|boss|steward|warden|concierge)\b")
def _without_possessive(word: str) -> str:
    return word.removesuffix("'s").removesuffix("’s")


def role_names(text: str) -> Iterator[tuple[int, int]]:
    """"my neighbour Bhavesh", "her cousin tanisha", "nurse Losana", "sr. Euclides", "Mama Titi",
    "Ifeoma, our community host".
    A role word without "my", "her"... must be lower case or a title ("sr.", "Mme"), and the name
    after it no English word nor a place ("the nurse Station", "driver Reading" are none)."""
    english, places, names = lexicon("english"), lexicon("places"), lexicon("names")
    for match in ROLE_AFTER.finditer(text):
        name = match.group(1)
        folded = name.casefold()
        if folded not in NO_ONE and folded not in places and (folded in names or folded not in english
                                                               or folded in lexicon("english_names")):  # "Jade"
            yield match.span(1)
    for match in ROLE_BEFORE.finditer(text):
        word = TIE_WORD.match(text, match.end())
        if word is None:
            continue
        name = word.group(0)
        folded = _without_possessive(name.casefold())
        if folded in NO_ONE or folded in PARTICLES:
            continue
        if match.group("tie") or match.group("tie_comma"):  # "my neighbour Bhavesh", "her cousin tanisha"
            if name[0].isupper() or (folded not in english and len(folded) > 2):
                length = name_prefix(rest_of_line(text, word.start()), lower_ok=not name[0].isupper())
                last = text[word.start():word.start() + length].split()[-1].casefold() if length else ""
                # (a given name that is an English word, with a surname that is none: "my partner
                # Summer Dalgleish")
                if length and (name[0].islower() or folded in names or folded not in english
                               or (last != folded and _without_possessive(last) not in english)):
                    yield word.start(), word.start() + length
            continue
        role = match.group("role")
        if role[0].isupper() and role.casefold() not in TITLE_ROLES and len(role) > 2:
            continue  # "Coach Station", "Driver Support": a capitalised role word begins a thing's name
        if name[0].isupper() and folded not in english and folded not in places or folded in names:
            length = name_prefix(rest_of_line(text, word.start()))
            if length:
                yield word.start(), word.start() + length


# "Vishnu and I", "me and Kofi"
WITH_I = re.compile(r"(?<![\w'’-])([^\W\d_][\w'’-]+)[ \t]+(?:and|&)[ \t]+I\b(?![’']?[.\-:/\d])"
                    r"|\b[Mm]e[ \t]+and[ \t]+([^\W\d_][\w'’-]+)")
JOINED_BEFORE = re.compile(r"(?<![\w'’-])([^\W\d_a-z][\w'’-]+)[ \t]+(?:and|&)[ \t]+$")
JOINED_AFTER = re.compile(r"[ \t]+(?:and|&)[ \t]+([^\W\d_a-z][\w'’-]+)(?![\w'’-])")
# ... or a full name joined to a full name found: "Mark Stone & Faith Adjei"
JOINED_FULL_NAME_AFTER = re.compile(r"[ \t]+(?:and|&)[ \t]+([^\W\d_a-z][\w'’-]+[ \t]+([^\W\d_a-z][\w'’-]+))(?![\w'’-])")


def coordinated_names(text: str, found: Sequence[tuple[int, int]] = ()) -> Iterator[tuple[int, int]]:
    """A capitalised word, no English word nor a place, next to "and I" ("Vishnu and I fly"), or
    joined by "and"/"&" to a name found ("Phan and Isabel", "Rahim & Roya"); a full name whose
    surname is no English word joined to a full name found ("Mark Stone & Faith Adjei")."""
    english, places = lexicon("english"), lexicon("places")

    def unknown(word: str) -> bool:
        folded = word.casefold()
        return not any(folded in words for words in (english, places, NO_ONE, PARTICLES, TITLE_WORDS))

    for match in WITH_I.finditer(text):
        group = 1 if match.group(1) else 2
        word = match.group(group)
        if (word[0].isupper() or group == 2) and unknown(word) and word != "I":
            yield match.span(group)
    for start, end in found:
        before = JOINED_BEFORE.search(text, max(0, start - 40), start)
        if before is not None and before.end() == start and unknown(before.group(1)):
            yield before.span(1)
        after = JOINED_AFTER.match(text, end)
        if after is not None and unknown(after.group(1)):
            yield after.span(1)
        full = JOINED_FULL_NAME_AFTER.match(text, end)
        if full is not None and " " in text[start:end].strip() and unknown(full.group(2)):
            yield full.span(1)  # the surname no English list has


ALIAS = re.compile(r"[ \t,]*\(?[ \t]*(?:née|nee|né|born|known as|aka|a\.k\.a\.|nicknamed|goes by|called)[ \t]+"
                   r"[\"'“‘]?")


def aliases(text: str, found: Sequence[tuple[int, int]]) -> Iterator[tuple[int, int]]:
    """The other name of a name found: "Ana Fifita (née Taufa)", "Nattapong Srisuk (known as Tee)"."""
    for start, end in found:
        match = ALIAS.match(text, end)
        if match is None:
            continue
        value = rest_of_line(text, match.end())
        length = name_prefix(re.split(r"[\"'”’)]", value, maxsplit=1)[0])
        if length == 0 and value[:1].isupper():  # a name that is a word: "(known as Tee)"
            word = TIE_WORD.match(value)
            length = word.end() if word and word.group(0).casefold() not in NO_ONE else 0
        if length:
            yield match.end(), match.end() + length


KEYED = re.compile(
    r"(?i:\b(?P<key>member|guest|visitor|customer|patient|holder|cardholder|person|employee|passenger|tenant|resident|"
    r"student|pupil|child|attendee|donor|driver|rider|caller|recipient|(?:full|first|last|given|family)_?name|"
    r"surname|display_?name|name))(?P<json>[\"'])?[ \t]*[=:][ \t]*(?P<quote>[\"'])"  # (a JSON key's: "holder":"...")
    r"(?P<value>(?:(?!(?P=quote))[^\n]){2,60})(?P=quote)")


# A JSON object's keys for a person's data.
PERSONAL_KEY = re.compile(r"(?i)[\"'](?:card|card_?number|pan|e-?mail|phone|mobile|tel|msisdn|dob|birth_?date|ssn|iban)"
                          r"[\"'][ \t]*:")


def keyed_names(text: str) -> Iterator[tuple[int, int]]:
    """A log's or a record's value for a person: `member="Tsjalling de Vries"`, `guest="salawat"`.
    A lower-case value counts for people's keys only, not for "name" (a service, a host)."""
    for match in KEYED.finditer(text):
        key = match.group("key").casefold()
        if match.group("json") and key in ("name", "display_name", "displayname") \
                and not PERSONAL_KEY.search(text, text.rfind("{", 0, match.start()) + 1,
                                            max(text.find("}", match.end()), match.end())):
            continue  # a JSON object's "name" is a thing's ("name": "Grafana Dashboard"), unless the object
            # holds a card, a mailbox or a phone ({"name":"Fa'afetai Sagapolutele","card":...}); its "holder" a person's
        value = match.group("value")
        length = name_prefix(value, lower_ok="name" not in key)
        if length == len(value.rstrip()) or surname_comma_given(value):
            yield match.start("value"), match.start("value") + (length if length == len(value.rstrip()) else len(value))


def surname_comma_given(value: str) -> bool:
    """Whether a value is a name written surname first, as a record keeps it: "Okonkwo, Adaeze",
    "Lindgren-Moss, Petra", "bin Yusof, Hafiz" (a particle may lead the surname)."""
    surname, comma, given = value.partition(", ")
    words = surname.split()
    while words and words[0].casefold() in PARTICLES:
        words.pop(0)
    surname = " ".join(words)
    return bool(comma and surname and given) and "," not in given \
        and name_prefix(surname) == len(surname) and name_prefix(given) == len(given)


# A user a log or an audit names in quotes: "Created user 'Ji-woo Park'", "Changed role of user
# 'Tomasz Wiśniewski'" (a full name: "user 'orders-svc'" and "account 'admin'" are services).
QUOTED_USER = re.compile(r"(?i:\b(?:user|account|member|customer|contact)[ \t]+)['\"‘“]([^'\"’”\n]{3,60})['\"’”]")


def quoted_user_names(text: str) -> Iterator[tuple[int, int]]:
    for match in QUOTED_USER.finditer(text):
        value = match.group(1)
        if len(value.split()) > 1 and name_prefix(value) == len(value):
            yield match.span(1)


# A payee before their account: "Bank transfer to W Okafor-Grant, IBAN GB33 ...", "payable to Ana
# Reis, account 12345678".
PAYEE = re.compile(r"(?i:\b(?:transfer(?:red)?|pay(?:ment|able)?|paid|send|sent|remit)[ \t]+(?:it[ \t]+)?to)[ \t]+"
                   r"([^\W\d_a-z][^,\n]{1,60}?),?[ \t]+(?=(?i:iban|account|acct|a/c|sort code|bsb|routing)\b)")


def payee_names(text: str) -> Iterator[tuple[int, int]]:
    for match in PAYEE.finditer(text):
        length = name_prefix(match.group(1))
        if length == len(match.group(1)):
            yield match.start(1), match.start(1) + length


# A letter's or a mail's close and the name on its next line (a blank line between, perhaps), or
# the line after a signature's "-- ": "Thanks,\n\nCharity Oyelaran\nParking & Access Coordinator",
# "--\nTomek\nTomasz Wiśniewski".
SIGN_OFF = re.compile(
    r"^[ \t]*(?:(?i:thanks|thank you|many thanks|thanks again|with thanks|cheers|best|best wishes|regards|"
    r"kind regards|best regards|warm regards|warmest regards|all the best|sincerely|yours sincerely|"
    r"yours faithfully|yours truly|yours|respectfully|take care|love|speak soon|talk soon)[ \t]*[,.!]?|--)"
    r"[ \t]*\n(?:[ \t]*\n)?[ \t]*", re.MULTILINE)
NAME_LINE_END = re.compile(r"[ \t]*(?:$|[,|(–—]|-[ \t])", re.MULTILINE)


def signed_off_names(text: str) -> Iterator[tuple[int, int]]:
    """The name under a close ("Kind regards,") or a signature's "--", when it is all of its line
    or ends at a comma, a bar or a bracket ("Charity Oyelaran, Coordinator"); "The Lumen Team" and
    "Customer Service" are no names (see name_prefix)."""
    for match in SIGN_OFF.finditer(text):
        line = rest_of_line(text, match.end())
        length = name_prefix(line)
        if length and NAME_LINE_END.match(line, length):
            yield match.end(), match.end() + length


# "— Naledi, Driver Support (shift B)", "— Rahim & Roya", "~ Ikaika Pua, PT": a dash signs a note.
SIGNED = re.compile(r"^[ \t]*[—–~][ \t]*(?=[^\W\d_])([^\n,(]*)[^\n]*$", re.MULTILINE)


def signed_names(text: str) -> Iterator[tuple[int, int]]:
    """The names a dash signs a note with, before a comma or a bracket that says who they are. The
    line must end its paragraph (a blank line or the text's end after it) and follow no other dash
    line: the items of a dashed list ("– Doppler effect, radar") do neither."""
    for match in SIGNED.finditer(text):
        after = text[match.end() + 1:match.end() + 2]
        before_line = text[text.rfind("\n", 0, max(0, text.rfind("\n", 0, match.start()))) + 1:match.start()]
        if after not in ("", "\n") or before_line.lstrip()[:1] in ("—", "–", "~", "-"):
            continue
        end = match.start(1) + len(match.group(1).rstrip())
        names = list(names_in_value(text, match.start(1), end))
        if names and names[-1][1] == end:  # all of it names: not "Doppler effect"
            yield from names
