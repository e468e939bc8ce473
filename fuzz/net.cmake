# Fuzz target for net/: the bridge VLAN table decoder (IFLA_AF_SPEC of AF_BRIDGE link messages,
# read from the kernel on every reconcile). Only the pure ve_net_codec is linked.
ve_fuzz_target(fuzz_net_vlan_spec ${CMAKE_CURRENT_SOURCE_DIR}/net_vlan_spec_fuzz.cpp ve_net_codec)
