/* wire_check.h: the strings of a request, checked on the wire before
 * protobuf-c decodes it.
 *
 * protobuf-c copies a string field into a NUL-terminated C string and forgets
 * its length, so "keepme\0other" would reach a handler as "keepme". This
 * module walks the encoded bytes with the message's ProtobufCMessageDescriptor
 * (into message fields, repeated fields and map entries) and refuses any
 * string field that holds a NUL byte or is not strict UTF-8 (no overlong
 * forms, no surrogates, nothing above U+10FFFF). Because it reads the
 * descriptors, a string field added to a .proto later is covered without
 * touching this code. Needs only protobuf-c and common/error.h. */
#ifndef EMBER_AGENT_SERVER_WIRE_CHECK_H
#define EMBER_AGENT_SERVER_WIRE_CHECK_H

#include "common/error.h"

#include <protobuf-c/protobuf-c.h>
#include <stddef.h>
#include <stdint.h>

/* Deepest message nesting walked; deeper input is refused. */
#define SRV_WIRE_MAX_DEPTH 32

/* Returns 0 when every string field of the message encoded in data[0..len)
 * is NUL-free strict UTF-8. Otherwise returns -1 with err = INVALID_ARGUMENT
 * naming the field path, e.g. "spec.disks[1].path holds a NUL byte at offset
 * 6", or saying where the encoding itself is broken (truncated, bad varint,
 * group or reserved wire type, nesting deeper than SRV_WIRE_MAX_DEPTH).
 * Fields this descriptor does not know, bytes fields and packed numbers are
 * skipped. Does not allocate. */
int srv_wire_check(const ProtobufCMessageDescriptor *d, const uint8_t *data, size_t len,
                   cmn_error *err);

/* Strict UTF-8 without NUL: returns -1 when s[0..len) is valid, else the
 * offset of the first offending byte; *nul tells whether it is a NUL byte. */
long srv_utf8_bad_offset(const uint8_t *s, size_t len, int *nul);

#endif
