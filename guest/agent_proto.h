/* agent_proto.h: the wire protocol between emberd (agent/guestlink) and the
 * boot kit's guest agent (guest/agent), shared by both sides. Self-contained
 * (no ember headers) so the static guest init builds with it alone.
 * docs/guest-agent.md describes it for people.
 *
 * Transport: one reliable byte stream per VMM: a virtio-serial port named
 * EMBER_GA_PORT_NAME (QEMU: host side a unix socket chardev), or a vsock
 * connection to guest port EMBER_GA_VSOCK_PORT (Firecracker and Cloud
 * Hypervisor: the host connects to the hybrid vsock socket and sends
 * "CONNECT <port>\n"). Every exec and copy is a channel multiplexed on it.
 *
 * Frame, all integers little-endian:
 *    0  u32 magic     EMBER_GA_MAGIC
 *    4  u8  type      EMBER_GA_T_*
 *    5  u8  flags     0
 *    6  u16 reserved  0
 *    8  u32 channel   0 for the link itself, else a channel the host opened
 *   12  u32 length    payload bytes that follow, <= EMBER_GA_MAX_PAYLOAD
 *   16  payload
 * A frame whose magic, flags, reserved or length is wrong is a protocol error:
 * the host drops the connection (and reconnects); the guest skips bytes until
 * the next HELLO frame (magic, type HELLO, channel 0, payload <= 4096), as it
 * does on a new connection before its first HELLO: the frames in between
 * belong to a session the host abandoned, and a stale header resynced on could
 * swallow the HELLO as its payload.
 *
 * Structured payloads are records: u16 tag, u16 zero, u32 length, then
 * `length` bytes (strings without NUL; integers little-endian in 1, 2, 4 or 8
 * bytes as the tag says). Unknown tags are skipped. Data payloads (STDIN,
 * STDOUT, STDERR, DATA) are raw bytes, at most EMBER_GA_MAX_DATA.
 *
 * Session: the host connects and sends HELLO {VERSION, NONCE}; the guest
 * ends every channel it has (processes killed with their process group, temp
 * files removed) and answers HELLO_ACK {VERSION, NONCE, AGENT}. The host
 * ignores everything until a HELLO_ACK with its nonce (a restored guest may
 * still have half a frame of an older connection queued). A new HELLO on a
 * live connection resets it the same way.
 *
 * Channels: the host picks a channel number > 0 not in use and sends EXEC,
 * PUT or GET on it. The guest answers STARTED (exec), READY (put) or INFO
 * (get), or ERROR {CODE, MSG} which ends the channel. CLOSE from the host
 * ends a channel at once (process group SIGKILLed, a put's temp file
 * removed); the guest sends nothing more on it. The host may reuse a number
 * after it received EXIT, DONE, END or ERROR, or after it sent CLOSE.
 *
 * Flow control, per channel and direction: a sender may have at most
 * EMBER_GA_WINDOW data bytes (payload of STDIN, STDOUT, STDERR, DATA) that the
 * receiver has not yet credited back with WINDOW {BYTES}; the receiver sends
 * WINDOW once it has consumed (written to a pipe, file or client) at least
 * half the window. Data beyond the window is a protocol error.
 *
 * Exec (channel):
 *   host  EXEC    {ARG+, ENV*, CWD?, USER?, TTY?, ROWS?, COLS?}
 *   guest STARTED {PID}  or ERROR
 *   host  STDIN (data), STDIN_EOF, RESIZE {ROWS, COLS}, SIGNAL {SIGNUM}
 *   guest STDOUT, STDERR (data)       (with TTY: only STDOUT)
 *   guest EXIT {EXIT_CODE} or {SIGNUM}  last, after every output byte
 * Put (host -> guest file):
 *   host  PUT   {PATH, MODE, SIZE}
 *   guest READY or ERROR       (the temp file beside PATH is open)
 *   host  DATA* then END
 *   guest DONE {SIZE} or ERROR (fsync'ed and renamed over PATH; SIZE bytes
 *                               received must equal the PUT's SIZE)
 * Get (guest file -> host):
 *   host  GET  {PATH}
 *   guest INFO {SIZE, MODE} then DATA* then END, or ERROR
 * Link: PING {NONCE} -> PONG {NONCE} (channel 0). */
#ifndef EMBER_GUEST_AGENT_PROTO_H
#define EMBER_GUEST_AGENT_PROTO_H

#include <stddef.h>
#include <stdint.h>
#include <string.h>

#define EMBER_GA_MAGIC 0x41474d45u /* "EMGA" */
#define EMBER_GA_VERSION 1u
#define EMBER_GA_HEADER 16u
#define EMBER_GA_MAX_PAYLOAD (1u << 20) /* an EXEC with its arguments */
#define EMBER_GA_MAX_DATA (32u << 10)   /* one data frame */
#define EMBER_GA_WINDOW (256u << 10)    /* per channel and direction */
#define EMBER_GA_MAX_CHANNELS 64u       /* open at once on one link */
#define EMBER_GA_MAX_ARGS 4096u
#define EMBER_GA_MAX_ENV 4096u
#define EMBER_GA_PORT_NAME "org.ember.agent.0"
#define EMBER_GA_VSOCK_PORT 10789u

enum {
  EMBER_GA_T_HELLO = 1,
  EMBER_GA_T_HELLO_ACK = 2,
  EMBER_GA_T_PING = 3,
  EMBER_GA_T_PONG = 4,
  EMBER_GA_T_EXEC = 10,
  EMBER_GA_T_STARTED = 11,
  EMBER_GA_T_STDIN = 12,
  EMBER_GA_T_STDIN_EOF = 13,
  EMBER_GA_T_STDOUT = 14,
  EMBER_GA_T_STDERR = 15,
  EMBER_GA_T_RESIZE = 16,
  EMBER_GA_T_SIGNAL = 17,
  EMBER_GA_T_EXIT = 18,
  EMBER_GA_T_PUT = 20,
  EMBER_GA_T_READY = 21,
  EMBER_GA_T_DATA = 22,
  EMBER_GA_T_END = 23,
  EMBER_GA_T_DONE = 24,
  EMBER_GA_T_GET = 25,
  EMBER_GA_T_INFO = 26,
  EMBER_GA_T_WINDOW = 30,
  EMBER_GA_T_CLOSE = 31,
  EMBER_GA_T_ERROR = 32,
};

/* Record tags. */
enum {
  EMBER_GA_R_VERSION = 1,    /* u32 */
  EMBER_GA_R_NONCE = 2,      /* u64 */
  EMBER_GA_R_AGENT = 3,      /* string: the agent's version */
  EMBER_GA_R_ARG = 10,       /* string, repeated, in order; argv[0] is looked up in PATH */
  EMBER_GA_R_ENV = 11,       /* string "KEY=VALUE", repeated */
  EMBER_GA_R_CWD = 12,       /* string */
  EMBER_GA_R_USER = 13,      /* string: a name, uid, name:group or uid:gid */
  EMBER_GA_R_TTY = 14,       /* u8: 1 for a terminal */
  EMBER_GA_R_ROWS = 15,      /* u16 */
  EMBER_GA_R_COLS = 16,      /* u16 */
  EMBER_GA_R_PID = 17,       /* u32 */
  EMBER_GA_R_EXIT_CODE = 18, /* u32 (0..255) */
  EMBER_GA_R_SIGNUM = 19,    /* u32 */
  EMBER_GA_R_PATH = 20,      /* string, absolute */
  EMBER_GA_R_MODE = 21,      /* u32 permission bits (07777) */
  EMBER_GA_R_SIZE = 22,      /* u64 */
  EMBER_GA_R_BYTES = 23,     /* u32: WINDOW credit */
  EMBER_GA_R_CODE = 24,      /* u32: EMBER_GA_E_* */
  EMBER_GA_R_MSG = 25,       /* string: for people */
};

/* ERROR codes (the host maps them to gRPC codes). */
enum {
  EMBER_GA_E_INVALID = 1,    /* a malformed or refused request: INVALID_ARGUMENT */
  EMBER_GA_E_NOT_FOUND = 2,  /* no such program, file or directory: NOT_FOUND */
  EMBER_GA_E_PERMISSION = 3, /* EACCES/EPERM: PERMISSION_DENIED */
  EMBER_GA_E_NO_USER = 4,    /* unknown user or group: INVALID_ARGUMENT (field user) */
  EMBER_GA_E_BUSY = 5,       /* too many channels or processes: RESOURCE_EXHAUSTED */
  EMBER_GA_E_IO = 6,         /* a read/write failed (ENOSPC...): INTERNAL/RESOURCE_EXHAUSTED */
  EMBER_GA_E_INTERNAL = 7,
};

/* ---- little-endian helpers ---- */
static inline void ember_ga_put16(uint8_t *p, uint16_t v)
{
  p[0] = (uint8_t)v;
  p[1] = (uint8_t)(v >> 8);
}
static inline void ember_ga_put32(uint8_t *p, uint32_t v)
{
  for (int i = 0; i < 4; i++)
    p[i] = (uint8_t)(v >> (8 * i));
}
static inline void ember_ga_put64(uint8_t *p, uint64_t v)
{
  for (int i = 0; i < 8; i++)
    p[i] = (uint8_t)(v >> (8 * i));
}
static inline uint16_t ember_ga_get16(const uint8_t *p) { return (uint16_t)(p[0] | (p[1] << 8)); }
static inline uint32_t ember_ga_get32(const uint8_t *p)
{
  uint32_t v = 0;
  for (int i = 3; i >= 0; i--)
    v = (v << 8) | p[i];
  return v;
}
static inline uint64_t ember_ga_get64(const uint8_t *p)
{
  uint64_t v = 0;
  for (int i = 7; i >= 0; i--)
    v = (v << 8) | p[i];
  return v;
}

/* ---- frame header ---- */
typedef struct ember_ga_hdr {
  uint8_t type;
  uint32_t channel;
  uint32_t length;
} ember_ga_hdr;

static inline void ember_ga_hdr_encode(uint8_t out[EMBER_GA_HEADER], uint8_t type, uint32_t channel,
                                       uint32_t length)
{
  ember_ga_put32(out, EMBER_GA_MAGIC);
  out[4] = type;
  out[5] = 0;
  ember_ga_put16(out + 6, 0);
  ember_ga_put32(out + 8, channel);
  ember_ga_put32(out + 12, length);
}

/* 0 when buf holds a valid header, -1 otherwise (bad magic, flags, reserved
 * or a length over EMBER_GA_MAX_PAYLOAD). */
static inline int ember_ga_hdr_decode(const uint8_t buf[EMBER_GA_HEADER], ember_ga_hdr *h)
{
  if (ember_ga_get32(buf) != EMBER_GA_MAGIC || buf[5] != 0 || ember_ga_get16(buf + 6) != 0)
    return -1;
  h->type = buf[4];
  h->channel = ember_ga_get32(buf + 8);
  h->length = ember_ga_get32(buf + 12);
  return h->length <= EMBER_GA_MAX_PAYLOAD ? 0 : -1;
}

/* ---- records ---- */
/* A bounded record writer: ok turns false (and stays) once cap would be
 * passed; len counts what was written. */
typedef struct ember_ga_wr {
  uint8_t *buf;
  size_t cap, len;
  int ok;
} ember_ga_wr;

static inline void ember_ga_wr_init(ember_ga_wr *w, uint8_t *buf, size_t cap)
{
  w->buf = buf;
  w->cap = cap;
  w->len = 0;
  w->ok = 1;
}
static inline void ember_ga_wr_bytes(ember_ga_wr *w, uint16_t tag, const void *v, size_t n)
{
  if (!w->ok || n > 0xffffffffu || w->cap - w->len < 8 || w->cap - w->len - 8 < n) {
    w->ok = 0;
    return;
  }
  uint8_t *p = w->buf + w->len;
  ember_ga_put16(p, tag);
  ember_ga_put16(p + 2, 0);
  ember_ga_put32(p + 4, (uint32_t)n);
  if (n > 0)
    memcpy(p + 8, v, n);
  w->len += 8 + n;
}
static inline void ember_ga_wr_str(ember_ga_wr *w, uint16_t tag, const char *s)
{
  ember_ga_wr_bytes(w, tag, s, strlen(s));
}
static inline void ember_ga_wr_u8(ember_ga_wr *w, uint16_t tag, uint8_t v)
{
  ember_ga_wr_bytes(w, tag, &v, 1);
}
static inline void ember_ga_wr_u16(ember_ga_wr *w, uint16_t tag, uint16_t v)
{
  uint8_t b[2];
  ember_ga_put16(b, v);
  ember_ga_wr_bytes(w, tag, b, 2);
}
static inline void ember_ga_wr_u32(ember_ga_wr *w, uint16_t tag, uint32_t v)
{
  uint8_t b[4];
  ember_ga_put32(b, v);
  ember_ga_wr_bytes(w, tag, b, 4);
}
static inline void ember_ga_wr_u64(ember_ga_wr *w, uint16_t tag, uint64_t v)
{
  uint8_t b[8];
  ember_ga_put64(b, v);
  ember_ga_wr_bytes(w, tag, b, 8);
}

/* A record reader over one payload. */
typedef struct ember_ga_rd {
  const uint8_t *buf;
  size_t len, pos;
} ember_ga_rd;

static inline void ember_ga_rd_init(ember_ga_rd *r, const uint8_t *buf, size_t len)
{
  r->buf = buf;
  r->len = len;
  r->pos = 0;
}
/* The next record: 1 with *tag, *val, *n set; 0 at the end; -1 when the
 * payload is malformed (a truncated record or a non-zero pad). */
static inline int ember_ga_rd_next(ember_ga_rd *r, uint16_t *tag, const uint8_t **val, size_t *n)
{
  if (r->pos == r->len)
    return 0;
  if (r->len - r->pos < 8)
    return -1;
  const uint8_t *p = r->buf + r->pos;
  uint32_t l = ember_ga_get32(p + 4);
  if (ember_ga_get16(p + 2) != 0 || l > r->len - r->pos - 8)
    return -1;
  *tag = ember_ga_get16(p);
  *val = p + 8;
  *n = l;
  r->pos += 8 + (size_t)l;
  return 1;
}
/* Fixed-size integer values: -1 when n is not the size the tag needs. */
static inline int ember_ga_val_u8(const uint8_t *v, size_t n, uint8_t *out)
{
  if (n != 1)
    return -1;
  *out = v[0];
  return 0;
}
static inline int ember_ga_val_u16(const uint8_t *v, size_t n, uint16_t *out)
{
  if (n != 2)
    return -1;
  *out = ember_ga_get16(v);
  return 0;
}
static inline int ember_ga_val_u32(const uint8_t *v, size_t n, uint32_t *out)
{
  if (n != 4)
    return -1;
  *out = ember_ga_get32(v);
  return 0;
}
static inline int ember_ga_val_u64(const uint8_t *v, size_t n, uint64_t *out)
{
  if (n != 8)
    return -1;
  *out = ember_ga_get64(v);
  return 0;
}
/* A string value: -1 when it holds a NUL byte. */
static inline int ember_ga_val_str_ok(const uint8_t *v, size_t n)
{
  return memchr(v, 0, n) == NULL ? 0 : -1;
}

#endif
