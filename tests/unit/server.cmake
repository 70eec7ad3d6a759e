# server/: the extent store (with its crash test on a mock disk).
add_executable(test_extent_store test_extent_store.c mock_disk.c)
target_link_libraries(test_extent_store cairn_store)
target_include_directories(test_extent_store PRIVATE ${CMAKE_CURRENT_SOURCE_DIR})
add_test(NAME unit_extent_store COMMAND test_extent_store)
set_tests_properties(unit_extent_store PROPERTIES TIMEOUT 300)
