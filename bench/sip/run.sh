#!/usr/bin/env bash
# SIP REGISTER rate over UDP on loopback: voiceedged's registrar vs Kamailio (registrar + usrloc,
# memory only), each with and without digest, same sipp scenarios, same run, variants alternating.
#
#   bench/sip/run.sh BUILD_DIR [ROUNDS] [CALLS] [USERS] [CONCURRENCY]
#
# BUILD_DIR holds a (Release) build of voiceedged. Needs sipp (sip-tester) and kamailio installed;
# the kamailio service is not used (a private instance runs from bench/sip/kamailio.cfg).
# One "call" is one complete registration (REGISTER/200, or REGISTER/401/REGISTER/200 with digest).
set -euo pipefail

build=${1:?build dir with daemon/voiceedged}
rounds=${2:-3}
calls=${3:-20000}
users=${4:-1000}
concurrency=${5:-50}
here=$(cd "$(dirname "$0")" && pwd)
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

start_voiceedge() {  # $1: digest|noauth
  local pw=""; [[ $1 == digest ]] && pw=benchpw
  rm -rf "$work/state-$1"
  site "$pw" "$1" > "$work/site-$1.yaml"
  "$voiceedged" --config "$work/site-$1.yaml" --log-level warn > "$work/voiceedged-$1.log" 2>&1 &
  pids+=($!)
  for _ in $(seq 100); do [[ -S $work/control-$1.sock ]] && return 0; sleep 0.1; done
  echo "voiceedged did not start:"; cat "$work/voiceedged-$1.log"; exit 1
}

start_kamailio() {  # $1: digest|noauth
  sed -e "s/KAMAILIO_PORT/$kam_port/" -e "s/KAMAILIO_CHILDREN/$kam_children/" "$here/kamailio.cfg" > "$work/kamailio.cfg"
  local defs=(); [[ $1 == digest ]] && defs=(-A WITH_AUTH)
  kamailio -f "$work/kamailio.cfg" "${defs[@]}" -DD -E -m 256 -M 16 -P "$work/kamailio.pid" -Y "$work" \
    -L /usr/lib/x86_64-linux-gnu/kamailio/modules > "$work/kamailio-$1.log" 2>&1 &
  pids+=($!)
  sleep 1
}

stop_last() {
  local p=${pids[-1]}
  kill "$p" 2>/dev/null || true
  wait "$p" 2>/dev/null || true
  unset 'pids[-1]'
}

# Prints "<successful> <failed> <seconds>".
drive() {  # $1: port $2: scenario
  local start end out
  start=$(date +%s.%N)
  out=$(sipp "127.0.0.1:$1" -sf "$here/$2" -inf "$work/users.csv" -t u1 -i 127.0.0.1 \
    -r 1000000 -rp 1000 -l "$concurrency" -m "$calls" -nostdin -timeout 300s -recv_timeout 5000 2>&1 || true)
  end=$(date +%s.%N)
  local ok failed
  ok=$(awk -F'|' '/Successful call/ {gsub(/ /, "", $3); v = $3} END {print v + 0}' <<< "$out")
  failed=$(awk -F'|' '/Failed call/ {gsub(/ /, "", $3); v = $3} END {print v + 0}' <<< "$out")
  echo "$ok $failed $(echo "$end - $start" | bc -l)"
}

declare -A rates
for ((round = 1; round <= rounds; round++)); do
  for auth in noauth digest; do
    scenario=register_$auth.xml
    start_voiceedge "$auth"
    drive "$ve_port" "$scenario" > /dev/null  # warm-up: creates every binding once
    read -r ok failed secs < <(drive "$ve_port" "$scenario")
    stop_last
    rate=$(echo "$ok / $secs" | bc -l)
    printf 'round %d voiceedge %-6s %6d ok %4d failed %7.2f s %8.0f reg/s\n' "$round" "$auth" "$ok" "$failed" "$secs" "$rate"
    rates[voiceedge-$auth]+="$rate "

    start_kamailio "$auth"
    drive "$kam_port" "$scenario" > /dev/null
    read -r ok failed secs < <(drive "$kam_port" "$scenario")
    stop_last
    rate=$(echo "$ok / $secs" | bc -l)
    printf 'round %d kamailio  %-6s %6d ok %4d failed %7.2f s %8.0f reg/s\n' "$round" "$auth" "$ok" "$failed" "$secs" "$rate"
    rates[kamailio-$auth]+="$rate "
  done
done

median() { tr ' ' '\n' <<< "$1" | grep -v '^$' | sort -g | awk '{a[NR] = $1} END {print (NR % 2) ? a[(NR + 1) / 2] : (a[NR / 2] + a[NR / 2 + 1]) / 2}'; }
echo
echo "| variant | voiceedge reg/s (median) | Kamailio reg/s (median) | voiceedge / Kamailio |"
echo "|---|---|---|---|"
for auth in noauth digest; do
  v=$(median "${rates[voiceedge-$auth]}")
  k=$(median "${rates[kamailio-$auth]}")
  printf '| %s | %.0f | %.0f | %.2f |\n' "$auth" "$v" "$k" "$(echo "$v / $k" | bc -l)"
done
