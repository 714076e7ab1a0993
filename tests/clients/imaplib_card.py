"""A lead folder as Python's imaplib sees it: every message's size, the
length of its body, and its headers (for the lead card tests).

Usage: imaplib_card.py HOST PORT USER PASSWORD FOLDER
Prints one JSON object: {"exists": n, "messages": [{"uid", "size", "len",
"from", "subject", "in_reply_to", "reply_to", "message_id", "x_lead_id",
"text", "html"}]}.
"""
import email
import email.header
import email.policy
import imaplib
import json
import re
import sys

host, port, user, password, folder = sys.argv[1:6]
m = imaplib.IMAP4(host, int(port))
m.login(user, password)
typ, data = m.select('"%s"' % folder)
out = {"exists": int(data[0]), "messages": []}
typ, data = m.uid("SEARCH", None, "ALL")
for uid in data[0].split():
    typ, msg = m.uid("FETCH", uid, "(RFC822.SIZE BODY.PEEK[])")
    meta, raw = msg[0][0].decode(), msg[0][1]
    size = int(re.search(r"RFC822\.SIZE (\d+)", meta).group(1))
    mail = email.message_from_bytes(raw, policy=email.policy.default)
    text = html = ""
    for part in mail.walk():
        if part.get_content_type() == "text/plain":
            text = part.get_content()
        elif part.get_content_type() == "text/html":
            html = part.get_content()
    out["messages"].append({
        "uid": int(uid),
        "size": size,
        "len": len(raw),
        "from": str(mail["From"]),
        "subject": str(mail["Subject"]),
        "in_reply_to": str(mail["In-Reply-To"]),
        "reply_to": str(mail["Reply-To"]),
        "message_id": str(mail["Message-ID"]),
        "x_lead_id": str(mail["X-Lead-Id"]).strip(),
        "text": text,
        "html": html,
    })
m.logout()
print(json.dumps(out))
