# Phone control (daemon/phonectl_component.cpp): the service-control NOTIFY to sipp phones over
# UDP on loopback, with the real voiceedged and voiceedgectl (label netns: real external peer).
if(TARGET ve_sip AND TARGET voiceedged)
  ve_integration_test(phonectl_sipp_tests netns phonectl_sipp_test.cpp)
  target_compile_definitions(phonectl_sipp_tests PRIVATE VE_SIPP_SCENARIOS="${CMAKE_CURRENT_SOURCE_DIR}/sipp")
endif()
