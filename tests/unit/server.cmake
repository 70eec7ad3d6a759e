# server/: the extent store (with its crash test on a mock disk).
add_executable(test_extent_store test_extent_store.c mock_disk.c)
target_link_libraries(test_extent_store cairn_store)
target_include_directories(test_extent_store PRIVATE ${CMAKE_CURRENT_SOURCE_DIR})
add_test(NAME unit_extent_store COMMAND test_extent_store)
set_tests_properties(unit_extent_store PROPERTIES TIMEOUT 300)
add_executable(test_extent_granules test_extent_granules.c mock_disk.c)
target_link_libraries(test_extent_granules cairn_store)
target_include_directories(test_extent_granules PRIVATE ${CMAKE_CURRENT_SOURCE_DIR})
add_test(NAME unit_extent_granules COMMAND test_extent_granules)
set_tests_properties(unit_extent_granules PROPERTIES TIMEOUT 120)

# server/: the SDS's pure logic: range locks, leases and fences, request validation,
# the access table.
foreach(t range_lock lease validate access)
  add_executable(test_sds_${t} test_sds_${t}.c)
  target_link_libraries(test_sds_${t} cairn_sds_logic)
  target_include_directories(test_sds_${t} PRIVATE ${CMAKE_CURRENT_SOURCE_DIR})
  add_test(NAME unit_sds_${t} COMMAND test_sds_${t})
  set_tests_properties(unit_sds_${t} PROPERTIES TIMEOUT 60)
endforeach()
