#!/usr/bin/env bash
# Call setups through the box's SIP proxy over UDP on loopback: voiceedged vs Kamailio as a
# transaction-stateful proxy (registrar + proxy digest + lookup + record_route + t_relay, one
# worker), the same sipp caller and callee scenarios, the same run, variants alternating.
#
#   bench/calls/run.sh BUILD_DIR [ROUNDS] [CALLS] [CALLERS] [CONCURRENCY]
#
# One call = INVITE, 407, ACK, INVITE with Proxy-Authorization, 100, 180, 200, ACK, BYE, 200 (ten
# messages through the proxy, eight of them relayed). Reported per server: call setups per second
# (bound by the two sipp processes on a 2-core box) and server CPU time per call, from
# /proc/PID/stat (utime + stime of every server process) before and after the timed run, which
# is the figure load on the other core does not blur.
# Needs sipp (sip-tester) and kamailio (scripts/deps --bench); no service is used.
set -euo pipefail

build=${1:?build dir with daemon/voiceedged}
rounds=${2:-3}
calls=${3:-20000}
callers=${4:-1000}
concurrency=${5:-10}  # under the box's 16 nonces per source address: sipp is one source
here=$(cd "$(dirname "$0")" && pwd)
# shellcheck source=bench/common.sh
source "$here/../common.sh"
voiceedged=$(realpath "$build")/daemon/voiceedged
ve_port=15072
kam_port=15092
callee_port=15094
callee=21000
kam_children=${KAMAILIO_CHILDREN:-1}

work=$(mktemp -d /tmp/ve-calls-bench.XXXXXX)
pids=()
cleanup() {
  for p in "${pids[@]:-}"; do [[ -n "$p" ]] && kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  [[ -n ${VE_BENCH_KEEP:-} ]] && echo "kept $work" || rm -rf "$work"
}
trap cleanup EXIT

{
  echo "SEQUENTIAL"
  for ((i = 0; i < callers; i++)); do echo "$((20000 + i));[authentication username=$((20000 + i)) password=benchpw]"; done
} > "$work/callers.csv"
printf 'SEQUENTIAL\n%d;[authentication username=%d password=benchpw]\n' "$callee" "$callee" > "$work/callee.csv"

site() {
  cat <<YAML
site: { name: calls-bench }
state_dir: $work/state
control: { socket: $work/control.sock }
ports: []
dhcp:
  kea: { manage: false, event_socket: "$work/kea.sock" }
provisioning:
  root: "$work/tftp"
  tftp: { listen: "127.0.0.1:0" }
  http: { listen: "127.0.0.1:0" }
  config_access: open
sip:
  listen: ["udp:127.0.0.1:$ve_port"]
  realm: calls-bench
net: { mode: none }
phones:
YAML
  for ((i = 0; i <= callers; i++)); do
    local ext=$((20000 + i)); ((i == callers)) && ext=$callee
    printf '  - mac: "02:00:00:01:%02x:%02x"\n    lines: [ { extension: "%d", password: "benchpw" } ]\n' \
      $((i / 256)) $((i % 256)) "$ext"
  done
}


start_voiceedge() {
  rm -rf "$work/state"
  site > "$work/site.yaml"
  "$voiceedged" --config "$work/site.yaml" --log-level warn > "$work/voiceedged.log" 2>&1 &
  pids+=($!)
  for _ in $(seq 100); do [[ -S $work/control.sock ]] && return 0; sleep 0.1; done
  echo "voiceedged did not start:"; cat "$work/voiceedged.log"; exit 1
}

start_kamailio() {
  start_kamailio_from "$here/kamailio.cfg" "$work/kamailio.log"
}


# The callee registers from the port its UAS then answers on, so that both proxies (Contact or
# source address) send it the calls.
register_callee() {  # $1: proxy port
  sipp "127.0.0.1:$1" -sf "$here/../sip/register_digest.xml" -inf "$work/callee.csv" -t u1 -i 127.0.0.1 \
    -p "$callee_port" -m 1 -nostdin -timeout 20s -timeout_error > "$work/register.log" 2>&1 ||
    { echo "the callee did not register on port $1:"; tail -20 "$work/register.log"; exit 1; }
}

# Prints "<successful> <failed> <seconds> <server cpu ticks>".
drive() {  # $1: proxy port $2: server pid $3: calls
  sipp -sf "$here/callee.xml" -t u1 -i 127.0.0.1 -p "$callee_port" -s "$callee" -nostdin \
    -timeout 600s > "$work/callee.log" 2>&1 &
  local uas=$!
  sleep 0.3
  local start end out before after
  before=$(cpu_ticks "$2")
  start=$(date +%s.%N)
  out=$(sipp "127.0.0.1:$1" -sf "$here/caller.xml" -inf "$work/callers.csv" -key callee "$callee" \
    -auth_uri "$callee@127.0.0.1:$1" -t u1 -i 127.0.0.1 -r 1000000 -rp 1000 -l "$concurrency" -m "$3" \
    -nostdin -timeout 600s -recv_timeout 5000 2>&1 || true)
  end=$(date +%s.%N)
  after=$(cpu_ticks "$2")
  kill "$uas" 2>/dev/null || true
  wait "$uas" 2>/dev/null || true
  local ok failed
  ok=$(sipp_count "Successful call" <<< "$out")
  failed=$(sipp_count "Failed call" <<< "$out")
  echo "$ok $failed $(echo "$end - $start" | bc -l) $((after - before))"
}

echo "load before: $(cut -d' ' -f1-3 /proc/loadavg)"
declare -A rates cpus
for ((round = 1; round <= rounds; round++)); do
  for server in voiceedge kamailio; do
    if [[ $server == voiceedge ]]; then start_voiceedge; port=$ve_port; else start_kamailio; port=$kam_port; fi
    pid=${pids[-1]}
    register_callee "$port"
    drive "$port" "$pid" 500 > /dev/null  # warm-up
    read -r ok failed secs ticks < <(drive "$port" "$pid" "$calls")
    stop_last
    rate=$(echo "$ok / $secs" | bc -l)
    us=$(cpu_us_per_op "$ticks" "$ok")
    printf 'round %d %-9s %6d ok %4d failed %7.2f s %7.0f calls/s %6.1f us CPU/call (load %s)\n' "$round" "$server" \
      "$ok" "$failed" "$secs" "$rate" "$us" "$(cut -d' ' -f1 /proc/loadavg)"
    rates[$server]+="$rate "
    cpus[$server]+="$us "
  done
done

summary_table "calls/s" "server CPU per call"
v=$(median "${cpus[voiceedge]}"); k=$(median "${cpus[kamailio]}")
printf '\nsetups per CPU-second, voiceedge / Kamailio: %.2f\n' "$(echo "$k / $v" | bc -l)"
