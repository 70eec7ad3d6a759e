# mgmt/: placement and the MDM's state machine (its table of operations
# included: test_mdm_ops reaches into state_internal.h).
foreach(t placement mdm_state mdm_ops mdm_reqids mdm_attach mdm_snapshots)
  add_executable(test_${t} test_${t}.c)
  target_link_libraries(test_${t} cairn_mdm_state)
  target_include_directories(test_${t} PRIVATE ${CMAKE_CURRENT_SOURCE_DIR})
  add_test(NAME unit_${t} COMMAND test_${t})
  set_tests_properties(unit_${t} PROPERTIES TIMEOUT 120)
endforeach()

# mgmt/raft_link.c: Raft's transport over authenticated links, two of them
# in one loop (and a child process with credentials that must be refused).
add_executable(test_raft_link test_raft_link.c)
target_link_libraries(test_raft_link cairn_raft_link)
target_include_directories(test_raft_link PRIVATE ${CMAKE_CURRENT_SOURCE_DIR})
add_test(NAME unit_raft_link COMMAND test_raft_link)
set_tests_properties(unit_raft_link PROPERTIES TIMEOUT 60)
