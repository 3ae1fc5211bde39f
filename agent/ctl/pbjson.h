/* pbjson.h: protobuf-c messages to and from JSON (cJSON), by descriptor.
 *
 * Output follows the proto3 JSON mapping: lowerCamelCase field names, enums by
 * value name, 64-bit integers as decimal strings, bytes as base64. Unlike the
 * mapping's default it also prints scalar and repeated fields that hold their
 * default value (as protobuf's "including default value fields" option does),
 * so a script can read `state` or `hasSnapshot` without a fallback; an unset
 * sub-message is left out.
 *
 * Input accepts what the mapping accepts: lowerCamelCase or the proto field
 * name, 64-bit integers as numbers or strings, enums by name or number, null
 * for "default". Unknown fields are an error (a typo in a spec file must not
 * be silently ignored). */
#ifndef EMBER_CTL_PBJSON_H
#define EMBER_CTL_PBJSON_H

#include "common/error.h"

#include <cjson/cJSON.h>
#include <protobuf-c/protobuf-c.h>
#include <stdbool.h>
#include <stdio.h>

/* A new cJSON object for msg; never NULL. */
cJSON *ctl_pb_to_json(const ProtobufCMessage *msg);
/* Prints msg to out as JSON and a newline, then flushes: one line (compact,
 * for streams) or indented. */
void ctl_print_json(FILE *out, const ProtobufCMessage *msg, bool compact);
/* Builds a message of desc from a JSON object. On success *out is freed with
 * protobuf_c_message_free_unpacked(*out, NULL). On failure returns -1 with
 * INVALID_ARGUMENT naming the field path. */
int ctl_pb_from_json(const cJSON *json, const ProtobufCMessageDescriptor *desc,
                     ProtobufCMessage **out, cmn_error *err);
/* "memory_mib" -> "memoryMib" (the proto3 JSON name); caller frees. */
char *ctl_pb_json_name(const char *field_name);
/* The value name of an enum value ("INSTANCE_STATE_RUNNING"), or NULL. */
const char *ctl_pb_enum_name(const ProtobufCEnumDescriptor *ed, int value);

#endif
