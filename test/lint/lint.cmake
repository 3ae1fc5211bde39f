# Source checks that need no build: banned C functions (curl's model).
add_test(NAME lint_banned_functions
         COMMAND /bin/sh ${CMAKE_SOURCE_DIR}/test/lint/banned_functions.sh ${CMAKE_SOURCE_DIR})
set_tests_properties(lint_banned_functions PROPERTIES LABELS "lint" TIMEOUT 120)
