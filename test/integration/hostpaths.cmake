# Host paths fenced (issue 9; docs/host-paths.md): kernel, initrd and disk paths
# from requests never reach emberd's data dir, its own files or system trees,
# honour --host-file-root and --allow-block-devices, and reach the VMM as the
# descriptors that were checked. Real emberd, real python gRPC client.
#  integration_host_paths_fake: the Firecracker contract fake as the VMM (cheap;
#    labels include sanitize). Block-device cases need root and losetup and are
#    skipped with a message otherwise.
#  integration_host_paths_qemu: the Linux test guest under real QEMU with
#    fd-passed kernel/initrd/disk, a live RAM file attack, standby/restore.
set(HOSTPATHS_DIR ${CMAKE_CURRENT_LIST_DIR})
set(HOSTPATHS_ENV "EMBERD_BIN=$<TARGET_FILE:emberd>"
                  "EMBER_PYTHON_DIR=${CMAKE_BINARY_DIR}/python"
                  "EMBER_TEST_GUEST_DIR=${CMAKE_BINARY_DIR}/guests/linux")
if(EMBER_SANITIZE MATCHES "thread")
  list(APPEND HOSTPATHS_ENV
       "TSAN_OPTIONS=suppressions=${CMAKE_SOURCE_DIR}/test/tsan.supp halt_on_error=1 second_deadlock_stack=1")
endif()
if(TARGET emberd)
  add_test(NAME integration_host_paths_fake
           COMMAND /usr/bin/python3 ${HOSTPATHS_DIR}/test_host_paths.py fake
                   ${CMAKE_SOURCE_DIR}/test/fakes/firecracker_fake.py)
  set_tests_properties(integration_host_paths_fake PROPERTIES
    LABELS "integration;firecracker;sanitize" TIMEOUT 300 SKIP_RETURN_CODE 77
    ENVIRONMENT "${HOSTPATHS_ENV}")
  add_test(NAME integration_host_paths_qemu
           COMMAND /usr/bin/python3 ${HOSTPATHS_DIR}/test_host_paths.py qemu)
  set_tests_properties(integration_host_paths_qemu PROPERTIES
    LABELS "integration;qemu" TIMEOUT 900 SKIP_RETURN_CODE 77
    RESOURCE_LOCK ember_qemu_guests ENVIRONMENT "${HOSTPATHS_ENV}")
endif()
