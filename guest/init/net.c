/* net.c: the guest's network set-up. Today the loopback interface only (a
 * container expects 127.0.0.1 to work); NIC addresses come with the networking
 * issue, as optional boot config records (guest/bootcfg_format.h). */
#include <net/if.h>
#include <stdio.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <unistd.h>

#include "guest/init/init.h"

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
