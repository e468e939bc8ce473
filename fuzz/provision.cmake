# TFTP packet parser and option negotiation (provision/tftp_codec.cpp); seeds in corpus/tftp/.
ve_fuzz_target(tftp_packet_fuzz ${CMAKE_CURRENT_SOURCE_DIR}/tftp_packet_fuzz.cpp ve_provision_codec)
