/* bootcfg_format.h: the wire format of ember's boot config, shared by the host
 * writer (agent/image/bootcfg.c) and the guest reader (guest/init/config.c).
 * Self-contained (no ember headers) so that the static guest init builds with
 * it alone. docs/boot-kit.md describes the format for people.
 *
 * Layout, all integers little-endian:
 *   header (32 bytes)
 *     0  magic "EMBERCFG" (8 bytes)
 *     8  u32 version         EMBER_BOOTCFG_VERSION; a reader rejects others
 *    12  u32 header size     32
 *    16  u32 payload length  bytes of records that follow the header
 *    20  u32 payload CRC-32  (IEEE 802.3, as zlib's crc32) of those bytes
 *    24  u32 flags           0
 *    28  u32 reserved        0
 *   payload: records, each
 *     u16 tag, u16 zero, u32 length, then `length` bytes (no NUL, no padding)
 *   then zero padding up to a multiple of 64 KiB (the file is a disk; the
 *   kernel's partition probes read its first sectors).
 *
 * Tags with bit 0x8000 set are optional: a reader that does not know one skips
 * it (room for later settings, e.g. network addresses); an unknown tag without
 * that bit is an error. String values hold no NUL byte. */
#ifndef EMBER_GUEST_BOOTCFG_FORMAT_H
#define EMBER_GUEST_BOOTCFG_FORMAT_H

#include <stddef.h>
#include <stdint.h>

#define EMBER_BOOTCFG_MAGIC "EMBERCFG"
#define EMBER_BOOTCFG_MAGIC_LEN 8
#define EMBER_BOOTCFG_VERSION 1u
#define EMBER_BOOTCFG_HEADER_SIZE 32u
#define EMBER_BOOTCFG_ALIGN 65536u /* whole disk: partition probes read the first 64 KiB */
#define EMBER_BOOTCFG_RECORD_HEADER 8u

/* Bounds a reader enforces (a writer refuses to go past them). */
#define EMBER_BOOTCFG_MAX_PAYLOAD (1u << 20) /* 1 MiB in all */
#define EMBER_BOOTCFG_MAX_VALUE (64u << 10)  /* one argument or KEY=VALUE */
#define EMBER_BOOTCFG_MAX_ARGS 4096u
#define EMBER_BOOTCFG_MAX_ENV 4096u
#define EMBER_BOOTCFG_MAX_PATH 4095u /* working directory, root device */
#define EMBER_BOOTCFG_MAX_USER 256u
#define EMBER_BOOTCFG_MAX_HOSTNAME 64u /* HOST_NAME_MAX */

enum ember_bootcfg_tag {
  EMBER_BOOTCFG_ARG = 1,      /* repeated, in order: argv[0..] (at least one) */
  EMBER_BOOTCFG_ENV = 2,      /* repeated: "KEY=VALUE" */
  EMBER_BOOTCFG_WORKDIR = 3,  /* absolute path; default "/" */
  EMBER_BOOTCFG_USER = 4,     /* "uid[:gid]" or "name[:group]"; default root */
  EMBER_BOOTCFG_HOSTNAME = 5, /* default "ember" */
  EMBER_BOOTCFG_ROOT = 6,     /* root device, e.g. "/dev/vda"; default: the first
                                 virtio disk that is not the boot config */
  EMBER_BOOTCFG_OPTIONAL = 0x8000,
};

/* CRC-32 (reflected, polynomial 0xEDB88320), bitwise: the config is small. */
static inline uint32_t ember_bootcfg_crc32(const unsigned char *p, size_t n)
{
  uint32_t c = 0xFFFFFFFFu;
  for (size_t i = 0; i < n; i++) {
    c ^= p[i];
    for (int k = 0; k < 8; k++)
      c = (c >> 1) ^ (0xEDB88320u & (0u - (c & 1u)));
  }
  return c ^ 0xFFFFFFFFu;
}

static inline uint32_t ember_bootcfg_get32(const unsigned char *p)
{
  return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

static inline uint16_t ember_bootcfg_get16(const unsigned char *p)
{
  return (uint16_t)(p[0] | p[1] << 8);
}

static inline void ember_bootcfg_put32(unsigned char *p, uint32_t v)
{
  p[0] = (unsigned char)v;
  p[1] = (unsigned char)(v >> 8);
  p[2] = (unsigned char)(v >> 16);
  p[3] = (unsigned char)(v >> 24);
}

static inline void ember_bootcfg_put16(unsigned char *p, uint16_t v)
{
  p[0] = (unsigned char)v;
  p[1] = (unsigned char)(v >> 8);
}

#endif
