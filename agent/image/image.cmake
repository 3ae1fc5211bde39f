# agent/image: OCI images on the host: the content-addressed store, the
# registry client and import (docs/images.md), layers -> root disk and the
# image config (docs/rootfs.md). One static library, ember_image; keep the
# list sorted.
find_library(ARCHIVE_LIB archive REQUIRED)
find_library(CRYPTO_LIB crypto REQUIRED)
find_library(EXT2FS_LIB ext2fs REQUIRED)
find_library(COM_ERR_LIB com_err REQUIRED)
add_library(ember_image STATIC
  ${CMAKE_CURRENT_LIST_DIR}/bootcfg.c
  ${CMAKE_CURRENT_LIST_DIR}/digest.c
  ${CMAKE_CURRENT_LIST_DIR}/imgconfig.c
  ${CMAKE_CURRENT_LIST_DIR}/import.c
  ${CMAKE_CURRENT_LIST_DIR}/layers.c
  ${CMAKE_CURRENT_LIST_DIR}/manifest.c
  ${CMAKE_CURRENT_LIST_DIR}/ref.c
  ${CMAKE_CURRENT_LIST_DIR}/registry.c
  ${CMAKE_CURRENT_LIST_DIR}/rootfs.c
  ${CMAKE_CURRENT_LIST_DIR}/store.c
)
target_link_libraries(ember_image PUBLIC ember_common ${CJSON_LIB} ${CURL_LIB} ${ARCHIVE_LIB}
                      ${CRYPTO_LIB} ${EXT2FS_LIB} ${COM_ERR_LIB} Threads::Threads)
