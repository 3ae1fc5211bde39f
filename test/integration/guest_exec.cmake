# guest_exec: ExecInstance, CopyToInstance/CopyFromInstance and the guest
# agent's readiness against a real guest (QEMU TCG boots the boot kit with a
# busybox image; the kit's agent answers on its virtio-serial port), plus
# emberctl exec/cp against it (test/integration/test_exec_guest.py).
add_test(NAME integration_exec_guest
         COMMAND /usr/bin/python3 ${CMAKE_CURRENT_SOURCE_DIR}/integration/test_exec_guest.py
                 ${CMAKE_BINARY_DIR}/bootkit)
set_tests_properties(integration_exec_guest PROPERTIES
  LABELS "integration;qemu"
  TIMEOUT 1200
  SKIP_RETURN_CODE 77
  RESOURCE_LOCK ember_qemu_guests
  ENVIRONMENT "EMBERD_BIN=$<TARGET_FILE:emberd>;EMBERCTL_BIN=$<TARGET_FILE:emberctl>;EMBER_PYTHON_DIR=${CMAKE_BINARY_DIR}/python")
