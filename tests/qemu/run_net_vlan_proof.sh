#!/usr/bin/env bash
# Boots Debian's linux-image-amd64 kernel under qemu (software emulation) with an initramfs built
# here: busybox, the bridge/8021q/veth modules, and net_vlan_proof with its shared libraries.
# The proof prints "VE-QEMU-RESULT: PASS|FAIL ..."; this script turns that into the exit code.
# Exit 77 (CTest skip) only when qemu or the kernel image cannot be used at all.
#   usage: run_net_vlan_proof.sh PROOF_BINARY WORK_DIR
set -euo pipefail

proof=${1:?usage: $0 PROOF_BINARY WORK_DIR}
work=${2:?usage: $0 PROOF_BINARY WORK_DIR}
skip() { echo "SKIP: $*"; exit 77; }

qemu=$(command -v qemu-system-x86_64 || true)
[[ -n "$qemu" ]] || skip "qemu-system-x86_64 is not installed (package qemu-system-x86)"
kernel=$(ls /boot/vmlinuz-6.1.* 2>/dev/null | sort -V | tail -n 1 || true)
[[ -n "$kernel" && -r "$kernel" ]] || skip "no readable /boot/vmlinuz-6.1.* (package linux-image-amd64)"
kver=${kernel#/boot/vmlinuz-}
moddir=/lib/modules/$kver
[[ -d "$moddir" ]] || skip "no modules for $kver in $moddir"
busybox=$(command -v busybox || true)
[[ -n "$busybox" ]] || skip "busybox is not installed (package busybox-static)"
command -v cpio >/dev/null || skip "cpio is not installed"

rm -rf "$work"
root=$work/root
mkdir -p "$root"/{bin,dev,proc,sys,tmp,lib/modules}
cp "$busybox" "$root/bin/busybox"
if ldd "$busybox" >/dev/null 2>&1; then
  echo "busybox at $busybox is dynamically linked; copying its libraries"
fi

# Modules in dependency order (modinfo -F depends): llc, stp, garp, mrp -> 8021q; llc, stp -> bridge.
mods=(llc stp garp mrp 8021q bridge veth)
for m in "${mods[@]}"; do
  f=$(find "$moddir/kernel" -name "$m.ko" -o -name "$m.ko.xz" -o -name "$m.ko.zst" | head -n 1)
  [[ -n "$f" ]] || { echo "VE-QEMU-RESULT: FAIL module $m not found under $moddir"; exit 1; }
  case "$f" in
    *.xz) xz -dc "$f" >"$root/lib/modules/$m.ko" ;;
    *.zst) zstd -qdc "$f" >"$root/lib/modules/$m.ko" ;;
    *) cp "$f" "$root/lib/modules/$m.ko" ;;
  esac
done

# The proof and every shared library it needs (the dynamic loader included), at their own paths.
cp "$proof" "$root/bin/net_vlan_proof"
for lib in $(ldd "$proof" | grep -o '/[^ ]*' | sort -u); do
  cp --parents -L "$lib" "$root/"
done
# Some loaders are looked up through /lib64.
[[ -e "$root/lib64" ]] || ln -s lib "$root/lib64" 2>/dev/null || true

cat >"$root/init" <<EOF
#!/bin/busybox sh
/bin/busybox mount -t proc proc /proc
/bin/busybox mount -t sysfs sys /sys
/bin/busybox mount -t devtmpfs dev /dev
/bin/busybox echo "VE-INIT: booted \$(/bin/busybox uname -r)"
for m in ${mods[*]}; do
  /bin/busybox insmod /lib/modules/\$m.ko || /bin/busybox echo "VE-INIT: insmod \$m failed"
done
/bin/net_vlan_proof
/bin/busybox echo "VE-INIT: proof exited \$?"
/bin/busybox poweroff -f
EOF
chmod +x "$root/init"

(cd "$root" && find . | cpio -o -H newc --quiet | gzip -1 >"$work/initrd.gz")
echo "initramfs: $(du -h "$work/initrd.gz" | cut -f1), kernel $kernel"

log=$work/console.log
set +e
timeout 200 "$qemu" -accel tcg -m 768 -smp 1 -nographic -no-reboot -nic none \
  -kernel "$kernel" -initrd "$work/initrd.gz" \
  -append "console=ttyS0 panic=-1 quiet loglevel=3" </dev/null >"$log" 2>&1
rc=$?
set -e
tr -d '\r' <"$log" | grep -E 'VE-|net_vlan_proof|show.interfaces|frames on|phase|\[net\]' || true

if ! grep -q 'VE-INIT: booted' "$log"; then
  if ((rc == 124)); then
    echo "VE-QEMU-RESULT: FAIL the VM did not reach init within 200 s"; exit 1
  fi
  tail -n 20 "$log"
  # Firmware or kernel output means qemu ran: not reaching init is then our failure.
  if grep -qE 'SeaBIOS|Booting from|Linux version|Kernel panic' "$log"; then
    echo "VE-QEMU-RESULT: FAIL the VM booted but never ran init (qemu exit $rc)"; exit 1
  fi
  skip "qemu could not run at all (exit $rc)"
fi
if grep -q 'VE-QEMU-RESULT: PASS' "$log"; then
  exit 0
fi
grep -q 'VE-QEMU-RESULT: FAIL' "$log" || echo "VE-QEMU-RESULT: FAIL no result line (qemu exit $rc)"
tail -n 30 "$log"
exit 1
