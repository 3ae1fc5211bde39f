# agent/ctl: emberctl, the command-line client of emberd (gRPC core client API
# + protobuf-c). ember_ctl holds everything but main() so the unit test links it.
set(CTL_DIR ${CMAKE_CURRENT_LIST_DIR})
add_library(ember_ctl STATIC
  ${CTL_DIR}/args.c ${CTL_DIR}/commands.c ${CTL_DIR}/console.c ${CTL_DIR}/exec.c ${CTL_DIR}/images.c ${CTL_DIR}/output.c ${CTL_DIR}/pbjson.c
  ${CTL_DIR}/rpc.c ${CTL_DIR}/snapshots.c ${CTL_DIR}/spec.c)
target_link_libraries(ember_ctl PUBLIC ember_proto ${GRPC_LIB} ${GPR_LIB} ember_common
                      ${CJSON_LIB} m Threads::Threads)

add_executable(emberctl ${CTL_DIR}/main.c)
target_compile_definitions(emberctl PRIVATE EMBER_VERSION="${PROJECT_VERSION}")
target_link_libraries(emberctl ember_ctl ember_proto ${GRPC_LIB} ${GPR_LIB} ember_common
                      ${CJSON_LIB} Threads::Threads)
install(TARGETS emberctl RUNTIME DESTINATION bin)

# Unit test of the parts that need no server: argument parsing, the default
# socket, protobuf<->JSON, spec building, output formatting.
if(CUNIT_LIB)
  add_executable(ctl_unit_test ${CTL_DIR}/ctl_test.c)
  target_link_libraries(ctl_unit_test ember_ctl ${CUNIT_LIB})
  add_test(NAME ctl_unit COMMAND ctl_unit_test)
  set_tests_properties(ctl_unit PROPERTIES LABELS "unit" SKIP_RETURN_CODE 77)
endif()
