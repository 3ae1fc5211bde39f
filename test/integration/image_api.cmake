# ImageService through the API (issue 11): a real docker-registry on loopback,
# a real emberd, real QEMU boots of images with the boot kit (guest/,
# target `bootkit`). SKIP (77) when docker-registry, skopeo, umoci, QEMU,
# busybox-static or the built boot kit are missing.
add_test(NAME integration_image_api
         COMMAND /usr/bin/python3 ${CMAKE_CURRENT_LIST_DIR}/test_image_api.py
                 ${CMAKE_BINARY_DIR}/bootkit)
set_tests_properties(integration_image_api PROPERTIES
  LABELS "integration;image;qemu" TIMEOUT 1500 SKIP_RETURN_CODE 77
  RESOURCE_LOCK ember_qemu_guests
  ENVIRONMENT "EMBERD_BIN=$<TARGET_FILE:emberd>;EMBERCTL_BIN=$<TARGET_FILE:emberctl>;EMBER_PYTHON_DIR=${CMAKE_BINARY_DIR}/python")

# A CreateInstance retry (request_id) of an image instance is answered from
# the first request's record, not from the boot kit (no guest boots).
add_test(NAME integration_image_retry
         COMMAND /usr/bin/python3 ${CMAKE_CURRENT_LIST_DIR}/test_image_retry.py
                 ${CMAKE_BINARY_DIR}/bootkit)
set_tests_properties(integration_image_retry PROPERTIES
  LABELS "integration;image" TIMEOUT 600 SKIP_RETURN_CODE 77
  ENVIRONMENT "EMBERD_BIN=$<TARGET_FILE:emberd>;EMBERCTL_BIN=$<TARGET_FILE:emberctl>;EMBER_PYTHON_DIR=${CMAKE_BINARY_DIR}/python")
