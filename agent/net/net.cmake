# agent/net: ember's host networking (docs/networking.md): bridges, TAPs, veth
# pairs and network namespaces through rtnetlink (libnl-route-3, Debian
# libnl-3-dev libnl-route-3-dev), nftables tables through libnftables
# (libnftables-dev). One static library, ember_net; keep the list sorted.
find_path(NL3_INCLUDE_DIR netlink/netlink.h PATH_SUFFIXES libnl3 REQUIRED)
find_library(NL3_LIB nl-3 REQUIRED)
find_library(NL3_ROUTE_LIB nl-route-3 REQUIRED)
find_library(NFTABLES_LIB nftables REQUIRED)
# ember_nft: nft.c alone (its tests, test/net/nft.cmake, link only it).
add_library(ember_nft STATIC ${CMAKE_CURRENT_LIST_DIR}/nft.c)
target_link_libraries(ember_nft PUBLIC ember_common ${NFTABLES_LIB})
add_library(ember_net STATIC
  ${CMAKE_CURRENT_LIST_DIR}/hostnet.c
  ${CMAKE_CURRENT_LIST_DIR}/links.c
  ${CMAKE_CURRENT_LIST_DIR}/names.c
  ${CMAKE_CURRENT_LIST_DIR}/netns.c
  ${CMAKE_CURRENT_LIST_DIR}/tap.c
)
# libnl's headers as system headers: the picky warnings are for ember's code.
target_include_directories(ember_net SYSTEM PUBLIC ${NL3_INCLUDE_DIR})
target_link_libraries(ember_net PUBLIC ember_nft ember_common ${NL3_ROUTE_LIB} ${NL3_LIB}
                      ${NFTABLES_LIB} Threads::Threads)
