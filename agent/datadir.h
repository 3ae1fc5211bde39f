/* datadir.h: the on-disk format of emberd's data dir.
 *
 * <data dir>/format.json records the layout version of everything below it
 * (instance folders, records, snapshot folders, driver files) and the emberd
 * that last wrote it. A new emberd reads every older format it knows (an
 * upgrade keeps every guest) and writes its own; an emberd that finds a newer
 * format than it knows refuses to start, so a downgrade is refused clearly
 * instead of misreading the folder. Format 1 is the first release, which wrote
 * no format file: a data dir without one that holds instances is format 1. */
#ifndef EMBER_AGENT_DATADIR_H
#define EMBER_AGENT_DATADIR_H

#include "common/error.h"

#define AGENT_DATADIR_FORMAT_FILE "format.json"
/* The layout this emberd writes; it reads 1 .. AGENT_DATADIR_FORMAT. */
#define AGENT_DATADIR_FORMAT 2

/* Checks the data dir's format (call with the data dir lock held, before the
 * instance manager loads anything) and records this emberd's format and
 * version when they differ. FAILED_PRECONDITION for a newer or unreadable
 * format, naming both versions. *found gets the format that was there (0 for
 * a fresh data dir); may be NULL. */
int agent_datadir_check(const char *data_dir, const char *emberd_version, int *found,
                        cmn_error *err);

#endif
