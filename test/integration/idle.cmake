# test/integration/idle.cmake: idle auto-standby (test/integration/test_idle.py,
# docs/idle.md) through the real emberd against the Firecracker contract fake:
# auto-standby with its event reason, holds, a console session, a busy VMM,
# hostile values. About a minute of waiting for idle periods, so it is not in
# the sanitizer rounds: unit_test_idle runs the manager's idle code (monitor
# thread, holds, sessions) there.
add_test(NAME integration_idle
         COMMAND /usr/bin/python3 ${CMAKE_CURRENT_SOURCE_DIR}/integration/test_idle.py
                 ${CMAKE_CURRENT_SOURCE_DIR}/fakes/firecracker_fake.py)
set_tests_properties(integration_idle PROPERTIES
  LABELS "firecracker;integration"
  TIMEOUT 300
  SKIP_RETURN_CODE 77
  ENVIRONMENT "EMBERD_BIN=$<TARGET_FILE:emberd>;EMBERCTL_BIN=$<TARGET_FILE:emberctl>;EMBER_PYTHON_DIR=${CMAKE_BINARY_DIR}/python")
