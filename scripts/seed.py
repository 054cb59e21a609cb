#!/usr/bin/env python3
"""Put mailferry's test messages into an IMAP account, independently of mailferry.

    python3 scripts/seed.py --host localhost --port 10993 --user a@example.test \
        --password-file FILE --ca-file CERT.pem [--manifest fixtures/mail/manifest.tsv] \
        [--folder-prefix ''] [--starttls]

    python3 scripts/seed.py ... --generate N --folder NAME [--seed S]

Python 3.11 standard library only (imaplib + ssl). The server certificate is
always verified against --ca-file.

The manifest (see fixtures/mail/manifest.tsv) has a header line and rows
`folder<TAB>file<TAB>flags<TAB>internaldate`; `folder` uses `/` as hierarchy
separator and is converted to the server's separator (read with LIST "" "").
Folder names are sent in IMAP modified UTF-7. --folder-prefix (e.g. "INBOX."
for a server whose personal namespace has that prefix) is prepended verbatim to
every folder except INBOX. Missing folders are created.

Message bytes are sent as they are, except that imaplib's APPEND turns every
bare LF (and bare CR) into CRLF; the fixtures contain no bare CR.

--generate appends N small deterministic synthetic messages (2-10 KB each,
unique Message-IDs derived from --seed, flags cycling through \Seen,
\Seen \Answered, none, \Flagged $Work) to --folder, for volume tests; the
manifest is not read then.

Exit status is 0 on success and 1 on any failure (with a message on stderr).
"""
import argparse
import base64
import hashlib
import imaplib
import os
import re
import ssl
import sys
from collections import OrderedDict

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DEFAULT_MANIFEST = os.path.join(ROOT, "fixtures", "mail", "manifest.tsv")
DATE_RE = re.compile(r"^\d{1,2}-[A-Z][a-z]{2}-\d{4} \d{2}:\d{2}:\d{2} [+-]\d{4}$")


class SeedError(Exception):
    pass


def mutf7_encode(name: str) -> str:
    """IMAP modified UTF-7 (RFC 3501 section 5.1.3)."""
    out, run = [], []

    def flush():
        if run:
            raw = "".join(run).encode("utf-16-be")
            out.append("&" + base64.b64encode(raw).decode("ascii").rstrip("=").replace("/", ",") + "-")
            run.clear()

    for ch in name:
        if 0x20 <= ord(ch) <= 0x7E:
            flush()
            out.append("&-" if ch == "&" else ch)
        else:
            run.append(ch)
    flush()
    return "".join(out)


def quote(s: str) -> str:
    if any(c in s for c in "\r\n\0"):
        raise SeedError("mailbox name %r contains CR, LF or NUL" % s)
    return '"' + s.replace("\\", "\\\\").replace('"', '\\"') + '"'


def check(typ, data, what):
    if typ != "OK":
        raise SeedError("%s failed: %s %s" % (what, typ, b" ".join(
            d if isinstance(d, bytes) else str(d).encode() for d in data if d).decode("utf-8", "replace")))
    return data


def connect(args):
    try:
        ctx = ssl.create_default_context(cafile=args.ca_file)
    except (OSError, ssl.SSLError) as e:
        raise SeedError("cannot load CA file %s: %s" % (args.ca_file, e))
    try:
        if args.plaintext:
            # Only for test servers that have no TLS at all (fault-injection tests).
            imap = imaplib.IMAP4(args.host, args.port)
        elif args.starttls:
            imap = imaplib.IMAP4(args.host, args.port)
            check(*imap.starttls(ssl_context=ctx), what="STARTTLS")
        else:
            imap = imaplib.IMAP4_SSL(args.host, args.port, ssl_context=ctx)
    except (OSError, imaplib.IMAP4.error) as e:
        raise SeedError("cannot connect to %s:%d: %s" % (args.host, args.port, e))
    try:
        with open(args.password_file, encoding="utf-8") as f:
            password = f.read().rstrip("\r\n")
    except OSError as e:
        raise SeedError("cannot read password file: %s" % e)
    try:
        check(*imap.login(args.user, password), what="LOGIN")
    except imaplib.IMAP4.error as e:
        msg = e.args[0] if e.args else e
        if isinstance(msg, bytes):
            msg = msg.decode("utf-8", "replace")
        raise SeedError("LOGIN as %s failed: %s" % (args.user, msg))
    return imap


def separator(imap) -> str | None:
    data = check(*imap.list('""', '""'), what='LIST "" ""')
    line = data[0]
    if isinstance(line, tuple):
        line = line[0]
    line = (line or b"").decode("utf-8", "replace")
    m = re.match(r'^\([^)]*\) (NIL|"((?:[^"\\]|\\.)*)")', line, re.I)
    if not m:
        raise SeedError('cannot parse LIST "" "" reply: %r' % line)
    if m.group(1).upper() == "NIL":
        return None
    return re.sub(r"\\(.)", r"\1", m.group(2))


def server_name(folder: str, sep, prefix: str) -> str:
    parts = folder.split("/")
    if any(p == "" for p in parts):
        raise SeedError("bad folder name %r in manifest" % folder)
    if len(parts) == 1 and folder.upper() == "INBOX":
        return "INBOX"
    if sep is None:
        if len(parts) > 1:
            raise SeedError("server has no hierarchy separator but %r is nested" % folder)
    else:
        for p in parts:
            if sep in p:
                raise SeedError("folder %r has a component containing the server separator %r"
                                % (folder, sep))
    return prefix + (sep or "").join(parts)


def ensure_folder(imap, name: str, created: set):
    if name.upper() == "INBOX" or name in created:
        return
    enc = quote(mutf7_encode(name))
    typ, data = imap.create(enc)
    text = b" ".join(d for d in data if isinstance(d, bytes)).decode("utf-8", "replace")
    if typ != "OK" and "ALREADYEXISTS" not in text.upper() and "already exists" not in text.lower():
        # Courier refuses an existing folder without saying so ("Cannot create this
        # folder."): the folder is there if LIST shows it.
        ltyp, ldata = imap.list('""', enc)
        if ltyp != "OK" or not [d for d in ldata if d]:
            raise SeedError("CREATE %s failed: %s %s" % (enc, typ, text))
    created.add(name)


def append(imap, name: str, flags: str, idate: str, data: bytes):
    if b"\0" in data:
        raise SeedError("message contains a NUL byte; cannot APPEND without BINARY")
    if idate and not DATE_RE.match(idate):
        raise SeedError("bad internaldate %r" % idate)
    enc = quote(mutf7_encode(name))
    try:
        typ, resp = imap.append(enc, "(%s)" % flags if flags else None,
                                '"%s"' % idate if idate else None, data)
    except imaplib.IMAP4.error as e:
        raise SeedError("APPEND to %s failed: %s" % (enc, e))
    check(typ, resp, "APPEND to %s" % enc)


def read_manifest(path):
    try:
        with open(path, encoding="utf-8", newline="") as f:
            lines = f.read().splitlines()
    except OSError as e:
        raise SeedError("cannot read manifest: %s" % e)
    if not lines or lines[0].split("\t") != ["folder", "file", "flags", "internaldate"]:
        raise SeedError("%s: bad header line" % path)
    rows = []
    for n, line in enumerate(lines[1:], 2):
        if not line.strip():
            continue
        cols = line.split("\t")
        if len(cols) != 4:
            raise SeedError("%s:%d: expected 4 tab-separated columns, got %d" % (path, n, len(cols)))
        rows.append(cols)
    return rows


def synthetic(seed: str, i: int) -> bytes:
    h = hashlib.sha256(("%s/%d" % (seed, i)).encode()).digest()
    size = 2048 + int.from_bytes(h[:4], "big") % (8 * 1024 - 600)
    words = ("alpha bravo charlie delta echo foxtrot golf hotel india juliet kilo lima mike "
             "november oscar papa quebec romeo sierra tango uniform victor whiskey xray").split()
    day = 1 + h[4] % 28
    hdr = ("From: Generator <gen@example.test>\r\n"
           "To: Seeded <seeded@example.test>\r\n"
           "Subject: synthetic message %d (seed %s)\r\n"
           "Date: %02d Mar 2022 %02d:%02d:%02d +0000\r\n"
           "Message-ID: <gen-%s-%d-%s@seed.example.test>\r\n"
           "MIME-Version: 1.0\r\n"
           "Content-Type: text/plain; charset=us-ascii\r\n\r\n"
           % (i, seed, day, h[5] % 24, h[6] % 60, h[7] % 60, seed, i, h[8:12].hex()))
    body, k = [], 0
    total = len(hdr)
    while total < size:
        line = " ".join(words[(h[(k + j) % 32] + k + j) % len(words)] for j in range(10))
        body.append(line)
        total += len(line) + 2
        k += 1
    return (hdr + "\r\n".join(body) + "\r\n").encode("ascii")


def synthetic_flags(i: int) -> str:
    """Flags of the i-th synthetic message: a cycle of read, answered, unread and
    flagged-with-a-keyword, so copies have flags to get right."""
    return ["\\Seen", "\\Seen \\Answered", "", "\\Flagged $Work"][i % 4]


def synthetic_date(seed: str, i: int) -> str:
    h = hashlib.sha256(("date/%s/%d" % (seed, i)).encode()).digest()
    months = "Jan Feb Mar Apr May Jun Jul Aug Sep Oct Nov Dec".split()
    return "%02d-%s-%d %02d:%02d:%02d +0000" % (
        1 + h[0] % 28, months[h[1] % 12], 2015 + h[2] % 10, h[3] % 24, h[4] % 60, h[5] % 60)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--host", default="localhost")
    ap.add_argument("--port", type=int, default=10993)
    ap.add_argument("--user", required=True)
    ap.add_argument("--password-file", required=True)
    ap.add_argument("--ca-file", required=True)
    ap.add_argument("--manifest", default=DEFAULT_MANIFEST)
    ap.add_argument("--folder-prefix", default="")
    ap.add_argument("--starttls", action="store_true", help="plain IMAP port + STARTTLS")
    ap.add_argument("--plaintext", action="store_true", help="no TLS at all (test servers without TLS only)")
    ap.add_argument("--generate", type=int, metavar="N", help="append N synthetic messages instead")
    ap.add_argument("--folder", help="target folder for --generate (manifest form, / separator)")
    ap.add_argument("--seed", default="0", help="seed for --generate")
    args = ap.parse_args(argv)
    if args.generate is not None and (args.generate < 0 or not args.folder):
        ap.error("--generate N needs N >= 0 and --folder")

    imap = None
    try:
        if args.generate is None:
            rows = read_manifest(args.manifest)
            base = os.path.dirname(os.path.abspath(args.manifest))
            msgs = []
            for folder, fname, flags, idate in rows:
                try:
                    with open(os.path.join(base, fname), "rb") as f:
                        msgs.append((folder, f.read(), flags.strip(), idate.strip()))
                except OSError as e:
                    raise SeedError("cannot read %s: %s" % (fname, e))
        else:
            msgs = [(args.folder, synthetic(args.seed, i), synthetic_flags(i),
                     synthetic_date(args.seed, i))
                    for i in range(args.generate)]

        imap = connect(args)
        sep = separator(imap)
        counts = OrderedDict()
        created = set()
        for folder, data, flags, idate in msgs:
            name = server_name(folder, sep, args.folder_prefix)
            ensure_folder(imap, name, created)
            append(imap, name, flags, idate, data)
            counts[name] = counts.get(name, 0) + 1
        if args.generate == 0:
            ensure_folder(imap, server_name(args.folder, sep, args.folder_prefix), created)
        for name, n in counts.items():
            print("%6d  %s" % (n, name))
        print("%6d  total (separator %s)" % (sum(counts.values()), "NIL" if sep is None else repr(sep)))
        return 0
    except SeedError as e:
        print("seed.py: error: %s" % e, file=sys.stderr)
        return 1
    except (OSError, imaplib.IMAP4.error, ssl.SSLError) as e:
        print("seed.py: error: %s: %s" % (type(e).__name__, e), file=sys.stderr)
        return 1
    finally:
        if imap is not None:
            try:
                imap.logout()
            except Exception:
                pass


if __name__ == "__main__":
    sys.exit(main())
