# Shared by the qemu proofs (sourced, not run): builds an initramfs from this machine's files
# (busybox-static, Debian's kernel modules, our binaries with the libraries ldd lists) and boots
# Debian's linux-image-amd64 kernel under qemu with software emulation (TCG, one vCPU).
# A proof prints "VE-QEMU-RESULT: PASS|FAIL ..." on the console; vm_boot turns that into the
# exit code. Exit 77 (CTest skip) only when qemu or the kernel image cannot be used at all.
#
#   vm_prepare WORK_DIR            checks the tools, starts $root with busybox and the modules
#   vm_add_file PATH [DEST]        a file (and, for ELF files, every library it needs) at DEST
#                                  inside the VM (default: the same path)
#   vm_boot TIMEOUT_S MEM_MB COMMAND...   writes /init running COMMAND, boots, checks the result

vm_skip() {
  echo "SKIP: $*"
  exit 77
}

# Modules in dependency order (modinfo -F depends): llc, stp, garp, mrp -> 8021q; llc, stp -> bridge.
vm_modules=(llc stp garp mrp 8021q bridge veth)

vm_prepare() {
  vm_work=${1:?vm_prepare WORK_DIR}
  vm_qemu=$(command -v qemu-system-x86_64 || true)
  [[ -n "$vm_qemu" ]] || vm_skip "qemu-system-x86_64 is not installed (package qemu-system-x86)"
  vm_kernel=$(ls /boot/vmlinuz-6.1.* 2>/dev/null | sort -V | tail -n 1 || true)
  [[ -n "$vm_kernel" && -r "$vm_kernel" ]] || vm_skip "no readable /boot/vmlinuz-6.1.* (package linux-image-amd64)"
  local kver=${vm_kernel#/boot/vmlinuz-}
  local moddir=/lib/modules/$kver
  [[ -d "$moddir" ]] || vm_skip "no modules for $kver in $moddir"
  local busybox
  busybox=$(command -v busybox || true)
  [[ -n "$busybox" ]] || vm_skip "busybox is not installed (package busybox-static)"
  command -v cpio >/dev/null || vm_skip "cpio is not installed"

  rm -rf "$vm_work"
  root=$vm_work/root
  mkdir -p "$root"/{bin,dev,proc,sys,tmp,run,etc,lib/modules}
  cp "$busybox" "$root/bin/busybox"
  if ldd "$busybox" >/dev/null 2>&1; then
    echo "busybox at $busybox is dynamically linked; copying its libraries"
    vm_add_file "$busybox" /bin/busybox
  fi
  local m f
  for m in "${vm_modules[@]}"; do
    f=$(find "$moddir/kernel" -name "$m.ko" -o -name "$m.ko.xz" -o -name "$m.ko.zst" | head -n 1)
    [[ -n "$f" ]] || { echo "VE-QEMU-RESULT: FAIL module $m not found under $moddir"; exit 1; }
    case "$f" in
      *.xz) xz -dc "$f" >"$root/lib/modules/$m.ko" ;;
      *.zst) zstd -qdc "$f" >"$root/lib/modules/$m.ko" ;;
      *) cp "$f" "$root/lib/modules/$m.ko" ;;
    esac
  done
  # Some loaders are looked up through /lib64.
  [[ -e "$root/lib64" ]] || ln -s lib "$root/lib64" 2>/dev/null || true
  echo "root:x:0:0:root:/root:/bin/sh" >"$root/etc/passwd"
  echo "root:x:0:" >"$root/etc/group"
}

vm_add_file() {
  local src=${1:?vm_add_file PATH [DEST]} dest=${2:-$1} lib
  [[ -r "$src" ]] || { echo "VE-QEMU-RESULT: FAIL $src is missing"; exit 1; }
  mkdir -p "$root/$(dirname "$dest")"
  cp -L "$src" "$root/$dest"
  # Every shared library it needs (the dynamic loader included), at its own path.
  if ldd "$src" >/dev/null 2>&1; then
    for lib in $(ldd "$src" | grep -o '/[^ ]*' | sort -u); do
      [[ -e "$root/$lib" ]] || cp --parents -L "$lib" "$root/"
    done
  fi
}

vm_boot() {
  local limit=${1:?vm_boot TIMEOUT_S MEM_MB COMMAND...} mem=${2:?} rc
  shift 2
  cat >"$root/init" <<EOF
#!/bin/busybox sh
/bin/busybox mount -t proc proc /proc
/bin/busybox mount -t sysfs sys /sys
/bin/busybox mount -t devtmpfs dev /dev
/bin/busybox --install -s /bin
export PATH=/bin:/sbin:/usr/bin:/usr/sbin
echo "VE-INIT: booted \$(uname -r)"
for m in ${vm_modules[*]}; do
  insmod /lib/modules/\$m.ko || echo "VE-INIT: insmod \$m failed"
done
ip link set lo up
$*
echo "VE-INIT: proof exited \$?"
poweroff -f
EOF
  chmod +x "$root/init"

  (cd "$root" && find . | cpio -o -H newc --quiet | gzip -1 >"$vm_work/initrd.gz")
  echo "initramfs: $(du -h "$vm_work/initrd.gz" | cut -f1), kernel $vm_kernel"

  local log=$vm_work/console.log
  set +e
  timeout "$limit" "$vm_qemu" -accel tcg -m "$mem" -smp 1 -nographic -no-reboot -nic none \
    -kernel "$vm_kernel" -initrd "$vm_work/initrd.gz" \
    -append "console=ttyS0 panic=-1 quiet loglevel=3" </dev/null >"$log" 2>&1
  rc=$?
  set -e
  tr -d '\r' <"$log" | grep -vE '^\s*$' | grep -vE 'SeaBIOS|iPXE|Booting from|^Machine UUID|^Press' || true

  if ! grep -q 'VE-INIT: booted' "$log"; then
    if ((rc == 124)); then
      echo "VE-QEMU-RESULT: FAIL the VM did not reach init within $limit s"
      exit 1
    fi
    # Firmware or kernel output means qemu ran: not reaching init is then our failure.
    if grep -qE 'SeaBIOS|Booting from|Linux version|Kernel panic' "$log"; then
      echo "VE-QEMU-RESULT: FAIL the VM booted but never ran init (qemu exit $rc)"
      exit 1
    fi
    vm_skip "qemu could not run at all (exit $rc)"
  fi
  if grep -q 'VE-QEMU-RESULT: PASS' "$log"; then
    return 0
  fi
  if ((rc == 124)); then
    echo "VE-QEMU-RESULT: FAIL the VM ran out of its $limit s"
  else
    grep -q 'VE-QEMU-RESULT: FAIL' "$log" || echo "VE-QEMU-RESULT: FAIL no result line (qemu exit $rc)"
  fi
  exit 1
}
