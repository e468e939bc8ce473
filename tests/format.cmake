# The code passes clang-format (.clang-format at the root).
find_program(CLANG_FORMAT clang-format)
if(CLANG_FORMAT)
  add_test(NAME clang_format_check COMMAND ${PROJECT_SOURCE_DIR}/scripts/check-format)
  set_tests_properties(clang_format_check PROPERTIES LABELS unit)
endif()
