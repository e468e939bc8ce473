# net/: root / network-namespace tests (label netns) and the qemu VLAN proof (label qemu).
# Included by tests/CMakeLists.txt.
if(TARGET ve_net)
  pkg_check_modules(VE_NET_TEST_LIBNL REQUIRED IMPORTED_TARGET libnl-3.0 libnl-route-3.0)
  add_executable(net_netns_tests net_netns_test.cpp net_testns.cpp)
  target_link_libraries(net_netns_tests PRIVATE ve_net PkgConfig::VE_NET_TEST_LIBNL GTest::gtest GTest::gtest_main)
  target_include_directories(net_netns_tests PRIVATE ${PROJECT_SOURCE_DIR})
  gtest_discover_tests(net_netns_tests DISCOVERY_TIMEOUT 60 PROPERTIES LABELS netns TIMEOUT 60)

  # The VLAN data plane on a kernel that has 8021q and bridge VLAN filtering: Debian's kernel
  # under qemu (software emulation). Skips (exit 77) only when qemu or the kernel cannot run.
  add_executable(net_vlan_proof qemu/net_vlan_proof.cpp net_testns.cpp)
  target_link_libraries(net_vlan_proof PRIVATE ve_net PkgConfig::VE_NET_TEST_LIBNL)
  target_include_directories(net_vlan_proof PRIVATE ${PROJECT_SOURCE_DIR})
  add_test(NAME net_qemu_vlan_proof
           COMMAND ${CMAKE_CURRENT_SOURCE_DIR}/qemu/run_net_vlan_proof.sh $<TARGET_FILE:net_vlan_proof>
                   ${CMAKE_CURRENT_BINARY_DIR}/net_qemu)
  set_tests_properties(net_qemu_vlan_proof PROPERTIES LABELS qemu TIMEOUT 240 SKIP_RETURN_CODE 77)
endif()

# The whole boot on a tagged voice VLAN in the same VM: the real voiceedged (bridge and
# subinterface mode) with kea-dhcp4 and our hook, voiceedge-phonesim --tag-voice-vlan, a PC.
if(TARGET ve_net AND TARGET voiceedged AND TARGET voiceedgectl AND TARGET voiceedge-phonesim
   AND TARGET dhcp_voiceedge AND TARGET ve_test_support)
  add_executable(e2e_voice_vlan qemu/e2e_voice_vlan.cpp net_testns.cpp)
  target_link_libraries(e2e_voice_vlan PRIVATE ve_test_support PkgConfig::VE_NET_TEST_LIBNL fmt::fmt)
  target_include_directories(e2e_voice_vlan PRIVATE ${PROJECT_SOURCE_DIR})
  add_dependencies(e2e_voice_vlan voiceedged voiceedgectl voiceedge-phonesim dhcp_voiceedge)
  add_test(NAME e2e_qemu_voice_vlan
           COMMAND ${CMAKE_CURRENT_SOURCE_DIR}/qemu/run_e2e_voice_vlan.sh $<TARGET_FILE:e2e_voice_vlan>
                   $<TARGET_FILE:voiceedged> $<TARGET_FILE:voiceedgectl> $<TARGET_FILE:voiceedge-phonesim>
                   $<TARGET_FILE:dhcp_voiceedge> ${CMAKE_CURRENT_BINARY_DIR}/e2e_qemu)
  set_tests_properties(e2e_qemu_voice_vlan PROPERTIES LABELS qemu TIMEOUT 450 SKIP_RETURN_CODE 77)
endif()

# net + cdp: link down from the monitor expires CDP neighbours (label netns).
if(TARGET ve_net AND TARGET ve_cdp)
  add_executable(net_cdp_netns_tests net_cdp_netns_test.cpp net_testns.cpp)
  target_link_libraries(net_cdp_netns_tests PRIVATE ve_net ve_cdp PkgConfig::VE_NET_TEST_LIBNL GTest::gtest GTest::gtest_main)
  target_include_directories(net_cdp_netns_tests PRIVATE ${PROJECT_SOURCE_DIR})
  gtest_discover_tests(net_cdp_netns_tests DISCOVERY_TIMEOUT 60 PROPERTIES LABELS netns TIMEOUT 60)
endif()

# The real voiceedged: show interfaces, link events, late port, reload (label netns).
if(TARGET ve_net AND TARGET voiceedged AND COMMAND ve_integration_test)
  ve_integration_test(net_daemon_netns_tests netns net_daemon_netns_test.cpp)
endif()
