# Helpers the SIP benchmarks share (sourced by bench/sip/run.sh and bench/calls/run.sh). They use
# the caller's $work (scratch directory), $pids (array of started servers), $kam_port and
# $kam_children.

# Starts a private Kamailio from a config template (KAMAILIO_PORT, KAMAILIO_CHILDREN replaced);
# further arguments go to kamailio (e.g. -A WITH_AUTH). Its pid is appended to $pids.
start_kamailio_from() {  # $1: template  $2: log file  $3...: extra kamailio arguments
  local template=$1 log=$2
  shift 2
  sed -e "s/KAMAILIO_PORT/$kam_port/g" -e "s/KAMAILIO_CHILDREN/$kam_children/" "$template" > "$work/kamailio.cfg"
  kamailio -f "$work/kamailio.cfg" "$@" -DD -E -m 256 -M 16 -P "$work/kamailio.pid" -Y "$work" \
    -L "/usr/lib/$(gcc -print-multiarch)/kamailio/modules" > "$log" 2>&1 &
  pids+=($!)
  sleep 1
}

# Stops and reaps the server started last.
stop_last() {
  local p=${pids[-1]}
  kill "$p" 2>/dev/null || true
  wait "$p" 2>/dev/null || true
  unset 'pids[-1]'
}

median() { tr ' ' '\n' <<< "$1" | grep -v '^$' | sort -g | awk '{a[NR] = $1} END {print (NR % 2) ? a[(NR + 1) / 2] : (a[NR / 2] + a[NR / 2 + 1]) / 2}'; }

# CPU ticks (utime + stime, in CLK_TCK units) of a process and its children (Kamailio's workers).
cpu_ticks() {  # $1: pid
  local total=0 p
  for p in $1 $(pgrep -P "$1" || true); do
    [[ -r /proc/$p/stat ]] || continue
    total=$((total + $(awk '{sub(/^.*\) /, ""); print $12 + $13}' "/proc/$p/stat")))
  done
  echo "$total"
}

# A cumulative counter from sipp's final statistics screen, read from standard input.
sipp_count() {  # $1: the counter's name ("Successful call", "Failed call")
  awk -F'|' -v what="$1" 'index($0, what) {gsub(/ /, "", $3); v = $3} END {print v + 0}'
}

# Server CPU per operation in microseconds.
cpu_us_per_op() {  # $1: CPU ticks  $2: operations
  echo "$1 * 1000000 / $(getconf CLK_TCK) / ($2 + ($2 == 0))" | bc -l
}

# The medians of the rounds, from the caller's associative arrays `rates` and `cpus`.
summary_table() {  # $1: rate column title  $2: CPU column title
  echo
  echo "| server | $1 (median) | $2 (median) |"
  echo "|---|---|---|"
  local server
  for server in voiceedge kamailio; do
    printf '| %s | %.0f | %.1f us |\n' "$server" "$(median "${rates[$server]}")" "$(median "${cpus[$server]}")"
  done
}
