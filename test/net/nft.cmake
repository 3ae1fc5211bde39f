# ember's nftables tables (agent/net/nft.c): the library ember_nft (the host
# networking library ember_net links it) and its CUnit tests. unit_nft_render
# checks the rendered text (no privileges); unit_nft_apply applies it with
# libnftables inside a network namespace it makes itself (unshare), so the
# host's ruleset is never touched: SKIP (77) when not root or without
# namespaces.

add_executable(test_nft ${CMAKE_CURRENT_LIST_DIR}/test_nft.c)
target_link_libraries(test_nft PRIVATE ember_nft ember_common ${NFTABLES_LIB} ${CUNIT_LIB}
                      Threads::Threads)
add_test(NAME unit_nft_render COMMAND test_nft render)
set_tests_properties(unit_nft_render PROPERTIES LABELS "unit;sanitize" TIMEOUT 120)
add_test(NAME unit_nft_apply COMMAND test_nft apply)
set_tests_properties(unit_nft_apply PROPERTIES LABELS "unit;sanitize" TIMEOUT 300
                     SKIP_RETURN_CODE 77)
# End to end, in three namespaces it makes (host, instance, "outside"), wired
# with iproute2's ip: a forward carries TCP to the guest, the guest reaches
# the outside through SNAT + masquerade. SKIP (77) without root or ip.
add_test(NAME unit_nft_e2e COMMAND test_nft e2e)
set_tests_properties(unit_nft_e2e PROPERTIES LABELS "unit;sanitize" TIMEOUT 300
                     SKIP_RETURN_CODE 77)
