# test/integration/fork.cmake: ForkInstance and saved snapshots
# (test/integration/test_fork.py, docs/fork.md) through the real emberd: against
# the Firecracker and Cloud Hypervisor contract fakes (fast; the Firecracker one
# again under the sanitizers) and against a real QEMU guest booted with the
# boot kit, forked five ways on a managed network (needs root for its own
# network namespace; SKIP 77 otherwise).
set(EMBER_FORK_ENV "EMBERD_BIN=$<TARGET_FILE:emberd>;EMBER_PYTHON_DIR=${CMAKE_BINARY_DIR}/python")
add_test(NAME integration_fork_fake
         COMMAND /usr/bin/python3 ${CMAKE_CURRENT_SOURCE_DIR}/integration/test_fork.py fake
                 ${CMAKE_CURRENT_SOURCE_DIR}/fakes/firecracker_fake.py firecracker)
set_tests_properties(integration_fork_fake PROPERTIES
  LABELS "firecracker;integration;sanitize"
  TIMEOUT 300
  SKIP_RETURN_CODE 77
  ENVIRONMENT "${EMBER_FORK_ENV}")
add_test(NAME integration_fork_ch_fake
         COMMAND /usr/bin/python3 ${CMAKE_CURRENT_SOURCE_DIR}/integration/test_fork.py fake
                 ${CMAKE_CURRENT_SOURCE_DIR}/fakes/cloud_hypervisor_fake.py cloud-hypervisor)
set_tests_properties(integration_fork_ch_fake PROPERTIES
  LABELS "cloud-hypervisor;integration"
  TIMEOUT 300
  SKIP_RETURN_CODE 77
  ENVIRONMENT "${EMBER_FORK_ENV}")
add_test(NAME integration_fork_guest
         COMMAND /usr/bin/python3 ${CMAKE_CURRENT_SOURCE_DIR}/integration/test_fork.py qemu
                 ${CMAKE_BINARY_DIR}/bootkit)
set_tests_properties(integration_fork_guest PROPERTIES
  LABELS "integration;qemu"
  TIMEOUT 1200
  SKIP_RETURN_CODE 77
  RESOURCE_LOCK ember_qemu_guests
  ENVIRONMENT "${EMBER_FORK_ENV}")
# With a real Firecracker: EMBER_FIRECRACKER_BIN=/path/to/firecracker
# ctest -R integration_fork_fc_real (the tiny guest under KVM; SKIP otherwise).
add_test(NAME integration_fork_fc_real
         COMMAND /usr/bin/python3 ${CMAKE_CURRENT_SOURCE_DIR}/integration/test_fork.py
                 firecracker-real ${CMAKE_BINARY_DIR}/guests/tiny/tiny.elf)
set_tests_properties(integration_fork_fc_real PROPERTIES
  LABELS "firecracker;integration"
  TIMEOUT 300
  SKIP_RETURN_CODE 77
  ENVIRONMENT "${EMBER_FORK_ENV}")
