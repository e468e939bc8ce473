# cdp/: CDP and LLDP(-MED) decoders. Seeds: fuzz/corpus/cdp/, fuzz/corpus/lldp/.
if(TARGET ve_cdp_codec)
  ve_fuzz_target(cdp_decode_fuzz ${CMAKE_CURRENT_SOURCE_DIR}/cdp_decode_fuzz.cpp ve_cdp_codec)
  ve_fuzz_target(lldp_decode_fuzz ${CMAKE_CURRENT_SOURCE_DIR}/lldp_decode_fuzz.cpp ve_cdp_codec)
endif()
