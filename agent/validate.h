/* validate.h: checks on everything a request brings in, before anything on
 * disk changes. Every refusal is INVALID_ARGUMENT with a message naming the
 * field and the rule. */
#ifndef EMBER_AGENT_VALIDATE_H
#define EMBER_AGENT_VALIDATE_H

#include "agent/hostfiles.h"
#include "common/error.h"
#include "drivers/hypervisor.h"

#include <stdbool.h>

#define AGENT_NAME_MAX 63
#define AGENT_VCPUS_MAX 64
#define AGENT_MEMORY_MIB_MIN 16
#define AGENT_MEMORY_MIB_MAX 262144
#define AGENT_CMDLINE_MAX 4096
#define AGENT_PATH_MAX 1024
#define AGENT_DISKS_MAX 16
#define AGENT_NICS_MAX 8

/* Instance ids are AGENT_ID_PREFIX and AGENT_ID_HEX_DIGITS lowercase hex
 * digits ("i-0123456789abcdef"); names may never start with AGENT_ID_PREFIX,
 * so the two sets are disjoint by construction and a string that names one
 * instance can never be another instance's id. */
#define AGENT_ID_PREFIX "i-"
#define AGENT_ID_HEX_DIGITS 16

/* Names: 1..63 characters of [A-Za-z0-9._-], starting with a letter or digit
 * and not with AGENT_ID_PREFIX. Neither a name nor an id can reach outside the
 * data dir. */
int agent_validate_name(const char *field, const char *name, cmn_error *err);
/* Ids: exactly the form the manager generates. */
int agent_validate_id(const char *field, const char *id, cmn_error *err);
/* True when s starts with AGENT_ID_PREFIX, i.e. it can only be meant as an id. */
bool agent_is_id_form(const char *s);
/* What requests that name an instance take: an id when agent_is_id_form,
 * else a name. */
int agent_validate_id_or_name(const char *field, const char *s, cmn_error *err);
/* vcpus, memory, kernel/initrd/disk paths (absolute, no commas or control
 * characters since VMM command lines are comma-separated), cmdline, TAP names
 * and MAC addresses; then, with a fence, the files themselves: opened and
 * checked exactly as Start will (hostfiles.h), refusals INVALID_ARGUMENT
 * naming the field (e.g. spec.disks[1].path). fence NULL: syntax only. */
int agent_validate_spec(const vmm_spec *spec, const agent_host_fence *fence, cmn_error *err);

#endif
