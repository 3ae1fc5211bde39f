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
 * it (an older init skips the network records below); an unknown tag without
 * that bit is an error. String values hold no NUL byte.
 *
 * Network records (optional tags, version 1; the guest has no DHCP client):
 *   EMBER_BOOTCFG_NET, repeated, one per interface, at most EMBER_BOOTCFG_MAX_NET:
 *     "<mac> <ipv4>/<prefix> <gateway>[ mtu=<n>]"   single spaces, nothing else
 *     e.g. "02:e7:00:12:34:56 10.88.0.2/16 10.88.0.1 mtu=1400"
 *     <mac>      6 hex pairs separated by ':' (either case), unicast, not zero;
 *                names the NIC (the VMM's MAC), not a kernel interface name
 *     <ipv4>     dotted quad, no leading zeros; not 0.0.0.0, 127/8 or >= 224/4;
 *                not the network or broadcast address of its subnet (prefix <= 30)
 *     <prefix>   1..32
 *     <gateway>  "-" (no default route) or a dotted quad inside the subnet that is
 *                not the address itself nor the subnet's network/broadcast address
 *     mtu=<n>    68..65535 (absent: the driver's default)
 *     two records naming the same MAC are an error (the second is skipped).
 *   EMBER_BOOTCFG_DNS, repeated, at most EMBER_BOOTCFG_MAX_DNS: a nameserver,
 *     dotted quad, not 0.0.0.0 nor >= 224/4; written to /etc/resolv.conf in order.
 * A reader that knows these records skips (and logs) a malformed one and goes on:
 * the workload still runs, without that interface or server. The writer refuses
 * anything the reader would skip. ember_bootcfg_parse_net/_ipv4 and
 * ember_bootcfg_check_net below are the one definition of "malformed". */
#ifndef EMBER_GUEST_BOOTCFG_FORMAT_H
#define EMBER_GUEST_BOOTCFG_FORMAT_H

#include <stddef.h>
#include <stdint.h>
#include <string.h>

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
#define EMBER_BOOTCFG_MAX_NET 8u       /* NET records (interfaces) */
#define EMBER_BOOTCFG_MAX_DNS 4u       /* DNS records (nameservers) */
#define EMBER_BOOTCFG_MAX_NET_TEXT 64u /* longest NET value: 62 bytes */
#define EMBER_BOOTCFG_MAX_DNS_TEXT 15u /* "255.255.255.255" */
#define EMBER_BOOTCFG_MTU_MIN 68u
#define EMBER_BOOTCFG_MTU_MAX 65535u

enum ember_bootcfg_tag {
  EMBER_BOOTCFG_ARG = 1,      /* repeated, in order: argv[0..] (at least one) */
  EMBER_BOOTCFG_ENV = 2,      /* repeated: "KEY=VALUE" */
  EMBER_BOOTCFG_WORKDIR = 3,  /* absolute path; default "/" */
  EMBER_BOOTCFG_USER = 4,     /* "uid[:gid]" or "name[:group]"; default root */
  EMBER_BOOTCFG_HOSTNAME = 5, /* default "ember" */
  EMBER_BOOTCFG_ROOT = 6,     /* root device, e.g. "/dev/vda"; default: the first
                                 virtio disk that is not the boot config */
  EMBER_BOOTCFG_OPTIONAL = 0x8000,
  EMBER_BOOTCFG_NET = 0x8001, /* repeated: one interface (see above) */
  EMBER_BOOTCFG_DNS = 0x8002, /* repeated: one nameserver (see above) */
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

/* One NET record, parsed. Addresses in host byte order. */
typedef struct ember_bootcfg_net {
  uint8_t mac[6];
  uint32_t addr;
  unsigned prefix;  /* 1..32 */
  uint32_t gateway; /* 0: none */
  unsigned mtu;     /* 0: the driver's default */
} ember_bootcfg_net;

/* Parses a decimal number of 1..maxdigits digits without a leading zero (but
 * "0") from *p, advancing it. -1 when there is none. */
static inline long ember_bootcfg_parse_dec(const char **p, const char *end, int maxdigits)
{
  const char *s = *p;
  long v = 0;
  int d = 0;
  while (s < end && *s >= '0' && *s <= '9' && d < maxdigits + 1) {
    v = v * 10 + (*s - '0');
    s++;
    d++;
  }
  if (d == 0 || d > maxdigits || (d > 1 && **p == '0'))
    return -1;
  *p = s;
  return v;
}

/* A dotted quad at *p (advanced past it); host byte order. 0 or -1. */
static inline int ember_bootcfg_parse_ipv4(const char **p, const char *end, uint32_t *out)
{
  const char *s = *p;
  uint32_t a = 0;
  for (int i = 0; i < 4; i++) {
    if (i > 0) {
      if (s >= end || *s != '.')
        return -1;
      s++;
    }
    long v = ember_bootcfg_parse_dec(&s, end, 3);
    if (v < 0 || v > 255)
      return -1;
    a = a << 8 | (uint32_t)v;
  }
  *p = s;
  *out = a;
  return 0;
}

static inline int ember_bootcfg_hex(char c)
{
  if (c >= '0' && c <= '9')
    return c - '0';
  if (c >= 'a' && c <= 'f')
    return c - 'a' + 10;
  if (c >= 'A' && c <= 'F')
    return c - 'A' + 10;
  return -1;
}

/* "xx:xx:xx:xx:xx:xx" at *p (advanced past it). 0 or -1. */
static inline int ember_bootcfg_parse_mac(const char **p, const char *end, uint8_t mac[6])
{
  const char *s = *p;
  if (end - s < 17)
    return -1;
  for (int i = 0; i < 6; i++) {
    if (i > 0 && *s++ != ':')
      return -1;
    int hi = ember_bootcfg_hex(s[0]), lo = ember_bootcfg_hex(s[1]);
    if (hi < 0 || lo < 0)
      return -1;
    mac[i] = (uint8_t)(hi << 4 | lo);
    s += 2;
  }
  *p = s;
  return 0;
}

static inline uint32_t ember_bootcfg_mask(unsigned prefix)
{
  return prefix == 0 ? 0 : 0xFFFFFFFFu << (32 - prefix);
}

/* An address a host or a nameserver can have: not 0.0.0.0, not multicast or
 * reserved (224.0.0.0 and above, broadcast included). */
static inline int ember_bootcfg_unicast(uint32_t a) { return a != 0 && a < 0xE0000000u; }

/* The checks shared by writer and reader; NULL when n is valid, else why not. */
static inline const char *ember_bootcfg_check_net(const ember_bootcfg_net *n)
{
  unsigned any = 0;
  for (int i = 0; i < 6; i++)
    any |= n->mac[i];
  if (any == 0)
    return "the MAC is all zeros";
  if (n->mac[0] & 1u)
    return "the MAC is a multicast address";
  if (n->prefix < 1 || n->prefix > 32)
    return "the prefix length is not 1..32";
  if (!ember_bootcfg_unicast(n->addr) || (n->addr >> 24) == 127)
    return "the address is not a unicast host address (0, 127/8, 224/4 and above)";
  uint32_t mask = ember_bootcfg_mask(n->prefix);
  uint32_t net = n->addr & mask, bcast = net | ~mask;
  if (n->prefix <= 30 && (n->addr == net || n->addr == bcast))
    return "the address is its subnet's network or broadcast address";
  if (n->gateway != 0) {
    if ((n->gateway & mask) != net)
      return "the gateway is outside the interface's subnet";
    if (n->gateway == n->addr)
      return "the gateway is the interface's own address";
    if (n->prefix <= 30 && (n->gateway == net || n->gateway == bcast))
      return "the gateway is its subnet's network or broadcast address";
  }
  if (n->mtu != 0 && (n->mtu < EMBER_BOOTCFG_MTU_MIN || n->mtu > EMBER_BOOTCFG_MTU_MAX))
    return "the MTU is not 68..65535";
  return NULL;
}

/* Parses a NET value (n bytes, not NUL-terminated) strictly and checks it.
 * NULL on success, else a reason. */
static inline const char *ember_bootcfg_parse_net(const char *v, size_t n, ember_bootcfg_net *o)
{
  const char *p = v, *end = v + n;
  if (n > EMBER_BOOTCFG_MAX_NET_TEXT)
    return "longer than 64 bytes";
  o->gateway = 0;
  o->mtu = 0;
  if (ember_bootcfg_parse_mac(&p, end, o->mac) < 0)
    return "no MAC (xx:xx:xx:xx:xx:xx) first";
  if (p >= end || *p++ != ' ' || ember_bootcfg_parse_ipv4(&p, end, &o->addr) < 0)
    return "no IPv4 address after the MAC";
  long prefix;
  if (p >= end || *p++ != '/' || (prefix = ember_bootcfg_parse_dec(&p, end, 2)) < 0)
    return "no /prefix after the address";
  o->prefix = (unsigned)prefix;
  if (p >= end || *p++ != ' ')
    return "no gateway (an address or '-') after the prefix";
  if (p < end && *p == '-')
    p++;
  else if (ember_bootcfg_parse_ipv4(&p, end, &o->gateway) < 0 || o->gateway == 0)
    return "no gateway (an address or '-') after the prefix";
  if (p < end) {
    static const char mtu[] = " mtu=";
    long m;
    if ((size_t)(end - p) < sizeof(mtu) - 1 || memcmp(p, mtu, sizeof(mtu) - 1) != 0)
      return "unknown text after the gateway (only ' mtu=<n>')";
    p += sizeof(mtu) - 1;
    if ((m = ember_bootcfg_parse_dec(&p, end, 5)) < 0 || m == 0)
      return "mtu= is not a number";
    o->mtu = (unsigned)m;
  }
  if (p != end)
    return "unknown text at the end";
  return ember_bootcfg_check_net(o);
}

/* Parses a DNS value strictly; NULL or a reason. */
static inline const char *ember_bootcfg_parse_dns(const char *v, size_t n, uint32_t *out)
{
  const char *p = v, *end = v + n;
  if (ember_bootcfg_parse_ipv4(&p, end, out) < 0 || p != end)
    return "not a dotted-quad IPv4 address";
  if (!ember_bootcfg_unicast(*out))
    return "not a unicast address (0.0.0.0, 224/4 and above)";
  return NULL;
}

#endif
