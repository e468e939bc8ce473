# Diagnostics (issue 16): capture, boot recorder and report against the real daemon, Kea and
# phonesim in namespaces, checked with tshark. Label e2e (it boots a small branch).
if(TARGET voiceedge-phonesim AND TARGET dhcp_voiceedge)
  add_test(NAME e2e_diag COMMAND /usr/bin/python3 ${CMAKE_CURRENT_SOURCE_DIR}/e2e/test_diag.py)
  set_tests_properties(e2e_diag PROPERTIES LABELS e2e TIMEOUT 600 ENVIRONMENT "VE_BUILD_DIR=${CMAKE_BINARY_DIR}")
endif()
