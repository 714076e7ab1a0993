"""A mail-client session with Python's imaplib against leadgate.

Usage: imaplib_session.py HOST PORT USER PASSWORD
Prints one JSON object with what a user would look at.
"""
import email
import imaplib
import json
import sys

host, port, user, password = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4]
out = {}
m = imaplib.IMAP4(host, port)
out["login"] = m.login(user, password)[0]
typ, folders = m.list()
out["folders"] = [f.decode() for f in folders]
typ, data = m.select("INBOX")
out["exists"] = int(data[0])
typ, data = m.uid("SEARCH", None, "ALL")
uids = data[0].split()
out["uids"] = [int(u) for u in uids]
subjects = []
for uid in uids:
    typ, msg = m.uid("FETCH", uid, "(BODY.PEEK[HEADER.FIELDS (SUBJECT FROM)])")
    header = email.message_from_bytes(msg[0][1])
    subjects.append(header["Subject"])
out["subjects"] = subjects
typ, msg = m.uid("FETCH", uids[0], "(RFC822)")
out["first_body"] = email.message_from_bytes(msg[0][1]).get_payload()
typ, data = m.uid("STORE", uids[0], "+FLAGS", "(\\Flagged)")
out["store"] = typ
typ, data = m.search(None, "FLAGGED")
out["flagged"] = [int(n) for n in data[0].split()]
typ, data = m.search(None, "FROM", '"dana"')
out["from_dana"] = [int(n) for n in data[0].split()]
typ, data = m.append("Drafts", "(\\Draft)", None, b"From: alice@example.com\r\nSubject: draft via imaplib\r\n\r\nhello\r\n")
out["append"] = typ
out["append_code"] = data[0].decode() if data and data[0] else ""
typ, data = m.status("Drafts", "(MESSAGES)")
out["drafts_status"] = data[0].decode()
m.logout()
print(json.dumps(out))
