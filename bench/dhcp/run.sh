#!/usr/bin/env bash
# DHCP benchmark: perfdhcp DORA rate of kea-dhcp4 answering Cisco phones (option 60 + a PRL with
# 150 and 66) with option 150/66 coming from
#   hook:   libdhcp_voiceedge.so (site file, lease reports to a listening datagram socket)
#   hook-nodaemon: the same with nobody listening (reports fail at once with ENOENT)
#   native: Kea alone (option-def code 150 + a client class testing option 60)
# Same Kea, same subnet, same offered load; Kea restarted (fresh lease table) for every run.
# For each variant and run it steps the offered rate up and records the highest rate at which
# fewer than 1 % of exchanges were lost. Needs root (namespaces, raw sockets).
#
#   bench/dhcp/run.sh BUILD_DIR [runs=3] [seconds=5] [rates="500 1000 ..."]
#
# MODE=cpu: the figure load does not blur. Each variant gets the same fixed offered rate (the
# first of `rates`, one every variant keeps up with) for `seconds`; Kea's CPU time (utime + stime
# of all its threads, /proc/PID/stat, before and after the perfdhcp run, start-up excluded)
# divided by the completed DORAs (ACKs perfdhcp received). Variants alternate within each run;
# the load average is printed before every measurement.
#
#   MODE=cpu bench/dhcp/run.sh build-rel 5 10 500
#
# MODE=instructions: the figure no load can move. Kea runs under callgrind (valgrind) with
# instrumentation off during start-up; it is switched on for one perfdhcp run at a low rate
# (the first of `rates`; Kea is ~50x slower under valgrind) and the dump's user-space instruction
# total is divided by the completed DORAs. Kernel work (the report's send, wake-ups) is not in
# it: the syscalls of each variant per DORA are counted from a second, plain run (strace -c -f).
#
#   MODE=instructions bench/dhcp/run.sh build-rel 1 10 50
set -euo pipefail
build=${1:?usage: run.sh BUILD_DIR [runs] [seconds] [rates]}
runs=${2:-3}
seconds=${3:-5}
rates=${4:-"500 1000 1500 2000 2500 3000 3500 4000 5000 6000"}
hook="$(realpath "$build")/kea-hooks/libdhcp_voiceedge.so"
[[ -f $hook ]] || { echo "no $hook: build target dhcp_voiceedge first" >&2; exit 1; }

id=$$
sns=vebs$id; cns=vebc$id; sif=vebs$id; cif=vebc$id
dir=$(mktemp -d /tmp/ve-dhcp-bench.XXXXXX)
kea_pid=""; rx_pid=""
cleanup() {
  [[ -n $kea_pid ]] && kill "$kea_pid" 2>/dev/null && wait "$kea_pid" 2>/dev/null || true
  [[ -n $rx_pid ]] && kill "$rx_pid" 2>/dev/null || true
  ip netns del "$sns" 2>/dev/null || true
  ip netns del "$cns" 2>/dev/null || true
  rm -rf "$dir"
}
trap cleanup EXIT

ip netns add "$sns"; ip netns add "$cns"
ip link add "$sif" type veth peer name "$cif"
ip link set "$sif" netns "$sns"; ip link set "$cif" netns "$cns"
ip -n "$sns" addr add 10.20.0.1/16 dev "$sif"
ip -n "$cns" addr add 10.20.0.9/16 dev "$cif"  # perfdhcp sends as a relay (giaddr = this address)
for ns in $sns $cns; do ip -n "$ns" link set lo up; done
ip -n "$sns" link set "$sif" up; ip -n "$cns" link set "$cif" up

cat > "$dir/site.yaml" <<YAML
site: { name: bench }
state_dir: $dir
ports:
  - name: $sif
    voice_vlan: 100
    data_vlan: 10
dhcp:
  kea:
    event_socket: $dir/events.sock
  subnets:
    - vlan: 100
      interface: $sif
      prefix: 10.20.0.0/16
      pool: 10.20.1.0-10.20.254.255
      router: 10.20.0.1
      tftp_servers: [10.20.0.1, 10.20.0.2]
YAML

common() {  # $1: extra Dhcp4 members
  cat <<JSON
{"Dhcp4": {
  "interfaces-config": {"interfaces": ["$sif"], "dhcp-socket-type": "raw"},
  "lease-database": {"type": "memfile", "persist": false},
  "valid-lifetime": 3600,
  "subnet4": [{"id": 1, "subnet": "10.20.0.0/16", "interface": "$sif",
               "pools": [{"pool": "10.20.1.0 - 10.20.254.255"}],
               "option-data": [{"name": "routers", "data": "10.20.0.1"}]}],
  "loggers": [{"name": "kea-dhcp4", "output_options": [{"output": "$dir/kea.log"}], "severity": "WARN"}],
  $1
}}
JSON
}
common "\"hooks-libraries\": [{\"library\": \"$hook\", \"parameters\": {\"site-file\": \"$dir/site.yaml\"}}]" > "$dir/hook.json"
common "\"hooks-libraries\": [{\"library\": \"$hook\", \"parameters\": {\"site-file\": \"$dir/site.yaml\", \"event-socket\": \"$dir/nobody.sock\"}}]" > "$dir/hook-nodaemon.json"
common "\"option-def\": [{\"name\": \"cisco-tftp-servers\", \"code\": 150, \"type\": \"ipv4-address\", \"array\": true, \"space\": \"dhcp4\"}],
  \"client-classes\": [{\"name\": \"cisco-phone\",
      \"test\": \"substring(option[60].text,0,28) == 'Cisco Systems, Inc. IP Phone'\",
      \"option-data\": [{\"name\": \"cisco-tftp-servers\", \"data\": \"10.20.0.1, 10.20.0.2\"},
                        {\"name\": \"tftp-server-name\", \"data\": \"10.20.0.1\"}]}]" > "$dir/native.json"

# The daemon's side of the lease reports: a receiver that reads and discards.
/usr/bin/python3 -c "
import socket, sys
s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM); s.bind(sys.argv[1])
while True: s.recv(4096)
" "$dir/events.sock" & rx_pid=$!

vendor_hex=$(printf 'Cisco Systems, Inc. IP Phone CP-7841' | od -An -tx1 | tr -d ' \n')
prl_hex=0103060f2a4296   # 1,3,6,15,42,66,150

start_kea() {
  rm -f "$dir"/*.pid
  KEA_PIDFILE_DIR=$dir KEA_LOCKFILE_DIR=$dir ip netns exec "$sns" kea-dhcp4 -c "$dir/$1.json" >"$dir/kea.out" 2>&1 &
  kea_pid=$!
  for _ in $(seq 100); do
    ip netns exec "$sns" ss -lun 2>/dev/null | grep -q ':67 ' && return 0
    grep -q DHCP4_STARTED "$dir/kea.out" 2>/dev/null && return 0
    sleep 0.1
  done
  sleep 1
}
stop_kea() { kill "$kea_pid"; wait "$kea_pid" 2>/dev/null || true; kea_pid=""; }

# One perfdhcp run at rate $1: prints "rate achieved drops_percent".
measure() {
  local out
  out=$(ip netns exec "$cns" perfdhcp -4 -l "$cif" -r "$1" -R 60000 -p "$seconds" -W 1000000 \
        -o 60,"$vendor_hex" -o 55,"$prl_hex" 2>&1 || true)
  [[ -n ${VE_BENCH_DEBUG:-} ]] && echo "$out" >&2
  local sent recv
  sent=$(echo "$out" | awk '/sent packets:/ {print $3}' | paste -sd+ | bc)
  recv=$(echo "$out" | awk '/received packets:/ {print $3}' | paste -sd+ | bc)
  [[ -z $sent || $sent == 0 ]] && { echo "$1 0 100"; return; }
  # Exchanges completed per second = received ACKs / period; drops over both exchanges.
  local acks
  acks=$(echo "$out" | awk '/REQUEST-ACK/ {f=1} f && /received packets:/ {print $3; exit}')
  echo "$1 $(echo "scale=1; ${acks:-0} / $seconds" | bc) $(echo "scale=2; 100 * ($sent - $recv) / $sent" | bc)"
}

kea_ticks() { awk '{sub(/^.*\) /, ""); print $12 + $13}' "/proc/$kea_pid/stat"; }

if [[ ${MODE:-rate} == instructions ]]; then
  command -v valgrind >/dev/null && command -v callgrind_control >/dev/null || { echo "valgrind missing" >&2; exit 1; }
  rate=${rates%% *}
  echo "load average at start: $(cat /proc/loadavg)"
  printf '| run | variant | DORAs | user-space instructions per DORA | syscalls per DORA (plain run, strace) |\n|---:|---|---:|---:|---:|\n'
  dora_count() { echo "$1" | awk '/REQUEST-ACK/ {f=1} f && /received packets:/ {print $3; exit}'; }
  run_perfdhcp() {
    ip netns exec "$cns" perfdhcp -4 -l "$cif" -r "$rate" -R 60000 -p "$seconds" -W 1000000 \
      -o 60,"$vendor_hex" -o 55,"$prl_hex" 2>&1 || true
  }
  for run in $(seq "$runs"); do
    for variant in hook native; do
      rm -f "$dir"/*.pid "$dir"/callgrind.out.*
      KEA_PIDFILE_DIR=$dir KEA_LOCKFILE_DIR=$dir ip netns exec "$sns" valgrind --tool=callgrind \
        --instr-atstart=no --callgrind-out-file="$dir/callgrind.out.%p" \
        kea-dhcp4 -c "$dir/$variant.json" >"$dir/kea.out" 2>&1 &
      kea_pid=$!
      for _ in $(seq 600); do grep -q DHCP4_STARTED "$dir/kea.log" "$dir/kea.out" 2>/dev/null && break; sleep 0.1; done
      ip netns exec "$sns" ss -lun 2>/dev/null | grep -q ':67 ' || sleep 5
      callgrind_control -i on "$kea_pid" >/dev/null
      out=$(run_perfdhcp)
      callgrind_control -d "$kea_pid" >/dev/null
      callgrind_control -i off "$kea_pid" >/dev/null
      stop_kea
      # Each dump's "totals:" line: the instructions since the previous dump (the one at exit adds
      # nearly nothing: instrumentation is off by then).
      ir=$(cat "$dir"/callgrind.out.* 2>/dev/null | awk '/^totals:/ {s += $2} END {printf "%.0f", s}')
      [[ $ir == 0 ]] && { echo "no instructions recorded:" >&2; ls -la "$dir" >&2; tail -20 "$dir/kea.out" >&2; }
      acks=$(dora_count "$out")
      # VE_BENCH_CALLGRIND=DIR keeps the dumps for callgrind_annotate (DIR/callgrind.VARIANT.*).
      if [[ -n ${VE_BENCH_CALLGRIND:-} ]]; then
        mkdir -p "$VE_BENCH_CALLGRIND"
        for f in "$dir"/callgrind.out.*; do cp "$f" "$VE_BENCH_CALLGRIND/callgrind.$variant.${f##*.}"; done
      fi
      # The same variant without valgrind, strace attached after start-up: syscalls per DORA.
      start_kea "$variant"
      strace -f -c -p "$kea_pid" -o "$dir/strace.$variant" 2>/dev/null &
      strace_pid=$!
      sleep 1
      out2=$(run_perfdhcp)
      kill -INT "$strace_pid"; wait "$strace_pid" 2>/dev/null || true
      stop_kea
      calls=$(awk '$NF == "total" {print $4 + 0}' "$dir/strace.$variant")
      echo "$variant, top syscalls: $(awk '$1 ~ /^[0-9.]+$/ && $NF != "total" {print $NF "=" $4}' "$dir/strace.$variant" | sort -t= -k2 -rn | head -8 | paste -sd' ')" >&2
      acks2=$(dora_count "$out2")
      printf '| %d | %s | %d | %.0f | %.2f (%d DORAs) |\n' "$run" "$variant" "${acks:-0}" \
        "$(echo "$ir / (${acks:-0} + (${acks:-0} == 0))" | bc -l)" \
        "$(echo "${calls:-0} / (${acks2:-0} + (${acks2:-0} == 0))" | bc -l)" "${acks2:-0}"
    done
  done
  exit 0
fi

if [[ ${MODE:-rate} == cpu ]]; then
  rate=${rates%% *}
  declare -A cpu_all
  echo "load average at start: $(cat /proc/loadavg)"
  printf '| run | variant | DORAs | Kea CPU (s) | CPU per DORA (us) | drops %% | load before |\n|---:|---|---:|---:|---:|---:|---:|\n'
  for run in $(seq "$runs"); do
    for variant in hook native hook-nodaemon; do
      start_kea "$variant"
      load=$(cut -d' ' -f1 /proc/loadavg)
      t0=$(kea_ticks)
      # VE_BENCH_PERF=PREFIX: a perf profile of Kea per variant (PREFIX.hook, PREFIX.native, ...).
      perf_pid=""
      if [[ -n ${VE_BENCH_PERF:-} ]]; then
        perf record -q -g -p "$kea_pid" -o "$VE_BENCH_PERF.$variant" >/dev/null 2>&1 &
        perf_pid=$!
      fi
      out=$(ip netns exec "$cns" perfdhcp -4 -l "$cif" -r "$rate" -R 60000 -p "$seconds" -W 1000000 \
            -o 60,"$vendor_hex" -o 55,"$prl_hex" 2>&1 || true)
      t1=$(kea_ticks)
      [[ -n $perf_pid ]] && { kill -INT "$perf_pid"; wait "$perf_pid" 2>/dev/null || true; }
      stop_kea
      acks=$(echo "$out" | awk '/REQUEST-ACK/ {f=1} f && /received packets:/ {print $3; exit}')
      sent=$(echo "$out" | awk '/sent packets:/ {print $3}' | paste -sd+ | bc)
      recv=$(echo "$out" | awk '/received packets:/ {print $3}' | paste -sd+ | bc)
      us=$(echo "($t1 - $t0) * 1000000 / $(getconf CLK_TCK) / (${acks:-0} + (${acks:-0} == 0))" | bc -l)
      cpu_all[$variant]+=" $us"
      printf '| %d | %s | %d | %.2f | %.1f | %.2f | %s |\n' "$run" "$variant" "${acks:-0}" \
        "$(echo "($t1 - $t0) / $(getconf CLK_TCK)" | bc -l)" "$us" "$(echo "100 * ($sent - $recv) / ($sent + ($sent == 0))" | bc -l)" "$load"
    done
  done
  median() { tr ' ' '\n' <<< "$1" | grep -v '^$' | sort -g | awk '{a[NR] = $1} END {print (NR % 2) ? a[(NR + 1) / 2] : (a[NR / 2] + a[NR / 2 + 1]) / 2}'; }
  echo
  echo "| variant | Kea CPU per DORA, median of $runs (us) |"
  echo "|---|---:|"
  for variant in hook native hook-nodaemon; do printf '| %s | %.1f |\n' "$variant" "$(median "${cpu_all[$variant]}")"; done
  h=$(median "${cpu_all[hook]}"); n=$(median "${cpu_all[native]}")
  printf '\nhook / native CPU per DORA: %.3f\n' "$(echo "$h / $n" | bc -l)"
  exit 0
fi

printf '%-14s %-4s %-14s %-14s %-8s\n' variant run best_rate_ok achieved_ack/s drops%
for run in $(seq "$runs"); do
  for variant in hook hook-nodaemon native; do
    best="0 0 0"
    for rate in $rates; do
      start_kea "$variant"
      result=$(measure "$rate")
      stop_kea
      drops=$(echo "$result" | awk '{print $3}')
      if (( $(echo "$drops < 1" | bc) )); then best=$result; else break; fi
    done
    read -r r achieved d <<<"$best"
    printf '%-14s %-4s %-14s %-14s %-8s\n' "$variant" "$run" "$r" "$achieved" "$d"
  done
done
