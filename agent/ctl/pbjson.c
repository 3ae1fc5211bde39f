/* pbjson.c: generic protobuf-c <-> cJSON conversion (see pbjson.h for the
 * mapping). Works from the message descriptors only, so it covers every
 * message emberctl prints or reads without per-message code. */
#include "agent/ctl/pbjson.h"

#include "common/mem.h"

#include <errno.h>
#include <inttypes.h>
#include <math.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define CTL_MEMBER(type, msg, off) (*(type *)((char *)(msg) + (off)))

char *ctl_pb_json_name(const char *field_name)
{
  size_t n = strlen(field_name);
  char *out = cmn_malloc(n + 1);
  size_t j = 0;
  bool up = false;
  for (size_t i = 0; i < n; i++) {
    char c = field_name[i];
    if (c == '_') {
      up = true;
      continue;
    }
    if (up && c >= 'a' && c <= 'z')
      c = (char)(c - 'a' + 'A');
    up = false;
    out[j++] = c;
  }
  out[j] = '\0';
  return out;
}

const char *ctl_pb_enum_name(const ProtobufCEnumDescriptor *ed, int value)
{
  const ProtobufCEnumValue *v = protobuf_c_enum_descriptor_get_value(ed, value);
  return v != NULL ? v->name : NULL;
}

static size_t ctl__elem_size(ProtobufCType t)
{
  switch (t) {
  case PROTOBUF_C_TYPE_INT32:
  case PROTOBUF_C_TYPE_SINT32:
  case PROTOBUF_C_TYPE_SFIXED32:
  case PROTOBUF_C_TYPE_UINT32:
  case PROTOBUF_C_TYPE_FIXED32:
  case PROTOBUF_C_TYPE_ENUM:
    return 4;
  case PROTOBUF_C_TYPE_INT64:
  case PROTOBUF_C_TYPE_SINT64:
  case PROTOBUF_C_TYPE_SFIXED64:
  case PROTOBUF_C_TYPE_UINT64:
  case PROTOBUF_C_TYPE_FIXED64:
    return 8;
  case PROTOBUF_C_TYPE_FLOAT:
    return sizeof(float);
  case PROTOBUF_C_TYPE_DOUBLE:
    return sizeof(double);
  case PROTOBUF_C_TYPE_BOOL:
    return sizeof(protobuf_c_boolean);
  case PROTOBUF_C_TYPE_STRING:
    return sizeof(char *);
  case PROTOBUF_C_TYPE_BYTES:
    return sizeof(ProtobufCBinaryData);
  case PROTOBUF_C_TYPE_MESSAGE:
    return sizeof(ProtobufCMessage *);
  }
  return 0;
}

static cJSON *ctl__base64(const ProtobufCBinaryData *b)
{
  static const char tbl[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
  size_t n = b->len, o = 0;
  char *s = cmn_malloc(4 * ((n + 2) / 3) + 1);
  for (size_t i = 0; i < n; i += 3) {
    uint32_t v = (uint32_t)b->data[i] << 16;
    if (i + 1 < n)
      v |= (uint32_t)b->data[i + 1] << 8;
    if (i + 2 < n)
      v |= b->data[i + 2];
    s[o++] = tbl[(v >> 18) & 63];
    s[o++] = tbl[(v >> 12) & 63];
    s[o++] = i + 1 < n ? tbl[(v >> 6) & 63] : '=';
    s[o++] = i + 2 < n ? tbl[v & 63] : '=';
  }
  s[o] = '\0';
  cJSON *j = cJSON_CreateString(s);
  free(s);
  return j;
}

static cJSON *ctl__i64(int64_t v)
{
  char buf[32];
  snprintf(buf, sizeof(buf), "%" PRId64, v);
  return cJSON_CreateString(buf);
}

static cJSON *ctl__u64(uint64_t v)
{
  char buf[32];
  snprintf(buf, sizeof(buf), "%" PRIu64, v);
  return cJSON_CreateString(buf);
}

/* One value of field f stored at p. */
static cJSON *ctl__value_to_json(const ProtobufCFieldDescriptor *f, const void *p)
{
  switch (f->type) {
  case PROTOBUF_C_TYPE_INT32:
  case PROTOBUF_C_TYPE_SINT32:
  case PROTOBUF_C_TYPE_SFIXED32:
    return cJSON_CreateNumber(*(const int32_t *)p);
  case PROTOBUF_C_TYPE_UINT32:
  case PROTOBUF_C_TYPE_FIXED32:
    return cJSON_CreateNumber(*(const uint32_t *)p);
  case PROTOBUF_C_TYPE_INT64:
  case PROTOBUF_C_TYPE_SINT64:
  case PROTOBUF_C_TYPE_SFIXED64:
    return ctl__i64(*(const int64_t *)p);
  case PROTOBUF_C_TYPE_UINT64:
  case PROTOBUF_C_TYPE_FIXED64:
    return ctl__u64(*(const uint64_t *)p);
  case PROTOBUF_C_TYPE_FLOAT:
    return cJSON_CreateNumber(*(const float *)p);
  case PROTOBUF_C_TYPE_DOUBLE:
    return cJSON_CreateNumber(*(const double *)p);
  case PROTOBUF_C_TYPE_BOOL:
    return cJSON_CreateBool(*(const protobuf_c_boolean *)p);
  case PROTOBUF_C_TYPE_ENUM: {
    int v = *(const int *)p;
    const char *name = ctl_pb_enum_name(f->descriptor, v);
    return name != NULL ? cJSON_CreateString(name) : cJSON_CreateNumber(v);
  }
  case PROTOBUF_C_TYPE_STRING: {
    const char *s = *(char *const *)p;
    return cJSON_CreateString(s != NULL ? s : "");
  }
  case PROTOBUF_C_TYPE_BYTES:
    return ctl__base64((const ProtobufCBinaryData *)p);
  case PROTOBUF_C_TYPE_MESSAGE: {
    const ProtobufCMessage *m = *(ProtobufCMessage *const *)p;
    return m != NULL ? ctl_pb_to_json(m) : cJSON_CreateNull();
  }
  }
  return cJSON_CreateNull();
}

cJSON *ctl_pb_to_json(const ProtobufCMessage *msg)
{
  cJSON *obj = cJSON_CreateObject();
  const ProtobufCMessageDescriptor *d = msg->descriptor;
  for (unsigned i = 0; i < d->n_fields; i++) {
    const ProtobufCFieldDescriptor *f = &d->fields[i];
    const char *base = (const char *)msg;
    if (f->flags & PROTOBUF_C_FIELD_FLAG_ONEOF) {
      if (CTL_MEMBER(uint32_t, msg, f->quantifier_offset) != f->id)
        continue;
    } else if (f->label == PROTOBUF_C_LABEL_OPTIONAL && f->type != PROTOBUF_C_TYPE_MESSAGE &&
               f->type != PROTOBUF_C_TYPE_STRING && f->quantifier_offset != 0) {
      /* proto3 `optional` (or proto2): honour the presence flag. */
      if (!CTL_MEMBER(protobuf_c_boolean, msg, f->quantifier_offset))
        continue;
    }
    char *name = ctl_pb_json_name(f->name);
    if (f->label == PROTOBUF_C_LABEL_REPEATED) {
      size_t n = CTL_MEMBER(size_t, msg, f->quantifier_offset);
      const char *arr = CTL_MEMBER(const char *, msg, f->offset);
      size_t sz = ctl__elem_size(f->type);
      cJSON *ja = cJSON_CreateArray();
      for (size_t k = 0; k < n; k++)
        cJSON_AddItemToArray(ja, ctl__value_to_json(f, arr + k * sz));
      cJSON_AddItemToObject(obj, name, ja);
    } else if (f->type == PROTOBUF_C_TYPE_MESSAGE &&
               CTL_MEMBER(ProtobufCMessage *, msg, f->offset) == NULL) {
      /* unset sub-message: left out */
    } else {
      cJSON_AddItemToObject(obj, name, ctl__value_to_json(f, base + f->offset));
    }
    free(name);
  }
  return obj;
}

/* ---- JSON -> message ---- */

static int ctl__bad(cmn_error *err, const char *path, const char *what)
{
  return cmn_err_set(err, CMN_INVALID_ARGUMENT, "%s: %s", path, what);
}

/* An integer from a JSON number or a decimal string, within [min, max]. */
static int ctl__json_int(const cJSON *j, bool is_signed, double min, double max, int64_t *si,
                         uint64_t *ui)
{
  if (cJSON_IsNumber(j)) {
    double v = j->valuedouble;
    if (v != floor(v) || v < min || v > max)
      return -1;
    if (is_signed)
      *si = (int64_t)v;
    else
      *ui = (uint64_t)v;
    return 0;
  }
  if (!cJSON_IsString(j) || j->valuestring[0] == '\0')
    return -1;
  char *end = NULL;
  errno = 0;
  if (is_signed) {
    long long v = strtoll(j->valuestring, &end, 10);
    if (errno != 0 || *end != '\0' || (double)v < min || (double)v > max)
      return -1;
    *si = v;
  } else {
    if (j->valuestring[0] == '-')
      return -1;
    unsigned long long v = strtoull(j->valuestring, &end, 10);
    if (errno != 0 || *end != '\0' || (double)v > max)
      return -1;
    *ui = v;
  }
  return 0;
}

static int ctl__value_from_json(const ProtobufCFieldDescriptor *f, const cJSON *j, void *p,
                                const char *path, cmn_error *err)
{
  int64_t si = 0;
  uint64_t ui = 0;
  switch (f->type) {
  case PROTOBUF_C_TYPE_INT32:
  case PROTOBUF_C_TYPE_SINT32:
  case PROTOBUF_C_TYPE_SFIXED32:
    if (ctl__json_int(j, true, INT32_MIN, INT32_MAX, &si, &ui) < 0)
      return ctl__bad(err, path, "expected a 32-bit integer");
    *(int32_t *)p = (int32_t)si;
    return 0;
  case PROTOBUF_C_TYPE_UINT32:
  case PROTOBUF_C_TYPE_FIXED32:
    if (ctl__json_int(j, false, 0, UINT32_MAX, &si, &ui) < 0)
      return ctl__bad(err, path, "expected an unsigned 32-bit integer");
    *(uint32_t *)p = (uint32_t)ui;
    return 0;
  case PROTOBUF_C_TYPE_INT64:
  case PROTOBUF_C_TYPE_SINT64:
  case PROTOBUF_C_TYPE_SFIXED64:
    if (ctl__json_int(j, true, -9223372036854775808.0, 9223372036854775807.0, &si, &ui) < 0)
      return ctl__bad(err, path, "expected a 64-bit integer");
    *(int64_t *)p = si;
    return 0;
  case PROTOBUF_C_TYPE_UINT64:
  case PROTOBUF_C_TYPE_FIXED64:
    if (ctl__json_int(j, false, 0, 18446744073709551615.0, &si, &ui) < 0)
      return ctl__bad(err, path, "expected an unsigned 64-bit integer");
    *(uint64_t *)p = ui;
    return 0;
  case PROTOBUF_C_TYPE_FLOAT:
  case PROTOBUF_C_TYPE_DOUBLE:
    if (!cJSON_IsNumber(j))
      return ctl__bad(err, path, "expected a number");
    if (f->type == PROTOBUF_C_TYPE_FLOAT)
      *(float *)p = (float)j->valuedouble;
    else
      *(double *)p = j->valuedouble;
    return 0;
  case PROTOBUF_C_TYPE_BOOL:
    if (!cJSON_IsBool(j))
      return ctl__bad(err, path, "expected true or false");
    *(protobuf_c_boolean *)p = cJSON_IsTrue(j);
    return 0;
  case PROTOBUF_C_TYPE_ENUM: {
    const ProtobufCEnumDescriptor *ed = f->descriptor;
    if (cJSON_IsString(j)) {
      const ProtobufCEnumValue *v = NULL;
      for (unsigned k = 0; k < ed->n_values; k++)
        if (strcmp(ed->values[k].name, j->valuestring) == 0)
          v = &ed->values[k];
      if (v == NULL)
        return cmn_err_set(err, CMN_INVALID_ARGUMENT, "%s: '%s' is not a value of %s", path,
                           j->valuestring, ed->name);
      *(int *)p = v->value;
      return 0;
    }
    if (ctl__json_int(j, true, INT32_MIN, INT32_MAX, &si, &ui) < 0)
      return ctl__bad(err, path, "expected an enum value name or number");
    *(int *)p = (int)si;
    return 0;
  }
  case PROTOBUF_C_TYPE_STRING:
    if (!cJSON_IsString(j))
      return ctl__bad(err, path, "expected a string");
    *(char **)p = cmn_strdup(j->valuestring);
    return 0;
  case PROTOBUF_C_TYPE_BYTES:
    return ctl__bad(err, path, "bytes fields are not supported in JSON input");
  case PROTOBUF_C_TYPE_MESSAGE: {
    ProtobufCMessage *m = NULL;
    if (!cJSON_IsObject(j))
      return ctl__bad(err, path, "expected an object");
    if (ctl_pb_from_json(j, f->descriptor, &m, err) < 0)
      return cmn_err_prefix(err, "%s", path);
    *(ProtobufCMessage **)p = m;
    return 0;
  }
  }
  return ctl__bad(err, path, "unsupported field type");
}

static const ProtobufCFieldDescriptor *ctl__find_field(const ProtobufCMessageDescriptor *d,
                                                       const char *key)
{
  for (unsigned i = 0; i < d->n_fields; i++) {
    const ProtobufCFieldDescriptor *f = &d->fields[i];
    if (strcmp(f->name, key) == 0)
      return f;
    char *jn = ctl_pb_json_name(f->name);
    bool eq = strcmp(jn, key) == 0;
    free(jn);
    if (eq)
      return f;
  }
  return NULL;
}

int ctl_pb_from_json(const cJSON *json, const ProtobufCMessageDescriptor *desc,
                     ProtobufCMessage **out, cmn_error *err)
{
  *out = NULL;
  if (!cJSON_IsObject(json))
    return cmn_err_set(err, CMN_INVALID_ARGUMENT, "expected a JSON object for %s", desc->name);
  ProtobufCMessage *msg = cmn_malloc(desc->sizeof_message);
  protobuf_c_message_init(desc, msg);
  const cJSON *item;
  cJSON_ArrayForEach(item, json)
  {
    const char *key = item->string;
    const ProtobufCFieldDescriptor *f = ctl__find_field(desc, key);
    if (f == NULL) {
      cmn_err_set(err, CMN_INVALID_ARGUMENT, "unknown field '%s' in %s", key, desc->name);
      goto fail;
    }
    if (cJSON_IsNull(item))
      continue;
    if (f->label == PROTOBUF_C_LABEL_REPEATED) {
      if (!cJSON_IsArray(item)) {
        ctl__bad(err, key, "expected an array");
        goto fail;
      }
      size_t n = (size_t)cJSON_GetArraySize(item), sz = ctl__elem_size(f->type);
      /* Free any earlier occurrence of the same key (duplicate keys). */
      char **arrp = &CTL_MEMBER(char *, msg, f->offset);
      size_t *np = &CTL_MEMBER(size_t, msg, f->quantifier_offset);
      if (*np != 0)
        continue; /* first occurrence wins */
      *arrp = cmn_calloc(n > 0 ? n : 1, sz);
      const cJSON *el;
      cJSON_ArrayForEach(el, item)
      {
        char path[256];
        snprintf(path, sizeof(path), "%s[%zu]", key, *np);
        if (ctl__value_from_json(f, el, *arrp + *np * sz, path, err) < 0)
          goto fail;
        (*np)++;
      }
      continue;
    }
    void *p = (char *)msg + f->offset;
    if (f->type == PROTOBUF_C_TYPE_STRING) {
      char *old = *(char **)p;
      if (old != NULL && old != (const char *)f->default_value)
        continue; /* duplicate key: first occurrence wins */
    } else if (f->type == PROTOBUF_C_TYPE_MESSAGE && *(ProtobufCMessage **)p != NULL) {
      continue;
    }
    if (ctl__value_from_json(f, item, p, key, err) < 0)
      goto fail;
    if (f->flags & PROTOBUF_C_FIELD_FLAG_ONEOF)
      CTL_MEMBER(uint32_t, msg, f->quantifier_offset) = f->id;
    else if (f->label == PROTOBUF_C_LABEL_OPTIONAL && f->quantifier_offset != 0 &&
             f->type != PROTOBUF_C_TYPE_MESSAGE && f->type != PROTOBUF_C_TYPE_STRING)
      CTL_MEMBER(protobuf_c_boolean, msg, f->quantifier_offset) = 1;
  }
  *out = msg;
  return 0;
fail:
  protobuf_c_message_free_unpacked(msg, NULL);
  return -1;
}
