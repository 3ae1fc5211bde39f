/* fc_merge.h: merging a Firecracker diff memory file onto a full image.
 *
 * Firecracker before 1.6 opens the memory file of /snapshot/create with
 * truncate(true), so a Diff snapshot cannot land in the base image: it is
 * written to a separate sparse file of the same length holding only the dirty
 * pages (clean pages are holes). This module copies that file's data extents
 * onto the base at the same offsets. Dirty pages that are all zeros are data
 * extents and are copied too: nothing here skips zero pages. */
#ifndef EMBER_DRIVERS_FIRECRACKER_FC_MERGE_H
#define EMBER_DRIVERS_FIRECRACKER_FC_MERGE_H

#include "common/error.h"

#include <stdint.h>

/* Copies every data extent (lseek SEEK_DATA/SEEK_HOLE) of diff_path onto
 * base_path at the same offsets, fsyncs base_path, then removes diff_path.
 * Both files must have the same length. Refuses (INTERNAL, diff kept) when the
 * filesystem cannot report holes in a file that has them (it would overwrite
 * clean pages with zeros). *copied (may be NULL) receives the bytes copied. */
int fc_merge_diff(const char *diff_path, const char *base_path, uint64_t *copied, cmn_error *err);

#endif
