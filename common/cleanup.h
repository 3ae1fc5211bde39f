/* cleanup.h: scope-bound cleanup for locals (GCC/Clang cleanup attribute).
 *
 *   cleanup_free char *p = cmn_strdup(s);   freed on every return path
 *   cleanup_close int fd = open(...);       closed unless < 0
 *
 * To hand ownership out, steal it: `return steal_ptr(p);`. */
#ifndef EMBER_COMMON_CLEANUP_H
#define EMBER_COMMON_CLEANUP_H

#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>
#include <dirent.h>

static inline void cmn__freep(void *p) { free(*(void **)p); }
static inline void cmn__closep(int *fd)
{
  if (*fd >= 0)
    close(*fd);
}
static inline void cmn__fclosep(FILE **f)
{
  if (*f != NULL)
    fclose(*f);
}
static inline void cmn__closedirp(DIR **d)
{
  if (*d != NULL)
    closedir(*d);
}

#define cleanup_free __attribute__((cleanup(cmn__freep)))
#define cleanup_close __attribute__((cleanup(cmn__closep)))
#define cleanup_fclose __attribute__((cleanup(cmn__fclosep)))
#define cleanup_closedir __attribute__((cleanup(cmn__closedirp)))

static inline void *cmn__steal(void **pp)
{
  void *p = *pp;
  *pp = NULL;
  return p;
}
#define steal_ptr(p) cmn__steal((void **)&(p))
static inline int cmn__steal_fd(int *fd)
{
  int r = *fd;
  *fd = -1;
  return r;
}
#define steal_fd(fd) cmn__steal_fd(&(fd))

#endif
