# test/integration/hardening.cmake: hostile-use tests of the built emberd
# (GitHub issue 5), run with the real python gRPC client (/usr/bin/python3) and
# the Firecracker contract fake as the VMM. Included from test/CMakeLists.txt.
#  integration_concurrency: hundreds of concurrent conflicting lifecycle calls
#    (labels integration;sanitize: also run in the ASan and TSan builds; under
#    TSan, TSAN_OPTIONS points at test/tsan.supp for the uninstrumented gRPC).
#  integration_access: modes of the socket, data dir, instance folders, VMM
#    sockets; plaintext TCP refused without --insecure-tcp.
set(HARDEN_DIR ${CMAKE_CURRENT_SOURCE_DIR}/integration)
set(HARDEN_FAKE ${CMAKE_CURRENT_SOURCE_DIR}/fakes/firecracker_fake.py)
set(HARDEN_ENV "EMBERD_BIN=$<TARGET_FILE:emberd>;EMBER_PYTHON_DIR=${CMAKE_BINARY_DIR}/python")
if(EMBER_SANITIZE MATCHES "thread")
  list(APPEND HARDEN_ENV
       "TSAN_OPTIONS=suppressions=${CMAKE_CURRENT_SOURCE_DIR}/tsan.supp halt_on_error=1 second_deadlock_stack=1")
endif()

if(TARGET emberd)
  add_test(NAME integration_concurrency
           COMMAND /usr/bin/python3 ${HARDEN_DIR}/test_concurrency.py ${HARDEN_FAKE})
  set_tests_properties(integration_concurrency PROPERTIES LABELS "integration;sanitize"
                       TIMEOUT 300 SKIP_RETURN_CODE 77 ENVIRONMENT "${HARDEN_ENV}")

  add_test(NAME integration_access
           COMMAND /usr/bin/python3 ${HARDEN_DIR}/test_access.py ${HARDEN_FAKE}
                   ${CMAKE_BINARY_DIR}/guests/tiny/tiny.elf)
  set_tests_properties(integration_access PROPERTIES LABELS "integration" TIMEOUT 300
                       SKIP_RETURN_CODE 77 ENVIRONMENT "${HARDEN_ENV}")
endif()

# Admission (issue 9): RAM, vCPUs and disk at create, start and restore through
# the gRPC API, with the Firecracker contract fake (no real guest RAM).
if(TARGET emberd)
  add_test(NAME integration_admission
           COMMAND /usr/bin/python3 ${HARDEN_DIR}/test_admission_api.py ${HARDEN_FAKE})
  set_tests_properties(integration_admission PROPERTIES LABELS "integration;sanitize"
                       TIMEOUT 300 SKIP_RETURN_CODE 77 ENVIRONMENT "${HARDEN_ENV}")
endif()
