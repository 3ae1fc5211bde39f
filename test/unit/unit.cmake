# Unit tests (CUnit), one executable per module, registered with ctest.
set(UNIT_DIR ${CMAKE_CURRENT_SOURCE_DIR}/unit)
add_library(ember_testvm STATIC ${UNIT_DIR}/testvm_driver.c)
target_link_libraries(ember_testvm PUBLIC ember_drivers ember_common)

function(ember_unit_test name)
  add_executable(${name} ${UNIT_DIR}/${name}.c)
  target_link_libraries(${name} PRIVATE ember_agent ember_testvm ${CUNIT_LIB} ${ARGN})
  add_test(NAME unit_${name} COMMAND ${name})
  set_tests_properties(unit_${name} PROPERTIES LABELS "unit;sanitize" TIMEOUT 300)
endfunction()

ember_unit_test(test_manager)
ember_unit_test(test_common)
ember_unit_test(test_registry)
# The agent's one boundary for driver calls (agent/vmm_call.c).
ember_unit_test(test_vmm_call)
ember_unit_test(test_datadir)
ember_unit_test(test_hostfiles)
ember_unit_test(test_instance_image ${CJSON_LIB})
# The server's error details (agent/server/status_details.c), decoded back.
ember_unit_test(test_status_details ember_server)
# The one RPC table (agent/rpc_table.h) against the proto descriptors.
ember_unit_test(test_rpc_table ember_server)
ember_unit_test(test_wire_check ember_wire_check ember_proto)
ember_unit_test(test_admission)
# Managed networks: configuration, allocations, records (agent/instance_net.c).
ember_unit_test(test_instance_net ${CJSON_LIB})
# The boot config: host writer (ember_image) and the guest's reader and user
# resolution (guest/init, compiled for the host).
ember_unit_test(test_bootcfg ember_image)
target_sources(test_bootcfg PRIVATE ${CMAKE_SOURCE_DIR}/guest/init/config.c
               ${CMAKE_SOURCE_DIR}/guest/init/user.c)
# The guest agent link (agent/guestlink) against a scripted fake guest in the
# test: links only ember_guestlink.
add_executable(test_guestlink ${UNIT_DIR}/test_guestlink.c)
target_link_libraries(test_guestlink PRIVATE ember_guestlink ${CUNIT_LIB})
add_test(NAME unit_test_guestlink COMMAND test_guestlink)
set_tests_properties(unit_test_guestlink PROPERTIES LABELS "unit;sanitize" TIMEOUT 300)
# The guest agent (guest/agent) through its host program ember_guest_agent.
ember_unit_test(test_guest_agent)
add_dependencies(test_guest_agent ember_guest_agent)
target_compile_definitions(test_guest_agent
                           PRIVATE EMBER_GUEST_AGENT_BIN="$<TARGET_FILE:ember_guest_agent>")
# The guest agent RPCs' request checks and the stream backpressure wait
# (agent/server/exec.c, copy.c, server.c).
ember_unit_test(test_exec_server ember_server)
# The console file: reads by offset, rotation by hole punching (agent/console.c).
ember_unit_test(test_console)
# Idle auto-standby: the decision with injected samples, the /proc parsers,
# and the manager's auto-standby, holds and sessions (agent/idle.c,
# agent/manager_idle.c).
ember_unit_test(test_idle m)
# The warm VMM pool: its config and choice (agent/warm.c) and the manager's
# pool thread with the test driver (agent/manager_warm.c).
ember_unit_test(test_warm)
