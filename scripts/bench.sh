#!/usr/bin/env bash
# Benchmark mailferry against mbsync (isync) on one local Dovecot over IMAPS.
#
#   scripts/bench.sh            the full benchmark (corpora "mixed" 1,019 messages ~150 MB
#                               and "small" 10,189 messages ~70 MB)
#   scripts/bench.sh --tiny     ~40 messages per corpus: checks that the benchmark runs (CI)
#   scripts/bench.sh --scale N  make the "small" corpus N messages (e.g. 1000, 10000, 50000,
#                               to see that mailferry's memory stays flat)
#   scripts/bench.sh --repeat N copy each corpus N times with each tool, alternating which
#                               goes first (default 3, --tiny 1); the table shows the median
#                               wall time, the range, and the highest peak memory
#   scripts/bench.sh --rtt MS --mbit N
#                               every tool reaches Dovecot through an emulated WAN link
#                               (scripts/wanproxy.py: MS round trip, N Mbit/s each way, one
#                               link to the source and one to the target); the table gains the
#                               link floor (bytes / bandwidth) and each run's gap to it
#   scripts/bench.sh --wan      three tables: loopback, 30 ms / 100 Mbit, 80 ms / 20 Mbit
#   scripts/bench.sh --batch-only  only the batch row (with the options above)
#
# Each table also has a "batch" row: 40 accounts of 200 small messages (--tiny: 4 of 10)
# moved by one `mailferry batch` (--jobs 4, its default connection spreading) against
# mbsync run 4 at a time (`xargs -P 4`, the way admins run a per-account tool; imapsync,
# the usual one, is not packaged here), with the accounts per minute printed below (and
# mailferry's peak memory; mbsync's is not shown: 4 processes at once, under a shell).
#
# Everything is local and deterministic: one throwaway Dovecot (scripts/testbed.sh) on
# loopback ports 31143/31993/31110/31995 (BENCH_IMAP_PORT, BENCH_IMAPS_PORT, BENCH_POP3_PORT,
# BENCH_POP3S_PORT override them), corpora generated from a fixed seed by
# scripts/bench_corpus.py straight into the source accounts' Maildirs, and every run into a
# fresh target account:
#   mailferry migrate imaps -> imaps     mbsync (Sync Pull, Create Near, Patterns *)
#   mailferry migrate pop3s -> imaps     mailferry backup imaps -> mbox directory
#   the mailferry imaps -> imaps migration again with the same --state (must copy nothing)
# Each run is timed by scripts/bench_measure.py (wall seconds, peak RSS) and its result is
# checked independently over IMAP (bench_measure.py verify). A table is printed at the end;
# the exit status is 1 when any tool failed or its result is wrong.
#
# MAILFERRY_BIN=PATH skips `cargo build --release --locked` and benchmarks that binary.
# The work directory (a mktemp -d) and the Dovecot are removed/stopped on exit;
# BENCH_KEEP=1 keeps the directory for inspection.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD
cmdline="scripts/bench.sh${*:+ $*}"

tiny=0; scale=; repeat=; rtt=; mbit=; profiles=; batch_only=0
while [ $# -gt 0 ]; do
  case "$1" in
    --tiny) tiny=1 ;;
    --rtt) rtt=${2:?--rtt needs milliseconds}; shift ;;
    --mbit) mbit=${2:?--mbit needs a rate}; shift ;;
    --wan) profiles="0/0 30/100 80/20" ;;
    --batch-only) batch_only=1 ;;
    --scale) scale=${2:?--scale needs a number}; shift ;;
    --scale=*) scale=${1#--scale=} ;;
    --repeat) repeat=${2:?--repeat needs a number}; shift ;;
    --repeat=*) repeat=${1#--repeat=} ;;
    -h|--help) sed -n '2,/^set -euo/p' "$0" | sed '$d' | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "bench: unknown argument '$1' (--tiny, --scale N, --repeat N, --rtt MS --mbit N, --wan)" >&2; exit 2 ;;
  esac
  shift
done
case "$scale" in ''|*[!0-9]*) [ -z "$scale" ] || { echo "bench: --scale needs a number" >&2; exit 2; } ;; esac
case "$repeat" in ''|*[!0-9]*|0) [ -z "$repeat" ] || { echo "bench: --repeat needs a number from 1" >&2; exit 2; } ;; esac
[ -n "$repeat" ] || { if [ "$tiny" = 1 ]; then repeat=1; else repeat=3; fi; }
# Link profiles "RTT/MBIT" (0/0: loopback, no proxy).
if [ -z "$profiles" ]; then
  if [ -n "$rtt$mbit" ]; then
    case "${rtt:-x}${mbit:-x}" in *[!0-9.]*) echo "bench: --rtt and --mbit need numbers, both" >&2; exit 2 ;; esac
    profiles="$rtt/$mbit"
  else
    profiles="0/0"
  fi
fi

t_start=$(date +%s.%N)
say() { echo "== $*" >&2; }

scripts/install-deps.sh
if [ -n "${MAILFERRY_BIN:-}" ]; then
  mf=$(realpath "$MAILFERRY_BIN")
else
  say "cargo build --release --locked"
  cargo build --release --locked >&2
  mf=$root/target/release/mailferry
fi
[ -x "$mf" ] || { echo "bench: no mailferry binary at $mf" >&2; exit 1; }

work=$(mktemp -d "${TMPDIR:-/tmp}/mailferry-bench.XXXXXX")
chmod 755 "$work"
dc=$work/dovecot
cleanup() {
  stop_proxies
  "$root/scripts/testbed.sh" stop "$dc" >/dev/null 2>&1 || true
  if [ -n "${BENCH_KEEP:-}" ]; then echo "bench: kept $work" >&2; else rm -rf "$work"; fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

imap_port=${BENCH_IMAP_PORT:-31143}; imaps_port=${BENCH_IMAPS_PORT:-31993}
pop3_port=${BENCH_POP3_PORT:-31110}; pop3s_port=${BENCH_POP3S_PORT:-31995}

if [ "$tiny" = 1 ]; then
  n_mixed=40; n_small=${scale:-40}; n_accounts=4; n_per_account=10
else
  n_mixed=1019; n_small=${scale:-10189}; n_accounts=40; n_per_account=200
fi
corpora="mixed small"
[ "$batch_only" = 0 ] || corpora=""
count_of() { if [ "$1" = mixed ]; then echo "$n_mixed"; else echo "$n_small"; fi; }

pw=bench-password
users=()
nprof=$(echo $profiles | wc -w)
for c in $corpora; do
  users+=("src-$c:$pw")
  for k in $(seq "$nprof"); do
    users+=("pop-$c-p$k:$pw")
    for i in $(seq "$repeat"); do users+=("mf-$c-$i-p$k:$pw" "mb-$c-$i-p$k:$pw"); done
  done
done
for a in $(seq "$n_accounts"); do
  users+=("bsrc-$a:$pw")
  for k in $(seq "$nprof"); do users+=("bmf-$a-p$k@bench.test:$pw" "bmb-$a-p$k@bench.test:$pw"); done
done
say "starting Dovecot in $dc (IMAPS $imaps_port, POP3S $pop3s_port)"
MAX_CONN=100 IMAP_PORT=$imap_port IMAPS_PORT=$imaps_port POP3_PORT=$pop3_port POP3S_PORT=$pop3s_port \
  scripts/testbed.sh start "$dc" "${users[@]}"
ca=$dc/cert.pem
pwfile=$work/password
echo "$pw" > "$pwfile"; chmod 600 "$pwfile"
results=$work/results.jsonl; : > "$results"
measure=(python3 "$root/scripts/bench_measure.py")
imap=(--host localhost --port "$imaps_port" --password-file "$pwfile" --ca-file "$ca")
failed=0

for c in $corpora; do
  say "corpus $c: $(count_of "$c") messages into src-$c"
  python3 scripts/bench_corpus.py --dir "$dc" --user "src-$c" --corpus "$c" --count "$(count_of "$c")" >/dev/null
done
say "batch corpus: $n_accounts accounts of $n_per_account small messages"
for a in $(seq "$n_accounts"); do
  python3 scripts/bench_corpus.py --dir "$dc" --user "bsrc-$a" --corpus small --count "$n_per_account" \
    --seed "mailferry-bench-batch-$a" >/dev/null
done
# Reading every source once makes Dovecot index the new Maildirs and warms the page
# cache, so that no tool pays for that; it is also the reference for the checks.
for c in $corpora; do
  say "snapshot of src-$c"
  "${measure[@]}" snapshot "${imap[@]}" --user "src-$c" --out "$work/src-$c.json" \
    --corpus "$c" --results "$results" >/dev/null
done
# The batch corpus: every account read once; the table's "batch" corpus is all of them.
for a in $(seq "$n_accounts"); do
  "${measure[@]}" snapshot "${imap[@]}" --user "bsrc-$a" --out "$work/bsrc-$a.json" >"$work/bsrc-$a.corpus"
done
python3 - "$results" "$work" "$n_accounts" <<'PY'
import json, sys
results, work, n = sys.argv[1], sys.argv[2], int(sys.argv[3])
recs = [json.load(open("%s/bsrc-%d.corpus" % (work, a))) for a in range(1, n + 1)]
total = {"kind": "corpus", "corpus": "batch", "accounts": n}
for k in ("messages", "bytes", "distinct", "without_message_id", "inbox_messages", "inbox_bytes"):
    total[k] = sum(r[k] for r in recs)
total["folders"] = {}
with open(results, "a") as f:
    f.write(json.dumps(total) + "\n")
PY

run() {  # run LABEL CMD... : time CMD, its output in $work/LABEL.log
  local label=$1; shift
  say "$label: $*"
  if ! "${measure[@]}" --label "$label" --out "$results" --log "$work/${label//\//-}.log" -- "$@" >/dev/null; then
    echo "bench: $label failed; its output:" >&2
    tail -n 20 "$work/${label//\//-}.log" "$work/${label//\//-}.log.err" >&2 || true
    failed=1
  fi
}
check() {  # check LABEL MODE... : verify, record, never abort
  local label=$1; shift
  if ! "${measure[@]}" "$@" --label "$label" --out "$results" >"$work/${label//\//-}.check" 2>&1; then
    echo "bench: $label: result is wrong: $(cat "$work/${label//\//-}.check")" >&2
    failed=1
  fi
}

# start_link runs inside $(…), a subshell: the proxies' pids go to a file, since a
# variable set there never reaches this shell (the proxies were left running).
stop_proxies() {
  [ -s "$work/proxies.pids" ] || return 0
  while read -r pid; do kill "$pid" 2>/dev/null || true; done < "$work/proxies.pids"
  while read -r pid; do
    for _ in $(seq 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.05; done
  done < "$work/proxies.pids"
  : > "$work/proxies.pids"
}
# One link to the source server and one to the target server (the same Dovecot):
# every tool reaches it through them. Loopback: no proxy.
start_link() {  # start_link NAME PORT RTT MBIT -> prints the port to use
  local name=$1 port=$2 r=$3 m=$4
  if [ "$r" = 0 ] && [ "$m" = 0 ]; then echo "$port"; return; fi
  rm -f "$work/$name.port"
  python3 "$root/scripts/wanproxy.py" --to "127.0.0.1:$port" --rtt "$r" --mbit "$m" \
    --port-file "$work/$name.port" >/dev/null 2>>"$work/wanproxy.log" &
  echo $! >> "$work/proxies.pids"
  for _ in $(seq 100); do [ -s "$work/$name.port" ] && break; sleep 0.05; done
  cat "$work/$name.port"
}
# mbsync_rc FAR_PORT FAR_USER NEAR_PORT NEAR_USER STATE_DIR: an mbsync config that pulls
# every folder of FAR_USER into NEAR_USER (creating folders, keeping arrival dates).
mbsync_rc() {
  cat <<RC
IMAPAccount far
Host localhost
Port $1
User $2
PassCmd "cat $pwfile"
SSLType IMAPS
CertificateFile $ca

IMAPAccount near
Host localhost
Port $3
User $4
PassCmd "cat $pwfile"
SSLType IMAPS
CertificateFile $ca

IMAPStore far
Account far

IMAPStore near
Account near

Channel copy
Far :far:
Near :near:
Patterns *
Create Near
Sync Pull
Expunge None
CopyArrivalDate yes
SyncState $5/
RC
}

# The batch row of one profile: all accounts by one `mailferry batch`, then by mbsync
# 4 at a time; the first and the last account of each checked against its source.
batch_run() {  # batch_run K LABEL_PREFIX SOURCE_PORT TARGET_PORT
  local k=$1 lp=$2 sp=$3 tp=$4 a csv=$work/batch-p$1.csv
  echo "source;source_user;source_password;target;target_user;target_password" > "$csv"
  for a in $(seq "$n_accounts"); do
    echo "imaps://localhost:$sp;bsrc-$a;file:$pwfile;localhost:$tp;bmf-$a-p$k@bench.test;file:$pwfile" >> "$csv"
  done
  run "${lp}batch/mailferry@1" "$mf" batch "$csv" --jobs 4 --ca-file "$ca" \
    --state "$work/state-batch-p$k.sqlite" --report "$work/batch-p$k-report.csv" "${mf_link[@]}"
  for a in $(seq "$n_accounts"); do
    mkdir -p "$work/mbsync-batch-$a-p$k"
    mbsync_rc "$sp" "bsrc-$a" "$tp" "bmb-$a-p$k@bench.test" "$work/mbsync-batch-$a-p$k" > "$work/mbsyncrc-batch-$a-p$k"
  done
  run "${lp}batch/mbsync@1" sh -c "ls $work/mbsyncrc-batch-*-p$k | xargs -P 4 -I{} mbsync -q -c {} -a"
  for a in 1 "$n_accounts"; do
    check "${lp}batch/mailferry@1" verify "${imap[@]}" --user "bmf-$a-p$k@bench.test" --mode exact --source "$work/bsrc-$a.json"
    check "${lp}batch/mbsync@1" verify "${imap[@]}" --user "bmb-$a-p$k@bench.test" --mode mbsync --source "$work/bsrc-$a.json"
  done
}

k=0
for profile in $profiles; do
  k=$((k + 1))
  p_rtt=${profile%/*}; p_mbit=${profile#*/}
  if [ "$profile" = 0/0 ]; then p_label=""; else p_label="${p_rtt}ms-${p_mbit}mbit:"; fi
  # The machine running the tools sits between the old host and the new one: one
  # link to the source (read through s_imaps, s_pop3s) and one to the target
  # (t_imaps), each with the profile's round trip and rate. Checks go direct.
  s_imaps=$(start_link "src-imaps-p$k" "$imaps_port" "$p_rtt" "$p_mbit")
  s_pop3s=$(start_link "src-pop3s-p$k" "$pop3s_port" "$p_rtt" "$p_mbit")
  t_imaps=$(start_link "dst-imaps-p$k" "$imaps_port" "$p_rtt" "$p_mbit")
  mf_link=()
  if [ -n "$p_label" ]; then
    say "links ${p_label%:}: source IMAPS :$s_imaps POP3S :$s_pop3s, target IMAPS :$t_imaps"
    # The proxy is on 127.0.0.1; over a real link --compress auto would compress.
    mf_link=(--compress yes)
  fi
  for c in $corpora; do
    src=src-$c
    common=(--from-password-file "$pwfile" --to-password-file "$pwfile" --ca-file "$ca" --json "${mf_link[@]}")

    for i in $(seq "$repeat"); do
      # Rounds alternate which tool goes first, so neither always meets a fresher server.
      if [ $((i % 2)) = 1 ]; then order="mailferry mbsync"; else order="mbsync mailferry"; fi
      for tool in $order; do
        if [ "$tool" = mailferry ]; then
          run "$p_label$c/mailferry@$i" "$mf" migrate --from "imaps://$src@localhost:$s_imaps" \
            --to "imaps://mf-$c-$i-p$k@localhost:$t_imaps" --state "$work/state-$c-$i-p$k.sqlite" "${common[@]}"
          check "$p_label$c/mailferry@$i" verify "${imap[@]}" --user "mf-$c-$i-p$k" --mode exact --source "$work/$src.json"
          continue
        fi
        mkdir -p "$work/mbsync-state-$c-$i-p$k"
        rc=$work/mbsyncrc-$c-$i-p$k
        mbsync_rc "$s_imaps" "$src" "$t_imaps" "mb-$c-$i-p$k" "$work/mbsync-state-$c-$i-p$k" > "$rc"
        run "$p_label$c/mbsync@$i" mbsync -q -c "$rc" -a
        check "$p_label$c/mbsync@$i" verify "${imap[@]}" --user "mb-$c-$i-p$k" --mode mbsync --source "$work/$src.json"
      done
    done

    # mailferry again, same --state: nothing new to copy
    run "$p_label$c/noop" "$mf" migrate --from "imaps://$src@localhost:$s_imaps" \
      --to "imaps://mf-$c-1-p$k@localhost:$t_imaps" --state "$work/state-$c-1-p$k.sqlite" "${common[@]}"
    check "$p_label$c/noop" check-noop "${imap[@]}" --user "mf-$c-1-p$k" --summary "$work/${p_label//\//-}$c-noop.log" \
      --source "$work/$src.json"

    # mailferry, POP3 -> IMAP (the INBOX)
    run "$p_label$c/pop3" "$mf" migrate --from "pop3s://$src@localhost:$s_pop3s" \
      --to "imaps://pop-$c-p$k@localhost:$t_imaps" --state "$work/state-pop-$c-p$k.sqlite" "${common[@]}"
    check "$p_label$c/pop3" verify "${imap[@]}" --user "pop-$c-p$k" --mode pop3 --source "$work/$src.json"

    # mailferry, IMAP -> mbox
    run "$p_label$c/mbox" "$mf" backup --from "imaps://$src@localhost:$s_imaps" --out "$work/backup-$c-p$k" \
      --from-password-file "$pwfile" --ca-file "$ca" --state "$work/state-backup-$c-p$k.sqlite" --json "${mf_link[@]}"
    check "$p_label$c/mbox" verify-mbox --dir "$work/backup-$c-p$k" --source "$work/$src.json"
  done

  batch_run "$k" "$p_label" "$s_imaps" "$t_imaps"
  stop_proxies
done

cpu=$(grep -m1 '^model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ *//')
echo
echo "command:   $cmdline"
echo "machine:   $(nproc) CPUs, ${cpu:-unknown CPU}, $(awk '/MemTotal/ {printf "%.1f GB RAM", $2/1048576}' /proc/meminfo), $(uname -sr)"
echo "versions:  $("$mf" --version), $(mbsync --version 2>&1 | head -n1), dovecot $(dovecot --version | cut -d' ' -f1), $(python3 --version)"
echo "server:    one Dovecot on 127.0.0.1, IMAPS :$imaps_port / POP3S :$pop3s_port, Maildir in $(df -P "$work" | awk 'NR==2 {print $1}')"
python3 - "$results" <<'PY'
import json, sys
for line in open(sys.argv[1]):
    r = json.loads(line)
    if r.get("kind") == "corpus":
        print("corpus:    %-6s %6d messages, %7.1f MB, %d folders with mail, %d identical copies within a folder, %d without Message-ID"
              % (r["corpus"], r["messages"], r["bytes"] / 1e6, sum(1 for v in r["folders"].values() if v),
                 r["messages"] - r["distinct"], r["without_message_id"]))
PY
echo
for profile in $profiles; do
  "${measure[@]}" table --results "$results" --profile "$profile" || failed=1
  python3 - "$results" "$profile" "$n_accounts" <<'PY'
import json, sys
results, profile, n = sys.argv[1], sys.argv[2], int(sys.argv[3])
prefix = "" if profile == "0/0" else "%sms-%smbit:" % tuple(profile.split("/"))
for line in open(results):
    r = json.loads(line)
    label = r.get("label", "")
    if "wall_s" in r and label.startswith(prefix + "batch/") and (":" in label) == bool(prefix):
        tool = label[len(prefix) + len("batch/"):].split("@")[0]
        peak = ", peak %.0f MB" % r["peak_rss_mb"] if tool == "mailferry" else ""
        print("batch: %-9s %d accounts in %.1f s: %.1f accounts per minute%s"
              % (tool, n, r["wall_s"], n * 60 / r["wall_s"], peak))
PY
  echo
done
t_end=$(date +%s.%N)
python3 -c "import sys; print('\nwhole script: %.0f s (deps, build, corpora, runs and checks; not the cleanup)' % (float(sys.argv[2]) - float(sys.argv[1])))" "$t_start" "$t_end"
if [ "$failed" != 0 ]; then
  echo "bench: FAILED: a tool failed or its result is wrong (see above)" >&2
  exit 1
fi
