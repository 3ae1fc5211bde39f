# guest: code that runs inside the VMs emberd starts from images (issue 11).
#  - ember_init (in ALL): guest/init, the static PID 1 of the boot kit, built
#    with musl-gcc (Debian musl-tools) when present, else the host compiler
#    with -static (glibc); ${CMAKE_BINARY_DIR}/bootkit/init.
#  - bootkit (NOT in ALL: downloads Debian's kernel package with apt-get
#    download): ${CMAKE_BINARY_DIR}/bootkit/{vmlinux,initramfs.cpio.gz}, the
#    default kernel + initramfs for an instance that names an image and no
#    kernel (docs/boot-kit.md).
#  - ember_guest_agent (in ALL): the guest agent (guest/agent, also inside the
#    init) as a host program for tests (unit_test_guest_agent).
#  - tests: bootkit_boots (real QEMU TCG boots of the kit, test/guests/bootkit_test.py).
set(EMBER_GUEST_SRC ${CMAKE_CURRENT_LIST_DIR})
set(EMBER_BOOTKIT_DIR ${CMAKE_BINARY_DIR}/bootkit)
set(EMBER_INIT_BIN ${EMBER_BOOTKIT_DIR}/init)

# The guest agent (guest/agent/*.c) is part of the init binary: init
# forks it and calls ga_guest_main (no exec). guest/agent/host/ is the host
# test program's main only.
file(GLOB EMBER_INIT_SOURCES CONFIGURE_DEPENDS ${EMBER_GUEST_SRC}/init/*.c
     ${EMBER_GUEST_SRC}/agent/*.c)
file(GLOB EMBER_INIT_HEADERS CONFIGURE_DEPENDS ${EMBER_GUEST_SRC}/init/*.h
     ${EMBER_GUEST_SRC}/agent/*.h ${EMBER_GUEST_SRC}/*.h)
file(GLOB EMBER_AGENT_SOURCES CONFIGURE_DEPENDS ${EMBER_GUEST_SRC}/agent/*.c)
find_program(EMBER_MUSL_GCC musl-gcc)
if(EMBER_MUSL_GCC)
  set(EMBER_INIT_CC ${EMBER_MUSL_GCC})
else()
  message(STATUS "musl-gcc not found (Debian musl-tools): guest init linked statically with glibc")
  set(EMBER_INIT_CC ${CMAKE_C_COMPILER})
endif()
# Same warning set as the host code (EMBER_WARNING_FLAGS, top CMakeLists.txt);
# musl-gcc is gcc, so it takes the gcc-only flags too.
list(TRANSFORM EMBER_FEATURE_MACROS PREPEND -D OUTPUT_VARIABLE EMBER_INIT_DEFINES)
set(EMBER_INIT_FLAGS -std=c11 ${EMBER_INIT_DEFINES} -Os -static -s ${EMBER_WARNING_FLAGS} -fno-common)
if(EMBER_MUSL_GCC OR CMAKE_C_COMPILER_ID STREQUAL "GNU")
  list(APPEND EMBER_INIT_FLAGS ${EMBER_WARNING_FLAGS_GCC})
endif()
if(EMBER_WERROR)
  list(APPEND EMBER_INIT_FLAGS -Werror)
endif()
add_custom_command(
  OUTPUT ${EMBER_INIT_BIN}
  COMMAND ${CMAKE_COMMAND} -E make_directory ${EMBER_BOOTKIT_DIR}
  COMMAND ${EMBER_INIT_CC} ${EMBER_INIT_FLAGS} -I${CMAKE_SOURCE_DIR} ${EMBER_INIT_SOURCES}
          -o ${EMBER_INIT_BIN}
  DEPENDS ${EMBER_INIT_SOURCES} ${EMBER_INIT_HEADERS}
  COMMENT "Building the guest init (static)")
add_custom_target(ember_init ALL DEPENDS ${EMBER_INIT_BIN})

# ember_guest_agent (in ALL): the guest agent as a host program for tests
# (--listen PATH | --fd N), built with the host compiler; test_guest_agent.
add_executable(ember_guest_agent ${EMBER_AGENT_SOURCES} ${EMBER_GUEST_SRC}/agent/host/main.c
               ${EMBER_GUEST_SRC}/init/user.c)

# Always runs build.sh, which is a no-op when up to date.
add_custom_target(bootkit
  COMMAND sh ${EMBER_GUEST_SRC}/kit/build.sh ${EMBER_BOOTKIT_DIR} ${EMBER_INIT_BIN}
  DEPENDS ember_init
  COMMENT "Building the boot kit (Debian kernel via apt-get download + guest init)"
  USES_TERMINAL)

# Test driver: writes a boot config with the host writer (agent/image/bootcfg.c).
add_executable(mkbootcfg ${CMAKE_SOURCE_DIR}/test/guests/mkbootcfg.c)
target_link_libraries(mkbootcfg PRIVATE ember_image)

find_program(EMBER_GUEST_PYTHON3 python3 PATHS /usr/bin NO_DEFAULT_PATH)
if(NOT EMBER_GUEST_PYTHON3)
  set(EMBER_GUEST_PYTHON3 /usr/bin/python3)
endif()
add_test(NAME bootkit_boots
  COMMAND ${EMBER_GUEST_PYTHON3} ${CMAKE_SOURCE_DIR}/test/guests/bootkit_test.py
          ${EMBER_BOOTKIT_DIR} $<TARGET_FILE:mkbootcfg>)
set_tests_properties(bootkit_boots PROPERTIES
  SKIP_RETURN_CODE 77 TIMEOUT 900 LABELS "guests;bootkit" RESOURCE_LOCK ember_qemu_guests)

# With -DEMBER_FUZZ=ON (clang): fuzz_bootcfg, libFuzzer target of the guest's
# boot config reader with a writer round trip (test/fuzz/fuzz_bootcfg.c), and
# a 30 s smoke run from an empty corpus (label fuzz).
if(EMBER_FUZZ)
  add_executable(fuzz_bootcfg ${CMAKE_SOURCE_DIR}/test/fuzz/fuzz_bootcfg.c
                 ${EMBER_GUEST_SRC}/init/config.c)
  target_compile_options(fuzz_bootcfg PRIVATE -fsanitize=fuzzer,address,undefined)
  target_link_options(fuzz_bootcfg PRIVATE -fsanitize=fuzzer,address,undefined)
  target_link_libraries(fuzz_bootcfg PRIVATE ember_image)
  add_test(NAME fuzz_bootcfg_smoke
    COMMAND sh -c "mkdir -p \"$1\" && exec \"$0\" -max_total_time=30 -max_len=8192 \"$1\""
            $<TARGET_FILE:fuzz_bootcfg> ${CMAKE_BINARY_DIR}/fuzz-bootcfg-corpus)
  set_tests_properties(fuzz_bootcfg_smoke PROPERTIES LABELS "fuzz" TIMEOUT 120)
endif()

# Installed where emberd looks by default (boot_kit_dir, agent/config.h
# EMBER_BOOT_KIT_DIR = <prefix>/lib/ember/bootkit); only when `bootkit` was built.
install(FILES ${EMBER_BOOTKIT_DIR}/vmlinux ${EMBER_BOOTKIT_DIR}/initramfs.cpio.gz
        DESTINATION lib/ember/bootkit OPTIONAL)
