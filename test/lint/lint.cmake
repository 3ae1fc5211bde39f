# test/lint: static checks of the sources. proto_buf_lint runs `buf lint` on the
# public API (proto/buf.yaml); it needs node/npm (test/install-deps.sh) and
# installs @bufbuild/buf under the build tree; SKIP (77) without them.
add_test(NAME proto_buf_lint
         COMMAND bash ${CMAKE_CURRENT_LIST_DIR}/buf_lint.sh ${CMAKE_BINARY_DIR}/proto-lint)
set_tests_properties(proto_buf_lint PROPERTIES LABELS "lint" SKIP_RETURN_CODE 77 TIMEOUT 300)

# Source checks that need no build: banned C functions (curl's model).
add_test(NAME lint_banned_functions
         COMMAND /bin/sh ${CMAKE_SOURCE_DIR}/test/lint/banned_functions.sh ${CMAKE_SOURCE_DIR})
set_tests_properties(lint_banned_functions PROPERTIES LABELS "lint" TIMEOUT 120)

# Every test source (test/**/test_*.c, test/**/test_*.py) is named by a cmake
# fragment: a test file that nothing registers fails here.
add_test(NAME lint_tests_registered
         COMMAND /bin/sh ${CMAKE_SOURCE_DIR}/test/lint/tests_registered.sh
                 ${CMAKE_SOURCE_DIR} ${CMAKE_BINARY_DIR})
set_tests_properties(lint_tests_registered PROPERTIES LABELS "lint" TIMEOUT 120)

# Driver operations are called only through agent/vmm_call.c (one boundary for
# availability, capability and missing-op checks).
add_test(NAME lint_driver_calls
         COMMAND /bin/sh ${CMAKE_SOURCE_DIR}/test/lint/driver_calls.sh ${CMAKE_SOURCE_DIR})
set_tests_properties(lint_driver_calls PROPERTIES LABELS "lint" TIMEOUT 120)

# No file includes a header of a layer above its own (the folder tree is the
# architecture: common <- drivers <- agent core <- server, ctl).
add_test(NAME lint_layers
         COMMAND /bin/sh ${CMAKE_SOURCE_DIR}/test/lint/layers.sh ${CMAKE_SOURCE_DIR})
set_tests_properties(lint_layers PROPERTIES LABELS "lint" TIMEOUT 120)

# Every tracked C file follows .clang-format (clang-format 14).
add_test(NAME lint_format COMMAND /bin/sh ${CMAKE_SOURCE_DIR}/test/lint/format.sh ${CMAKE_SOURCE_DIR})
set_tests_properties(lint_format PROPERTIES LABELS "lint" SKIP_RETURN_CODE 77 TIMEOUT 300)
