# cdp/: netns tests with real peers (tshark, lldpd, scapy) against the real voiceedged.
# Included by tests/CMakeLists.txt (which provides ve_test_support and ve_integration_test).
if(TARGET ve_cdp AND TARGET voiceedged)
  add_executable(cdp_netns_tests cdp_netns_test.cpp)
  target_link_libraries(cdp_netns_tests PRIVATE ve_test_support GTest::gtest GTest::gtest_main)
  gtest_discover_tests(cdp_netns_tests DISCOVERY_TIMEOUT 60 PROPERTIES LABELS netns TIMEOUT 120)
endif()
