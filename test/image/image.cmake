# Image store tests (agent/image): CUnit units and integration against a real
# docker-registry (Debian's), skopeo/umoci-built images and a hostile registry.
set(IMAGE_TEST_DIR ${CMAKE_CURRENT_LIST_DIR})
add_executable(img_tool ${IMAGE_TEST_DIR}/img_tool.c)
target_link_libraries(img_tool PRIVATE ember_image)

add_executable(test_image_units ${IMAGE_TEST_DIR}/test_image_units.c)
target_link_libraries(test_image_units PRIVATE ember_image ${CUNIT_LIB})
add_test(NAME unit_image COMMAND test_image_units)
set_tests_properties(unit_image PROPERTIES LABELS "unit;image;sanitize" TIMEOUT 300)

add_test(NAME image_hostile_registry
         COMMAND /usr/bin/python3 ${IMAGE_TEST_DIR}/test_hostile_registry.py $<TARGET_FILE:img_tool>)
set_tests_properties(image_hostile_registry PROPERTIES LABELS "integration;image;sanitize"
                     TIMEOUT 300 SKIP_RETURN_CODE 77)
add_test(NAME image_registry
         COMMAND /usr/bin/python3 ${IMAGE_TEST_DIR}/test_registry_pull.py $<TARGET_FILE:img_tool>)
set_tests_properties(image_registry PROPERTIES LABELS "integration;image"
                     TIMEOUT 600 SKIP_RETURN_CODE 77)
