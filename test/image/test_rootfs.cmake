# Root disks from OCI layers (agent/image: layers.c, rootfs.c, imgconfig.c).
set(IMG_TEST_DIR ${CMAKE_CURRENT_SOURCE_DIR}/image)
add_executable(test_rootfs_tool ${IMG_TEST_DIR}/test_rootfs_tool.c)
target_link_libraries(test_rootfs_tool PRIVATE ember_image)
