/* config.c: parse ember's boot config (format: guest/bootcfg_format.h).
 * The input is hostile until proven otherwise: every length is checked
 * against what is left before it is used, sizes are bounded, and nothing is
 * kept on error. */
#include "config.h"

#include <errno.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "guest/bootcfg_format.h"

__attribute__((format(printf, 3, 4))) static int cfg_fail(char *errbuf, size_t errlen,
                                                          const char *fmt, ...)
{
  if (errbuf != NULL && errlen > 0) {
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(errbuf, errlen, fmt, ap);
    va_end(ap);
  }
  return -1;
}

void init_config_free(init_config *c)
{
  if (c == NULL)
    return;
  for (size_t i = 0; c->argv != NULL && i < c->argc; i++)
    free(c->argv[i]);
  for (size_t i = 0; c->env != NULL && i < c->envc; i++)
    free(c->env[i]);
  free(c->argv);
  free(c->env);
  free(c->workdir);
  free(c->user);
  free(c->hostname);
  free(c->root);
  memset(c, 0, sizeof(*c));
}

int init_config_is_bootcfg(const unsigned char *buf, size_t len)
{
  return len >= EMBER_BOOTCFG_MAGIC_LEN &&
         memcmp(buf, EMBER_BOOTCFG_MAGIC, EMBER_BOOTCFG_MAGIC_LEN) == 0;
}

static const char *cfg_tag_name(unsigned tag)
{
  switch (tag) {
  case EMBER_BOOTCFG_ARG:
    return "argument";
  case EMBER_BOOTCFG_ENV:
    return "environment variable";
  case EMBER_BOOTCFG_WORKDIR:
    return "working directory";
  case EMBER_BOOTCFG_USER:
    return "user";
  case EMBER_BOOTCFG_HOSTNAME:
    return "hostname";
  case EMBER_BOOTCFG_ROOT:
    return "root device";
  default:
    return "record";
  }
}

/* A single-valued string: set once, bounded. */
static int cfg_set_once(char **slot, const unsigned char *v, size_t n, size_t max, unsigned tag,
                        char *errbuf, size_t errlen)
{
  if (*slot != NULL)
    return cfg_fail(errbuf, errlen, "%s given twice", cfg_tag_name(tag));
  if (n > max)
    return cfg_fail(errbuf, errlen, "%s is %zu bytes (at most %zu)", cfg_tag_name(tag), n, max);
  char *s = strndup((const char *)v, n);
  if (s == NULL)
    return cfg_fail(errbuf, errlen, "out of memory");
  *slot = s;
  return 0;
}

/* Appends to a NULL-terminated list with capacity doubling. */
static int cfg_push(char ***list, size_t *n, size_t *cap, const unsigned char *v, size_t len,
                    char *errbuf, size_t errlen)
{
  if (*n + 1 >= *cap) {
    size_t ncap = *cap == 0 ? 8 : *cap * 2;
    char **nl = realloc(*list, ncap * sizeof(*nl));
    if (nl == NULL)
      return cfg_fail(errbuf, errlen, "out of memory");
    *list = nl;
    *cap = ncap;
  }
  char *s = strndup((const char *)v, len);
  if (s == NULL)
    return cfg_fail(errbuf, errlen, "out of memory");
  (*list)[(*n)++] = s;
  (*list)[*n] = NULL;
  return 0;
}

/* Records why an optional network record was skipped, with its value made
 * printable (at most 64 bytes of it). */
__attribute__((format(printf, 4, 5))) static void cfg_note(init_config *c, const unsigned char *v,
                                                           size_t n, const char *fmt, ...)
{
  if (c->nnotes >= INIT_CONFIG_MAX_NOTES) {
    c->notes_dropped++;
    return;
  }
  char *line = c->notes[c->nnotes++];
  va_list ap;
  va_start(ap, fmt);
  int m = vsnprintf(line, INIT_CONFIG_NOTE_LEN, fmt, ap);
  va_end(ap);
  size_t at = m < 0 ? 0 : (size_t)m;
  if (at + 5 >= INIT_CONFIG_NOTE_LEN)
    return;
  line[at++] = ' ';
  line[at++] = '\'';
  for (size_t i = 0; i < n && i < 64 && at + 3 < INIT_CONFIG_NOTE_LEN; i++)
    line[at++] = v[i] >= 0x20 && v[i] < 0x7F ? (char)v[i] : '?';
  if (n > 64 && at + 5 < INIT_CONFIG_NOTE_LEN) {
    memcpy(line + at, "...", 3);
    at += 3;
  }
  line[at++] = '\'';
  line[at] = '\0';
}

/* A NET or DNS record: kept when valid, else skipped with a note (an interface
 * less is better than no workload). */
static void cfg_net_record(init_config *c, unsigned tag, const unsigned char *v, size_t n,
                           size_t *seen)
{
  size_t idx = ++*seen;
  if (memchr(v, '\0', n) != NULL) {
    cfg_note(c, v, n, "%s record %zu skipped: contains a NUL byte",
             tag == EMBER_BOOTCFG_NET ? "net" : "dns", idx);
    return;
  }
  if (tag == EMBER_BOOTCFG_NET) {
    if (c->nnet >= EMBER_BOOTCFG_MAX_NET) {
      cfg_note(c, v, n, "net record %zu skipped: more than %u interfaces", idx,
               EMBER_BOOTCFG_MAX_NET);
      return;
    }
    ember_bootcfg_net *o = &c->net[c->nnet];
    const char *why = ember_bootcfg_parse_net((const char *)v, n, o);
    if (why != NULL) {
      cfg_note(c, v, n, "net record %zu skipped: %s", idx, why);
      return;
    }
    for (size_t i = 0; i < c->nnet; i++)
      if (memcmp(c->net[i].mac, o->mac, sizeof(o->mac)) == 0) {
        cfg_note(c, v, n, "net record %zu skipped: its MAC is already configured", idx);
        return;
      }
    c->nnet++;
    return;
  }
  if (c->ndns >= EMBER_BOOTCFG_MAX_DNS) {
    cfg_note(c, v, n, "dns record %zu skipped: more than %u nameservers", idx,
             EMBER_BOOTCFG_MAX_DNS);
    return;
  }
  const char *why = ember_bootcfg_parse_dns((const char *)v, n, &c->dns[c->ndns]);
  if (why != NULL) {
    cfg_note(c, v, n, "dns record %zu skipped: %s", idx, why);
    return;
  }
  c->ndns++;
}

static int cfg_records(const unsigned char *p, size_t plen, init_config *c, char *errbuf,
                       size_t errlen)
{
  size_t argcap = 0, envcap = 0;
  size_t nets_seen = 0, dns_seen = 0;
  size_t off = 0;
  while (off < plen) {
    if (plen - off < EMBER_BOOTCFG_RECORD_HEADER)
      return cfg_fail(errbuf, errlen, "truncated record header at payload offset %zu", off);
    unsigned tag = ember_bootcfg_get16(p + off);
    unsigned zero = ember_bootcfg_get16(p + off + 2);
    size_t n = ember_bootcfg_get32(p + off + 4);
    off += EMBER_BOOTCFG_RECORD_HEADER;
    if (zero != 0)
      return cfg_fail(errbuf, errlen, "record with tag %u has nonzero reserved bits", tag);
    if (n > plen - off)
      return cfg_fail(errbuf, errlen, "record with tag %u claims %zu bytes, %zu left", tag, n,
                      plen - off);
    const unsigned char *v = p + off;
    off += n;
    if (tag == EMBER_BOOTCFG_NET || tag == EMBER_BOOTCFG_DNS) {
      cfg_net_record(c, tag, v, n, tag == EMBER_BOOTCFG_NET ? &nets_seen : &dns_seen);
      continue;
    }
    if (tag & EMBER_BOOTCFG_OPTIONAL)
      continue; /* a later, optional setting this init does not know */
    if (memchr(v, '\0', n) != NULL)
      return cfg_fail(errbuf, errlen, "%s contains a NUL byte", cfg_tag_name(tag));
    int r;
    switch (tag) {
    case EMBER_BOOTCFG_ARG:
      if (c->argc >= EMBER_BOOTCFG_MAX_ARGS)
        return cfg_fail(errbuf, errlen, "more than %u arguments", EMBER_BOOTCFG_MAX_ARGS);
      if (n > EMBER_BOOTCFG_MAX_VALUE)
        return cfg_fail(errbuf, errlen, "argument %zu is %zu bytes (at most %u)", c->argc, n,
                        EMBER_BOOTCFG_MAX_VALUE);
      r = cfg_push(&c->argv, &c->argc, &argcap, v, n, errbuf, errlen);
      break;
    case EMBER_BOOTCFG_ENV:
      if (c->envc >= EMBER_BOOTCFG_MAX_ENV)
        return cfg_fail(errbuf, errlen, "more than %u environment variables",
                        EMBER_BOOTCFG_MAX_ENV);
      if (n > EMBER_BOOTCFG_MAX_VALUE)
        return cfg_fail(errbuf, errlen, "environment variable %zu is %zu bytes (at most %u)",
                        c->envc, n, EMBER_BOOTCFG_MAX_VALUE);
      if (n == 0 || v[0] == '=' || memchr(v, '=', n) == NULL)
        return cfg_fail(errbuf, errlen, "environment variable %zu is not KEY=VALUE", c->envc);
      r = cfg_push(&c->env, &c->envc, &envcap, v, n, errbuf, errlen);
      break;
    case EMBER_BOOTCFG_WORKDIR:
      if (n == 0 || v[0] != '/')
        return cfg_fail(errbuf, errlen, "working directory is not an absolute path");
      r = cfg_set_once(&c->workdir, v, n, EMBER_BOOTCFG_MAX_PATH, tag, errbuf, errlen);
      break;
    case EMBER_BOOTCFG_USER:
      if (n == 0)
        return cfg_fail(errbuf, errlen, "user is empty");
      r = cfg_set_once(&c->user, v, n, EMBER_BOOTCFG_MAX_USER, tag, errbuf, errlen);
      break;
    case EMBER_BOOTCFG_HOSTNAME:
      if (n == 0)
        return cfg_fail(errbuf, errlen, "hostname is empty");
      r = cfg_set_once(&c->hostname, v, n, EMBER_BOOTCFG_MAX_HOSTNAME, tag, errbuf, errlen);
      break;
    case EMBER_BOOTCFG_ROOT:
      if (n == 0 || v[0] != '/')
        return cfg_fail(errbuf, errlen, "root device is not an absolute path");
      r = cfg_set_once(&c->root, v, n, EMBER_BOOTCFG_MAX_PATH, tag, errbuf, errlen);
      break;
    default:
      return cfg_fail(errbuf, errlen, "unknown mandatory record tag %u (newer emberd?)", tag);
    }
    if (r < 0)
      return -1;
  }
  if (c->argc == 0)
    return cfg_fail(errbuf, errlen, "no command to run (no argument record)");
  if (c->env == NULL) {
    c->env = calloc(1, sizeof(*c->env));
    if (c->env == NULL)
      return cfg_fail(errbuf, errlen, "out of memory");
  }
  if (c->workdir == NULL && (c->workdir = strdup("/")) == NULL)
    return cfg_fail(errbuf, errlen, "out of memory");
  if (c->hostname == NULL && (c->hostname = strdup("ember")) == NULL)
    return cfg_fail(errbuf, errlen, "out of memory");
  return 0;
}

int init_config_parse(const unsigned char *buf, size_t len, init_config *out, char *errbuf,
                      size_t errlen)
{
  memset(out, 0, sizeof(*out));
  if (len < EMBER_BOOTCFG_HEADER_SIZE)
    return cfg_fail(errbuf, errlen, "%zu bytes, shorter than the %u-byte header", len,
                    EMBER_BOOTCFG_HEADER_SIZE);
  if (!init_config_is_bootcfg(buf, len))
    return cfg_fail(errbuf, errlen, "bad magic (not an ember boot config)");
  uint32_t version = ember_bootcfg_get32(buf + 8);
  uint32_t hsize = ember_bootcfg_get32(buf + 12);
  uint32_t plen = ember_bootcfg_get32(buf + 16);
  uint32_t crc = ember_bootcfg_get32(buf + 20);
  uint32_t flags = ember_bootcfg_get32(buf + 24);
  if (version != EMBER_BOOTCFG_VERSION)
    return cfg_fail(errbuf, errlen, "version %u, this init reads version %u", version,
                    EMBER_BOOTCFG_VERSION);
  if (hsize != EMBER_BOOTCFG_HEADER_SIZE)
    return cfg_fail(errbuf, errlen, "header size %u, expected %u", hsize,
                    EMBER_BOOTCFG_HEADER_SIZE);
  if (flags != 0)
    return cfg_fail(errbuf, errlen, "unknown flags 0x%x", flags);
  if (plen > EMBER_BOOTCFG_MAX_PAYLOAD)
    return cfg_fail(errbuf, errlen, "payload of %u bytes exceeds the %u-byte limit", plen,
                    EMBER_BOOTCFG_MAX_PAYLOAD);
  if (plen > len - EMBER_BOOTCFG_HEADER_SIZE)
    return cfg_fail(errbuf, errlen, "truncated: payload of %u bytes, %zu present", plen,
                    len - EMBER_BOOTCFG_HEADER_SIZE);
  const unsigned char *p = buf + EMBER_BOOTCFG_HEADER_SIZE;
  uint32_t got = ember_bootcfg_crc32(p, plen);
  if (got != crc)
    return cfg_fail(errbuf, errlen, "checksum mismatch (header 0x%08x, payload 0x%08x)", crc, got);
  if (cfg_records(p, plen, out, errbuf, errlen) < 0) {
    init_config_free(out);
    return -1;
  }
  return 0;
}

int init_config_read_fd(int fd, init_config *out, char *errbuf, size_t errlen)
{
  memset(out, 0, sizeof(*out));
  size_t cap = EMBER_BOOTCFG_HEADER_SIZE + EMBER_BOOTCFG_MAX_PAYLOAD;
  unsigned char *buf = malloc(cap);
  if (buf == NULL)
    return cfg_fail(errbuf, errlen, "out of memory");
  size_t len = 0;
  while (len < cap) {
    ssize_t n = pread(fd, buf + len, cap - len, (off_t)len);
    if (n < 0 && errno == EINTR)
      continue;
    if (n < 0) {
      int e = errno;
      free(buf);
      errno = e;
      return cfg_fail(errbuf, errlen, "read: %m");
    }
    if (n == 0)
      break;
    len += (size_t)n;
  }
  int r = init_config_parse(buf, len, out, errbuf, errlen);
  free(buf);
  return r;
}
