# ember test guests (test/guests): targets guest_tiny (in ALL: as/ld only) and
# guest_linux (NOT in ALL: downloads Debian packages with apt-get download), built into
# ${CMAKE_BINARY_DIR}/guests/{tiny,linux}; ctests guest_tiny_boots, guest_linux_boots and
# guest_shell_selftest. Nothing is cached outside the build tree.
set(EMBER_GUESTS_SRC ${CMAKE_CURRENT_LIST_DIR})
set(EMBER_GUESTS_DIR ${CMAKE_BINARY_DIR}/guests)
set(EMBER_GUEST_TINY_ELF ${EMBER_GUESTS_DIR}/tiny/tiny.elf)
set(EMBER_GUEST_LINUX_DIR ${EMBER_GUESTS_DIR}/linux)

add_custom_command(
  OUTPUT ${EMBER_GUEST_TINY_ELF}
  COMMAND sh ${EMBER_GUESTS_SRC}/tiny/build.sh ${EMBER_GUESTS_DIR}/tiny
  DEPENDS ${EMBER_GUESTS_SRC}/tiny/tiny.S ${EMBER_GUESTS_SRC}/tiny/tiny.ld
          ${EMBER_GUESTS_SRC}/tiny/build.sh
  COMMENT "Building tiny test guest")
add_custom_target(guest_tiny ALL DEPENDS ${EMBER_GUEST_TINY_ELF})

# Always runs build.sh, which is a ~0.6 s no-op when up to date.
add_custom_target(guest_linux
  COMMAND sh ${EMBER_GUESTS_SRC}/linux/build.sh ${EMBER_GUEST_LINUX_DIR}
  COMMENT "Building Linux test guest (apt-get download)"
  USES_TERMINAL)

find_program(EMBER_PYTHON3 python3 PATHS /usr/bin NO_DEFAULT_PATH)
if(NOT EMBER_PYTHON3)
  set(EMBER_PYTHON3 /usr/bin/python3)
endif()

add_test(NAME guest_tiny_boots
  COMMAND ${EMBER_PYTHON3} ${EMBER_GUESTS_SRC}/boot_test.py tiny ${EMBER_GUESTS_DIR}/tiny)
add_test(NAME guest_linux_boots
  COMMAND ${EMBER_PYTHON3} ${EMBER_GUESTS_SRC}/boot_test.py linux ${EMBER_GUEST_LINUX_DIR})
add_test(NAME guest_shell_selftest
  COMMAND ${EMBER_PYTHON3} ${EMBER_GUESTS_SRC}/guest_shell.py --self-test)
set_tests_properties(guest_tiny_boots guest_linux_boots guest_shell_selftest
  PROPERTIES SKIP_RETURN_CODE 77 TIMEOUT 240 LABELS guests)
