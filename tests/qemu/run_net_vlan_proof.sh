#!/usr/bin/env bash
# Boots Debian's linux-image-amd64 kernel under qemu (software emulation) with an initramfs built
# here (tests/qemu/vm.sh): busybox, the bridge/8021q/veth modules, and net_vlan_proof with its
# shared libraries. The proof prints "VE-QEMU-RESULT: PASS|FAIL ..."; this script turns that into
# the exit code. Exit 77 (CTest skip) only when qemu or the kernel image cannot be used at all.
#   usage: run_net_vlan_proof.sh PROOF_BINARY WORK_DIR
set -euo pipefail

proof=${1:?usage: $0 PROOF_BINARY WORK_DIR}
work=${2:?usage: $0 PROOF_BINARY WORK_DIR}
source "$(dirname "$0")/vm.sh"

vm_prepare "$work"
vm_add_file "$proof" /bin/net_vlan_proof
vm_boot 200 768 /bin/net_vlan_proof
