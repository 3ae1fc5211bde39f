# End-to-end tests through emberd's gRPC API with real QEMU and the Linux test guest.
set(E2E_DIR ${CMAKE_CURRENT_SOURCE_DIR}/integration)
# The guest comes from this build, or from EMBER_TEST_GUEST_DIR (cache or
# environment) so sanitizer builds can reuse the main build's guest.
if(DEFINED EMBER_TEST_GUEST_DIR AND NOT "${EMBER_TEST_GUEST_DIR}" STREQUAL "")
  set(E2E_GUEST_DIR "${EMBER_TEST_GUEST_DIR}")
elseif(NOT "$ENV{EMBER_TEST_GUEST_DIR}" STREQUAL "")
  set(E2E_GUEST_DIR "$ENV{EMBER_TEST_GUEST_DIR}")
else()
  set(E2E_GUEST_DIR "${CMAKE_BINARY_DIR}/guests/linux")
endif()
set(E2E_ENV
  "EMBERD_BIN=$<TARGET_FILE:emberd>"
  "EMBER_PYTHON_DIR=${CMAKE_BINARY_DIR}/python"
  "EMBER_TEST_GUEST_DIR=${E2E_GUEST_DIR}")
add_test(NAME e2e_qemu_standby COMMAND /usr/bin/python3 ${E2E_DIR}/test_qemu_standby.py)
set_tests_properties(e2e_qemu_standby PROPERTIES LABELS "integration;qemu;e2e;sanitize" TIMEOUT 900
  SKIP_RETURN_CODE 77 ENVIRONMENT "${E2E_ENV}")

# StopInstance graceful_timeout (0 = kill at once) with a guest that ignores ACPI.
add_test(NAME e2e_api_stop_timeout COMMAND /usr/bin/python3 ${E2E_DIR}/test_api_stop.py)
set_tests_properties(e2e_api_stop_timeout PROPERTIES LABELS "integration;qemu;e2e" TIMEOUT 600
  SKIP_RETURN_CODE 77 RESOURCE_LOCK ember_qemu_guests ENVIRONMENT "${E2E_ENV}")

# The warm VMM pool (docs/wake.md) with real QEMU: the Linux test guest and
# two tiny guests, in the test's own network and mount namespace.
add_test(NAME e2e_warm_pool COMMAND /usr/bin/python3 ${E2E_DIR}/test_warm.py)
set_tests_properties(e2e_warm_pool PROPERTIES LABELS "integration;qemu;e2e" TIMEOUT 900
  SKIP_RETURN_CODE 77 RESOURCE_LOCK ember_qemu_guests
  ENVIRONMENT "${E2E_ENV};EMBER_GUEST_TINY=${CMAKE_BINARY_DIR}/guests/tiny/tiny.elf")
