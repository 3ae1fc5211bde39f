/* mkbootcfg.c: test driver of the boot config writer (agent/image/bootcfg.c):
 *   mkbootcfg OUT [-e KEY=VALUE]... [-w WORKDIR] [-u USER] [-H HOSTNAME]
 *             [-r ROOTDEV] [-n "MAC ADDR/PREFIX GATEWAY|-[ mtu=N]"]...
 *             [-d NAMESERVER]... -- ARG...
 * writes OUT with img_bootcfg_write, exactly what emberd will write. -n adds a
 * network interface (img_bootcfg_net; the text is only split here, the writer
 * validates it), -d a nameserver. */
#include <arpa/inet.h>
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "agent/image/bootcfg.h"

#define MK_MAX 64 /* more than the writer takes, so that it refuses */

static int mk_ipv4(const char *s, uint32_t *out)
{
  struct in_addr a;
  if (inet_pton(AF_INET, s, &a) != 1)
    return -1;
  *out = ntohl(a.s_addr);
  return 0;
}

static int mk_uint(const char *s, unsigned *out)
{
  char *end = NULL;
  errno = 0;
  unsigned long v = strtoul(s, &end, 10);
  if (errno != 0 || end == s || *end != '\0' || v > 1000000)
    return -1;
  *out = (unsigned)v;
  return 0;
}

/* "MAC ADDR/PREFIX GW|-[ mtu=N]" into n; text is modified (split in place). */
static int mk_net(char *text, img_bootcfg_net *n)
{
  char *save = NULL;
  char *mac = strtok_r(text, " ", &save);
  char *addr = strtok_r(NULL, " ", &save);
  char *gw = strtok_r(NULL, " ", &save);
  char *mtu = strtok_r(NULL, " ", &save);
  if (mac == NULL || addr == NULL || gw == NULL || strtok_r(NULL, " ", &save) != NULL)
    return -1;
  char *slash = strchr(addr, '/');
  if (slash == NULL)
    return -1;
  *slash = '\0';
  memset(n, 0, sizeof(*n));
  n->mac = mac;
  if (mk_ipv4(addr, &n->addr) < 0 || mk_uint(slash + 1, &n->prefix) < 0)
    return -1;
  if (strcmp(gw, "-") != 0 && mk_ipv4(gw, &n->gateway) < 0)
    return -1;
  if (mtu != NULL && (strncmp(mtu, "mtu=", 4) != 0 || mk_uint(mtu + 4, &n->mtu) < 0))
    return -1;
  return 0;
}

int main(int argc, char **argv)
{
  if (argc < 2) {
    fprintf(stderr, "usage: mkbootcfg OUT [-e K=V]... [-w DIR] [-u USER] [-H HOST] "
                    "[-r DEV] [-n 'MAC ADDR/PREFIX GW|-[ mtu=N]']... [-d DNS]... -- ARG...\n");
    return 2;
  }
  const char *out = argv[1];
  const char **env = calloc((size_t)argc, sizeof(*env));
  size_t envc = 0;
  img_bootcfg c = {0};
  img_bootcfg_net net[MK_MAX];
  uint32_t dns[MK_MAX];
  int opt;
  optind = 2;
  while ((opt = getopt(argc, argv, "e:w:u:H:r:n:d:")) != -1) {
    switch (opt) {
    case 'n':
      if (c.nnet >= MK_MAX || mk_net(optarg, &net[c.nnet]) < 0) {
        fprintf(stderr, "mkbootcfg: -n wants 'MAC ADDR/PREFIX GW|-[ mtu=N]' (at most %d)\n",
                MK_MAX);
        return 2;
      }
      c.nnet++;
      break;
    case 'd':
      if (c.ndns >= MK_MAX || mk_ipv4(optarg, &dns[c.ndns]) < 0) {
        fprintf(stderr, "mkbootcfg: -d wants an IPv4 address (at most %d)\n", MK_MAX);
        return 2;
      }
      c.ndns++;
      break;
    case 'e':
      env[envc++] = optarg;
      break;
    case 'w':
      c.workdir = optarg;
      break;
    case 'u':
      c.user = optarg;
      break;
    case 'H':
      c.hostname = optarg;
      break;
    case 'r':
      c.root = optarg;
      break;
    default:
      return 2;
    }
  }
  c.argv = (const char *const *)(argv + optind);
  c.argc = (size_t)(argc - optind);
  c.env = env;
  c.envc = envc;
  c.net = net;
  c.dns = dns;
  cmn_error err = {0};
  int rc = img_bootcfg_write(&c, out, &err);
  free(env);
  if (rc < 0) {
    fprintf(stderr, "mkbootcfg: %s\n", err.msg);
    return 1;
  }
  return 0;
}
