# test/bench/bench.cmake: ember's benchmarks and the KVM tiny-guest integration test.
# Benchmarks print figures and never assert wall-clock times (shared, noisy machines).
#
#   ctest -L bench                        quick harness runs (CI): bench_qemu_smoke,
#                                         bench_fork_smoke, bench_wake_pool_smoke,
#                                         bench_firecracker_fake,
#                                         bench_firecracker (SKIP without
#                                         EMBER_FIRECRACKER_BIN)
#   cmake --build <build> --target bench_qemu               full QEMU benchmark (N=10)
#   cmake --build <build> --target bench_firecracker        real Firecracker (needs
#                                         EMBER_FIRECRACKER_BIN; prints SKIP otherwise)
#   cmake --build <build> --target bench_firecracker_fake   same harness, contract fake
#   cmake --build <build> --target bench_fork   ForkInstance into 1/5/20 clones of 256 MiB
#                                         and 1 GiB guests vs raw QEMU restores and separate
#                                         boots (BENCH_FORK_ARGS="--sizes 256 --clones 1,5")
#   cmake --build <build> --target bench_wake   25 restores/standbys at once (QEMU, raw QEMU,
#                                         Firecracker fake) and a 4 GiB guest's standby and
#                                         restore (BENCH_WAKE_ARGS="--parts big" narrows it)
# Or, without cmake: test/bench/run.sh {qemu|qemu-smoke|firecracker|firecracker-fake|kvm-tiny}.
# EMBER_BENCH_CYCLES=N (environment at run time) changes the number of cycles.
set(EMBER_BENCH_SRC ${CMAKE_CURRENT_LIST_DIR})
set(EMBER_BENCH_PY /usr/bin/python3)

if(DEFINED EMBER_TEST_GUEST_DIR AND NOT "${EMBER_TEST_GUEST_DIR}" STREQUAL "")
  set(EMBER_BENCH_GUEST_DIR "${EMBER_TEST_GUEST_DIR}")
else()
  set(EMBER_BENCH_GUEST_DIR "${CMAKE_BINARY_DIR}/guests/linux")
endif()
set(EMBER_BENCH_TINY "${CMAKE_BINARY_DIR}/guests/tiny/tiny.elf")

set(EMBER_BENCH_ENV
  "EMBERD_BIN=$<TARGET_FILE:emberd>"
  "EMBER_PYTHON_DIR=${CMAKE_BINARY_DIR}/python"
  "EMBER_TEST_GUEST_DIR=${EMBER_BENCH_GUEST_DIR}"
  "EMBER_GUEST_TINY=${EMBER_BENCH_TINY}")

# ---- ctest ----------------------------------------------------------------------
# The QEMU harness end to end with 2 cycles of two scenarios (~40 s here).
add_test(NAME bench_qemu_smoke
  COMMAND ${EMBER_BENCH_PY} ${EMBER_BENCH_SRC}/bench_qemu.py --cycles 2
          --scenarios reuse-256,full-256 --dirty-mib 16)
# The Firecracker harness against the contract fake (fake figures), and against a
# real binary when EMBER_FIRECRACKER_BIN is set (prints SKIP and passes otherwise).
add_test(NAME bench_firecracker_fake
  COMMAND ${EMBER_BENCH_PY} ${EMBER_BENCH_SRC}/bench_firecracker.py --fake --cycles 2)
add_test(NAME bench_firecracker
  COMMAND ${EMBER_BENCH_PY} ${EMBER_BENCH_SRC}/bench_firecracker.py --cycles 2)
set_tests_properties(bench_qemu_smoke bench_firecracker_fake bench_firecracker PROPERTIES
  LABELS "bench" TIMEOUT 300 SKIP_RETURN_CODE 77 ENVIRONMENT "${EMBER_BENCH_ENV}")

# The image benchmark (issue 11) in full: it is small enough (one ~50 MB image,
# two boots) to run as it is, so CI prints its figures.
add_test(NAME bench_image
  COMMAND ${EMBER_BENCH_PY} ${EMBER_BENCH_SRC}/bench_image.py --build ${CMAKE_BINARY_DIR})
set_tests_properties(bench_image PROPERTIES
  LABELS "bench;image;qemu" TIMEOUT 600 SKIP_RETURN_CODE 77 RESOURCE_LOCK ember_qemu_guests
  ENVIRONMENT "${EMBER_BENCH_ENV}")

# The fork harness end to end: one 256 MiB guest forked into one clone, one
# guest booted to compare (~25 s here).
add_test(NAME bench_fork_smoke
  COMMAND ${EMBER_BENCH_PY} ${EMBER_BENCH_SRC}/bench_fork.py --sizes 256 --clones 1
          --boot-compare-max 1 --fill-mib 16 --settle-s 2)
set_tests_properties(bench_fork_smoke PROPERTIES
  LABELS "bench;qemu" TIMEOUT 300 SKIP_RETURN_CODE 77 RESOURCE_LOCK ember_qemu_guests
  ENVIRONMENT "${EMBER_BENCH_ENV}")

# The warm VMM pool (docs/wake.md): one 128 MiB guest, two pooled restores vs
# two raw QEMU restores started cold and warm by the script (~10 s here).
add_test(NAME bench_wake_pool_smoke
  COMMAND ${EMBER_BENCH_PY} ${EMBER_BENCH_SRC}/bench_wake.py --parts pool --singles 2
          --pool-mib 128 --no-fc)
set_tests_properties(bench_wake_pool_smoke PROPERTIES
  LABELS "bench;qemu" TIMEOUT 300 SKIP_RETURN_CODE 77 RESOURCE_LOCK ember_qemu_guests
  ENVIRONMENT "${EMBER_BENCH_ENV}")

add_test(NAME integration_qemu_kvm_tiny
  COMMAND ${EMBER_BENCH_PY} ${EMBER_BENCH_SRC}/test_qemu_kvm_tiny.py)
set_tests_properties(integration_qemu_kvm_tiny PROPERTIES
  LABELS "integration;qemu" TIMEOUT 180 SKIP_RETURN_CODE 77 ENVIRONMENT "${EMBER_BENCH_ENV}")

# ---- full benchmarks (not in ALL, not in ctest) -----------------------------------
set(EMBER_BENCH_DEPS emberd ember_proto_python guest_tiny)
add_custom_target(bench_qemu
  COMMAND ${CMAKE_COMMAND} -E env ${EMBER_BENCH_ENV}
          ${EMBER_BENCH_PY} ${EMBER_BENCH_SRC}/bench_qemu.py
  DEPENDS ${EMBER_BENCH_DEPS} guest_linux
  COMMENT "QEMU standby/restore benchmark: emberd vs raw QMP (EMBER_BENCH_CYCLES, default 10)"
  USES_TERMINAL)
# ForkInstance (time until all clones run, host memory, bytes per fork). The full
# run boots up to 2 x 20 guests (~15 min here); BENCH_FORK_ARGS (environment at
# build time) narrows it, e.g. "--sizes 256 --clones 1,5 --boot-compare-max 5".
add_custom_target(bench_fork
  COMMAND ${CMAKE_COMMAND} -E env ${EMBER_BENCH_ENV}
          sh -c "exec ${EMBER_BENCH_PY} ${EMBER_BENCH_SRC}/bench_fork.py $BENCH_FORK_ARGS"
  DEPENDS ${EMBER_BENCH_DEPS} guest_linux
  COMMENT "Fork benchmark: ForkInstance vs raw QEMU restores vs separate boots"
  USES_TERMINAL VERBATIM)
# Waking many guests at once and a big guest (~7 min here; by hand only, never in
# ctest: CI time). BENCH_WAKE_ARGS (environment at build time) narrows it, e.g.
# "--parts burst --burst 10 --no-raw".
add_custom_target(bench_wake
  COMMAND ${CMAKE_COMMAND} -E env ${EMBER_BENCH_ENV}
          sh -c "exec ${EMBER_BENCH_PY} ${EMBER_BENCH_SRC}/bench_wake.py $BENCH_WAKE_ARGS"
  DEPENDS ${EMBER_BENCH_DEPS} guest_linux
  COMMENT "Wake benchmark: bursts of 25 restores/standbys and a 4 GiB guest"
  USES_TERMINAL VERBATIM)
add_custom_target(bench_firecracker
  COMMAND ${CMAKE_COMMAND} -E env ${EMBER_BENCH_ENV}
          ${EMBER_BENCH_PY} ${EMBER_BENCH_SRC}/bench_firecracker.py
  DEPENDS ${EMBER_BENCH_DEPS}
  COMMENT "Firecracker standby/restore benchmark (needs EMBER_FIRECRACKER_BIN)"
  USES_TERMINAL)
add_custom_target(bench_firecracker_fake
  COMMAND ${CMAKE_COMMAND} -E env ${EMBER_BENCH_ENV}
          ${EMBER_BENCH_PY} ${EMBER_BENCH_SRC}/bench_firecracker.py --fake
  DEPENDS ${EMBER_BENCH_DEPS}
  COMMENT "Firecracker benchmark harness against the contract fake (fake figures)"
  USES_TERMINAL)

# Managed networking (issue 12): create and restore with and without a network,
# and TCP host -> guest through emberd's TAP vs a TAP and bridge made by hand, in
# network namespaces of its own (root; SKIP 77 otherwise). Small enough for CI.
add_test(NAME bench_network
  COMMAND ${EMBER_BENCH_PY} ${EMBER_BENCH_SRC}/bench_network.py
          ${CMAKE_SOURCE_DIR}/test/fakes/firecracker_fake.py ${CMAKE_BINARY_DIR}/bootkit --cycles 3)
set_tests_properties(bench_network PROPERTIES
  LABELS "bench;qemu" TIMEOUT 900 SKIP_RETURN_CODE 77 RESOURCE_LOCK ember_qemu_guests
  ENVIRONMENT "${EMBER_BENCH_ENV}")

# Exec and copy: exec `true` round trip (p50/p95) and a 100 MB copy
# each way through emberd vs the raw agent channel (same kit, agent and QEMU
# virtio-serial port, driven directly). Small enough for CI.
add_test(NAME bench_exec
  COMMAND ${EMBER_BENCH_PY} ${EMBER_BENCH_SRC}/bench_exec.py ${CMAKE_BINARY_DIR}/bootkit
          $<TARGET_FILE:mkbootcfg> --cycles 20 --mib 100)
set_tests_properties(bench_exec PROPERTIES
  LABELS "bench;qemu" TIMEOUT 900 SKIP_RETURN_CODE 77 RESOURCE_LOCK ember_qemu_guests
  ENVIRONMENT "${EMBER_BENCH_ENV}")
