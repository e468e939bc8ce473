# Phone control (daemon/phonectl_component.cpp): the service-control NOTIFY to sipp phones over
# UDP on loopback, with the real voiceedged and voiceedgectl (label netns: real external peer).
if(TARGET ve_sip AND TARGET voiceedged)
  ve_integration_test(phonectl_sipp_tests netns phonectl_sipp_test.cpp)
  target_compile_definitions(phonectl_sipp_tests PRIVATE VE_SIPP_SCENARIOS="${CMAKE_CURRENT_SOURCE_DIR}/sipp")
endif()
# The same with the real branch (label e2e): voiceedged + kea-dhcp4 + phonesim over TCP in netns.
if(TARGET voiceedge-phonesim AND TARGET dhcp_voiceedge)
  add_test(NAME e2e_phonectl COMMAND /usr/bin/python3 ${CMAKE_CURRENT_SOURCE_DIR}/e2e/test_phonectl.py)
  set_tests_properties(e2e_phonectl PROPERTIES LABELS e2e TIMEOUT 600 ENVIRONMENT "VE_BUILD_DIR=${CMAKE_BINARY_DIR}")
endif()
