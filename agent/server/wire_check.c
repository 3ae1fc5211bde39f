/* wire_check.c: see wire_check.h. A single pass over the protobuf wire format
 * (varint, 64-bit, length-delimited, 32-bit records), descending into the
 * length-delimited records that the descriptor declares as message fields.
 * The field path of the offending string is built in a fixed buffer on the
 * stack while descending. */
#include "agent/server/wire_check.h"

#include <stdbool.h>
#include <stdio.h>
#include <string.h>

#define WIRE_PATH_MAX 512
/* Repeated fields past this index in a descriptor are named "name[]". */
#define WIRE_INDEXED_FIELDS 128

typedef struct wire_walk {
  char path[WIRE_PATH_MAX];
  size_t path_len;
  const char *root; /* message name of the request, for encoding errors */
  cmn_error *err;
} wire_walk;

long srv_utf8_bad_offset(const uint8_t *s, size_t len, int *nul)
{
  *nul = 0;
  size_t i = 0;
  while (i < len) {
    uint8_t b = s[i];
    if (b == 0) {
      *nul = 1;
      return (long)i;
    }
    if (b < 0x80) {
      i++;
      continue;
    }
    size_t n;
    uint8_t lo = 0x80, hi = 0xBF; /* range of the second byte */
    if (b >= 0xC2 && b <= 0xDF) {
      n = 2;
    } else if (b >= 0xE0 && b <= 0xEF) {
      n = 3;
      if (b == 0xE0)
        lo = 0xA0; /* overlong below U+0800 */
      else if (b == 0xED)
        hi = 0x9F; /* surrogates U+D800..U+DFFF */
    } else if (b >= 0xF0 && b <= 0xF4) {
      n = 4;
      if (b == 0xF0)
        lo = 0x90; /* overlong below U+10000 */
      else if (b == 0xF4)
        hi = 0x8F; /* above U+10FFFF */
    } else {
      return (long)i; /* continuation byte, overlong C0/C1, or F5..FF */
    }
    if (len - i < n)
      return (long)i;
    if (s[i + 1] < lo || s[i + 1] > hi)
      return (long)i;
    for (size_t k = 2; k < n; k++)
      if ((s[i + k] & 0xC0) != 0x80)
        return (long)i;
    i += n;
  }
  return -1;
}

/* Reads a varint at *pos; false when truncated or longer than 10 bytes. */
static bool wire__varint(const uint8_t *d, size_t len, size_t *pos, uint64_t *out)
{
  uint64_t v = 0;
  for (unsigned shift = 0, k = 0; k < 10; k++, shift += 7) {
    if (*pos >= len)
      return false;
    uint8_t b = d[(*pos)++];
    v |= (uint64_t)(b & 0x7F) << shift;
    if ((b & 0x80) == 0) {
      *out = v;
      return true;
    }
  }
  return false;
}

static int wire__broken(wire_walk *w, size_t at, const char *what)
{
  return cmn_err_set(w->err, CMN_INVALID_ARGUMENT,
                     "cannot decode the request as %s: %s at byte %zu%s%s", w->root, what, at,
                     w->path_len ? " of " : "", w->path_len ? w->path : "");
}

/* Appends ".name" or ".name[i]" (index >= 0; "[]" for -2) to the path; returns the previous length.
 */
static size_t wire__push(wire_walk *w, const ProtobufCFieldDescriptor *f, long index)
{
  size_t old = w->path_len;
  int n;
  size_t room = sizeof(w->path) - old;
  if (index >= 0)
    n = snprintf(w->path + old, room, "%s%s[%ld]", old ? "." : "", f->name, index);
  else if (index == -2)
    n = snprintf(w->path + old, room, "%s%s[]", old ? "." : "", f->name);
  else
    n = snprintf(w->path + old, room, "%s%s", old ? "." : "", f->name);
  if (n < 0 || (size_t)n >= room)
    w->path_len = sizeof(w->path) - 1; /* truncated; still NUL-terminated */
  else
    w->path_len = old + (size_t)n;
  return old;
}

static void wire__pop(wire_walk *w, size_t old)
{
  w->path_len = old;
  w->path[old] = '\0';
}

static int wire__message(wire_walk *w, const ProtobufCMessageDescriptor *d, const uint8_t *data,
                         size_t len, int depth);

static int wire__message(wire_walk *w, const ProtobufCMessageDescriptor *d, const uint8_t *data,
                         size_t len, int depth)
{
  if (depth > SRV_WIRE_MAX_DEPTH)
    return wire__broken(w, 0, "messages nested too deeply");
  /* Occurrences so far of each repeated field (by its index in d->fields),
   * for the [index] of the path. */
  unsigned seen[WIRE_INDEXED_FIELDS];
  memset(seen, 0, sizeof(seen));
  size_t pos = 0;
  while (pos < len) {
    size_t rec = pos;
    uint64_t key;
    if (!wire__varint(data, len, &pos, &key))
      return wire__broken(w, rec, "truncated or overlong field key");
    uint64_t number = key >> 3;
    if (number == 0 || number > 0x1FFFFFFF)
      return wire__broken(w, rec, "field number out of range");
    uint64_t v;
    switch (key & 7) {
    case 0:
      if (!wire__varint(data, len, &pos, &v))
        return wire__broken(w, rec, "truncated varint");
      break;
    case 1:
      if (len - pos < 8)
        return wire__broken(w, rec, "truncated 64-bit field");
      pos += 8;
      break;
    case 5:
      if (len - pos < 4)
        return wire__broken(w, rec, "truncated 32-bit field");
      pos += 4;
      break;
    case 2: {
      if (!wire__varint(data, len, &pos, &v) || v > len - pos)
        return wire__broken(w, rec, "truncated length-delimited field");
      const uint8_t *body = data + pos;
      size_t blen = (size_t)v;
      const ProtobufCFieldDescriptor *f =
          d != NULL ? protobuf_c_message_descriptor_get_field(d, (unsigned)number) : NULL;
      if (f != NULL && (f->type == PROTOBUF_C_TYPE_STRING || f->type == PROTOBUF_C_TYPE_MESSAGE)) {
        long index = -1;
        if (f->label == PROTOBUF_C_LABEL_REPEATED) {
          size_t fi = (size_t)(f - d->fields);
          index = fi < WIRE_INDEXED_FIELDS ? (long)seen[fi]++ : -2;
        }
        size_t old = wire__push(w, f, index);
        if (f->type == PROTOBUF_C_TYPE_STRING) {
          int nul;
          long bad = srv_utf8_bad_offset(body, blen, &nul);
          if (bad >= 0) {
            if (nul)
              return cmn_err_set(w->err, CMN_INVALID_ARGUMENT, "%s holds a NUL byte at offset %ld",
                                 w->path, bad);
            return cmn_err_set(w->err, CMN_INVALID_ARGUMENT,
                               "%s is not valid UTF-8 (byte 0x%02X at offset %ld)", w->path,
                               body[bad], bad);
          }
        } else if (wire__message(w, f->descriptor, body, blen, depth + 1) < 0) {
          return -1;
        }
        wire__pop(w, old);
      }
      pos += blen;
      break;
    }
    default:
      return wire__broken(w, rec, "group or reserved wire type");
    }
  }
  return 0;
}

int srv_wire_check(const ProtobufCMessageDescriptor *d, const uint8_t *data, size_t len,
                   cmn_error *err)
{
  wire_walk w;
  w.path[0] = '\0';
  w.path_len = 0;
  w.root = d->name;
  w.err = err;
  if (len > 0 && data == NULL)
    return cmn_err_set(err, CMN_INVALID_ARGUMENT, "no request bytes");
  return wire__message(&w, d, data, len, 0);
}
