# test/integration/api_docs.cmake: the API as users meet it: server reflection
# of every symbol with the proto's comments (what grpcurl list/describe show),
# and every command of README.md and deploy/README.md run as written.
add_test(NAME integration_reflection
         COMMAND /usr/bin/python3 ${CMAKE_CURRENT_SOURCE_DIR}/integration/test_reflection.py)
set_tests_properties(integration_reflection PROPERTIES
  LABELS "integration;sanitize"
  TIMEOUT 300
  SKIP_RETURN_CODE 77
  ENVIRONMENT "EMBERD_BIN=$<TARGET_FILE:emberd>;EMBER_PYTHON_DIR=${CMAKE_BINARY_DIR}/python;EMBER_PROTO=${CMAKE_SOURCE_DIR}/proto/ember/v1/instance.proto")
