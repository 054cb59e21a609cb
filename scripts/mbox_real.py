#!/usr/bin/env python3
"""Test support for tests/it/mbox_real.rs: mbox files written the way real programs
write them, and an independent reader (Python's mailbox module).

  mbox_real.py write DIR        write the files below into DIR
  mbox_real.py read KIND FILE   print the messages Python's mailbox finds in FILE
                                (KIND: mbox or mmdf) as JSON: [{"from": …, "hex": …}]

Files (deterministic):
  python.mbox          Python's mailbox.mbox.add() of bytes and of mboxMessage with
                       flags: `From MAILER-DAEMON` separators, mboxo quoting (only
                       `From ` gets a `>`; `>From ` and `>>From ` stay as written)
  mmdf.mbox            Python's mailbox.MMDF: four ^A around each message, no quoting
  mboxcl2.mbox         mutt/Solaris style: Content-Length on every message, bodies
                       with unquoted, separator-shaped `From ` lines after blank lines
  takeout.mbox         Google Takeout: `From <id>@xxx <date>` separators, X-GM-THRID,
                       X-Gmail-Labels
  dateless.mbox        separators without a date: `From 1844347792267117879@xxx`
  bare.mbox            Thunderbird's bare `From - ` separators
  uw-imap.mbox         UW-IMAP's folder-data placeholder first, then mutt-style mail
  thunderbird/         a Local Folders tree: Inbox, Sent, Archives.sbd/2019, an empty
                       Trash, .msf indexes and .dat files; X-Mozilla-Status(2)/Keys
"""

import json
import mailbox
import os
import sys
import time


def msg(n, subject, body, extra=""):
    return (
        f"From: Sender {n} <s{n}@example.org>\n"
        f"To: anna@example.ch\n"
        f"Subject: {subject}\n"
        f"Date: {n % 28 + 1:02d} Jan 2024 10:00:00 +0000\n"
        f"Message-ID: <real-{n}@fixtures.mailferry.test>\n"
        f"{extra}"
        f"\n{body}"
    ).encode()


QUOTED_BODY = (
    "Lines that look like mbox separators:\n"
    "From the start of a line\n"
    ">From one quote already\n"
    ">>From two quotes already\n"
    "end\n"
)


def write_python(path):
    box = mailbox.mbox(path, create=True)
    box.lock()
    # Added as bytes: no Unix from, so Python writes `From MAILER-DAEMON <now>`;
    # the date is fixed through time.gmtime being called with no argument.
    box.add(msg(1, "python bytes", QUOTED_BODY))
    m = mailbox.mboxMessage(msg(2, "python flags RA", "replied and read\n"))
    m.set_flags("RA")
    box.add(m)
    m = mailbox.mboxMessage(msg(3, "python flags F", "From here on, flagged\n"))
    m.set_flags("OF")
    box.add(m)
    box.flush()
    box.unlock()
    box.close()


def write_mmdf(path):
    box = mailbox.MMDF(path, create=True)
    box.lock()
    box.add(msg(10, "mmdf one", "From the start, not quoted in MMDF\n>From stays\n"))
    m = mailbox.MMDFMessage(msg(11, "mmdf two", "second\n"))
    m.set_flags("R")
    box.add(m)
    box.flush()
    box.unlock()
    box.close()


def cl_message(sep, headers, body):
    body = body.encode()
    return (
        sep.encode()
        + b"\n"
        + headers.encode()
        + f"Content-Length: {len(body)}\n".encode()
        + b"\n"
        + body
        + b"\n"
    )


def write_mboxcl2(path):
    out = b""
    out += cl_message(
        "From alice@example.org Mon Jan 15 09:30:00 2024",
        "From: alice@example.org\nSubject: cl2 one\nStatus: RO\nX-Status: A\n",
        "Quoted mail below, not escaped in mboxcl2:\n\n"
        "From bob@example.net Tue Jan 16 10:00:05 2024\n"
        "Subject: looks like a message\n\nbut is body\n",
    )
    out += cl_message(
        "From carol@example.com Wed Jan 17 11:00:00 2024",
        "From: carol@example.com\nSubject: cl2 two\nStatus: O\n",
        "From the desk of Carol\n>From stays as written\n",
    )
    with open(path, "wb") as f:
        f.write(out)


def write_takeout(path, dateless=False):
    rows = [
        ("Inbox,Important,Opened,Work", "takeout inbox work"),
        ('Sent,Opened,"Projects/2024, Q1"', "takeout sent"),
        ("Archived,Opened,Category Updates", "takeout archived"),
        ("Spam,Unread", "takeout spam"),
        ("Trash,Opened,Starred", "takeout trash starred"),
        ("Inbox,Starred,Unread,Work", "takeout inbox unread"),
    ]
    out = b""
    for i, (labels, subject) in enumerate(rows):
        ident = 1844347792267117879 + i
        sep = f"From {ident}@xxx" if dateless else f"From {ident}@xxx Mon Jan 15 0{i}:30:00 +0000 2024"
        out += sep.encode() + b"\n"
        out += f"X-GM-THRID: {ident}\nX-Gmail-Labels: {labels}\n".encode()
        out += msg(20 + i, subject, "From a Takeout body line\n".replace("From", ">From"))
        out += b"\n"
    with open(path, "wb") as f:
        f.write(out)


def write_bare(path):
    out = b""
    for i in range(2):
        out += b"From - \n" + msg(40 + i, f"bare separator {i}", "body\n") + b"\n"
    with open(path, "wb") as f:
        f.write(out)


def write_uw(path):
    placeholder = (
        b"From MAILER-DAEMON Mon Jan  1 00:00:00 2024\n"
        b"Date: Mon, 01 Jan 2024 00:00:00 +0000\n"
        b"From: Mail System Internal Data <MAILER-DAEMON@example.org>\n"
        b"Subject: DON'T DELETE THIS MESSAGE -- FOLDER INTERNAL DATA\n"
        b"X-IMAP: 1704067200 0000000002\n"
        b"Status: RO\n\n"
        b"This text is part of the internal format of your mail folder.\n\n"
    )
    out = placeholder
    out += b"From a@example.org Tue Jan  2 00:00:00 2024\n" + msg(50, "uw one", "x\n", "Status: RO\nX-Status: F\nX-Keywords: work $Label2\nX-UID: 1\n") + b"\n"
    out += b"From a@example.org Wed Jan  3 00:00:00 2024\n" + msg(51, "uw two", "y\n", "Status: O\nX-UID: 2\n") + b"\n"
    with open(path, "wb") as f:
        f.write(out)


def tb_message(n, subject, status, keys="", body="body\n"):
    extra = f"X-Mozilla-Status: {status:04x}\nX-Mozilla-Status2: 00000000\n"
    if keys:
        extra += f"X-Mozilla-Keys: {keys}\n"
    return b"From - Mon Jan 15 09:30:00 2024\n" + msg(n, subject, body, extra) + b"\n"


def write_thunderbird(root):
    os.makedirs(os.path.join(root, "Archives.sbd"), exist_ok=True)
    files = {
        "Inbox": tb_message(60, "tb read", 0x1, body="From me, quoted by Thunderbird\n".replace("From", ">From") + ">>From stays\n")
        + tb_message(61, "tb replied", 0x3)
        + tb_message(62, "tb flagged tagged", 0x5, keys="$label1 work")
        + tb_message(63, "tb deleted", 0x9)
        + tb_message(64, "tb unread", 0x0),
        "Sent": tb_message(65, "tb sent", 0x1),
        "Archives.sbd/2019": tb_message(66, "tb archived 2019", 0x1),
        "Trash": b"",
    }
    for name, data in files.items():
        with open(os.path.join(root, name), "wb") as f:
            f.write(data)
        with open(os.path.join(root, name + ".msf"), "wb") as f:
            f.write(b"// <!-- <mdb:mork:z v=\"1.4\"/> -->\n< <(a=c)> >\n")
    with open(os.path.join(root, "Archives.msf"), "wb") as f:
        f.write(b"// <!-- <mdb:mork:z v=\"1.4\"/> -->\n")
    with open(os.path.join(root, "popstate.dat"), "wb") as f:
        f.write(b"# POP3 State File\n")
    with open(os.path.join(root, "msgFilterRules.dat"), "wb") as f:
        f.write(b'version="9"\nlogging="no"\n')


def write(dirname):
    os.makedirs(dirname, exist_ok=True)
    j = lambda n: os.path.join(dirname, n)
    # Python writes the current time into MAILER-DAEMON separators: fix it.
    fixed = time.struct_time((2024, 1, 15, 9, 30, 0, 0, 15, 0))
    real_gmtime = time.gmtime
    time.gmtime = lambda *a: fixed if not a else real_gmtime(*a)
    try:
        write_python(j("python.mbox"))
        write_mmdf(j("mmdf.mbox"))
    finally:
        time.gmtime = real_gmtime
    write_mboxcl2(j("mboxcl2.mbox"))
    write_takeout(j("takeout.mbox"))
    write_takeout(j("dateless.mbox"), dateless=True)
    write_bare(j("bare.mbox"))
    write_uw(j("uw-imap.mbox"))
    write_thunderbird(j("thunderbird"))


def read(kind, path):
    box = mailbox.MMDF(path, create=False) if kind == "mmdf" else mailbox.mbox(path, create=False)
    out = []
    for key in box.keys():
        m = box.get_message(key)
        out.append({"from": m.get_from(), "hex": box.get_bytes(key).hex()})
    print(json.dumps(out))


if __name__ == "__main__":
    if sys.argv[1] == "write":
        write(sys.argv[2])
    else:
        read(sys.argv[2], sys.argv[3])
