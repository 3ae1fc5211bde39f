# qemu driver tests. The integration test runs a real QEMU (TCG unless
# EMBER_QEMU_ACCEL says otherwise) with the Linux test guest in
# EMBER_TEST_GUEST_DIR: this cache variable, else the environment at configure
# time, else the folder `make guest_linux` fills (test/guests/guests.cmake).
# Without the guest the test prints SKIP (ctest shows it skipped).
set(EMBER_TEST_GUEST_DIR "$ENV{EMBER_TEST_GUEST_DIR}" CACHE PATH
    "Folder with the Linux test guest (vmlinux, initramfs.cpio.gz)")
if(EMBER_TEST_GUEST_DIR)
  set(_qemu_guest_dir ${EMBER_TEST_GUEST_DIR})
else()
  set(_qemu_guest_dir ${CMAKE_BINARY_DIR}/guests/linux)
endif()

if(CUNIT_LIB)
  add_executable(test_qemu_driver ${CMAKE_CURRENT_LIST_DIR}/test_qemu_driver.c)
  target_link_libraries(test_qemu_driver PRIVATE ember_driver_qemu ember_drivers ember_common
                        ${CUNIT_LIB} Threads::Threads)
  add_test(NAME integration_qemu_driver COMMAND test_qemu_driver)
  set_tests_properties(integration_qemu_driver PROPERTIES
    LABELS "integration;qemu;sanitize" TIMEOUT 900 SKIP_RETURN_CODE 77
    ENVIRONMENT "EMBER_TEST_GUEST_DIR=${_qemu_guest_dir};EMBER_TEST_TINY_ELF=${CMAKE_BINARY_DIR}/guests/tiny/tiny.elf")

  add_executable(test_qemu_qmp ${CMAKE_CURRENT_LIST_DIR}/../unit/test_qemu_qmp.c)
  target_link_libraries(test_qemu_qmp PRIVATE ember_driver_qemu ember_drivers ember_common
                        ${CUNIT_LIB} Threads::Threads)
  add_test(NAME unit_qemu_qmp COMMAND test_qemu_qmp)
  set_tests_properties(unit_qemu_qmp PROPERTIES LABELS "unit;qemu;sanitize" TIMEOUT 120)
endif()
