/* config.h: the guest side of the boot config (guest/bootcfg_format.h): parse
 * the bytes emberd wrote into what init needs to start the workload. Pure code
 * (no I/O besides init_config_read), so it also builds for the host and is
 * unit-tested there (test/unit/test_bootcfg.c). */
#ifndef EMBER_GUEST_INIT_CONFIG_H
#define EMBER_GUEST_INIT_CONFIG_H

#include <stddef.h>
#include <stdint.h>

#include "guest/bootcfg_format.h"

#define INIT_CONFIG_MAX_NOTES 16
#define INIT_CONFIG_NOTE_LEN 160

typedef struct init_config {
  char **argv; /* argc entries + NULL; argc >= 1 */
  size_t argc;
  char **env; /* envc entries + NULL */
  size_t envc;
  char *workdir;  /* never NULL: "/" by default */
  char *user;     /* NULL: root */
  char *hostname; /* never NULL: "ember" by default */
  char *root;     /* NULL: the first virtio disk that is not the config */
  ember_bootcfg_net net[EMBER_BOOTCFG_MAX_NET]; /* valid NET records, in order */
  size_t nnet;
  uint32_t dns[EMBER_BOOTCFG_MAX_DNS]; /* nameservers, host byte order */
  size_t ndns;
  /* Why NET/DNS records were skipped (malformed, a MAC repeated, past the
   * bounds): one line each, for init to log; the rest of the config holds. */
  char notes[INIT_CONFIG_MAX_NOTES][INIT_CONFIG_NOTE_LEN];
  size_t nnotes;
  size_t notes_dropped; /* notes past INIT_CONFIG_MAX_NOTES */
} init_config;

/* Parses `len` bytes (the whole disk: trailing padding is allowed). Checks the
 * magic, version, header size, payload length against `len` and the format's
 * bounds, the CRC, every record's bounds and tag, and the values (no NUL, at
 * least one argument, absolute workdir, KEY=VALUE env). On error returns -1,
 * writes a one-line reason into errbuf and leaves *out zeroed. A malformed
 * NET or DNS record (optional tags) is not an error: it is skipped with a
 * line in out->notes. */
int init_config_parse(const unsigned char *buf, size_t len, init_config *out, char *errbuf,
                      size_t errlen);
void init_config_free(init_config *c);

/* Reads at most EMBER_BOOTCFG_MAX_PAYLOAD + header bytes from fd (from offset 0)
 * and parses them. -1 with a reason on error. */
int init_config_read_fd(int fd, init_config *out, char *errbuf, size_t errlen);

/* 1 if the first bytes of buf are the boot config magic. */
int init_config_is_bootcfg(const unsigned char *buf, size_t len);

#endif
