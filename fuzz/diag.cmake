# diag/: the frame classifier that attributes captured frames to phones (it reads every frame on
# the voice VLAN), and the packet scrubber run over those frames. Seeds: fuzz/corpus/diag_frame/.
if(TARGET ve_diag_codec)
  ve_fuzz_target(diag_frame_fuzz ${CMAKE_CURRENT_SOURCE_DIR}/diag_frame_fuzz.cpp ve_diag_codec)
endif()
