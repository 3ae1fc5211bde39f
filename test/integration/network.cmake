# test/integration/network.cmake: networks emberd manages (docs/networking.md),
# through the gRPC API, inside network namespaces the test makes itself (root;
# SKIP 77 otherwise). integration_network uses the Firecracker contract fake
# (host objects, hostile requests, crash and reconcile); integration_network_guest
# adds real QEMU guests booted with the boot kit (traffic: gateway, forwards,
# NAT, isolation, namespaces, standby/restore).
set(EMBER_NET_ENV "EMBERD_BIN=$<TARGET_FILE:emberd>;EMBERCTL_BIN=$<TARGET_FILE:emberctl>;EMBER_PYTHON_DIR=${CMAKE_BINARY_DIR}/python")
add_test(NAME integration_network
         COMMAND /usr/bin/python3 ${CMAKE_CURRENT_SOURCE_DIR}/integration/test_network.py
                 ${CMAKE_CURRENT_SOURCE_DIR}/fakes/firecracker_fake.py)
set_tests_properties(integration_network PROPERTIES
  LABELS "integration;sanitize"
  TIMEOUT 600
  SKIP_RETURN_CODE 77
  ENVIRONMENT "${EMBER_NET_ENV}")
add_test(NAME integration_network_guest
         COMMAND /usr/bin/python3 ${CMAKE_CURRENT_SOURCE_DIR}/integration/test_network.py
                 ${CMAKE_CURRENT_SOURCE_DIR}/fakes/firecracker_fake.py ${CMAKE_BINARY_DIR}/bootkit)
set_tests_properties(integration_network_guest PROPERTIES
  LABELS "integration;qemu"
  TIMEOUT 1200
  SKIP_RETURN_CODE 77
  RESOURCE_LOCK ember_qemu_guests
  ENVIRONMENT "${EMBER_NET_ENV}")
