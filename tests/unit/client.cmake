# client/: the SDC and its NBD server.
# The NBD server's pure protocol logic: request validation, option parsing.
add_executable(test_nbd_parse test_nbd_parse.c)
target_link_libraries(test_nbd_parse cairn_nbd)
target_include_directories(test_nbd_parse PRIVATE ${CMAKE_CURRENT_SOURCE_DIR})
add_test(NAME unit_nbd_parse COMMAND test_nbd_parse)
set_tests_properties(unit_nbd_parse PROPERTIES TIMEOUT 60)
# The SDC's request cutting, block status merging and flush targets.
add_executable(test_sdc_split test_sdc_split.c)
target_link_libraries(test_sdc_split cairn_sdc_split)
target_include_directories(test_sdc_split PRIVATE ${CMAKE_CURRENT_SOURCE_DIR})
add_test(NAME unit_sdc_split COMMAND test_sdc_split)
set_tests_properties(unit_sdc_split PROPERTIES TIMEOUT 60)
