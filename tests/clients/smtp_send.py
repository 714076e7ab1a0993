"""Submits one message through leadgate with Python's smtplib.

Usage: smtp_send.py HOST PORT USER PASSWORD FROM TO SUBJECT IN_REPLY_TO BODY
(BODY "@bytes:N" generates a body of about N bytes.)
Prints JSON: {"ok": bool, "code": int, "message": str}.
"""
import json
import smtplib
import sys
from email.message import EmailMessage

host, port, user, password, sender, to, subject, in_reply_to, body = sys.argv[1:10]
msg = EmailMessage()
msg["From"] = sender
msg["To"] = to
msg["Subject"] = subject
if in_reply_to:
    msg["In-Reply-To"] = in_reply_to
    msg["References"] = in_reply_to
if body.startswith("@bytes:"):
    # A generated body of that size (argv cannot carry megabytes).
    n = int(body[len("@bytes:"):])
    body = ("x" * 76 + "\n") * (n // 77 + 1)
msg.set_content(body)
out = {"ok": False, "code": 0, "message": ""}
try:
    with smtplib.SMTP(host, int(port), timeout=60) as s:
        s.login(user, password)
        refused = s.send_message(msg)
        out = {"ok": not refused, "code": 250, "message": ""}
except smtplib.SMTPDataError as e:
    out = {"ok": False, "code": e.smtp_code, "message": e.smtp_error.decode(errors="replace")}
except smtplib.SMTPSenderRefused as e:
    out = {"ok": False, "code": e.smtp_code, "message": e.smtp_error.decode(errors="replace")}
except smtplib.SMTPRecipientsRefused as e:
    code, text = list(e.recipients.values())[0]
    out = {"ok": False, "code": code, "message": text.decode(errors="replace")}
except smtplib.SMTPResponseException as e:
    out = {"ok": False, "code": e.smtp_code, "message": e.smtp_error.decode(errors="replace")}
print(json.dumps(out))
