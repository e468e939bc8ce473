#!/usr/bin/env bash
# The whole boot on a tagged voice VLAN under qemu (see e2e_voice_vlan.cpp): the initramfs of
# tests/qemu/vm.sh plus the real voiceedged, voiceedgectl, voiceedge-phonesim, kea-dhcp4 with its
# libraries and our hook, each at the path it has here (the driver and the daemon's site file
# name them so). Exit 77 (CTest skip) only when qemu, the kernel image or Kea cannot be used.
#   usage: run_e2e_voice_vlan.sh DRIVER VOICEEDGED VOICEEDGECTL PHONESIM HOOK WORK_DIR [MODE...]
set -euo pipefail

driver=${1:?usage: $0 DRIVER VOICEEDGED VOICEEDGECTL PHONESIM HOOK WORK_DIR [MODE...]}
voiceedged=${2:?} voiceedgectl=${3:?} phonesim=${4:?} hook=${5:?} work=${6:?}
shift 6
source "$(dirname "$0")/vm.sh"

kea=/usr/sbin/kea-dhcp4
lfc=/usr/sbin/kea-lfc  # the memfile lease database refuses to open without it
[[ -x "$kea" ]] || vm_skip "kea-dhcp4 is not installed (package kea-dhcp4-server)"
vm_prepare "$work"
for f in "$driver" "$voiceedged" "$voiceedgectl" "$phonesim" "$hook" "$kea" "$lfc"; do
  vm_add_file "$f"
  # Debug info is most of their size: without it the initramfs packs and boots faster.
  strip --strip-debug "$root/$f" 2>/dev/null || true
done
mkdir -p "$root/var/lib/kea" "$root/run/kea" "$root/var/log"
# Kea serves up to two phones, a PC, a restart and a second mode: 5 minutes is plenty under TCG.
vm_boot 400 1024 "$driver" "$phonesim" "$hook" "$@"
