/* hash.h: the one non-cryptographic string hash of the tree (FNV-1a, 64 bit),
 * for hash tables and for tying opaque tokens to their inputs. Not for
 * anything an attacker may want to collide on purpose. */
#ifndef EMBER_COMMON_HASH_H
#define EMBER_COMMON_HASH_H

#include <stdint.h>

/* FNV-1a 64 of the NUL-terminated s ("" -> 0xcbf29ce484222325). */
static inline uint64_t cmn_hash_str(const char *s)
{
  uint64_t h = 14695981039346656037ULL;
  for (; *s; s++) {
    h ^= (unsigned char)*s;
    h *= 1099511628211ULL;
  }
  return h;
}

#endif
