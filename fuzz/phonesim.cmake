# phonesim/: what a simulated phone parses from the network - DHCP replies (raw frames), digest
# challenges, phone config XML and .loads lists. Seeds: fuzz/corpus/phonesim/.
if(TARGET ve_phonesim_codec)
  ve_fuzz_target(phonesim_replies_fuzz ${CMAKE_CURRENT_SOURCE_DIR}/phonesim_replies_fuzz.cpp ve_phonesim_codec)
endif()
