# Fuzz target for the DHCP side: the lease-report decoder (daemon input), Kea's lease-file parser,
# and the hook's handling of client option 60/55 bytes. Only the pure ve_kea_hooks_codec is linked.
ve_fuzz_target(fuzz_kea_hooks ${CMAKE_CURRENT_SOURCE_DIR}/kea_hooks_fuzz.cpp ve_kea_hooks_codec)
