# dhcp/: the lease-report decoder (daemon input), Kea's lease-file parser, and the hook's handling
# of client option 60/55 bytes. Seeds: fuzz/corpus/dhcp_codec/. Only the pure ve_dhcp_codec is linked.
ve_fuzz_target(dhcp_codec_fuzz ${CMAKE_CURRENT_SOURCE_DIR}/dhcp_codec_fuzz.cpp ve_dhcp_codec)
