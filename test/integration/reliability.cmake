# Crash-safety tests (issue 5): every fault-injection point in start, stop,
# standby, restore and delete, in exit and fail mode, and a VMM killed from
# outside, through emberd's gRPC API with real QEMU (TCG) and the Linux test
# guest. They print SKIP and return 77 when the guest or QEMU is absent.
# Included from test/CMakeLists.txt (which defines the guest_linux target).
set(RELIABILITY_DIR ${CMAKE_CURRENT_LIST_DIR})
set(RELIABILITY_ENV
  "EMBERD_BIN=$<TARGET_FILE:emberd>"
  "EMBER_PYTHON_DIR=${CMAKE_BINARY_DIR}/python"
  "EMBER_TEST_GUEST_DIR=${CMAKE_BINARY_DIR}/guests/linux")
add_test(NAME reliability_crash_points
         COMMAND /usr/bin/python3 ${RELIABILITY_DIR}/test_crash_points.py)
add_test(NAME reliability_vmm_death
         COMMAND /usr/bin/python3 ${RELIABILITY_DIR}/test_vmm_death.py)
set_tests_properties(reliability_crash_points reliability_vmm_death PROPERTIES
  LABELS "integration;qemu;reliability" TIMEOUT 900 SKIP_RETURN_CODE 77
  ENVIRONMENT "${RELIABILITY_ENV}")
# Both drive QEMU guests on a 2-core host; never in parallel with each other.
set_tests_properties(reliability_crash_points reliability_vmm_death PROPERTIES
  RESOURCE_LOCK ember_qemu_guests)

# Guests outlive emberd's container: with --vmm-cgroup a VMM leaves emberd's
# cgroup, so killing that cgroup (as a container runtime does) spares it, and
# the next emberd re-adopts it; without it (the control) the VMM dies. Uses the
# Firecracker contract fake as the VMM; SKIP without root or writable cgroups.
add_test(NAME reliability_vmm_cgroup
         COMMAND /usr/bin/python3 ${RELIABILITY_DIR}/test_vmm_cgroup.py
                 ${CMAKE_SOURCE_DIR}/test/fakes/firecracker_fake.py)
set_tests_properties(reliability_vmm_cgroup PROPERTIES
  LABELS "integration;reliability;deploy" TIMEOUT 300 SKIP_RETURN_CODE 77
  ENVIRONMENT "EMBERD_BIN=$<TARGET_FILE:emberd>;EMBER_PYTHON_DIR=${CMAKE_BINARY_DIR}/python")

# Upgrades keep guests (issue 10): builds the previous release from the git
# history (cached under the build dir), runs QEMU guests under it, switches to
# this build's emberd on the same data dir and checks every guest; a newer data
# dir format is refused. Skips without the history, QEMU or the test guest.
add_test(NAME reliability_upgrade
         COMMAND /usr/bin/python3 ${RELIABILITY_DIR}/test_upgrade.py)
set_tests_properties(reliability_upgrade PROPERTIES
  LABELS "integration;qemu;reliability" TIMEOUT 1200 SKIP_RETURN_CODE 77
  RESOURCE_LOCK ember_qemu_guests
  ENVIRONMENT "${RELIABILITY_ENV};EMBER_SOURCE_DIR=${CMAKE_SOURCE_DIR};EMBER_PREV_BUILD_DIR=${CMAKE_BINARY_DIR}/previous-release")

# A full data-dir filesystem (issue 9): small tmpfs and ext4 loop mounts as the
# data dir; a running guest survives the filesystem filling up, and a standby,
# restore or start on a full filesystem fails with RESOURCE_EXHAUSTED, changes
# nothing and works once space is freed. Needs root (mount); SKIP otherwise.
add_test(NAME reliability_disk_full
         COMMAND /usr/bin/python3 ${RELIABILITY_DIR}/test_disk_full.py)
set_tests_properties(reliability_disk_full PROPERTIES
  LABELS "integration;qemu;reliability" TIMEOUT 900 SKIP_RETURN_CODE 77
  RESOURCE_LOCK ember_qemu_guests ENVIRONMENT "${RELIABILITY_ENV}")
