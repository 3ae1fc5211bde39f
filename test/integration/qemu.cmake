# qemu driver tests. The integration test runs a real QEMU (TCG unless
# EMBER_QEMU_ACCEL says otherwise) with the Linux test guest found in
# EMBER_TEST_GUEST_DIR (environment at test time, or this cache variable);
# it prints SKIP and passes when the guest is absent.
set(EMBER_TEST_GUEST_DIR "$ENV{EMBER_TEST_GUEST_DIR}" CACHE PATH
    "Folder with the Linux test guest (vmlinux, initramfs.cpio.gz)")

if(CUNIT_LIB)
  add_executable(test_qemu_driver ${CMAKE_CURRENT_LIST_DIR}/test_qemu_driver.c)
  target_link_libraries(test_qemu_driver PRIVATE ember_driver_qemu ember_drivers ember_common
                        ${CUNIT_LIB})
  add_test(NAME integration_qemu_driver COMMAND test_qemu_driver)
  set_tests_properties(integration_qemu_driver PROPERTIES
    LABELS "integration;qemu" TIMEOUT 900
    ENVIRONMENT "EMBER_TEST_GUEST_DIR=${EMBER_TEST_GUEST_DIR}")

  add_executable(test_qemu_qmp ${CMAKE_CURRENT_LIST_DIR}/../unit/test_qemu_qmp.c)
  target_link_libraries(test_qemu_qmp PRIVATE ember_driver_qemu ember_drivers ember_common
                        ${CUNIT_LIB} Threads::Threads)
  add_test(NAME unit_qemu_qmp COMMAND test_qemu_qmp)
  set_tests_properties(unit_qemu_qmp PROPERTIES LABELS "unit;qemu" TIMEOUT 120)
endif()
