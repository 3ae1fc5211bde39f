# agent/image: OCI images on the host (docs/rootfs.md): layers -> root disk,
# image config. One static library, ember_image; helpers append their files.
find_library(ARCHIVE_LIB archive REQUIRED)
find_library(EXT2FS_LIB ext2fs REQUIRED)
find_library(COM_ERR_LIB com_err REQUIRED)
add_library(ember_image STATIC
  ${CMAKE_CURRENT_LIST_DIR}/imgconfig.c
  ${CMAKE_CURRENT_LIST_DIR}/layers.c
  ${CMAKE_CURRENT_LIST_DIR}/rootfs.c
)
target_link_libraries(ember_image PUBLIC ember_common ${ARCHIVE_LIB} ${EXT2FS_LIB} ${COM_ERR_LIB}
                      ${CJSON_LIB} Threads::Threads)
