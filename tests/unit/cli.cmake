# mgmt/: the CLI (argument parsing). The parser is pure, so its test builds
# it alone, without the rest of the CLI.
foreach(t cli_args)
  add_executable(test_${t} test_${t}.c ${PROJECT_SOURCE_DIR}/mgmt/${t}.c)
  target_include_directories(test_${t} PRIVATE ${CMAKE_CURRENT_SOURCE_DIR}
                             ${PROJECT_SOURCE_DIR}/mgmt)
  add_test(NAME unit_${t} COMMAND test_${t})
  set_tests_properties(unit_${t} PROPERTIES TIMEOUT 60)
endforeach()

# mgmt/cli_progress.c: what a status reply says of a rebuild's or a
# rebalance's work, on replies built by hand (pure, with the shared stats).
add_executable(test_cli_progress test_cli_progress.c ${PROJECT_SOURCE_DIR}/mgmt/cli_progress.c)
target_include_directories(test_cli_progress PRIVATE ${CMAKE_CURRENT_SOURCE_DIR}
                           ${PROJECT_SOURCE_DIR}/mgmt)
target_link_libraries(test_cli_progress cairn_capacity m)
add_test(NAME unit_cli_progress COMMAND test_cli_progress)
set_tests_properties(unit_cli_progress PROPERTIES TIMEOUT 60)

# mgmt/map_wait.c: whether the SDSs hold a change's map, the CLI's and the
# REST API's wait, on replies built by hand.
add_executable(test_map_wait test_map_wait.c)
target_include_directories(test_map_wait PRIVATE ${CMAKE_CURRENT_SOURCE_DIR})
target_link_libraries(test_map_wait cairn_capacity)
add_test(NAME unit_map_wait COMMAND test_map_wait)
set_tests_properties(unit_map_wait PROPERTIES TIMEOUT 60)
