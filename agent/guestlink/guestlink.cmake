# agent/guestlink: emberd's side of the guest agent protocol
# (guest/agent_proto.h, docs/guest-link.md): one link thread per VMM, exec and
# copy channels multiplexed on it. Beside the core like agent/net: common/
# and guest/agent_proto.h only (test/lint/layers.sh).
add_library(ember_guestlink STATIC ${CMAKE_CURRENT_LIST_DIR}/guestlink.c)
target_link_libraries(ember_guestlink PUBLIC ember_common Threads::Threads)
