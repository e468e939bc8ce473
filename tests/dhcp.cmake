# dhcp/ and kea-hooks/: netns tests with real kea-dhcp4 (need root). Included by
# tests/CMakeLists.txt.

# The hook in a real kea-dhcp4, a scapy client in another namespace.
add_executable(dhcp_hook_netns_tests dhcp_hook_netns_test.cpp)
target_link_libraries(dhcp_hook_netns_tests PRIVATE ve_kea_hooks ve_test_fixture GTest::gtest GTest::gtest_main)
target_compile_definitions(dhcp_hook_netns_tests PRIVATE
  VE_HOOK_LIBRARY="$<TARGET_FILE:dhcp_voiceedge>" VE_TESTS_DIR="${CMAKE_CURRENT_SOURCE_DIR}")
add_dependencies(dhcp_hook_netns_tests dhcp_voiceedge)
gtest_discover_tests(dhcp_hook_netns_tests DISCOVERY_TIMEOUT 60 PROPERTIES LABELS netns TIMEOUT 120)

# voiceedged managing Kea (dhcp.kea.manage: true).
add_executable(dhcp_managed_netns_tests dhcp_managed_netns_test.cpp)
target_link_libraries(dhcp_managed_netns_tests PRIVATE ve_common ve_test_fixture nlohmann_json::nlohmann_json GTest::gtest
                      GTest::gtest_main)
target_compile_definitions(dhcp_managed_netns_tests PRIVATE
  VE_HOOK_LIBRARY="$<TARGET_FILE:dhcp_voiceedge>" VE_TESTS_DIR="${CMAKE_CURRENT_SOURCE_DIR}"
  VE_VOICEEDGED="$<TARGET_FILE:voiceedged>" VE_VOICEEDGECTL="$<TARGET_FILE:voiceedgectl>")
add_dependencies(dhcp_managed_netns_tests dhcp_voiceedge voiceedged voiceedgectl)
gtest_discover_tests(dhcp_managed_netns_tests DISCOVERY_TIMEOUT 60 PROPERTIES LABELS netns TIMEOUT 180)
