#!/usr/bin/env bash
# SIP REGISTER with digest over UDP on loopback: voiceedged's registrar vs Kamailio (registrar +
# usrloc, memory only, one worker), the same sipp scenario, the same run, alternating. Reported:
# registrations per second (bound by sipp on 2 cores) and server CPU time per registration from
# /proc/PID/stat before and after the timed run (the figure load on the other core does not blur).
#
#   [SOURCES=N] bench/sip/run.sh BUILD_DIR [ROUNDS] [CALLS] [USERS] [CONCURRENCY]
#
# VE_BENCH_CALLGRIND=DIR: the figure no load can move. Instead of the CPU rounds, voiceedged runs
# under callgrind (valgrind) with instrumentation off during start-up and the warm-up pass; it is
# switched on for the timed sipp run (the same scenario, CALLS registrations; take a few
# thousand, valgrind is ~50x slower) and the dump's user-space instruction total is divided by
# the completed registrations, once in all and once without LocationStore::flush (the
# once-a-second SQLite write of the refreshed bindings). Kernel work is not in it. ROUNDS runs;
# the dumps stay in DIR (callgrind.N) for callgrind_annotate.
#
#   VE_BENCH_CALLGRIND=/tmp/cg bench/sip/run.sh build-rel 3 5000 1000
#
# BUILD_DIR holds a (Release) build of voiceedged. Needs sipp (sip-tester) and kamailio installed;
# the kamailio service is not used (a private instance runs from bench/sip/kamailio.cfg).
# One "call" is one complete registration: REGISTER, 401, REGISTER with credentials, 200.
set -euo pipefail

build=${1:?build dir with daemon/voiceedged}
rounds=${2:-3}
calls=${3:-20000}
users=${4:-1000}
concurrency=${5:-10}  # per source: under the box's 16 outstanding nonces per source address
sources=${SOURCES:-1}
here=$(cd "$(dirname "$0")" && pwd)
# shellcheck source=bench/common.sh
source "$here/../common.sh"
voiceedged=$(realpath "$build")/daemon/voiceedged
ve_port=15070
kam_port=15090
kam_children=${KAMAILIO_CHILDREN:-1}

work=$(mktemp -d /tmp/ve-sip-bench.XXXXXX)
pids=()
cleanup() {
  for p in "${pids[@]:-}"; do [[ -n "$p" ]] && kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT

# Users 20000.. with password benchpw; the same list feeds sipp (-inf) and the site file.
{
  echo "SEQUENTIAL"
  # field1: sipp's credentials for the digest scenario ([authentication] cannot nest [field0]).
  for ((i = 0; i < users; i++)); do echo "$((20000 + i));[authentication username=$((20000 + i)) password=benchpw]"; done
} > "$work/users.csv"

site() {  # $1: password ("" = no digest for these lines)
  cat <<YAML
site: { name: sip-bench }
state_dir: $work/state-$2
control: { socket: $work/control-$2.sock }
ports: []
dhcp:
  kea: { manage: false, event_socket: "$work/kea-$2.sock" }
provisioning:
  root: "$work/tftp"
  tftp: { listen: "127.0.0.1:0" }
  http: { listen: "127.0.0.1:0" }
sip:
  listen: ["udp:127.0.0.1:$ve_port"]
  realm: sip-bench
net: { mode: none }
phones:
YAML
  for ((i = 0; i < users; i++)); do
    printf '  - mac: "02:00:00:00:%02x:%02x"\n    lines: [ { extension: "%d", auth_user: "%d", password: "%s" } ]\n' \
      $((i / 256)) $((i % 256)) $((20000 + i)) $((20000 + i)) "$1"
  done
}

start_voiceedge() {  # $1: digest (the state and socket names) $2...: a wrapper (valgrind ...)
  local pw="" name=$1; [[ $1 == digest ]] && pw=benchpw
  shift
  rm -rf "$work/state-$name"
  site "$pw" "$name" > "$work/site-$name.yaml"
  "$@" "$voiceedged" --config "$work/site-$name.yaml" --log-level warn > "$work/voiceedged-$name.log" 2>&1 &
  pids+=($!)
  for _ in $(seq 600); do [[ -S $work/control-$name.sock ]] && return 0; sleep 0.1; done
  echo "voiceedged did not start:"; cat "$work/voiceedged-$name.log"; exit 1
}

start_kamailio() {  # $1: digest (Kamailio with -A WITH_AUTH)
  local defs=(); [[ $1 == digest ]] && defs=(-A WITH_AUTH)
  start_kamailio_from "$here/kamailio.cfg" "$work/kamailio-$1.log" "${defs[@]}"
}


# Prints "<successful> <failed> <seconds> <server cpu ticks>". With SOURCES > 1, that many sipp
# processes run at once, each from its own loopback address (127.0.0.2, .3, ...) with its own
# slice of the users and CONCURRENCY in flight: phones have an address each, and one address may
# hold at most 16 outstanding nonces on the box.
drive() {  # $1: port $2: scenario $3: server pid
  local start end before after k ok=0 failed=0
  before=$(cpu_ticks "$3")
  start=$(date +%s.%N)
  local procs=()
  for ((k = 0; k < sources; k++)); do
    local ip=127.0.0.1 csv=$work/users.csv
    if ((sources > 1)); then ip=127.0.0.$((k + 2)); csv=$work/users-$k.csv; fi
    sipp "127.0.0.1:$1" -sf "$here/$2" -inf "$csv" -t u1 -i "$ip" -r 1000000 -rp 1000 -l "$concurrency" \
      -m $((calls / sources)) -nostdin -timeout 300s -recv_timeout 5000 > "$work/sipp-$k.out" 2>&1 &
    procs+=($!)
  done
  for p in "${procs[@]}"; do wait "$p" || true; done
  end=$(date +%s.%N)
  after=$(cpu_ticks "$3")
  for ((k = 0; k < sources; k++)); do
    ok=$((ok + $(sipp_count "Successful call" < "$work/sipp-$k.out")))
    failed=$((failed + $(sipp_count "Failed call" < "$work/sipp-$k.out")))
  done
  echo "$ok $failed $(echo "$end - $start" | bc -l) $((after - before))"
}

# Each source's slice of the users (a user always registers from the same address).
if ((sources > 1)); then
  for ((k = 0; k < sources; k++)); do
    { echo "SEQUENTIAL"; tail -n +2 "$work/users.csv" | awk -v n="$sources" -v k="$k" '(NR - 1) % n == k'; } > "$work/users-$k.csv"
  done
fi

if [[ -n ${VE_BENCH_CALLGRIND:-} ]]; then
  command -v valgrind >/dev/null && command -v callgrind_control >/dev/null || { echo "valgrind missing" >&2; exit 1; }
  mkdir -p "$VE_BENCH_CALLGRIND"
  echo "load before: $(cut -d' ' -f1-3 /proc/loadavg)"
  printf '| run | registrations ok | failed | instructions per registration | without LocationStore::flush |\n|---:|---:|---:|---:|---:|\n'
  for ((round = 1; round <= rounds; round++)); do
    out=$VE_BENCH_CALLGRIND/callgrind.$round
    rm -f "$out"
    start_voiceedge digest valgrind --tool=callgrind --instr-atstart=no --callgrind-out-file="$out"
    pid=${pids[-1]}
    drive "$ve_port" register_digest.xml "$pid" > /dev/null  # warm-up, not counted
    callgrind_control -i on "$pid" > /dev/null 2>&1
    read -r ok failed _ _ < <(drive "$ve_port" register_digest.xml "$pid")
    callgrind_control -i off "$pid" > /dev/null 2>&1
    stop_last  # the dump is written at exit; nothing is counted after -i off
    ir=$(awk '/^totals:/ {print $2}' "$out")
    # (awk reads to the end: an early exit would stop callgrind_annotate with SIGPIPE.)
    flush=$(callgrind_annotate --inclusive=yes --threshold=100 "$out" 2>/dev/null |
      awk '/LocationStore::flush\(\)/ && !f {gsub(/,/, "", $1); print $1; f = 1}')
    printf '| %d | %d | %d | %.0f | %.0f |\n' "$round" "$ok" "$failed" "$(echo "$ir / ($ok + ($ok == 0))" | bc -l)" \
      "$(echo "($ir - ${flush:-0}) / ($ok + ($ok == 0))" | bc -l)"
  done
  echo "load after: $(cut -d' ' -f1-3 /proc/loadavg)"
  exit 0
fi

# Digest only: since issue 12 every line of the box needs a password (an empty one is a load
# error), so the box has no registration without digest to compare.
echo "load before: $(cut -d' ' -f1-3 /proc/loadavg)"
declare -A rates cpus
scenario=register_digest.xml
for ((round = 1; round <= rounds; round++)); do
  for server in voiceedge kamailio; do
    if [[ $server == voiceedge ]]; then start_voiceedge digest; port=$ve_port; else start_kamailio digest; port=$kam_port; fi
    pid=${pids[-1]}
    drive "$port" "$scenario" "$pid" > /dev/null  # warm-up: creates every binding once
    read -r ok failed secs ticks < <(drive "$port" "$scenario" "$pid")
    stop_last
    rate=$(echo "$ok / $secs" | bc -l)
    us=$(cpu_us_per_op "$ticks" "$ok")
    printf 'round %d %-9s digest %6d ok %4d failed %7.2f s %8.0f reg/s %6.1f us CPU/reg (load %s)\n' "$round" \
      "$server" "$ok" "$failed" "$secs" "$rate" "$us" "$(cut -d' ' -f1 /proc/loadavg)"
    rates[$server]+="$rate "
    cpus[$server]+="$us "
  done
done

summary_table "digest reg/s" "server CPU per registration"
v=$(median "${cpus[voiceedge]}"); k=$(median "${cpus[kamailio]}")
printf '\nCPU per digest registration, voiceedge / Kamailio: %.2f\n' "$(echo "$v / $k" | bc -l)"
