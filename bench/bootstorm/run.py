#!/usr/bin/env python3
"""Boot storm: time from start to all registered for N simulated phones booting at once against
voiceedged + kea-dhcp4 (with our hook), and the daemon's RSS at the end.

    sudo /usr/bin/python3 bench/bootstorm/run.py [--phones 100 500 1000] [--build build]

Topology: netns bsX-box (voiceedged, Kea; veth bsbox 10.20.0.1/16) <-> netns bsX-ph (eth0,
voiceedge-phonesim --phones N). All N phones are listed in the site file, share one port (so
PoE is per port, not per phone) and run the config's load (no firmware download). The tree serves
dialplan.xml, the rendered config's dialTemplate, as a site does (--without-dialplan leaves it out:
every step 9 is then a 404 and every boot a failed one, written to the state dir). Traffic stays
inside the two namespaces. Prints one JSON line per run and a Markdown table row.

Firmware variant (--firmware-mib M): the phones run an older load (--load OLD_LOAD) while the
site names LOAD, whose .loads file lists one M MiB image in the provisioning root; every phone
fetches it (step 8) before it registers. Downloads go over TFTP only (--transport tftp), once per
--tftp-windowsize value (1: lockstep with blksize 1428; 16: RFC 7440 windows).

    sudo /usr/bin/python3 bench/bootstorm/run.py --phones 100 --firmware-mib 10 --tftp-windowsize 1 16
"""
import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import threading
import time

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
LOAD = "sip78xx.14-2-1-0001-14"
OLD_LOAD = "sip78xx.12-8-1-0001-455"


def sh(*a, check=True):
    return subprocess.run(list(a), check=check, text=True, capture_output=True)


def mac(i):
    return "00:1f:00:{:02x}:{:02x}:{:02x}".format((i >> 16) & 0xFF, (i >> 8) & 0xFF, i & 0xFF)


def site(d, n, diag_total_mib=None):
    diag = (f"diagnostics: {{ boot_capture_total_mib: {diag_total_mib} }}\n" if diag_total_mib else "")
    phones = "\n".join(
        f'  - {{ mac: "{mac(i)}", model: CP-7841, lines: [{{ extension: "{20000 + i}", password: "pw{i}" }}] }}'
        for i in range(1, n + 1))
    return f"""site: {{ name: storm }}
state_dir: {d}/state
control: {{ socket: {d}/control.sock }}
ports:
  - {{ name: bsbox, voice_vlan: 100, data_vlan: 10, poe: {{ mode: auto, priority: high, max_watts: 30 }} }}
poe: {{ driver: sim, budget_watts: 370, sim: {{ bsbox: {{ class: 2, draw_watts: 6.3 }} }} }}
dhcp:
  kea: {{ manage: true, hook_library: {d}/libdhcp_voiceedge.so, event_socket: {d}/kea-events.sock }}
  subnets:
    - {{ vlan: 100, interface: bsbox, prefix: 10.20.0.0/16, pool: 10.20.1.0-10.20.9.255,
        router: 10.20.0.1, tftp_servers: [10.20.0.1] }}
provisioning:
  root: {d}/tftp
  call_manager_group: [{{ name: cm1, host: 10.20.0.1, sip_port: 5060, priority: 0 }}]
  default_load: {LOAD}
net: {{ mode: none }}
{diag}phones:
{phones}
"""


def rss_kib(pid, field="VmRSS"):
    """VmRSS: resident now; VmHWM: the peak resident since the process started."""
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    return 0


def daemon_pid(netns):
    """voiceedged's pid (ip netns exec execs it, so it is the Popen's pid; found by name to be sure)."""
    for pid in sh("ip", "netns", "pids", netns, check=False).stdout.split():
        try:
            with open(f"/proc/{pid}/comm") as f:
                if f.read().strip() == "voiceedged":
                    return int(pid)
        except OSError:
            pass
    return None


def cpu_s(pid):
    """utime + stime of a process and all its threads, in seconds."""
    if pid is None:
        return 0.0
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def biggest_mappings(pid, count=6):
    """The daemon's largest mappings by RSS (/proc/PID/smaps), to see what the RSS is made of."""
    out, current = [], None
    try:
        with open(f"/proc/{pid}/smaps") as f:
            for line in f:
                parts = line.split()
                if "-" in parts[0] and len(parts) >= 5 and not parts[0].endswith(":"):
                    current = {"range": parts[0], "name": parts[5] if len(parts) > 5 else "[anon]", "rss_kib": 0}
                    out.append(current)
                elif parts[0] == "Rss:" and current is not None:
                    current["rss_kib"] = int(parts[1])
    except OSError:
        return []
    out.sort(key=lambda m: -m["rss_kib"])
    return out[:count]


def kea_statistics(d):
    """Kea's own counters (statistic-get-all over its control socket): packets received, dropped
    by Kea, DISCOVERs received and OFFERs sent, to see where unanswered DISCOVERs went."""
    import socket
    try:
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.settimeout(5)
        s.connect(f"{d}/state/kea/kea4-ctrl.sock")
        s.sendall(json.dumps({"command": "statistic-get-all"}).encode())
        data = b""
        while True:
            chunk = s.recv(65536)
            if not chunk:
                break
            data += chunk
        s.close()
        args = json.loads(data.decode())["arguments"]
    except (OSError, ValueError, KeyError):
        return {}
    names = ["pkt4-received", "pkt4-discover-received", "pkt4-request-received", "pkt4-offer-sent",
             "pkt4-ack-sent", "pkt4-nak-sent", "pkt4-receive-drop", "pkt4-parse-failed"]
    return {n: args[n][0][0] for n in names if n in args}


def packet_socket_drops(netns):
    """Per process in the box's namespace: frames its packet sockets' receive queues dropped
    (ss -0: skmem d), the kernel's count, not the process's."""
    out = {}
    text = sh("ip", "netns", "exec", netns, "ss", "-0", "-a", "-m", "-p", "-n", check=False).stdout
    proc = None
    for line in text.splitlines():
        m = re.search(r'users:\(\("([^"]+)"', line)
        if m:
            proc = m.group(1)
        m = re.search(r"skmem:\(([^)]*)\)", line)
        if m and proc:
            fields = dict((k, int(v)) for k, v in re.findall(r"([a-z_]+)(\d+)", m.group(1)))
            entry = out.setdefault(proc, {"sockets": 0, "drops": 0, "rcvbuf": 0})
            entry["sockets"] += 1
            entry["drops"] += fields.get("d", 0)
            entry["rcvbuf"] = max(entry["rcvbuf"], fields.get("rb", 0))
    return out


def sample_diag(ctl, stop, peak):
    """The boot recorder's bytes held (show diag), sampled while the storm runs."""
    while not stop.is_set():
        r = subprocess.run(ctl + ["--json", "show", "diag"], capture_output=True, text=True)
        if r.returncode == 0:
            rec = json.loads(r.stdout)["recorder"]
            peak["bytes"] = max(peak.get("bytes", 0), rec["bytes"])
            peak["limit"] = rec["total_limit"]
            peak["cut"] = rec["packets_cut"]
            peak["phones"] = rec["phones"]
            # Frames the kernel ring lost before the recorder saw them (the phones lose nothing).
            peak["kernel_drops"] = sum(i["kernel_drops"] for i in json.loads(r.stdout)["interfaces"])
        stop.wait(0.5)


def run(n, build, concurrency, diag_total_mib=None, firmware_mib=0, windowsize=1, with_dialplan=True):
    tag = f"bs{os.getpid() % 1000}"
    box, ph = f"{tag}-box", f"{tag}-ph"
    d = tempfile.mkdtemp(prefix="ve-storm-")
    daemon = None
    try:
        sh("ip", "netns", "add", box)
        sh("ip", "netns", "add", ph)
        sh("ip", "-n", box, "link", "set", "lo", "up")
        sh("ip", "-n", ph, "link", "set", "lo", "up")
        sh("ip", "-n", box, "link", "add", "bsbox", "type", "veth", "peer", "name", "eth0", "netns", ph)
        sh("ip", "-n", box, "addr", "add", "10.20.0.1/16", "dev", "bsbox")
        sh("ip", "-n", box, "link", "set", "bsbox", "up")
        sh("ip", "-n", ph, "link", "set", "eth0", "up")
        os.makedirs(f"{d}/state")
        os.makedirs(f"{d}/tftp")
        if with_dialplan:  # what every site serves (the rendered config names it as dialTemplate)
            with open(f"{d}/tftp/dialplan.xml", "w") as f:
                f.write('<DIALTEMPLATE>\n  <TEMPLATE MATCH="2...." Timeout="0" User="Phone"/>\n'
                        '  <TEMPLATE MATCH="*" Timeout="5" User="Phone"/>\n</DIALTEMPLATE>\n')
        if firmware_mib:
            image = f"kern78xx.{LOAD[8:]}.sbn"
            with open(f"{d}/tftp/{LOAD}.loads", "w") as f:
                f.write(image + "\n")
            with open(f"{d}/tftp/{image}", "wb") as f:
                f.write(os.urandom(firmware_mib << 20))
        shutil.copy(os.path.join(build, "kea-hooks/libdhcp_voiceedge.so"), d)
        with open(f"{d}/site.yaml", "w") as f:
            f.write(site(d, n, diag_total_mib))
        log = open(f"{d}/voiceedged.log", "w")
        # VE_STORM_DAEMON_PREFIX: e.g. "heaptrack -o /tmp/storm" to see what the heap holds.
        prefix = os.environ.get("VE_STORM_DAEMON_PREFIX", "").split()
        daemon = subprocess.Popen(["ip", "netns", "exec", box] + prefix + [os.path.join(build, "daemon/voiceedged"),
                                   "--config", f"{d}/site.yaml", "--log-level", "warn"], stdout=log, stderr=log)
        ctl = [os.path.join(build, "ctl/voiceedgectl"), "--socket", f"{d}/control.sock"]
        for _ in range(200):
            if subprocess.run(ctl + ["version"], capture_output=True).returncode == 0:
                break
            time.sleep(0.1)
        time.sleep(2)  # Kea up, CDP fast start begun
        stop, peak = threading.Event(), {}
        sampler = threading.Thread(target=sample_diag, args=(ctl, stop, peak))
        sampler.start()
        extra = []
        if firmware_mib:
            extra = ["--transport", "tftp", "--tftp-windowsize", str(windowsize), "--fetch-timeout-s", "300"]
        load_before = open("/proc/loadavg").read().split()[0]
        cpu0 = cpu_s(daemon_pid(box))
        t0 = time.time()
        sim = subprocess.run(["ip", "netns", "exec", ph, os.path.join(build, "phonesim/voiceedge-phonesim"),
                              "--interface", "eth0", "--phones", str(n), "--first-mac", mac(1),
                              "--load", OLD_LOAD if firmware_mib else LOAD,
                              "--concurrency", str(concurrency), "--timeout-s", "600", "--json"] + extra,
                             capture_output=True, text=True)
        wall = time.time() - t0
        cpu1 = cpu_s(daemon_pid(box))
        if os.environ.get("VE_STORM_SIM_OUT"):  # every phone's result, to see where the slow ones waited
            with open(f"{os.environ['VE_STORM_SIM_OUT']}-{n}.jsonl", "w") as f:
                f.write(sim.stdout)
        summary = {}
        for line in sim.stdout.splitlines():
            try:
                obj = json.loads(line)
            except ValueError:
                continue
            if "summary" in obj:
                summary = obj["summary"]
        stop.set()
        sampler.join()
        phones_seen = json.loads(subprocess.run(ctl + ["--json", "show", "phones"], capture_output=True,
                                                text=True).stdout or "[]")
        result = {"phones": n, "concurrency": concurrency, "wall_s": round(wall, 2),
                  "firmware_mib": firmware_mib, "tftp_windowsize": windowsize if firmware_mib else None,
                  "load_before": load_before, "daemon_cpu_s": round(cpu1 - cpu0, 2),
                  "registered": summary.get("registered"), "summary": summary,
                  "daemon_registered": sum(1 for p in phones_seen if p.get("registered")),
                  # After the storm (the simulator has exited, show phones answered): as before.
                  "daemon_rss_mib": round(rss_kib(daemon_pid(box)) / 1024, 1),
                  "daemon_peak_rss_mib": round(rss_kib(daemon_pid(box), "VmHWM") / 1024, 1),
                  "daemon_biggest_mappings": biggest_mappings(daemon_pid(box)),
                  "kea": kea_statistics(d), "packet_socket_drops": packet_socket_drops(box),
                  "boot_recorder": {"peak_bytes": peak.get("bytes"), "limit_bytes": peak.get("limit"),
                                    "packets_cut": peak.get("cut"), "phones": peak.get("phones"),
                                    "kernel_drops": peak.get("kernel_drops")}}
        if os.environ.get("VE_STORM_INSPECT"):  # e.g. gdb's malloc_info on the daemon, before teardown
            r = subprocess.run(["sh", "-c", os.environ["VE_STORM_INSPECT"]], capture_output=True, text=True,
                               env=dict(os.environ, PID=str(daemon_pid(box)), STORM_DIR=d))
            result["inspect"] = r.stdout + r.stderr
        return result
    finally:
        if daemon:
            daemon.terminate()
            try:
                daemon.wait(20)
            except subprocess.TimeoutExpired:
                daemon.kill()
        for ns in (box, ph):
            for pid in sh("ip", "netns", "pids", ns, check=False).stdout.split():
                try:
                    os.kill(int(pid), 9)
                except (ProcessLookupError, ValueError):
                    pass
            sh("ip", "netns", "del", ns, check=False)
        shutil.rmtree(d, ignore_errors=True)


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--phones", type=int, nargs="+", default=[100, 500, 1000])
    p.add_argument("--concurrency", type=int, default=200)
    p.add_argument("--build", default=os.path.join(ROOT, "build"))
    p.add_argument("--diag-total-mib", type=int, help="diagnostics.boot_capture_total_mib for the run")
    p.add_argument("--firmware-mib", type=int, default=0, help="firmware variant: size of the new load's image")
    p.add_argument("--tftp-windowsize", type=int, nargs="+", default=[1], help="firmware variant: windowsizes")
    p.add_argument("--without-dialplan", action="store_true",
                   help="leave dialplan.xml out of the tree: every phone's step 9 is a 404, so every boot is "
                        "recorded as failed and written to the state dir (the storm before 2026-12-03 session 8)")
    p.add_argument("--rmem-default", type=int,
                   help="net.core.rmem_default for the run (machine-wide on this kernel, restored after): "
                        "the receive buffer Kea's raw socket gets")
    a = p.parse_args()
    rows = []
    # The box needs one ARP entry per phone address; the kernel's default table (gc_thresh3 1024,
    # machine-wide on this kernel) overflows near 1000 phones. Raised for the run, then restored.
    thresh = "/proc/sys/net/ipv4/neigh/default/gc_thresh3"
    old_thresh = open(thresh).read().strip()
    # Kea 2.2 cannot size its raw socket's receive buffer: it gets net.core.rmem_default (212992
    # here), about 167 DISCOVERs; the simulator's first 200 arrive at once (docs/benchmarks.md).
    rmem = "/proc/sys/net/core/rmem_default"
    old_rmem = open(rmem).read().strip()
    try:
        if a.rmem_default:
            with open(rmem, "w") as f:
                f.write(str(a.rmem_default))
        if max(a.phones) > 900:
            with open(thresh, "w") as f:
                f.write("8192")
        for n in a.phones:
            for w in (a.tftp_windowsize if a.firmware_mib else [1]):
                r = run(n, a.build, a.concurrency, a.diag_total_mib, a.firmware_mib, w, not a.without_dialplan)
                r["rmem_default"] = int(open(rmem).read())
                print(json.dumps(r), flush=True)
                rows.append(r)
    finally:
        with open(thresh, "w") as f:
            f.write(old_thresh)
        with open(rmem, "w") as f:
            f.write(old_rmem)
    print("\n| phones | firmware | registered (sim / daemon) | start to all registered | p50 / p95 time to registered "
          "| daemon RSS after (peak) | daemon CPU | load before |")
    print("|---:|---|---:|---:|---:|---:|---:|---:|")
    for r in rows:
        s = r["summary"]
        fw = f"{r['firmware_mib']} MiB, windowsize {r['tftp_windowsize']}" if r["firmware_mib"] else "none"
        print(f"| {r['phones']} | {fw} | {r['registered']} / {r['daemon_registered']} | "
              f"{s.get('all_registered_ms', 'n/a')} ms (wall {r['wall_s']} s) | "
              f"{s.get('time_to_registered_ms', {}).get('p50', 'n/a')} / "
              f"{s.get('time_to_registered_ms', {}).get('p95', 'n/a')} ms | "
              f"{r['daemon_rss_mib']} ({r['daemon_peak_rss_mib']}) MiB | "
              f"{r['daemon_cpu_s']} s | {r['load_before']} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
