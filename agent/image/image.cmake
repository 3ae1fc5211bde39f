# agent/image: OCI image store, registry client, import (and, from other
# helpers, rootfs conversion). One static library; keep the list sorted.
find_library(ARCHIVE_LIB archive REQUIRED)
find_library(CRYPTO_LIB crypto REQUIRED)
add_library(ember_image STATIC
  ${CMAKE_CURRENT_LIST_DIR}/digest.c
  ${CMAKE_CURRENT_LIST_DIR}/import.c
  ${CMAKE_CURRENT_LIST_DIR}/manifest.c
  ${CMAKE_CURRENT_LIST_DIR}/ref.c
  ${CMAKE_CURRENT_LIST_DIR}/registry.c
  ${CMAKE_CURRENT_LIST_DIR}/store.c
)
target_link_libraries(ember_image PUBLIC ember_common ${CJSON_LIB} ${CURL_LIB} ${ARCHIVE_LIB}
                      ${CRYPTO_LIB} Threads::Threads)
