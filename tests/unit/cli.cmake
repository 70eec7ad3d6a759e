# mgmt/: the CLI (argument parsing). The parser is pure, so its test builds
# it alone, without the rest of the CLI.
foreach(t cli_args)
  add_executable(test_${t} test_${t}.c ${PROJECT_SOURCE_DIR}/mgmt/${t}.c)
  target_include_directories(test_${t} PRIVATE ${CMAKE_CURRENT_SOURCE_DIR}
                             ${PROJECT_SOURCE_DIR}/mgmt)
  add_test(NAME unit_${t} COMMAND test_${t})
  set_tests_properties(unit_${t} PROPERTIES TIMEOUT 60)
endforeach()
