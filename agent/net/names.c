/* names.c: names of ember's host objects from an endpoint key (see net.h). */
#include "agent/net/net.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

bool net_key_valid(const char *key)
{
  if (key == NULL || strlen(key) != NET_KEY_LEN)
    return false;
  for (size_t i = 0; i < NET_KEY_LEN; i++) {
    char c = key[i];
    if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f')))
      return false;
  }
  return true;
}

/* An invalid key gives an empty name, which no lookup matches. */
static void make_name(const char *prefix, const char *key, char *out, size_t size)
{
  if (!net_key_valid(key)) {
    out[0] = '\0';
    return;
  }
  snprintf(out, size, "%s%s", prefix, key);
}

void net_tap_name(const char *key, char out[NET_IFNAME_MAX])
{
  make_name(NET_TAP_PREFIX, key, out, NET_IFNAME_MAX);
}

void net_veth_name(const char *key, char out[NET_IFNAME_MAX])
{
  make_name(NET_VETH_PREFIX, key, out, NET_IFNAME_MAX);
}

void net_netns_name(const char *key, char out[NET_NETNS_NAME_MAX])
{
  make_name(NET_NETNS_PREFIX, key, out, NET_NETNS_NAME_MAX);
}

bool net_name_key(const char *name, const char *prefix, char *key_out)
{
  if (name == NULL || prefix == NULL)
    return false;
  size_t pl = strlen(prefix);
  if (strncmp(name, prefix, pl) != 0 || !net_key_valid(name + pl))
    return false;
  if (key_out != NULL) {
    memcpy(key_out, name + pl, NET_KEY_LEN);
    key_out[NET_KEY_LEN] = '\0';
  }
  return true;
}

void net_names_free(char **names, size_t n)
{
  if (names == NULL)
    return;
  for (size_t i = 0; i < n; i++)
    free(names[i]);
  free(names);
}
