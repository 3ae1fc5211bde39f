/* net.c: the guest's network set-up, without DHCP: the loopback interface (a
 * container expects 127.0.0.1 to work), then each interface the boot config
 * names by MAC (NET records: address, prefix, MTU, default route) and
 * /etc/resolv.conf from its DNS records. Plain ioctls on an AF_INET socket,
 * no library. Nothing here stops the boot: a failure is logged and the
 * workload runs without that interface. */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <net/if.h>
#include <net/route.h>
#include <netinet/in.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <time.h>
#include <unistd.h>

#include "guest/init/init.h"

#define NET_WAIT_MS 2000 /* for all the NICs to appear, from the first look */
#define NET_POLL_MS 20
#define NET_RESOLV "/etc/resolv.conf"
#define NET_RESOLV_TMP "/etc/.resolv.conf.ember-init"

int init_net_loopback(void)
{
  int fd = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
  if (fd < 0) {
    init_log("loopback: socket: %m");
    return -1;
  }
  struct ifreq ifr;
  memset(&ifr, 0, sizeof(ifr));
  snprintf(ifr.ifr_name, sizeof(ifr.ifr_name), "lo");
  int rc = ioctl(fd, SIOCGIFFLAGS, &ifr);
  if (rc == 0) {
    ifr.ifr_flags |= IFF_UP;
    rc = ioctl(fd, SIOCSIFFLAGS, &ifr);
  }
  if (rc < 0)
    init_log("loopback up: %m");
  close(fd);
  return rc < 0 ? -1 : 0;
}

static int64_t net_now_ms(void)
{
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void net_ipv4_text(uint32_t a, char out[16])
{
  snprintf(out, 16, "%u.%u.%u.%u", a >> 24, a >> 16 & 0xFFu, a >> 8 & 0xFFu, a & 0xFFu);
}

static void net_mac_text(const uint8_t m[6], char out[18])
{
  snprintf(out, 18, "%02x:%02x:%02x:%02x:%02x:%02x", m[0], m[1], m[2], m[3], m[4], m[5]);
}

/* 1 when /sys/class/net/<name>/address holds mac. */
static int net_if_has_mac(const char *name, const uint8_t mac[6])
{
  char path[sizeof("/sys/class/net//address") + 256]; /* d_name is up to 255 bytes */
  snprintf(path, sizeof(path), "/sys/class/net/%s/address", name);
  int fd = open(path, O_RDONLY | O_CLOEXEC);
  if (fd < 0)
    return 0;
  char buf[32];
  ssize_t n = read(fd, buf, sizeof(buf));
  close(fd);
  if (n < 17)
    return 0;
  uint8_t got[6];
  const char *p = buf;
  return ember_bootcfg_parse_mac(&p, buf + n, got) == 0 && memcmp(got, mac, 6) == 0;
}

/* Finds the interface with that MAC now; 0 and its name, or -1. */
static int net_find_if(const uint8_t mac[6], char name[IFNAMSIZ])
{
  DIR *d = opendir("/sys/class/net");
  if (d == NULL)
    return -1;
  int found = -1;
  struct dirent *e;
  while (found < 0 && (e = readdir(d)) != NULL) {
    size_t len = strlen(e->d_name);
    if (e->d_name[0] == '.' || len >= IFNAMSIZ)
      continue;
    if (net_if_has_mac(e->d_name, mac)) {
      memcpy(name, e->d_name, len + 1);
      found = 0;
    }
  }
  closedir(d);
  return found;
}

static void net_sin(struct sockaddr *sa, uint32_t addr)
{
  struct sockaddr_in sin;
  memset(&sin, 0, sizeof(sin));
  sin.sin_family = AF_INET;
  sin.sin_addr.s_addr = htonl(addr);
  memcpy(sa, &sin, sizeof(sin));
}

/* MTU, address, netmask, up, default route (metric = the record's rank, so
 * the first interface with a gateway is the default). 0 or -1 (logged). */
static int net_if_configure(int fd, const char *ifname, const char *mac, const ember_bootcfg_net *n,
                            unsigned metric)
{
  struct ifreq ifr;
  const char *step;
  memset(&ifr, 0, sizeof(ifr));
  snprintf(ifr.ifr_name, sizeof(ifr.ifr_name), "%s", ifname);
  if (n->mtu != 0) {
    ifr.ifr_mtu = (int)n->mtu;
    step = "set MTU";
    if (ioctl(fd, SIOCSIFMTU, &ifr) < 0)
      goto fail;
  }
  net_sin(&ifr.ifr_addr, n->addr);
  step = "set address";
  if (ioctl(fd, SIOCSIFADDR, &ifr) < 0)
    goto fail;
  net_sin(&ifr.ifr_netmask, ember_bootcfg_mask(n->prefix));
  step = "set netmask";
  if (ioctl(fd, SIOCSIFNETMASK, &ifr) < 0)
    goto fail;
  step = "bring up";
  if (ioctl(fd, SIOCGIFFLAGS, &ifr) < 0)
    goto fail;
  ifr.ifr_flags |= IFF_UP;
  if (ioctl(fd, SIOCSIFFLAGS, &ifr) < 0)
    goto fail;
  if (n->gateway != 0) {
    struct rtentry rt;
    char dev[IFNAMSIZ];
    memset(&rt, 0, sizeof(rt));
    snprintf(dev, sizeof(dev), "%s", ifname);
    net_sin(&rt.rt_dst, 0);
    net_sin(&rt.rt_genmask, 0);
    net_sin(&rt.rt_gateway, n->gateway);
    rt.rt_flags = RTF_UP | RTF_GATEWAY;
    rt.rt_metric = (short)(metric + 1); /* the kernel stores metric - 1 */
    rt.rt_dev = dev;
    step = "add the default route";
    if (ioctl(fd, SIOCADDRT, &rt) < 0 && errno != EEXIST)
      goto fail;
  }
  return 0;
fail:
  init_log("net %s %s: %s: %m", ifname, mac, step);
  return -1;
}

/* /etc/resolv.conf from the DNS records, replaced atomically (a symlink there
 * is replaced, not followed). Only on a writable root. */
static void net_resolv_conf(const init_config *c)
{
  if (c->ndns == 0)
    return;
  struct statvfs sv;
  if (statvfs("/", &sv) == 0 && (sv.f_flag & ST_RDONLY) != 0) {
    init_log("dns: the root filesystem is read-only: " NET_RESOLV " not written");
    return;
  }
  char text[64 + EMBER_BOOTCFG_MAX_DNS * 32];
  size_t len = (size_t)snprintf(text, sizeof(text), "# from ember's boot config\n");
  for (size_t i = 0; i < c->ndns && len < sizeof(text); i++) {
    char a[16];
    net_ipv4_text(c->dns[i], a);
    len += (size_t)snprintf(text + len, sizeof(text) - len, "nameserver %s\n", a);
  }
  if (len >= sizeof(text))
    len = sizeof(text) - 1;
  int fd = open(NET_RESOLV_TMP, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC | O_NOFOLLOW, 0644);
  if (fd < 0) {
    if (errno == EROFS)
      init_log("dns: the root filesystem is read-only: " NET_RESOLV " not written");
    else
      init_log("dns: " NET_RESOLV " not written: create %s: %m", NET_RESOLV_TMP);
    return;
  }
  ssize_t w = write(fd, text, len);
  int ok = w == (ssize_t)len;
  if (!ok && w >= 0)
    errno = EIO;
  if (ok && fchmod(fd, 0644) < 0)
    ok = 0;
  int e = errno;
  if (close(fd) < 0 && ok) {
    ok = 0;
    e = errno;
  }
  if (ok && rename(NET_RESOLV_TMP, NET_RESOLV) < 0) {
    ok = 0;
    e = errno;
  }
  if (!ok) {
    unlink(NET_RESOLV_TMP);
    errno = e;
    init_log("dns: " NET_RESOLV " not written: %m");
    return;
  }
  init_log("dns: %zu nameserver%s in " NET_RESOLV, c->ndns, c->ndns == 1 ? "" : "s");
}

int init_net_configure(const init_config *c)
{
  for (size_t i = 0; i < c->nnotes; i++)
    init_log("%s", c->notes[i]);
  if (c->notes_dropped > 0)
    init_log("%zu more network records skipped", c->notes_dropped);
  int failures = 0;
  if (c->nnet > 0) {
    int fd = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    if (fd < 0) {
      init_log("net: socket: %m");
      return (int)c->nnet;
    }
    int64_t deadline = net_now_ms() + NET_WAIT_MS;
    for (size_t i = 0; i < c->nnet; i++) {
      const ember_bootcfg_net *n = &c->net[i];
      char ifname[IFNAMSIZ], mac[18], addr[16], gw[16] = "-", mtu[16] = "";
      net_mac_text(n->mac, mac);
      while (net_find_if(n->mac, ifname) < 0) {
        if (net_now_ms() >= deadline) {
          ifname[0] = '\0';
          break;
        }
        struct timespec ts = {0, NET_POLL_MS * 1000000L};
        nanosleep(&ts, NULL);
      }
      if (ifname[0] == '\0') {
        init_log("net: no interface with MAC %s (after %d ms): skipped", mac, NET_WAIT_MS);
        failures++;
        continue;
      }
      if (net_if_configure(fd, ifname, mac, n, (unsigned)i) < 0) {
        failures++;
        continue;
      }
      net_ipv4_text(n->addr, addr);
      if (n->gateway != 0)
        net_ipv4_text(n->gateway, gw);
      if (n->mtu != 0)
        snprintf(mtu, sizeof(mtu), " mtu %u", n->mtu);
      init_log("net %s %s %s/%u via %s%s", ifname, mac, addr, n->prefix, gw, mtu);
    }
    close(fd);
  }
  net_resolv_conf(c);
  return failures;
}
