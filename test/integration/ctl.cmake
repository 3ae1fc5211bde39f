# test/integration/ctl.cmake: emberctl against a real emberd (python fixture),
# and the deploy checks (manifests, systemd unit, Containerfile lint, image
# smoke). The deploy checks carry the label "deploy" so CI can run them as a
# step of their own (ctest -L deploy); the image smoke test is long.
set(CTL_IT_DIR ${CMAKE_CURRENT_LIST_DIR})
set(CTL_DEPLOY_DIR ${CMAKE_SOURCE_DIR}/test/deploy)

if(TARGET emberctl AND TARGET emberd)
  add_test(NAME ctl_integration
           COMMAND /usr/bin/python3 ${CTL_IT_DIR}/test_ctl.py)
  set_tests_properties(ctl_integration PROPERTIES
    LABELS "integration;sanitize"
    TIMEOUT 180
    SKIP_RETURN_CODE 77
    ENVIRONMENT "EMBERCTL_BIN=$<TARGET_FILE:emberctl>;EMBERD_BIN=$<TARGET_FILE:emberd>;EMBER_PYTHON_DIR=${CMAKE_BINARY_DIR}/python")
endif()

# Deploy checks: each script prints SKIP and exits 77 when its tool is absent.
set(CTL_DEPLOY_WORK ${CMAKE_BINARY_DIR}/deploy-check)
add_test(NAME deploy_systemd_unit
         COMMAND bash ${CTL_DEPLOY_DIR}/check_systemd.sh ${CMAKE_SOURCE_DIR}/deploy/systemd/emberd.service
                 $<$<TARGET_EXISTS:emberd>:$<TARGET_FILE:emberd>>)
add_test(NAME deploy_manifests
         COMMAND bash ${CTL_DEPLOY_DIR}/validate_manifests.sh ${CTL_DEPLOY_WORK})
add_test(NAME deploy_containerfile_lint
         COMMAND bash ${CTL_DEPLOY_DIR}/lint_containerfile.sh ${CTL_DEPLOY_WORK})
set_tests_properties(deploy_systemd_unit deploy_manifests deploy_containerfile_lint PROPERTIES
  LABELS "deploy" SKIP_RETURN_CODE 77 TIMEOUT 300)
if(TARGET emberctl AND TARGET emberd)
  add_test(NAME deploy_image_smoke
           COMMAND bash ${CTL_DEPLOY_DIR}/image_smoke.sh ${CTL_DEPLOY_WORK}/image
                   $<TARGET_FILE:emberctl>)
  set_tests_properties(deploy_image_smoke PROPERTIES
    LABELS "deploy;long" SKIP_RETURN_CODE 77 TIMEOUT 1200 RUN_SERIAL TRUE
    ENVIRONMENT "EMBER_TINY_ELF=${CMAKE_BINARY_DIR}/guests/tiny/tiny.elf")
endif()

# The README's first command, deploy/quickstart.sh, run as written (packages
# already installed) on a data dir of its own: a Linux guest boots, the printed
# commands work, --stop cleans up. It builds into <source>/build as the README
# says, which is this build in CI.
add_test(NAME deploy_quickstart COMMAND /bin/sh ${CTL_DEPLOY_DIR}/test_quickstart.sh)
set_tests_properties(deploy_quickstart PROPERTIES
  LABELS "deploy;qemu" SKIP_RETURN_CODE 77 TIMEOUT 900 RESOURCE_LOCK ember_qemu_guests)
