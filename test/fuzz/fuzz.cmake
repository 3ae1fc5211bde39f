# test/fuzz: hostile-input tests of the InstanceService request handlers
# (GitHub issue 5). Included from test/CMakeLists.txt.
#
# Always: fuzz_replay, a plain executable that runs every seed of
# test/fuzz/corpus once through the same target code (ctest fuzz_replay,
# labels unit;sanitize), so the seeds are regression tests in every build.
#
# With -DEMBER_FUZZ=ON -DCMAKE_C_COMPILER=clang: fuzz_requests, the libFuzzer
# target (-fsanitize=fuzzer,address,undefined; our libraries get coverage
# instrumentation and ASan/UBSan), and ctest fuzz_requests_smoke (label fuzz):
# a bounded run (60 s or EMBER_FUZZ_RUNS inputs) that prints executions and
# corpus size. Run it by hand: fuzz_requests -max_total_time=600 NEW_DIR
# test/fuzz/corpus (new inputs go to NEW_DIR; keep the seeds folder curated).
set(FUZZ_DIR ${CMAKE_CURRENT_SOURCE_DIR}/fuzz)
set(FUZZ_SRCS ${FUZZ_DIR}/fuzz_requests.c ${CMAKE_SOURCE_DIR}/agent/server/fuzz_entry.c)
set(FUZZ_LIBS ember_server ember_testvm ember_agent ember_drivers ember_common ember_proto
    ${CURL_LIB} ${GRPC_LIB} ${GPR_LIB} Threads::Threads)
set(EMBER_FUZZ_RUNS 200000 CACHE STRING "Input cap of the fuzz_requests_smoke test")

if(EMBER_FUZZ)
  # The top CMakeLists.txt instruments every library when EMBER_FUZZ is on.
  add_executable(fuzz_requests ${FUZZ_SRCS})
  target_compile_options(fuzz_requests PRIVATE -fsanitize=fuzzer,address,undefined
                         -fno-omit-frame-pointer -fno-sanitize-recover=all)
  target_link_options(fuzz_requests PRIVATE -fsanitize=fuzzer,address,undefined)
  target_link_libraries(fuzz_requests PRIVATE ${FUZZ_LIBS})

  add_test(NAME fuzz_requests_smoke
           COMMAND sh ${FUZZ_DIR}/run_smoke.sh $<TARGET_FILE:fuzz_requests> ${FUZZ_DIR}/corpus
                   ${CMAKE_CURRENT_BINARY_DIR}/fuzz-work 60 ${EMBER_FUZZ_RUNS})
  set_tests_properties(fuzz_requests_smoke PROPERTIES LABELS "fuzz" TIMEOUT 240)
  # The seeds once each through the instrumented target.
  add_test(NAME fuzz_replay COMMAND fuzz_requests -runs=0 ${FUZZ_DIR}/corpus)
  set_tests_properties(fuzz_replay PROPERTIES LABELS "unit;sanitize;fuzz" TIMEOUT 300)
else()
  add_executable(fuzz_replay ${FUZZ_SRCS} ${FUZZ_DIR}/fuzz_replay.c)
  target_link_libraries(fuzz_replay PRIVATE ${FUZZ_LIBS})
  add_test(NAME fuzz_replay COMMAND fuzz_replay ${FUZZ_DIR}/corpus)
  set_tests_properties(fuzz_replay PROPERTIES LABELS "unit;sanitize" TIMEOUT 300)
endif()
