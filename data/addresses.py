"""Postal addresses in running text, as (start, end) spans: a house number and its street with what
follows it on the line up to a postcode, a state or a town.

spaCy's NER finds towns, not addresses ("31 Albion Terrace" is no entity to it), so a home address
passed through the anonymizer whole but for its town. pyap2 (the maintained fork of pyap) finds US,
Canadian and British addresses, but on the project's hand-written PII sets (204 documents, 106 kB,
2 cores, 2026-12-05) its British parser took 2.5 s (about 40 kB/s against the anonymizer's ~600 kB/s)
and 5 of its 9 British finds were IBAN prefixes, hashes and tracking numbers; it has no continental
forms. libpostal parses but does not find, and needs a 2 GB model. So these are rules of our own,
built around what marks an address and little else does:

- a British postcode (`RG1 5BN`), a US state and ZIP code (`, WA 98225`), a continental postcode
  and town after a comma (`, 20018 Donostia`, `, 186 00 Praha 8`, `, 4050-262 Porto`);
- a street: a house number, capitalised words and a street word (`31 Albion Terrace`,
  `880 Alder Crest Rd`), or capitalised words and a house number (`Kale Nagusia 22`,
  `Rua das Flores 112`, `Křižíkova 48`);
- flats and units (`Flat 2`, `Unit 4B`, `Apt 12`).

An address is a run of comma-separated parts on one line: a street with a street word and the
places after it; a street of the other form only when a postcode or a state ends the run (nothing
else tells "Table 3, 1999 Edition" from "Lipová 9, 602 00 Brno"); or a town with its postcode
alone. Whose address it is decides whether it is personal: data.pii treats these spans as places
(LOCATION), which count where the text ties them to a person.
"""

from __future__ import annotations

import re
from typing import Iterator

# A capitalised word: an upper-case letter, then letters, inner apostrophes and hyphens; a short
# one may end with a dot ("St. Albans"), a long one may not ("Amsterdam. Office hours").
UPPER = r"(?:[A-ZÀ-ÖØ-Þ]|[ĀĂĄĆĈĊČĎĐĒĔĖĘĚĜĞĠĢĤĦĨĪĬĮİĴĶĹĻĽĿŁŃŅŇŊŌŎŐŒ" \
        r"ŔŖŘŚŜŞŠŢŤŦŨŪŬŮŰŲŴŶŸŹŻŽ])"
CAPITALISED = rf"{UPPER}(?:\w{{0,2}}\.|[\w'’-]*)"
# Lower-case words inside a street or a town's name ("Rua das Flores", "Dar es Salaam").
PARTICLE = (r"(?:de|da|das|do|dos|del|dei|degli|delle|della|dello|di|la|le|les|du|des|van|von|der|den|het|y|e|es|am|"
            r"an|im|zum|zur|sur|al|el|upon)")  # and "Kingston upon Thames"
NAME = rf"{CAPITALISED}(?:[ \t]+(?:{PARTICLE}[ \t]+)*{CAPITALISED}){{0,3}}"
UNIT_WORDS = r"Flat|Apt|Apartment|Unit|Suite|Ste|Room|Floor|Plot|Lot|Building|Bldg|Block|PO Box|P\.O\. Box|Box"
# Capitalised words before a number that name no street ("Table 3, 1999 Edition", "Flat 2").
NOT_STREET = rf"(?!(?:{UNIT_WORDS}|Table|Figure|Fig|Chapter|Section|Page|Step|Version|Level|Phase|Part|Day|Week|" \
             r"Year|Season|Episode|Track|Platform|Gate|Terminal|Seat|Row|Flight|Bus|Route|Line|Exit|Article|Rule|" \
             r"Note|Model|Issue|Volume|Vol|No|Number|Item|Question|Grade|Class|Group|Team|Size|Windows|Python)\b)"
HOUSE_NUMBER = r"\d{1,5}[A-Za-z]?(?:[-/]\d{1,5}[A-Za-z]?)?(?:-(?:I{1,3}|IV|hs|bis))?"  # a Dutch floor: "218-III"
STREET_WORDS = (
    r"Street|St|Road|Rd|Avenue|Ave|Lane|Ln|Drive|Dr|Court|Ct|Rise|Terrace|Tce|Way|Close|Crescent|Cres|"
    r"Boulevard|Blvd|Place|Pl|Gardens|Gdns|Grove|Hill|Row|Square|Sq|Parkway|Pkwy|Highway|Hwy|Mews|Walk|View|"
    r"Green|Park|Circle|Cir|Trail|Trl|Loop|Pike|Alley|Wharf|Quay|Embankment|Hollow|Heights|Yard|"
    r"Strasse|Straße|Str|Weg|Gasse|Laan|Straat|Plein|Gracht|Vej|Gade|Gatan|Vägen|Veien|"
    r"Parade|Promenade|Esplanade|Fold|Croft|Cottages|Mead|Chase")
# ... and as forms write them, in capitals: "3 CHAPEL FOLD, LOW BENTHAM, LANCASTER LA2 7DQ"
STREET_WORDS = f"{STREET_WORDS}|{STREET_WORDS.upper()}"
# Street words written short, whose dot an address keeps ("Alder Creek Dr.").
ABBREVIATIONS = frozenset({"St", "Rd", "Ave", "Ln", "Dr", "Ct", "Tce", "Cres", "Blvd", "Pl", "Gdns", "Sq", "Pkwy",
                           "Hwy", "Cir", "Trl", "Str"})
BEFORE = r"(?<![\w'’.:/-])"  # at a word's start, not inside a time or a fraction ("18:15 Worcester...")
MONTHS = r"(?:January|February|March|April|May|June|July|August|September|October|November|December|Jan|Feb|Mar|" \
         r"Apr|Jun|Jul|Aug|Sep|Sept|Oct|Nov|Dec)\b"
# "In 2019 Fleet Street...": a year after a preposition is no house number.
YEAR_BEFORE = re.compile(r"(?i:\b(?:in|since|by|until|till|from|of|during|before|after|circa|around|c\.)[ \t]+)"
                         r"(?:1[89]\d\d|20\d\d)\b")
# One space between a number and its street: "3  Queens Park Rangers" in a table is a rank and a club.
# (its words may hold an ordinal, "310 West 97th Street", and a flat may follow, "2281 NE Alberta St Apt 6")
STREET_FIRST_NUMBER = (rf"{HOUSE_NUMBER} (?:(?:(?!{MONTHS}){CAPITALISED}|\d{{1,3}}(?:st|nd|rd|th))[ \t]+){{1,3}}"
                       rf"(?:{STREET_WORDS})\b\.?(?:[ \t]+(?:Apt|Apartment|Unit|Suite|Ste|Flat)\.?[ \t]*#?[ \t]*\d\w{{0,4}}\b)?")
# "12 rue de la Paix", "5 Heol y Felin": a number, then a street word that comes first in its language
STREET_NUMBER_THEN_TYPE = (rf"{HOUSE_NUMBER},? (?:[Rr]ue|[Aa]venue|[Bb]oulevard|[Cc]hemin|[Aa]llée|[Ii]mpasse|"
                           rf"[Qq]uai|Heol|Ffordd|Stryd|Lôn|Via|Calle|Rua|Avenida|Carrer)"
                           rf"(?:(?:[ \t]+{PARTICLE})*[ \t]+{CAPITALISED}){{1,3}}")
STREET_LAST_NUMBER = (rf"(?:(?:ul|al|pl|os)\.[ \t]*)?{NOT_STREET}{CAPITALISED}"  # "ul. Długa 15"
                      rf"(?:[ \t]+(?:{PARTICLE}[ \t]+)*{NOT_STREET}{CAPITALISED}){{0,3}} {HOUSE_NUMBER}\b"
                      r"(?:[ \t]+bus[ \t]+\d{1,4}\b)?")  # a Belgian box: "Tiensestraat 212 bus 3"
UNIT = (rf"(?:{UNIT_WORDS})\.?[ \t]*#?[ \t]*(?:\d\w{{0,5}}|[A-Z]\b)|#\d{{1,5}}|\d{{1,3}}(?:st|nd|rd|th)[ \t]+[Ff]loor"
        rf"|\d{{1,2}}[ºª°](?:[ \t]?[A-Z]\b)?")  # "Block C", "3º B"
# A street named before its number that says it is a street: by its first word ("Via dei Mille 12",
# "Rua da Graça 57", "ul. Długa 15") or the end of its last ("Keizersgracht 318", "Hauptstraße 5").
STREET_TYPE = re.compile(
    r"(?:ul\.|al\.|pl\.|os\.|(?:Via|Viale|Piazza|Piazzale|Corso|Largo|Vicolo|Strada|Calle|Carrer|Avinguda|Avenida|Avda|"
    r"Paseo|Plaza|Camino|Carretera|Rua|Travessa|Praça|Rue|Avenue|Boulevard|Chemin|Allée|Impasse|Quai|Kale|"
    r"Calea|Bulevardul|Ulica|Trg|Odos|Leoforos)\b)"
    r"|[\w'’.-]*(?:straße|strasse|str\.|gasse|weg|platz|allee|gracht|straat|laan|plein|kade|vej|gade|gatan|vägen|"
    r"veien|gata|katu|tie|utca|tér)[ \t]+\d")
WORDED = rf"{STREET_FIRST_NUMBER}|{STREET_NUMBER_THEN_TYPE}"
# Where an address starts: a street with a street word ("31 Albion Terrace"), a flat ("Flat 2"),
# or a street named before its number ("Kale Nagusia 22"), in that order at one position.
START = re.compile(rf"{BEFORE}(?:(?P<worded>{WORDED})|(?P<unit>{UNIT})|(?P<named>{STREET_LAST_NUMBER}))")
STREET_OR_UNIT = re.compile(rf"(?P<worded>{WORDED})|(?P<unit>{UNIT})|(?P<named>{STREET_LAST_NUMBER})")

UK_POSTCODE = r"(?:GIR 0AA|[A-Z]{1,2}\d[A-Z\d]?[ \t]\d[A-Z]{2}|(?:[AC-FHKNPRTV-Y]\d{2}|D6W)[ \t][0-9AC-FHKNPRTV-Y]{4})"
# (and an Irish Eircode, "D06 R3K1")
US_STATES = (
    r"AL|AK|AZ|AR|CA|CO|CT|DE|DC|FL|GA|HI|ID|IL|IN|IA|KS|KY|LA|ME|MD|MA|MI|MN|MS|MO|MT|NE|NV|NH|NJ|NM|NY|NC|ND|"
    r"OH|OK|OR|PA|RI|SC|SD|TN|TX|UT|VT|VA|WA|WV|WI|WY|Alabama|Alaska|Arizona|Arkansas|California|Colorado|"
    r"Connecticut|Delaware|Florida|Georgia|Hawaii|Idaho|Illinois|Indiana|Iowa|Kansas|Kentucky|Louisiana|Maine|"
    r"Maryland|Massachusetts|Michigan|Minnesota|Mississippi|Missouri|Montana|Nebraska|Nevada|New Hampshire|"
    r"New Jersey|New Mexico|New York|North Carolina|North Dakota|Ohio|Oklahoma|Oregon|Pennsylvania|"
    r"Rhode Island|South Carolina|South Dakota|Tennessee|Texas|Utah|Vermont|Virginia|Washington|West Virginia|"
    r"Wisconsin|Wyoming|ON|QC|BC|AB|MB|SK|NS|NB|NL|PE")  # and Canada's provinces
ZIP = r"(?:\d{5}(?:-\d{4})?|[A-Z]\d[A-Z][ \t]?\d[A-Z]\d)"  # a US ZIP code or a Canadian postal code
# 5 digits, 4 (not a year), "186 00", "4050-262", "00-950", "D-10115"
CONTINENTAL_POSTCODE = r"(?:[A-Z]{1,2}-)?(?:\d{5}|\d{4}-\d{3}|(?!1[89]\d\d|20\d\d)\d{4}|\d{3}[ \t]\d{2}|\d{2}-\d{3})"
# The part that ends an address, matched at its part's start (what follows it is not address).
POSTCODE_END = re.compile(
    rf"(?:{NAME}[ \t]+)?{UK_POSTCODE}\b"  # "Reading RG1 5BN", "RG1 5BN"
    rf"|(?:{US_STATES})(?:[ \t]+{ZIP})?\b(?![ \t]*[a-z])"  # "WA 98225", "Idaho", "OR 97301"
    rf"|{CONTINENTAL_POSTCODE}[ \t]+{NAME}(?:[ \t]+\d{{1,2}}\b)?")  # "20018 Donostia", "186 00 Praha 8"
PLACE = re.compile(NAME)  # a town, a district, a country
# A town and its postcode with no street: "Reading RG1 5BN", "Spokane, WA 99201"
TOWN_POSTCODE = re.compile(rf"{BEFORE}(?:{NAME}[ \t]+{UK_POSTCODE}|{NAME},[ \t]*(?:{US_STATES})[ \t]+{ZIP})\b")
NEXT_PART = re.compile(r",[ \t]*([^,\n]*?)[ \t]*(?=,|\n|$)")
MAX_PLACES = 4  # towns and districts between a street and its postcode


def find_addresses(text: str) -> Iterator[tuple[int, int]]:
    """(start, end) of each address in text; spans may overlap (the caller keeps the longest)."""
    if not any(char.isdigit() for char in text):
        return
    position = 0
    while (start := START.search(text, position)) is not None:
        end = address_end(text, start)
        if end is None or year_not_number(text, start.start()):
            position = start.start() + 1
        else:
            yield start.start(), end
            position = end
    for match in TOWN_POSTCODE.finditer(text):
        yield match.span()


def is_worded(street: re.Match) -> bool:
    """A street that says it is one: a street word after its number, or a street named before its
    number with a street word in it."""
    return street.group("worded") is not None or (
        street.group("named") is not None and STREET_TYPE.search(street.group("named")) is not None)


def year_not_number(text: str, start: int) -> bool:
    """Whether the number at text[start] is a year after a preposition ("in 2019 Fleet Street")."""
    return any(match.end() == start + 4 and text[start:start + 4].isdigit()
               for match in YEAR_BEFORE.finditer(text, max(0, start - 12), start + 4))


def address_end(text: str, start: re.Match) -> int | None:
    """Where the address that starts with `start` ends, or None where it is no address: a flat or
    a street named before its number needs a postcode or a state after it."""
    worded, street = is_worded(start), start.group("unit") is None
    end, places = start.end(), 0
    while (part := NEXT_PART.match(text, end)) is not None and part.start(1) < part.end(1):
        part_start, part_end = part.span(1)
        if (more := STREET_OR_UNIT.fullmatch(text, part_start, part_end)) is not None:
            street, worded = True, worded or is_worded(more)
            end = part_end
            continue
        if street and (ending := POSTCODE_END.match(text, part_start, part_end)) is not None:
            end = ending.end()
            after = NEXT_PART.match(text, end)  # a state's name and its code: "New York, NY 10025"
            code = POSTCODE_END.match(text, *after.span(1)) if after is not None and ending.end() == part_end else None
            if code is not None:
                end = code.end()
            country = NEXT_PART.match(text, end)
            place = PLACE.match(text, *country.span(1)) if country and ending.end() == part_end else None
            if place is not None and text[place.end():country.end(1)] in ("", "."):  # "..., Czech Republic."
                end = place.end()
            return trim_full_stop(text, end)
        place = PLACE.match(text, part_start, part_end)
        if place is None or places == MAX_PLACES:
            break
        places += 1
        end = place.end()
        if place.end() != part_end:
            break
    return trim_full_stop(text, end) if worded else None


def trim_full_stop(text: str, end: int) -> int:
    """A sentence's full stop after an address is not part of it; an abbreviation's dot is."""
    if text[end - 1] != "." or text[max(0, text.rfind(" ", 0, end) + 1):end - 1] in ABBREVIATIONS:
        return end
    return end - 1
