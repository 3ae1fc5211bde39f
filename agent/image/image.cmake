# agent/image: OCI images for emberd (ISSUE 11): one file per concern, prefix
# img_, one static library. Helpers append their sources (keep the list sorted).
add_library(ember_image STATIC
  ${CMAKE_CURRENT_LIST_DIR}/bootcfg.c
)
target_link_libraries(ember_image PUBLIC ember_common)
