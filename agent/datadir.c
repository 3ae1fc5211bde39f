/* datadir.c: the data dir's format file (see datadir.h). */
#include "agent/datadir.h"
#include "common/cleanup.h"
#include "common/files.h"
#include "common/log.h"
#include "common/mem.h"

#include <cjson/cJSON.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

/* Reads format.json: *format and *writer (caller frees); < 0 when it is there
 * but unreadable. *format = 0 when there is no file. */
static int datadir_read(const char *path, int *format, char **writer, cmn_error *err)
{
  *format = 0;
  *writer = NULL;
  if (!cmn_path_exists(path))
    return 0;
  cleanup_free char *text = NULL;
  size_t len = 0;
  if (cmn_file_read(path, 64 * 1024, &text, &len, err) < 0)
    return cmn_err_prefix(err, "data dir format");
  cJSON *o = cJSON_Parse(text);
  const cJSON *f = cJSON_GetObjectItemCaseSensitive(o, "format");
  const cJSON *w = cJSON_GetObjectItemCaseSensitive(o, "written_by");
  if (!cJSON_IsNumber(f) || f->valuedouble < 1 || f->valuedouble > 1e6 ||
      fabs(modf(f->valuedouble, &(double){0})) > 0) {
    cJSON_Delete(o);
    return cmn_err_set(err, CMN_FAILED_PRECONDITION,
                       "%s is not a data dir format file this emberd understands; "
                       "refusing to start rather than misread the data dir",
                       path);
  }
  *format = (int)f->valuedouble;
  *writer = cmn_strdup(cJSON_IsString(w) ? w->valuestring : "an unknown emberd");
  cJSON_Delete(o);
  return 0;
}

int agent_datadir_check(const char *data_dir, const char *emberd_version, int *found,
                        cmn_error *err)
{
  cleanup_free char *path = cmn_asprintf("%s/%s", data_dir, AGENT_DATADIR_FORMAT_FILE);
  cleanup_free char *instances = cmn_asprintf("%s/instances", data_dir);
  cleanup_free char *writer = NULL;
  int format = 0;
  if (datadir_read(path, &format, &writer, err) < 0)
    return -1;
  if (format == 0 && cmn_is_dir(instances))
    format = 1; /* the first release wrote no format file */
  if (found != NULL)
    *found = format;
  if (format > AGENT_DATADIR_FORMAT)
    return cmn_err_set(err, CMN_FAILED_PRECONDITION,
                       "data dir %s has format %d, written by %s; this emberd %s reads "
                       "formats 1 to %d: refusing to start (a downgrade would misread it); "
                       "run that emberd or a newer one",
                       data_dir, format, writer ? writer : "a newer emberd", emberd_version,
                       AGENT_DATADIR_FORMAT);
  if (format == AGENT_DATADIR_FORMAT && writer != NULL && strcmp(writer, emberd_version) == 0)
    return 0;
  if (format != 0 && format != AGENT_DATADIR_FORMAT)
    cmn_info(NULL, "startup", "data dir %s: upgrading format %d (%s) to %d", data_dir, format,
             writer ? writer : "first release", AGENT_DATADIR_FORMAT);
  cJSON *o = cJSON_CreateObject();
  cJSON_AddNumberToObject(o, "format", AGENT_DATADIR_FORMAT);
  cJSON_AddStringToObject(o, "written_by", emberd_version);
  char *text = cJSON_Print(o);
  cJSON_Delete(o);
  if (text == NULL)
    abort();
  int rc = cmn_file_write_atomic(path, text, strlen(text), 0640, err);
  free(text);
  return rc < 0 ? cmn_err_prefix(err, "record the data dir format") : 0;
}
