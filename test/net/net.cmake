# Host networking tests (agent/net): CUnit, in network and mount namespaces the
# test makes itself (unshare), so the host's network is never changed; SKIP (77)
# when not root or when unshare is refused.
add_executable(test_net_host ${CMAKE_CURRENT_LIST_DIR}/test_net_host.c)
target_link_libraries(test_net_host PRIVATE ember_net ${CUNIT_LIB})
add_test(NAME unit_net_host COMMAND test_net_host)
set_tests_properties(unit_net_host PROPERTIES LABELS "unit;net;sanitize" TIMEOUT 120
                     SKIP_RETURN_CODE 77)
