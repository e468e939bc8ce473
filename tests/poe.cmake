# poe/ with cdp/: a scapy phone asks for power over CDP against the real voiceedged (sim PSE).
# Included by tests/CMakeLists.txt (which provides ve_test_support).
if(TARGET ve_poe AND TARGET ve_cdp AND TARGET voiceedged)
  add_executable(poe_cdp_netns_tests poe_cdp_netns_test.cpp)
  target_link_libraries(poe_cdp_netns_tests PRIVATE ve_test_support GTest::gtest GTest::gtest_main)
  gtest_discover_tests(poe_cdp_netns_tests DISCOVERY_TIMEOUT 60 PROPERTIES LABELS netns TIMEOUT 180)
endif()
