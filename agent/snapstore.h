/* snapstore.h: the store of frozen snapshots that clones are forked from
 * (ForkInstance, CreateSnapshot; docs/fork.md).
 *
 * One folder per snapshot under <data_dir>/snapshots:
 *   <id>/snapshot.json  id, name, source instance, creation time, hidden
 *   <id>/instance.json  the source's record when it was taken (record.h):
 *                       hypervisor, spec, image, network; what clones run
 *   <id>/vm/            the VMM's frozen snapshot (hypervisor.h save())
 *   <id>/disks/         frozen copies of the emberd-made disks (rootfs)
 *   <id>/.complete      written last: a folder without it is not a snapshot
 * A snapshot is written under .tmp-<id> and renamed into place once complete,
 * so a crash never leaves a half snapshot that looks whole (the next start
 * removes .tmp-* and .deleting-* folders). Nothing in a snapshot folder is
 * ever written again: clones map or copy it, copy-on-write.
 *
 * A hidden snapshot is the one ForkInstance takes of an instance: it is not
 * named, and it goes with the last clone that depends on it. Which instances
 * depend on a snapshot is the instance manager's knowledge (the clones'
 * records); the store only counts holds, taken by a fork while it creates
 * clones, so that a delete cannot race with them.
 *
 * Thread-safe: one mutex guards the table; no I/O under it. */
#ifndef EMBER_AGENT_SNAPSTORE_H
#define EMBER_AGENT_SNAPSTORE_H

#include "agent/record.h"
#include "common/error.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define AGENT_SNAP_ID_PREFIX "s-"
#define AGENT_SNAP_VM_DIR "vm"
#define AGENT_SNAP_DISKS_DIR "disks"

typedef struct agent_snap_meta {
  char *id;
  char *name; /* NULL or "" when hidden */
  char *source_id;
  char *source_name;
  int64_t created_at_us;
  bool hidden;
} agent_snap_meta;

void agent_snap_meta_free(agent_snap_meta *m);
void agent_snap_meta_copy(agent_snap_meta *dst, const agent_snap_meta *src);

typedef struct agent_snapstore agent_snapstore;

/* Opens (creating) <data_dir>/snapshots, removes leftovers of interrupted
 * writes and deletes, and loads every complete snapshot. */
agent_snapstore *agent_snapstore_open(const char *data_dir, cmn_error *err);
void agent_snapstore_free(agent_snapstore *st);

/* Starts a snapshot: checks and reserves name (NULL: hidden; ALREADY_EXISTS
 * when a snapshot has it), makes <root>/.tmp-<id>/{vm,disks}. *id and *dir
 * (the temp folder) are the caller's to free. */
int agent_snapstore_begin(agent_snapstore *st, const char *name, char **id, char **dir,
                          cmn_error *err);
/* Writes snapshot.json and instance.json (source, with proc cleared) into
 * dir, makes the folder durable, marks it complete and renames it into
 * place. On failure (and for abort) the folder and the reservation go. */
int agent_snapstore_commit(agent_snapstore *st, const char *id, const char *dir,
                           const agent_record *source, agent_snap_meta *out, cmn_error *err);
void agent_snapstore_abort(agent_snapstore *st, const char *id, const char *dir);

/* Finds a snapshot by id or name and takes a hold on it (released with
 * agent_snapstore_release); fills *meta, *source (its instance.json) and *dir
 * (its folder) when not NULL. NOT_FOUND otherwise. */
int agent_snapstore_hold(agent_snapstore *st, const char *id_or_name, agent_snap_meta *meta,
                         agent_record *source, char **dir, cmn_error *err);
void agent_snapstore_release(agent_snapstore *st, const char *id);

/* Every snapshot (hidden ones too), ordered by name then id. */
int agent_snapstore_list(agent_snapstore *st, agent_snap_meta **out, size_t *n);
void agent_snap_metas_free(agent_snap_meta *m, size_t n);
/* Bytes the snapshot's folder takes on disk (allocated blocks). */
uint64_t agent_snapstore_size(agent_snapstore *st, const char *id);

/* Deleting a snapshot (by id) takes two steps. mark: no I/O, so the caller
 * can hold its own lock while it checks that no instance depends on the
 * snapshot: FAILED_PRECONDITION while a fork holds it, NOT_FOUND; from then
 * on it cannot be held or found. delete: removes the folder (renamed out of
 * the way first); on failure the mark is lifted. */
int agent_snapstore_mark_deleting(agent_snapstore *st, const char *id, cmn_error *err);
int agent_snapstore_delete(agent_snapstore *st, const char *id, cmn_error *err);

#endif
