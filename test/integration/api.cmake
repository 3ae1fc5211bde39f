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

# Every command of README.md, deploy/README.md and quickstart's closing
# instructions, as written, against a real emberd with TCG guests (skips, 77,
# without the Linux test guest: build target guest_linux).
if(DEFINED EMBER_TEST_GUEST_DIR AND NOT "${EMBER_TEST_GUEST_DIR}" STREQUAL "")
  set(EMBER_README_GUEST_DIR "${EMBER_TEST_GUEST_DIR}")
elseif(NOT "$ENV{EMBER_TEST_GUEST_DIR}" STREQUAL "")
  set(EMBER_README_GUEST_DIR "$ENV{EMBER_TEST_GUEST_DIR}")
else()
  set(EMBER_README_GUEST_DIR "${CMAKE_BINARY_DIR}/guests/linux")
endif()
add_test(NAME integration_readme_commands
         COMMAND /usr/bin/python3 ${CMAKE_CURRENT_SOURCE_DIR}/integration/test_readme_commands.py)
set_tests_properties(integration_readme_commands PROPERTIES
  LABELS "integration;qemu"
  TIMEOUT 900
  SKIP_RETURN_CODE 77
  RESOURCE_LOCK ember_qemu_guests
  ENVIRONMENT "${EMBER_API_ENV};EMBERCTL_BIN=$<TARGET_FILE:emberctl>;EMBER_TEST_GUEST_DIR=${EMBER_README_GUEST_DIR}")
