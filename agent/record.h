/* record.h: an instance's persistent record (<instance dir>/instance.json).
 *
 * The record is what survives an agent restart: identity, spec, the last
 * committed state, snapshot facts, and the VMM process (pid + start time) so a
 * restarted agent can re-adopt it. It is written atomically (temp file, fsync,
 * rename, fsync of the folder). */
#ifndef EMBER_AGENT_RECORD_H
#define EMBER_AGENT_RECORD_H

#include "agent/manager.h"
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

#endif
