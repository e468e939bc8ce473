#!/usr/bin/env bash
# TFTP benchmark: voiceedge (ve_provision_serve) vs tftpd-hpa, same machine, same run, same client
# (atftp), one 10 MB file, 1/10/100 concurrent clients, with and without blksize 1428 + windowsize 16.
# Prints a Markdown table (aggregate MB/s, wall time until the last client finished).
#
#   bench/tftp/run.sh BUILD_DIR            (needs root for tftpd-hpa; scripts/deps --bench installs it)
#
# Every download is checked: one copy per configuration is byte-compared, and every client must
# exit 0; a failed client fails the run.
set -euo pipefail

build=${1:?usage: run.sh BUILD_DIR}
serve=$build/provision/ve_provision_serve
[[ -x $serve ]] || { echo "missing $serve (build target ve_provision_serve)" >&2; exit 1; }
command -v atftp >/dev/null || { echo "atftp missing" >&2; exit 1; }
tftpd=$(command -v in.tftpd || true)
[[ -n $tftpd ]] || { echo "in.tftpd missing (apt-get install tftpd-hpa)" >&2; exit 1; }

work=$(mktemp -d /tmp/ve-tftp-bench.XXXXXX)
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT

mkdir -p "$work/root"
chmod 755 "$work" "$work/root"
head -c $((10 * 1024 * 1024)) /dev/urandom > "$work/root/load10M.bin"
chmod 644 "$work/root/load10M.bin"
size_mb=10

ve_port=${VE_PORT:-16969}
hpa_port=${HPA_PORT:-16979}
"$serve" --root "$work/root" --tftp 127.0.0.1:$ve_port --http 127.0.0.1:0 >"$work/ve.log" 2>&1 &
pids+=($!)
# tftpd-hpa in the foreground on its own port; it forks a child per transfer.
"$tftpd" --foreground --address 127.0.0.1:$hpa_port --secure --user nobody "$work/root" >"$work/hpa.log" 2>&1 &
pids+=($!)
sleep 1

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

echo "| server | options | clients | wall time (s) | aggregate MB/s |"
echo "|---|---|---:|---:|---:|"
for opts in "none" "blksize 1428, windowsize 16"; do
  if [[ $opts == none ]]; then args=(); else args=(--option "blksize 1428" --option "windowsize 16"); fi
  for server in voiceedge tftpd-hpa; do
    port=$ve_port
    [[ $server == tftpd-hpa ]] && port=$hpa_port
    check_copy "$port" "${args[@]}" || { echo "$server: copy differs ($opts)" >&2; exit 1; }
    for n in 1 10 100; do
      t=$(run_clients "$port" "$n" "${args[@]}")
      if [[ $t == FAILED ]]; then
        echo "| $server | $opts | $n | failed | - |"
      else
        mbs=$(echo "$n * $size_mb / $t" | bc -l)
        printf "| %s | %s | %d | %.2f | %.1f |\n" "$server" "$opts" "$n" "$t" "$mbs"
      fi
    done
  done
done
