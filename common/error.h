/* error.h: the one error contract of ember.
 *
 * A function that can fail returns < 0 (or NULL) and fills a cmn_error with a
 * code and a message a person can act on. Callers add context on the way up
 * with cmn_err_prefix(). Codes are the gRPC status codes so that the RPC layer
 * turns an error into a status in one place without a table. */
#ifndef EMBER_COMMON_ERROR_H
#define EMBER_COMMON_ERROR_H

#include <stddef.h>

enum cmn_code {
  CMN_OK = 0,
  CMN_CANCELLED = 1,
  CMN_UNKNOWN = 2,
  CMN_INVALID_ARGUMENT = 3,
  CMN_DEADLINE_EXCEEDED = 4,
  CMN_NOT_FOUND = 5,
  CMN_ALREADY_EXISTS = 6,
  CMN_PERMISSION_DENIED = 7,
  CMN_RESOURCE_EXHAUSTED = 8,
  CMN_FAILED_PRECONDITION = 9,
  CMN_ABORTED = 10,
  CMN_OUT_OF_RANGE = 11,
  CMN_UNIMPLEMENTED = 12,
  CMN_INTERNAL = 13,
  CMN_UNAVAILABLE = 14,
  CMN_DATA_LOSS = 15,
};

#define CMN_ERR_MSG_MAX 1024
#define CMN_ERR_DETAIL_MAX 128

/* Besides code and message, an error may say what a client can act on; the
 * server sends it as google.rpc error details (docs/api.md):
 *  - field: for INVALID_ARGUMENT, the path of the request field at fault
 *    ("spec.vcpus", "labels", "page_token") -> BadRequest.FieldViolation;
 *  - precondition + subject: for FAILED_PRECONDITION, the kind of condition
 *    ("STATE", "HYPERVISOR") and what it is about ("instances/i-...")
 *    -> PreconditionFailure.Violation (description: the message).
 * Empty strings when unknown. cmn_err_set/cmn_err_errno clear them;
 * cmn_err_prefix keeps them. */
typedef struct cmn_error {
  int code;                  /* enum cmn_code; CMN_OK when unset */
  char msg[CMN_ERR_MSG_MAX]; /* always NUL-terminated */
  char field[CMN_ERR_DETAIL_MAX];
  char precondition[CMN_ERR_DETAIL_MAX];
  char subject[CMN_ERR_DETAIL_MAX];
} cmn_error;

/* Sets code and message; returns -1 so callers can `return cmn_err_set(...)`. */
int cmn_err_set(cmn_error *err, int code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
/* Like cmn_err_set, with ": cmn_strerror(errnum)" appended. ENOSPC and EDQUOT
 * always give CMN_RESOURCE_EXHAUSTED, whatever code the caller passed. */
int cmn_err_errno(cmn_error *err, int code, int errnum, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
/* The description of an errno value, thread-safe (strerror is banned: it may
 * share a buffer across threads). Never NULL. */
const char *cmn_strerror(int errnum);
/* Prepends "context: " to the message; keeps the code. Returns -1. */
int cmn_err_prefix(cmn_error *err, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* Names the request field at fault (a BadRequest field path). Returns -1. */
int cmn_err_field(cmn_error *err, const char *field);
/* Names the failed precondition: its type and subject. Returns -1. */
int cmn_err_precondition(cmn_error *err, const char *type, const char *subject);
/* Clears an error back to CMN_OK. */
void cmn_err_clear(cmn_error *err);
/* Name of a code, e.g. "INVALID_ARGUMENT". */
const char *cmn_code_name(int code);

#endif
