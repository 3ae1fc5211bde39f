# Root disks from OCI layers (agent/image: layers.c, rootfs.c, imgconfig.c).
set(IMG_TEST_DIR ${CMAKE_CURRENT_SOURCE_DIR}/image)
add_executable(test_rootfs_tool ${IMG_TEST_DIR}/test_rootfs_tool.c)
target_link_libraries(test_rootfs_tool PRIVATE ember_image)

function(ember_image_test name)
  add_executable(${name} ${IMG_TEST_DIR}/${name}.c)
  target_link_libraries(${name} PRIVATE ember_image ${CUNIT_LIB})
  # Tables of layer entries name only the fields they use.
  target_compile_options(${name} PRIVATE -Wno-missing-field-initializers)
  add_test(NAME image_${name} COMMAND ${name})
  set_tests_properties(image_${name} PROPERTIES LABELS "image;unit;sanitize" TIMEOUT 300
                       SKIP_RETURN_CODE 77)
endfunction()
ember_image_test(test_layers)
ember_image_test(test_imgconfig)
# The same layers test as an unprivileged user (a non-root emberd).
add_test(NAME image_test_layers_nonroot
         COMMAND sh ${IMG_TEST_DIR}/test_rootfs_nonroot.sh $<TARGET_FILE:test_layers>)
set_tests_properties(image_test_layers_nonroot PROPERTIES LABELS "image;unit" TIMEOUT 300
                     SKIP_RETURN_CODE 77)
# A real image made with umoci from busybox-static -> ext4, checked with debugfs.
add_test(NAME image_test_rootfs_umoci
         COMMAND /usr/bin/python3 ${IMG_TEST_DIR}/test_rootfs_umoci.py
                 $<TARGET_FILE:test_rootfs_tool>)
set_tests_properties(image_test_rootfs_umoci PROPERTIES LABELS "image;integration" TIMEOUT 300
                     SKIP_RETURN_CODE 77)
