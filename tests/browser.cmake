# The status page in a real browser (label browser): tests/browser/test_dashboard.py drives
# Debian's headless Chromium over the DevTools protocol against voiceedged + phonesim in netns.
# Screenshots land in <build>/artifacts/browser (kept by CI as artefacts).
if(TARGET voiceedge-phonesim AND TARGET dhcp_voiceedge)
  add_test(NAME browser_dashboard COMMAND /usr/bin/python3 ${CMAKE_CURRENT_SOURCE_DIR}/browser/test_dashboard.py)
  set_tests_properties(browser_dashboard PROPERTIES LABELS browser TIMEOUT 180
                       ENVIRONMENT "VE_BUILD_DIR=${CMAKE_BINARY_DIR}")
endif()
