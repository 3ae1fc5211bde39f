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
#include <time.h>

/* The member at byte offset off of a message (protobuf-c descriptor offsets
 * come from offsetof, so the member is aligned for its type; via void * as
 * the char * arithmetic itself says nothing about alignment). */
#define CTL_MEMBER(type, msg, off) (*(type *)(void *)((char *)(msg) + (off)))

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

/* ---- well-known types and maps (the proto3 JSON mapping's special cases) ---- */

/* google.protobuf.Timestamp / Duration: { int64 seconds = 1; int32 nanos = 2; } */
static bool ctl__is_wkt(const ProtobufCMessageDescriptor *d, const char *name)
{
  return strcmp(d->name, name) == 0 && d->n_fields == 2;
}

static void ctl__sec_nanos(const ProtobufCMessage *m, int64_t *sec, int32_t *nanos)
{
  const ProtobufCMessageDescriptor *d = m->descriptor;
  *sec = CTL_MEMBER(int64_t, m, d->fields[0].offset);
  *nanos = CTL_MEMBER(int32_t, m, d->fields[1].offset);
}

/* ".123", ".123456" or ".123456789" (nothing for 0), as the mapping prints. */
static void ctl__frac(char *buf, size_t size, int32_t nanos)
{
  if (nanos == 0)
    buf[0] = '\0';
  else if (nanos % 1000000 == 0)
    snprintf(buf, size, ".%03d", (int)(nanos / 1000000));
  else if (nanos % 1000 == 0)
    snprintf(buf, size, ".%06d", (int)(nanos / 1000));
  else
    snprintf(buf, size, ".%09d", (int)nanos);
}

static cJSON *ctl__wkt_to_json(const ProtobufCMessage *m)
{
  int64_t sec;
  int32_t nanos;
  ctl__sec_nanos(m, &sec, &nanos);
  char frac[16], buf[64];
  if (ctl__is_wkt(m->descriptor, "google.protobuf.Timestamp")) {
    time_t t = (time_t)sec;
    struct tm tm;
    if (gmtime_r(&t, &tm) == NULL)
      return cJSON_CreateNull();
    ctl__frac(frac, sizeof(frac), nanos);
    snprintf(buf, sizeof(buf), "%04d-%02d-%02dT%02d:%02d:%02d%sZ", tm.tm_year + 1900, tm.tm_mon + 1,
             tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec, frac);
    return cJSON_CreateString(buf);
  }
  bool neg = sec < 0 || nanos < 0;
  ctl__frac(frac, sizeof(frac), nanos < 0 ? -nanos : nanos);
  snprintf(buf, sizeof(buf), "%s%lld%ss", neg ? "-" : "", (long long)(sec < 0 ? -sec : sec), frac);
  return cJSON_CreateString(buf);
}

/* Reads up to 9 fraction digits after a '.' at *p into nanos. */
static int ctl__parse_frac(const char **p, int32_t *nanos)
{
  *nanos = 0;
  if (**p != '.')
    return 0;
  (*p)++;
  int digits = 0;
  while (**p >= '0' && **p <= '9') {
    if (++digits > 9)
      return -1;
    *nanos = *nanos * 10 + (**p - '0');
    (*p)++;
  }
  if (digits == 0)
    return -1;
  for (int i = digits; i < 9; i++)
    *nanos *= 10;
  return 0;
}

static int ctl__wkt_from_json(const ProtobufCMessageDescriptor *d, const cJSON *j,
                              ProtobufCMessage **out, const char *path, cmn_error *err)
{
  if (!cJSON_IsString(j))
    return cmn_err_set(err, CMN_INVALID_ARGUMENT, "%s: expected a string", path);
  const char *s = j->valuestring;
  int64_t sec = 0;
  int32_t nanos = 0;
  if (strcmp(d->name, "google.protobuf.Timestamp") == 0) {
    struct tm tm = {0};
    const char *p = strptime(s, "%Y-%m-%dT%H:%M:%S", &tm);
    if (p == NULL || ctl__parse_frac(&p, &nanos) < 0 || strcmp(p, "Z") != 0)
      return cmn_err_set(err, CMN_INVALID_ARGUMENT,
                         "%s: expected an RFC 3339 UTC time such as 2026-01-02T03:04:05Z", path);
    sec = (int64_t)timegm(&tm);
  } else {
    const char *p = s;
    bool neg = *p == '-';
    if (neg)
      p++;
    char *end = NULL;
    errno = 0;
    long long v = (*p >= '0' && *p <= '9') ? strtoll(p, &end, 10) : -1;
    p = end;
    if (v < 0 || errno != 0 || ctl__parse_frac(&p, &nanos) < 0 || strcmp(p, "s") != 0)
      return cmn_err_set(err, CMN_INVALID_ARGUMENT, "%s: expected a duration such as \"1.5s\"",
                         path);
    sec = neg ? -v : v;
    nanos = neg ? -nanos : nanos;
  }
  ProtobufCMessage *m = cmn_malloc(d->sizeof_message);
  protobuf_c_message_init(d, m);
  CTL_MEMBER(int64_t, m, d->fields[0].offset) = sec;
  CTL_MEMBER(int32_t, m, d->fields[1].offset) = nanos;
  *out = m;
  return 0;
}

/* A map field: repeated XxxEntry { key = 1; value = 2; } (protoc's shape). */
static bool ctl__is_map(const ProtobufCFieldDescriptor *f)
{
  if (f->label != PROTOBUF_C_LABEL_REPEATED || f->type != PROTOBUF_C_TYPE_MESSAGE)
    return false;
  const ProtobufCMessageDescriptor *d = f->descriptor;
  size_t n = strlen(d->name);
  return d->n_fields == 2 && n > 5 && strcmp(d->name + n - 5, "Entry") == 0 &&
         strcmp(d->fields[0].name, "key") == 0 && strcmp(d->fields[1].name, "value") == 0 &&
         d->fields[0].type == PROTOBUF_C_TYPE_STRING;
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
    return cJSON_CreateNumber((double)*(const float *)p);
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
    if (m == NULL)
      return cJSON_CreateNull();
    if (ctl__is_wkt(m->descriptor, "google.protobuf.Timestamp") ||
        ctl__is_wkt(m->descriptor, "google.protobuf.Duration"))
      return ctl__wkt_to_json(m);
    return ctl_pb_to_json(m);
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
    if (ctl__is_map(f)) {
      size_t n = CTL_MEMBER(size_t, msg, f->quantifier_offset);
      ProtobufCMessage *const *ents = CTL_MEMBER(ProtobufCMessage *const *, msg, f->offset);
      const ProtobufCMessageDescriptor *ed = f->descriptor;
      const ProtobufCFieldDescriptor *kf = &ed->fields[0], *vf = &ed->fields[1];
      cJSON *jo = cJSON_CreateObject();
      for (size_t k = 0; k < n; k++) {
        const char *key = CTL_MEMBER(const char *, ents[k], kf->offset);
        cJSON_AddItemToObject(jo, key != NULL ? key : "",
                              ctl__value_to_json(vf, (const char *)ents[k] + vf->offset));
      }
      cJSON_AddItemToObject(obj, name, jo);
    } else if (f->label == PROTOBUF_C_LABEL_REPEATED) {
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
    if (fabs(modf(v, &(double){0})) > 0 || v < min || v > max)
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
    const ProtobufCMessageDescriptor *md = f->descriptor;
    if (ctl__is_wkt(md, "google.protobuf.Timestamp") ||
        ctl__is_wkt(md, "google.protobuf.Duration")) {
      if (ctl__wkt_from_json(md, j, &m, path, err) < 0)
        return -1;
      *(ProtobufCMessage **)p = m;
      return 0;
    }
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
    if (ctl__is_map(f)) {
      const ProtobufCMessageDescriptor *ed = f->descriptor;
      if (!cJSON_IsObject(item)) {
        ctl__bad(err, key, "expected an object (a map)");
        goto fail;
      }
      ProtobufCMessage ***arrp = &CTL_MEMBER(ProtobufCMessage **, msg, f->offset);
      size_t *np = &CTL_MEMBER(size_t, msg, f->quantifier_offset);
      if (*np != 0)
        continue; /* first occurrence wins */
      size_t n = (size_t)cJSON_GetArraySize(item);
      *arrp = cmn_calloc(n > 0 ? n : 1, sizeof(**arrp));
      const cJSON *el;
      cJSON_ArrayForEach(el, item)
      {
        char path[256];
        snprintf(path, sizeof(path), "%s.%s", key, el->string);
        ProtobufCMessage *e = cmn_malloc(ed->sizeof_message);
        protobuf_c_message_init(ed, e);
        (*arrp)[(*np)++] = e;
        CTL_MEMBER(char *, e, ed->fields[0].offset) = cmn_strdup(el->string);
        if (ctl__value_from_json(&ed->fields[1], el, (char *)e + ed->fields[1].offset, path, err) <
            0)
          goto fail;
      }
      continue;
    }
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

void ctl_print_json(FILE *out, const ProtobufCMessage *msg, bool compact)
{
  cJSON *j = ctl_pb_to_json(msg);
  char *s = compact ? cJSON_PrintUnformatted(j) : cJSON_Print(j);
  fprintf(out, "%s\n", s);
  fflush(out);
  free(s);
  cJSON_Delete(j);
}
