"""Labelled synthetic PII documents, for the anonymizer's tests and benchmark.

`generate(n, seed)` fills sentence templates with synthetic identities and returns each text
with its gold spans `(start, end, entity)`. The same `(n, seed)` always gives the same documents.

Inputs, beside this file (see LICENSE): `templates.txt` (presidio-evaluator, MIT) and
`FakeNameGenerator.com_3000.csv` (Fake Name Generator, CC BY-SA 3.0 US). Both are unmodified
copies. The CSV's card numbers are mangled into scientific notation, so cards, IBANs, IPs and
SSNs are made here, valid by construction (Luhn, mod-97, SSA rules). Phones come from the CSV's
numbers, written in several international and national formats.

Entity types, as the anonymizer names them: EMAIL, PHONE, IP_ADDRESS, CREDIT_CARD, IBAN, US_SSN,
URL_CREDENTIALS (the `user:password` of a URL), PERSON, LOCATION (cities and countries).
Some spans are labelled but not PII the anonymizer targets (IGNORED: street addresses,
organizations, licence numbers): a scorer should neither reward nor punish detections inside them.
"""

from __future__ import annotations

import csv
import random
import re
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path

HERE = Path(__file__).parent
IGNORED = frozenset({"ADDRESS", "ORGANIZATION", "US_DRIVER_LICENSE"})

# Templates of our own, so the structured types are frequent enough to measure; the same
# placeholder syntax as templates.txt. Some carry numbers that are not PII (years, order numbers,
# versions, times): an anonymizer must leave them alone.
EXTRA_TEMPLATES = (
    "Please reach me at {{email}} or on {{phone_number}} after {{year}}.",
    "You can call {{person}} on {{phone_number}} or write to {{email}}.",
    "Tel: {{phone_number}} | Mobile: {{phone_number}}",
    "Order {{order_number}} was paid with card {{credit_card_number}} on {{date_time}}.",
    "Charge {{credit_card_number}}, expiry {{cc_expires}}, for {{person}}.",
    "Wire the deposit of {{amount}} EUR to IBAN {{iban}} before {{date_time}}.",
    "Beneficiary: {{person}}, account {{iban}}, {{city}}, {{country}}.",
    "Failed logins from {{ip_address}} and {{ip_address}} were blocked at {{time}}.",
    # A server's address is no one's personal data: unlabelled, an anonymizer must leave it.
    "The server listens on {{server_ip_address}} port {{port}} since version {{version}}.",
    "Applicant {{person}}, SSN {{ssn}}, born {{date_of_birth}} in {{city}}.",
    "Our records show social security number {{ssn}} for {{first_name}} {{last_name}}.",
    "Clone it with git clone {{url_with_credentials}} and check out tag v{{version}}.",
    "The job failed to fetch {{url_with_credentials}} ({{age}} retries).",
    "{{person}} moved from {{city}} to {{city}} in {{year}}.",
    "Dear {{prefix}} {{last_name}}, your parcel for {{address}} ships on {{day_of_week}}.",
    "Contact {{first_name}} at {{email}}; the invoice total is {{amount}} for {{age}} items.",
    "In {{year}}, {{person}} visited {{country}} and stayed {{age}} days in {{city}}.",
)

PLACEHOLDER = re.compile(r"\{\{(\w+)\}\}")
TITLES = {"male": ["Mr.", "Dr."], "female": ["Mrs.", "Ms.", "Dr."], "": ["Mr.", "Ms.", "Dr."]}
# IBAN: country -> (length, BBAN layout as (kind, count) with kind 'n' digits or 'a' letters).
IBAN_LAYOUTS = {
    "DE": [("n", 18)],
    "GB": [("a", 4), ("n", 14)],
    "FR": [("n", 23)],
    "NL": [("a", 4), ("n", 10)],
    "ES": [("n", 20)],
    "IT": [("a", 1), ("n", 10), ("n", 12)],
    "CH": [("n", 17)],
}
CARD_PREFIXES = [("4", 16), ("51", 16), ("55", 16), ("2221", 16), ("34", 15), ("37", 15), ("6011", 16)]
WEEKDAYS = ["Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday"]
JOBS = ["nurse", "teacher", "software engineer", "accountant", "plumber", "pilot"]


@dataclass
class Document:
    text: str
    spans: list[tuple[int, int, str]] = field(default_factory=list)  # (start, end, entity), sorted


@lru_cache(maxsize=1)
def identities() -> list[dict[str, str]]:
    with open(HERE / "FakeNameGenerator.com_3000.csv", encoding="utf-8-sig", newline="") as handle:
        return [{k: v.strip() for k, v in row.items()} for row in csv.DictReader(handle)]


@lru_cache(maxsize=1)
def templates() -> tuple[str, ...]:
    lines = (HERE / "templates.txt").read_text(encoding="utf-8").splitlines()
    return tuple(line.replace("\\n", "\n") for line in lines if PLACEHOLDER.search(line))


def luhn_complete(partial: str) -> str:
    """The partial number with the check digit that makes it pass Luhn."""
    total = 0
    for position, char in enumerate(reversed(partial)):
        value = int(char)
        if position % 2 == 0:  # doubled once the check digit is appended
            value = value * 2 - 9 if value > 4 else value * 2
        total += value
    return partial + str((10 - total % 10) % 10)


def iban_check_digits(country: str, bban: str) -> str:
    numeric = "".join(str(int(char, 36)) for char in bban + country + "00")
    return f"{98 - int(numeric) % 97:02d}"


class Filler:
    """Draws one value per placeholder: text plus spans relative to that text."""

    def __init__(self, rng: random.Random):
        self.rng = rng

    def row(self) -> dict[str, str]:
        return self.rng.choice(identities())

    def fill(self, name: str) -> tuple[str, list[tuple[int, int, str]]]:
        method = getattr(self, f"fill_{name}", None)
        if method is not None:
            return method()
        return name.replace("_", " "), []  # unknown placeholder: keep it readable, unlabelled

    def labelled(self, text: str, entity: str) -> tuple[str, list[tuple[int, int, str]]]:
        return text, [(0, len(text), entity)]

    # people and places
    def fill_person(self):
        row = self.row()
        parts = [row["GivenName"], row["Surname"]]
        if self.rng.random() < 0.15:
            parts.insert(1, row["MiddleInitial"] + ".")
        return self.labelled(" ".join(parts), "PERSON")

    fill_name = fill_name_female = fill_name_male = fill_person

    def fill_first_name(self):
        return self.labelled(self.row()["GivenName"], "PERSON")

    fill_first_name_male = fill_first_name_female = fill_first_name_nonbinary = fill_first_name

    def fill_last_name(self):
        return self.labelled(self.row()["Surname"], "PERSON")

    fill_last_name_male = fill_last_name_female = fill_last_name

    def fill_prefix(self):
        return self.rng.choice(TITLES[""]), []

    def fill_prefix_male(self):
        return self.rng.choice(TITLES["male"]), []

    def fill_prefix_female(self):
        return self.rng.choice(TITLES["female"]), []

    def fill_city(self):
        city = self.row()["City"]
        return self.labelled(city.title() if city.isupper() else city, "LOCATION")

    def fill_country(self):
        country = self.row()["CountryFull"]
        return self.labelled({"Greenlander": "Greenland", "Cyprus (Greek)": "Cyprus"}.get(country, country),
                             "LOCATION")

    def fill_address(self):
        row = self.row()
        street, city = row["StreetAddress"], row["City"].title() if row["City"].isupper() else row["City"]
        text = f"{street}, {city}, {row['ZipCode']}"
        start = len(street) + 2
        return text, [(0, len(text), "ADDRESS"), (start, start + len(city), "LOCATION")]

    def fill_street_name(self):
        return self.labelled(re.sub(r"^\d+\s*|\s*\d+\.?$", "", self.row()["StreetAddress"]), "ADDRESS")

    def fill_building_number(self):
        return self.labelled(str(self.rng.randint(1, 999)), "ADDRESS")

    def fill_secondary_address(self):
        return self.labelled(f"Apt. {self.rng.randint(1, 999)}", "ADDRESS")

    def fill_postcode(self):
        return self.labelled(self.row()["ZipCode"], "ADDRESS")

    fill_zipcode = fill_postcode

    def fill_state_abbr(self):
        return self.labelled(self.rng.choice(["NY", "CA", "TX", "WA", "FL"]), "ADDRESS")

    def fill_organization(self):
        return self.labelled(self.row()["Company"], "ORGANIZATION")

    def fill_us_driver_license(self):
        return self.labelled(f"D{self.rng.randint(10**7, 10**8 - 1)}", "US_DRIVER_LICENSE")

    def fill_nationality(self):
        return self.rng.choice(["French", "Danish", "Brazilian", "Czech", "Icelandic"]), []

    fill_nation_woman = fill_nation_plural = fill_nationality

    # contact details
    def fill_email(self):
        row = self.rng.random()
        identity = self.row()
        if row < 0.5:
            return self.labelled(identity["EmailAddress"], "EMAIL")
        first, last = (re.sub(r"[^a-z]", "", identity[k].lower()) or "x" for k in ("GivenName", "Surname"))
        local = self.rng.choice([f"{first}.{last}", f"{first[0]}{last}", f"{first}_{last}{self.rng.randint(1, 99)}",
                                 f"{first}+news"])
        domain = self.rng.choice([identity["Domain"].lower(), "mail.example.co.uk", "uni-example.edu", "example.org"])
        return self.labelled(f"{local}@{domain}", "EMAIL")

    def fill_phone_number(self):
        row = self.row()
        national, code = row["TelephoneNumber"], row["TelephoneCountryCode"]
        digits = re.sub(r"\D", "", national)
        if code == "1":  # North America: the usual written forms
            area, exchange, line = digits[:3], digits[3:6], digits[6:]
            text = self.rng.choice([f"({area}) {exchange}-{line}", f"{area}-{exchange}-{line}",
                                    f"{area}.{exchange}.{line}", f"+1 {area} {exchange} {line}",
                                    f"+1-{area}-{exchange}-{line}"])
            return self.labelled(text, "PHONE")
        # International: drop the national trunk 0 and the parentheses; keep the grouping.
        grouped = re.sub(r"^\(?0?(\d+)\)?", r"\1", national).strip()
        choice = self.rng.random()
        if choice < 0.45:
            text = f"+{code} {grouped}"
        elif choice < 0.6:
            text = f"+{code}{digits.lstrip('0')}"
        elif choice < 0.75:
            text = f"00{code} {grouped}"
        elif national.startswith(("0", "(")):  # national form, as the CSV writes it
            text = national
        else:
            text = f"+{code} {grouped}"
        return self.labelled(text, "PHONE")

    def fill_url(self):
        domain = self.row()["Domain"].lower()
        return f"https://www.{domain}/{self.rng.choice(['', 'about', 'p/2931', 'shop?id=77'])}", []

    def fill_url_with_credentials(self):
        row = self.row()
        credentials = f"{row['Username']}:{row['Password']}"
        prefix = self.rng.choice(["https://", "ftp://", "postgres://"])
        text = f"{prefix}{credentials}@{self.rng.choice(['db', 'git', 'files'])}.{row['Domain'].lower()}/data"
        return text, [(len(prefix), len(prefix) + len(credentials), "URL_CREDENTIALS")]

    # numbers that are PII
    def fill_credit_card_number(self):
        prefix, length = self.rng.choice(CARD_PREFIXES)
        body = prefix + "".join(str(self.rng.randint(0, 9)) for _ in range(length - len(prefix) - 1))
        number = luhn_complete(body)
        style = self.rng.random()
        if style < 0.35:
            text = number
        elif length == 15:
            sep = self.rng.choice([" ", "-"])
            text = f"{number[:4]}{sep}{number[4:10]}{sep}{number[10:]}"
        else:
            sep = " " if style < 0.75 else "-"
            text = sep.join(number[i:i + 4] for i in range(0, length, 4))
        return self.labelled(text, "CREDIT_CARD")

    def fill_iban(self):
        country = self.rng.choice(sorted(IBAN_LAYOUTS))
        bban = "".join("".join(self.rng.choice("ABCDEFGHIJKLMNOPQRSTUVWXYZ") if kind == "a"
                               else str(self.rng.randint(0, 9)) for _ in range(count))
                       for kind, count in IBAN_LAYOUTS[country])
        iban = country + iban_check_digits(country, bban) + bban
        if self.rng.random() < 0.6:
            iban = " ".join(iban[i:i + 4] for i in range(0, len(iban), 4))
        return self.labelled(iban, "IBAN")

    def fill_ip_address(self):
        if self.rng.random() < 0.6:
            text = ".".join(str(self.rng.randint(1, 254)) for _ in range(4))
        else:
            groups = [f"{self.rng.randint(0, 0xffff):x}" for _ in range(8)]
            text = ":".join(groups) if self.rng.random() < 0.5 else f"2001:db8::{groups[0]}:{groups[1]}"
        return self.labelled(text, "IP_ADDRESS")

    def fill_server_ip_address(self):
        return self.fill_ip_address()[0], []

    def fill_ssn(self):
        area = self.rng.choice([a for a in range(1, 900) if a != 666])
        sep = "-" if self.rng.random() < 0.85 else " "
        text = f"{area:03d}{sep}{self.rng.randint(1, 99):02d}{sep}{self.rng.randint(1, 9999):04d}"
        return self.labelled(text, "US_SSN")

    # numbers and words that are not PII
    def fill_age(self):
        return str(self.rng.randint(2, 95)), []

    def fill_year(self):
        return str(self.rng.randint(1850, 2030)), []

    def fill_date_time(self):
        return f"{self.rng.randint(1, 28)}/{self.rng.randint(1, 12)}/{self.rng.randint(1990, 2030)}", []

    def fill_date_of_birth(self):
        return self.row()["Birthday"], []

    def fill_day_of_week(self):
        return self.rng.choice(WEEKDAYS), []

    def fill_job(self):
        return self.row()["Occupation"] or self.rng.choice(JOBS), []

    def fill_order_number(self):
        return str(self.rng.randint(10**6, 10**8)), []

    def fill_amount(self):
        return f"{self.rng.randint(10, 99_999):,}.{self.rng.randint(0, 99):02d}", []

    def fill_cc_expires(self):
        return f"{self.rng.randint(1, 12):02d}/{self.rng.randint(24, 35)}", []

    def fill_time(self):
        return f"{self.rng.randint(0, 23):02d}:{self.rng.randint(0, 59):02d}:{self.rng.randint(0, 59):02d}", []

    def fill_port(self):
        return str(self.rng.choice([22, 80, 443, 5432, 8080])), []

    def fill_version(self):
        return f"{self.rng.randint(1, 4)}.{self.rng.randint(0, 20)}.{self.rng.randint(0, 9)}", []


def render(template: str, filler: Filler) -> Document:
    doc, position = Document(text=""), 0
    pieces = []
    for match in PLACEHOLDER.finditer(template):
        pieces.append(template[position:match.start()])
        offset = sum(len(piece) for piece in pieces)
        value, spans = filler.fill(match.group(1))
        doc.spans.extend((offset + start, offset + end, entity) for start, end, entity in spans)
        pieces.append(value)
        position = match.end()
    pieces.append(template[position:])
    doc.text = "".join(pieces)
    return doc


def generate(n: int, seed: int = 0, sentences: tuple[int, int] = (1, 3)) -> list[Document]:
    """n documents of 1-3 filled templates each, half from templates.txt, half from ours."""
    rng = random.Random(seed)
    filler, presidio_templates = Filler(rng), templates()
    docs = []
    for _ in range(n):
        doc = Document(text="")
        for index in range(rng.randint(*sentences)):
            pool = EXTRA_TEMPLATES if rng.random() < 0.5 else presidio_templates
            part = render(rng.choice(pool), filler)
            if index:
                doc.text += " "
            offset = len(doc.text)
            doc.text += part.text
            doc.spans.extend((offset + start, offset + end, entity) for start, end, entity in part.spans)
        doc.spans.sort()
        docs.append(doc)
    return docs
