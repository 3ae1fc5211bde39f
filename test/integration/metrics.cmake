# test/integration/metrics.cmake: Prometheus metrics (GitHub issue 6): the
# registry/exposition unit test (CUnit) and the integration test, which runs the
# BUILT emberd with --metrics-listen and --metrics-file, makes RPCs with the
# real python gRPC client (/usr/bin/python3, Debian python3-grpcio), scrapes
# over HTTP and parses the exposition strictly.
if(CUNIT_LIB)
  add_executable(test_metrics ${CMAKE_SOURCE_DIR}/test/unit/test_metrics.c)
  target_link_libraries(test_metrics PRIVATE ember_agent ember_common ${CUNIT_LIB}
                        Threads::Threads m)
  add_test(NAME unit_test_metrics COMMAND test_metrics)
  set_tests_properties(unit_test_metrics PROPERTIES LABELS "unit;sanitize" TIMEOUT 60)
endif()

add_test(NAME integration_metrics
         COMMAND /usr/bin/python3 ${CMAKE_CURRENT_SOURCE_DIR}/integration/test_metrics.py)
set_tests_properties(integration_metrics PROPERTIES
  LABELS "integration;sanitize"
  TIMEOUT 120
  SKIP_RETURN_CODE 77
  ENVIRONMENT "EMBERD_BIN=$<TARGET_FILE:emberd>;EMBER_PYTHON_DIR=${CMAKE_BINARY_DIR}/python")
