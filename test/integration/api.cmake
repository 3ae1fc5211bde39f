# test/integration/api.cmake: the v1 API as users meet it, with the BUILT emberd
# and the real python gRPC client: server reflection of every symbol with the
# proto's comments (what grpcurl list/describe show), the name/id and
# hypervisor-availability contracts, and every command of README.md and
# deploy/README.md run as written.
set(EMBER_API_ENV "EMBERD_BIN=$<TARGET_FILE:emberd>;EMBER_PYTHON_DIR=${CMAKE_BINARY_DIR}/python")

add_test(NAME integration_reflection
         COMMAND /usr/bin/python3 ${CMAKE_CURRENT_SOURCE_DIR}/integration/test_reflection.py)
set_tests_properties(integration_reflection PROPERTIES
  LABELS "integration;sanitize"
  TIMEOUT 300
  SKIP_RETURN_CODE 77
  ENVIRONMENT "${EMBER_API_ENV};EMBER_PROTO=${CMAKE_SOURCE_DIR}/proto/ember/v1/instance.proto")

add_test(NAME integration_api_contract
         COMMAND /usr/bin/python3 ${CMAKE_CURRENT_SOURCE_DIR}/integration/test_api_contract.py
                 ${CMAKE_CURRENT_SOURCE_DIR}/fakes/firecracker_fake.py)
set_tests_properties(integration_api_contract PROPERTIES
  LABELS "integration;sanitize"
  TIMEOUT 300
  SKIP_RETURN_CODE 77
  ENVIRONMENT "${EMBER_API_ENV}")
