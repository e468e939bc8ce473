#!/usr/bin/env bash
# TFTP benchmark: voiceedge (ve_provision_serve) vs atftpd vs tftpd-hpa, same machine, same run,
# same client (atftp), one 10 MiB file. Modes (issue 21):
#   window   100 concurrent clients, blksize 1428 + windowsize 16 (RFC 2348 + RFC 7440)
#   lockstep 100 concurrent clients, plain RFC 1350 (512-byte blocks, one ACK per block)
#   single   1 client, lockstep, SINGLE_REPEAT (5) downloads one after the other, each its own
#            sample (one download is 0.3 s: a neighbour's burst on the shared box moves it a lot)
# For every server and mode: aggregate MB/s (N x 10 MiB / wall time until the last client ended)
# and the server's CPU time per MiB sent (utime + stime from /proc/PID/stat, children reaped
# included: tftpd-hpa forks one per transfer, atftpd and voiceedge use threads). CPU per MiB is the
# figure a loaded box does not blur; the rate is shown next to it. The load average is printed
# before and after every measurement. Servers alternate within each round.
#
#   bench/tftp/run.sh BUILD_DIR [ROUNDS]     (root: tftpd-hpa and atftpd drop to nobody)
#   MODES="window lockstep single" CLIENTS=100 bench/tftp/run.sh build-rel 3
#
# atftpd conflicts with tftpd-hpa as a Debian package, so the script fetches it with
# `apt-get download atftpd` and unpacks it with `dpkg -x` into its scratch directory (no install);
# set ATFTPD=/path/to/atftpd to use another binary. Every download is checked: one copy per
# server and option set is byte-compared, and every client must exit 0; a failed client fails
# the measurement (shown as "failed").
set -euo pipefail

build=${1:?usage: run.sh BUILD_DIR [ROUNDS]}
rounds=${2:-2}
modes=${MODES:-window lockstep single}
clients=${CLIENTS:-100}
single_repeat=${SINGLE_REPEAT:-5}
serve=$build/provision/ve_provision_serve
[[ -x $serve ]] || { echo "missing $serve (build target ve_provision_serve)" >&2; exit 1; }
command -v atftp >/dev/null || { echo "atftp missing" >&2; exit 1; }
tftpd=$(command -v in.tftpd || true)
[[ -n $tftpd ]] || { echo "in.tftpd missing (apt-get install tftpd-hpa)" >&2; exit 1; }

work=$(mktemp -d /tmp/ve-tftp-bench.XXXXXX)
pids=()
cgroups=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  for g in "${cgroups[@]}"; do rmdir "$g" 2>/dev/null || true; done
  rm -rf "$work"
}
trap cleanup EXIT

atftpd=${ATFTPD:-}
if [[ -z $atftpd ]]; then
  (cd "$work" && apt-get download atftpd >/dev/null 2>&1) || { echo "apt-get download atftpd failed" >&2; exit 1; }
  dpkg -x "$work"/atftpd_*.deb "$work/atftpd-pkg"
  atftpd=$work/atftpd-pkg/usr/sbin/atftpd
fi
atftpd_version=$(dpkg-deb -f "$work"/atftpd_*.deb Version 2>/dev/null || echo "?")

mkdir -p "$work/root"
chmod 755 "$work" "$work/root"
head -c $((10 * 1024 * 1024)) /dev/urandom > "$work/root/load10M.bin"
chmod 644 "$work/root/load10M.bin"
size_mib=10

ve_port=${VE_PORT:-16969}
hpa_port=${HPA_PORT:-16979}
at_port=${ATFTPD_PORT:-16989}
"$serve" --root "$work/root" --tftp 127.0.0.1:$ve_port --http 127.0.0.1:0 ${VE_TFTP_WORKERS:+--tftp-workers $VE_TFTP_WORKERS} >"$work/ve.log" 2>&1 &
pids+=($!)
declare -A server_pid server_port
server_pid[voiceedge]=$!
server_port[voiceedge]=$ve_port
# tftpd-hpa in the foreground on its own port; it forks a child per transfer.
"$tftpd" --foreground --address 127.0.0.1:$hpa_port --secure --user nobody "$work/root" >"$work/hpa.log" 2>&1 &
pids+=($!)
server_pid[tftpd-hpa]=$!
server_port[tftpd-hpa]=$hpa_port
# atftpd standalone, one thread per transfer (its default limit of 100 threads raised).
"$atftpd" --daemon --no-fork --port $at_port --bind-address 127.0.0.1 --maxthread 1000 --user nobody \
  --group nogroup --logfile /dev/null --no-multicast "$work/root" >"$work/atftpd.log" 2>&1 &
pids+=($!)
server_pid[atftpd]=$!
server_port[atftpd]=$at_port
sleep 1
for s in voiceedge tftpd-hpa atftpd; do
  kill -0 "${server_pid[$s]}" 2>/dev/null || { echo "$s did not start" >&2; cat "$work"/*.log >&2; exit 1; }
done

# Server CPU time in nanoseconds. tftpd-hpa ignores SIGCHLD, so its children's time never reaches
# its cutime: each server runs in its own cgroup v1 cpuacct group (children inherit it) when the
# box has one; otherwise utime + stime + cutime + cstime from /proc/PID/stat (exact for the two
# threaded servers, tftpd-hpa then shows 0).
cpuacct=/sys/fs/cgroup/cpuacct
declare -A server_cg
for s in voiceedge tftpd-hpa atftpd; do
  g=$cpuacct/ve-tftp-bench-$$-$s
  if [[ -w $cpuacct ]] && mkdir "$g" 2>/dev/null; then
    cgroups+=("$g")
    if echo "${server_pid[$s]}" > "$g/cgroup.procs"; then server_cg[$s]=$g; fi
  fi
done
server_ns() {  # $1: server
  local g=${server_cg[$1]:-}
  if [[ -n $g ]]; then cat "$g/cpuacct.usage"; return; fi
  awk -v hz="$(getconf CLK_TCK)" '{sub(/^.*\) /, ""); printf "%d\n", ($12 + $13 + $14 + $15) * 1e9 / hz}' \
    "/proc/${server_pid[$1]}/stat"
}

# run_clients PORT N OPTS... -> wall seconds for N concurrent atftp downloads
run_clients() {
  local port=$1 n=$2
  shift 2
  local start end cpids=() fail=0
  start=$(date +%s.%N)
  for ((i = 0; i < n; i++)); do
    atftp "$@" -g -r load10M.bin -l /dev/null 127.0.0.1 "$port" >/dev/null 2>&1 &
    cpids+=($!)
  done
  for p in "${cpids[@]}"; do wait "$p" || fail=1; done
  end=$(date +%s.%N)
  if ((fail)); then echo "FAILED"; return; fi
  echo "$end - $start" | bc -l
}

check_copy() {
  local port=$1
  shift
  rm -f "$work/copy"
  atftp "$@" -g -r load10M.bin -l "$work/copy" 127.0.0.1 "$port" >/dev/null 2>&1
  cmp -s "$work/copy" "$work/root/load10M.bin"
}

median() { tr ' ' '\n' <<< "$1" | grep -v '^$' | sort -g | awk '{a[NR] = $1} END {print (NR % 2) ? a[(NR + 1) / 2] : (a[NR / 2] + a[NR / 2 + 1]) / 2}'; }

mode_args() {  # $1: mode -> sets args, n and repeat
  repeat=1
  case $1 in
    window) args=(--option "blksize 1428" --option "windowsize 16"); n=$clients ;;
    lockstep) args=(); n=$clients ;;
    single) args=(); n=1; repeat=$single_repeat ;;
    *) echo "unknown mode $1" >&2; exit 1 ;;
  esac
}

servers=(voiceedge atftpd tftpd-hpa)
for mode in $modes; do
  mode_args "$mode"
  for server in "${servers[@]}"; do
    check_copy "${server_port[$server]}" "${args[@]}" || { echo "$server: copy differs ($mode)" >&2; exit 1; }
  done
done

declare -A rates cpus
cpu_source="/proc/PID/stat"
[[ -n ${server_cg[voiceedge]:-} ]] && cpu_source="cpuacct cgroups"
echo "$(atftp --version 2>&1 | head -1), atftpd $atftpd_version, $("$tftpd" -V 2>&1 | head -1);" \
  "$clients clients in window/lockstep; $rounds rounds; CPU from $cpu_source"
echo "load average at start: $(cat /proc/loadavg)"
echo
echo "| round | mode | server | wall (s) | MB/s | server CPU s per MiB | load before / after |"
echo "|---:|---|---|---:|---:|---:|---|"
for ((round = 1; round <= rounds; round++)); do
  for mode in $modes; do
    mode_args "$mode"
    # Rotate the order each round so no server always runs right after another's burst.
    order=("${servers[@]:round % 3}" "${servers[@]:0:round % 3}")
    for ((rep = 0; rep < repeat; rep++)); do  # the servers alternate between repeats too
      for server in "${order[@]}"; do
        load_before=$(cut -d' ' -f1 /proc/loadavg)
        t0=$(server_ns "$server")
        t=$(run_clients "${server_port[$server]}" "$n" "${args[@]}")
        sleep 0.2  # the last tftpd-hpa child exits after its final ACK
        t1=$(server_ns "$server")
        load_after=$(cut -d' ' -f1 /proc/loadavg)
        if [[ $t == FAILED ]]; then
          echo "| $round | $mode | $server | failed | - | - | $load_before / $load_after |"
          continue
        fi
        mib=$((n * size_mib))
        mbs=$(echo "$mib * 1.048576 / $t" | bc -l)
        cpu=$(echo "($t1 - $t0) / 1000000000 / $mib" | bc -l)
        rates[$mode,$server]+=" $mbs"
        cpus[$mode,$server]+=" $cpu"
        printf "| %d | %s | %s | %.2f | %.1f | %.4f | %s / %s |\n" "$round" "$mode" "$server" "$t" "$mbs" "$cpu" \
          "$load_before" "$load_after"
      done
    done
  done
done

echo
echo "| mode | clients | voiceedge MB/s | atftpd MB/s | tftpd-hpa MB/s | voiceedge / faster peer (rate) | CPU ms per MiB: voiceedge / atftpd / tftpd-hpa |"
echo "|---|---:|---:|---:|---:|---:|---|"
for mode in $modes; do
  mode_args "$mode"
  ve=$(median "${rates[$mode,voiceedge]:-}")
  at=$(median "${rates[$mode,atftpd]:-}")
  hpa=$(median "${rates[$mode,tftpd-hpa]:-}")
  best=$(echo "if ($at > $hpa) $at else $hpa" | bc -l)
  printf "| %s | %d | %.1f | %.1f | %.1f | %.2f | %.1f / %.1f / %.1f |\n" "$mode" "$n" "$ve" "$at" "$hpa" \
    "$(echo "$ve / ($best + ($best == 0))" | bc -l)" \
    "$(echo "1000 * $(median "${cpus[$mode,voiceedge]:-}")" | bc -l)" \
    "$(echo "1000 * $(median "${cpus[$mode,atftpd]:-}")" | bc -l)" \
    "$(echo "1000 * $(median "${cpus[$mode,tftpd-hpa]:-}")" | bc -l)"
done
