/* tap.c: persistent TAP devices through /dev/net/tun (see tap.h). */
#include "agent/net/tap.h"
#include "common/cleanup.h"

#include <errno.h>
#include <fcntl.h>
#include <linux/if_tun.h>
#include <net/if.h>
#include <stdio.h>
#include <string.h>
#include <sys/ioctl.h>

#define TUN_DEVICE "/dev/net/tun"

int net_tap_ensure(net_nl *nl, const char *name, cmn_error *err)
{
  net_link_info li;
  int r = net_link_get(nl, name, &li, err);
  if (r < 0)
    return -1;
  if (r == 1 && strcmp(li.kind, "tun") != 0)
    return cmn_err_set(err, CMN_ALREADY_EXISTS,
                       "link %s exists and is a %s, not a TAP: remove that link", name,
                       li.kind[0] != '\0' ? li.kind : "link without a kind");
  /* Attaching to an existing TAP with the same flags succeeds too, so one
   * path serves both; the TAP then keeps being persistent. */
  cleanup_close int fd = open(TUN_DEVICE, O_RDWR | O_CLOEXEC);
  if (fd < 0)
    return cmn_err_errno(err, errno == ENOENT ? CMN_FAILED_PRECONDITION : CMN_UNAVAILABLE, errno,
                         "creating TAP %s: opening " TUN_DEVICE
                         " (is the tun module loaded and the device present?)",
                         name);
  struct ifreq ifr;
  memset(&ifr, 0, sizeof(ifr));
  snprintf(ifr.ifr_name, sizeof(ifr.ifr_name), "%s", name);
  ifr.ifr_flags = IFF_TAP | IFF_NO_PI | IFF_VNET_HDR;
  if (ioctl(fd, TUNSETIFF, &ifr) < 0) {
    int e = errno;
    if (r == 1 && e == EBUSY)
      return 0; /* an existing TAP a VMM holds open */
    if (r == 1 && e == EINVAL)
      return cmn_err_set(err, CMN_ALREADY_EXISTS,
                         "link %s exists and is a TUN device or a multi-queue TAP, not the TAP "
                         "ember makes: remove that link",
                         name);
    return cmn_err_errno(err, e == EPERM ? CMN_PERMISSION_DENIED : CMN_INTERNAL, e,
                         "creating TAP %s (TUNSETIFF)", name);
  }
  if (ioctl(fd, TUNSETPERSIST, 1) < 0)
    return cmn_err_errno(err, errno == EPERM ? CMN_PERMISSION_DENIED : CMN_INTERNAL, errno,
                         "making TAP %s persistent (TUNSETPERSIST)", name);
  return r == 1 ? 0 : 1;
}

int net_tap_delete(net_nl *nl, const char *name, cmn_error *err)
{
  return net_link_delete(nl, name, err);
}
