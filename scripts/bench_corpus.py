#!/usr/bin/env python3
"""Write a deterministic benchmark corpus straight into a Dovecot Maildir.

    python3 scripts/bench_corpus.py --dir DOVECOT_DIR --user USER \
        --corpus mixed|small [--count N] [--seed S]

Used by scripts/bench.sh. The messages go to DOVECOT_DIR/mail/USER (the
mail_location of scripts/testbed.sh) in Maildir++ layout:

    INBOX          DIR/mail/USER/cur/<unique>:2,<flags>
    Archive/2023   DIR/mail/USER/.Archive.2023/cur/...   (+ an empty maildirfolder)

Writing files is much faster than APPENDing 10,000 messages over IMAP; Dovecot
indexes them on first access. Each file's mtime is its INTERNALDATE. When run as
root the user's Maildir is chowned to the `mail` user, as testbed.sh runs
Dovecot's mail processes under that uid.

Corpora (sizes are of the generated files, LF line endings; IMAP serves CRLF):
  mixed  default 1,019 messages: 70% 2-10 KB, 25% 20-200 KB, 5% 1-5 MB
         (a base64 attachment of pseudo-random bytes), ~150 MiB
  small  default 10,189 messages, all 2-10 KB, ~65 MiB
Both: spread over INBOX, Archive, Archive/2023, Sent and Projects; \\Seen,
\\Flagged and \\Answered mixed; ~5% without Message-ID; ~2% exact duplicates of
another message of the same folder (same bytes, same flags).

The output is a function of (corpus, count, seed) only: the same arguments give
the same bytes, file names and dates. A summary is printed as JSON.
"""
import argparse
import base64
import json
import os
import random
import shutil
import sys
import time

FOLDERS = [  # (IMAP name, share)
    ("INBOX", 0.40),
    ("Archive", 0.20),
    ("Archive/2023", 0.15),
    ("Sent", 0.15),
    ("Projects", 0.10),
]
BASE_TIME = 1672531200  # 2023-01-01 00:00:00 UTC
SPAN = 365 * 86400
WORDS = ("the of and to in is that for it as was with be by on not he this are or his from at "
         "which but have an they you were her she there been one all we their has would when "
         "if so no will more can who about up said out them some could what into than then "
         "project meeting invoice report archive budget deadline review draft release server "
         "mailbox folder migration backup schedule quarterly update notes attached please "
         "regards thanks team customer contract proposal agenda minutes summary").split()
NAMES = ["Anna Muster", "Bruno Keller", "Chloé Favre", "David Weber", "Eva Rossi",
         "Fabian Meier", "Gina Huber", "Hugo Baumann", "Iris Frei", "Jonas Schmid"]


def folder_dir(root: str, name: str) -> str:
    if name == "INBOX":
        return root
    return os.path.join(root, "." + name.replace("/", "."))


def text_pool(rng: random.Random, size: int) -> str:
    """A block of word-wrapped pseudo-text, sliced for message bodies."""
    words = rng.choices(WORDS, k=size // 5)
    lines, line, n = [], [], 0
    for w in words:
        if n + len(w) + 1 > 72:
            lines.append(" ".join(line))
            line, n = [], 0
        line.append(w)
        n += len(w) + 1
    lines.append(" ".join(line))
    return "\n".join(lines) + "\n"


def body_text(rng: random.Random, pool: str, size: int) -> str:
    start = rng.randrange(0, len(pool) - size - 200)
    start = pool.index("\n", start) + 1
    end = pool.index("\n", start + size) + 1
    return pool[start:end]


def rfc2822_date(t: int) -> str:
    return time.strftime("%a, %d %b %Y %H:%M:%S +0000", time.gmtime(t))


def make_message(rng, pool, corpus, i, folder, target_size, with_mid, attach):
    t = BASE_TIME + rng.randrange(SPAN)
    a, b = rng.sample(NAMES, 2)
    addr = lambda n: n.split()[0].lower().replace("é", "e") + "@bench.example"
    if folder == "Sent":
        a, b = "Bench User", a
    hdr = [
        "Return-Path: <%s>" % addr(a),
        "Received: from mx.bench.example by mail.bench.example; %s" % rfc2822_date(t),
        "From: %s <%s>" % (a, addr(a)),
        "To: %s <%s>" % (b, addr(b)),
        "Subject: [%s #%d] %s" % (corpus, i, " ".join(rng.choices(WORDS, k=5))),
        "Date: %s" % rfc2822_date(t),
    ]
    if with_mid:
        hdr.append("Message-ID: <%s.%d.%08x@bench.example>" % (corpus, i, rng.getrandbits(32)))
    hdr.append("MIME-Version: 1.0")
    if not attach:
        hdr.append("Content-Type: text/plain; charset=utf-8")
        hdr.append("Content-Transfer-Encoding: 8bit")
        head = "\n".join(hdr) + "\n\n"
        body = body_text(rng, pool, max(200, target_size - len(head)))
        return t, (head + body).encode("utf-8")
    boundary = "=_bench_%d_%08x" % (i, rng.getrandbits(32))
    hdr.append('Content-Type: multipart/mixed; boundary="%s"' % boundary)
    head = "\n".join(hdr) + "\n\n"
    intro = body_text(rng, pool, 1500)
    raw_len = max(1024, (target_size - len(head) - 2000) * 57 // 78)
    payload = base64.encodebytes(rng.randbytes(raw_len)).decode("ascii")
    parts = [
        head,
        "This is a multi-part message in MIME format.\n\n",
        "--%s\nContent-Type: text/plain; charset=utf-8\nContent-Transfer-Encoding: 8bit\n\n" % boundary,
        intro,
        "\n--%s\nContent-Type: application/octet-stream; name=\"data-%d.bin\"\n"
        "Content-Transfer-Encoding: base64\n"
        "Content-Disposition: attachment; filename=\"data-%d.bin\"\n\n" % (boundary, i, i),
        payload,
        "\n--%s--\n" % boundary,
    ]
    return t, "".join(parts).encode("utf-8")


def size_for(rng: random.Random, cls: str) -> int:
    if cls == "s":  # 2-10 KB, most around 6-9 KB
        return int(rng.triangular(2 * 1024, 10 * 1024, 8 * 1024))
    if cls == "m":  # 20-200 KB, log-uniform
        return int(20 * 1024 * 10 ** rng.random())
    # 1-5 MB, log-uniform (more 1-2 MB attachments than 4-5 MB ones)
    return int(1024 * 1024 * 5 ** rng.random())


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--dir", required=True, help="the Dovecot directory of scripts/testbed.sh")
    ap.add_argument("--user", required=True)
    ap.add_argument("--corpus", choices=["mixed", "small"], required=True)
    ap.add_argument("--count", type=int, help="messages (default 1019 mixed, 10189 small)")
    ap.add_argument("--seed", default="mailferry-bench-1")
    args = ap.parse_args()

    count = args.count or (1019 if args.corpus == "mixed" else 10189)
    rng = random.Random("%s/%s/%d" % (args.seed, args.corpus, count))
    pool = text_pool(rng, 400_000)

    n_dup = round(count * 0.02)
    n_unique = count - n_dup
    if args.corpus == "mixed":
        n_l = max(1, round(n_unique * 0.05)) if n_unique >= 10 else 0
        n_m = round(n_unique * 0.25)
        classes = ["l"] * n_l + ["m"] * n_m + ["s"] * (n_unique - n_l - n_m)
    else:
        classes = ["s"] * n_unique
    rng.shuffle(classes)
    no_mid = set(rng.sample(range(n_unique), round(n_unique * 0.05)))
    names = [f for f, _ in FOLDERS]
    weights = [w for _, w in FOLDERS]

    root = os.path.join(args.dir, "mail", args.user)
    if os.path.exists(root):
        shutil.rmtree(root)
    for name in names:
        d = folder_dir(root, name)
        for sub in ("cur", "new", "tmp"):
            os.makedirs(os.path.join(d, sub), exist_ok=True)
        if name != "INBOX":
            open(os.path.join(d, "maildirfolder"), "wb").close()

    per_folder = {n: {"messages": 0, "bytes": 0, "duplicates": 0} for n in names}
    written = {n: [] for n in names}  # folder -> [(t, data, flags)]
    total_bytes = 0
    seq = 0

    def write(folder, t, data, flags):
        nonlocal total_bytes, seq
        seq += 1
        fn = "%d.M%06dP1.bench,S=%d:2,%s" % (t, seq, len(data), flags)
        path = os.path.join(folder_dir(root, folder), "cur", fn)
        with open(path, "wb") as f:
            f.write(data)
        os.utime(path, (t, t))
        per_folder[folder]["messages"] += 1
        per_folder[folder]["bytes"] += len(data)
        total_bytes += len(data)

    # Duplicates are spread evenly between the unique messages.
    dup_at = set(rng.sample(range(1, n_unique), n_dup)) if n_unique > 1 and n_dup else set()
    dups_left = n_dup
    for i in range(n_unique):
        folder = rng.choices(names, weights)[0]
        cls = classes[i]
        t, data = make_message(rng, pool, args.corpus, i, folder, size_for(rng, cls),
                               i not in no_mid, cls == "l")
        flags = ""
        r = rng.random()
        if rng.random() < 0.12:
            flags += "F"
        if r < 0.15:
            flags += "R"
        if r < 0.75 or folder == "Sent":
            flags += "S"
        write(folder, t, data, flags)
        written[folder].append((t, data, flags))
        if i in dup_at and dups_left:
            cands = [f for f in names if written[f]]
            f = rng.choice(cands)
            t0, d0, fl0 = rng.choice(written[f])
            write(f, t0, d0, fl0)
            per_folder[f]["duplicates"] += 1
            dups_left -= 1
    while dups_left:  # tiny corpora: make sure the count is exact
        f = next(f for f in names if written[f])
        t0, d0, fl0 = written[f][0]
        write(f, t0, d0, fl0)
        per_folder[f]["duplicates"] += 1
        dups_left -= 1

    if os.geteuid() == 0:
        import pwd
        pw = pwd.getpwnam("mail")
        for dirpath, dirnames, filenames in os.walk(root):
            os.chown(dirpath, pw.pw_uid, pw.pw_gid)
            for fn in filenames:
                os.chown(os.path.join(dirpath, fn), pw.pw_uid, pw.pw_gid)

    json.dump({"corpus": args.corpus, "user": args.user, "messages": count,
               "bytes": total_bytes, "without_message_id": len(no_mid),
               "duplicates": n_dup, "folders": per_folder}, sys.stdout)
    print()


if __name__ == "__main__":
    main()
