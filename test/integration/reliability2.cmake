# Reliability 2 (issue 9): every child of emberd is reaped (a long mixed run
# with failures, then a count of emberd's defunct children), the status code
# table of docs/errors.md against the real API, and calls on other instances
# never waiting behind one instance's slow operation. The Firecracker contract
# fake is the cheap VMM; QEMU parts use the Linux test guest (noted and left
# out when it is absent).
set(REL2_DIR ${CMAKE_CURRENT_LIST_DIR})
set(REL2_FAKE ${CMAKE_CURRENT_LIST_DIR}/../fakes/firecracker_fake.py)
set(REL2_ENV
  "EMBERD_BIN=$<TARGET_FILE:emberd>"
  "EMBER_PYTHON_DIR=${CMAKE_BINARY_DIR}/python"
  "EMBER_TEST_GUEST_DIR=${CMAKE_BINARY_DIR}/guests/linux"
  # Under TSan (EMBER_SANITIZE=thread) a race in emberd ends it, so the test fails.
  "TSAN_OPTIONS=suppressions=${REL2_DIR}/../tsan.supp halt_on_error=1 second_deadlock_stack=1")
add_test(NAME reliability_reaping
         COMMAND /usr/bin/python3 ${REL2_DIR}/test_reaping.py ${REL2_FAKE})
set_tests_properties(reliability_reaping PROPERTIES
  LABELS "integration;qemu;reliability" TIMEOUT 900 SKIP_RETURN_CODE 77
  RESOURCE_LOCK ember_qemu_guests ENVIRONMENT "${REL2_ENV}")

# Calls on other instances complete before one instance's slow operation ends:
# a frozen data file system (root: loop-mounted ext4 + fsfreeze) under a Create
# and a Delete, and a SIGSTOPped QEMU under a Delete and a Stop. Ordering
# assertions only. Parts that cannot run here are named; 77 when none can.
add_test(NAME reliability_isolation
         COMMAND /usr/bin/python3 ${REL2_DIR}/test_isolation.py ${REL2_FAKE})
set_tests_properties(reliability_isolation PROPERTIES
  LABELS "integration;qemu;reliability" TIMEOUT 600 SKIP_RETURN_CODE 77
  RESOURCE_LOCK ember_qemu_guests ENVIRONMENT "${REL2_ENV}")

# docs/errors.md is parsed and every row marked `tested` is driven through the
# real API (Firecracker contract fake, QEMU refusing a bogus kernel, fault
# points, removed files, chattr +i for an unwritable record); rows it cannot
# reach are printed as skipped. Cheap: a few seconds; the QEMU variants of the
# missing-snapshot rows use the Linux test guest when it is built.
add_test(NAME reliability_errors
         COMMAND /usr/bin/python3 ${REL2_DIR}/test_errors.py
                 ${CMAKE_SOURCE_DIR}/docs/errors.md ${REL2_FAKE})
set_tests_properties(reliability_errors PROPERTIES
  LABELS "integration;reliability;sanitize" TIMEOUT 300 SKIP_RETURN_CODE 77
  RESOURCE_LOCK ember_qemu_guests ENVIRONMENT "${REL2_ENV}")
