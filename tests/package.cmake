# The Debian package: built from this tree's programs, linted, installed into a throwaway Debian
# root with apt-get, removed and purged (tests/package/package_test.sh). Needs root, lintian,
# mmdebstrap (./scripts/deps) and the Debian mirror; about a minute once its package cache
# (<build>/package-cache) is warm.
if(TARGET voiceedged AND TARGET voiceedgectl AND TARGET dhcp_voiceedge AND TARGET voiceedge-phonesim)
  add_test(NAME package_deb COMMAND ${CMAKE_CURRENT_SOURCE_DIR}/package/package_test.sh ${PROJECT_SOURCE_DIR} ${PROJECT_BINARY_DIR})
  set_tests_properties(package_deb PROPERTIES LABELS package TIMEOUT 600 RUN_SERIAL TRUE)
endif()
