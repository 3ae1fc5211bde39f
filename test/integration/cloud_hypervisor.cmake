# Cloud Hypervisor driver tests: the driver's operations against the contract
# fake (test/fakes/cloud_hypervisor_fake.py) acting as several releases, against
# a real binary when EMBER_CLOUD_HYPERVISOR_BIN names one (SKIP otherwise), and
# end to end through emberd's gRPC API with the fake.
set(CH_TEST_DIR ${CMAKE_CURRENT_SOURCE_DIR}/integration)
set(CH_FAKE ${CMAKE_CURRENT_SOURCE_DIR}/fakes/cloud_hypervisor_fake.py)

add_executable(test_cloud_hypervisor_driver ${CH_TEST_DIR}/test_cloud_hypervisor_driver.c)
target_link_libraries(test_cloud_hypervisor_driver PRIVATE ember_driver_cloud_hypervisor
                      ember_common ${CUNIT_LIB} ${CURL_LIB})

# 25.0: kernel/cmdline/initramfs objects, Debug error text; 28.0: payload only;
# 40.0: Display error text, ping build_version; 53.0: JSON error chain,
# restore resume/memory_restore_mode, SerialConfig.
foreach(v 25.0 28.0 40.0 53.0)
  add_test(NAME ch_driver_fake_${v} COMMAND test_cloud_hypervisor_driver fake ${CH_FAKE} ${v})
  set_tests_properties(ch_driver_fake_${v} PROPERTIES LABELS "cloud-hypervisor;integration"
                       TIMEOUT 120)
endforeach()

add_test(NAME ch_driver_real
         COMMAND test_cloud_hypervisor_driver real ${CMAKE_BINARY_DIR}/guests/tiny/tiny.elf)
set_tests_properties(ch_driver_real PROPERTIES LABELS "cloud-hypervisor;integration"
                     TIMEOUT 120 SKIP_RETURN_CODE 77)

if(TARGET emberd AND EXISTS ${CH_TEST_DIR}/test_cloud_hypervisor_api.py)
  add_test(NAME ch_api_fake
           COMMAND /usr/bin/python3 ${CH_TEST_DIR}/test_cloud_hypervisor_api.py ${CH_FAKE})
  set_tests_properties(ch_api_fake PROPERTIES LABELS "cloud-hypervisor;integration"
    TIMEOUT 300 SKIP_RETURN_CODE 77
    ENVIRONMENT "EMBERD_BIN=$<TARGET_FILE:emberd>;EMBER_PYTHON_DIR=${CMAKE_BINARY_DIR}/python")
endif()

# ExecInstance and the copies through Cloud Hypervisor's hybrid vsock: the
# contract fake relays it to a host build of the guest agent, as the
# Firecracker fake does (test_exec.py, the same checks as integration_exec_fake).
if(TARGET emberd AND TARGET emberctl AND TARGET ember_guest_agent)
  add_test(NAME integration_exec_ch_fake
           COMMAND /usr/bin/python3 ${CH_TEST_DIR}/test_exec.py ${CH_FAKE} cloud-hypervisor)
  set_tests_properties(integration_exec_ch_fake PROPERTIES LABELS "cloud-hypervisor;integration"
    TIMEOUT 300 SKIP_RETURN_CODE 77
    ENVIRONMENT "EMBERD_BIN=$<TARGET_FILE:emberd>;EMBERCTL_BIN=$<TARGET_FILE:emberctl>;EMBER_GUEST_AGENT_BIN=$<TARGET_FILE:ember_guest_agent>;EMBER_PYTHON_DIR=${CMAKE_BINARY_DIR}/python")
endif()
