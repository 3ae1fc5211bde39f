# Firecracker driver tests: the merge module on real sparse files, and the
# driver's operations against the contract fake (test/fakes/firecracker_fake.py)
# acting as several releases, and against a real binary when
# EMBER_FIRECRACKER_BIN names one (SKIP otherwise).
set(FC_TEST_DIR ${CMAKE_CURRENT_SOURCE_DIR}/integration)
set(FC_FAKE ${CMAKE_CURRENT_SOURCE_DIR}/fakes/firecracker_fake.py)

add_executable(test_firecracker_merge ${FC_TEST_DIR}/test_firecracker_merge.c)
target_link_libraries(test_firecracker_merge PRIVATE ember_driver_firecracker ember_common
                      ${CUNIT_LIB})
add_test(NAME fc_merge COMMAND test_firecracker_merge)
set_tests_properties(fc_merge PROPERTIES LABELS "firecracker;unit;sanitize" TIMEOUT 60)

add_executable(test_firecracker_driver ${FC_TEST_DIR}/test_firecracker_driver.c)
target_link_libraries(test_firecracker_driver PRIVATE ember_driver_firecracker ember_common
                      ${CUNIT_LIB} ${CURL_LIB})

# 1.1: mem_backend, enable_diff_snapshots, diff truncates (merge path), old --version;
# 1.5: last release before in-place diffs; 1.6: in-place diffs;
# 1.13: track_dirty_pages on load; 1.16.1: current 1.x (/serial, mtu, ...).
foreach(v 1.1.0 1.5.0 1.6.0 1.13.0 1.16.1)
  add_test(NAME fc_driver_fake_${v} COMMAND test_firecracker_driver fake ${FC_FAKE} ${v})
  set_tests_properties(fc_driver_fake_${v} PROPERTIES LABELS "firecracker;integration;sanitize"
                       TIMEOUT 120)
endforeach()

add_test(NAME fc_driver_real
         COMMAND test_firecracker_driver real ${CMAKE_BINARY_DIR}/guests/tiny/tiny.elf)
set_tests_properties(fc_driver_real PROPERTIES LABELS "firecracker;integration"
                     TIMEOUT 120 SKIP_RETURN_CODE 77)

# The contract fake's own strictness (schemas, state machine) per version.
add_test(NAME fc_fake_contract
         COMMAND /usr/bin/python3 ${FC_TEST_DIR}/test_firecracker_fake.py ${FC_FAKE})
set_tests_properties(fc_fake_contract PROPERTIES LABELS "firecracker;integration" TIMEOUT 120)

# End to end through emberd's gRPC API with the fake as 1.1.0 and the current 1.x.
if(TARGET emberd AND EXISTS ${FC_TEST_DIR}/test_firecracker_api.py)
  add_test(NAME fc_api_fake
           COMMAND /usr/bin/python3 ${FC_TEST_DIR}/test_firecracker_api.py ${FC_FAKE})
  set_tests_properties(fc_api_fake PROPERTIES LABELS "firecracker;integration;sanitize" TIMEOUT 300
    SKIP_RETURN_CODE 77
    ENVIRONMENT "EMBERD_BIN=$<TARGET_FILE:emberd>;EMBER_PYTHON_DIR=${CMAKE_BINARY_DIR}/python")
endif()

# The same, through emberd, with a real Firecracker (EMBER_FIRECRACKER_BIN) and the
# tiny guest under KVM; SKIP (77) with a message when either is missing.
if(TARGET emberd AND EXISTS ${FC_TEST_DIR}/test_firecracker_api.py)
  add_test(NAME fc_api_real
           COMMAND /usr/bin/python3 ${FC_TEST_DIR}/test_firecracker_api.py real
                   ${CMAKE_BINARY_DIR}/guests/tiny/tiny.elf)
  set_tests_properties(fc_api_real PROPERTIES LABELS "firecracker;integration" TIMEOUT 300
    SKIP_RETURN_CODE 77
    ENVIRONMENT "EMBERD_BIN=$<TARGET_FILE:emberd>;EMBER_PYTHON_DIR=${CMAKE_BINARY_DIR}/python")
endif()

# ExecInstance / CopyToInstance / CopyFromInstance end to end: the
# fake's hybrid vsock relays to a host build of the guest agent
# (EMBER_FAKE_GUEST_AGENT); SKIP (77) when ember_guest_agent is not built.
if(TARGET emberd AND TARGET emberctl)
  if(TARGET ember_guest_agent)
    set(EXEC_AGENT_BIN "$<TARGET_FILE:ember_guest_agent>")
  else()
    set(EXEC_AGENT_BIN "")
  endif()
  add_test(NAME integration_exec_fake
           COMMAND /usr/bin/python3 ${FC_TEST_DIR}/test_exec.py ${FC_FAKE})
  set_tests_properties(integration_exec_fake PROPERTIES LABELS "firecracker;integration;sanitize"
    TIMEOUT 300 SKIP_RETURN_CODE 77
    ENVIRONMENT "EMBERD_BIN=$<TARGET_FILE:emberd>;EMBERCTL_BIN=$<TARGET_FILE:emberctl>;EMBER_GUEST_AGENT_BIN=${EXEC_AGENT_BIN};EMBER_PYTHON_DIR=${CMAKE_BINARY_DIR}/python")
  # Hostile guest agents (test/fakes/hostile_guest_agent.py) behind the fake's
  # vsock: silent, garbage, a 4 GiB frame, output past the window, stalled.
  add_test(NAME integration_exec_hostile
           COMMAND /usr/bin/python3 ${FC_TEST_DIR}/test_exec_hostile.py ${FC_FAKE})
  set_tests_properties(integration_exec_hostile PROPERTIES LABELS "firecracker;integration;sanitize"
    TIMEOUT 300 SKIP_RETURN_CODE 77
    ENVIRONMENT "EMBERD_BIN=$<TARGET_FILE:emberd>;EMBER_PYTHON_DIR=${CMAKE_BINARY_DIR}/python")
endif()

# StreamConsole and `emberctl console` through emberd, the fake as the VMM
# (its guest prints on the serial console): offsets, follow, standby/restore
# continuity, rotation (console_max_bytes), cancel, delete.
if(TARGET emberd AND TARGET emberctl)
  add_test(NAME console_api_fake
           COMMAND /usr/bin/python3 ${FC_TEST_DIR}/test_console.py ${FC_FAKE})
  set_tests_properties(console_api_fake PROPERTIES LABELS "firecracker;integration;sanitize" TIMEOUT 300
    SKIP_RETURN_CODE 77
    ENVIRONMENT "EMBERD_BIN=$<TARGET_FILE:emberd>;EMBERCTL_BIN=$<TARGET_FILE:emberctl>;EMBER_PYTHON_DIR=${CMAKE_BINARY_DIR}/python")
endif()
# The same follow across standby/restore with a real QEMU and the tiny guest
# (SKIP, 77, naming what is missing).
if(TARGET emberd)
  add_test(NAME console_qemu_tiny
           COMMAND /usr/bin/python3 ${FC_TEST_DIR}/test_console.py qemu
                   ${CMAKE_BINARY_DIR}/guests/tiny/tiny.elf)
  set_tests_properties(console_qemu_tiny PROPERTIES LABELS "qemu;integration" TIMEOUT 300
    SKIP_RETURN_CODE 77
    ENVIRONMENT "EMBERD_BIN=$<TARGET_FILE:emberd>;EMBER_PYTHON_DIR=${CMAKE_BINARY_DIR}/python")
endif()

# The warm VMM pool with the Firecracker and Cloud Hypervisor drivers
# (docs/wake.md): restores and clones' first restores in warm VMMs, a killed
# one replaced, Stop. Against the contract fakes (their guest kernel is fake).
foreach(hv firecracker cloud-hypervisor)
  string(REPLACE "-" "_" fake ${hv})
  add_test(NAME integration_warm_${fake}_fake
           COMMAND /usr/bin/python3 ${CMAKE_CURRENT_SOURCE_DIR}/integration/test_warm_fake.py
                   ${CMAKE_CURRENT_SOURCE_DIR}/fakes/${fake}_fake.py ${hv})
  set_tests_properties(integration_warm_${fake}_fake PROPERTIES
    LABELS "${hv};integration"
    TIMEOUT 300
    SKIP_RETURN_CODE 77
    ENVIRONMENT "EMBERD_BIN=$<TARGET_FILE:emberd>;EMBER_PYTHON_DIR=${CMAKE_BINARY_DIR}/python")
endforeach()
