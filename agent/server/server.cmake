# agent/server: the gRPC layer (ember_server) and the emberd executable.
# Included from agent/CMakeLists.txt.
# The wire check of request strings needs only protobuf-c: its own library so
# its unit test links it alone.
add_library(ember_wire_check STATIC ${CMAKE_CURRENT_LIST_DIR}/wire_check.c)
target_link_libraries(ember_wire_check PUBLIC ember_common ${PROTOBUF_C_LIB})

add_library(ember_server STATIC
  ${CMAKE_CURRENT_LIST_DIR}/server.c
  ${CMAKE_CURRENT_LIST_DIR}/instance.c
  ${CMAKE_CURRENT_LIST_DIR}/fork.c
  ${CMAKE_CURRENT_LIST_DIR}/network.c
  ${CMAKE_CURRENT_LIST_DIR}/health.c
  ${CMAKE_CURRENT_LIST_DIR}/image.c
  ${CMAKE_CURRENT_LIST_DIR}/console.c
  ${CMAKE_CURRENT_LIST_DIR}/exec.c
  ${CMAKE_CURRENT_LIST_DIR}/recv.c
  ${CMAKE_CURRENT_LIST_DIR}/copy.c
  ${CMAKE_CURRENT_LIST_DIR}/reflection.c
  ${CMAKE_CURRENT_LIST_DIR}/rpc_metrics.c
  ${CMAKE_CURRENT_LIST_DIR}/status_details.c)
target_link_libraries(ember_server PUBLIC ember_agent ember_image ember_wire_check ember_proto ${GRPC_LIB} ${GPR_LIB}
                      Threads::Threads)

# Config parsing is its own library so the unit test links it without the server.
add_library(ember_agent_config STATIC ${CMAKE_CURRENT_SOURCE_DIR}/config.c
            ${CMAKE_CURRENT_SOURCE_DIR}/instance_net_config.c ${CMAKE_CURRENT_SOURCE_DIR}/warm.c)
target_link_libraries(ember_agent_config PUBLIC ember_common ${CJSON_LIB})
target_compile_definitions(ember_agent_config PUBLIC
                           EMBER_BOOT_KIT_DIR="${CMAKE_INSTALL_PREFIX}/lib/ember/bootkit")

add_executable(emberd ${CMAKE_CURRENT_SOURCE_DIR}/main.c)
target_compile_definitions(emberd PRIVATE EMBER_VERSION="${PROJECT_VERSION}")
target_link_libraries(emberd PRIVATE ember_server ember_agent_config ember_agent ember_drivers
                      ember_common ${CURL_LIB} ${GRPC_LIB} ${GPR_LIB} Threads::Threads)
