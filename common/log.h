/* log.h: JSON-lines logging to stderr.
 *
 * Every line is one JSON object: {"ts":..., "level":..., "instance":..., "op":...,
 * "msg":...}; "instance" and "op" appear when the caller has them. The level and
 * sink are set once by cmn_log_setup() before any thread starts and are read-only
 * afterwards. */
#ifndef EMBER_COMMON_LOG_H
#define EMBER_COMMON_LOG_H

enum cmn_log_level {
  CMN_LOG_DEBUG = 0,
  CMN_LOG_INFO = 1,
  CMN_LOG_WARN = 2,
  CMN_LOG_ERROR = 3,
};

/* Call once, before threads start. fd is where lines go (usually 2). */
void cmn_log_setup(int level, int fd);
/* Parses "debug", "info", "warn", "error"; returns -1 for anything else. */
int cmn_log_level_parse(const char *s);
/* instance and op may be NULL. */
void cmn_log(int level, const char *instance, const char *op, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

#define cmn_debug(inst, op, ...) cmn_log(CMN_LOG_DEBUG, inst, op, __VA_ARGS__)
#define cmn_info(inst, op, ...) cmn_log(CMN_LOG_INFO, inst, op, __VA_ARGS__)
#define cmn_warn(inst, op, ...) cmn_log(CMN_LOG_WARN, inst, op, __VA_ARGS__)
#define cmn_error_log(inst, op, ...) cmn_log(CMN_LOG_ERROR, inst, op, __VA_ARGS__)

#endif
