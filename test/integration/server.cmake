# test/integration/server.cmake: the gRPC layer's tests: the config unit test
# (CUnit) and the API integration test, which runs the BUILT emberd with the
# real python gRPC client (Debian python3-grpcio via /usr/bin/python3).
if(CUNIT_LIB)
  add_executable(test_config ${CMAKE_SOURCE_DIR}/test/unit/test_config.c)
  target_link_libraries(test_config PRIVATE ember_agent_config ember_common ${CUNIT_LIB})
  add_test(NAME unit_test_config COMMAND test_config)
  set_tests_properties(unit_test_config PROPERTIES LABELS "unit;sanitize" TIMEOUT 60)
endif()

add_test(NAME integration_api
         COMMAND /usr/bin/python3 ${CMAKE_CURRENT_SOURCE_DIR}/integration/test_api.py)
set_tests_properties(integration_api PROPERTIES
  LABELS "integration;sanitize"
  TIMEOUT 300
  SKIP_RETURN_CODE 77
  ENVIRONMENT "EMBERD_BIN=$<TARGET_FILE:emberd>;EMBER_PYTHON_DIR=${CMAKE_BINARY_DIR}/python")

# Lifecycle operations through the gRPC layer with a real QEMU guest (skips,
# exit 77, without the Linux test guest: build target guest_linux).
if(DEFINED EMBER_TEST_GUEST_DIR AND NOT "${EMBER_TEST_GUEST_DIR}" STREQUAL "")
  set(EMBER_API_GUEST_DIR "${EMBER_TEST_GUEST_DIR}")
elseif(NOT "$ENV{EMBER_TEST_GUEST_DIR}" STREQUAL "")
  set(EMBER_API_GUEST_DIR "$ENV{EMBER_TEST_GUEST_DIR}")
else()
  set(EMBER_API_GUEST_DIR "${CMAKE_BINARY_DIR}/guests/linux")
endif()
add_test(NAME integration_api_lifecycle
         COMMAND /usr/bin/python3 ${CMAKE_CURRENT_SOURCE_DIR}/integration/test_api_lifecycle.py)
set_tests_properties(integration_api_lifecycle PROPERTIES
  LABELS "integration;sanitize"
  TIMEOUT 600
  SKIP_RETURN_CODE 77
  ENVIRONMENT "EMBERD_BIN=$<TARGET_FILE:emberd>;EMBER_PYTHON_DIR=${CMAKE_BINARY_DIR}/python;EMBER_TEST_GUEST_DIR=${EMBER_API_GUEST_DIR}")

# The API conventions (docs/api.md): pagination, filter, labels, request_id,
# allow_missing, Timestamp/Duration, google.rpc error details. No VMM.
add_test(NAME integration_api_conventions
         COMMAND /usr/bin/python3 ${CMAKE_CURRENT_SOURCE_DIR}/integration/test_api_conventions.py)
set_tests_properties(integration_api_conventions PROPERTIES
  LABELS "integration;sanitize"
  TIMEOUT 300
  SKIP_RETURN_CODE 77
  ENVIRONMENT "EMBERD_BIN=$<TARGET_FILE:emberd>;EMBER_PYTHON_DIR=${CMAKE_BINARY_DIR}/python")

# Every string field of every request (derived from the descriptors) with a
# NUL byte or invalid UTF-8: INVALID_ARGUMENT naming the field, nothing changed.
add_test(NAME integration_hostile_strings
         COMMAND /usr/bin/python3 ${CMAKE_CURRENT_SOURCE_DIR}/integration/test_hostile_strings.py)
set_tests_properties(integration_hostile_strings PROPERTIES
  LABELS "integration;sanitize"
  TIMEOUT 300
  SKIP_RETURN_CODE 77
  ENVIRONMENT "EMBERD_BIN=$<TARGET_FILE:emberd>;EMBER_PYTHON_DIR=${CMAKE_BINARY_DIR}/python")

# WatchInstances clients that never read (300 of them, tiny HTTP/2 windows)
# while instances are created and deleted: emberd's memory stays bounded, each
# stuck stream ends with RESOURCE_EXHAUSTED "watch fell behind: ...", a reading
# watcher gets every event, RSS returns near the baseline. Memory figures are
# asserted, so not under the sanitizers (their allocators change RSS).
add_test(NAME integration_watch_backpressure
         COMMAND /usr/bin/python3 -u ${CMAKE_CURRENT_SOURCE_DIR}/integration/test_watch_backpressure.py)
set_tests_properties(integration_watch_backpressure PROPERTIES
  LABELS "integration"
  TIMEOUT 600
  SKIP_RETURN_CODE 77
  ENVIRONMENT "EMBERD_BIN=$<TARGET_FILE:emberd>;EMBER_PYTHON_DIR=${CMAKE_BINARY_DIR}/python")
