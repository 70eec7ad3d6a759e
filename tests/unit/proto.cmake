# proto/ and common/: frames, RPC connections.
foreach(t frame rpc rpc_peer log)
  add_executable(test_${t} test_${t}.c)
  target_link_libraries(test_${t} cairn_proto)
  target_include_directories(test_${t} PRIVATE ${CMAKE_CURRENT_SOURCE_DIR})
  add_test(NAME unit_${t} COMMAND test_${t})
  set_tests_properties(unit_${t} PROPERTIES TIMEOUT 60)
endforeach()

# common/http.c and common/metrics.c: the HTTP server on a loop, the
# Prometheus writer.
add_executable(test_metrics test_metrics.c)
target_link_libraries(test_metrics cairn_http)
target_include_directories(test_metrics PRIVATE ${CMAKE_CURRENT_SOURCE_DIR})
add_test(NAME unit_metrics COMMAND test_metrics)
set_tests_properties(unit_metrics PROPERTIES TIMEOUT 60)

# common/config.c: the daemons' configuration file.
add_executable(test_config test_config.c)
target_link_libraries(test_config cairn_common)
target_include_directories(test_config PRIVATE ${CMAKE_CURRENT_SOURCE_DIR})
add_test(NAME unit_config COMMAND test_config)
set_tests_properties(unit_config PROPERTIES TIMEOUT 60)
