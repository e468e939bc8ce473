# The end-to-end run (label e2e): tests/e2e/test_e2e.py against the built binaries.
# /usr/bin/python3 on purpose: Debian's interpreter, whatever else is first on PATH.
if(TARGET voiceedge-phonesim AND TARGET dhcp_voiceedge)
  add_test(NAME e2e_branch COMMAND /usr/bin/python3 ${CMAKE_CURRENT_SOURCE_DIR}/e2e/test_e2e.py)
  set_tests_properties(e2e_branch PROPERTIES LABELS e2e TIMEOUT 900
                       ENVIRONMENT "VE_BUILD_DIR=${CMAKE_BINARY_DIR}")
endif()
