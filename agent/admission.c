/* admission.c: does a guest fit this host? (see admission.h, docs/capacity.md) */
#include "agent/admission.h"
#include "common/cleanup.h"
#include "common/files.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

void agent_admission_defaults(agent_admission_config *c)
{
  c->mem_overcommit = AGENT_ADMIT_DEFAULT_MEM_OVERCOMMIT;
  c->mem_reserved_mib = AGENT_ADMIT_DEFAULT_MEM_RESERVED_MIB;
  c->vcpu_overcommit = AGENT_ADMIT_DEFAULT_VCPU_OVERCOMMIT;
  c->disk_reserve_mib = AGENT_ADMIT_DEFAULT_DISK_RESERVE_MIB;
}

static int adm_meminfo_total_mib(uint64_t *out, cmn_error *err)
{
  cleanup_fclose FILE *f = fopen("/proc/meminfo", "re");
  if (f == NULL)
    return cmn_err_errno(err, CMN_INTERNAL, errno, "open /proc/meminfo");
  char line[256];
  while (fgets(line, sizeof line, f) != NULL) {
    unsigned long long kib = 0;
    if (sscanf(line, "MemTotal: %llu kB", &kib) == 1) {
      *out = kib / 1024;
      return 0;
    }
  }
  return cmn_err_set(err, CMN_INTERNAL, "/proc/meminfo has no MemTotal line");
}

int agent_host_probe(const char *data_dir, agent_host_figures *out, cmn_error *err)
{
  memset(out, 0, sizeof *out);
  if (adm_meminfo_total_mib(&out->mem_total_mib, err) < 0)
    return -1;
  long n = sysconf(_SC_NPROCESSORS_ONLN);
  out->cpus = n > 0 ? (unsigned)n : 1;
  cmn_fs_space sp;
  if (cmn_fs_space_of(data_dir, false, &sp, err) < 0)
    return -1;
  out->disk_free_mib = sp.free_bytes >> 20;
  out->disk_total_mib = sp.total_bytes >> 20;
  cmn_fs_space_free(&sp);
  return 0;
}

static const char *adm_point_name(agent_admit_point p)
{
  return p == AGENT_ADMIT_CREATE ? "create" : p == AGENT_ADMIT_START ? "start" : "restore";
}

int agent_admit(const agent_admission_config *cfg, const agent_host_figures *host,
                const agent_usage *used, const agent_admit_request *req, cmn_error *err)
{
  static const agent_usage none = {0};
  bool alone = req->point == AGENT_ADMIT_CREATE;
  const agent_usage *u = alone ? &none : used;
  const char *name = req->name != NULL ? req->name : "the instance";
  const char *what = adm_point_name(req->point);

  /* RAM: (MemTotal - reserved) x overcommit, less what running guests hold. */
  uint64_t usable =
      host->mem_total_mib > cfg->mem_reserved_mib ? host->mem_total_mib - cfg->mem_reserved_mib : 0;
  uint64_t mem_cap = (uint64_t)((double)usable * cfg->mem_overcommit);
  uint64_t mem_left = mem_cap > u->mem_mib ? mem_cap - u->mem_mib : 0;
  if (req->memory_mib > mem_left)
    return cmn_err_set(err, CMN_RESOURCE_EXHAUSTED,
                       "cannot %s %s: it needs %llu MiB of RAM; this host admits %llu MiB "
                       "(%llu MiB total - %llu MiB reserved for the host, x %.2f overcommit, "
                       "%llu MiB already committed to running guests)",
                       what, name, (unsigned long long)req->memory_mib,
                       (unsigned long long)mem_left, (unsigned long long)host->mem_total_mib,
                       (unsigned long long)cfg->mem_reserved_mib, cfg->mem_overcommit,
                       (unsigned long long)u->mem_mib);

  /* vCPUs: online CPUs x overcommit, less what running guests hold. */
  unsigned cpus = host->cpus > 0 ? host->cpus : 1;
  uint64_t cpu_cap = (uint64_t)((double)cpus * cfg->vcpu_overcommit);
  uint64_t cpu_left = cpu_cap > u->vcpus ? cpu_cap - u->vcpus : 0;
  if (req->vcpus > cpu_left)
    return cmn_err_set(err, CMN_RESOURCE_EXHAUSTED,
                       "cannot %s %s: it needs %u vCPUs; this host admits %llu (%u online "
                       "CPUs x %.2f overcommit, %u vCPUs already committed to running guests)",
                       what, name, req->vcpus, (unsigned long long)cpu_left, cpus,
                       cfg->vcpu_overcommit, u->vcpus);

  /* Disk: what the operation writes plus the reserve kept for state files.
   * At create the guest's RAM file must fit the filesystem at all. */
  uint64_t disk_need = req->disk_mib + cfg->disk_reserve_mib;
  uint64_t disk_have = alone ? host->disk_total_mib : host->disk_free_mib;
  /* A filesystem that reports no size at all (ramfs) cannot be judged here;
   * the RAM-file reservation then decides (and refuses one that cannot
   * reserve). */
  if (host->disk_total_mib > 0 && disk_need > disk_have)
    return cmn_err_set(err, CMN_RESOURCE_EXHAUSTED,
                       "cannot %s %s: it needs %llu MiB in the data dir (%llu MiB guest RAM "
                       "file + %llu MiB reserve for state files); its filesystem has %llu MiB "
                       "%s",
                       what, name, (unsigned long long)disk_need, (unsigned long long)req->disk_mib,
                       (unsigned long long)cfg->disk_reserve_mib, (unsigned long long)disk_have,
                       alone ? "in all" : "free");
  return 0;
}
