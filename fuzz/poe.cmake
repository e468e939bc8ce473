# poe/: the ethtool PSE reply/notification parser (kernel input). Seeds: fuzz/corpus/poe/.
if(TARGET ve_poe_codec)
  ve_fuzz_target(poe_pse_reply_fuzz ${CMAKE_CURRENT_SOURCE_DIR}/poe_pse_reply_fuzz.cpp ve_poe_codec)
endif()
