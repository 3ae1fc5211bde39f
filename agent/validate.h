/* validate.h: checks on everything a request brings in, before anything on
 * disk changes. Every refusal is INVALID_ARGUMENT with a message naming the
 * field and the rule. */
#ifndef EMBER_AGENT_VALIDATE_H
#define EMBER_AGENT_VALIDATE_H

#include "agent/hostfiles.h"
#include "common/error.h"
#include "drivers/hypervisor.h"

#define AGENT_NAME_MAX 63
#define AGENT_VCPUS_MAX 64
#define AGENT_MEMORY_MIB_MIN 16
#define AGENT_MEMORY_MIB_MAX 262144
#define AGENT_CMDLINE_MAX 4096
#define AGENT_PATH_MAX 1024
#define AGENT_DISKS_MAX 16
#define AGENT_NICS_MAX 8

/* 1..63 characters of [A-Za-z0-9._-], starting with a letter or digit. Ids
 * follow the same rule, so an id or a name can never reach outside the data dir. */
int agent_validate_name(const char *field, const char *name, cmn_error *err);
/* vcpus, memory, kernel/initrd/disk paths (absolute, no commas or control
 * characters since VMM command lines are comma-separated), cmdline, TAP names
 * and MAC addresses; then, with a fence, the files themselves: opened and
 * checked exactly as Start will (hostfiles.h), refusals INVALID_ARGUMENT
 * naming the field (e.g. spec.disks[1].path). fence NULL: syntax only. */
int agent_validate_spec(const vmm_spec *spec, const agent_host_fence *fence, cmn_error *err);

#endif
