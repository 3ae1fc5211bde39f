# End-to-end tests through emberd's gRPC API with real QEMU and the Linux test guest.
set(E2E_DIR ${CMAKE_CURRENT_SOURCE_DIR}/integration)
set(E2E_ENV
  "EMBERD_BIN=$<TARGET_FILE:emberd>"
  "EMBER_PYTHON_DIR=${CMAKE_BINARY_DIR}/python"
  "EMBER_TEST_GUEST_DIR=${CMAKE_BINARY_DIR}/guests/linux")
add_test(NAME e2e_qemu_standby COMMAND /usr/bin/python3 ${E2E_DIR}/test_qemu_standby.py)
set_tests_properties(e2e_qemu_standby PROPERTIES LABELS "integration;qemu;e2e" TIMEOUT 900
  SKIP_RETURN_CODE 77 ENVIRONMENT "${E2E_ENV}")
