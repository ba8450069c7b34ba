"""Hand-written text pieces for build.py (written for this set; licence CC0 1.0).

Everything here is invented: names, companies, addresses (example.* domains, 555 numbers).
"""

PEOPLE = [
    ("Jane Doe", "jane.doe@example.com"), ("Bob Smith", "bsmith@example.org"),
    ("Priya Raman", "priya.raman@example.net"), ("Tom Okafor", "tom@okafor.example"),
    ("Marta Kowalski", "marta.k@example.com"), ("Chen Wei", "chen.wei@example.org"),
    ("Liam O'Brien", "liam.obrien@example.net"), ("Sofia Rossi", "s.rossi@example.com"),
    ("David Levin", "dlevin@example.edu"), ("Aisha Bello", "aisha.bello@example.org"),
    ("Hannah Berg", "hannah@berg.example"), ("Carlos Mendes", "cmendes@example.com"),
    ("Ewan MacLeod", "ewan.macleod@example.ac.uk"), ("Nora Lindqvist", "nora.l@example.se"),
    ("Raj Patel", "raj.patel@example.com"), ("Grace Kim", "gkim@example.net"),
    ("Oliver Grant", "ogrant@example.org"), ("Fatima Haddad", "fatima.haddad@example.com"),
    ("Peter Novak", "pnovak@example.cz"), ("Emily Clarke", "emily.clarke@example.co.uk"),
]
# names that need RFC 2047 encoding in headers
PEOPLE_UTF8 = [
    ("José Müller", "jose.mueller@example.de"), ("Zoë Ångström", "zoe@angstrom.example"),
    ("François Lefèvre", "f.lefevre@example.fr"), ("Søren Kierkegård", "soren@example.dk"),
    ("Łukasz Wróbel", "lukasz.wrobel@example.pl"), ("Renée Côté", "renee.cote@example.ca"),
    ("Jürgen Weiß", "juergen.weiss@example.de"), ("Ana Conceição", "ana.conceicao@example.pt"),
]

COMPANIES = [
    ("Acme Corp", "acme.example"), ("Northwind Traders", "northwind.example"),
    ("Globex Logistics", "globex.example"), ("Initech", "initech.example"),
    ("Brightline Analytics", "brightline.example"), ("Harbor Books", "harborbooks.example"),
]
TITLES = ["Senior Engineer", "Product Manager", "Data Analyst", "Operations Lead", "Research Fellow",
          "Customer Success Manager", "Editor", "Head of IT", "Librarian", "Software Developer"]

LISTS = [("booktalk", "Booktalk: classic fiction reading group"),
         ("history-l", "History-L discussion list"),
         ("pyusers", "Python users' group"),
         ("newsroom", "Newsroom staff list"),
         ("garden-club", "Garden club members")]

GREETINGS = ["Hi all,", "Hi {first},", "Hello {first},", "Dear {first},", "Hey {first},", "Hi everyone,",
             "Good morning,", "{first},", "Hi folks,"]
OPENERS = [
    "I came across this passage last night and thought it was worth sharing with the group.",
    "Following up on yesterday's discussion, here is the paragraph I mentioned.",
    "Here is the excerpt for this week's reading, as promised.",
    "I have been thinking about this section for a while and would like to hear your views.",
    "Sorry for the slow reply, I was travelling all week.",
    "Quick note before the meeting on Thursday.",
    "This is a bit long, but I think it is relevant to what we talked about.",
    "Posting this here in case anyone else finds it useful.",
    "I finally had time to read the chapter properly.",
]
QUESTIONS = [
    "Does anyone know whether this was ever published separately?",
    "What do you make of the last sentence?",
    "Can someone explain why the author chose to end the chapter here?",
    "Is there a better edition that includes the notes?",
    "Would it make sense to cover this at the next meeting?",
    "Has anyone compared this with the earlier draft?",
]
SHORT_REPLIES = [
    "Thanks, that fixed it.", "Agreed, let's go with the second option.", "Works for me. See you on Thursday.",
    "Thanks for sharing this, I had never read it before.", "Good point, I had missed that completely.",
    "I can confirm the same behaviour on my machine.", "Count me in for the meeting.",
    "That makes sense now, thank you for explaining.", "Yes, the new version solved the problem for me as well.",
    "I disagree with the conclusion, but the argument is well made.", "Lovely passage. It reads even better aloud.",
    "Done. I have updated the shared document.", "No objections from me.",
    "I will bring my copy of the book on Saturday.", "Could you send the slides again? The link has expired.",
    "Thanks, I'll try that tonight and report back.",
]
MEDIUM_REPLIES = [
    "I think you are right about the tone of that chapter. On a second reading the irony is much easier to see, "
    "especially in the way the narrator describes the family's plans.",
    "We discussed this at length last year and did not reach any agreement, so I would suggest we simply vote on it "
    "at the next meeting and move on.",
    "My copy has a slightly different wording in the second paragraph. I suspect the editors corrected it, "
    "but I have not been able to check the first edition.",
    "That is roughly what happened with our deployment too. Once we pinned the older version everything "
    "went back to normal, and we have not seen the error since.",
    "I have added the item to the agenda. If anyone wants to present, please let me know by Wednesday "
    "so that I can plan the time slots.",
    "It is a good summary, although I would add that the numbers in the second table were revised "
    "the following spring.",
]
PROSE_WROTE = [
    "Melville wrote: \"Call me Ishmael\" and every reader since has remembered the line.",
    "In her letters, Austen wrote: that she was writing a heroine whom no one but herself would much like.",
    "The reviewer wrote: the book is too long by half, and I think he had a point.",
    "As my grandfather wrote: never trust a map you did not draw yourself.",
    "The manual's author wrote: restart the service after every configuration change, and that is still good advice.",
]
FOREIGN_PHRASES = [
    "As the French would say, it has a certain je ne sais quoi.",
    "The motto of the society was \"festina lente\", which suits the pace of this book.",
    "My German colleague summed it up as \"Ende gut, alles gut\", and I agree.",
    "The Spanish edition's subtitle, \"una novela\", is simply missing from mine.",
    "Ciao for now, and thanks again for organising the evening.",
]
CLOSING_LINES = ["Thoughts?", "Any feedback is welcome.", "Let me know what you think.",
                 "Thanks in advance for any help!", "Looking forward to Thursday."]
VALEDICTIONS = ["Best regards,", "Kind regards,", "Thanks,", "Cheers,", "Best,", "Regards,", "Many thanks,", "All the best,"]
MOBILE_SIGS = ["Sent from my iPhone", "Sent from my iPad", "Sent from my Android phone", "Sent from Outlook for iOS",
               "Get Outlook for Android", "Sent from Mail for Windows", "Sent from my Galaxy"]
DISCLAIMERS = [
    ["CONFIDENTIALITY NOTICE: This e-mail message, including any attachments, is for the sole use of the",
     "intended recipient(s) and may contain confidential and privileged information. Any unauthorized",
     "review, use, disclosure or distribution is prohibited. If you are not the intended recipient, please",
     "contact the sender by reply e-mail and destroy all copies of the original message."],
    ["This email and any files transmitted with it are confidential and intended solely for the use of "
     "the individual or entity to whom they are addressed. If you have received this email in error please "
     "notify the system manager. Please consider the environment before printing this email."],
    ["DISCLAIMER: The information in this message is confidential and may be legally privileged.",
     "It is intended solely for the addressee. Access to this message by anyone else is unauthorised."],
    ["{company} is registered in England and Wales, company number 01234567. Registered office:",
     "1 Example Street, London EC1A 1AA. This message may contain confidential information."],
    ["Please consider the environment before printing this e-mail."],
    ["NOTICE: This communication may contain privileged or other confidential information. If you have "
     "received it in error, please advise the sender by reply email and immediately delete the message and "
     "any attachments without copying or disclosing the contents. Thank you."],
]

CODE_SNIPPETS = [
    ["import json", "with open(\"config.json\") as fh:", "    cfg = json.load(fh)", "print(cfg[\"timeout\"])"],
    [">>> import sys", ">>> sys.version_info[:2]", "(3, 11)"],
    ["$ pip install --upgrade conveyor", "$ conveyor --version", "conveyor 2.4.1"],
    ["for i in range(10):", "    if i % 3 == 0:", "        print(i)"],
    ["SELECT title, COUNT(*) AS n", "FROM loans", "WHERE returned_at IS NULL", "GROUP BY title;"],
    ["> dir C:\\Users\\Public", "> type notes.txt"],
    ["$ tail -n 3 /var/log/app.log", "ERROR worker 3: connection reset by peer", "INFO  retrying in 5s"],
    ["def mean(xs):", "    return sum(xs) / len(xs)"],
]
INEQUALITY_LINES = [
    ">= 3.10 is required, older interpreters are not supported.",
    "> 90% of the requests finished within two seconds, which is fine for us.",
    ">1000 rows per second was the target in the original plan.",
    "> 5 minutes of downtime would trigger the alert, so we never noticed.",
]

TECH_QUESTIONS = [
    "After upgrading to version 2.4 the import job fails with a timeout after about thirty seconds. "
    "It worked fine with 2.3. Is there a setting I missed?",
    "I get \"permission denied\" when the nightly backup runs, but the same command works when I run it by hand.",
    "The export to CSV drops every row that contains a comma in the description field. "
    "Is this a known problem?",
    "Our dashboard stopped refreshing this morning. The status page says everything is operational.",
    "Is it possible to change the billing address on an invoice that has already been issued?",
    "The mobile app logs me out every few minutes since the last update. I am using an older Android phone.",
    "I ordered two copies of the book but only one arrived, and the tracking number shows the parcel as delivered.",
    "How do I move my account to a different e-mail address without losing my order history?",
    "The search page returns no results for titles with accents, for example Les Misérables.",
    "Since yesterday the sync client uses all of the CPU on my laptop and the fan never stops.",
    "We would like to add five more seats to our team plan. Can this be done in the middle of the billing cycle?",
    "The password reset e-mail never arrives. I have checked the spam folder.",
    "I was charged twice for the same order on the 3rd of this month.",
    "Can you confirm whether the API rate limit applies per key or per account?",
    "The printer driver you recommended does not install on the latest macOS version.",
]
TECH_DETAILS = [
    "I have attached the log file from this morning.",
    "This happens on both of our servers, so I do not think it is a hardware problem.",
    "We have already restarted the service twice.",
    "My order number is 100-4482913.",
    "I am using the latest version from the download page.",
    "Nothing has changed on our side as far as I know.",
    "It is fairly urgent because the quarterly report is due on Friday.",
]
AGENT_REPLIES = [
    "Thank you for contacting us. I have checked your account and can see the duplicate charge. "
    "I have issued a refund, which should appear on your statement within five working days.",
    "Thanks for the details. This is a known issue in version 2.4 and a fix is planned for the next release. "
    "In the meantime you can raise the timeout in the settings file to 120 seconds.",
    "I am sorry for the trouble. Could you please send us the exact error message and the time it happened, "
    "so that our engineers can find the matching entry in the server logs?",
    "I have moved your account to the new address. You will receive a confirmation e-mail shortly; "
    "please click the link in it within 24 hours.",
    "Our warehouse has confirmed that the second copy was not packed. A replacement has been sent today "
    "by tracked post at no extra cost.",
    "The rate limit applies per API key. If you need a higher limit for a single key, "
    "please let us know the expected number of requests per minute.",
    "We have reset the sync state of your device. Please sign out and back in again, "
    "and the client should stop scanning the whole folder.",
    "Seats can be added at any time. The extra cost is charged pro rata for the rest of the current billing cycle.",
]
CUSTOMER_FOLLOWUPS = [
    "Thanks, that fixed it.", "That worked, thank you very much for the quick help!",
    "Unfortunately the problem is still there after the update.", "Thanks. Please close the ticket.",
    "I tried that but now I get a different error: \"invalid token\".",
    "Great, the refund arrived today. Thanks for your help.",
    "Could you tell me when the next release is expected?", "Perfect, thank you.",
]
SUPPORT_TEAMS = ["Acme Support", "Northwind Help Desk", "Harbor Books Customer Care", "Initech IT Service Desk",
                 "Brightline Support"]

CHAT_DEV = [
    "morning all", "is the staging deploy still broken?", "looks like the migration never ran",
    "I'll rerun it after standup", "can someone review my PR when they get a chance?",
    "done, left two small comments", "thanks! will fix", "the flaky test failed again on main",
    "I think it's the timezone thing again", "yep, it passes locally but not in CI",
    "pushed a fix, let's see", "green now :tada:", "lunch?", "I'm in, 12:30?",
    "Quick question: do we still need the old export endpoint?",
    "nobody has called it in three months according to the logs",
    "ok, I'll open a ticket to remove it", "heads up: I'm restarting the database in 5 minutes",
    "restart done, everything looks healthy", "who owns the billing service these days?",
    "Ana does, but she's on holiday until Monday",
]
CHAT_CUSTOMER_OPEN = [
    "Hi, I can't log in to my account since this morning.",
    "Hello, my order hasn't arrived yet and it's been two weeks.",
    "Hi there, how do I cancel my subscription?",
    "Hi, I was charged twice for the same order.",
    "Hello, the app keeps crashing when I open the settings page.",
    "Hi, can I change the delivery address for an order I placed yesterday?",
    "Good afternoon, I need an invoice with our company VAT number on it.",
]
CHAT_AGENT_LINES = [
    "Hi, thanks for reaching out! Let me look into that for you.",
    "Could you please confirm the e-mail address on the account?",
    "Thank you. One moment while I check.",
    "I can see the problem now. I've reset it on our side, please try again.",
    "I've updated the address. You'll get a confirmation e-mail in a few minutes.",
    "The refund has been issued and should show up within 3-5 business days.",
    "Is there anything else I can help you with today?",
    "You're welcome! Have a great day.",
    "I've escalated this to our technical team; they will contact you by e-mail within one business day.",
]
CHAT_CUSTOMER_LINES = [
    "Sure, it's the same one I'm writing from.", "ok thanks", "It works now, thank you!",
    "No, that's all. Thanks for the quick help.", "Great, thanks.", "Still the same error unfortunately.",
    "How long will that take?", "Perfect.",
]
CHAT_SYSTEM = ["{agent} joined the conversation", "{agent} left the conversation",
               "Conversation transferred to {agent}", "Chat started", "Chat ended by visitor"]
CHAT_DISCLAIMERS = [
    "This conversation is being recorded for quality and training purposes.",
    "This chat may be monitored or recorded. By continuing you agree to our Terms of Service.",
    "Please do not share passwords or full card numbers in this chat.",
    "Chat transcripts are kept for 90 days in accordance with our privacy policy.",
]
CHAT_BOILER = ["How would you rate this conversation? 1 2 3 4 5", "A transcript of this chat will be sent to your e-mail.",
               "Our agents typically reply in under 2 minutes.", "You are number 2 in the queue."]

# junk: spam and auto-generated noise a reader would not keep
SPAM = [
    ["CONGRATULATIONS!!! Your e-mail address has been selected as a WINNER of $1,500,000.00 USD",
     "in the International Online Lottery Promotion.", "To claim your prize send your full name, address and bank details to the claims agent.",
     "CLAIM NOW: http://claims.example.biz/winner?id=88321"],
    ["Cheap meds online!!! Vi@gra C1alis 80% OFF", "no prescription needed, worldwide shipping",
     "ORDER NOW >>> http://pharma.example.biz <<<", "unsubscribe: reply STOP"],
    ["Dear Beneficiary,", "I am Barrister James Williams, attorney to the late Mr. Robert, who died with his family in a car accident.",
     "He left the sum of $12.5M in a bank here and you share his surname.", "Reply urgently with your private phone number."],
    ["Your mailbox is almost full (98%).", "Click here to upgrade your quota: http://mail-quota.example.biz/login",
     "Failure to verify within 24 hours will result in account suspension.", "Mail Administrator"],
    ["Make $5000/week from home!!!", "NO experience needed. NO boss. 100% GUARANTEED.",
     "Limited spots: http://easy-money.example.biz", "Act now act now act now"],
    ["BEST SEO SERVICES rank #1 on google cheap seo backlinks 10000 backlinks $9",
     "seo seo backlinks cheap backlinks buy backlinks rank fast google rank",
     "contact skype: seo_master_pro"],
    ["Hot singles in your area are waiting to meet you!!!", "click >>> http://meet.example.biz <<< FREE signup",
     "This is not spam. You received this because you signed up."],
    ["Bitcoin doubling program!! Send 0.1 BTC and receive 0.2 BTC back within 24 hours.",
     "Wallet: 1BoatSLRHtKNngkdXEeobR76b53LETtpyT", "Trusted by 10,000+ investors!!!"],
]
JUNK_SHORT = [["bump"], ["+1"], ["test"], ["asdfasdf"], ["..."], ["first!!!"], ["?"], ["lol"], ["ok"]]
GIBBERISH = [
    ["Ã¢â‚¬Å“Ã¢â‚¬Â Ã‚Â Ã‚Â Ã¢â‚¬â„¢ Ã‚Â Ã‚Â Ã¢â‚¬Å“ Ã‚Â Ã‚Â", "Ã¢â‚¬â„¢Ã‚Â Ã‚Â Ã¢â‚¬Å“"],
    ["dGhpcyBpcyBub3QgYSByZWFsIGRvY3VtZW50IGp1c3QgYSBibG9iIG9mIGJhc2U2NCB0ZXh0",
     "IHRoYXQgc29tZWJvZHkgcGFzdGVkIGludG8gYSBwb3N0IGJ5IG1pc3Rha2U="],
    ["lorem ipsum dolor sit amet consectetur adipiscing elit sed do eiusmod tempor",
     "incididunt ut labore et dolore magna aliqua ut enim ad minim veniam"],
]

# hand-written short texts in other languages (greetings / UI strings), CC0
FOREIGN = {
    "fr": {"by": "Par", "greet": "Bonjour à tous,", "close": "Cordialement,", "q": "Quelqu'un a-t-il déjà rencontré ce problème ?",
           "nav": ["Accueil", "Actualités", "Documentation", "Contact"], "cookie": "Ce site utilise des cookies pour améliorer votre expérience.",
           "accept": "Accepter", "footer": "Tous droits réservés.", "privacy": "Politique de confidentialité", "legal": "Mentions légales",
           "hello": "Bonjour", "thanks": "Merci beaucoup !", "wrote": "a écrit :"},
    "de": {"by": "Von", "greet": "Hallo zusammen,", "close": "Viele Grüße,", "q": "Hat jemand eine Idee, woran das liegen könnte?",
           "nav": ["Startseite", "Nachrichten", "Dokumentation", "Kontakt"], "cookie": "Diese Website verwendet Cookies, um Ihnen das beste Erlebnis zu bieten.",
           "accept": "Akzeptieren", "footer": "Alle Rechte vorbehalten.", "privacy": "Datenschutzerklärung", "legal": "Impressum",
           "hello": "Hallo", "thanks": "Vielen Dank!", "wrote": "schrieb:"},
    "es": {"by": "Por", "greet": "Hola a todos,", "close": "Saludos,", "q": "¿Alguien sabe cómo solucionarlo?",
           "nav": ["Inicio", "Noticias", "Documentación", "Contacto"], "cookie": "Este sitio utiliza cookies para mejorar su experiencia.",
           "accept": "Aceptar", "footer": "Todos los derechos reservados.", "privacy": "Política de privacidad", "legal": "Aviso legal",
           "hello": "Hola", "thanks": "¡Muchas gracias!", "wrote": "escribió:"},
    "it": {"by": "Di", "greet": "Ciao a tutti,", "close": "Cordiali saluti,", "q": "Qualcuno ha già avuto questo problema?",
           "nav": ["Home", "Notizie", "Documentazione", "Contatti"], "cookie": "Questo sito utilizza i cookie per migliorare la tua esperienza.",
           "accept": "Accetta", "footer": "Tutti i diritti riservati.", "privacy": "Informativa sulla privacy", "legal": "Note legali",
           "hello": "Buongiorno", "thanks": "Grazie mille!", "wrote": "ha scritto:"},
    "pt": {"by": "Por", "greet": "Olá a todos,", "close": "Cumprimentos,", "q": "Alguém sabe como resolver isto?",
           "nav": ["Início", "Notícias", "Documentação", "Contacto"], "cookie": "Este site utiliza cookies para melhorar a sua experiência.",
           "accept": "Aceitar", "footer": "Todos os direitos reservados.", "privacy": "Política de privacidade", "legal": "Termos de utilização",
           "hello": "Olá", "thanks": "Muito obrigado!", "wrote": "escreveu:"},
}

FORUM_SIGS = [
    ["My rig: Ryzen 5 5600X, 32 GB RAM, RTX 3060"], ["Currently reading: Middlemarch"],
    ["\"The only way to learn a new programming language is by writing programs in it.\""],
    ["Member of the Northern Readers' Circle since 2009", "Visit my blog: http://readingnotes.example.com"],
    ["Sent from my Pixel 7 using Tapatalk"], ["-- Linux user #448211"],
    ["Garden: 40 sq m of clay and optimism"], ["Please mark the thread as solved when your question is answered."],
]
FORUM_BOILER = ["Last edited by {user}; {date} at 10:42 AM.", "Reply With Quote", "Report post", "Like (3)",
                "This post was edited 2 times, last by {user}.", "Top", "Quote Reply"]
FORUM_TOPICS = ["Reading group", "General discussion", "History corner", "Gardening", "Technical help",
                "Sports talk", "Off-topic"]

WEB_SITES = [
    {"name": "The Daily Ledger", "kind": "news", "nav": ["Home", "World", "Politics", "Business", "Sport", "Culture", "Opinion"]},
    {"name": "Riverside Gazette", "kind": "news", "nav": ["News", "Local", "Sports", "Obituaries", "Weather", "Subscribe"]},
    {"name": "Notes from a Small Garden", "kind": "blog", "nav": ["Home", "About", "Archive", "Recipes", "Contact"]},
    {"name": "Slow Reader", "kind": "blog", "nav": ["Home", "Book reviews", "Reading lists", "About me"]},
    {"name": "Open Encyclopedia Mirror", "kind": "wiki", "nav": ["Main page", "Contents", "Random article", "About", "Help"]},
    {"name": "Conveyor Docs", "kind": "docs", "nav": ["Getting started", "Guides", "API reference", "Changelog", "GitHub"]},
    {"name": "Classic Texts Online", "kind": "lit", "nav": ["Home", "Authors", "Titles", "Search", "Donate"]},
    {"name": "Old Readers Forum", "kind": "forum", "nav": ["Forums", "New posts", "Members", "Search", "Log in", "Register"]},
]
COOKIE_BANNERS = [
    ["We use cookies to improve your experience on our site. By continuing to browse, you agree to our use of cookies.", "Accept all", "Manage preferences"],
    ["This website uses cookies to ensure you get the best experience.", "Got it!", "Learn more"],
    ["We and our partners store and/or access information on a device, such as cookies, and process personal data.", "I agree", "Reject all", "Show purposes"],
]
SHARE = ["Share on Facebook", "Share on Twitter", "Share on LinkedIn", "Email this article", "Print"]
SIDEBAR_TITLES = ["Most read", "Popular posts", "Related articles", "You may also like", "Trending now", "Recent posts"]
RELATED = ["Ten things you didn't know about the city council", "Weekend weather: sunny spells expected",
           "How to plant tulips in autumn", "A guide to the new library opening hours", "Review: a quiet triumph at the festival",
           "Why the old bridge is closing for repairs", "Five novels to read this winter", "Interview: the last lighthouse keeper",
           "Getting started with configuration files", "Migrating from version 1 to version 2", "Understanding the pipeline stages"]
FOOTER_LINKS = ["About us", "Contact", "Privacy Policy", "Terms of Use", "Cookie settings", "Advertise", "Careers", "Accessibility"]

# coherent support scenarios for chat and tickets: customer opening, details, agent answer,
# customer follow-up, agent closing
SCENARIOS = [
    {"subject": "Charged twice for the same order",
     "open": "Hi, I was charged twice for the same order on the 3rd of this month.",
     "detail": "Both charges show up on my card statement, each for 34.90.",
     "ask": "Could you please give me the order number so that I can check the payments?",
     "cust": "Sure, it's 100-4482913.",
     "answer": "Thank you. I can see the duplicate charge. I have issued a refund for the second payment, which should appear on your statement within five working days.",
     "follow": "Great, the refund arrived today. Thanks for your help."},
    {"subject": "Import job times out after upgrade",
     "open": "After upgrading to version 2.4 the import job fails with a timeout after about thirty seconds. It worked fine with 2.3.",
     "detail": "We import roughly 40,000 rows every night and nothing else has changed on our side.",
     "ask": "Could you tell me which database driver you are using and send the last lines of the import log?",
     "code": ["2019-03-03 02:00:31 INFO  import started (40112 rows)", "2019-03-03 02:01:01 ERROR timeout while waiting for batch 12"],
     "cust": "We use the PostgreSQL driver. The log just says \"timeout while waiting for batch 12\".",
     "answer": "Thanks for the details. This is a known issue in version 2.4 and a fix is planned for the next release. In the meantime you can raise the import timeout in the settings file to 120 seconds.",
     "follow": "Thanks, that fixed it."},
    {"subject": "Password reset e-mail never arrives",
     "open": "Hello, the password reset e-mail never arrives. I have already checked the spam folder.",
     "detail": "I tried three times this morning.",
     "ask": "Could you please confirm the e-mail address on the account?",
     "cust": "It's the same one I'm writing from.",
     "answer": "Thank you. Our mail server had rejected your address after a bounce last month. I have cleared the block, so please request the reset again now.",
     "follow": "It worked this time, thank you!"},
    {"subject": "Order arrived incomplete",
     "open": "Hi, I ordered two copies of the book but only one arrived, and the tracking number shows the parcel as delivered.",
     "detail": "The invoice in the box lists both copies.",
     "ask": "I am sorry about that. Could you send me a photo of the packing slip?",
     "cust": "I've just sent it to your support address.",
     "answer": "Our warehouse has confirmed that the second copy was not packed. A replacement has been sent today by tracked post at no extra cost.",
     "follow": "Perfect, thank you."},
    {"subject": "Sync client uses all the CPU",
     "open": "Since yesterday the sync client uses all of the CPU on my laptop and the fan never stops.",
     "detail": "I am on version 5.2.1 on Windows 11.",
     "code": ["> tasklist /fi \"imagename eq syncclient.exe\"", "syncclient.exe    4312 Console    1    1,204,556 K"],
     "ask": "Does the client show a message such as \"Scanning files\" in the status bar?",
     "cust": "Yes, it has said \"Scanning files\" for hours.",
     "answer": "We have reset the sync state of your device on our side. Please sign out and back in again, and the client should stop scanning the whole folder.",
     "follow": "Unfortunately the problem is still there after signing in again."},
    {"subject": "Adding seats to our team plan",
     "open": "We would like to add five more seats to our team plan. Can this be done in the middle of the billing cycle?",
     "detail": "Our company account is registered to the finance department.",
     "ask": "Of course. Are you the account owner, or should I contact someone else to confirm?",
     "cust": "I'm one of the two account owners.",
     "answer": "Seats can be added at any time. The extra cost is charged pro rata for the rest of the current billing cycle, and I have added the five seats now.",
     "follow": "Thanks. Please close the ticket."},
    {"subject": "Question about the API rate limit",
     "open": "Can you confirm whether the API rate limit applies per key or per account?",
     "detail": "We are planning to split our integration into two services.",
     "ask": "Do you expect the two services to share one key?",
     "cust": "No, each service would get its own key.",
     "answer": "The rate limit applies per API key, so two keys give you twice the limit. If you need a higher limit for a single key, please let us know the expected number of requests per minute.",
     "follow": "Great, that's exactly what we needed to know."},
    {"subject": "Mobile app keeps logging me out",
     "open": "The mobile app logs me out every few minutes since the last update. I am using an older Android phone.",
     "detail": "The phone runs Android 9.",
     "ask": "Could you check which app version is shown under Settings > About?",
     "cust": "It says 7.4.0.",
     "answer": "Version 7.4.0 has a bug with token renewal on Android 9. Version 7.4.1, which fixes it, is rolling out today; please update the app from the store.",
     "follow": "Updated, and it has not logged me out since. Thanks!"},
    {"subject": "Invoice with VAT number",
     "open": "Good afternoon, I need an invoice with our company VAT number on it.",
     "detail": "The order was placed by a colleague under her personal account.",
     "ask": "Could you send me the VAT number and the company address that should appear on the invoice?",
     "cust": "VAT number GB123456789, address 1 Example Street, London.",
     "answer": "I have issued a corrected invoice with your company details and sent it to the e-mail address on the order.",
     "follow": "Received it, thank you very much."},
    {"subject": "Search returns nothing for accented titles",
     "open": "The search page returns no results for titles with accents, for example Les Misérables.",
     "detail": "Searching for \"Les Miserables\" without the accent works.",
     "ask": "Thanks for reporting this. Which browser are you using?",
     "cust": "Firefox on Linux, but my colleague sees the same in Chrome.",
     "answer": "Our developers found the problem in the search index and deployed a fix this afternoon. Accented titles should be found again now.",
     "follow": "Confirmed, it works now."},
    {"subject": "Backup fails with permission denied",
     "open": "I get \"permission denied\" when the nightly backup runs, but the same command works when I run it by hand.",
     "detail": "The backup runs from cron as the backup user.",
     "ask": "Does the backup user have read access to the data directory?",
     "code": ["$ sudo -u backup /usr/local/bin/nightly-backup.sh", "tar: /srv/data: Cannot open: Permission denied"],
     "cust": "I'm not sure how to check that.",
     "answer": "Please run \"ls -ld /srv/data\" as the backup user. If it says permission denied, add the backup user to the data group and the nightly job will work.",
     "follow": "That was it. The backup ran fine last night."},
    {"subject": "Cancel my subscription",
     "open": "Hi there, how do I cancel my subscription?",
     "detail": "I'd like it to end at the end of the current month.",
     "ask": "I can do that for you. Can you confirm the last four digits of the card on file?",
     "cust": "It ends in 4421.",
     "answer": "Thank you. Your subscription is cancelled and will stay active until the end of the month. You will not be charged again.",
     "follow": "Thanks for the quick help."},
]
TEAM_DOMAINS = {"Acme Support": "acme.example", "Northwind Help Desk": "northwind.example",
                "Harbor Books Customer Care": "harborbooks.example", "Initech IT Service Desk": "initech.example",
                "Brightline Support": "brightline.example"}
FORUM_THREAD_TITLES = ["What are you reading this month?", "Favourite opening lines", "Chapter discussion thread",
                       "Is the ending rushed?", "Best edition to buy?", "Passages that made you laugh",
                       "Reading group: week 3", "The whaling chapters - skip or not?"]
