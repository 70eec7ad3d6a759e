# proto/ and common/: frames, RPC connections.
foreach(t frame rpc log)
  add_executable(test_${t} test_${t}.c)
  target_link_libraries(test_${t} cairn_proto)
  target_include_directories(test_${t} PRIVATE ${CMAKE_CURRENT_SOURCE_DIR})
  add_test(NAME unit_${t} COMMAND test_${t})
  set_tests_properties(unit_${t} PROPERTIES TIMEOUT 60)
endforeach()
