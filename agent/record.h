/* record.h: an instance's persistent record (<instance dir>/instance.json).
 *
 * The record is what survives an agent restart: identity, spec, the last
 * committed state, snapshot facts, and the VMM process (pid + start time) so a
 * restarted agent can re-adopt it. It is written atomically (temp file, fsync,
 * rename, fsync of the folder). */
#ifndef EMBER_AGENT_RECORD_H
#define EMBER_AGENT_RECORD_H

#include "agent/types.h"
#include "common/proc.h"

#define AGENT_RECORD_FILE "instance.json"

typedef struct agent_record {
  agent_instance_view view; /* vmm_pid mirrors proc.pid */
  cmn_proc proc;
} agent_record;

void agent_record_free(agent_record *r);
void agent_record_copy(agent_record *dst, const agent_record *src);
/* Writes <dir>/instance.json atomically. */
int agent_record_save(const char *dir, const agent_record *r, cmn_error *err);
/* Reads <dir>/instance.json. */
int agent_record_load(const char *dir, agent_record *r, cmn_error *err);
/* JSON form, exposed for tests. */
char *agent_record_to_json(const agent_record *r);
int agent_record_from_json(const char *json, agent_record *r, cmn_error *err);

void agent_view_copy(agent_instance_view *dst, const agent_instance_view *src);

/* Labels (ember.v1.Instance.labels). A key is an optional prefix (a DNS
 * subdomain of lower-case letters, digits, '-' and '.', up to 253 bytes) and
 * '/', then a name of 1 to 63 bytes of [A-Za-z0-9._-] that starts and ends with
 * a letter or digit; a value is empty or such a name. At most
 * AGENT_LABELS_MAX labels, keys unique. Errors are INVALID_ARGUMENT with the
 * field "labels". */
#define AGENT_LABELS_MAX 64
#define AGENT_REQUEST_ID_MAX 128
int agent_labels_validate(const agent_label *l, size_t n, cmn_error *err);
/* Deep copy of n labels sorted by key into *dst (NULL when n is 0). */
void agent_labels_copy_sorted(agent_label **dst, size_t *dst_n, const agent_label *src, size_t n);
void agent_labels_free(agent_label *l, size_t n);
/* The value of key, or NULL. */
const char *agent_labels_get(const agent_label *l, size_t n, const char *key);
/* A request_id: 1 to AGENT_REQUEST_ID_MAX bytes of [A-Za-z0-9._:-]; the field
 * "request_id" in errors. */
int agent_request_id_validate(const char *id, cmn_error *err);
/* Whether view v was made by a create request equal to req (name, hypervisor,
 * spec and labels; labels compared as sets). */
bool agent_view_matches_create(const agent_instance_view *v, const agent_create_req *req);

#endif
