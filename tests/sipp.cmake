# sip/: sipp scenarios against the real voiceedged over loopback (label netns: real external peer).
# Included by tests/CMakeLists.txt.
if(TARGET ve_sip AND TARGET voiceedged)
  ve_integration_test(sip_sipp_tests netns sipp/sipp_test.cpp)
  target_compile_definitions(sip_sipp_tests PRIVATE VE_SIPP_SCENARIOS="${CMAKE_CURRENT_SOURCE_DIR}/sipp")
endif()
if(TARGET ve_sip AND TARGET voiceedged)
  ve_integration_test(sip_sipp_call_tests netns sipp/sipp_call_test.cpp)
  target_compile_definitions(sip_sipp_call_tests PRIVATE VE_SIPP_SCENARIOS="${CMAKE_CURRENT_SOURCE_DIR}/sipp")
endif()
