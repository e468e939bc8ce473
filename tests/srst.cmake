# SRST (sip.upstream): a real Kamailio as the central cluster in its own network namespace, sipp
# phones behind the box (label netns). Included by tests/CMakeLists.txt.
if(TARGET ve_sip AND TARGET voiceedged)
  ve_integration_test(sip_srst_tests netns srst/srst_test.cpp)
  target_compile_definitions(sip_srst_tests PRIVATE VE_SIPP_SCENARIOS="${CMAKE_CURRENT_SOURCE_DIR}/sipp")
endif()
