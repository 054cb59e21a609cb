#!/usr/bin/env python3
"""Timing, checking and reporting for scripts/bench.sh (Python 3 standard library only).

    bench_measure.py [--label L] [--out RESULTS.jsonl] [--log FILE] -- CMD...
        Run CMD, measure its wall-clock seconds and the peak RSS of the child
        (VmHWM sampled from /proc, and resource.getrusage(RUSAGE_CHILDREN).ru_maxrss
        which cannot go below this wrapper's own size; see poll_hwm) and print them as one JSON
        line (also appended to RESULTS.jsonl). CMD's stdout goes to --log (default:
        inherited), its stderr to LOG.err. Exit status: CMD's.

    bench_measure.py snapshot --user U --out SNAP.json  IMAP...
        Read every folder of an account over IMAPS (counts, bytes, and per message
        the SHA-256 of the bytes, flags, INTERNALDATE) into SNAP.json.

    bench_measure.py verify --mode exact|mbsync|pop3 --source SNAP.json --user U IMAP...
        Compare the target account U with the source snapshot, independently of the
        tool that filled it; print a JSON verdict; exit 1 when it is wrong.
          exact   (mailferry) every source folder exists; per folder the set of message
                  SHA-256s is the source's, count = distinct source messages (identical
                  copies within a folder are collapsed), flags and INTERNALDATE match
          mbsync  per folder count = source count, and the multiset of SHA-256s equals
                  the source's once the X-TUID: header mbsync adds is removed
          pop3    INBOX only: distinct source INBOX messages, dates from Received:
    bench_measure.py verify-mbox --source SNAP.json --dir BACKUP_DIR
        Parse the mboxrd files of a mailferry backup (FOLDER.mbox) and compare them as
        in `exact` (messages and their bytes; flags and dates are in the manifest).
    bench_measure.py check-noop --summary JSON --source SNAP.json --user U IMAP...
        A re-run that must copy nothing: mailferry's --json summary says 0 copied, and
        every target folder still holds the distinct source messages (STATUS).
    bench_measure.py count --user U IMAP...
        Message count per folder (STATUS), as JSON.

    IMAP = --host H --port P --password-file F --ca-file CERT.pem

    bench_measure.py dump --user U IMAP... [--plaintext]
        Every folder of an account with bodies, flags and INTERNALDATE, as JSON: how the
        tests read results back, independently of mailferry's own IMAP code.

    bench_measure.py table --results RESULTS.jsonl
        Print the benchmark table from the results bench.sh collected.
"""
import argparse
import base64
import datetime
import hashlib
import imaplib
import json
import os
import re
import resource
import shutil
import ssl
import subprocess
import sys
import threading
import time


# ---------------------------------------------------------------- run and measure

def poll_hwm(proc, exe, hwm):
    """Peak RSS (VmHWM, KiB) of the child once it runs `exe`.

    getrusage(RUSAGE_CHILDREN).ru_maxrss alone is not enough: at exec the kernel
    keeps the high-water mark of the memory the child had before (this Python
    process's, ~20 MB, as subprocess forks with vfork), so it never reports less
    than the wrapper's own size. VmHWM in /proc/PID/status belongs to the exec'd
    program only and never decreases, so sampling it until exit loses at most the
    last 10 ms. Both values are printed; peak_rss_mb is this one.
    """
    path = "/proc/%d/status" % proc.pid
    while proc.poll() is None:
        try:
            if os.path.realpath("/proc/%d/exe" % proc.pid) == exe:
                with open(path) as f:
                    for line in f:
                        if line.startswith("VmHWM:"):
                            hwm[0] = max(hwm[0], int(line.split()[1]))
                            break
        except OSError:
            pass
        time.sleep(0.01)


def cmd_run(argv):
    ap = argparse.ArgumentParser(prog="bench_measure.py")
    ap.add_argument("--label", default="")
    ap.add_argument("--out")
    ap.add_argument("--log", help="CMD's stdout goes here, its stderr to LOG.err")
    ap.add_argument("cmd", nargs=argparse.REMAINDER)
    args = ap.parse_args(argv)
    cmd = args.cmd[1:] if args.cmd and args.cmd[0] == "--" else args.cmd
    if not cmd:
        ap.error("no command given (bench_measure.py [options] -- CMD...)")
    out = open(args.log, "ab") if args.log else None
    err = open(args.log + ".err", "ab") if args.log else None
    exe = os.path.realpath(shutil.which(cmd[0]) or cmd[0])
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=out, stderr=err)
    hwm = [0]
    poller = threading.Thread(target=poll_hwm, args=(proc, exe, hwm), daemon=True)
    poller.start()
    rc = proc.wait()
    wall = time.perf_counter() - t0
    poller.join()
    rss_kb = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss  # KiB on Linux
    res = {"label": args.label, "cmd": cmd, "exit": rc, "wall_s": round(wall, 3),
           # VmHWM of the tool itself, sampled every 10 ms (see poll_hwm)
           "peak_rss_mb": round((hwm[0] or rss_kb) / 1024, 1),
           "ru_maxrss_mb": round(rss_kb / 1024, 1),
           "wrapper_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)}
    line = json.dumps(res)
    print(line)
    if args.out:
        with open(args.out, "a") as f:
            f.write(line + "\n")
    return rc


# ---------------------------------------------------------------- IMAP reading

def imap_args(ap):
    ap.add_argument("--host", default="localhost")
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--user", required=True)
    ap.add_argument("--password-file", required=True)
    ap.add_argument("--ca-file", required=True)


def connect(a):
    if getattr(a, "plaintext", False):
        im = imaplib.IMAP4(a.host, a.port)
    else:
        ctx = ssl.create_default_context(cafile=a.ca_file)
        im = imaplib.IMAP4_SSL(a.host, a.port, ssl_context=ctx)
    with open(a.password_file) as f:
        pw = f.readline().rstrip("\r\n")
    im.login(a.user, pw)
    return im


LIST_RE = re.compile(rb'^\((?P<attrs>[^)]*)\) (?:"(?P<sep>[^"]*)"|NIL) (?P<name>.*)$')


def mutf7_decode(s: str) -> str:
    import base64
    out, i = [], 0
    while i < len(s):
        if s[i] == "&":
            j = s.index("-", i)
            if j == i + 1:
                out.append("&")
            else:
                b = s[i + 1:j].replace(",", "/")
                b += "=" * (-len(b) % 4)
                out.append(base64.b64decode(b).decode("utf-16-be"))
            i = j + 1
        else:
            out.append(s[i])
            i += 1
    return "".join(out)


def list_folders(im):
    """[(display name with '/', server name as sent)] of selectable folders."""
    typ, data = im.list('""', "*")
    assert typ == "OK", data
    res = []
    for item in data:
        if isinstance(item, tuple):  # a literal name
            head, name = item
            m = LIST_RE.match(head.rstrip(b"{0123456789}").rstrip() + b" x")
            raw = name
        else:
            m = LIST_RE.match(item)
            raw = m.group("name") if m else None
        if not m:
            continue
        if b"\\noselect" in m.group("attrs").lower() or b"\\nonexistent" in m.group("attrs").lower():
            continue
        raw = raw.decode()
        if raw.startswith('"'):
            raw = raw[1:-1].replace('\\"', '"').replace("\\\\", "\\")
        sep = (m.group("sep") or b"/").decode()
        res.append((mutf7_decode(raw).replace(sep, "/"), raw))
    return res


def quote(s):
    return '"' + s.replace("\\", "\\\\").replace('"', '\\"') + '"'


FETCH_RE = re.compile(rb"UID (\d+)|FLAGS \(([^)]*)\)|INTERNALDATE \"([^\"]+)\"")


def read_folder(im, server_name, bodies=True, keep_bodies=False):
    typ, data = im.select(quote(server_name), readonly=True)
    assert typ == "OK", (server_name, data)
    typ, data = im.uid("SEARCH", "ALL")
    assert typ == "OK", data
    uids = data[0].split()
    msgs = []
    step = 100
    for k in range(0, len(uids), step):
        chunk = b",".join(uids[k:k + step]).decode()
        what = "(UID FLAGS INTERNALDATE BODY.PEEK[])" if bodies else "(UID FLAGS INTERNALDATE RFC822.SIZE)"
        typ, data = im.uid("FETCH", chunk, what)
        assert typ == "OK", data
        for item in data:
            if not isinstance(item, tuple):
                continue
            head, body = item
            uid = flags = idate = None
            for m in FETCH_RE.finditer(head):
                if m.group(1):
                    uid = int(m.group(1))
                elif m.group(2) is not None:
                    flags = m.group(2).decode()
                elif m.group(3):
                    idate = m.group(3).decode()
            if flags is None:
                # FLAGS after the literal: in the trailing ")" part; rare, re-fetch
                typ, d2 = im.uid("FETCH", str(uid), "(FLAGS)")
                flags = re.search(rb"FLAGS \(([^)]*)\)", d2[0]).group(1).decode()
            fl = sorted(f for f in flags.split() if f.lower() != "\\recent")
            hend = body.find(b"\r\n\r\n")
            mid = re.search(rb"^message-id:", body[:hend], re.M | re.I) is not None
            m = {"uid": uid, "flags": fl, "date": idate, "size": len(body), "mid": mid,
                 "sha": hashlib.sha256(body).hexdigest(),
                 "sha_notuid": hashlib.sha256(strip_tuid(body)).hexdigest()}
            if keep_bodies:
                m["body"] = base64.b64encode(body).decode()
            msgs.append(m)
    return msgs


TUID_RE = re.compile(rb"^X-TUID: [^\r\n]*\r?\n", re.M | re.I)


def strip_tuid(body: bytes) -> bytes:
    end = body.find(b"\r\n\r\n")
    if end < 0:
        return body
    head = body[:end + 2]
    if b"X-TUID" not in head and b"x-tuid" not in head.lower():
        return body
    return TUID_RE.sub(b"", head) + body[end + 2:]


def snapshot(a):
    im = connect(a)
    folders = {}
    for name, raw in list_folders(im):
        folders[name] = read_folder(im, raw)
    im.logout()
    return folders


def cmd_snapshot(argv):
    ap = argparse.ArgumentParser(prog="bench_measure.py snapshot")
    imap_args(ap)
    ap.add_argument("--out", required=True)
    ap.add_argument("--corpus", help="with --results: record this snapshot as the corpus NAME")
    ap.add_argument("--results")
    a = ap.parse_args(argv)
    snap = snapshot(a)
    with open(a.out, "w") as f:
        json.dump(snap, f)
    rec = {"kind": "corpus", "corpus": a.corpus, "user": a.user,
           "messages": sum(len(v) for v in snap.values()),
           "bytes": sum(m["size"] for v in snap.values() for m in v),
           "distinct": sum(len({m["sha"] for m in v}) for v in snap.values()),
           "without_message_id": sum(1 for v in snap.values() for m in v if not m["mid"]),
           "inbox_messages": len(snap.get("INBOX", [])),
           "inbox_bytes": sum(m["size"] for m in snap.get("INBOX", [])),
           "folders": {k: len(v) for k, v in snap.items()}}
    print(json.dumps(rec))
    if a.results and a.corpus:
        with open(a.results, "a") as f:
            f.write(json.dumps(rec) + "\n")
    return 0


def epoch(idate):
    """INTERNALDATE ("01-Jan-2020 10:00:00 +0100", day maybe space-padded) as seconds."""
    return int(datetime.datetime.strptime(idate.strip(), "%d-%b-%Y %H:%M:%S %z").timestamp())


def cmd_dump(argv):
    """Every selectable folder of an account, for the tests: JSON {folder: [{body (base64),
    flags (sorted, no \\Recent), date (INTERNALDATE, epoch seconds)}]}, folder names decoded
    from modified UTF-7 with "/" as separator. Read with Python's imaplib, so the tests
    never read results back through mailferry's own IMAP code."""
    ap = argparse.ArgumentParser(prog="bench_measure.py dump")
    imap_args(ap)
    ap.add_argument("--plaintext", action="store_true", help="no TLS (test servers without TLS)")
    a = ap.parse_args(argv)
    im = connect(a)
    out = {}
    for name, raw in list_folders(im):
        out[name] = [{"body": m["body"], "flags": m["flags"], "date": epoch(m["date"])}
                     for m in read_folder(im, raw, keep_bodies=True)]
    im.logout()
    json.dump(out, sys.stdout)
    return 0


def cmd_check_noop(argv):
    """A re-run that must copy nothing: its JSON summary, and the target's counts."""
    ap = argparse.ArgumentParser(prog="bench_measure.py check-noop")
    imap_args(ap)
    ap.add_argument("--summary", required=True, help="mailferry --json output of the re-run")
    ap.add_argument("--source", required=True)
    ap.add_argument("--label", default="")
    ap.add_argument("--out")
    a = ap.parse_args(argv)
    problems = []
    try:
        with open(a.summary) as f:
            summ = json.load(f)
        if summ.get("copied") != 0 or summ.get("failed"):
            problems.append("the re-run copied %s and failed %s" % (summ.get("copied"), summ.get("failed")))
    except (OSError, ValueError) as e:
        problems.append("no JSON summary: %s" % e)
    with open(a.source) as f:
        src = json.load(f)
    im = connect(a)
    got = {}
    for name, raw in list_folders(im):
        typ, data = im.status(quote(raw), "(MESSAGES)")
        got[name] = int(re.search(rb"MESSAGES (\d+)", data[0]).group(1))
    im.logout()
    for name, msgs in src.items():
        want = len({m["sha"] for m in msgs})
        if got.get(name) != want:
            problems.append("%s: %s messages after the re-run, expected %d" % (name, got.get(name), want))
    res = {"label": a.label, "mode": "noop", "ok": not problems, "problems": problems}
    line = json.dumps(res)
    print(line)
    if a.out:
        with open(a.out, "a") as f:
            f.write(line + "\n")
    return 0 if not problems else 1


def cmd_count(argv):
    ap = argparse.ArgumentParser(prog="bench_measure.py count")
    imap_args(ap)
    a = ap.parse_args(argv)
    im = connect(a)
    res = {}
    for name, raw in list_folders(im):
        typ, data = im.status(quote(raw), "(MESSAGES)")
        res[name] = int(re.search(rb"MESSAGES (\d+)", data[0]).group(1))
    im.logout()
    print(json.dumps(res))
    return 0


# ---------------------------------------------------------------- verification

def compare_exact(src_folders, dst_folders, check_flags=True, check_dates=True):
    """mailferry's promise: per folder, the distinct source messages, byte for byte."""
    problems, counts = [], {}
    for name, smsgs in src_folders.items():
        want = {}
        for m in smsgs:
            want.setdefault(m["sha"], m)
        got = dst_folders.get(name)
        if got is None:
            problems.append("%s: missing on the target" % name)
            continue
        counts[name] = [len(smsgs), len(want), len(got)]
        gshas = [m["sha"] for m in got]
        if len(got) != len(want):
            problems.append("%s: %d messages, expected %d distinct" % (name, len(got), len(want)))
        missing = set(want) - set(gshas)
        extra = set(gshas) - set(want)
        if missing:
            problems.append("%s: %d source messages missing or changed" % (name, len(missing)))
        if extra:
            problems.append("%s: %d target messages not in the source" % (name, len(extra)))
        bad_flags = bad_dates = 0
        for m in got:
            s = want.get(m["sha"])
            if not s:
                continue
            if check_flags and s["flags"] != m["flags"]:
                bad_flags += 1
            if check_dates and s["date"] != m["date"]:
                bad_dates += 1
        if bad_flags:
            problems.append("%s: %d messages with other flags" % (name, bad_flags))
        if bad_dates:
            problems.append("%s: %d messages with another INTERNALDATE" % (name, bad_dates))
    return problems, counts


def compare_mbsync(src_folders, dst_folders):
    problems, counts = [], {}
    for name, smsgs in src_folders.items():
        got = dst_folders.get(name)
        if got is None:
            problems.append("%s: missing on the target" % name)
            continue
        counts[name] = [len(smsgs), len({m["sha"] for m in smsgs}), len(got)]
        if len(got) != len(smsgs):
            problems.append("%s: %d messages, expected %d" % (name, len(got), len(smsgs)))
        if sorted(m["sha"] for m in smsgs) != sorted(m["sha_notuid"] for m in got):
            problems.append("%s: bodies differ from the source even without X-TUID" % name)
        sflags = sorted((m["sha"], tuple(m["flags"]), m["date"]) for m in smsgs)
        gflags = sorted((m["sha_notuid"], tuple(m["flags"]), m["date"]) for m in got)
        if sflags != gflags:
            problems.append("%s: flags or INTERNALDATEs differ" % name)
    return problems, counts


def cmd_verify(argv):
    ap = argparse.ArgumentParser(prog="bench_measure.py verify")
    imap_args(ap)
    ap.add_argument("--mode", choices=["exact", "mbsync", "pop3"], required=True)
    ap.add_argument("--source", required=True, help="snapshot JSON of the source")
    ap.add_argument("--label", default="")
    ap.add_argument("--out")
    a = ap.parse_args(argv)
    with open(a.source) as f:
        src = json.load(f)
    dst = snapshot(a)
    if a.mode == "exact":
        problems, counts = compare_exact(src, dst)
    elif a.mode == "pop3":
        # POP3 carries no flags; the date comes from the Received: header, which
        # the corpus writes equal to the source INTERNALDATE.
        problems, counts = compare_exact({"INBOX": src["INBOX"]}, {"INBOX": dst.get("INBOX", [])},
                                         check_flags=False)
    else:
        problems, counts = compare_mbsync(src, dst)
    extra = sorted(set(dst) - set(src)) if a.mode != "pop3" else []
    res = {"label": a.label, "user": a.user, "mode": a.mode, "ok": not problems,
           "problems": problems, "extra_folders": extra,
           "counts": counts,  # folder: [source messages, distinct, target messages]
           "target_messages": sum(len(v) for v in dst.values())}
    line = json.dumps(res)
    print(line)
    if a.out:
        with open(a.out, "a") as f:
            f.write(line + "\n")
    return 0 if not problems else 1


FROM_LINE = re.compile(rb"^From \S+ +\w{3} \w{3} [ \d]\d \d\d:\d\d:\d\d \d{4}\r?\n$")
QUOTED = re.compile(rb"^>+From ")


def read_mboxrd(path):
    msgs, cur, prev_blank = [], None, True
    with open(path, "rb") as f:
        for line in f:
            if prev_blank and FROM_LINE.match(line):
                if cur is not None:
                    msgs.append(cur)
                cur = []
                prev_blank = False
                continue
            if QUOTED.match(line):
                line = line[1:]
            if cur is not None:
                cur.append(line)
            prev_blank = line in (b"\n", b"\r\n")
    if cur is not None:
        msgs.append(cur)
    out = []
    for lines in msgs:
        if lines and lines[-1] == b"\n":  # the blank line between messages
            lines = lines[:-1]
        out.append(b"".join(lines))
    return out


def cmd_verify_mbox(argv):
    ap = argparse.ArgumentParser(prog="bench_measure.py verify-mbox")
    ap.add_argument("--source", required=True)
    ap.add_argument("--dir", required=True)
    ap.add_argument("--label", default="")
    ap.add_argument("--out")
    a = ap.parse_args(argv)
    with open(a.source) as f:
        src = json.load(f)
    dst = {}
    for name in src:
        p = os.path.join(a.dir, name + ".mbox")
        if os.path.exists(p):
            dst[name] = [{"sha": hashlib.sha256(b).hexdigest(), "flags": [], "date": None}
                         for b in read_mboxrd(p)]
    problems, counts = compare_exact(src, dst, check_flags=False, check_dates=False)
    res = {"label": a.label, "mode": "mbox", "ok": not problems, "problems": problems,
           "counts": counts, "target_messages": sum(len(v) for v in dst.values())}
    line = json.dumps(res)
    print(line)
    if a.out:
        with open(a.out, "a") as f:
            f.write(line + "\n")
    return 0 if not problems else 1


# ---------------------------------------------------------------- the table

def median(xs):
    xs = sorted(xs)
    n = len(xs)
    return xs[n // 2] if n % 2 else (xs[n // 2 - 1] + xs[n // 2]) / 2


def cmd_table(argv):
    ap = argparse.ArgumentParser(prog="bench_measure.py table")
    ap.add_argument("--results", required=True)
    ap.add_argument("--profile", default="0/0",
                    help="RTT/MBIT of the link the runs went through (0/0: loopback)")
    a = ap.parse_args(argv)
    rtt, mbit = (float(x) for x in a.profile.split("/"))
    wan = (rtt, mbit) != (0, 0)
    # As scripts/bench.sh spells the profile in labels.
    prefix = "%sms-%smbit:" % tuple(a.profile.split("/")) if wan else ""
    runs, checks, corpora = {}, {}, {}
    with open(a.results) as f:
        for line in f:
            r = json.loads(line)
            kind = r.get("kind")
            if kind == "corpus":
                corpora[r["corpus"]] = r
            elif "wall_s" in r:
                # "mixed/mailferry@2" is round 2 of "mixed/mailferry"; a WAN profile's
                # runs are "30ms-100mbit:mixed/mailferry@2".
                label = r["label"]
                if (":" in label) != wan or not label.startswith(prefix):
                    continue
                runs.setdefault(label[len(prefix):].split("@")[0], []).append(
                    dict(r, label=label[len(prefix):]))
            elif "ok" in r:
                if r["label"].startswith(prefix) and (":" in r["label"]) == wan:
                    checks[r["label"][len(prefix):]] = r
    rows, rounds = [], []
    hdr = ("corpus", "run", "messages", "MB", "wall s", "range s", "msg/s", "MB/s",
           "peak RSS MB", "mf/mbsync", "floor s", "wall/floor", "result")
    any_bad = False
    for corpus, c in corpora.items():
        n_all, mb_all = c["messages"], c["bytes"] / 1e6
        n_inbox, mb_inbox = c["inbox_messages"], c["inbox_bytes"] / 1e6
        mb_runs = runs.get("%s/mbsync" % corpus, [])
        mb_wall = median([r["wall_s"] for r in mb_runs]) if mb_runs else None
        for tool, what, n, mb in (("mailferry", "IMAP->IMAP", n_all, mb_all),
                                  ("mbsync", "IMAP->IMAP", n_all, mb_all),
                                  ("mailferry", "POP3->IMAP (INBOX)", n_inbox, mb_inbox),
                                  ("mailferry", "IMAP->mbox", n_all, mb_all),
                                  ("mailferry", "IMAP->IMAP no-op re-run", n_all, mb_all)):
            key = {"IMAP->IMAP": tool, "POP3->IMAP (INBOX)": "pop3",
                   "IMAP->mbox": "mbox", "IMAP->IMAP no-op re-run": "noop"}[what]
            base = "%s/%s" % (corpus, key)
            rs = runs.get(base)
            if not rs:
                continue
            ok = True
            for r in rs:
                chk = checks.get(r["label"])
                ok &= r["exit"] == 0 and chk is not None and chk["ok"]
            any_bad |= not ok
            bad_exit = next((r["exit"] for r in rs if r["exit"]), 0)
            status = "ok" if ok else ("exit %d" % bad_exit if bad_exit else "WRONG")
            if ok and key == "mbsync":
                status = "ok (+X-TUID)"
            walls = [r["wall_s"] for r in rs]
            w = median(walls)
            spread = "%.2f-%.2f" % (min(walls), max(walls)) if len(walls) > 1 else ""
            ratio = ""
            if key == "mailferry" and mb_wall:
                ratio = "%.2fx" % (w / mb_wall)
                # Per round, mailferry against the mbsync run of the same round.
                by_round = {r["label"].split("@")[1]: r["wall_s"] for r in mb_runs if "@" in r["label"]}
                per = ["%.2f" % (r["wall_s"] / by_round[r["label"].split("@")[1]])
                       for r in rs if "@" in r["label"] and r["label"].split("@")[1] in by_round]
                if len(per) > 1:
                    rounds.append("%s: mf/mbsync per round %s" % (corpus, ", ".join(per)))
            # The link's floor: the bytes that must cross it at its rate (a copy moves
            # them down the source link and up the target link at the same time).
            floor = mb * 8 / mbit if wan and mbit and key != "noop" else None
            rows.append((corpus, "%s %s" % (tool, what), str(n), "%.1f" % mb, "%.2f" % w, spread,
                         "%.0f" % (n / w) if w else "-", "%.1f" % (mb / w) if w else "-",
                         "%.1f" % max(r["peak_rss_mb"] for r in rs), ratio,
                         "%.2f" % floor if floor else "", "%.2fx" % (w / floor) if floor else "",
                         status))
    if not wan:
        # Loopback has no link floor: the table keeps its columns of before.
        hdr = hdr[:10] + hdr[12:]
        rows = [r[:10] + r[12:] for r in rows]
    widths = [max(len(h), *(len(r[i]) for r in rows)) if rows else len(h) for i, h in enumerate(hdr)]
    last = len(hdr) - 1
    fmt = "  ".join("%%-%ds" % w if i < 2 or i == last else "%%%ds" % w for i, w in enumerate(widths))
    if wan:
        print("link: %g ms round trip, %g Mbit/s each way, one link to the source and one to the "
              "target (scripts/wanproxy.py)" % (rtt, mbit))
    else:
        print("link: loopback")
    print(fmt % hdr)
    print("  ".join("-" * w for w in widths))
    for r in rows:
        print(fmt % r)
    print()
    for line in rounds:
        print(line)
    print("messages/MB: the source's (IMAP sizes, CRLF), the same for every tool; msg/s and MB/s are")
    print("those over wall time. wall s: the median over the rounds (--repeat), range s: fastest and")
    print("slowest round; rounds alternate which tool goes first. mf/mbsync: mailferry's median wall")
    print("time / mbsync's (<1: mailferry faster).")
    print("mailferry collapses identical copies within a folder (checked: per folder the distinct source")
    print("messages, byte for byte, flags, INTERNALDATE); mbsync copies every message and adds an X-TUID:")
    print("header (checked: same count, bodies equal once X-TUID is removed, flags, INTERNALDATE).")
    print("peak RSS: VmHWM of the tool process (sampled from /proc every 10 ms until it exits), the")
    print("highest of the rounds.")
    print("no-op re-run: msg/s and MB/s are of the messages it had to consider, none copied.")
    if wan:
        print("floor s: MB x 8 / Mbit/s, the time the link needs for the bytes alone (no round")
        print("trips, no protocol overhead); wall/floor: how far the run is from that limit.")
    for label, chk in checks.items():
        if not chk["ok"]:
            print("WRONG %s: %s" % (label, "; ".join(chk["problems"][:10])))
    return 1 if any_bad else 0


def main():
    argv = sys.argv[1:]
    sub = {"dump": cmd_dump, "snapshot": cmd_snapshot, "verify": cmd_verify, "verify-mbox": cmd_verify_mbox,
           "count": cmd_count, "check-noop": cmd_check_noop, "table": cmd_table}
    if argv and argv[0] in sub:
        return sub[argv[0]](argv[1:])
    return cmd_run(argv)


if __name__ == "__main__":
    sys.exit(main())
